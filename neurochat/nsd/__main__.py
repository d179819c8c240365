"""`python -m neurochat.nsd {info,trial}`: summarise an NSD tree, or describe one trial.

    python -m neurochat.nsd info  --nsd-root DIR [--max-session 37] [--json]
    python -m neurochat.nsd trial --nsd-root DIR --subject subj01 --index T [--json]

The JSON keys are a contract other parts and users' scripts rely on: `info` has a `subjects`
list (each with `name`, `grid`, `n_trials`, `nsdgeneral_voxels`, ...); `trial` has `nsd_id`,
`session`, `repetition`, `shared`, `shape`, `mean`, `std`.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from neurochat.cli import add_max_session_option, add_nsd_root_option, run_main
from neurochat.nsd.dataset import NSDDataset


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
    add_nsd_root_option(parser, required=True, old_names=("--root",))  # --root: this command's old name for it
    add_max_session_option(parser)
    parser.add_argument("--prefer", choices=("hdf5", "nifti"), default="hdf5", help="beta format when both exist")
    parser.add_argument("--zscore", action="store_true", help="z-score betas per voxel within each session")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.nsd", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_dataset_options(commands.add_parser("info", help="subjects, sessions, trials, grids, split"))
    trial = commands.add_parser("trial", help="which image a trial showed, and its betas' statistics")
    _add_dataset_options(trial)
    trial.add_argument("--subject", required=True, help="e.g. subj01")
    trial.add_argument("--index", type=int, required=True, help="0-based trial index over all sessions")
    args = parser.parse_args(argv)

    data = NSDDataset(args.nsd_root, max_session=args.max_session, prefer=args.prefer, zscore=args.zscore)
    if args.command == "info":
        summary = data.summary()
        print(json.dumps(summary, indent=2) if args.json else _format_info(summary))
    else:
        report = describe_trial(data, args.subject, args.index)
        print(json.dumps(report, indent=2) if args.json else _format_trial(report))
    return 0


def describe_trial(data: NSDDataset, subject: str, index: int) -> dict:
    """Design facts and beta statistics of one trial."""
    data.check_subject(subject)
    volume = data.read_trial(subject, index)  # validates the index and reads the betas
    table = data.trials(subject)
    row = table.row(index)
    session_file = data.session_file(subject, int(table.session[row]))
    nsd_id = int(table.nsd_id[row])
    brain = data.brainmask(subject)
    return {
        "subject": subject,
        "trial": index,
        "nsd_id": nsd_id,
        "session": int(table.session[row]),
        "trial_in_session": int(index % table.trials_per_session),
        "repetition": int(table.repetition[row]),
        "shared": bool(table.shared[row]),
        "shape": list(volume.shape),
        "unit": "z-score" if data.zscore else "percent signal change",
        "mean": float(volume[brain].mean()),
        "std": float(volume[brain].std()),
        "file": str(session_file.path),
        "captions": data.captions(nsd_id)[:3],
    }


def _format_info(summary: dict) -> str:
    lines = [f"NSD tree at {summary['root']}" + (f" (sessions <= {summary['max_session']})" if summary["max_session"] else "")]
    lines.append(f"{'subject':8} {'grid (X,Y,Z)':15} {'sessions':>8} {'trials':>7} {'nsdgeneral':>10} {'train img':>9} {'test img':>8}  formats")
    for s in summary["subjects"]:
        grid = "x".join(map(str, s["grid"]))
        lines.append(
            f"{s['name']:8} {grid:15} {len(s['sessions']):>8} {s['n_trials']:>7} {s['nsdgeneral_voxels']:>10} "
            f"{s['n_train_images']:>9} {s['n_test_images']:>8}  {','.join(s['formats'])}"
        )
    lines.append(f"shared (test) images in the design: {summary['n_shared_images']}; trials in the design: {summary['design_trials']}")
    if summary["stimuli"]:
        lines.append(f"stimuli: {summary['stimuli']['n_images']} images of {'x'.join(map(str, summary['stimuli']['shape']))}")
    lines.append(f"annotations: {summary['annotations'] or 'none found'}")
    return "\n".join(lines)


def _format_trial(report: dict) -> str:
    return "\n".join(
        [
            f"{report['subject']} trial {report['trial']}: 73k image {report['nsd_id']}"
            f" ({'shared test image' if report['shared'] else 'training image'}), repetition {report['repetition']}",
            f"session {report['session']}, trial {report['trial_in_session']} of the session, from {report['file']}",
            f"volume {tuple(report['shape'])}; betas in the brain: mean {report['mean']:.3f}, std {report['std']:.3f} "
            f"({report['unit']})",
        ]
        + [f"caption: {c}" for c in report["captions"]]
    )


if __name__ == "__main__":
    run_main(main)
