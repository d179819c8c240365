"""VisionEncoders and the demo vision training, on tiny random models saved in the real folder layouts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurochat.errors import ConfigError, DataError
from neurochat.models.bundle import WeightsLayout
from neurochat.models.vision import ClipPreprocessing, VisionEncoders
from neurochat.presets import PAPER_HUB_IDS, get_preset
from neurochat.vocabulary import CONCEPT_NAMES
from neurochat.training.vision import (
    ClipConfig,
    PoolPictures,
    VaeConfig,
    build_clip,
    build_tokenizer,
    build_vae,
    multi_positive_contrastive_loss,
    sample_texts,
    save_clip_parts,
    save_vae,
    tokenizer_corpus,
)

TINY_CLIP = ClipConfig(
    image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, vision_layers=1, text_layers=1,
    attention_heads=2, projection_dim=16, max_text_length=16,
)
TINY_VAE = VaeConfig(image_size=32, block_out_channels=(8, 16), norm_num_groups=4)  # 32² → 4×16×16
TINY_SCALING_FACTOR = 0.5  # not 1, so a forgotten scaling shows
TINY_MEAN, TINY_STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)


@pytest.fixture(scope="session")
def tiny_pool() -> PoolPictures:
    return PoolPictures.render(seed=0, n=24, size=32)


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory, tiny_pool) -> Path:
    """A paper-style weights tree (hub-id folders) holding tiny random CLIP and VAE models."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(tokenizer_corpus(tiny_pool), TINY_CLIP)
    clip = build_clip(TINY_CLIP, tokenizer).eval()
    vae = build_vae(TINY_VAE).eval()
    vae.register_to_config(scaling_factor=TINY_SCALING_FACTOR)
    preprocessing = ClipPreprocessing(32, 32, 32, TINY_MEAN, TINY_STD)
    built = tmp_path_factory.mktemp("built")
    clip_dir, unclip_dir = save_clip_parts(built, clip, tokenizer, preprocessing), WeightsLayout(built).unclip_dir
    save_vae(built, vae)

    root = tmp_path_factory.mktemp("weights")
    shutil.copytree(clip_dir, root / PAPER_HUB_IDS["clip"])
    shutil.copytree(unclip_dir, root / PAPER_HUB_IDS["unclip"])
    return root


@pytest.fixture(scope="session")
def paper_preset(weights_root):
    # the paper preset itself, at a small image size so the tiny VAE runs fast
    return dataclasses.replace(get_preset("paper", weights=weights_root), image_size=32)


@pytest.fixture(scope="session")
def encoders(paper_preset) -> VisionEncoders:
    return VisionEncoders.from_preset(paper_preset)


def _pictures(n=3, height=40, width=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)


def test_shapes_and_attributes(encoders):
    assert encoders.clip_dim == TINY_CLIP.projection_dim
    assert encoders.image_size == 32 and encoders.latent_shape == (4, 16, 16)

    images = encoders.image_embeddings(_pictures())
    assert images.shape == (3, 16) and images.dtype == torch.float32
    texts = encoders.text_embeddings(["cat", "a teddy bear on the grass", "beach"])
    assert texts.shape == (3, 16) and texts.dtype == torch.float32
    assert not torch.allclose(texts[0], texts[1])

    square = _pictures(2, 32, 32)
    latents = encoders.encode_latents(square)
    assert latents.shape == (2, 4, 16, 16) and latents.dtype == torch.float32
    decoded = encoders.decode_latents(latents)
    assert decoded.shape == (2, 32, 32, 3) and decoded.dtype == np.uint8


def test_uint8_and_unit_float_pictures_agree(encoders):
    pictures = _pictures()
    as_float = torch.from_numpy(pictures).float() / 255.0
    torch.testing.assert_close(encoders.image_embeddings(pictures), encoders.image_embeddings(as_float))


