"""Time one ensemble localization and one ablation (localize + encode + reconstruct).

    python -m neurochat.bench localize [--preset demo] [--runs 5] [--json PATH]

Localization with the three ViT3D extractors (r = 7/6/5 demo, 14/12/10 paper), averaged:
- `fit_s`: once per subject, the encoding model is fitted (every extractor over the subject's training
  trials, read from disk); the app does this on the first localization in a subject;
- `cached_fit_s`: the same in a new process once the fit is in the app's disk cache;
- `localize_s`: one concept's encoding map after that (another concept, another trial, same subject);
- `gradcam_s`: the paper's GradCAM for one recording (what an uploaded volume gets);
- `ablate_s`: localization, zeroing the top 10% of voxels, extracting again and reconstructing at β = 0.93.
Medians after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from neurochat.cli import add_dataset_options, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser, max_session=False)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concept", default="dog")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from neurochat.ablate import ablate
    from neurochat.encoding import dataset_references
    from neurochat.localize import ConceptLocalizer
    from neurochat.models import quiet_libraries
    from neurochat.models.bundle import load_ensemble
    from neurochat.models.unclip import load_unclip
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.paths import ensure_simnsd
    from neurochat.presets import get_preset
    from neurochat.reconstruct import Reconstructor

    quiet_libraries()
    preset = get_preset(args.preset, args.weights)
    dataset = NSDDataset(args.nsd_root or ensure_simnsd("demo"))
    ensemble = load_ensemble(preset)
    vision = VisionEncoders.from_preset(preset)
    localizer = ConceptLocalizer(ensemble, vision, references=dataset_references(dataset, ensemble))
    reconstructor = Reconstructor(load_unclip(preset))
    subject = dataset.subjects[0]
    volume = dataset.read_trial(subject, int(dataset.trials(subject).trial[0]))
    mask = dataset.nsdgeneral(subject) > 0
    affine = dataset.affine(subject)
    localizer.text_embedding(args.concept)  # the text embedding is cached per concept, as in the app
    with tempfile.TemporaryDirectory() as cache:
        references = dataset_references(dataset, ensemble)
        started = time.perf_counter()
        ConceptLocalizer(ensemble, vision, references=references, cache=cache).has_reference(subject)  # fits, writes
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        ConceptLocalizer(ensemble, vision, references=references, cache=cache).has_reference(subject)  # reads
        cached_fit_s = time.perf_counter() - started
    localizer.has_reference(subject)  # fitted in memory for the timings below

    def localize():
        localizer.forget_concept_maps()  # the per-concept maps are cached: time computing one
        return localizer.localize(volume, args.concept, subject=subject, affine=affine, mask=mask)

    def gradcam():
        return localizer.localize(volume, args.concept, subject=subject, affine=affine, mask=mask, method="gradcam")

    def ablation():
        ablated, _ = ablate(volume, [localize()])
        main = ensemble[0]
        with torch.no_grad():
            output = main.model(main.tokens(main.preprocessor(ablated[None])))
        return reconstructor(output.clip, output.vae, "", seed=0)

    numbers = {"fit_s": fit_s, "cached_fit_s": cached_fit_s}
    for name, function in (("localize_s", localize), ("gradcam_s", gradcam), ("ablate_s", ablation)):
        function()
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        numbers[name] = statistics.median(times)
    numbers["models"] = [b.config.patch_size for b in ensemble]
    print(f"{args.preset} preset, {torch.get_num_threads()} threads, median of {args.runs}: "
          f"encoding fit for one subject {fit_s:.2f} s (from the disk cache {cached_fit_s:.2f} s); localization ({len(ensemble)} models) "
          f"{numbers['localize_s']:.3f} s; GradCAM {numbers['gradcam_s']:.3f} s; "
          f"ablation (localize + encode + reconstruct) {numbers['ablate_s']:.3f} s")  # fmt: skip
    if args.json:
        write_json(args.json, numbers)
    return 0 if np.isfinite([numbers[k] for k in ("fit_s", "cached_fit_s", "localize_s", "gradcam_s", "ablate_s")]).all() else 1
