"""Evaluations that reproduce the paper's tables on SimNSD (or NSD): `python -m neurochat.evaluate`.

The loaders below are shared by that command and by `python -m train.demo_bundle`'s evaluate stage.
"""

from __future__ import annotations


def load_main_models(preset, log=print):
    """(main ViT3D extractor, flattened "w/o ViT3D" extractor or None, fMRI-LLM or None) of a preset."""
    from neurochat.models.brainllm import load_brainllm, preset_brainllm_dir
    from neurochat.models.extractor import load_extractor

    main = load_extractor(preset.extractor_dir / f"vit3d_r{preset.patch_sizes[0]}")
    flattened_dir = preset.extractor_dir / f"flattened_r{preset.patch_sizes[0]}"
    flattened = load_extractor(flattened_dir) if (flattened_dir / "config.json").exists() else None
    brainllm_dir = preset_brainllm_dir(preset)
    brainllm = load_brainllm(brainllm_dir) if (brainllm_dir / "brainllm.json").exists() else None
    if brainllm is None:
        log(f"no fMRI-LLM at {brainllm_dir}: rows that need the LLM's prompt are left out")
    return main, flattened, brainllm


def answer_key_localizer(preset, dataset, vision, method: str = "auto"):
    """(SimNSD's answer key, a ConceptLocalizer over the preset's ensemble and the key's concepts)."""
    from neurochat.localize import ConceptLocalizer, dataset_references
    from neurochat.models.extractor import load_extractor
    from neurochat.sim.truth import AnswerKey

    key = AnswerKey(dataset.root)  # ground truth exists only for SimNSD
    ensemble = [load_extractor(preset.extractor_dir / f"vit3d_r{r}") for r in preset.patch_sizes]
    localizer = ConceptLocalizer(ensemble, vision, key.concepts, references=dataset_references(dataset, ensemble),
                                 method=method)  # fmt: skip
    return key, localizer
