"""The demo bundle's own evaluation (its manifest's `evaluation`) and the comparison of two bundles.

`python -m train.demo_bundle --only evaluate` scores a bundle; `--compare MANIFEST` puts its numbers
beside another's, saying which differences lie within the noise of the seeds or cases.
"""

from __future__ import annotations

from pathlib import Path

# How much of the test set the evaluate stage scores (the report's command uses the demo sizes too;
# two-way identification needs at least two pictures per subject)
# The LLM is scored on every test recording (None: all; ~4 min at demo size): on the first 10
# recordings per subject the previous LLM's prompt hit rate read 10 points, and its concept recall
# 21 points, above the whole test set's.
# The reconstructions are drawn with 3 diffusion seeds and averaged: with one seed the committed bundle's
# CLIP two-way read 88.3–94.2% on the same 40 recordings (5 seeds; notebooks/experiments/recon_noise).
EVALUATION_SIZES = {"demo": {"per_subject": 10, "llm_per_subject": None, "max_recordings": 40, "ablation_cases": 40, "steps": 20,
                             "seeds": 3, "oracle_pictures": 100},
                    "micro": {"per_subject": 2, "llm_per_subject": 2, "max_recordings": 2, "ablation_cases": 1, "steps": 2,
                              "seeds": 2, "oracle_pictures": 2}}  # fmt: skip


def evaluate_bundle(out: Path, data: Path, size: str, log=print) -> dict:
    """Each component's headline numbers on the SimNSD test set, measured on this bundle.

    {"extractor": {model: {protocol: {clip_2way, clip_top1, vae_corr}}},
     "llm": {"brief": {bleu1, bleu4, cider, concept_recall}, "localization_parse_rate", "reconstruction_prompt_hit_rate",
             "reconstruction_prompt_hit_rate_plain"},
     "decoder": {run: {protocol: {pixcorr, ssim, clip_2way, object_hit}}},
     "decoder_oracle": {"oracle": {object_hit, clip_2way}, ...} (the decoder from true CLIP embeddings),
     "localization": {"auc": {ensemble, single, random, gradcam}, "ablation": {...}},
     "sizes": how much of the test set was scored}
    """
    from neurochat.evaluate import answer_key_localizer
    from neurochat.evaluate.caption import evaluate_captions
    from neurochat.evaluate.decoder import evaluate_decoder
    from neurochat.evaluate.extractor import evaluate_extractors
    from neurochat.models.bundle import baseline_dirs, load_main_models
    from neurochat.evaluate.localize import evaluate_ablation, evaluate_localization
    from neurochat.evaluate.recon import evaluate_reconstruction
    from neurochat.models.unclip import load_unclip
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.presets import get_preset
    from neurochat.reconstruct import Reconstructor
    from neurochat.targets import dataset_targets

    sizes = EVALUATION_SIZES[size]
    preset = get_preset("demo", out)
    dataset = NSDDataset(data)
    vision = VisionEncoders.from_preset(preset)
    results: dict = {"sizes": sizes}
    results["extractor"] = evaluate_extractors(dataset, dataset_targets(dataset, vision),
                                               baseline_dirs(preset.layout, preset.patch_sizes[0], dataset.subjects),
                                               log=log)  # fmt: skip
    main, flattened, brainllm = load_main_models(preset, log=log)
    captions = evaluate_captions(dataset, vision, main, brainllm, per_subject=sizes["llm_per_subject"], log=log)
    brief = captions["vit3d"]["brief"]
    results["llm"] = {"brief": {**{k: brief.get(k) for k in ("bleu1", "bleu4", "cider", "concept_recall")},
                                **{k: brief[k] for k in ("case_sd", "case_n") if k in brief}},
                      "localization_parse_rate": captions.get("localization_parse_rate"),
                      "reconstruction_prompt_hit_rate": captions.get("reconstruction_prompt_hit_rate"),
                      "reconstruction_prompt_hit_rate_plain": captions.get("reconstruction_prompt_hit_rate_plain"),
                      **{k: captions[k] for k in ("case_sd", "case_n") if k in captions}}  # fmt: skip
    reconstructor = Reconstructor(load_unclip(preset))
    recon = evaluate_reconstruction(dataset, vision, reconstructor, main, flattened, brainllm, per_subject=sizes["per_subject"],
                                    seeds=range(sizes["seeds"]), steps=sizes["steps"], log=log)  # fmt: skip
    results["decoder"] = decoder_headline(recon)
    oracle = evaluate_decoder(dataset, vision, reconstructor, limit=sizes["oracle_pictures"], steps=sizes["steps"])
    results["decoder_oracle"] = {k: v for k, v in oracle.items() if k != "pictures"}
    key, localizer = answer_key_localizer(preset, dataset, vision)
    results["localization"] = {
        "auc": evaluate_localization(dataset, localizer, key, max_recordings=sizes["max_recordings"], log=log),
        "ablation": evaluate_ablation(dataset, localizer, reconstructor, vision, key, max_cases=sizes["ablation_cases"],
                                      steps=sizes["steps"], log=log),  # fmt: skip
    }
    return results


HEADLINE_IMAGE_METRICS = ("pixcorr", "ssim", "clip_2way", "object_hit")


