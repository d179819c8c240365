"""The Table 1 analog: talking about the test recordings (paper Sec. 4.2, Table 1).

For each shared test image of each subject (averaged over its repetitions), the fMRI-LLM answers
- a brief-description instruction (Table 3), scored against the picture's five captions;
- a detailed-description instruction (Table 4), scored against the detailed reference;
- a complex-reasoning question, scored against its reference answer;
with BLEU-1..4, METEOR (needs Java), ROUGE-L and CIDEr from pycocoevalcap, CLIP-S (Hessel et al.:
2.5 · max(cos, 0) between the stimulus's and the answer's CLIP embeddings, with the preset's CLIP),
and concept recall (the share of the picture's true objects the brief answer names). SPICE needs
Stanford CoreNLP, which cannot be fetched offline: it is reported as null.

Also: the share of answers to `Locating the concept of "<c>"` that parse back to c, and the share
of answers to the reconstruction instruction that name at least one true object, asked as the explorer
asks (each concept named once: `NamesEachConceptOnce`) and plain greedy beside it. "w/o ViT3D" is the
same LLM recipe trained on the flattened-voxel extractor.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil

import numpy as np
import torch
import torch.nn.functional as F

from neurochat.data import TrialBank, test_set
from neurochat.language import (
    BRIEF_INSTRUCTIONS,
    DETAILED_INSTRUCTIONS,
    RECONSTRUCTION_INSTRUCTION,
    build_references,
    localization_instruction,
    parse_localization_answer,
)
from neurochat.metrics import spread_over_cases
from neurochat.sim.concepts import CONCEPT_NAMES, OBJECTS_BY_NAME

TASKS = ("brief", "detailed", "reasoning")
CLIP_S_WEIGHT = 2.5  # Hessel et al. (2021)


def text_metrics(references: dict[int, list[str]], candidates: dict[int, str]) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap), SPICE = None; fractions as pycocoevalcap gives."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {k: [_clean(r) for r in v] for k, v in references.items()}
    res = {k: [_clean(candidates[k]) or "empty"] for k in references}
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its internals
        bleu, _ = Bleu(4).compute_score(gts, res)
    scores = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    scores["meteor"] = None
    if shutil.which("java"):
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        scores["meteor"] = float(meteor.compute_score(gts, res)[0])
        meteor.close() if hasattr(meteor, "close") else None
    scores["spice"] = None  # needs Stanford CoreNLP, downloaded on first use: unavailable offline
    return scores


def _clean(text: str) -> str:
    """Lower case, punctuation split off (what COCO's PTB tokenizer does, without Java)."""
    return " ".join(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower()))


def clip_score(images: np.ndarray, texts: list[str], vision) -> float:
    """Mean CLIP-S = 2.5 · max(cos(image, text), 0); an empty answer scores 0."""
    said = [i for i, t in enumerate(texts) if t.strip()]
    scores = torch.zeros(len(texts))
    if said:
        image = F.normalize(torch.as_tensor(vision.image_embeddings(images[said])).float(), dim=-1)
        text = F.normalize(torch.as_tensor(vision.text_embeddings([texts[i] for i in said])).float(), dim=-1)
        scores[said] = CLIP_S_WEIGHT * (image * text).sum(-1).clamp_min(0)
    return float(scores.mean())


def names(text: str, name: str) -> bool:
    """Does `text` name the object (singular or plural, whole words)?"""
    concept = OBJECTS_BY_NAME.get(name)
    forms = {name} | ({concept.plural_name} if concept else set())
    return any(re.search(rf"\b{re.escape(form)}\b", text.lower()) for form in forms)


