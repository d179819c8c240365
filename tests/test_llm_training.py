"""LLM training through `train/llm.py`: stage 0 (demo LM), stage 1 (projector), stage 2 (full, LoRA).

A tiny random Llama folder and a tiny random extractor checkpoint stand in for the trained ones;
every stage runs two optimizer steps on one subject of the small SimNSD tree.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from neurochat.bench import chat as chat_bench
from neurochat.data import TrialBank, build_preprocessor
from neurochat.errors import ConfigError
from neurochat.language import build_extension
from neurochat.models.brainllm import CONFIG_NAME, PROJECTOR_NAME, BrainLLM, load_brainllm, load_language_model
from neurochat.models.demo_llm import DemoLLMConfig, build_llm, extension_texts, train_tokenizer
from neurochat.models.extractor import (
    ExtractorBundle,
    ExtractorConfig,
    FMRIExtractor,
    load_extractor,
    save_extractor,
    token_coordinates,
    token_count,
)
from neurochat.nsd import NSDDataset
from neurochat.training.llm import LLMTrainConfig, _LengthGroupedPermutation, extract_fmri, fmri_key, run_training
from train.llm import main as train_main

SUBJECT = "subj01"
STEPS = ["--max-steps", "2", "--batch-size", "4", "--eval-samples", "4", "--subject", SUBJECT, "--no-progress"]


@pytest.fixture(scope="module")
def extractor_dir(sim_root, tmp_path_factory):
    preprocessor = build_preprocessor(NSDDataset(sim_root), patch_size=4)
    torch.manual_seed(0)
    config = ExtractorConfig(layout="vit3d", patch_size=4, n_tokens=token_count(preprocessor, "vit3d"), hidden=24,
                             layers=2, heads=2, head_hidden=16, clip_dim=8, latent_shape=(2, 4, 4))  # fmt: skip
    model = FMRIExtractor(config, token_coordinates(preprocessor, "vit3d"))
    return save_extractor(ExtractorBundle(model, preprocessor, {}), tmp_path_factory.mktemp("extractor"))


@pytest.fixture(scope="module")
def lm_dir(sim_root, tmp_path_factory):
    """A tiny randomly initialised Llama in the standard folder layout (tokenizer without <image>)."""
    train, _, _ = build_extension(NSDDataset(sim_root), seed=0, subjects=[SUBJECT])
    tokenizer = train_tokenizer(extension_texts(train), 4096, image_token=None, context=256)
    folder = tmp_path_factory.mktemp("tiny_llm")
    build_llm(tokenizer, DemoLLMConfig(hidden=32, layers=2, heads=2, intermediate=64, context=256)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def stage1(sim_root, extractor_dir, lm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    code = train_main(["--stage", "1", "--nsd-root", str(sim_root), "--extractor", str(extractor_dir), "--llm",
                       str(lm_dir), "--out", str(out), *STEPS])  # fmt: skip
    assert code == 0
    return out


def _stage2(sim_root, extractor_dir, stage1, out, *extra):
    code = train_main(["--stage", "2", "--nsd-root", str(sim_root), "--extractor", str(extractor_dir), "--init",
                       str(stage1), "--out", str(out), *STEPS, *extra])  # fmt: skip
    assert code == 0
    return out


def _lm_state(lm) -> dict:
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    # peft renames wrapped weights "q_proj.base_layer.weight"; compare under the plain names
    return {k.replace(".base_layer", ""): v.clone() for k, v in base.state_dict().items() if "lora_" not in k}


def _assert_same(a: dict, b: dict, same: bool = True):
    assert a.keys() == b.keys()
    equal = all(torch.equal(a[k], b[k]) for k in a)
    assert equal == same


def test_stage1_trains_the_projector_only(stage1, lm_dir, extractor_dir):
    saved = json.loads((stage1 / CONFIG_NAME).read_text())
    assert saved["training"]["stage1"]["steps"] == 2
    assert saved["extractor"]["folder"] == str(extractor_dir.resolve()) and saved["extractor"]["sha256_16"]
    assert saved["n_fmri_tokens"] == 1 + load_extractor(extractor_dir).config.n_tokens
    assert not (stage1 / "llm").exists()  # the frozen LM is referenced, not copied
    model = load_brainllm(stage1)
    lm, _ = load_language_model(lm_dir)
    _assert_same(_lm_state(model.lm), _lm_state(lm))  # the LLM did not change ...
    fresh = BrainLLM.from_language_model(lm_dir, model.config.fmri_hidden, model.config.n_fmri_tokens, seed=0)
    _assert_same(model.projector.state_dict(), fresh.projector.state_dict(), same=False)  # ... f_t did
    assert saved["training"]["stage1"]["example"]["reply"] is not None
    assert np.isfinite(saved["training"]["stage1"]["val_loss"])


def test_stage2_full_trains_the_llm_and_the_projector(sim_root, extractor_dir, stage1, lm_dir, tmp_path):
    out = _stage2(sim_root, extractor_dir, stage1, tmp_path / "full")
    saved = json.loads((out / CONFIG_NAME).read_text())
    assert set(saved["training"]) == {"stage1", "stage2"} and saved["language_model"] == "llm"
    model, before = load_brainllm(out), load_brainllm(stage1)
    _assert_same(_lm_state(model.lm), _lm_state(before.lm), same=False)
    _assert_same(model.projector.state_dict(), before.projector.state_dict(), same=False)
    # reload: identical greedy generations
    fmri = torch.randn(model.config.n_fmri_tokens, model.config.fmri_hidden, generator=torch.Generator().manual_seed(0))
    assert load_brainllm(out).generate(fmri, "Describe the image.", max_new_tokens=6) == model.generate(
        fmri, "Describe the image.", max_new_tokens=6
    )


def test_stage2_lora_changes_only_adapters_and_projector(sim_root, extractor_dir, stage1, tmp_path):
    out = _stage2(sim_root, extractor_dir, stage1, tmp_path / "lora", "--lora", "--lora-r", "4", "--lr", "1e-2")
    saved = json.loads((out / CONFIG_NAME).read_text())
    assert saved["adapter"] == "lora" and not (out / "llm").exists()
    assert saved["training"]["stage2"]["config"]["lora"] is True
    model, before = load_brainllm(out), load_brainllm(stage1)
    assert model.has_adapter
    _assert_same(_lm_state(model.lm), _lm_state(before.lm))  # base weights untouched
    adapters = load_file(out / "lora" / "adapter_model.safetensors")
    assert adapters and all("lora_" in k for k in adapters)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in adapters.items())  # B starts at 0
    _assert_same(model.projector.state_dict(), before.projector.state_dict(), same=False)
    assert set(load_file(out / PROJECTOR_NAME)) == set(before.projector.state_dict())
    # merged and unmerged adapters answer alike
    fmri = torch.randn(model.config.n_fmri_tokens, model.config.fmri_hidden, generator=torch.Generator().manual_seed(1))
    merged = load_brainllm(out, merge_lora=True)
    assert not merged.has_adapter
    a = model.generate(fmri, "Describe the image.", max_new_tokens=6)
    assert merged.generate(fmri, "Describe the image.", max_new_tokens=6).token_ids == a.token_ids


def test_stage0_pretrains_a_demo_llm_folder(sim_root, tmp_path):
    out = tmp_path / "llm"
    assert train_main(["--stage", "0", "--tiny", "--nsd-root", str(sim_root), "--out", str(out), "--tasks", "brief",
                       *STEPS]) == 0  # fmt: skip
    facts = json.loads((out / "neurochat_training.json").read_text())
    assert facts["steps"] == 2 and np.isfinite(facts["val_loss"])
    lm, tokenizer = load_language_model(out)
    assert (out / "chat_template.jinja").exists() and "<image>" in tokenizer.get_vocab()
    assert lm.config.vocab_size == len(tokenizer)
    assert not (out / "training_state").exists()


def test_stage0_under_bf16_autocast_records_it_and_keeps_float32_weights(sim_root, tmp_path):
    out = tmp_path / "llm_bf16"
    assert train_main(["--stage", "0", "--tiny", "--nsd-root", str(sim_root), "--out", str(out), "--tasks", "brief",
                       "--mixed-precision", "bf16", *STEPS]) == 0  # fmt: skip
    facts = json.loads((out / "neurochat_training.json").read_text())
    assert facts["config"]["mixed_precision"] == "bf16" and np.isfinite(facts["val_loss"])
    lm, _ = load_language_model(out)
    assert all(p.dtype == torch.float32 for p in lm.parameters())


def test_fmri_inputs_average_the_repetitions_of_a_test_image(sim_root, extractor_dir):
    bundle = load_extractor(extractor_dir)
    dataset = NSDDataset(sim_root)
    bank = TrialBank(dataset, bundle.preprocessor, subjects=[SUBJECT])
    _, test, _ = build_extension(dataset, seed=0, subjects=[SUBJECT], tasks=["brief"])
    sample = test[0]
    assert len(sample["trials"]) > 1
    averaged, single = fmri_key(sample), fmri_key(sample, "single")
    features = extract_fmri(bundle, bank, [averaged, single])
    rows = bank.rows_of(SUBJECT, np.array(sample["trials"]))
    with torch.no_grad():
        expected = bundle.model(bank.tokens(SUBJECT, bank.voxels[SUBJECT][rows].mean(axis=0)[None]).float()).penultimate
        first = bundle.model(bank.tokens(SUBJECT, bank.voxels[SUBJECT][rows[:1]]).float()).penultimate
    torch.testing.assert_close(features.batch([averaged]), expected, atol=2e-2, rtol=2e-3)  # float16 cache
    torch.testing.assert_close(features.batch([single]), first, atol=2e-2, rtol=2e-3)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    """Two epochs of two steps; the first run dies in epoch 2, the second finishes it: the weights
    equal an uninterrupted run's."""
    data = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    config = LLMTrainConfig(stage=1, epochs=2, batch_size=4, lr=0.1)

    def train(out, fail_at=None):
        from accelerate import Accelerator

        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        calls = []

        def loss_fn(m, batch):
            calls.append(1)
            if fail_at is not None and len(calls) == fail_at:
                raise KeyboardInterrupt
            return (m(batch) ** 2).mean()

        result = run_training(model, data, torch.stack, loss_fn, config, out, accelerator=Accelerator(cpu=True),
                              progress=False)  # fmt: skip
        return model, result

    reference, _ = train(tmp_path / "reference")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", fail_at=3)
    resumed, result = train(tmp_path / "resumed")
    assert result["steps"] == 4 and [h["epoch"] for h in result["history"]] == [1, 2]
    torch.testing.assert_close(resumed.weight, reference.weight)
    # other settings over a saved state are refused
    config = LLMTrainConfig(stage=1, epochs=3, batch_size=4, lr=0.1)
    with pytest.raises(ConfigError, match="other settings"):
        run_training(torch.nn.Linear(3, 1), data, torch.stack, lambda m, b: m(b).mean(), config, tmp_path / "resumed",
                     accelerator=__import__("accelerate").Accelerator(cpu=True), progress=False)  # fmt: skip


