"""Object-level scores and the decoder's oracle evaluation: a picture counts only when its objects show."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurochat.evaluate.decoder import ObjectNamer, object_hit, object_hits
from neurochat.models.bundle import WeightsLayout


class _ColourCodedVision:
    """A stand-in CLIP whose image embedding of a picture is the one-hot of its top-left pixel's red
    value, and whose text embedding of the k-th name is the one-hot of k: a picture "shows" name k
    when that pixel is k."""

    def __init__(self, names):
        self.names = sorted(names)

    def text_embeddings(self, texts):
        return torch.eye(len(self.names))[[self.names.index(t) for t in texts]]

    def image_embeddings(self, pictures):
        return torch.eye(len(self.names))[torch.as_tensor(pictures[:, 0, 0, 0].astype(np.int64))]


def _pictures(indices):
    pictures = np.zeros((len(indices), 8, 8, 3), np.uint8)
    pictures[:, 0, 0, 0] = indices
    return pictures


def test_object_hit_counts_a_picture_only_when_its_first_choice_is_a_true_object():
    names = ["ball", "cat", "dog"]
    namer = ObjectNamer(_ColourCodedVision(names), names)
    truth = [{"cat"}, {"dog", "ball"}, {"cat"}, set()]  # the last picture has no annotated objects
    pictures = _pictures([names.index("cat"), names.index("ball"), names.index("dog"), 0])
    hits = object_hits(pictures, truth, namer)
    assert hits[:3].tolist() == [1.0, 1.0, 0.0] and np.isnan(hits[3])
    assert object_hit(pictures, truth, namer) == pytest.approx(2 / 3)  # unannotated pictures are left out
    assert object_hit(_pictures([0, 1, 0, 0]), truth, namer) == 0.0  # every first choice wrong
    with pytest.raises(Exception, match="3 pictures but object lists for 4"):
        object_hits(pictures[:3], truth, namer)


def test_the_oracle_scores_the_decoder_from_true_embeddings_and_the_ceiling_beside_it(micro_bundle, sim_root, tmp_path):
    from neurochat.evaluate.__main__ import main as evaluate_main

    path, figure = tmp_path / "decoder.json", tmp_path / "oracle.png"
    argv = ["decoder", "--preset", "demo", "--weights", str(micro_bundle), "--nsd-root", str(sim_root), "--limit", "4",
            "--steps", "2", "--json", str(path), "--figure", str(figure)]  # fmt: skip
    assert evaluate_main(argv) == 0
    result = json.loads(path.read_text())
    assert result["n"] == 4 and result["oracle"].keys() == {"object_hit", "clip_2way"}
    for scores in (result["oracle"], result["stimuli"], result["vae_round_trip"]):
        assert all(0.0 <= value <= 1.0 for value in scores.values())
    assert figure.stat().st_size > 0


def test_the_oracle_on_a_bundle_without_a_decoder_says_what_to_run(micro_bundle, sim_root, tmp_path):
    import shutil

    from neurochat.errors import ConfigError
    from neurochat.evaluate.__main__ import main as evaluate_main

    bundle = tmp_path / "bundle"
    shutil.copytree(micro_bundle, bundle)
    shutil.rmtree(WeightsLayout(bundle).unclip_dir / "unet")
    with pytest.raises(ConfigError, match=r"lacks unet.*train\.unclip|lacks unet.*demo_bundle"):
        evaluate_main(["decoder", "--preset", "demo", "--weights", str(bundle), "--nsd-root", str(sim_root), "--limit", "2"])


def test_a_simnsd_tree_of_another_version_is_refused_with_the_command_that_regenerates_it(sim_copy):
    from neurochat.errors import DataError
    from neurochat.paths import check_simnsd_version, dataset_root

    meta = sim_copy / "simnsd" / "simnsd.json"
    payload = json.loads(meta.read_text())
    payload["simnsd_version"] = 0
    meta.write_text(json.dumps(payload))
    with pytest.raises(DataError, match=r"version 0.*python -m neurochat\.sim --out"):
        dataset_root("demo", sim_copy)
    check_simnsd_version(sim_copy, trained_on=0)  # the models trained on it still read it


def test_models_trained_on_another_simnsd_version_are_refused(micro_bundle, sim_root, tmp_path):
    import shutil

    from neurochat.errors import DataError
    from neurochat.evaluate.__main__ import main as evaluate_main

    bundle = tmp_path / "bundle"
    shutil.copytree(micro_bundle, bundle)
    manifest = json.loads(WeightsLayout(bundle).manifest.read_text())
    assert manifest["simnsd_version"] is not None  # the bundle says which brains it was trained on
    manifest["simnsd_version"] = 0
    WeightsLayout(bundle).manifest.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"trained on version 0.*train\.demo_bundle") as refused:
        evaluate_main(["decoder", "--preset", "demo", "--weights", str(bundle), "--nsd-root", str(sim_root), "--limit", "2"])
    assert "neurochat.sim --out" not in str(refused.value)  # a tree this code writes would not match them either