def evaluate_llm(dataset, bundle, brainllm, vision, *, per_subject: int | None = None, max_new_tokens: int = 96,
                 batch_size: int = 16, log=print) -> dict:  # fmt: skip
    """Table 1's rows for one (extractor, LLM) pair, plus the routing rates."""
    from neurochat.evaluate.recon import predict_features, select_rows
    from neurochat.sim.truth import AnswerKey

    bank = TrialBank(dataset, bundle.preprocessor)
    ts = test_set(bank, "averaged")
    rows = select_rows(ts, per_subject)
    ids = ts.nsd_id[rows]
    _, _, fmri = predict_features(bundle, bank, ts, rows)
    references = build_references(dataset)
    key = AnswerKey(dataset.root) if AnswerKey.exists(dataset.root) else None

    def ask(questions: list[str], distinct_concepts=None) -> list[str]:
        answers = []
        for start in range(0, len(rows), batch_size):
            batch = slice(start, start + batch_size)
            conversations = [[{"role": "user", "content": q}] for q in questions[batch]]
            replies = brainllm.generate(fmri[batch], conversations, max_new_tokens=max_new_tokens,
                                        distinct_concepts=distinct_concepts)  # fmt: skip
            answers += [reply.text for reply in replies]
        return answers

    stimuli = dataset.images(ids)
    results: dict = {}
    for task in TASKS:
        if task == "brief":
            questions, refs = [BRIEF_INSTRUCTIONS[0]] * len(rows), [references[int(i)]["brief"] for i in ids]
        elif task == "detailed":
            questions, refs = [DETAILED_INSTRUCTIONS[0]] * len(rows), [references[int(i)]["detailed"] for i in ids]
        else:
            pairs = [references[int(i)]["reasoning"][0] for i in ids]
            questions, refs = [q for q, _ in pairs], [[a] for _, a in pairs]
        answers = ask(questions)
        scores = text_metrics(dict(enumerate(refs)), dict(enumerate(answers)))
        scores["clip_s"] = clip_score(stimuli, answers, vision)
        hits = None
        if task == "brief" and key is not None:
            objects = [[o.name for o in key.scenes[int(i)].objects] for i in ids]
            hits = [names(a, o) for a, objs in zip(answers, objects) for o in objs]
            scores["concept_recall"] = float(np.mean(hits))
        log(f"{task:9} " + " ".join(f"{k}={v:.3f}" for k, v in scores.items() if v is not None) + f"  e.g. {answers[0]!r}")
        if hits is not None:  # a share over the true objects: its spread and count, for `--compare`
            scores["case_sd"], scores["case_n"] = {"concept_recall": spread_over_cases(hits)}, {"concept_recall": len(hits)}
        results[task] = scores

    # routing: localization answers parse to the asked concept; reconstruction prompts name a true object
    concepts = [references[int(i)]["localization"][0]["concept"] for i in ids]
    parsed = ask([localization_instruction(c) for c in concepts])
    parsed_right = [parse_localization_answer(a) == c for a, c in zip(parsed, concepts)]
    results["localization_parse_rate"] = float(np.mean(parsed_right))
    # the shares over recordings keep their spread and count, for `--compare`
    results["case_sd"] = {"localization_parse_rate": spread_over_cases(parsed_right)}
    results["case_n"] = {"localization_parse_rate": len(rows)}
    # the prompt as the explorer asks for it (each concept named once), and plain greedy beside it
    if key is not None:
        for field, distinct in (("reconstruction_prompt_hit_rate", CONCEPT_NAMES), ("reconstruction_prompt_hit_rate_plain", None)):
            prompts = ask([RECONSTRUCTION_INSTRUCTION] * len(rows), distinct)
            hit = [any(names(p, o.name) for o in key.scenes[int(i)].objects) for p, i in zip(prompts, ids)]
            results[field] = float(np.mean(hit))
            results["case_sd"][field], results["case_n"][field] = spread_over_cases(hit), len(rows)
            log(f"reconstruction prompts naming a true object ({'each concept once' if distinct else 'plain greedy'}): "
                f"{results[field]:.3f}  e.g. {prompts[0]!r}")  # fmt: skip
    return results


def evaluate_captions(dataset, vision, main, brainllm, flattened=None, flattened_llm=None, **kwargs) -> dict:
    """{"vit3d": {...}, "flattened": {...} or None, "localization_parse_rate", "reconstruction_prompt_hit_rate"}."""
    ours = evaluate_llm(dataset, main, brainllm, vision, **kwargs)
    output = {"vit3d": {t: ours[t] for t in TASKS}, "flattened": None,
              "localization_parse_rate": ours["localization_parse_rate"],
              "reconstruction_prompt_hit_rate": ours.get("reconstruction_prompt_hit_rate"),
              "reconstruction_prompt_hit_rate_plain": ours.get("reconstruction_prompt_hit_rate_plain"),
              "case_sd": ours["case_sd"], "case_n": ours["case_n"]}  # fmt: skip
    if flattened is not None and flattened_llm is not None:
        theirs = evaluate_llm(dataset, flattened, flattened_llm, vision, **kwargs)
        output["flattened"] = {t: theirs[t] for t in TASKS}
    return output