def test_length_grouped_batches_hold_samples_of_similar_length():
    """Every sample once per epoch, in full batches of similar length (short one last), a new order
    each epoch: far less padding than random batches."""
    lengths = np.random.default_rng(1).integers(20, 200, size=1003)
    sampler = _LengthGroupedPermutation(lengths, batch_size=16, seed=0, group=10)
    order = list(sampler)
    assert sorted(order) == list(range(1003))
    batches = [np.array(b) for b in torch.utils.data.BatchSampler(order, 16, drop_last=False)]
    assert [len(b) for b in batches[:-1]] == [16] * 62 and len(batches[-1]) == 1003 - 62 * 16
    padded = np.mean([lengths[b].max() for b in batches])
    shuffled = np.random.default_rng(0).permutation(1003)
    assert padded < 0.75 * np.mean([lengths[shuffled[i : i + 16]].max() for i in range(0, 1003, 16)])
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_missing_inputs_are_explained(sim_root, extractor_dir, tmp_path):
    with pytest.raises(ConfigError, match="train.extractor"):
        train_main(["--stage", "1", "--nsd-root", str(sim_root), "--extractor", str(tmp_path / "none"), *STEPS])
    with pytest.raises(ConfigError, match="--stage 1"):
        train_main(["--stage", "2", "--nsd-root", str(sim_root), "--extractor", str(extractor_dir), "--init",
                    str(tmp_path / "none"), *STEPS])  # fmt: skip
    with pytest.raises(ConfigError, match="paper preset starts from Llama-3"):
        train_main(["--stage", "0", "--preset", "paper", "--weights", str(tmp_path), "--nsd-root", str(sim_root)])
    with pytest.raises(ConfigError, match="LoRA adapters belong to stage 2"):
        LLMTrainConfig(stage=1, lora=True)


