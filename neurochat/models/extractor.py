"""The dual-stream fMRI feature extractor: a ViT over 3D fMRI patches (paper Sec. 3.2, App. C).

    tokens (B, N, r³) ──patch embedding + 3D position──> [CLS] + N tokens ──L blocks──>
        CLS of the last layer ──f_wc──> ẑ_c  (CLIP image embedding)
                               ──f_wv──> ẑ_v  (VAE latent, scaled units)
        hidden states of the penultimate layer ──> fMRI tokens for the LLM (Sec. 3.3)

Trained with Eq. 2: ‖f_wc(h₀) − E_c(x)‖² + α‖f_wv(h₀) − E_v(x)‖², α = 1/64 (App. C). One model for
all subjects: nothing in it is subject-specific (Sec. 3.1).

The "w/o ViT3D" baseline of Sec. 4.2 uses the same encoder on *flattened* voxels: the union-mask
voxels of the common grid in C order, cut into 1-D chunks of r³ values (`flatten_tokens`).

GradCAM and the LLM read the penultimate layer through the named hook point `penultimate`
(an `nn.Identity`), so tools attach hooks without editing the model.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from neurochat.errors import ConfigError, DataError
from neurochat.preprocess import PatchPreprocessor

LAYOUTS = ("vit3d", "flattened")
CHECKPOINT_FORMAT = "neurochat.extractor/1"


@dataclass(frozen=True)
class ExtractorConfig:
    """Shape of one extractor. Presets are the functions `demo_config` and `paper_config`."""

    layout: str  # "vit3d": 3D patches (the paper); "flattened": 1-D chunks of voxels (Sec. 4.2 baseline)
    patch_size: int  # r; tokens carry r³ values
    n_tokens: int  # N, fixed by the preprocessor (and layout)
    hidden: int = 768  # App. C: hidden size 768
    layers: int = 16  # App. C: 16 Transformer layers
    heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    head_hidden: int = 1024  # App. C: f_wc and f_wv are two-layer MLPs with hidden 1024
    clip_dim: int = 768  # CLIP ViT-L/14 projected image embedding
    latent_shape: tuple[int, int, int] = (4, 64, 64)  # SD VAE latent of a 512 px picture
    alpha: float = 1.0 / 64  # Eq. 2 weight of the VAE term (App. C)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ConfigError(f"layout={self.layout!r}: choose one of {LAYOUTS}")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        if self.layers < 2:
            raise ConfigError(f"layers={self.layers}: need at least 2 (the LLM reads the penultimate layer)")
        object.__setattr__(self, "latent_shape", tuple(int(n) for n in self.latent_shape))

    @property
    def token_dim(self) -> int:
        return self.patch_size**3

    @property
    def latent_dim(self) -> int:
        return int(np.prod(self.latent_shape))


def paper_config(preprocessor: PatchPreprocessor, layout: str = "vit3d") -> ExtractorConfig:
    """App. C: 16 layers, hidden 768, heads 1024-wide, CLIP ViT-L/14 (768-d) and SD VAE at 512 px."""
    return ExtractorConfig(layout=layout, patch_size=preprocessor.config.patch_size,
                           n_tokens=token_count(preprocessor, layout))  # fmt: skip


def demo_config(preprocessor: PatchPreprocessor, clip_dim: int, latent_shape, layout: str = "vit3d") -> ExtractorConfig:
    """A small extractor that trains on 2 CPU cores in minutes."""
    return ExtractorConfig(
        layout=layout,
        patch_size=preprocessor.config.patch_size,
        n_tokens=token_count(preprocessor, layout),
        hidden=192,
        layers=6,
        heads=6,
        dropout=0.1,
        head_hidden=512,
        clip_dim=clip_dim,
        latent_shape=tuple(latent_shape),
    )


# ---------------------------------------------------------------------------------------------
# Token layouts


def token_count(preprocessor: PatchPreprocessor, layout: str) -> int:
    """N for a layout: the kept 3D patches, or the 1-D chunks of the union voxels."""
    if layout == "vit3d":
        return preprocessor.n_patches
    return math.ceil(preprocessor.n_union_voxels / preprocessor.token_dim)


def token_coordinates(preprocessor: PatchPreprocessor, layout: str) -> np.ndarray:
    """(N, 3) coordinates behind each token's position embedding: patch-grid (x, y, z) for 3D patches,
    (chunk index, 0, 0) for the flattened baseline, which knows no 3D structure."""
    if layout == "vit3d":
        return np.asarray(preprocessor.patch_coords, dtype=np.float64)
    n = token_count(preprocessor, layout)
    return np.stack([np.arange(n), np.zeros(n), np.zeros(n)], axis=1).astype(np.float64)


def flatten_tokens(tokens: torch.Tensor, preprocessor: PatchPreprocessor) -> torch.Tensor:
    """3D patch tokens (B, N, r³) → the flattened baseline's tokens (B, ceil(M / r³), r³).

    The M union-mask voxels of the common grid are taken in C order (what 1-D methods feed their
    models) and cut into chunks of r³ values, the last one zero-padded (Sec. 4.2, "w/o ViT3D").
    """
    flat = tokens.reshape(tokens.shape[0], -1)  # (B, N·r³)
    positions = torch.as_tensor(preprocessor.union_token_positions, device=tokens.device)
    voxels = flat[:, positions]  # (B, M)
    chunk = preprocessor.token_dim
    n = math.ceil(voxels.shape[1] / chunk)
    voxels = F.pad(voxels, (0, n * chunk - voxels.shape[1]))
    return voxels.reshape(tokens.shape[0], n, chunk)  # (B, n, r³)


def sincos_position_embedding(coords: np.ndarray, dim: int) -> torch.Tensor:
    """Fixed 3D sine-cosine embedding of (N, 3) coordinates → (N, dim); each axis gets a third."""
    per_axis = 2 * (dim // 6)  # even number of channels per axis
    frequencies = 1.0 / (100.0 ** (np.arange(per_axis // 2) / max(1, per_axis // 2)))
    parts = []
    for axis in range(3):
        angles = coords[:, axis : axis + 1] * frequencies[None, :]  # (N, per_axis/2)
        parts += [np.sin(angles), np.cos(angles)]
    embedding = np.concatenate(parts, axis=1)  # (N, 3·per_axis)
    embedding = np.pad(embedding, ((0, 0), (0, dim - embedding.shape[1])))
    return torch.as_tensor(embedding, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# The network


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with the mask drawn as 15-bit integers (p exact to 1/32768).

    Same semantics as `F.dropout` (each element kept with probability 1 − p, then scaled by 1/(1 − p)),
    but on CPU `F.dropout`'s float Bernoulli draw is a sizeable share of an extractor training step and
    integer draws cost about half as much (`python -m neurochat.bench training` times a step).
    """
    if not training or p == 0.0:
        return x
    threshold = int(round(p * 32768))
    keep = torch.empty(x.shape, dtype=torch.int16, device=x.device).random_(0, 32768) >= threshold
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))  # one float mask, scaled in place


