"""The two shared owners: `neurochat.models.bundle` (the folders of a weights root, and loading what is
in them) and `neurochat.cli`'s dataset options (one name per flag, old names still accepted)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from neurochat.cli import add_dataset_options, add_nsd_root_option
from neurochat.errors import ConfigError
from neurochat.models.bundle import (
    WeightsLayout,
    baseline_dirs,
    ensemble_dirs,
    has_brainllm,
    has_extractor,
    load_ensemble,
    load_main_models,
    main_extractor_dir,
)
from neurochat.paths import CHECKPOINTS, REPO_ROOT
from neurochat.presets import get_preset

DEMO = CHECKPOINTS / "demo"


# -- the weights layout -----------------------------------------------------------------------------


def test_the_layout_names_the_folders_of_the_committed_demo_bundle_as_they_are():
    """The committed checkpoints load unchanged: every name below is a folder (or file) on disk today."""
    layout = get_preset("demo").layout
    assert layout.root == DEMO
    for folder in (layout.clip_dir, layout.unclip_dir, layout.extractors, layout.brainllm_dir(), layout.brainllm_dir(stage=1),
                   *ensemble_dirs(get_preset("demo")), layout.extractor_dir("flattened", 7)):  # fmt: skip
        assert folder.is_dir(), folder
    assert layout.manifest.is_file() and layout.vision_manifest.is_file()
    # the same names, spelled out: a rename here would orphan every bundle already built
    assert [p.relative_to(DEMO).as_posix() for p in ensemble_dirs(get_preset("demo"))] == [
        "extractor/vit3d_r7", "extractor/vit3d_r6", "extractor/vit3d_r5"]  # fmt: skip
    assert layout.extractor_dir("subject_specific", 7, "subj01") == DEMO / "extractor/subject_specific_r7/subj01"
    assert layout.llm_dir == DEMO / "llm"  # rebuilt, not committed (see .gitignore)
    assert [layout.brainllm_dir(variant, stage).name for variant in ("vit3d", "flattened") for stage in (1, 2)] == [
        "brainllm_stage1", "brainllm", "brainllm_flattened_stage1", "brainllm_flattened"]  # fmt: skip
    assert layout.manifest.name == "manifest.json" and layout.vision_manifest.name == "vision_manifest.json"


def test_the_paper_preset_keeps_neurochats_own_models_under_its_neurochat_folder(tmp_path):
    paper = get_preset("paper", tmp_path)
    assert paper.layout == WeightsLayout(tmp_path / "neurochat")
    assert paper.extractor_dir == tmp_path / "neurochat" / "extractor"
    assert main_extractor_dir(paper) == tmp_path / "neurochat/extractor/vit3d_r14"
    assert paper.layout.brainllm_dir() == tmp_path / "neurochat" / "brainllm"
    assert paper.clip_dir == tmp_path / "openai/clip-vit-large-patch14"  # third-party: under its hub id


def test_the_main_model_and_the_two_baselines_sit_side_by_side():
    folders = baseline_dirs(WeightsLayout("W"), 7, ["subj01", "subj02"])
    assert folders["vit3d"] == Path("W/extractor/vit3d_r7") and folders["flattened"] == Path("W/extractor/flattened_r7")
    assert folders["subject_specific"] == {s: Path(f"W/extractor/subject_specific_r7/{s}") for s in ("subj01", "subj02")}
    from neurochat.evaluate.extractor import extractor_folders

    assert extractor_folders(Path("W/extractor"), 7, ["subj01", "subj02"]) == folders  # the evaluation asks the layout


def test_folders_that_do_not_exist_in_the_layout_are_refused_with_the_choices():
    layout = WeightsLayout("W")
    with pytest.raises(ConfigError, match="vit3d, flattened, subject_specific"):
        layout.extractor_dir("vit4d", 7)
    with pytest.raises(ConfigError, match="subject"):
        layout.extractor_dir("subject_specific", 7)
    with pytest.raises(ConfigError, match="subject"):
        layout.extractor_dir("vit3d", 7, "subj01")
    with pytest.raises(ConfigError, match="stage 0"):
        layout.brainllm_dir(stage=0)
    with pytest.raises(ConfigError, match="vit3d, flattened"):
        layout.brainllm_dir("gradcam")


def test_a_finished_checkpoint_is_recognised_by_the_file_its_saver_writes():
    from neurochat.models.brainllm import CONFIG_NAME, preset_brainllm_dir

    demo = get_preset("demo")
    assert has_extractor(main_extractor_dir(demo)) and has_brainllm(demo.layout.brainllm_dir())
    assert (demo.layout.brainllm_dir() / CONFIG_NAME).exists()
    assert not has_extractor(demo.layout.brainllm_dir()) and not has_brainllm(main_extractor_dir(demo))
    assert preset_brainllm_dir(demo, 1) == demo.layout.brainllm_dir(stage=1)


def test_a_missing_extractor_names_its_folder_and_the_command_that_trains_it(tmp_path):
    with pytest.raises(ConfigError, match=r"r=7 is missing at .*vit3d_r7.*train\.extractor --preset demo --patch-size 7"):
        load_ensemble(get_preset("demo", tmp_path))


def test_the_optional_models_are_none_where_a_bundle_lacks_them(tmp_path):
    """A bundle with only the main extractor: the evaluations run and leave out the rows that need the rest."""
    (tmp_path / "extractor").mkdir()
    (tmp_path / "extractor" / "vit3d_r7").symlink_to(DEMO / "extractor" / "vit3d_r7")
    said = []
    main, flattened, brainllm = load_main_models(get_preset("demo", tmp_path), log=said.append)
    assert main.config.layout == "vit3d" and flattened is None and brainllm is None
    assert len(said) == 1 and str(tmp_path / "brainllm") in said[0]


def test_the_demo_bundle_plan_writes_where_the_layout_reads(tmp_path):
    from train.bundle_plan import stage_commands

    layout = WeightsLayout(tmp_path)
    plan = stage_commands("micro", tmp_path, tmp_path / "data")

    def option(stage, name, run=0):
        argv = plan[stage][run][1]
        return Path(argv[argv.index(name) + 1])

    assert option("extractor_vit3d_r6", "--out") == layout.extractor_dir("vit3d", 6)
    assert option("extractor_subj02_r7", "--out") == layout.extractor_dir("subject_specific", 7, "subj02")
    assert option("llm_flattened", "--out", 1) == layout.brainllm_dir("flattened")
    assert option("decoder", "--out") == layout.unclip_dir


# -- the shared options -----------------------------------------------------------------------------


def test_the_dataset_options_have_one_name_each():
    parser = argparse.ArgumentParser()
    add_dataset_options(parser)
    args = parser.parse_args(["--preset", "paper", "--weights", "W", "--nsd-root", "N", "--max-session", "37"])
    assert (args.preset, args.weights, args.nsd_root, args.max_session) == ("paper", "W", "N", 37)
    assert vars(parser.parse_args([])) == {"preset": "demo", "weights": None, "nsd_root": None, "max_session": None}


def test_an_old_flag_name_still_works_and_says_once_which_name_to_use(capsys):
    parser = argparse.ArgumentParser(prog="cmd")
    add_nsd_root_option(parser, required=True, old_names=("--root",))
    assert parser.parse_args(["--root", "N"]).nsd_root == "N"
    err = capsys.readouterr().err
    assert err == "cmd: --root is deprecated, use --nsd-root (same meaning)\n"
    assert parser.parse_args(["--nsd-root", "N"]).nsd_root == "N" and capsys.readouterr().err == ""
    assert "--root" not in parser.format_help()  # one name in --help
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", "A", "--nsd-root", "B"])  # not both
    with pytest.raises(SystemExit):
        parser.parse_args([])  # still required


def test_nsd_command_reads_its_tree_from_the_old_root_flag_with_a_note(capsys):
    from neurochat.cli import run_main
    from neurochat.nsd.__main__ import main as nsd_main

    missing = "/nonexistent/nsd"
    with pytest.raises(SystemExit) as exit_info:
        run_main(nsd_main, ["info", "--root", missing])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "python -m neurochat.nsd info: --root is deprecated, use --nsd-root (same meaning)"
    assert missing in err[1]  # the old name's value is the tree it read


COMMANDS = {  # command → (module whose main(argv) it runs, argv before --help)
    "python app.py": ("app", []),
    "python -m neurochat.nsd info": ("neurochat.nsd.__main__", ["info"]),
    "python -m neurochat.sim": ("neurochat.sim.__main__", []),
    "python -m neurochat.evaluate recon": ("neurochat.evaluate.__main__", ["recon"]),
    "python -m neurochat.bench": ("neurochat.bench.__main__", []),
    "python -m neurochat.bench localize": ("neurochat.bench.__main__", ["localize"]),
    "python -m neurochat.bench training": ("neurochat.bench.__main__", ["training"]),
    "python -m train.extractor": ("train.extractor", []),
    "python -m train.llm": ("train.llm", []),
    "python -m train.vision": ("train.vision", []),
    "python -m train.unclip": ("train.unclip", []),
    "python -m train.demo_bundle": ("train.demo_bundle", []),
}
_HELP = """
import contextlib, importlib, io, json, sys
out = {}
for name, (module, argv) in json.loads(sys.argv[1]).items():
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            importlib.import_module(module).main([*argv, "--help"])
        except SystemExit:
            pass
    out[name] = text.getvalue()
heavy = sorted(m for m in ("torch", "gradio", "transformers", "diffusers") if m in sys.modules)
print(json.dumps({"help": out, "heavy": heavy}))
"""


def test_every_command_answers_help_without_loading_a_model_library_and_names_the_tree_nsd_root():
    result = subprocess.run([sys.executable, "-c", _HELP, json.dumps(COMMANDS)], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True)  # fmt: skip
    answer = json.loads(result.stdout)
    assert answer["heavy"] == [], "--help must import no model library: move the import into the function that needs it"
    for command, text in answer["help"].items():
        assert text.startswith("usage:"), command
        assert "--root" not in text and "--data-root" not in text, command
    for command in ("python app.py", "python -m neurochat.nsd info", "python -m neurochat.evaluate recon",
                    "python -m neurochat.bench localize", "python -m neurochat.bench training",
                    "python -m train.extractor", "python -m train.llm"):  # fmt: skip
        assert "--nsd-root DIR" in answer["help"][command], command
    # the simulator writes a tree, so its flag is --out, and it says where the tree is read
    assert "--out DIR" in answer["help"]["python -m neurochat.sim"] and "--nsd-root" in answer["help"]["python -m neurochat.sim"]
