"""The explorer's client API: the app served in-process, scripted through `gradio_client` as a lab would.

Uses the micro bundle of `test_app.py` (or $NEUROCHAT_MICRO_BUNDLE). The endpoints' names are the
README's; the page's own steps must stay out of the API.
"""

from __future__ import annotations

import socket

import nibabel as nib
import numpy as np
import pytest

from test_app import explorer, micro_bundle  # noqa: F401 — the fixtures this module shares

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client ships with gradio")

ENDPOINTS = {"/select_trial", "/random_trial", "/upload", "/chat", "/clear_chat", "/reconstruct", "/localize",
             "/ablate"}  # fmt: skip


@pytest.fixture(scope="module")
def client(explorer, tmp_path_factory):  # noqa: F811 — the fixture imported above
    from neurochat.app.ui import ExplorerUI

    ui = ExplorerUI(explorer, downloads=tmp_path_factory.mktemp("downloads"))
    blocks = ui.build()
    blocks.queue(default_concurrency_limit=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        downloads = str(tmp_path_factory.mktemp("client"))
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=downloads)
    finally:
        blocks.close()


def call(client, endpoint: str, *args) -> dict:
    """The endpoint's outputs by their labels (the client returns them as a tuple, in the API's order)."""
    api = client.view_api(return_format="dict", print_info=False)
    labels = [output["label"] for output in api["named_endpoints"][endpoint]["returns"]]
    result = client.predict(*args, api_name=endpoint)
    return dict(zip(labels, result if isinstance(result, tuple) else (result,)))


def value(output):
    return output["value"] if isinstance(output, dict) and "value" in output else output


def test_only_the_user_level_actions_are_in_the_api(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == ENDPOINTS and not api["unnamed_endpoints"]
    assert [p["parameter_name"] for p in api["named_endpoints"]["/reconstruct"]["parameters"]] == ["beta", "seed"]


def test_a_script_explores_a_trial(client, explorer, tmp_path):  # noqa: F811
    from neurochat.app.ui import RECONSTRUCT

    subject = explorer.subjects[0]
    nsd_id = explorer.first_impression(subject)
    assert "first" in call(client, "/reconstruct", 0.5, 0)["status"]  # nothing chosen yet: a sentence
    picked = call(client, "/select_trial", subject, nsd_id, "averaged")
    assert picked["status"].startswith(f"Now exploring {subject}, image {nsd_id}")

    turn = call(client, "/chat", RECONSTRUCT, 0.9, 0, 0.5)
    assert turn["Chat with the recording"][-1]["role"] == "assistant"
    assert value(turn["Reconstruction"]).endswith((".webp", ".png")) and "β = 0.90" in turn["shown β"]
    rendered = call(client, "/reconstruct", 0.5, 0)
    assert "β = 0.50** (5 of 10 denoising steps)" in rendered["shown β"]

    concept = explorer.example_concept(nsd_id)
    located = call(client, "/localize", concept, 0.5)
    assert f'"{concept}"' in located["brain title"]
    mni = nib.load(value(located["⤓ heatmap (MNI)"]))
    assert mni.shape == (99, 117, 95) and int(mni.header["sform_code"]) == 4

    ablated = call(client, "/ablate", concept, 0.5, 0)
    assert "voxels zeroed" in ablated["ablation"] and concept in ablated["Ablated"]["label"]
    again = call(client, "/ablate", concept, 0.5, 0)  # a script gets its pictures every time
    assert all(value(again[name]).endswith((".webp", ".png")) for name in ("Ablated", "Reconstruction"))
    assert call(client, "/ablate", "", 0.5, 0)["ablation"] == ""

    cleared = call(client, "/clear_chat")
    assert cleared["Chat with the recording"] == [] and "cleared" in cleared["status"]
    assert call(client, "/random_trial", subject, "averaged")["status"].startswith(f"Now exploring {subject}")


def test_a_script_uploads_a_volume_and_picks_one_of_a_4d_file(client, explorer, tmp_path):  # noqa: F811
    shape = explorer.dataset.native_shape(explorer.subjects[0])
    run = tmp_path / "run.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(*shape, 2)).astype(np.float32), np.eye(4)), run)
    uploaded = call(client, "/upload", gradio_client.handle_file(str(run)), 1)
    assert "run.nii.gz[1]" in uploaded["status"] and "Volume 1 of the file's 2" in uploaded["caption"]
    zeros = tmp_path / "zeros.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), zeros)
    assert "holds the same value (0)" in call(client, "/upload", gradio_client.handle_file(str(zeros)), 0)["status"]


def test_beta_changes_have_a_lane_of_their_own_and_draw_the_same_beside_another_job(explorer, tmp_path):  # noqa: F811
    """A β change never queues behind another tab's chat: it runs beside the device queue's job, so two
    threads may ask for a reconstruction at once, and each must draw what it draws alone."""
    import threading

    from neurochat.app.ui import DEVICE_QUEUE, RENDER_QUEUE, ExplorerUI

    blocks = ExplorerUI(explorer, downloads=tmp_path).build()
    lanes = {fn.api_name: fn.concurrency_id for fn in blocks.fns.values() if fn.api_visibility == "public"}
    assert lanes["reconstruct"] == RENDER_QUEUE
    assert {lanes[name.strip("/")] for name in ENDPOINTS - {"/reconstruct", "/clear_chat"}} == {DEVICE_QUEUE}

    subject = explorer.subjects[0]
    features = explorer.features(explorer.select(subject, explorer.trial_choices(subject)[0].nsd_id))

    def draw(seed: int):  # the reconstructor itself: the explorer's picture cache would hide a second run
        return explorer.reconstructor(features.clip[None], features.vae[None], "", beta=0.2, seed=seed, steps=10)

    # Short passes (two denoising steps) overlap most in the prompt encoding, where a shared tokenizer once
    # made one of three threads draw another picture, or fail, in about half of 10 rounds
    seeds = (11, 12, 13)
    alone = {seed: draw(seed) for seed in seeds}
    for _ in range(30):
        beside = {}
        threads = [threading.Thread(target=lambda seed=seed: beside.__setitem__(seed, draw(seed))) for seed in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for seed in seeds:
            np.testing.assert_array_equal(beside[seed], alone[seed])


def test_on_a_gpu_beta_changes_stay_in_the_device_queue(explorer, tmp_path, monkeypatch):  # noqa: F811
    """Offloaded models move their weights for one caller at a time: a GPU keeps one queue."""
    import torch

    from neurochat.app.ui import DEVICE_QUEUE, ExplorerUI

    monkeypatch.setattr(type(explorer.reconstructor), "device", property(lambda self: torch.device("cuda")))
    blocks = ExplorerUI(explorer, downloads=tmp_path).build()
    assert {fn.concurrency_id for fn in blocks.fns.values() if fn.api_name == "reconstruct"} == {DEVICE_QUEUE}
