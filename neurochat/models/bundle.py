"""The layout of a weights root, and loading NeuroChat's own models from it: the one place that
spells these folder names.

A demo bundle (`checkpoints/demo/`, or any `python -m train.demo_bundle --out DIR`):

    clip/                                    transformers CLIPModel folder (image and text embeddings)
    unclip/                                  diffusers Stable unCLIP pipeline folder (its vae/ gives the VAE latents)
    llm/                                     causal LM with tokenizer and chat template (LM stage 0)
    extractor/vit3d_r{r}/                    ViT3D, one per patch size r: the first of the preset's sizes is
                                             the main model, all of them the localization ensemble (Sec. 4.4)
    extractor/flattened_r{r}/                the "w/o ViT3D" baseline: flattened voxels (Sec. 4.2)
    extractor/subject_specific_r{r}/SUBJ/    the "w/o C_Subj" baseline: one model per subject (Sec. 4.2)
    extractor/adapted/SUBJ-Ns/               the main model adapted to a new subject with N sessions (`train.adapt`)
    brainllm_stage1/  brainllm/              the fMRI-LLM after stage 1 and stage 2 (the explorer loads stage 2)
    brainllm_flattened_stage1/  brainllm_flattened/    the same recipe on the flattened extractor (Table 1)
    manifest.json  vision_manifest.json      what built the bundle, and its CLIP and VAE

The paper preset keeps the third-party models under their hub ids and NeuroChat's own models under
`WEIGHTS/neurochat/`, laid out as above from `extractor/` on. Which root a preset reads is
`neurochat.presets`'s business (`preset.layout` is this layout of it); this module names the
folders inside a root and loads what is in them. Nothing here moves a file: the committed
`checkpoints/demo/` is the reference layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neurochat.errors import ConfigError

CLIP_DIR = "clip"
UNCLIP_DIR = "unclip"
LLM_DIR = "llm"
EXTRACTORS_DIR = "extractor"
ENCODING_MAPS_DIR = "encoding_maps"
MANIFEST = "manifest.json"  # written by train.demo_bundle
VISION_MANIFEST = "vision_manifest.json"  # written by train.vision
PAPER_MODELS_DIR = "neurochat"  # the paper weights root's folder of NeuroChat's own models

EXTRACTOR_KINDS = ("vit3d", "flattened", "subject_specific")  # ViT3D and the paper's two baselines
BRAINLLM_VARIANTS = ("vit3d", "flattened")  # the extractor whose fMRI tokens the LLM reads
BRAINLLM_STAGES = (1, 2)  # stage 0 trains the plain LM into LLM_DIR (train.llm)

# A finished checkpoint has these: save_extractor writes config.json after the weights, and
# BrainLLM.save writes brainllm.json; a folder without them is untrained or still training.
_EXTRACTOR_MARKER = "config.json"
_BRAINLLM_MARKER = "brainllm.json"


@dataclass(frozen=True)
class WeightsLayout:
    """The folders of one weights root: a demo bundle, or the paper root's `neurochat/` folder."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # third-party components of a demo bundle (the paper preset names its own: neurochat/presets.py)
    @property
    def clip_dir(self) -> Path:
        return self.root / CLIP_DIR

    @property
    def unclip_dir(self) -> Path:
        return self.root / UNCLIP_DIR

    @property
    def llm_dir(self) -> Path:
        return self.root / LLM_DIR

    @property
    def encoding_maps_dir(self) -> Path:
        """Encoding-model statistics of the demo's SimNSD subjects, fitted when the bundle was built."""
        return self.root / ENCODING_MAPS_DIR

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def vision_manifest(self) -> Path:
        return self.root / VISION_MANIFEST

    # NeuroChat's own models
    @property
    def extractors(self) -> Path:
        """The folder of every extractor checkpoint (a preset's `extractor_dir`)."""
        return self.root / EXTRACTORS_DIR

    def extractor_dir(self, kind: str, patch_size: int, subject: str | None = None) -> Path:
        """One extractor checkpoint: `kind` is "vit3d", "flattened" or "subject_specific" (which needs
        `subject`, the one subject it was trained on)."""
        if kind not in EXTRACTOR_KINDS:
            raise ConfigError(f"extractor kind {kind!r}: choose one of {', '.join(EXTRACTOR_KINDS)}")
        if (kind == "subject_specific") != (subject is not None):
            raise ConfigError(f"extractor kind {kind!r} with subject={subject!r}: only 'subject_specific' "
                              "models belong to one subject, and each of them does")  # fmt: skip
        folder = self.extractors / f"{kind}_r{patch_size}"
        return folder / subject if subject is not None else folder

    def adapted_extractor_dir(self, subject: str, sessions: int) -> Path:
        """The main extractor adapted to a new `subject` with `sessions` sessions of its data (`train.adapt`)."""
        return self.extractors / "adapted" / f"{subject}-{sessions}s"

    def adapted_subjects(self) -> dict[str, Path]:
        """Each adapted subject's checkpoint with the most sessions: {subject: folder}."""
        found: dict[str, tuple[int, Path]] = {}
        for folder in sorted((self.extractors / "adapted").glob("subj*-*s")):
            subject, sessions = folder.name.rsplit("-", 1)
            trained = any((folder / name).exists() for name in ("model.safetensors", "input_layer.safetensors"))
            if trained and sessions[:-1].isdigit():
                found[subject] = max(found.get(subject, (0, folder)), (int(sessions[:-1]), folder))
        return {subject: folder for subject, (_, folder) in sorted(found.items())}

    def brainllm_dir(self, variant: str = "vit3d", stage: int = 2) -> Path:
        """One fMRI-LLM folder: `variant` is the extractor whose tokens it reads ("vit3d", or the
        "flattened" baseline), `stage` 1 (projector only) or 2 (what the explorer loads)."""
        if variant not in BRAINLLM_VARIANTS:
            raise ConfigError(f"fMRI-LLM variant {variant!r}: choose one of {', '.join(BRAINLLM_VARIANTS)}")
        if stage not in BRAINLLM_STAGES:
            raise ConfigError(f"fMRI-LLM stage {stage}: stage 1 and 2 make BrainLLM folders (stage 0 is the LM alone)")
        name = "brainllm" if variant == "vit3d" else f"brainllm_{variant}"
        return self.root / (name if stage == 2 else f"{name}_stage{stage}")