class Block(nn.Module):
    """Pre-norm Transformer encoder layer."""

    def __init__(self, config: ExtractorConfig):
        super().__init__()
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(config.hidden)
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.proj = nn.Linear(config.hidden, config.hidden)
        self.norm2 = nn.LayerNorm(config.hidden)
        inner = int(config.hidden * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(config.hidden, inner), nn.GELU(), nn.Linear(inner, config.hidden))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, outputs: int | None = None) -> torch.Tensor:
        """(B, T, D) → (B, T, D); with `outputs` = n only the first n positions' outputs, (B, n, D).

        All T positions are still attended to, so those n rows are exactly what the full layer gives
        them. The last layer needs only the CLS row (Eq. 2 reads h₀): computing just that row skips
        5/6 of that layer's work, a seventh of a demo training step.
        """
        b, t, d = x.shape
        n = t if outputs is None else outputs
        p = self.dropout.p if self.training else 0.0
        normed = self.norm1(x)
        w_q, w_kv = self.qkv.weight.split([d, 2 * d])  # rows of the fused projection: q, then k and v
        b_q, b_kv = self.qkv.bias.split([d, 2 * d])
        q = F.linear(normed[:, :n], w_q, b_q).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)  # (B, h, n, d/h)
        k, v = F.linear(normed, w_kv, b_kv).reshape(b, t, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, T, d/h)
        if p > 0.0:  # what SDPA computes with dropout_p, with the cheaper dropout mask
            weights = torch.softmax(q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5), dim=-1)  # (B, h, n, T)
            attended = fast_dropout(weights, p, True) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v)
        x = x[:, :n] + fast_dropout(self.proj(attended.transpose(1, 2).reshape(b, n, d)), p, True)  # (B, n, D)
        return x + fast_dropout(self.mlp(self.norm2(x)), p, True)


