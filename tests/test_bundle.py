"""The demo chain end to end at micro size: every stage trains, the bundle loads and answers;
the walkthrough notebook runs on it through the public API only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from neurochat.models.bundle import WeightsLayout
from neurochat.paths import REPO_ROOT

STAGES = ["vision_clip", "vision_vae", "vision", "extractor_vit3d_r7", "extractor_vit3d_r6", "extractor_vit3d_r5", "extractor_flattened_r7",
          "extractor_subj01_r7", "extractor_subj02_r7", "extractor_subj05_r7", "extractor_subj07_r7",
          "decoder", "llm0", "llm1", "llm2", "llm_flattened"]  # fmt: skip


def test_micro_chain_trains_every_stage_and_checks_the_explorer(micro_bundle):
    manifest = json.loads(WeightsLayout(micro_bundle).manifest.read_text())
    assert set(manifest["stages"]) == set(STAGES)
    assert all(stage["done"] for stage in manifest["stages"].values())
    # built with --jobs 2: each stage ran in its own process with its own log, which is not part of the bundle
    assert {log.stem for log in (micro_bundle / "logs").glob("*.log")} == set(STAGES)
    assert not any(name.startswith("logs/") or name.endswith(".lock") for name in manifest["files"])
    # bf16 autocast where this CPU multiplies bf16 natively, recorded, and passed to the stages that use it
    from neurochat.training.precision import resolve_mixed_precision

    assert manifest["mixed_precision"] == resolve_mixed_precision("auto")
    llm1_command = manifest["stages"]["llm1"]["commands"][0]
    assert ("--mixed-precision bf16" in llm1_command) == (manifest["mixed_precision"] == "bf16")
    check = manifest["check"]
    assert check["picture_shape"] == [64, 64, 3] and isinstance(check["answer"], str) and check["concept"]
    files = manifest["files"]
    assert "extractor/vit3d_r7/model.safetensors" in files and "unclip/unet/diffusion_pytorch_model.safetensors" in files
    assert all(len(record["sha256"]) == 64 and record["bytes"] > 0 for record in files.values())
    # weights are stored as float16 (the pack stage) and the check above ran on them
    assert manifest["pack"]["files_halved"] > 0 and manifest["pack"]["bytes_after"] < manifest["pack"]["bytes_before"]
    from safetensors import safe_open

    with safe_open(str(micro_bundle / "unclip/unet/diffusion_pytorch_model.safetensors"), framework="pt") as unet:
        assert {str(unet.get_slice(name).get_dtype()) for name in unet.keys()} == {"F16"}
    # every component scored on the test set, so a rebuild can be compared with the committed bundle
    evaluation = manifest["evaluation"]
    assert 0.0 <= evaluation["extractor"]["vit3d"]["averaged"]["clip_2way"] <= 1.0
    assert set(evaluation["llm"]["brief"]) == {"bleu1", "bleu4", "cider", "concept_recall", "case_sd", "case_n"}
    assert set(evaluation["llm"]["case_n"]) == {"localization_parse_rate", "reconstruction_prompt_hit_rate",
                                                "reconstruction_prompt_hit_rate_plain"}  # fmt: skip
    assert "averaged" in evaluation["decoder"]["no_llm"] and 0.0 <= evaluation["localization"]["auc"]["ensemble"] <= 1.0
    assert evaluation["localization"]["ablation"]["n"] == 1
    # what the ablated picture shows: the object gone, the scene kept
    assert 0.0 <= evaluation["localization"]["ablation"]["scene_kept"] <= 1.0
    # the reconstructions are scored under several diffusion seeds, and their spread is kept for `--compare`
    assert evaluation["sizes"]["seeds"] == 2
    assert set(evaluation["decoder"]["no_llm"]["averaged"]["seed_sd"]) == {"pixcorr", "ssim", "clip_2way", "object_hit"}
    # and the decoder alone, from the true CLIP embeddings: can it draw the objects at all?
    assert set(evaluation["decoder_oracle"]["oracle"]) == {"object_hit", "clip_2way"}
    # and the localization means keep their spread over the cases, for the same purpose
    assert set(evaluation["localization"]["auc"]["case_sd"]) == {"ensemble"}
    assert set(evaluation["localization"]["ablation"]["case_sd"]) == {"removed_below_others", "drop_removed", "drop_others"}


def test_the_bundle_ships_each_subject_s_encoding_maps_and_a_fresh_machine_reads_them(micro_bundle, sim_root, tmp_path):
    """The first concept map in a subject reads the bundle's statistics: nothing is fitted."""
    import numpy as np

    from neurochat.explorer import Explorer

    manifest = json.loads(WeightsLayout(micro_bundle).manifest.read_text())
    shipped = sorted(name for name in manifest["files"] if name.startswith("encoding_maps/"))
    assert manifest["encoding_maps"]["files"] == len(shipped) == 4 * 3  # every subject, every extractor
    explorer = Explorer.load("demo", nsd_root=sim_root, weights=micro_bundle, device="cpu", log=lambda *_: None)
    explorer.localizer.store.cache = tmp_path  # a machine that never fitted anything

    class NoFit:
        """The dataset's recordings, except that reading them for a fit fails the test."""

        def __init__(self, inner):
            self.fingerprint, self.portable_fingerprint = inner.fingerprint, inner.portable_fingerprint

        def __call__(self, subject):
            raise AssertionError(f"{subject} was fitted although the bundle ships its statistics")

    explorer.localizer.references = NoFit(explorer.localizer.references)
    for subject in explorer.subjects:
        state = explorer.select(subject, explorer.trial_choices(subject)[0].nsd_id)
        heatmap = explorer.localize(state, explorer.true_concepts(state)[0])
        assert heatmap.method == "encoding" and np.isfinite(heatmap.native).all() and heatmap.native.max() == 1.0
    assert not list(tmp_path.iterdir())  # read from the bundle, so nothing was written to the cache


