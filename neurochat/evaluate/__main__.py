"""`python -m neurochat.evaluate <what> --preset demo [--json PATH]`: the paper's evaluations.

    extractor   CLIP identification and VAE correlation, ViT3D vs its baselines (Sec. 3.2, 4.2)
    decoder     the UnCLIP decoder alone, from the true CLIP embeddings of test pictures (β = 1, no prompt)
    recon       the Table 2 analog; --sweep-beta adds the Fig. 5 plot and the Fig. 6 grid (Sec. 4.3)
    localize    localization AUC against the ground truth, and concept ablation (Sec. 4.4)
    caption     the Table 1 analog: captions, details, reasoning; ViT3D vs w/o ViT3D (Sec. 4.2)
    dialogue    does the chat tell the truth? existence, counts, positions, scene, follow-ups vs the answer key
    new-subject a subject the models never saw: zero-shot, and adapted with 1 and 2 sessions (`train.adapt`)
    floc        concept maps against the functional-localizer ROIs (floc-bodies, floc-places, ...), with nulls
    probe       how well a linear reader names the picture's objects from the LLM's fMRI tokens (SimNSD)
    all         every one of these into one Markdown report: --out reports/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from neurochat.cli import add_dataset_options, run_main, write_json
from neurochat.models.bundle import load_main_models


def _dataset_options(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser)
    parser.add_argument("--json", help="also write the numbers to this JSON file")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.evaluate", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)  # fmt: skip
    commands = parser.add_subparsers(dest="what", required=True)
    extractor = commands.add_parser("extractor", help="ViT3D vs. w/o ViT3D vs. w/o C_Subj on the test set")
    _dataset_options(extractor)
    extractor.add_argument("--patch-size", type=int, help="default: the preset's main size")
    decoder = commands.add_parser("decoder", help="the decoder from true CLIP embeddings (β = 1, no prompt): object_hit, CLIP two-way")
    _dataset_options(decoder)
    decoder.add_argument("--limit", type=int, help="test pictures (default: all shared ones)")
    decoder.add_argument("--seed", type=int, default=0)
    decoder.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    decoder.add_argument("--guidance", type=float, help="classifier-free guidance (default: the explorer's)")
    decoder.add_argument("--figure", metavar="PNG", help="write the first 12 stimuli above their oracle pictures here")
    recon = commands.add_parser("recon", help="reconstruction metrics (Table 2), optional β sweep (Fig. 5, 6)")
    _dataset_options(recon)
    recon.add_argument("--per-subject", type=int, help="test images per subject (default: all)")
    recon.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    recon.add_argument("--beta", type=float, default=0.93)
    recon.add_argument("--seeds", type=int, default=1, help="diffusion seeds per reconstruction: the metrics are their "
                       "means, with their spread (`seed_sd`); one seed's CLIP two-way moves by several points")  # fmt: skip
    recon.add_argument("--backbones", help="folder with TorchScript AlexNet/Inception/EffNet/SwAV extractors")
    recon.add_argument("--sweep-beta", metavar="DIR", help="write the β sweep (JSON, PNG plot, Fig. 6 grid) here")
    localize = commands.add_parser("localize", help="localization AUC vs ground truth, and ablation (SimNSD)")
    _dataset_options(localize)
    localize.add_argument("--max-recordings", type=int, help="test recordings for the AUC (default: all)")
    localize.add_argument("--ablation-cases", type=int, default=60)
    localize.add_argument("--fraction", type=float, default=0.1, help="q: share of voxels removed per concept")
    localize.add_argument("--ablation-beta", type=float, default=0.93, help="β of the ablation's reconstructions")
    localize.add_argument("--figure", metavar="DIR", help="write the Fig. 7/8-style figures here")
    localize.add_argument("--method", choices=("encoding", "gradcam"), default="encoding",
                          help="maps the ablation and the figures use (the AUC scores both)")
    caption = commands.add_parser("caption", help="caption metrics (Table 1) and the LLM's routing rates")
    _dataset_options(caption)
    caption.add_argument("--per-subject", type=int, help="test images per subject (default: all)")
    dialogue = commands.add_parser("dialogue", help="dialogue answers scored against the answer key: existence, count, "
                                   "position, scene, follow-ups, hallucinated objects; ViT3D vs w/o ViT3D")  # fmt: skip
    _dataset_options(dialogue)
    dialogue.add_argument("--per-subject", type=int, help="test images per subject (default: all)")
    dialogue.add_argument("--seed", type=int, default=0, help="seeds the choice of absent objects and phrasings")
    new_subject = commands.add_parser("new-subject", help="a new subject's CLIP identification and object_hit: "
                                      "zero-shot and adapted with 1 and 2 sessions, beside the trained subjects")  # fmt: skip
    _dataset_options(new_subject)
    new_subject.add_argument("--subject", default="subj03", help="the new subject (SimNSD: subj03, subj04, subj06, "
                             "subj08; on NSD its recordings are under --new-subject-root or --nsd-root)")  # fmt: skip
    new_subject.add_argument("--new-subject-root", help="the tree holding the new subject (default: --nsd-root; demo: "
                             "SimNSD's tree of that subject)")  # fmt: skip
    new_subject.add_argument("--per-subject", type=int, help="test recordings per subject (default: all)")
    floc = commands.add_parser("floc", help="concept maps against the floc-* ROI files (NSD's, or SimNSD's): AUC, "
                               "enrichment, pointing game, label-shuffle and random-ROI nulls")  # fmt: skip
    _dataset_options(floc)
    probe = commands.add_parser("probe", help="linear object probe on the extractors' fMRI tokens (SimNSD)")
    _dataset_options(probe)
    probe.add_argument("--extractor", action="append", help="extractor folder (repeatable; default: ViT3D and flattened)")
    for command in (decoder, recon, localize, caption, dialogue, floc, new_subject):
        command.add_argument("--report", metavar="DIR", help="put these results into the report in DIR (from `all`) "
                             "and rewrite it, noting this command")  # fmt: skip
    everything = commands.add_parser("all", help="every evaluation into OUT/REPORT.md with its figures")
    _dataset_options(everything)
    everything.add_argument("--out", default="reports", help="report folder (default: reports/)")
    everything.add_argument("--per-subject", type=int, help="test images per subject for captions and reconstructions "
                            "(default: all)")  # fmt: skip
    everything.add_argument("--recon-per-subject", type=int, help="test images per subject for the reconstructions "
                            "alone, the slow part (default: --per-subject)")  # fmt: skip
    everything.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    everything.add_argument("--beta", type=float, default=0.93)
    everything.add_argument("--seeds", type=int, default=1, help="diffusion seeds per reconstruction (see `recon --seeds`)")
    everything.add_argument("--backbones", help="folder with TorchScript AlexNet/Inception/EffNet/SwAV extractors")
    everything.add_argument("--max-recordings", type=int, help="test recordings for the localization AUC")
    everything.add_argument("--ablation-cases", type=int, default=60)
    everything.add_argument("--fraction", type=float, default=0.1)
    everything.add_argument("--ablation-beta", type=float, default=0.93)
    everything.add_argument("--method", choices=("encoding", "gradcam"), default="encoding")
    args = parser.parse_args(argv)

    import sys
    import time

    started = time.perf_counter()
    from neurochat.models import quiet_libraries
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.paths import bundle_simnsd_version, check_simnsd_version, dataset_root
    from neurochat.presets import get_preset

    quiet_libraries()
    preset = get_preset(args.preset, args.weights)
    if getattr(args, "steps", None) is None:
        args.steps = preset.denoising_steps
    root = dataset_root(args.preset, args.nsd_root)
    check_simnsd_version(root, trained_on=bundle_simnsd_version(preset.layout.root))
    dataset = NSDDataset(root, max_session=args.max_session)
    vision = VisionEncoders.from_preset(preset)

    if args.what == "extractor":
        from neurochat.evaluate.extractor import evaluate_extractors, format_table
        from neurochat.models.bundle import baseline_dirs
        from neurochat.targets import dataset_targets

        patch_size = args.patch_size or preset.patch_sizes[0]
        folders = baseline_dirs(preset.layout, patch_size, dataset.subjects)
        results = evaluate_extractors(dataset, dataset_targets(dataset, vision), folders)
        print(format_table(results))
    elif args.what == "decoder":
        results = _decoder(args, preset, dataset, vision)
    elif args.what == "recon":
        results = _recon(args, preset, dataset, vision)
    elif args.what == "caption":
        results = _caption(args, preset, dataset, vision)
    elif args.what == "dialogue":
        results = _dialogue(args, preset, dataset)
    elif args.what == "probe":
        results = _probe(args, preset, dataset, vision)
    elif args.what == "floc":
        results = _floc(preset, dataset, vision, steps=args.steps)
    elif args.what == "new-subject":
        results = _new_subject(args, preset, dataset, vision)
    elif args.what == "all":
        from neurochat.evaluate.extractor import evaluate_extractors
        from neurochat.evaluate.report import write_report
        from neurochat.models.bundle import baseline_dirs
        from neurochat.targets import dataset_targets

        out = Path(args.out)
        args.sweep_beta, args.figure = str(out), str(out)
        args.decoder_figure, args.limit, args.seed, args.guidance = str(out / "decoder_oracle.png"), None, 0, None
        folders = baseline_dirs(preset.layout, preset.patch_sizes[0], dataset.subjects)
        results = {"extractor": evaluate_extractors(dataset, dataset_targets(dataset, vision), folders),
                   "caption": _caption(args, preset, dataset, vision),
                   "dialogue": _dialogue(args, preset, dataset),
                   "decoder": _decoder(args, preset, dataset, vision),
                   "recon": _recon(args, preset, dataset, vision),
                   "localize": _localize(args, preset, dataset, vision),
                   "floc": _floc(preset, dataset, vision, steps=args.steps)}  # fmt: skip
        command = "python -m neurochat.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
        path = write_report(results, out, preset=args.preset, dataset=str(dataset.root), seconds=time.perf_counter() - started,
                            command=command)  # fmt: skip
        print(f"wrote {path}")
    else:
        results = _localize(args, preset, dataset, vision)
    if getattr(args, "report", None):
        from neurochat.evaluate.report import remeasure_section

        command = "python -m neurochat.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
        path = remeasure_section(Path(args.report), args.what, results, command=command,
                                 seconds=time.perf_counter() - started)  # fmt: skip
        print(f"rewrote {path}")
    if args.json:
        write_json(args.json, results)
        print(f"wrote {args.json}")
    return 0


def _caption(args, preset, dataset, vision) -> dict:
    from neurochat.evaluate.caption import evaluate_captions
    from neurochat.models.bundle import load_brainllm_if_trained

    main, flattened, brainllm = load_main_models(preset)
    if brainllm is None:
        raise SystemExit("the caption evaluation needs the fMRI-LLM: train it with `python -m train.llm`")
    flattened_dir = preset.layout.brainllm_dir("flattened")
    flattened_llm = load_brainllm_if_trained(flattened_dir)
    if flattened_llm is None:
        print(f"no w/o-ViT3D LLM at {flattened_dir}: its row is left out")
    return evaluate_captions(dataset, vision, main, brainllm, flattened, flattened_llm, per_subject=args.per_subject)


def _dialogue(args, preset, dataset) -> dict:
    from neurochat.evaluate.dialogue import evaluate_dialogue
    from neurochat.models.bundle import load_brainllm_if_trained

    main, flattened, brainllm = load_main_models(preset)
    if brainllm is None:
        raise SystemExit("the dialogue evaluation needs the fMRI-LLM: train it with `python -m train.llm`")
    flattened_dir = preset.layout.brainllm_dir("flattened")
    flattened_llm = load_brainllm_if_trained(flattened_dir)
    if flattened_llm is None:
        print(f"no w/o-ViT3D LLM at {flattened_dir}: its column is left out")
    return evaluate_dialogue(dataset, main, brainllm, flattened, flattened_llm, per_subject=args.per_subject,
                             seed=getattr(args, "seed", 0))  # fmt: skip


def _new_subject(args, preset, dataset, vision) -> dict:
    from neurochat.evaluate.new_subject import evaluate_new_subject
    from neurochat.models.unclip import load_unclip
    from neurochat.nsd import NSDDataset
    from neurochat.reconstruct import Reconstructor
    from train.adapt import new_subject_root

    main, _, brainllm = load_main_models(preset)
    new_root = args.new_subject_root or new_subject_root(args.preset, args.nsd_root, args.subject)
    return evaluate_new_subject(dataset, NSDDataset(new_root), args.subject, preset.layout, main, vision,
                                Reconstructor(load_unclip(preset)), brainllm, per_subject=args.per_subject,
                                steps=args.steps)  # fmt: skip


def _floc(preset, dataset, vision, *, steps: int) -> dict:
    import numpy as np

    from neurochat.encoding import dataset_references
    from neurochat.evaluate.floc_ablation import roi_ablation
    from neurochat.floc import score_floc
    from neurochat.models.unclip import load_unclip
    from neurochat.reconstruct import Reconstructor
    from neurochat.localize import ConceptLocalizer
    from neurochat.models.bundle import load_ensemble
    from neurochat.paths import cache_dir
    from neurochat.vocabulary import CONCEPT_NAMES

    # the demo's models know its world's concepts; the paper's read any text, and NSD's faces and bodies want "person"
    vocabulary = list(CONCEPT_NAMES) + ([] if preset.name == "demo" else ["person"])
    ensemble = load_ensemble(preset)
    localizer = ConceptLocalizer(ensemble, vision, vocabulary, references=dataset_references(dataset, ensemble),
                                 cache=cache_dir() / "encoding-maps", shipped=preset.layout.encoding_maps_dir,
                                 method="encoding")  # fmt: skip

    def concept_map(subject: str, concept: str) -> np.ndarray:
        mask = dataset.nsdgeneral(subject) > 0  # an encoding map depends on the subject, not on one recording
        return localizer.localize(np.zeros(mask.shape, np.float32), concept, subject=subject,
                                  affine=dataset.affine(subject), mask=mask).native  # fmt: skip

    results = score_floc(dataset, concept_map, vocabulary)
    results["ablation"] = roi_ablation(dataset, ensemble[0], Reconstructor(load_unclip(preset)), vision, vocabulary,
                                       steps=steps)  # fmt: skip
    return results


def _probe(args, preset, dataset, vision) -> dict:
    from neurochat.data import TrialBank
    from neurochat.evaluate.probe import object_probe, voxel_references
    from neurochat.models.extractor import load_extractor

    size = preset.patch_sizes[0]
    folders = args.extractor or [str(preset.layout.extractor_dir(kind, size)) for kind in ("vit3d", "flattened")]
    results = {}
    for folder in folders:
        bundle = load_extractor(folder)
        r = results[folder] = object_probe(dataset, bundle)
        print(f"{folder}: a true object is the probe's first choice in {r['top1']:.1%}, among its first two in "
              f"{r['top2']:.1%} of {r['n_test']} test recordings ({r['objects']} objects; {r['train_top1']:.1%} "
              f"on its {r['n_train']} training trials)")  # fmt: skip
    r = results["voxels"] = voxel_references(dataset, TrialBank(dataset, bundle.preprocessor), vision)
    print(f"for reference, a ridge per subject from the voxels (λ = {r['ridge']:g}) to the objects: first choice "
          f"{r['objects']['top1']:.1%}, first two {r['objects']['top2']:.1%}; to the CLIP image embedding, then "
          f"zero-shot with CLIP's text embeddings: {r['clip_zero_shot']['top1']:.1%} / {r['clip_zero_shot']['top2']:.1%}")  # fmt: skip
    return results


def _decoder(args, preset, dataset, vision) -> dict:
    from neurochat.evaluate.decoder import evaluate_decoder
    from neurochat.models.unclip import load_unclip
    from neurochat.reconstruct import Reconstructor

    reconstructor = Reconstructor(load_unclip(preset))
    results = evaluate_decoder(dataset, vision, reconstructor, limit=args.limit, seed=args.seed, steps=args.steps,
                               guidance=args.guidance)  # fmt: skip
    pictures = results.pop("pictures")
    oracle, ceiling = results["oracle"], results["vae_round_trip"]
    print(f"decoder from the true CLIP embedding (β = 1, no prompt), {results['n']} test pictures: object_hit "
          f"{oracle['object_hit']:.1%}, CLIP two-way {oracle['clip_2way']:.1%}; stimuli object_hit "
          f"{results['stimuli']['object_hit']:.1%}; VAE round trip {ceiling['object_hit']:.1%} / {ceiling['clip_2way']:.1%}")  # fmt: skip
    figure = getattr(args, "decoder_figure", None) or (args.figure if args.what == "decoder" else None)
    if figure:
        from neurochat.evaluate.figures import picture_rows
        from neurochat.evaluate.decoder import test_pictures

        stimuli = dataset.images(test_pictures(dataset, args.limit)[:12])
        print(f"wrote {picture_rows([stimuli, pictures[:12]], figure)}")
    return results


def _recon(args, preset, dataset, vision) -> dict:
    from neurochat.evaluate.recon import beta_grid, evaluate_reconstruction, plot_sweep, sweep_beta
    from neurochat.models.unclip import load_unclip
    from neurochat.reconstruct import Reconstructor

    main, flattened, brainllm = load_main_models(preset)
    reconstructor = Reconstructor(load_unclip(preset))
    per_subject = getattr(args, "recon_per_subject", None) or args.per_subject  # `all` may size them apart
    results = evaluate_reconstruction(dataset, vision, reconstructor, main, flattened, brainllm, per_subject=per_subject,
                                      beta=args.beta, seeds=range(args.seeds), steps=args.steps,
                                      backbones=args.backbones)  # fmt: skip
    if args.sweep_beta:
        folder = Path(args.sweep_beta)
        curves = sweep_beta(dataset, vision, reconstructor, main, brainllm, steps=args.steps)
        write_json(folder / "beta_sweep.json", curves)
        plot_sweep(curves, folder / "beta_sweep.png")
        beta_grid(dataset, reconstructor, main, brainllm, folder / "beta_grid.png", steps=args.steps)
        results["beta_sweep"] = curves
        print(f"wrote the β sweep to {folder}")
    return results


def _localize(args, preset, dataset, vision) -> dict:
    from neurochat.evaluate import answer_key_localizer
    from neurochat.evaluate.localize import evaluate_ablation, evaluate_localization
    from neurochat.models.unclip import load_unclip
    from neurochat.reconstruct import Reconstructor

    key, localizer = answer_key_localizer(preset, dataset, vision, method=args.method)
    auc = evaluate_localization(dataset, localizer, key, max_recordings=args.max_recordings)
    for name, scores in (("encoding maps", auc), ("GradCAM (paper)", auc["gradcam"])):
        print(f"AUC, {name}: ensemble {scores['ensemble']:.3f}; "
              + ", ".join(f"r={k} {v:.3f}" for k, v in scores["single"].items()))  # fmt: skip
    print(f"AUC, random map: {auc['random']:.3f} ({auc['n']} cases)")
    reconstructor = Reconstructor(load_unclip(preset))
    ablation = evaluate_ablation(dataset, localizer, reconstructor, vision, key, fraction=args.fraction,
                                 beta=args.ablation_beta, max_cases=args.ablation_cases, steps=args.steps)  # fmt: skip
    for where, scores in (("picture", ablation), ("ẑ_c", ablation["embedding"])):
        print(f"ablation ({args.method} maps, q={args.fraction:g}, β={args.ablation_beta:g}), {where}: removed concept falls "
              f"below the others in {scores['removed_below_others']:.1%} of {ablation['n']} cases "
              f"(CLIP similarity drop {scores['drop_removed']:.4f} vs {scores['drop_others']:.4f})")  # fmt: skip
    if ablation["removed_below_objects"] is not None:
        print(f"ablation, what the picture shows: the removed object scores below every other object in "
              f"{ablation['removed_below_objects']:.1%} of {ablation['objects_n']} cases with another object; the scene "
              f"stays the picture's top scene in {ablation['scene_kept']:.1%} of {ablation['n']}")  # fmt: skip
    results = {"auc": auc, "ablation": {**ablation, "method": args.method}}
    if args.figure:
        from neurochat.evaluate.figures import localization_figures

        results["figures"] = localization_figures(dataset, localizer, reconstructor, key, Path(args.figure),
                                                          steps=args.steps)  # fmt: skip
    return results


if __name__ == "__main__":
    run_main(main)
