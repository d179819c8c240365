"""The paper preset end to end, on tiny random models saved in the published layouts (built here, not committed).

The folders mirror the hub repositories (`neurochat.configs.build`: file names, config keys, the slow
CLIP tokenizer files of the unCLIP folder, Llama-3's special tokens, chat template and missing pad
token, a UNet with sample_size 96, i.e. a 768 px decoder); only widths, depths and vocabularies are
shrunk. On them the whole chain runs as a user would run it: the three extractors (r = 14, 12, 10), LLM
stages 1, 2 and 2 with LoRA, the preparation command, the explorer and the app.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from neurochat.errors import ConfigError, DataError
from neurochat.presets import PAPER_HUB_IDS, get_preset

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]
REPO = Path(__file__).resolve().parents[1]
STEPS = 2  # diffusion steps: the shapes and the code path, not the pictures, are under test
CHAIN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache folder (targets, fMRI tokens, encoding maps) for everything in this module."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEUROCHAT_CACHE", str(folder))
        patch.setenv("NILEARN_DATA", str(tmp_path_factory.mktemp("nilearn")))
        yield folder


@pytest.fixture(scope="module")
def nsd_root(tmp_path_factory):
    """A SimNSD tree smaller than "small" (28 pictures): VAE targets at 768 px are the slow part on a CPU."""
    from neurochat.sim.config import SimConfig
    from neurochat.sim.generate import generate

    config = SimConfig(name="paper-test", voxel_mm=5.0, n_sessions=1, trials_per_session=30, n_shared=4)
    return generate(tmp_path_factory.mktemp("nsd") / "tiny", size=config, seed=0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, cache):
    from neurochat.configs.build import write_paper_weights

    return write_paper_weights(tmp_path_factory.mktemp("weights"), "tiny")


@pytest.fixture(scope="module")
def trained(weights, nsd_root, tmp_path_factory):
    """The paper's training commands, two steps each: extractors r = 14/12/10, LLM stages 1, 2 and 2 + LoRA."""
    from train.extractor import main as train_extractor
    from train.llm import main as train_llm

    torch.set_num_threads(2)
    common = ["--preset", "paper", "--weights", str(weights), "--nsd-root", str(nsd_root), "--no-progress", "--quiet"]
    for r in (14, 12, 10):
        assert train_extractor([*common, "--tiny", "--patch-size", str(r), "--max-steps", "2", "--batch-size", "4"]) == 0
    llm = [*common, "--max-steps", "2", "--batch-size", "2", "--eval-samples", "2"]
    assert train_llm(["--stage", "1", *llm]) == 0
    full = tmp_path_factory.mktemp("stage2_full")
    assert train_llm(["--stage", "2", *llm, "--out", str(full)]) == 0
    assert train_llm(["--stage", "2", "--lora", *llm]) == 0  # the default folder: what the explorer loads
    return weights, full


@pytest.fixture(scope="module")
def explorer(trained, nsd_root):
    from neurochat.explorer import Explorer

    weights, _ = trained
    return Explorer.load("paper", nsd_root=nsd_root, weights=weights, device="cpu", log=lambda *_: None)


# -- the layouts ---------------------------------------------------------------------------------------------