def test_two_evaluations_are_put_side_by_side():
    from train.bundle_evaluation import compare_evaluations

    ours = {"sizes": {"per_subject": 1}, "extractor": {"vit3d": {"averaged": {"clip_2way": 0.95}}}, "llm": {"rate": None}}
    theirs = {"sizes": {"per_subject": 10}, "extractor": {"vit3d": {"averaged": {"clip_2way": 0.96}}}}
    assert compare_evaluations(ours, theirs) == ["extractor.vit3d.averaged.clip_2way: 0.9500 vs 0.9600 (-0.0100)"]


def test_a_comparison_counts_the_files_a_rebuild_reproduced_bitwise():
    from train.bundle_evaluation import compare_files

    def record(sha):
        return {"sha256": sha, "bytes": 1}

    ours = {"clip/model.safetensors": record("a"), "unet/model.safetensors": record("b"), "manifest.json": record("c"),
            "extra.safetensors": record("d")}  # fmt: skip
    theirs = {"clip/model.safetensors": record("a"), "unet/model.safetensors": record("x"), "manifest.json": record("y"),
              "llm/model.safetensors": record("z")}  # fmt: skip
    assert compare_files(ours, theirs) == [
        "files: 1 of the 3 files both bundles hold are bitwise identical; weights (.safetensors): 1 of 2",
        "differs: manifest.json",
        "differs: unet/model.safetensors",
        "only in the other bundle: 1 files (e.g. llm/model.safetensors)",
    ]


def test_a_comparison_says_whether_a_reconstruction_number_moved_beyond_its_diffusion_seed_noise():
    from train.bundle_evaluation import compare_evaluations

    def evaluation(clip_2way, sd=None, seeds=None):
        scores = {"clip_2way": clip_2way, **({"seed_sd": {"clip_2way": sd}} if sd is not None else {})}
        return {"sizes": {"seeds": seeds} if seeds else {}, "decoder": {"no_llm": {"averaged": scores}}}

    # 3 seeds each, spread 0.03: two standard errors of the difference are 2 · 0.03 · √(2/3) = 0.049
    assert compare_evaluations(evaluation(0.90, 0.03, 3), evaluation(0.94, 0.03, 3)) == [
        "decoder.no_llm.averaged.clip_2way: 0.9000 vs 0.9400 (-0.0400) within noise (±0.0490, diffusion seeds)"]
    assert compare_evaluations(evaluation(0.85, 0.03, 3), evaluation(0.94, 0.03, 3))[0].endswith(
        "BEYOND noise (±0.0490, diffusion seeds)")
    # an older manifest scored one seed and kept no spread: this side's spread stands for both
    assert compare_evaluations(evaluation(0.90, 0.03, 3), evaluation(0.94)) == [
        "decoder.no_llm.averaged.clip_2way: 0.9000 vs 0.9400 (-0.0400) within noise (±0.0693, diffusion seeds)"]