def _head(config: ExtractorConfig, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(config.hidden, config.head_hidden), nn.GELU(), nn.Linear(config.head_hidden, out_dim))


@dataclass
class ExtractorOutput:
    clip: torch.Tensor  # (B, clip_dim) ẑ_c
    vae: torch.Tensor  # (B, C, h, w) ẑ_v, scaled latent units
    penultimate: torch.Tensor  # (B, 1 + N, hidden): CLS + tokens of layer L-1, the LLM's fMRI tokens


class FMRIExtractor(nn.Module):
    """ViT3D (or its flattened baseline) with the two alignment heads f_wc and f_wv."""

    def __init__(self, config: ExtractorConfig, coords: np.ndarray):
        super().__init__()
        if coords.shape != (config.n_tokens, 3):
            raise ConfigError(f"coords has shape {coords.shape}, expected ({config.n_tokens}, 3) — one per token")
        self.config = config
        self.patch_embedding = nn.Linear(config.token_dim, config.hidden)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden))
        # learnable, initialised from the tokens' 3D coordinates (fixed N, so a table is enough)
        self.position = nn.Parameter(sincos_position_embedding(coords, config.hidden)[None])  # (1, N, D)
        self.register_buffer("coords", torch.as_tensor(coords, dtype=torch.float32))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.penultimate = nn.Identity()  # hook point: hidden states after layer L-1
        self.norm = nn.LayerNorm(config.hidden)
        self.clip_head = _head(config, config.clip_dim)  # f_wc
        self.vae_head = _head(config, config.latent_dim)  # f_wv
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor) -> ExtractorOutput:
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != (self.config.n_tokens, self.config.token_dim):
            raise DataError(
                f"the extractor expects tokens of shape (B, {self.config.n_tokens}, {self.config.token_dim}) "
                f"({self.config.layout}, r = {self.config.patch_size}); got {tuple(tokens.shape)}. Were they made "
                "with this model's preprocessor?"
            )
        x = self.patch_embedding(tokens) + self.position  # (B, N, D)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + N, D)
        for block in self.blocks[:-1]:
            x = block(x)
        penultimate = self.penultimate(x)
        cls = self.norm(self.blocks[-1](penultimate, outputs=1))[:, 0]  # h₀ of the last layer (Eq. 2)
        vae = self.vae_head(cls).reshape(-1, *self.config.latent_shape)
        return ExtractorOutput(clip=self.clip_head(cls), vae=vae, penultimate=penultimate)


def alignment_loss(output: ExtractorOutput, clip_target: torch.Tensor, vae_target: torch.Tensor, alpha: float):
    """Eq. 2 with squared errors averaged over each target's dimensions: MSE(ẑ_c, z_c) + α·MSE(ẑ_v, z_v).

    Returns the total and its two terms (for logging).
    """
    clip_term = F.mse_loss(output.clip, clip_target)
    vae_term = F.mse_loss(output.vae, vae_target)
    return clip_term + alpha * vae_term, clip_term.detach(), vae_term.detach()


# ---------------------------------------------------------------------------------------------
# Self-describing checkpoints: weights + config + preprocessing parameters


