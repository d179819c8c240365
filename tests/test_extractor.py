"""The ViT3D extractor: shapes, the paper's loss (Eq. 2), baselines' token layout, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurochat.bench.__main__ import main as bench_main
from neurochat.bench.training import whole_last_layer_forward
from neurochat.data import build_preprocessor
from neurochat.errors import DataError
from neurochat.models.extractor import (
    ExtractorBundle,
    ExtractorConfig,
    ExtractorOutput,
    FMRIExtractor,
    alignment_loss,
    fast_dropout,
    flatten_tokens,
    load_extractor,
    save_extractor,
    token_coordinates,
    token_count,
)
from neurochat.nsd import NSDDataset


@pytest.fixture(scope="module")
def preprocessor(sim_root):
    return build_preprocessor(NSDDataset(sim_root), patch_size=4)


def tiny(preprocessor, layout="vit3d") -> FMRIExtractor:
    torch.manual_seed(0)
    config = ExtractorConfig(layout=layout, patch_size=4, n_tokens=token_count(preprocessor, layout), hidden=24,
                             layers=3, heads=2, head_hidden=16, clip_dim=8, latent_shape=(2, 4, 4))  # fmt: skip
    return FMRIExtractor(config, token_coordinates(preprocessor, layout)).eval()


def test_shapes_and_the_penultimate_hook_point(preprocessor):
    model = tiny(preprocessor)
    tokens = torch.randn(5, preprocessor.n_patches, 64)
    seen = []
    handle = model.penultimate.register_forward_hook(lambda module, args, out: seen.append(out))
    output = model(tokens)
    handle.remove()
    assert output.clip.shape == (5, 8)
    assert output.vae.shape == (5, 2, 4, 4)
    assert output.penultimate.shape == (5, 1 + preprocessor.n_patches, 24)
    torch.testing.assert_close(seen[0], output.penultimate)
    # the CLS readout depends on the input
    assert not torch.allclose(model(tokens[:1]).clip, model(torch.randn(1, preprocessor.n_patches, 64)).clip)


def test_training_dropout_keeps_1_minus_p_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    dropped = fast_dropout(x, 0.1, training=True)
    assert torch.unique(dropped).tolist() == [0.0, pytest.approx(1 / 0.9)]
    assert (dropped == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert dropped.mean().item() == pytest.approx(1.0, abs=0.01)  # unbiased, like F.dropout
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0, training=True) is x


def test_the_training_attention_path_equals_sdpa(preprocessor):
    """In training the attention is written out (for the cheaper dropout); without drops it is SDPA's."""
    model = tiny(preprocessor)
    tokens = torch.randn(2, model.config.n_tokens, model.config.token_dim)
    expected = model(tokens)
    for block in model.blocks:
        block.dropout.p = 1e-9  # a dropout that drops nothing, so the training path runs deterministically
    model.train()
    written_out = model(tokens)
    torch.testing.assert_close(written_out.clip, expected.clip, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(written_out.penultimate, expected.penultimate, rtol=1e-5, atol=1e-5)


def test_the_last_layer_computes_only_the_cls_row_and_it_is_the_full_layers(preprocessor):
    """Eq. 2 reads h₀ only, so the last layer computes just that row; it must be the full layer's."""
    model = tiny(preprocessor)
    tokens = torch.randn(3, model.config.n_tokens, model.config.token_dim)
    x = torch.randn(3, 1 + model.config.n_tokens, model.config.hidden)
    last = model.blocks[-1]
    torch.testing.assert_close(last(x, outputs=1), last(x)[:, :1], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        output = model(tokens)
        full = model.norm(last(output.penultimate))[:, 0]  # the whole last layer, then its CLS row
    torch.testing.assert_close(output.clip, model.clip_head(full), rtol=1e-5, atol=1e-6)
    # `python -m neurochat.bench training` times this whole-layer forward against the model's own
    with torch.no_grad():
        reference = whole_last_layer_forward(model, tokens)
    torch.testing.assert_close(reference.clip, output.clip, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reference.vae, output.vae, rtol=1e-5, atol=1e-6)


def test_eq2_against_a_hand_computation():
    output = ExtractorOutput(
        clip=torch.tensor([[1.0, 2.0]]), vae=torch.tensor([[[[0.0, 4.0]]]]), penultimate=torch.zeros(1, 1, 1)
    )
    clip_target = torch.tensor([[0.0, 0.0]])  # squared errors 1, 4 -> mean 2.5
    vae_target = torch.tensor([[[[2.0, 0.0]]]])  # squared errors 4, 16 -> mean 10
    total, clip_term, vae_term = alignment_loss(output, clip_target, vae_target, alpha=1 / 64)
    assert clip_term.item() == pytest.approx(2.5)
    assert vae_term.item() == pytest.approx(10.0)
    assert total.item() == pytest.approx(2.5 + 10.0 / 64)


def test_flattened_baseline_tokens_are_the_union_voxels_in_c_order(preprocessor, sim_root):
    data = NSDDataset(sim_root)
    volumes = data.read_trials("subj02", [0, 1])
    patch_tokens = preprocessor(volumes)
    flat = flatten_tokens(patch_tokens, preprocessor)
    voxels = preprocessor.common_grid_voxels(volumes)  # (2, M)
    assert flat.shape == (2, token_count(preprocessor, "flattened"), 64)
    torch.testing.assert_close(flat.reshape(2, -1)[:, : voxels.shape[1]], voxels)
    assert torch.all(flat.reshape(2, -1)[:, voxels.shape[1] :] == 0)
    coords = token_coordinates(preprocessor, "flattened")
    assert np.all(coords[:, 1:] == 0) and np.array_equal(coords[:, 0], np.arange(len(coords)))
    model = tiny(preprocessor, "flattened")
    assert model(flat).clip.shape == (2, 8)


def test_checkpoint_round_trip(preprocessor, tmp_path, sim_root):
    model = tiny(preprocessor)
    save_extractor(ExtractorBundle(model, preprocessor, {"note": "test"}), tmp_path / "ckpt")
    loaded = load_extractor(tmp_path / "ckpt")
    volumes = NSDDataset(sim_root).read_trials("subj07", [4])
    tokens = preprocessor(volumes)
    torch.testing.assert_close(loaded.preprocessor(volumes), tokens)  # preprocessing parameters come back
    assert loaded.config == model.config and loaded.info == {"note": "test"}
    a, b = model(tokens), loaded.model(tokens)
    assert torch.equal(a.clip, b.clip) and torch.equal(a.vae, b.vae)
    json.loads((tmp_path / "ckpt/config.json").read_text())  # readable by people and tools


def test_wrong_token_shape_is_explained(preprocessor):
    model = tiny(preprocessor)
    with pytest.raises(DataError, match=r"expects tokens of shape \(B, \d+, 64\).*got \(2, 3, 64\)"):
        model(torch.zeros(2, 3, 64))


def test_missing_checkpoint_is_explained(tmp_path):
    with pytest.raises(DataError, match="missing .*config.json"):
        load_extractor(tmp_path)


def test_paper_preset_builds_and_runs_forward_backward(tmp_path, capsys):
    """App. C: 16 layers, hidden 768, r = 14 on NSD's geometry; one sample forward and backward on CPU."""
    bench_main(["extractor", "--preset", "paper", "--json", str(tmp_path / "paper.json")])
    out = capsys.readouterr().out
    numbers = json.loads((tmp_path / "paper.json").read_text())
    assert "16 layers x hidden 768, r = 14" in out and f"N = {numbers['n_tokens']}" in out
    assert numbers["parameters"] > 100e6 and numbers["finite"]


def test_two_training_steps_through_the_real_script(sim_root, tmp_path):
    """train/extractor.py end to end on the small tree, with the committed demo CLIP and VAE as targets."""
    from neurochat.paths import CHECKPOINTS
    from train.extractor import main as train_main

    if not (CHECKPOINTS / "demo/clip/config.json").exists():
        pytest.skip("the demo vision models are not in checkpoints/demo")
    out = tmp_path / "vit3d"
    assert train_main(["--preset", "demo", "--nsd-root", str(sim_root), "--patch-size", "5", "--tiny",
                       "--max-steps", "2", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    bundle = load_extractor(out)
    assert bundle.info["steps"] == 2 and bundle.info["subjects"] == ["subj01", "subj02", "subj05", "subj07"]
    assert not (out / "training_state").exists()  # the optimizer state is dropped once training finished
    tokens = bundle.preprocessor(NSDDataset(sim_root).read_trials("subj01", [0]))
    assert torch.isfinite(bundle.model(tokens).clip).all()


def test_the_same_command_trains_the_same_model(sim_root, tmp_path):
    """--seed fixes everything random, the initial weights included: a rebuild of the demo bundle must be
    able to reproduce the committed extractors, not merely resemble them."""
    from safetensors.torch import load_file

    from neurochat.paths import CHECKPOINTS
    from train.extractor import main as train_main

    if not (CHECKPOINTS / "demo/clip/config.json").exists():
        pytest.skip("the demo vision models are not in checkpoints/demo")
    weights = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name
        assert train_main(["--preset", "demo", "--nsd-root", str(sim_root), "--patch-size", "7", "--tiny", "--max-steps",
                           "2", "--seed", seed, "--out", str(out), "--no-progress"]) == 0  # fmt: skip
        weights[name] = load_file(out / "model.safetensors")
    assert all(torch.equal(weights["a"][key], weights["b"][key]) for key in weights["a"])
    assert not all(torch.equal(weights["a"][key], weights["c"][key]) for key in weights["a"])


def test_committed_extractor_reloads_identically():
    from neurochat.models.bundle import main_extractor_dir
    from neurochat.presets import get_preset

    folder = main_extractor_dir(get_preset("demo"))
    if not (folder / "config.json").exists():
        pytest.skip("no committed demo extractor")
    a, b = load_extractor(folder), load_extractor(folder)
    tokens = torch.randn(2, a.config.n_tokens, a.config.token_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.model(tokens).clip, b.model(tokens).clip)


def test_bf16_training_keeps_float32_weights_and_records_the_setting(sim_root, tmp_path):
    """`--mixed-precision bf16` (the demo bundle's choice on a CPU with native bf16) trains under bf16
    autocast; the saved weights are float32 and the checkpoint says how it was trained."""
    from neurochat.paths import CHECKPOINTS
    from train.extractor import main as train_main

    if not (CHECKPOINTS / "demo/clip/config.json").exists():
        pytest.skip("the demo vision models are not in checkpoints/demo")
    out = tmp_path / "vit3d_bf16"
    assert train_main(["--preset", "demo", "--nsd-root", str(sim_root), "--patch-size", "7", "--tiny", "--max-steps", "2",
                       "--mixed-precision", "bf16", "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    bundle = load_extractor(out)
    assert bundle.info["train"]["mixed_precision"] == "bf16" and np.isfinite(bundle.info["history"][-1]["loss"])
    assert all(p.dtype == torch.float32 for p in bundle.model.parameters())
