"""The language extension of NSD (paper Sec. 3.3, App. A.2): LLaVA-format conversations per fMRI trial.

    train, test, summary = build_extension(NSDDataset(root), seed=0)

For every image with fMRI, six kinds of samples: brief and detailed descriptions (instructions from
Tables 3 and 4), multi-turn dialogue (`neurochat.language.dialogue`: existence of present and absent
objects, counts, positions, sizes, the scene, follow-ups, "I can't tell"), complex reasoning,
instruction reconstruction (Table 5) and concept localization (Table 6, one sample per concept
present: each object and the scene context).

Each sample is LLaVA's conversation JSON plus where its fMRI comes from:

    {"id": "subj01-trial00012-brief", "subject": "subj01", "trials": [12], "nsd_id": 77,
     "split": "train", "task": "brief",
     "conversations": [{"from": "human", "value": "<image>\\nDescribe the image concisely."},
                       {"from": "gpt", "value": "a cat on the grass"}]}

Dialogue samples also carry `turn_kinds`, what each turn asks ("existence_no", "follow_count", ...),
counted per split in the summary's "dialogue_turns".

`<image>` (the fMRI placeholder of Sec. 3.4) appears once, at the start of the first human turn.
Train samples point at one trial each: every training trial gets its own sample set, so the three
repetitions of an image are three samples (with their own instruction draws). Test samples point at
all repetitions of a shared image on disk, in repetition order: the evaluation averages them, or
takes the first (App. C.1). The split is NSD's: shared images are the test set.

Instructions and wordings are drawn from `random.Random` seeded by (seed, subject, trial, task), so
a trial's samples do not change when other subjects, sessions or tasks are added.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Sequence

from neurochat.errors import ConfigError, DataError
from neurochat.language.facts import ImageFacts, load_facts, resolve_source
from neurochat.language.instructions import (
    BRIEF_INSTRUCTIONS,
    DETAILED_INSTRUCTIONS,
    IMAGE_TOKEN,
    RECONSTRUCTION_INSTRUCTION,
    TASKS,
    localization_answer,
    localization_instruction,
)
from neurochat.language.dialogue import TemplateDialogueWriter
from neurochat.language.templates import (
    QA,
    DialogueWriter,
    brief_answer,
    detailed_answer,
    dialogue_candidates,
    reasoning_candidates,
    reconstruction_prompt,
)
from neurochat.nsd import NSDDataset

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
MAX_SKIPPED_IDS = 20  # how many skipped 73k ids the summary lists


def build_extension(
    dataset: NSDDataset,
    *,
    seed: int = 0,
    subjects: Sequence[str] | None = None,
    tasks: Sequence[str] = TASKS,
    source: str = "auto",
    dialogue_writer: DialogueWriter | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[list[dict], list[dict], dict]:
    """The language extension of `dataset`: (train samples, test samples, summary).

    Parameters
    ----------
    dataset : NSDDataset
        Its sessions on disk (and `max_session`) decide which trials get samples.
    seed : int
        Seeds the choice of instructions and wordings; the same seed gives identical samples.
    subjects : list of str, optional
        Default: every subject on disk.
    tasks : list of str
        A subset of TASKS (e.g. only "brief" for stage 1).
    source : {"auto", "simnsd", "coco"}
        Where facts come from: SimNSD's scene graphs (`simnsd/scenes.json`, used automatically when
        present) or COCO-format annotations (`dataset.captions` / `dataset.boxes`).
    dialogue_writer : DialogueWriter, optional
        Writes the dialogue and reasoning turns; default `TemplateDialogueWriter`.
    image_size : (height, width), optional
        What COCO boxes are measured in; default: the stimuli's size.

    Images without annotations are skipped, never fatal: the summary counts them (and the trials
    they would have given) under "skipped", and lists the reason for each.
    """
    # 1. Check inputs
    tasks = list(dict.fromkeys(tasks))  # a task named twice would give duplicate sample ids
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"tasks={list(tasks)}: choose among {', '.join(TASKS)}")
    subjects = list(subjects) if subjects else dataset.subjects
    for subject in subjects:
        dataset.check_subject(subject)
    source = resolve_source(dataset, source)

    # 2. Facts of every image the subjects saw
    tables = {subject: dataset.trials(subject) for subject in subjects}
    nsd_ids = sorted({int(i) for table in tables.values() for i in table.nsd_id})
    facts, skipped, vocabulary = load_facts(dataset, nsd_ids, source=source, image_size=image_size)
    if not facts:
        reasons = Counter(skipped.values())
        raise DataError(
            f"none of the {len(nsd_ids)} images seen by {', '.join(subjects)} has annotations "
            f"({', '.join(f'{n} {reason}' for reason, n in reasons.items())}); check the annotations folder "
            f"{dataset.annotations_dir}"
        )
    writer = dialogue_writer or TemplateDialogueWriter(vocabulary)

    # 3. Samples: one set per training trial, one set per (subject, shared image)
    samples: dict[str, list[dict]] = {"train": [], "test": []}
    skipped_trials = Counter()
    for subject, table in tables.items():
        for trial, nsd_id, shared in zip(table.trial.tolist(), table.nsd_id.tolist(), table.shared.tolist()):
            if nsd_id not in facts:
                skipped_trials["test" if shared else "train"] += 1
            elif not shared:
                where = {"subject": subject, "trials": [trial], "nsd_id": nsd_id, "split": "train"}
                samples["train"] += _sample_set(facts[nsd_id], f"{subject}-trial{trial:05d}", seed, tasks, writer, where)
        for nsd_id in table.test_images.tolist():
            if nsd_id in facts:
                trials = table.trials_of_image(nsd_id).tolist()
                where = {"subject": subject, "trials": trials, "nsd_id": nsd_id, "split": "test"}
                samples["test"] += _sample_set(facts[nsd_id], f"{subject}-nsd{nsd_id:05d}", seed, tasks, writer, where)

    # 4. Summary
    summary = _summary(dataset, samples, subjects, tasks, source, seed, skipped, skipped_trials, tables)
    for warning in summary["warnings"]:
        log.warning(warning)
    return samples["train"], samples["test"], summary


def _sample_set(facts: ImageFacts, key: str, seed: int, tasks, writer, where: dict) -> list[dict]:
    """Every task's samples for one trial (train) or one subject's test image."""
    samples = []
    for task in tasks:
        rng = random.Random(f"{seed}/{key}/{task}")  # str seeds are hashed with SHA-512: stable across runs
        if task == "localization":
            for concept in facts.concepts:
                turns = [(localization_instruction(concept), localization_answer(concept))]
                samples.append(_sample(f"{key}-{task}-{concept.replace(' ', '_')}", task, turns, where))
            continue
        if task == "brief":
            turns = [(rng.choice(BRIEF_INSTRUCTIONS), brief_answer(facts, rng))]
        elif task == "detailed":
            turns = [(rng.choice(DETAILED_INSTRUCTIONS), detailed_answer(facts))]
        elif task == "reconstruction":
            turns = [(RECONSTRUCTION_INSTRUCTION, reconstruction_prompt(facts))]
        else:  # dialogue, reasoning: written by the (replaceable) dialogue writer
            written = writer(facts, task, rng)
            turns = _checked_turns(written, writer, task)
            kinds = [getattr(turn, "kind", None) for turn in written]  # a `Turn` knows its kind
            samples.append(_sample(f"{key}-{task}", task, turns, where, kinds if all(kinds) else None))
            continue
        samples.append(_sample(f"{key}-{task}", task, turns, where))
    return samples


def _sample(sample_id: str, task: str, turns: list[QA], where: dict, kinds: list[str] | None = None) -> dict:
    conversations = []
    for index, (question, answer) in enumerate(turns):
        human = f"{IMAGE_TOKEN}\n{question}" if index == 0 else question
        conversations += [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]
    sample = {"id": sample_id, **where, "trials": list(where["trials"]), "task": task, "conversations": conversations}
    if kinds:
        sample["turn_kinds"] = list(kinds)  # what each turn asks (neurochat.language.dialogue), for counting
    return sample


def _checked_turns(turns, writer, task: str) -> list[QA]:
    """Validate a dialogue writer's output at the boundary: it may be a user's own callable."""
    name = getattr(writer, "__name__", type(writer).__name__)
    if not isinstance(turns, (list, tuple)) or not turns:
        raise ConfigError(
            f"dialogue writer {name} returned {turns!r} for task {task!r}; expected a non-empty list of (question, answer)"
        )
    checked = []
    for turn in turns:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) and t.strip() for t in turn)):
            raise ConfigError(
                f"dialogue writer {name} returned the turn {turn!r}; each turn is a (question, answer) pair of non-empty strings"
            )
        if any(IMAGE_TOKEN in t for t in turn):
            raise ConfigError(
                f"dialogue writer {name} put {IMAGE_TOKEN} in a turn; the builder adds it to the first question only"
            )
        checked.append((turn[0].strip(), turn[1].strip()))
    return checked


def _summary(dataset, samples, subjects, tasks, source, seed, skipped, skipped_trials, tables) -> dict:
    counts = {split: dict(Counter(s["task"] for s in samples[split])) for split in SPLITS}
    for split in SPLITS:
        counts[split] = {task: counts[split].get(task, 0) for task in tasks}
        counts[split]["total"] = len(samples[split])
    warnings = []
    if skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(Counter(skipped.values()).items()))
        warnings.append(
            f"skipped {len(skipped)} image(s) without annotations ({reasons}): {skipped_trials['train']} training "
            f"and {skipped_trials['test']} test trial(s) have no language samples"
        )
    turn_kinds = {split: dict(sorted(Counter(k for s in samples[split] for k in s.get("turn_kinds", ())).items()))
                  for split in SPLITS}  # fmt: skip
    return {
        "source": source,
        "seed": seed,
        "root": str(dataset.root),
        "max_session": dataset.max_session,
        "subjects": list(subjects),
        "tasks": list(tasks),
        "samples": counts,
        "dialogue_turns": turn_kinds,
        "images": {split: len({s["nsd_id"] for s in samples[split]}) for split in SPLITS},
        "trials": {
            "train": sum(int((~t.shared).sum()) for t in tables.values()) - skipped_trials["train"],
            "test": sum(int(t.shared.sum()) for t in tables.values()) - skipped_trials["test"],
        },
        "per_subject": {
            subject: {split: sum(s["subject"] == subject for s in samples[split]) for split in SPLITS}
            for subject in subjects
        },
        "skipped": {
            "images": len(skipped),
            "trials": dict(skipped_trials, total=sum(skipped_trials.values())),
            "reasons": dict(Counter(skipped.values())),
            "nsd_ids": sorted(skipped)[:MAX_SKIPPED_IDS],
        },
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------------
# Ground truth for evaluation (Table 1 needs references per test image)


def reference_answers(facts: ImageFacts, vocabulary: Sequence[str] = ()) -> dict:
    """The ground-truth answers of each task for one picture, for evaluation.

    brief: every caption (the caption metrics of Table 1 score against all of them); detailed and
    reconstruction: the one template text; dialogue and reasoning: every template question with its
    answer ([question, answer] pairs); localization: the concepts present with their instruction and
    expected answer. Wordings are seeded by the 73k id, so references are the same on every run.
    """
    rng = random.Random(f"reference/{facts.nsd_id}")
    return {
        "brief": list(facts.captions),
        "detailed": [detailed_answer(facts)],
        "reconstruction": [reconstruction_prompt(facts)],
        "dialogue": [list(qa) for qa in dialogue_candidates(facts, rng, vocabulary)],
        "reasoning": [list(qa) for qa in reasoning_candidates(facts, rng)],
        "localization": [
            {"concept": c, "instruction": localization_instruction(c), "answer": localization_answer(c)}
            for c in facts.concepts
        ],
    }


def build_references(
    dataset: NSDDataset,
    *,
    subjects: Sequence[str] | None = None,
    split: str = "test",
    source: str = "auto",
    image_size: tuple[int, int] | None = None,
) -> dict[int, dict]:
    """73k id -> `reference_answers` for every annotated image of `split` ("test": the shared images)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: choose 'train' or 'test'")
    subjects = list(subjects) if subjects else dataset.subjects
    ids = set()
    for subject in subjects:
        dataset.check_subject(subject)
        table = dataset.trials(subject)
        ids |= set((table.test_images if split == "test" else table.train_images).tolist())
    facts, _, vocabulary = load_facts(dataset, ids, source=source, image_size=image_size)
    return {nsd_id: reference_answers(facts[nsd_id], vocabulary) for nsd_id in sorted(facts)}