def test_a_comparison_says_whether_a_localization_mean_moved_beyond_the_sampling_of_its_cases():
    from train.bundle_evaluation import compare_evaluations

    def evaluation(share, sd=None, n=100):
        ablation = {"removed_below_others": share, "n": n, **({"case_sd": {"removed_below_others": sd}} if sd else {})}
        return {"localization": {"ablation": ablation}}

    # 100 cases each, spread 0.5 (a share near one half): 2 · √(0.25/100 + 0.25/100) = 0.1414
    assert compare_evaluations(evaluation(0.50, 0.5), evaluation(0.60, 0.5))[0] == (
        "localization.ablation.removed_below_others: 0.5000 vs 0.6000 (-0.1000) within noise (±0.1414, sampling of the cases)")
    assert "BEYOND noise" in compare_evaluations(evaluation(0.40, 0.5), evaluation(0.60, 0.5))[0]
    # an older manifest kept no spread: this side's stands for both, over that side's own count
    assert compare_evaluations(evaluation(0.50, 0.5, 40), evaluation(0.60, None, 40))[0].endswith(
        "within noise (±0.2236, sampling of the cases)")
    # a share whose count is its own (here 25 objects named or not, not the recordings)
    recall = {"llm": {"brief": {"concept_recall": 0.40, "case_sd": {"concept_recall": 0.5}, "case_n": {"concept_recall": 25}},
                      "n": 1000}}  # fmt: skip
    assert compare_evaluations(recall, recall)[0] == (
        "llm.brief.concept_recall: 0.4000 vs 0.4000 (+0.0000) within noise (±0.2828, sampling of the cases)")
    # against an older manifest that kept neither spread nor count
    assert compare_evaluations(recall, {"llm": {"brief": {"concept_recall": 0.45}}})[0].endswith(
        "within noise (±0.2828, sampling of the cases)")


def test_reconstruction_scores_under_several_seeds_are_their_means_with_the_spread_beside():
    from neurochat.evaluate.recon import mean_over_seeds

    by_seed = [{"pixcorr": 0.6, "clip_2way": 0.90, "alexnet2": None}, {"pixcorr": 0.7, "clip_2way": 0.94, "alexnet2": None}]
    scores = mean_over_seeds(by_seed)
    assert scores["pixcorr"] == pytest.approx(0.65) and scores["clip_2way"] == pytest.approx(0.92) and scores["alexnet2"] is None
    assert scores["seed_sd"] == pytest.approx({"pixcorr": 0.1 / 2**0.5, "clip_2way": 0.04 / 2**0.5})
    assert "seed_sd" not in mean_over_seeds(by_seed[:1])  # one seed has no spread


