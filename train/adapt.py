"""Adapt the trained extractor to a new subject from a few sessions of its data.

    python -m train.adapt --preset demo --subject subj03 --sessions 1             # SimNSD's new subject, one session
    python -m train.adapt --preset demo --subject subj03 --sessions 2 --trainable all
    python -m train.adapt --preset paper --weights W --nsd-root /data/nsd --subject subj03 --sessions 1

The model meets the new brain through its input layer: each 3D patch of the new subject's volume
(resampled to the common grid, as for every subject) is embedded by the patch embedding, and that
is where another anatomy differs. `--trainable input` (the default) trains a copy of the patch
embedding on the new subject's training trials and freezes everything after it, so the fMRI tokens
stay in the space the LLM learnt to read; `--trainable all` fine-tunes the whole extractor (the
LLM then reads tokens it was not trained on). The shared test pictures are never trained on.

On the demo the new subject's recordings are SimNSD's: a tree of the trained subjects and the new one
(`python -m neurochat.sim --subjects subj01,subj02,subj05,subj07,subj03`, cached on first use); on real NSD it is a subject of the tree at --nsd-root (NSD's subj03, subj04,
subj06, subj08, or a lab's own in NSD's layout). Writes a full extractor checkpoint to the preset's
`extractor/adapted/SUBJ-Ns/`, which `python -m neurochat.evaluate new-subject` scores and the
explorer uses for that subject. Interrupted runs resume from their last finished epoch.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from neurochat.cli import add_dataset_options, add_verbosity_options, configure_logging, run_main

log = logging.getLogger(__name__)

TRAINABLE = ("input", "all")
DEFAULT_EPOCHS = 30
DEFAULT_LR = 1e-3  # a few hundred steps on one subject's trials: higher than the full training's 5e-4


def new_subject_root(preset: str, nsd_root: str | None, subject: str) -> Path:
    """The tree holding the new subject's recordings: --nsd-root, or for the demo SimNSD's tree of that subject."""
    from neurochat.errors import ConfigError
    from neurochat.paths import ensure_simnsd

    if nsd_root:
        return Path(nsd_root)
    if preset != "demo":
        raise ConfigError(f"the {preset} preset adapts to a subject of real NSD: pass --nsd-root DIR")
    return ensure_simnsd("demo", subject=subject)


def freeze_for(model, trainable: str) -> int:
    """Let only the `trainable` part of `model` learn; returns its number of parameters."""
    for parameter in model.parameters():
        parameter.requires_grad = trainable == "all"
    if trainable == "input":
        for parameter in model.patch_embedding.parameters():
            parameter.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.adapt", description=__doc__.splitlines()[0])
    add_dataset_options(parser)
    parser.add_argument("--subject", required=True, help="the new subject (SimNSD: subj03, subj04, subj06, subj08)")
    parser.add_argument("--sessions", type=int, required=True, help="how many of its sessions to learn from (from the first)")
    parser.add_argument("--trainable", choices=TRAINABLE, default="input",
                        help="input: the patch embedding only (default); all: every weight")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="checkpoint folder (default: the preset's extractor/adapted/SUBJ-Ns/)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--no-progress", action="store_true")
    add_verbosity_options(parser)
    args = parser.parse_args(argv)
    configure_logging(args)

    import torch

    from neurochat.data import TrialBank
    from neurochat.errors import ConfigError, DataError
    from neurochat.models.bundle import load_main_extractor, main_extractor_dir
    from neurochat.models.extractor import save_extractor, save_input_layer
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.presets import get_preset
    from neurochat.targets import dataset_targets
    from neurochat.training.extractor import TrainConfig, train_extractor

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sessions < 1:
        raise ConfigError(f"--sessions {args.sessions}: adapt with at least one session (zero sessions is the trained "
                          "model as it is, which `evaluate new-subject` scores too)")  # fmt: skip
    preset = get_preset(args.preset, args.weights)
    root = new_subject_root(args.preset, args.nsd_root, args.subject)
    dataset = NSDDataset(root, max_session=args.sessions)
    if args.subject not in dataset.subjects:
        raise DataError(f"{root} holds no recordings of {args.subject} (it has {', '.join(dataset.subjects)})")
    on_disk = dataset.sessions(args.subject)
    if len(on_disk) < args.sessions:
        raise DataError(f"{args.subject} has {len(on_disk)} session(s) under {root}; --sessions asks for {args.sessions}")

    bundle = load_main_extractor(preset)
    trained_on = bundle.info.get("subjects", [])
    if args.subject in trained_on:
        raise ConfigError(f"{args.subject} is one of the subjects the model was trained on ({', '.join(trained_on)}): "
                          "adapt it to a subject it has not seen")  # fmt: skip
    bank = TrialBank(dataset, bundle.preprocessor, subjects=[args.subject])
    vision = VisionEncoders.from_preset(preset, device="cuda" if torch.cuda.is_available() else "cpu")
    targets = dataset_targets(dataset, vision, progress=not args.no_progress)
    learning = freeze_for(bundle.model, args.trainable)
    bundle.info = {**bundle.info, "adapted": {"subject": args.subject, "sessions": args.sessions, "dataset": str(root),
                                              "trainable": args.trainable, "trainable_parameters": learning,
                                              "base_subjects": trained_on, "base": str(main_extractor_dir(preset))}}  # fmt: skip
    out = Path(args.out) if args.out else preset.layout.adapted_extractor_dir(args.subject, args.sessions)
    log.info(f"adapting the main extractor to {args.subject} ({args.sessions} session(s), {args.trainable}: "
             f"{learning:,} parameters learn) → {out}")  # fmt: skip
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    # an input layer alone is saved as such (kilobytes beside the shared model); a whole fine-tuned model in full
    save = save_input_layer if args.trainable == "input" else save_extractor
    result = train_extractor(bundle, bank, targets, config, out, progress=not args.no_progress, save=save)
    last = result["history"][-1] if result["history"] else {}
    print(f"done: {result['steps']} steps on {result['train_trials']} trials in {result['train_seconds_this_run']} s; "
          f"last epoch loss {last.get('loss', float('nan')):.4f}; wrote {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_main(main)
