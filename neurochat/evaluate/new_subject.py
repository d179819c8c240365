"""A new subject: how well the models read a brain they never trained on, as it is and after adaptation.

    python -m neurochat.evaluate new-subject --preset demo --subject subj03 [--json PATH]

On the averaged test recordings (the shared pictures, which no adaptation trains on), for the trained
subjects with the main extractor and for the new subject with the main extractor as it is (0 sessions)
and adapted with 1 and 2 sessions of its data (`python -m train.adapt`): the extractor's CLIP two-way
identification and top-1 retrieval among the test pictures (per subject, then averaged), and the
reconstruction's object_hit (the explorer's path: the LLM's prompt from the same extractor's tokens,
β = 0.93, one seed). An adaptation that is not on disk is reported as None with the command that makes it.
"""

from __future__ import annotations

from pathlib import Path

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.decoder import object_hit, object_namer, picture_objects
from neurochat.evaluate.extractor import score
from neurochat.evaluate.recon import llm_prompts, predict_features, reconstruct_all, select_rows
from neurochat.models.extractor import load_adapted_extractor

SESSIONS = (0, 1, 2)
KEYS = ("clip_2way", "clip_top1", "object_hit")


def subject_scores(dataset, bundle, vision, targets, reconstructor, brainllm, *, subjects=None, per_subject=None,
                   beta: float = 0.93, steps: int = 10, seed: int = 0) -> dict:  # fmt: skip
    """{"clip_2way", "clip_top1", "object_hit", "n"} of one extractor on `subjects`' averaged test recordings."""
    bank = TrialBank(dataset, bundle.preprocessor, subjects=subjects)
    ts = test_set(bank, "averaged")
    rows = select_rows(ts, per_subject)
    clip, vae, fmri = predict_features(bundle, bank, ts, rows)
    numbers = score(clip.float().numpy(), vae.float().numpy(), ts.subject[rows], ts.nsd_id[rows], targets)
    objects = picture_objects(dataset, ts.nsd_id[rows])
    prompts = llm_prompts(brainllm, fmri) if brainllm is not None else ""
    pictures = reconstruct_all(reconstructor, clip, vae, prompts, beta, seed, steps)
    return {"clip_2way": numbers["clip_2way"], "clip_top1": numbers["clip_top1"],
            "object_hit": object_hit(pictures, objects, object_namer(vision, objects)), "n": int(len(rows))}  # fmt: skip


def evaluate_new_subject(base_dataset, new_dataset, subject: str, layout, main_bundle, vision, reconstructor, brainllm,
                         *, sessions=SESSIONS, log=print, **kwargs) -> dict:  # fmt: skip
    """{"subject", "trained": scores, "new": {"0": scores, "1": scores or None, ...}, "within_10_percent": {...}}."""
    from neurochat.targets import dataset_targets

    trained = [s for s in main_bundle.info.get("subjects", base_dataset.subjects) if s in base_dataset.subjects]
    results: dict = {"subject": subject, "trained_subjects": trained}
    results["trained"] = subject_scores(base_dataset, main_bundle, vision, dataset_targets(base_dataset, vision),
                                        reconstructor, brainllm, subjects=trained, **kwargs)  # fmt: skip
    log(format_row("trained subjects", results["trained"]))
    targets = dataset_targets(new_dataset, vision)
    results["new"] = {}
    for count in sessions:
        folder = Path(layout.adapted_extractor_dir(subject, count)) if count else None
        if folder is not None and not any((folder / name).exists() for name in ("model.safetensors", "input_layer.safetensors")):
            log(f"{subject}, {count} session(s): no adapted model at {folder}; make it with "
                f"`python -m train.adapt --subject {subject} --sessions {count}`")  # fmt: skip
            results["new"][str(count)] = None
            continue
        bundle = load_adapted_extractor(folder) if folder is not None else main_bundle
        results["new"][str(count)] = subject_scores(new_dataset, bundle, vision, targets, reconstructor, brainllm,
                                                    subjects=[subject], **kwargs)  # fmt: skip
        log(format_row(f"{subject}, {count} session(s)" + ("" if count else " (zero-shot)"), results["new"][str(count)]))
    results["within_10_percent"] = {count: within(results["trained"], scores)
                                    for count, scores in results["new"].items() if scores}  # fmt: skip
    return results


def within(trained: dict, new: dict, tolerance: float = 0.10) -> bool:
    """Is every number of the new subject at least (1 − tolerance) × the trained subjects'?"""
    return all(new[key] >= (1 - tolerance) * trained[key] for key in KEYS)


def format_row(label: str, scores: dict) -> str:
    return (f"{label:34} CLIP two-way {100 * scores['clip_2way']:5.1f}%  top-1 {100 * scores['clip_top1']:5.1f}%  "
            f"object_hit {100 * scores['object_hit']:5.1f}%  ({scores['n']} recordings)")  # fmt: skip


def curve_lines(results: dict) -> list[str]:
    """The report's table: the trained subjects, then the new one by sessions."""
    lines = ["| recordings | sessions of the new subject | CLIP two-way | CLIP top-1 | object_hit | within 10% of trained |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    trained = results["trained"]
    lines.append(f"| trained subjects ({', '.join(results['trained_subjects'])}) | — | {100 * trained['clip_2way']:.1f}% | "
                 f"{100 * trained['clip_top1']:.1f}% | {100 * trained['object_hit']:.1f}% | |")  # fmt: skip
    for count, scores in results["new"].items():
        if scores is None:
            lines.append(f"| {results['subject']} | {count} | not adapted | | | |")
            continue
        mark = "✓" if results["within_10_percent"].get(count) else "✗"
        lines.append(f"| {results['subject']} | {count}{' (zero-shot)' if count == '0' else ''} | {100 * scores['clip_2way']:.1f}% | "
                     f"{100 * scores['clip_top1']:.1f}% | {100 * scores['object_hit']:.1f}% | {mark} |")  # fmt: skip
    return lines