def _bench_args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    chat_bench.add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(overrides)
    return args


def test_chat_bench_reports_first_token_and_rate(sim_root, stage1, tmp_path, capsys):
    path = tmp_path / "chat.json"
    args = _bench_args(brainllm=str(stage1), nsd_root=str(sim_root), runs=2, max_new_tokens=4, json=str(path))
    assert chat_bench.run(args) == 0
    numbers = json.loads(path.read_text())
    assert numbers["first_token_s"] > 0 and numbers["runs"] == 2
    assert "time to first token" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="python -m train.llm --stage 0 --preset demo"):
        chat_bench.run(_bench_args(brainllm=str(tmp_path / "missing")))


def test_object_probe_reports_shares_of_the_test_recordings(sim_root, extractor_dir):
    from neurochat.evaluate.probe import object_probe

    result = object_probe(NSDDataset(sim_root), load_extractor(extractor_dir), steps=20)
    assert result["n_test"] > 0 and result["n_train"] > result["n_test"] and result["objects"] > 2
    assert 0 <= result["top1"] <= result["top2"] <= 1 and 0 <= result["train_top1"] <= 1


def test_voxel_references_report_both_readers(sim_root, extractor_dir):
    from neurochat.data import TrialBank
    from neurochat.evaluate.probe import voxel_references
    from neurochat.models.vision import VisionEncoders
    from neurochat.presets import get_preset

    preset = get_preset("demo")
    if not (preset.clip_dir / "config.json").exists():
        pytest.skip("the demo CLIP is not in checkpoints/demo")
    dataset = NSDDataset(sim_root)
    result = voxel_references(dataset, TrialBank(dataset, load_extractor(extractor_dir).preprocessor),
                              VisionEncoders.from_preset(preset))  # fmt: skip
    assert result["n_test"] > 0
    for reader in ("objects", "clip_zero_shot"):
        assert 0 <= result[reader]["top1"] <= result[reader]["top2"] <= 1
    # the objects are in the phantom's voxels: even on the tiny tree's few trials a direct reader
    # beats chance (about 2 of ~40 objects in a picture: 5%) several times over
    assert result["objects"]["top1"] > 0.1, result
