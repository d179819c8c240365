"""The README's results table, generated from an evaluation's `results.json`.

    python -m neurochat.evaluate.readme_table                  # print it, from reports/results.json
    python -m neurochat.evaluate.readme_table --write README.md  # put it between the README's markers

The numbers live in the report (`python -m neurochat.evaluate all ... --out reports`); the README
only shows them, so it cannot drift from them (a test compares the two). The paper's NSD numbers
sit beside ours for orientation: SimNSD is a phantom, the two are not comparable.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Sequence

from neurochat.errors import DataError
from neurochat.evaluate.report import PAPER_TABLE1_BRIEF, PAPER_TABLE2, PAPER_TABLE2_SINGLE
from neurochat.paths import REPO_ROOT

RESULTS = REPO_ROOT / "reports" / "results.json"
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
# Table 1 of the paper, brain captioning, the "w/o ViT3D" row (flattened voxels).
PAPER_TABLE1_BRIEF_FLATTENED = {"bleu1": 0.5291, "bleu4": 0.0849, "cider": 0.3964}


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _join(values, format_value) -> str:
    return " / ".join(format_value(v) for v in values)


def readme_table(results: dict) -> str:
    """The Markdown table (header and one row per measured result) of `results` (`results.json`)."""
    rows = []
    extractor = results.get("extractor") or {}
    if extractor.get("vit3d"):
        vit3d = extractor["vit3d"]
        rows.append(("extractor: CLIP two-way, averaged / single trial",
                     _join((vit3d["averaged"]["clip_2way"], vit3d["single"]["clip_2way"]), _percent), "—"))  # fmt: skip
        baselines = [extractor.get(name) for name in ("flattened", "subject_specific")]
        if all(baselines):
            rows.append(('extractor: same for "w/o ViT3D" (flattened voxels); "w/o C_Subj" (one model per subject)',
                         "; ".join(_join((b["averaged"]["clip_2way"], b["single"]["clip_2way"]), _percent) for b in baselines),
                         "—"))  # fmt: skip
    caption = results.get("caption") or {}
    brief = (caption.get("vit3d") or {}).get("brief")
    if brief:
        keys = ("bleu1", "bleu4", "meteor", "rouge_l", "cider")
        rows.append(("brief captions: BLEU-1 / BLEU-4 / METEOR / ROUGE-L / CIDEr", _join((brief[k] for k in keys), _number),
                     _join((PAPER_TABLE1_BRIEF[k] for k in keys), _number)))  # fmt: skip
        if brief.get("concept_recall") is not None:
            rows.append(("brief captions: concept recall (true objects named)", _percent(brief["concept_recall"]), "—"))
        if caption.get("reconstruction_prompt_hit_rate") is not None:
            rows.append(("LLM routing: localization answers parse to the concept / reconstruction prompts name a true "
                         "object (each concept once; plain greedy)",
                         f"{_percent(caption['localization_parse_rate'])} / {_percent(caption['reconstruction_prompt_hit_rate'])} "
                         f"({_percent(caption.get('reconstruction_prompt_hit_rate_plain'))})", "—"))  # fmt: skip
    flat_brief = (caption.get("flattened") or {}).get("brief")
    if flat_brief:
        rows.append(('brief captions, "w/o ViT3D" LLM: BLEU-1 / BLEU-4 / CIDEr / concept recall',
                     _join((flat_brief[k] for k in ("bleu1", "bleu4", "cider")), _number)
                     + f" / {_percent(flat_brief.get('concept_recall'))}",
                     _join(PAPER_TABLE1_BRIEF_FLATTENED.values(), _number) + " / —"))  # fmt: skip
    decoder = results.get("decoder")
    if decoder:
        rows.append(("decoder alone from the true CLIP embedding (β = 1, no prompt): object_hit / CLIP two-way "
                     "(the stimuli's object_hit)",
                     f"{_percent(decoder['oracle']['object_hit'])} / {_percent(decoder['oracle']['clip_2way'])} "
                     f"({_percent(decoder['stimuli']['object_hit'])})", "—"))  # fmt: skip
    recon = results.get("recon") or {}
    keys = ("pixcorr", "ssim")
    for name, protocol, what, paper in (
        ("ours", "averaged", "reconstruction, averaged: PixCorr / SSIM / CLIP two-way", PAPER_TABLE2),
        ("ours", "single", "reconstruction, single trial: PixCorr / SSIM / CLIP two-way", PAPER_TABLE2_SINGLE),
        ("no_llm", "averaged", "reconstruction without the LLM's prompt, averaged", None),
        ("no_vae", "averaged", "reconstruction w/o VAE feature (β = 1), averaged", None),
    ):
        m = (recon.get(name) or {}).get(protocol)
        if m:
            paper_cell = f"{_join((paper[k] for k in keys), _number)} / {_percent(paper['clip_2way'])}" if paper else "—"
            objects = f" / {_percent(m['object_hit'])}" if "object_hit" in m else ""
            rows.append((what + (" / object_hit" if objects else ""),
                         f"{_join((m[k] for k in keys), _number)} / {_percent(m['clip_2way'])}{objects}",
                         paper_cell + (" / —" if objects else "")))  # fmt: skip
    localize = results.get("localize") or {}
    if localize.get("auc"):
        auc = localize["auc"]
        sizes = sorted(auc["single"], key=int, reverse=True)
        rows.append(("localization ROC-AUC vs true concept maps, encoding maps: ensemble / "
                     + " / ".join(f"r = {s}" for s in sizes) + " / random",
                     _join([auc["ensemble"], *(auc["single"][s] for s in sizes), auc["random"]], _number),
                     "pictures only"))  # fmt: skip
        gradcam = auc.get("gradcam")
        if gradcam:
            rows.append(("same for GradCAM (the paper's method)",
                         _join([gradcam["ensemble"], *(gradcam["single"].get(s) for s in sizes)], _number), "pictures only"))
    ablation = localize.get("ablation")
    if ablation:
        rows.append((f"ablation ({ablation.get('method', 'encoding')} maps, q = {ablation['fraction']:.0%}, β = {ablation['beta']:g}): "
                     "the removed concept falls below every other present one; CLIP-similarity drop removed vs others",
                     f"{_percent(ablation['removed_below_others'])} of {ablation['n']} cases; "
                     f"{_number(ablation['drop_removed'])} vs {_number(ablation['drop_others'])}", "pictures only"))  # fmt: skip
        if ablation.get("scene_kept") is not None:
            rows.append(("ablation, what the picture shows: the removed object below every other object / the scene kept",
                         f"{_percent(ablation['removed_below_objects'])} of {ablation['objects_n']} / "
                         f"{_percent(ablation['scene_kept'])} of {ablation['n']}", "pictures only"))  # fmt: skip
        embedding = ablation.get("embedding")
        if embedding:
            rows.append(("same, measured on the extractor's ẑ_c instead of the picture",
                         f"{_percent(embedding['removed_below_others'])} ({_number(embedding['drop_removed'])} vs "
                         f"{_number(embedding['drop_others'])})", "—"))  # fmt: skip
    floc = results.get("floc")
    if floc:
        rows.append(("concept maps vs localizer ROIs (floc): mean AUC, in higher visual cortex",
                     f"{_number(floc['mean_auc'])}, {_number(floc.get('mean_auc_higher'))}", "not measured"))  # fmt: skip
    new_subject = results.get("new-subject")
    if new_subject:
        curve = [scores for scores in new_subject["new"].values() if scores]
        trained = new_subject["trained"]
        rows.append((f"new subject {new_subject['subject']}, CLIP top-1 / object_hit after "
                     f"{' / '.join(k for k, v in new_subject['new'].items() if v)} sessions; trained subjects",
                     " / ".join(_percent(c["clip_top1"]) for c in curve) + "; " + " / ".join(_percent(c["object_hit"]) for c in curve)
                     + f"; {_percent(trained['clip_top1'])}, {_percent(trained['object_hit'])}", "not measured"))  # fmt: skip
    dialogue = (results.get("dialogue") or {}).get("vit3d")
    if dialogue:
        existence = dialogue["existence"]
        rows.append(("chat: yes if present / no if absent, count, position, scene; hallucinations per answer",
                     f"{_percent(existence['present'])} / {_percent(existence['absent'])}, {_percent(dialogue['count'])}, "
                     f"{_percent(dialogue['position'])}, {_percent(dialogue['scene'])}; "
                     f"{_number(dialogue['hallucinated_objects_per_answer'])}", "not measured"))  # fmt: skip
    if not rows:
        raise DataError("the results hold none of the sections the README table shows (extractor, caption, recon, "
                        "localize): write them with `python -m neurochat.evaluate all --out reports`")  # fmt: skip
    lines = ["| what | SimNSD demo (ours, phantom) | paper (NSD, real fMRI) |", "|---|---|---|"]
    lines += [f"| {what} | {ours} | {paper} |" for what, ours, paper in rows]
    return "\n".join(lines) + "\n"


def read_results(path: str | Path = RESULTS) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: write it with `python -m neurochat.evaluate all --out {path.parent}`")
    return json.loads(path.read_text())


def replace_between_markers(text: str, table: str, where: str = "README.md") -> str:
    """`text` with everything between the START and END markers replaced by `table`."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise DataError(f"{where} has no {START} … {END} markers to put the table between")
    return pattern.sub(lambda _: f"{START}\n{table}{END}", text, count=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.evaluate.readme_table", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="an evaluation's results.json (default: reports/results.json)")
    parser.add_argument("--write", metavar="README", help="put the table between this file's markers instead of printing it")
    args = parser.parse_args(argv)
    table = readme_table(read_results(args.results))
    if args.write:
        path = Path(args.write)
        path.write_text(replace_between_markers(path.read_text(), table, str(path)))
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    from neurochat.cli import run_main

    run_main(main)