def test_batching_does_not_change_results(encoders):
    pictures = _pictures(5)
    whole = encoders.image_embeddings(pictures)
    one_by_one = torch.cat([encoders.image_embeddings(pictures[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(whole, one_by_one, atol=1e-5, rtol=1e-5)
    texts = ["cat", "two dogs on the beach in a blue sky", "a car"]  # different lengths, so padding differs
    torch.testing.assert_close(
        encoders.text_embeddings(texts), torch.cat([encoders.text_embeddings([t]) for t in texts]), atol=1e-5, rtol=1e-5
    )


def test_latents_are_in_scaled_units(encoders):
    square = _pictures(2, 32, 32)
    sample = torch.from_numpy(square).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        raw = encoders.vae.encode(sample).latent_dist.mode()
    latents = encoders.encode_latents(square)
    torch.testing.assert_close(latents, raw * TINY_SCALING_FACTOR)

    with torch.no_grad():
        expected = encoders.vae.decode(raw).sample.clamp(-1, 1)
    expected = ((expected + 1) * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8).numpy()
    assert np.abs(encoders.decode_latents(latents).astype(int) - expected).max() <= 1


def test_vae_resizes_to_image_size(encoders):
    assert encoders.encode_latents(_pictures(1, 64, 64)).shape == (1, 4, 16, 16)


def test_preprocessing_matches_clip_image_processor(weights_root):
    from transformers import CLIPImageProcessor

    folder = weights_root / PAPER_HUB_IDS["unclip"] / "feature_extractor"
    processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    pictures = _pictures(2, 50, 70)  # needs a resize and a crop
    expected = processor(images=list(pictures), return_tensors="pt").pixel_values
    ours = ClipPreprocessing.from_folder(folder)(torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0)
    assert ours.shape == expected.shape == (2, 3, 32, 32)
    # PIL resizes in two uint8 passes (rounding and clipping in between); we stay in float. Measured on
    # noise and on pictures: a quarter of a grey level on average, a few levels at rare pixels.
    levels = (ours - expected).abs() * torch.tensor(TINY_STD).view(1, 3, 1, 1) * 255
    assert levels.mean() < 0.5 and levels.max() < 8


def test_unclip_image_encoder_gives_the_clip_image_embedding(encoders, weights_root):
    """The pipeline's conditioning `image_encoder(pixel_values).image_embeds` equals our ẑ_c."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    unclip = weights_root / PAPER_HUB_IDS["unclip"]
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(unclip / "image_encoder", local_files_only=True).eval()
    processor = CLIPImageProcessor.from_pretrained(unclip / "feature_extractor", local_files_only=True)
    pictures = _pictures(3, 32, 32)  # no resize, so both preprocessings are exact
    with torch.no_grad():
        expected = image_encoder(processor(images=list(pictures), return_tensors="pt").pixel_values).image_embeds
    torch.testing.assert_close(encoders.image_embeddings(pictures), expected, atol=1e-5, rtol=1e-4)


def test_unclip_text_encoder_is_the_clip_text_tower(encoders, weights_root):
    from transformers import CLIPTextModel, CLIPTokenizer

    unclip = weights_root / PAPER_HUB_IDS["unclip"]
    text_encoder = CLIPTextModel.from_pretrained(unclip / "text_encoder", local_files_only=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(unclip / "tokenizer", local_files_only=True)
    tokens = tokenizer(["a cat in a room", "beach"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = encoders.clip.text_model(**tokens).last_hidden_state
        theirs = text_encoder(**tokens).last_hidden_state
    torch.testing.assert_close(ours, theirs)


def test_bad_inputs_are_refused_with_a_reason(encoders):
    with pytest.raises(DataError, match="empty"):
        encoders.text_embeddings([])
    with pytest.raises(DataError, match="list of strings"):
        encoders.text_embeddings("cat")
    with pytest.raises(DataError, match="non-empty string"):
        encoders.text_embeddings(["cat", 3])
    with pytest.raises(DataError, match=r"\(B, H, W, 3\)"):
        encoders.image_embeddings(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        encoders.image_embeddings(np.full((1, 32, 32, 3), 255.0, np.float32))
    with pytest.raises(DataError, match="square"):
        encoders.encode_latents(_pictures(1, 32, 40))
    with pytest.raises(DataError, match="4, 16, 16"):
        encoders.decode_latents(torch.zeros(1, 4, 8, 8))


def test_missing_folders_are_named(tmp_path, weights_root):
    empty = get_preset("paper", weights=tmp_path)
    with pytest.raises(ConfigError) as error:
        VisionEncoders.from_preset(empty)
    assert str(empty.clip_dir) in str(error.value) and f"huggingface-cli download {PAPER_HUB_IDS['clip']}" in str(error.value)

    shutil.copytree(weights_root / PAPER_HUB_IDS["clip"], tmp_path / PAPER_HUB_IDS["clip"])
    with pytest.raises(ConfigError) as error:
        VisionEncoders.from_preset(empty)
    assert str(empty.unclip_dir) in str(error.value) and PAPER_HUB_IDS["unclip"] in str(error.value)

    demo = get_preset("demo", weights=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="checkpoints/demo"):
        VisionEncoders.from_preset(demo)
    with pytest.raises(ConfigError, match="nowhere"):
        VisionEncoders(tmp_path / "nowhere" / "clip", tmp_path / "nowhere" / "unclip")


def test_tokenizer_keeps_concept_names_whole(encoders):
    tokenizer = encoders.tokenizer
    for name in CONCEPT_NAMES:
        ids = tokenizer(name).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == 2 + len(name.split()), f"{name!r} is split into sub-word pieces: {tokenizer.convert_ids_to_tokens(ids)}"
    # unseen words fall back to bytes, never to the unknown token (which is eos, the pooling position)
    assert tokenizer.eos_token_id not in tokenizer("xylophone ü 42").input_ids[1:-1]


def test_tokenizer_ids_do_not_depend_on_the_run(tiny_pool):
    # the BPE trainer numbers symbols in hash order; each trainer gets fresh hash keys, even in one process
    first, second = (build_tokenizer(tokenizer_corpus(tiny_pool), TINY_CLIP).get_vocab() for _ in range(2))
    assert first == second


def test_multi_positive_loss_is_clip_loss_on_the_diagonal():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))  # (images, texts)
    labels = torch.arange(6)
    clip_loss = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(multi_positive_contrastive_loss(logits, torch.eye(6, dtype=torch.bool)), clip_loss)
    # a second positive changes the target, so the loss changes
    positives = torch.eye(6, dtype=torch.bool)
    positives[1, 0] = True
    assert not torch.isclose(multi_positive_contrastive_loss(logits, positives), clip_loss)


def test_concept_prompts_match_every_picture_with_the_concept(tiny_pool):
    config = dataclasses.replace(TINY_CLIP, concept_text_probability=1.0)
    indices = np.arange(len(tiny_pool))
    texts, positives = sample_texts(tiny_pool, indices, np.random.default_rng(0), config)
    assert positives.shape == (len(indices), len(indices)) and positives.diagonal().all()
    for column, text in enumerate(texts):
        concept = next(name for name in sorted(CONCEPT_NAMES, key=len, reverse=True) if text.endswith(name))
        expected = torch.tensor([concept in tiny_pool.concepts[i] for i in indices])
        assert torch.equal(positives[:, column], expected), text

    captions_only = dataclasses.replace(TINY_CLIP, concept_text_probability=0.0)
    texts, positives = sample_texts(tiny_pool, indices, np.random.default_rng(0), captions_only)
    assert torch.equal(positives, torch.eye(len(indices), dtype=torch.bool))
    assert all(text in tiny_pool.captions[i] for i, text in zip(indices, texts))


def test_training_entry_point_smoke(tmp_path):
    """Two steps of each model through `train.vision.main`, then the outputs load and describe themselves."""
    from neurochat.models.bundle import VISION_MANIFEST as MANIFEST
    from train.vision import main

    out = tmp_path / "demo"
    argv = ["--out", str(out), "--clip-steps", "2", "--vae-steps", "2", "--pool-size", "16", "--eval-size", "8",
            "--clip-batch-size", "4", "--vae-batch-size", "2", "--no-progress"]
    assert main(argv) == 0

    for folder in ["clip", "unclip/vae", "unclip/image_encoder", "unclip/text_encoder", "unclip/tokenizer", "unclip/feature_extractor"]:
        assert (out / folder).is_dir(), folder
    unclip_dir = WeightsLayout(out).unclip_dir
    assert not (unclip_dir / "unet").exists() and not (unclip_dir / "model_index.json").exists()

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["components"]["clip"]["steps"] == 2 and manifest["components"]["vae"]["steps"] == 2
    assert "--clip-steps 2" in manifest["command"]
    for relative, record in manifest["files"].items():
        data = (out / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"] and len(data) == record["bytes"]
    assert "unclip/vae/diffusion_pytorch_model.safetensors" in manifest["files"]

    # the parts alone, one process each (what `train.demo_bundle --jobs 2` runs), train the same weights
    parted = tmp_path / "parted"
    argv_parted = [parted.as_posix() if a == str(out) else a for a in argv]
    with pytest.raises(ConfigError, match=r"vision_parts/clip.json is missing: train that part first"):
        main([*argv_parted, "--part", "finish"])
    for part in ("vae", "clip", "finish"):
        assert main([*argv_parted, "--part", part]) == 0
    parted_files = json.loads((parted / MANIFEST).read_text())["files"]
    assert {name: r["sha256"] for name, r in parted_files.items() if name.endswith(".safetensors")} == \
        {name: r["sha256"] for name, r in manifest["files"].items() if name.endswith(".safetensors")}

    encoders = VisionEncoders.from_preset(get_preset("demo", weights=out))
    assert encoders.latent_shape == (4, 16, 16) and encoders.clip_dim == ClipConfig().projection_dim
    # the saved scaling factor makes the training pictures' latents unit-variance (one number, so loose)
    assert encoders.scaling_factor == pytest.approx(manifest["components"]["vae"]["scaling_factor"])


@pytest.mark.skipif(not get_preset("demo").clip_dir.exists(), reason="the demo vision models are not built")
def test_committed_demo_models_reload_identically():
    demo = get_preset("demo")
    pictures = PoolPictures.render(seed=0, n=4, size=demo.image_size, first=10**6)
    runs = []
    for _ in range(2):
        encoders = VisionEncoders.from_preset(demo)
        latents = encoders.encode_latents(pictures.images)
        runs.append((encoders.image_embeddings(pictures.images), encoders.text_embeddings(["cat", "beach"]), latents,
                     encoders.decode_latents(latents)))
    for first, second in zip(*runs):
        assert (torch.equal(first, second) if isinstance(first, torch.Tensor) else np.array_equal(first, second))
    assert runs[0][0].shape == (4, encoders.clip_dim) and runs[0][2].shape == (4, *encoders.latent_shape)

    # the committed weights are the ones the bundle manifest describes (later stages rewrite some of
    # the vision stage's files: the decoder fine-tunes the unCLIP text encoder, the pack step halves them)
    manifest_path = demo.layout.manifest
    records = json.loads(manifest_path.read_text()).get("files", {}) if manifest_path.exists() else {}
    for relative, record in records.items():
        if relative.startswith(("clip/", "unclip/vae/", "unclip/image_encoder/")):
            assert hashlib.sha256((demo.layout.root / relative).read_bytes()).hexdigest() == record["sha256"], relative


def test_the_vae_trains_under_bf16_autocast_with_float32_weights(tiny_pool):
    """`VaeConfig.mixed_precision="bf16"` (what the demo bundle asks for on a CPU with native bf16): the
    forward pass runs in bf16, the weights and the loss stay float32, and the steps differ from float32's."""
    from neurochat.training.vision import train_vae

    config = dataclasses.replace(TINY_VAE, steps=2, batch_size=2, warmup_steps=1)
    runs = {}
    for precision in ("no", "bf16"):
        torch.manual_seed(0)
        vae = build_vae(TINY_VAE)
        run = train_vae(vae, tiny_pool, dataclasses.replace(config, mixed_precision=precision), seed=0, progress=False)
        assert all(p.dtype == torch.float32 for p in vae.parameters()) and np.isfinite(run.losses).all()
        runs[precision] = run.losses
    assert runs["no"][0] != runs["bf16"][0]  # bf16 really computed the first forward pass
    assert runs["no"][0] == pytest.approx(runs["bf16"][0], rel=0.05)
    with pytest.raises(ConfigError, match="mixed_precision='fp8'"):
        VaeConfig(mixed_precision="fp8")
