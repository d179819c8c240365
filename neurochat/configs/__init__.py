"""The published models' configurations, written down as facts: what the paper preset loads, without the weights.

    neurochat/configs/paper/openai/clip-vit-large-patch14/               config.json, preprocessor and tokenizer configs
    neurochat/configs/paper/stabilityai/stable-diffusion-2-1-unclip-small/   model_index.json and every part's config
    neurochat/configs/paper/meta-llama/Meta-Llama-3-8B-Instruct/          config.json, generation and tokenizer configs
    neurochat/configs/paper/neurochat/extractor/vit3d.json                 the paper's ViT3D (App. C)
    neurochat/configs/paper/llama3_special_tokens.json                     where Llama-3's 256 special tokens sit

The folders mirror the hub repositories' file names and keys (copied from the published files; the
vocabularies, merges and weights are left out). Three things read them: `python -m neurochat.bench memory`
builds every component on the meta device to count its bytes; `neurochat.configs.build` writes
random-weight folders in the real layouts (tiny for the tests, full size for the GPU check); a test
checks that the extractor's `paper_config` still agrees with vit3d.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from neurochat.errors import ConfigError

PAPER_CONFIGS = Path(__file__).resolve().parent / "paper"
VIT3D_FACTS = ("neurochat", "extractor", "vit3d.json")
LLAMA3_SPECIAL_TOKENS = ("llama3_special_tokens.json",)


def paper_fact(*parts: str) -> dict:
    """One JSON file of `neurochat/configs/paper/`, e.g. `paper_fact(hub_id, "unet", "config.json")`."""
    path = PAPER_CONFIGS.joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"no published configuration at {path}: the repository's neurochat/configs/paper/ is incomplete")
    return json.loads(path.read_text())


def paper_component(component: str) -> Path:
    """The folder of facts of one paper component ("clip", "unclip" or "llm"), named by its hub id."""
    from neurochat.presets import PAPER_HUB_IDS

    return PAPER_CONFIGS / PAPER_HUB_IDS[component]


def llama3_special_tokens() -> list[str]:
    """Llama-3's 256 special tokens in id order (the first at id 128,000 of the published tokenizer)."""
    facts = paper_fact(*LLAMA3_SPECIAL_TOKENS)
    first, named, reserved = facts["first_id"], facts["named"], iter(range(facts["count"]))
    return [named.get(str(first + k)) or facts["reserved"].format(next(reserved)) for k in range(facts["count"])]