def decoder_headline(recon: dict) -> dict:
    """The manifest's decoder numbers from `evaluate_reconstruction`'s:
    {run: {protocol: {pixcorr, ssim, clip_2way[, seed_sd: {the same}]}}}."""

    def headline(m: dict) -> dict:
        numbers = {k: m[k] for k in HEADLINE_IMAGE_METRICS if k in m}
        if "seed_sd" in m:
            numbers["seed_sd"] = {k: sd for k, sd in m["seed_sd"].items() if k in HEADLINE_IMAGE_METRICS}
        return numbers

    return {run: {protocol: headline(m) for protocol, m in by_protocol.items()} for run, by_protocol in recon.items() if by_protocol}


def compare_evaluations(ours: dict, theirs: dict) -> list[str]:
    """One line per number both evaluations have: `path: ours vs theirs (difference)`.

    Where either side measured a number's spread across diffusion seeds (`seed_sd` beside it), the line
    also says whether the difference is within noise: within two standard errors of the difference of two
    means over each side's seeds (`sizes.seeds`, 1 when absent), the spread taken as the same on both
    sides (the mean of the two where both have it). Where a mean over cases kept its spread over them
    (`case_sd` beside it; the count in `case_n` beside it, or `n` beside it or a parent: localization AUC,
    ablation, concept recall, the LLM's routing rates), the line says whether the difference is within two
    standard errors of the difference of the two means. Other numbers (extractor, BLEU, CIDEr) have no
    measured spread here.
    """

    def flat(tree, prefix=""):
        if isinstance(tree, dict):
            for name, value in tree.items():
                yield from flat(value, f"{prefix}{name}." if prefix or name else name)
        elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
            yield prefix.rstrip("."), float(tree)

    def seed_sd(numbers: dict, name: str) -> float | None:
        parent, _, metric = name.rpartition(".")
        return numbers.get(f"{parent}.seed_sd.{metric}")

    def case_sd(numbers: dict, name: str) -> float | None:
        parent, _, metric = name.rpartition(".")
        return numbers.get(f"{parent}.case_sd.{metric}")

    def case_count(numbers: dict, name: str) -> float | None:
        """The number of cases behind a mean: its own `case_n`, else the `n` beside it or one of its parents."""
        parent, _, metric = name.rpartition(".")
        if f"{parent}.case_n.{metric}" in numbers:
            return numbers[f"{parent}.case_n.{metric}"]
        while parent:
            if f"{parent}.n" in numbers:
                return numbers[f"{parent}.n"]
            parent = parent.rpartition(".")[0]
        return None

    mine, other = dict(flat(ours)), dict(flat(theirs))
    my_seeds, their_seeds = (int(e.get("sizes", {}).get("seeds", 1)) for e in (ours, theirs))
    lines = []
    for name in mine:
        if name not in other or name.startswith(("sizes", "seconds")) or any(
                f".{spread}." in name for spread in ("seed_sd", "case_sd", "case_n")):  # fmt: skip
            continue
        difference = mine[name] - other[name]
        line = f"{name}: {mine[name]:.4f} vs {other[name]:.4f} ({difference:+.4f})"
        spreads = [sd for sd in (seed_sd(mine, name), seed_sd(other, name)) if sd is not None]
        if spreads:
            band = 2 * sum(spreads) / len(spreads) * (1 / my_seeds + 1 / their_seeds) ** 0.5
            line += f" {'within' if abs(difference) <= band else 'BEYOND'} noise (±{band:.4f}, diffusion seeds)"
        sd_mine, sd_other = case_sd(mine, name), case_sd(other, name)
        n_mine, n_other = case_count(mine, name), case_count(other, name)
        if (sd_mine is not None or sd_other is not None) and (n_mine or n_other):
            # two standard errors of a difference of two means over each side's cases; a side that kept no
            # spread or count (an older manifest) is taken to have the other's
            sd_mine, sd_other = (sd_other if sd_mine is None else sd_mine), (sd_mine if sd_other is None else sd_other)
            n_mine, n_other = n_mine or n_other, n_other or n_mine
            band = 2 * (sd_mine**2 / n_mine + sd_other**2 / n_other) ** 0.5
            line += f" {'within' if abs(difference) <= band else 'BEYOND'} noise (±{band:.4f}, sampling of the cases)"
        lines.append(line)
    return lines


def compare_files(ours: dict, theirs: dict) -> list[str]:
    """Which files both manifests list (`files`: name → sha256, bytes) are bitwise identical.

    Every training stage is seeded and runs one thread under `--jobs`, so a rebuild on the same kind of
    CPU should reproduce the weights exactly; the JSON records differ anyway (times, absolute paths).
    """
    common = sorted(set(ours) & set(theirs))
    differ = [name for name in common if ours[name]["sha256"] != theirs[name]["sha256"]]
    weights = [name for name in common if name.endswith(".safetensors")]
    weights_differ = [name for name in differ if name in weights]
    lines = [f"files: {len(common) - len(differ)} of the {len(common)} files both bundles hold are bitwise identical; "
             f"weights (.safetensors): {len(weights) - len(weights_differ)} of {len(weights)}"]  # fmt: skip
    lines += [f"differs: {name}" for name in differ]
    only = sorted(set(theirs) - set(ours))
    if only:
        lines.append(f"only in the other bundle: {len(only)} files (e.g. {only[0]})")
    return lines
