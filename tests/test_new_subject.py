"""A new subject: SimNSD adds one to the same world without changing the others, `train.adapt` teaches the
trained model its input layer, and `evaluate new-subject` scores it beside the trained subjects."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.io
import torch

from neurochat.errors import ConfigError, DataError
from neurochat.nsd import NSDDataset, layout
from neurochat.sim.config import SIZES, SUBJECTS
from neurochat.sim.generate import generate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def new_tree(tmp_path_factory):
    """The small world with the trained subjects and subj03."""
    return generate(tmp_path_factory.mktemp("new") / "small", size="small", seed=0, subjects=[*SUBJECTS, "subj03"])


def test_a_new_subject_joins_the_world_and_changes_no_one_else(sim_root, new_tree):
    for subject in SUBJECTS:  # the trained subjects' recordings are the same files
        for name in (layout.betas_file(subject, 1, "hdf5"), layout.nsdgeneral(subject), layout.responses(subject)):
            assert (sim_root / name).read_bytes() == (new_tree / name).read_bytes(), name
    dataset, base = NSDDataset(new_tree), NSDDataset(sim_root)
    assert dataset.subjects == sorted([*SUBJECTS, "subj03"])
    config = SIZES["small"]
    design = scipy.io.loadmat(new_tree / layout.EXPDESIGN)
    own = design["subjectim"][2].astype(int) - 1  # subj03's row, 0-based 73k ids
    shared = set(design["sharedix"].ravel().astype(int) - 1)
    assert shared == set(scipy.io.loadmat(sim_root / layout.EXPDESIGN)["sharedix"].ravel().astype(int) - 1)
    fresh = [i for i in own if i not in shared]
    assert len(fresh) == config.n_own and min(fresh) >= config.n_images, "its training pictures are its own"
    assert np.array_equal(dataset.images([0, 1]), base.images([0, 1])), "the same pictures under the same ids"
    assert dataset.native_shape("subj03") == config.native_grid("subj03") != dataset.native_shape("subj01")
    assert (new_tree / layout.roi_file("subj03", "floc-places")).exists()
    with pytest.raises(ConfigError, match="no subject 'subj09'"):
        generate(new_tree / "never", size="small", subjects=["subj09"])


def _adapt(weights, tree, out, *extra):
    from train.adapt import main

    return main(["--preset", "demo", "--weights", str(weights), "--nsd-root", str(tree), "--subject", "subj03",
                 "--sessions", "1", "--epochs", "1", "--threads", "1", "--no-progress", "--out", str(out), *extra])  # fmt: skip


@pytest.mark.slow
def test_adapting_trains_the_input_layer_alone_and_saves_only_it(request, new_tree, tmp_path):
    from test_app import micro_bundle_paths

    from neurochat.models.bundle import main_extractor_dir
    from neurochat.models.extractor import load_adapted_extractor, load_extractor
    from neurochat.presets import get_preset

    weights, _ = micro_bundle_paths(request)
    weights = shutil.copytree(weights, tmp_path / "bundle")  # the adaptation is written into this copy
    preset = get_preset("demo", weights)
    out = preset.layout.adapted_extractor_dir("subj03", 1)
    assert _adapt(weights, new_tree, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapted.json", "input_layer.safetensors"]
    adapted, base = load_adapted_extractor(out), load_extractor(main_extractor_dir(preset))
    changed = {name for name, value in adapted.model.state_dict().items()
               if not torch.equal(value, base.model.state_dict()[name])}  # fmt: skip
    assert changed == {"patch_embedding.weight", "patch_embedding.bias"}
    info = json.loads((out / "adapted.json").read_text())["info"]["adapted"]
    assert info["subject"] == "subj03" and info["sessions"] == 1 and info["trainable"] == "input"
    assert preset.layout.adapted_subjects() == {"subj03": out}

    with pytest.raises(ConfigError, match="subj01 is one of the subjects the model was trained on"):
        _adapt(weights, new_tree, tmp_path / "no", "--subject", "subj01")
    with pytest.raises(DataError, match="no recordings of subj04"):
        _adapt(weights, new_tree, tmp_path / "no", "--subject", "subj04")

    from neurochat.evaluate.__main__ import main as evaluate

    report = tmp_path / "new_subject.json"
    assert evaluate(["new-subject", "--preset", "demo", "--weights", str(weights), "--nsd-root", str(new_tree),
                     "--subject", "subj03", "--per-subject", "3", "--json", str(report)]) == 0  # fmt: skip
    results = json.loads(report.read_text())
    assert results["trained_subjects"] == list(SUBJECTS) and results["trained"]["n"] == 12
    assert set(results["new"]) == {"0", "1", "2"} and results["new"]["2"] is None, "2 sessions were never adapted"
    for count in ("0", "1"):
        assert set(results["new"][count]) == {"clip_2way", "clip_top1", "object_hit", "n"} and results["new"][count]["n"] == 3
    assert set(results["within_10_percent"]) == {"0", "1"}

    from neurochat.explorer import Explorer

    explorer = Explorer.load("demo", nsd_root=new_tree, weights=weights, device="cpu", log=lambda *_: None)
    assert "subj03" in explorer.subjects and list(explorer.adapted) == ["subj03"], "the app offers the adapted subject"
    state = explorer.select("subj03", nsd_id=int(explorer.trial_choices("subj03")[0].nsd_id))
    features = explorer.features(state)
    zero_shot = explorer._encode(features.volume, None)[0]
    assert not torch.allclose(features.clip, zero_shot), "its recordings are read through its own input layer"
    assert explorer.localizer.bundles_for("subj03") == [explorer.adapted["subj03"]]
    assert explorer.localize(state, explorer.true_concepts(state)[0]).native.shape == features.volume.shape


def test_an_input_layer_that_does_not_fit_its_base_is_a_clear_error(tmp_path):
    from neurochat.models.extractor import load_adapted_extractor

    with pytest.raises(DataError, match="holds no adapted extractor"):
        load_adapted_extractor(tmp_path)