def test_the_tiny_folders_mirror_the_published_ones(weights):
    llm, unclip, clip = (weights / PAPER_HUB_IDS[name] for name in ("llm", "unclip", "clip"))
    assert sorted(p.name for p in llm.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors.index.json", "special_tokens_map.json",
         "tokenizer.json", "tokenizer_config.json", *(f"model-0000{i}-of-00004.safetensors" for i in range(1, 5))])  # fmt: skip
    assert {p.name for p in (unclip / "tokenizer").iterdir()} == {"merges.txt", "vocab.json", "tokenizer_config.json",
                                                                 "special_tokens_map.json"}  # fmt: skip
    assert {"config.json", "preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer.json"} <= {p.name for p in clip.iterdir()}
    index = json.loads((unclip / "model_index.json").read_text())
    assert {k for k in index if not k.startswith("_")} == {p.name for p in unclip.iterdir() if p.is_dir()}

    from neurochat.configs import paper_component

    bookkeeping = {"torch_dtype", "transformers_version", "_diffusers_version"}  # which library wrote it, not the model
    for facts in paper_component("unclip").rglob("*.json"):  # every published key is there, sizes aside
        written = json.loads((unclip / facts.relative_to(paper_component("unclip"))).read_text())
        assert set(json.loads(facts.read_text())) - bookkeeping <= set(written), facts
    assert json.loads((unclip / "unet" / "config.json").read_text())["sample_size"] == 96  # a 768 px decoder

    tokenizer_config = json.loads((llm / "tokenizer_config.json").read_text())
    assert "chat_template" in tokenizer_config and "pad_token" not in tokenizer_config
    assert tokenizer_config["eos_token"] == "<|eot_id|>" and not (llm / "chat_template.jinja").exists()
    generation = json.loads((llm / "generation_config.json").read_text())
    assert len(generation["eos_token_id"]) == 2  # <|end_of_text|> and <|eot_id|>


def test_published_configurations_agree_with_the_code():
    from neurochat.configs import VIT3D_FACTS, llama3_special_tokens, paper_fact
    from neurochat.models.extractor import ExtractorConfig
    from neurochat.preprocess import PAPER_COMMON_GRID, PAPER_PATCH_SIZES

    facts = paper_fact(*VIT3D_FACTS)
    default = ExtractorConfig(layout="vit3d", patch_size=14, n_tokens=1)
    assert (default.layers, default.hidden, default.heads, default.head_hidden, default.clip_dim) == (
        facts["layers"], facts["hidden"], facts["heads"], facts["head_hidden"], facts["clip_dim"])  # fmt: skip
    assert default.alpha == facts["alpha"] and tuple(facts["patch_sizes"]) == PAPER_PATCH_SIZES
    assert tuple(facts["common_grid"]) == PAPER_COMMON_GRID
    special = llama3_special_tokens()
    assert len(special) == 256 and special[9] == "<|eot_id|>" and special[2] == "<|reserved_special_token_0|>"


# -- training, preparation, exploring -----------------------------------------------------------------------


def test_training_writes_every_model_for_the_768px_decoder(trained):
    weights, full = trained
    layout = get_preset("paper", weights).layout
    for r in (14, 12, 10):
        config = json.loads((layout.extractor_dir("vit3d", r) / "config.json").read_text())["extractor"]
        assert config["patch_size"] == r and tuple(config["latent_shape"]) == (4, 96, 96)
    assert (layout.brainllm_dir(stage=1) / "brainllm.json").exists()
    assert (full / "llm" / "config.json").exists()  # full stage 2 trained the LLM: a copy
    lora = json.loads((layout.brainllm_dir() / "brainllm.json").read_text())
    assert lora["adapter"] == "lora" and lora["training"]["stage2"]["config"]["gradient_checkpointing"]


def test_the_paper_network_predicts_the_decoders_latents(nsd_root):
    from neurochat.data import build_preprocessor
    from neurochat.nsd import NSDDataset
    from train.extractor import network_config

    config = network_config("paper", "vit3d", build_preprocessor(NSDDataset(nsd_root), 14), 768, (4, 96, 96))
    assert (config.layers, config.hidden, config.latent_shape, config.clip_dim) == (16, 768, (4, 96, 96), 768)


def test_the_explorer_selects_describes_reconstructs_localizes_and_ablates(explorer):
    subject = explorer.subjects[0]
    state = explorer.select(subject, explorer.first_impression(subject))
    assert tuple(explorer.features(state).vae.shape) == (4, 96, 96)
    turn = explorer.chat(state, "Describe the image concisely.")
    assert isinstance("".join(turn), str) and state.history[-1]["role"] == "assistant"
    pictures = {beta: explorer.reconstruct(state, beta=beta, steps=STEPS) for beta in (0.0, 0.93, 1.0)}
    for picture in pictures.values():
        assert picture.shape == (768, 768, 3) and picture.dtype == np.uint8
    assert not np.array_equal(pictures[0.0], pictures[1.0])
    heatmap = explorer.localize(state, "person")
    assert heatmap.native.shape == explorer.features(state).volume.shape
    assert explorer.ablate(state, ["person"], steps=STEPS).shape == (768, 768, 3)


