"""The two presets: `demo` (SimNSD + tiny committed models, CPU) and `paper` (NSD + the paper's models).

Presets differ only in where weights live and in sizes; every class and loader is the same. A
preset names folders, never hub ids: nothing is downloaded at run time.

The `paper` preset reads a weights root laid out like the Hugging Face hub ids:

    WEIGHTS/openai/clip-vit-large-patch14/                      CLIP ViT-L/14 (image + text)
    WEIGHTS/stabilityai/stable-diffusion-2-1-unclip-small/      Stable unCLIP (CLIP-L variant), incl. vae/
    WEIGHTS/meta-llama/Meta-Llama-3-8B-Instruct/                the LLM (any causal-LM folder works)
    WEIGHTS/neurochat/                                          NeuroChat's own models: extractor/, brainllm/, ...

Get them once on a machine with internet, e.g.
`huggingface-cli download openai/clip-vit-large-patch14 --local-dir WEIGHTS/openai/clip-vit-large-patch14`.
The folders inside a demo bundle and inside `WEIGHTS/neurochat/` are named by `neurochat.models.bundle`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from neurochat.errors import ConfigError
from neurochat.models.bundle import EXTRACTORS_DIR, PAPER_MODELS_DIR, WeightsLayout
from neurochat.paths import CHECKPOINTS

PRESETS = ("demo", "paper")
# The demo decoder draws as well in 10 steps as in 20 (from true CLIP embeddings a picture names a true
# object in 75% vs 76%, CLIP two-way 98.9% both: `python -m neurochat.evaluate decoder --steps N`), and
# half the steps keep a β change under 3 s with 8 users on 2 CPU cores (`python -m neurochat.bench soak`).
DEMO_DENOISING_STEPS = 10
PAPER_HUB_IDS = {
    "clip": "openai/clip-vit-large-patch14",
    "unclip": "stabilityai/stable-diffusion-2-1-unclip-small",
    "llm": "meta-llama/Meta-Llama-3-8B-Instruct",
    "extractor": f"{PAPER_MODELS_DIR}/{EXTRACTORS_DIR}",
}


@dataclass(frozen=True)
class Preset:
    """Where one preset's components live, and its sizes."""

    name: str
    clip_dir: Path  # transformers CLIPModel folder (image and text embeddings)
    unclip_dir: Path  # diffusers StableUnCLIPImg2ImgPipeline folder (its vae/ gives the VAE latents)
    llm_dir: Path  # transformers causal-LM folder with tokenizer and chat template
    extractor_dir: Path  # NeuroChat ViT3D checkpoints
    # resolution of the VAE targets and of reconstructions; None: the decoder's native one, read from its
    # folder (SD-2.1-unclip-small's UNet works on 96×96 latents, a 768 px picture: `unclip.native_image_size`)
    image_size: int | None
    patch_sizes: tuple[int, ...]  # ViT3D patch sizes; the first is the main model, all three the
    # localization ensemble (Sec. 4.4: 14, 12, 10; the demo grid is half NSD's, so 7, 6, 5)
    denoising_steps: int  # the decoder's schedule; a pass at β runs round(steps·β) of them

    @property
    def layout(self) -> WeightsLayout:
        """The folders of NeuroChat's own models (extractors, fMRI-LLMs, manifest): the root that holds
        `extractor_dir`."""
        return WeightsLayout(self.extractor_dir.parent)

    def missing(self, component: str) -> str:
        """A sentence saying which folder is missing and how to get it."""
        folder = getattr(self, f"{component}_dir")
        if self.name == "demo":
            return (
                f"the demo's {component} weights are missing at {folder}: they are committed to the repository "
                "(checkpoints/demo/); restore them with git, or rebuild them with `python -m train.demo_bundle`"
            )
        hub_id = PAPER_HUB_IDS[component]
        return (
            f"the paper preset's {component} weights are missing at {folder}: download '{hub_id}' on a machine "
            f"with internet (`huggingface-cli download {hub_id} --local-dir {folder}`) and copy the folder here"
        )


def get_preset(name: str, weights: str | Path | None = None) -> Preset:
    """The preset called `name`; `paper` needs `weights` (or $NEUROCHAT_WEIGHTS), its weights root."""
    if name == "demo":
        bundle = WeightsLayout(Path(weights) if weights else CHECKPOINTS / "demo")
        return Preset("demo", bundle.clip_dir, bundle.unclip_dir, bundle.llm_dir, bundle.extractors, image_size=64,
                      patch_sizes=(7, 6, 5), denoising_steps=DEMO_DENOISING_STEPS)  # fmt: skip
    if name == "paper":
        root = weights or os.environ.get("NEUROCHAT_WEIGHTS")
        if not root:
            raise ConfigError(
                "the paper preset needs a weights folder: pass --weights DIR (or set NEUROCHAT_WEIGHTS) holding "
                + ", ".join(f"{hub_id}/" for hub_id in PAPER_HUB_IDS.values())
            )
        root = Path(root)
        _check_weights_root(root)
        return Preset(
            "paper",
            root / PAPER_HUB_IDS["clip"],
            root / PAPER_HUB_IDS["unclip"],
            root / PAPER_HUB_IDS["llm"],
            WeightsLayout(root / PAPER_MODELS_DIR).extractors,
            # The decoder's own resolution, not the paper's 512 px: SD-2.1-unclip-small is a 768 px
            # model (its UNet's sample_size is 96), and Stable Diffusion 2's 768 px models draw poorly
            # at 512. Metrics downsample to NSD's 425 px either way (App. C.1).
            image_size=None,
            patch_sizes=(14, 12, 10),
            denoising_steps=20,
        )
    raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")


def _check_weights_root(root: Path) -> None:
    """Refuse a model folder given as the weights root (the commonest mix-up), naming the right one."""
    if (root / "config.json").exists() or (root / "model_index.json").exists():
        raise ConfigError(
            f"--weights {root} is a model folder, not the weights root: give the folder that holds "
            + ", ".join(f"{hub_id}/" for hub_id in PAPER_HUB_IDS.values())
            + " (for a folder laid out as W/openai/clip-vit-large-patch14/, that is W)"
        )