# -- a preset's models ------------------------------------------------------------------------------


def main_extractor_dir(preset) -> Path:
    """The main ViT3D (the preset's first patch size): its ẑ_c and ẑ_v reconstruct, its tokens feed the LLM."""
    return preset.layout.extractor_dir("vit3d", preset.patch_sizes[0])


def ensemble_dirs(preset) -> list[Path]:
    """The localization ensemble's ViT3D folders, one per patch size, the main model first (Sec. 4.4)."""
    return [preset.layout.extractor_dir("vit3d", r) for r in preset.patch_sizes]


def baseline_dirs(layout: WeightsLayout, patch_size: int, subjects: list[str]) -> dict[str, Path | dict[str, Path]]:
    """The main model and the paper's two baselines at one patch size: {"vit3d": ..., "flattened": ...,
    "subject_specific": {subject: ...}}."""
    return {
        "vit3d": layout.extractor_dir("vit3d", patch_size),
        "flattened": layout.extractor_dir("flattened", patch_size),
        "subject_specific": {s: layout.extractor_dir("subject_specific", patch_size, s) for s in subjects},
    }


def has_extractor(folder: str | Path) -> bool:
    """Whether `folder` holds a finished extractor checkpoint."""
    return (Path(folder) / _EXTRACTOR_MARKER).exists()


def has_brainllm(folder: str | Path) -> bool:
    """Whether `folder` holds a trained fMRI-LLM."""
    return (Path(folder) / _BRAINLLM_MARKER).exists()


def load_ensemble(preset, device="cpu") -> list:
    """The preset's ViT3D extractors, one per patch size, the main model first; a missing one is a
    `ConfigError` that names the command that trains it."""
    from neurochat.models.extractor import load_extractor

    ensemble = []
    for size, folder in zip(preset.patch_sizes, ensemble_dirs(preset)):
        if not has_extractor(folder):
            raise ConfigError(f"the {preset.name} preset's ViT3D extractor r={size} is missing at {folder}: "
                              f"train it with `python -m train.extractor --preset {preset.name} --patch-size {size}`")  # fmt: skip
        ensemble.append(load_extractor(folder, device=device))
    return ensemble


def load_main_extractor(preset, device="cpu"):
    """The preset's main ViT3D extractor (its first patch size)."""
    from neurochat.models.extractor import load_extractor

    return load_extractor(main_extractor_dir(preset), device=device)


def load_extractor_if_trained(folder: str | Path, device="cpu"):
    """The extractor in `folder`, or None where there is none (the optional baselines)."""
    from neurochat.models.extractor import load_extractor

    return load_extractor(folder, device=device) if has_extractor(folder) else None


def load_brainllm_if_trained(folder: str | Path, device="cpu", dtype=None):
    """The fMRI-LLM in `folder`, or None where there is none."""
    from neurochat.models.brainllm import load_brainllm

    return load_brainllm(folder, dtype=dtype, device=device) if has_brainllm(folder) else None


def load_preset_brainllm(preset, device="cpu", dtype=None):
    """The preset's fMRI-LLM (stage 2, on the main extractor's tokens); a missing one is a
    `ConfigError` that names the commands that train it."""
    folder = preset.layout.brainllm_dir()
    brainllm = load_brainllm_if_trained(folder, device=device, dtype=dtype)
    if brainllm is None:
        raise ConfigError(f"the {preset.name} preset's fMRI-LLM is missing at {folder}: train it with "
                          "`python -m train.llm --stage 0`, then `--stage 1`, then `--stage 2`")  # fmt: skip
    return brainllm


def load_main_models(preset, log=print):
    """(main ViT3D extractor, flattened "w/o ViT3D" extractor or None, fMRI-LLM or None) of a preset:
    what the evaluations compare."""
    main = load_main_extractor(preset)
    flattened = load_extractor_if_trained(preset.layout.extractor_dir("flattened", preset.patch_sizes[0]))
    brainllm_dir = preset.layout.brainllm_dir()
    brainllm = load_brainllm_if_trained(brainllm_dir)
    if brainllm is None:
        log(f"no fMRI-LLM at {brainllm_dir}: rows that need the LLM's prompt are left out")
    return main, flattened, brainllm