@dataclass
class ExtractorBundle:
    """A loaded extractor with the preprocessor that makes its tokens."""

    model: FMRIExtractor
    preprocessor: PatchPreprocessor
    info: dict = field(default_factory=dict)  # training facts (data, epochs, ...) from the checkpoint

    @property
    def config(self) -> ExtractorConfig:
        return self.model.config

    def tokens(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """This model's input from the preprocessor's 3D patch tokens (flattened for the baseline)."""
        if self.config.layout == "flattened":
            return flatten_tokens(patch_tokens, self.preprocessor)
        return patch_tokens


def save_extractor(bundle: ExtractorBundle, folder: str | Path) -> Path:
    """Write model.safetensors, config.json and preprocess.npz into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    save_file(state, folder / "model.safetensors", metadata={"format": CHECKPOINT_FORMAT})
    preprocess_state = bundle.preprocessor.state()
    mask_bits = preprocess_state.pop("union_mask_packbits")
    np.savez_compressed(folder / "preprocess.npz", union_mask_packbits=mask_bits)
    config = {"format": CHECKPOINT_FORMAT, "extractor": asdict(bundle.model.config), "preprocess": preprocess_state,
              "info": bundle.info}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def load_extractor(folder: str | Path, device: str | torch.device = "cpu") -> ExtractorBundle:
    """Rebuild an extractor and its preprocessor from `save_extractor`'s folder; no flags needed."""
    folder = Path(folder)
    for name in ("config.json", "model.safetensors", "preprocess.npz"):
        if not (folder / name).exists():
            raise DataError(f"missing {folder / name}: an extractor checkpoint folder holds config.json, "
                            "model.safetensors and preprocess.npz (written by train/extractor.py)")  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    if config.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{folder / 'config.json'} has format {config.get('format')!r}; expected {CHECKPOINT_FORMAT!r}")
    preprocess_state = dict(config["preprocess"])
    with np.load(folder / "preprocess.npz") as arrays:
        preprocess_state["union_mask_packbits"] = arrays["union_mask_packbits"]
    preprocessor = PatchPreprocessor.from_state(preprocess_state)
    extractor_config = ExtractorConfig(**config["extractor"])
    model = FMRIExtractor(extractor_config, token_coordinates(preprocessor, extractor_config.layout))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    model.to(device).eval()
    return ExtractorBundle(model, preprocessor, config.get("info", {}))


# ---------------------------------------------------------------------------------------------
# A new subject's input layer: the main model with its own patch embedding

INPUT_LAYER_FORMAT = "neurochat.input_layer/1"


def save_input_layer(bundle: ExtractorBundle, folder: str | Path) -> Path:
    """Write only the patch embedding of an adapted `bundle` (input_layer.safetensors + adapted.json): the rest
    is its base model's, named by `bundle.info["adapted"]["base"]` (a folder, relative to `folder` if it can be)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.patch_embedding.state_dict().items()}
    save_file(state, folder / "input_layer.safetensors", metadata={"format": INPUT_LAYER_FORMAT})
    info = dict(bundle.info)
    base = Path(info["adapted"]["base"]).resolve()
    try:
        info["adapted"] = {**info["adapted"], "base": str(Path(os.path.relpath(base, folder.resolve())))}
    except ValueError:  # another drive (Windows): keep it absolute
        info["adapted"] = {**info["adapted"], "base": str(base)}
    (folder / "adapted.json").write_text(json.dumps({"format": INPUT_LAYER_FORMAT, "info": info}, indent=2, sort_keys=True) + "\n")
    return folder


def load_adapted_extractor(folder: str | Path, device: str | torch.device = "cpu") -> ExtractorBundle:
    """An adapted extractor: a full checkpoint (`save_extractor`), or a base model with a new subject's
    input layer (`save_input_layer`)."""
    folder = Path(folder)
    if (folder / "model.safetensors").exists():
        return load_extractor(folder, device)
    meta_path = folder / "adapted.json"
    if not meta_path.exists() or not (folder / "input_layer.safetensors").exists():
        raise DataError(f"{folder} holds no adapted extractor (model.safetensors, or input_layer.safetensors with "
                        "adapted.json): make one with `python -m train.adapt`")  # fmt: skip
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != INPUT_LAYER_FORMAT:
        raise DataError(f"{meta_path} has format {meta.get('format')!r}; expected {INPUT_LAYER_FORMAT!r}")
    base = (folder / meta["info"]["adapted"]["base"]).resolve()
    bundle = load_extractor(base, device)
    try:
        bundle.model.patch_embedding.load_state_dict(load_file(folder / "input_layer.safetensors"))
    except RuntimeError as error:  # the base model was retrained with another shape
        raise DataError(f"{folder / 'input_layer.safetensors'} does not fit the model at {base} ({error}); adapt "
                        "again with `python -m train.adapt`") from error  # fmt: skip
    bundle.info = meta["info"]
    return bundle