def test_the_decoder_refuses_latents_it_cannot_process_and_names_them(explorer):
    from neurochat.reconstruct import check_latents

    pipe = explorer.reconstructor.pipe
    check_latents(pipe, torch.zeros(1, 4, 96, 96))
    check_latents(pipe, torch.zeros(1, 4, 64, 64))  # 512 px: another size the UNet can process
    with pytest.raises(DataError, match=r"multiples of 8.*\(4, 96, 96\), a 768 px picture"):
        explorer.reconstructor(torch.zeros(1, 32), torch.zeros(1, 4, 60, 60), steps=STEPS)
    with pytest.raises(DataError, match="4 channels"):
        check_latents(pipe, torch.zeros(1, 3, 96, 96))


def test_one_image_encoder_when_the_decoders_is_clip_l(explorer, weights, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from neurochat.models.unclip import same_image_encoder

    assert explorer.reconstructor.pipe.image_encoder is None  # not loaded: CLIP-L serves
    unclip = weights / PAPER_HUB_IDS["unclip"]
    assert same_image_encoder(unclip, explorer.vision) is True
    other = tmp_path / "unclip"
    shutil.copytree(unclip / "image_encoder", other / "image_encoder")
    state = load_file(other / "image_encoder" / "model.safetensors")
    state["visual_projection.weight"] = torch.randn(state["visual_projection.weight"].shape, generator=torch.Generator().manual_seed(1))
    save_file(state, other / "image_encoder" / "model.safetensors")  # another network's projection
    assert same_image_encoder(other, explorer.vision) is False


def test_preparation_makes_targets_and_tokens_once_and_resumes(trained, nsd_root, cache, tmp_path, capsys):
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.targets import compute_targets
    from train.prepare import main as prepare

    weights, _ = trained
    common = ["--preset", "paper", "--weights", str(weights), "--nsd-root", str(nsd_root), "--no-progress", "--quiet"]
    report = tmp_path / "prepare.json"
    assert prepare([*common, "--json", str(report)]) == 0
    numbers = json.loads(report.read_text())
    assert numbers["targets"]["cached"] and numbers["targets"]["image_size"] == 768  # made by train.extractor
    assert numbers["tokens"]["recordings"] > 0 and Path(numbers["tokens"]["cache"]).exists()

    # an interrupted targets run continues after its last finished batch and gives what one run gives
    dataset, vision = NSDDataset(nsd_root), VisionEncoders.from_preset(get_preset("paper", weights))
    ids = dataset.trials(dataset.subjects[0]).nsd_id[:4]
    whole = compute_targets(dataset, vision, ids, batch_size=2)
    read, calls = dataset.images, []

    def fail_second(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return read(batch)

    dataset.images = fail_second
    with pytest.raises(KeyboardInterrupt):
        compute_targets(dataset, vision, ids, batch_size=2, folder=tmp_path / "targets")
    dataset.images = lambda batch: calls.append(len(batch)) or read(batch)
    resumed = compute_targets(dataset, vision, ids, batch_size=2, folder=tmp_path / "targets")
    assert len(calls) == 3  # the second batch again, nothing before it
    np.testing.assert_allclose(resumed.vae, whole.vae, atol=1e-5)
    np.testing.assert_allclose(resumed.clip, whole.clip, atol=1e-5)


def test_the_app_starts_on_the_paper_preset(trained, nsd_root, cache, tmp_path):
    weights, _ = trained
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "app.py", "--preset", "paper", "--weights", str(weights), "--nsd-root", str(nsd_root),
               "--device", "cpu", "--port", str(port)]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + CHAIN_TIMEOUT_S
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        assert "gradio" in page.lower() and "error:" not in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- memory, precision, messages ------------------------------------------------------------------------------


def test_memory_of_the_paper_preset_fits_one_24gb_gpu(tmp_path):
    from neurochat.bench.__main__ import main as bench

    out = tmp_path / "memory.json"
    assert bench(["memory", "--preset", "paper", "--json", str(out)]) == 0
    numbers = json.loads(out.read_text())
    assert numbers["total_gib_bf16"] <= 22 and numbers["total_gib_4bit"] <= 12 and numbers["latent_shape"] == [4, 96, 96]
    components = numbers["components"]
    assert 14.5 < components["llm (bf16)"] < 15.5 and 1.5 < components["unclip.unet"] < 1.7  # 8.0 B and 0.87 B parameters
    assert not any("image_encoder" in name for name in components)  # CLIP-L serves as the decoder's image encoder


def test_trainable_weights_are_float32_masters_whatever_the_model_was_loaded_in(tmp_path):
    from accelerate import Accelerator

    from neurochat.training.llm import LLMTrainConfig, run_training

    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    frozen = torch.nn.Linear(4, 4).to(torch.bfloat16).requires_grad_(False)
    data = torch.randn(8, 4)

    def loss_fn(m, batch):
        return (frozen(m(batch.to(torch.bfloat16))).float() ** 2).mean()

    config = LLMTrainConfig(stage=1, lr=1e-6, batch_size=4, epochs=1, mixed_precision="bf16")
    before = model.weight.detach().float().clone()
    run_training(model, data, torch.stack, loss_fn, config, tmp_path, accelerator=Accelerator(cpu=True), progress=False)
    assert model.weight.dtype == torch.float32 and frozen.weight.dtype == torch.bfloat16
    assert (model.weight.detach() != before).any()  # a 1e-6 step survives in float32; in bf16 it would round away


def test_loading_problems_say_what_to_do(weights, tmp_path, monkeypatch, caplog):
    import importlib.util
    import shutil

    from neurochat.models.language_model import load_language_model, quantization_config

    with pytest.raises(ConfigError, match="is a model folder, not the weights root"):
        get_preset("paper", weights / PAPER_HUB_IDS["clip"])
    missing = get_preset("paper", tmp_path / "empty")
    assert "huggingface-cli download meta-llama/Meta-Llama-3-8B-Instruct" in missing.missing("llm")
    with pytest.raises(ConfigError, match="not a causal language model"):
        load_language_model(weights / PAPER_HUB_IDS["clip"])
    with pytest.raises(ConfigError, match="holds a diffusers pipeline"):
        load_language_model(weights / PAPER_HUB_IDS["unclip"])

    base = tmp_path / "base-llm"
    shutil.copytree(weights / PAPER_HUB_IDS["llm"], base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING", logger="neurochat.models.language_model"):
        _, tokenizer = load_language_model(base)
    assert "<human>" in tokenizer.chat_template and "copy its original tokenizer_config.json" in caplog.text

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install bitsandbytes.*bf16"):
        quantization_config("4bit", "cuda")


def test_accelerate_configs_are_valid_and_documented():
    from accelerate.commands.config.config_args import ClusterConfig

    stages = {}
    for name in ("ddp", "zero2", "zero3"):
        config = ClusterConfig.from_yaml_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
        stages[name] = (config.distributed_type.value, (config.deepspeed_config or {}).get("zero_stage"))
    assert stages == {"ddp": ("MULTI_GPU", None), "zero2": ("DEEPSPEED", 2), "zero3": ("DEEPSPEED", 3)}
    recipe = (REPO / "docs" / "real_nsd.md").read_text()
    assert all(f"configs/accelerate/{name}.yaml" in recipe for name in stages)
    assert "python -m train.prepare" in recipe and "--annotations" in recipe


def test_the_gpu_check_runs_at_tiny_size_on_a_cpu(cache, tmp_path):
    from neurochat.bench.__main__ import main as bench

    out = tmp_path / "gpu_check.json"
    assert bench(["gpu_check", "--scale", "tiny", "--device", "cpu", "--steps", str(STEPS), "--work", str(tmp_path / "w"),
                  "--json", str(out)]) == 0  # fmt: skip
    numbers = json.loads(out.read_text())
    assert numbers["picture"] == [768, 768, 3] and numbers["localize_method"] in ("encoding", "gradcam")
    assert all(numbers[key] > 0 for key in ("first_token_s", "reconstruct_s", "localize_s", "ablate_s"))