def test_walkthrough_notebook_runs_on_the_micro_bundle(micro_bundle, sim_root, tmp_path):
    env = {**os.environ, "NEUROCHAT_WEIGHTS": str(micro_bundle), "NEUROCHAT_NSD_ROOT": str(sim_root),
           "NEUROCHAT_NOTEBOOK_OUT": str(tmp_path)}  # fmt: skip
    result = subprocess.run([sys.executable, str(REPO_ROOT / "notebooks/walkthrough.py")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reconstructions.png").exists()
    assert any(p.name.startswith("without_") for p in tmp_path.iterdir())
    assert "Q: Describe the image concisely." in result.stdout


def test_notebook_pair_is_in_sync():
    before = (REPO_ROOT / "notebooks/walkthrough.ipynb").read_text()
    subprocess.run([sys.executable, str(REPO_ROOT / "notebooks/sync.py")], check=True)
    assert (REPO_ROOT / "notebooks/walkthrough.ipynb").read_text() == before, "run python notebooks/sync.py"


def test_scoring_a_bundle_again_keeps_the_records_of_files_left_out_of_git(micro_bundle, sim_root, tmp_path):
    """`--only evaluate` on a checkout without the uncommitted intermediates must not drop their sha256."""
    import shutil

    from train.demo_bundle import main as bundle_main

    bundle = tmp_path / "bundle"
    shutil.copytree(micro_bundle, bundle)
    left_out = "brainllm_flattened/projector.safetensors"  # not committed (60 MB budget), not needed to run
    built = json.loads(WeightsLayout(bundle).manifest.read_text())
    record = built["files"][left_out]
    (bundle / left_out).unlink()
    assert bundle_main(["--out", str(bundle), "--size", "micro", "--nsd-root", str(sim_root), "--only", "evaluate"]) == 0
    manifest = json.loads(WeightsLayout(bundle).manifest.read_text())
    assert manifest["files"][left_out] == record and "evaluation" in manifest
    # the build's command and time stay; the partial run is recorded beside them
    assert (manifest["command"], manifest["seconds_this_run"]) == (built["command"], built["seconds_this_run"])
    assert manifest["last_partial_run"]["command"].endswith("--only evaluate") and manifest["last_partial_run"]["seconds"] > 0


def test_parallel_stages_wait_for_what_they_read():
    from train.bundle_plan import stage_commands, stage_needs

    plan = list(stage_commands("micro", REPO_ROOT / "unused", REPO_ROOT / "unused"))
    assert set(STAGES) == set(plan)
    for stage in plan:  # every stage a stage reads is planned, and planned before it
        assert all(need in plan and plan.index(need) < plan.index(stage) for need in stage_needs(stage)), stage
    assert stage_needs("llm1") == ["llm0", "extractor_vit3d_r7"] and stage_needs("extractor_subj05_r7") == ["vision"]
    assert stage_needs("llm0") == [] and stage_needs("vision") == ["vision_clip", "vision_vae"]
    assert stage_needs("vision_clip") == stage_needs("vision_vae") == []  # CLIP and VAE train side by side
    # every run of every stage keeps to the threads it is given (two one-thread lanes on two cores)
    runs = [argv for stage in stage_commands("demo", REPO_ROOT / "unused", REPO_ROOT / "unused", 1).values() for _, argv in stage]
    assert all(argv[argv.index("--threads") + 1] == "1" for argv in runs if "--threads" in argv) and all("--threads" in a for a in runs)


def test_the_extractors_whose_tokens_the_llm_reads_train_the_papers_30_epochs():
    """At 8 epochs the main extractor scored as at 30, but the LLM trained on its tokens fell beyond noise."""
    from train.bundle_plan import stage_commands

    plan = stage_commands("demo", REPO_ROOT / "unused", REPO_ROOT / "unused")

    def epochs(stage: str) -> int:
        (_, argv), = plan[stage]
        return int(argv[argv.index("--epochs") + 1])

    assert epochs("extractor_vit3d_r7") == epochs("extractor_flattened_r7") == 30
    assert epochs("extractor_vit3d_r6") == epochs("extractor_vit3d_r5") == epochs("extractor_subj01_r7") == 8


def test_bf16_autocast_is_asked_for_only_where_it_pays():
    """The VAE, the extractors and the LLM stages train in 0.5-0.8x the time under bf16 autocast on a CPU
    with native bf16; the decoder gains nothing and CLIP stays float32 until measured cleanly; with "no"
    every stage is float32."""
    from train.bundle_plan import stage_commands

    def flags(mixed_precision: str) -> dict[str, set[str]]:
        plan = stage_commands("demo", REPO_ROOT / "unused", REPO_ROOT / "unused", 1, mixed_precision)
        return {stage: {a for _, argv in runs for a in argv if a.endswith("mixed-precision")} for stage, runs in plan.items()}

    bf16 = flags("bf16")
    assert {stage for stage, f in bf16.items() if f} == set(STAGES) - {"vision_clip", "vision", "decoder"}
    assert bf16["vision_vae"] == {"--vae-mixed-precision"} and bf16["llm_flattened"] == {"--mixed-precision"}
    assert not any(flags("no").values())


def test_auto_precision_is_bf16_only_where_the_machine_multiplies_bf16_natively(monkeypatch):
    from neurochat.errors import ConfigError
    from neurochat.training import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": False)
    assert precision.resolve_mixed_precision("auto") == "no" and precision.resolve_mixed_precision("bf16") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)
    assert precision.resolve_mixed_precision("auto") == "bf16" and precision.resolve_mixed_precision("no") == "no"
    with pytest.raises(ConfigError, match="mixed_precision='half'"):
        precision.resolve_mixed_precision("half")


def test_precision_bench_times_both_variants_of_the_demo_models(tmp_path, capsys):
    from neurochat.bench.__main__ import main as bench_main

    from neurochat.presets import get_preset

    if not (get_preset("demo").unclip_dir / "vae" / "config.json").exists():
        pytest.skip("no committed demo bundle")
    assert bench_main(["precision", "--steps", "1", "--only", "vae", "extractor_r7", "--json", str(tmp_path / "p.json")]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert [row["model"] for row in rows] == ["vae", "extractor_r7"]
    assert all(row["float32_s"] > 0 and row["bf16_s"] > 0 and abs(row["first_loss_bf16"] / row["first_loss_float32"] - 1) < 0.1
               for row in rows)  # fmt: skip
    assert "bf16 / float32" in capsys.readouterr().out


def test_stages_start_by_how_many_wait_on_them_then_longest_first():
    from train.bundle_plan import ONE_THREAD_SECONDS, stage_commands, start_order

    plan = list(stage_commands("demo", REPO_ROOT / "unused", REPO_ROOT / "unused"))
    assert set(ONE_THREAD_SECONDS) == set(plan)  # a new stage needs its cost, or it would start last
    order = start_order(plan)
    assert order[:5] == ["vision_vae", "vision_clip", "vision", "llm0", "extractor_vit3d_r7"]  # what most stages wait on
    # among the stages nothing waits on, the decoder (longest) goes before r = 6 and the subject models
    assert order.index("decoder") < order.index("extractor_vit3d_r6") < order.index("extractor_subj01_r7")


def test_a_failing_stage_process_stops_the_parallel_run_and_names_its_log(tmp_path):
    import pytest

    from train.bundle_plan import run_in_parallel

    out = tmp_path / "bundle"
    base_argv = ["--out", str(out), "--size", "micro", "--nsd-root", str(tmp_path / "no_such_tree"), "--threads", "1"]
    with pytest.raises(SystemExit, match=r"llm0 failed: see their logs in .*logs"):  # stage 0 reads the missing tree
        run_in_parallel(["llm0", "llm1"], {"extractor_vit3d_r7"}, 2, base_argv, out / "logs")
    assert "no_such_tree" in (out / "logs" / "llm0.log").read_text()  # the child's own error is kept there
    assert not (out / "logs" / "llm1.log").exists()  # what waits on a failed stage never starts


def test_a_cut_off_decoder_run_resumes_where_it_stopped(micro_bundle, tmp_path):
    """The decoder trains for hours on a CPU: a run stopped by its time budget (or killed) continues
    from its last saved state when the same command runs again, and ends where one uninterrupted run ends."""
    import shutil

    import pytest
    from safetensors.torch import load_file

    from neurochat.errors import ConfigError
    from train.unclip import main as unclip_main

    argv = ["--clip", str(WeightsLayout(micro_bundle).clip_dir), "--tiny", "--pool-size", "16", "--batch-size", "4",
            "--no-progress", "--threads", "1", "--steps", "4", "--checkpoint-every", "1"]  # fmt: skip
    folders = {}
    for name in ("whole", "cut"):
        folders[name] = tmp_path / name
        shutil.copytree(WeightsLayout(micro_bundle).unclip_dir, folders[name])
        shutil.rmtree(folders[name] / "unet")
    assert unclip_main([*argv, "--out", str(folders["whole"])]) == 0
    assert unclip_main([*argv, "--out", str(folders["cut"]), "--max-seconds", "0"]) == 0  # stops after one step
    record = json.loads((folders["cut"] / "decoder_training.json").read_text())
    assert (record["steps"], record["finished"]) == (1, False)
    assert (folders["cut"] / "unet").is_dir()  # the partial decoder is usable while training goes on
    assert unclip_main([*argv, "--out", str(folders["cut"])]) == 0
    record = json.loads((folders["cut"] / "decoder_training.json").read_text())
    assert (record["steps"], record["finished"]) == (4, True)
    assert not (folders["cut"] / "training_state").exists()  # a finished run leaves only the pipeline
    weights = [load_file(str(folders[n] / "unet" / "diffusion_pytorch_model.safetensors")) for n in ("whole", "cut")]
    assert all(torch_equal(weights[0][k], weights[1][k]) for k in weights[0])
    # a saved state of another recipe is not silently mixed in
    assert unclip_main([*argv, "--out", str(folders["whole"]), "--max-seconds", "0"]) == 0
    with pytest.raises(ConfigError, match="another recipe"):
        unclip_main([*argv, "--out", str(folders["whole"]), "--lr", "1e-3"])
    # a run whose state was lost continues from the saved UNet, at the step its record names
    shutil.rmtree(folders["cut"] / "training_state", ignore_errors=True)
    warm = [*argv, "--steps", "6", "--warm-start"]  # the last --steps wins
    assert unclip_main([*warm, "--out", str(folders["cut"])]) == 0
    record = json.loads((folders["cut"] / "decoder_training.json").read_text())
    assert (record["steps"], record["finished"]) == (6, True)
    continued = load_file(str(folders["cut"] / "unet" / "diffusion_pytorch_model.safetensors"))
    assert not all(torch_equal(weights[1][k], continued[k]) for k in continued)
    (folders["cut"] / "decoder_training.json").unlink()
    with pytest.raises(ConfigError, match="decoder_training.json is missing"):
        unclip_main([*warm, "--steps", "8", "--out", str(folders["cut"])])


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_one_command_writes_the_whole_report_with_captions_and_reconstructions_sized_apart(micro_bundle, sim_root, tmp_path,
                                                                                           monkeypatch):  # fmt: skip
    """`evaluate all` alone makes the committed report: captions on every test image, the slow reconstructions on fewer."""
    import neurochat.evaluate.caption as caption
    import neurochat.evaluate.recon as recon
    from neurochat.evaluate.__main__ import main as evaluate_main

    sizes = {}  # the test images per subject each evaluation was asked for

    def recording_size(name, real):
        def evaluate(*args, **kwargs):
            sizes[name] = kwargs["per_subject"]
            return real(*args, **kwargs)

        return evaluate

    for module, name in ((caption, "evaluate_captions"), (recon, "evaluate_reconstruction")):
        monkeypatch.setattr(module, name, recording_size(name, getattr(module, name)))
    out = tmp_path / "reports"
    argv = ["all", "--preset", "demo", "--weights", str(micro_bundle), "--nsd-root", str(sim_root), "--out", str(out),
            "--recon-per-subject", "1", "--max-recordings", "2", "--ablation-cases", "1", "--steps", "2"]  # fmt: skip
    assert evaluate_main(argv) == 0
    assert sizes == {"evaluate_captions": None, "evaluate_reconstruction": 1}  # None: the whole test set
    report = (out / "REPORT.md").read_text()
    assert f"Produced by `python -m neurochat.evaluate {' '.join(argv)}`" in report
    assert "measured again" not in report  # one command, no section reruns
    for figure in ("beta_sweep.png", "beta_grid.png", "glass_brains.png", "ablation_grid.png"):
        assert (out / figure).stat().st_size > 0, figure
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"extractor", "caption", "recon", "localize"}
