"""The explorer app's handlers, called directly on the built Blocks (no server, no browser).

A micro demo bundle (tiny models, every file in place) is trained once per test session on the small
SimNSD tree by `python -m train.demo_bundle --size micro` (a few minutes on 2 cores). Set
NEUROCHAT_MICRO_BUNDLE=DIR to reuse a bundle built before (its manifest names its data).

Every bad input must come back as a sentence in the status line, never as an exception.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neurochat.models.bundle import WeightsLayout

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]  # gr.Warning outside a server


def micro_bundle_paths(request) -> tuple[Path, Path]:
    """(weights, nsd_root) of a micro bundle: $NEUROCHAT_MICRO_BUNDLE, or one built once per session.

    The bundle lives in the session's base temp folder, so every test module that asks finds it built.
    """
    given = os.environ.get("NEUROCHAT_MICRO_BUNDLE")
    if given:
        manifest = json.loads(WeightsLayout(given).manifest.read_text())
        return Path(given), Path(manifest["data"])
    sim_root = request.getfixturevalue("sim_root")
    out = request.getfixturevalue("tmp_path_factory").getbasetemp() / "micro-bundle"
    manifest = WeightsLayout(out).manifest
    if not (manifest.exists() and "check" in json.loads(manifest.read_text())):
        from train import demo_bundle

        assert demo_bundle.main(["--out", str(out), "--size", "micro", "--data", str(sim_root)]) == 0
    return out, sim_root


@pytest.fixture(scope="session")
def micro_bundle(request) -> tuple[Path, Path]:
    return micro_bundle_paths(request)


@pytest.fixture(scope="module")
def explorer(micro_bundle, tmp_path_factory):
    import torch

    from neurochat.explorer import Explorer

    os.environ.setdefault("NILEARN_DATA", str(tmp_path_factory.mktemp("nilearn")))
    torch.set_num_threads(1)
    weights, nsd_root = micro_bundle
    return Explorer.load("demo", nsd_root=nsd_root, weights=weights, device="cpu", log=lambda *_: None)


@pytest.fixture(scope="module")
def ui(explorer, tmp_path_factory):
    from neurochat.app.ui import ExplorerUI

    ui = ExplorerUI(explorer, downloads=tmp_path_factory.mktemp("downloads"))
    ui.build()
    return ui


@pytest.fixture
def session(ui):
    """A tab that has opened the default trial."""
    from neurochat.app.session import Session

    session = Session()
    out = ui.start(session)
    assert "Now exploring" in out[ui.c.status]
    return out[ui.c.state]


def ask(ui, session, message: str):
    """One chat turn as the browser runs it: accept → answer (streamed) → act → heatmap files."""
    outputs = [ui.accept(message, session)]
    session = outputs[-1].get(ui.c.state, session)
    streamed = list(ui.answer(session))
    outputs += streamed
    outputs.append(ui.act(session, 0.93, 0, 0.5))
    outputs.append(ui.heatmap_files(session))
    merged = {}
    for out in outputs:
        merged.update(out)
    return merged, streamed


def warning(ui, out) -> str:
    status = out.get(ui.c.status, "")
    assert status.startswith("⚠️"), f"expected a warning, got {status!r}"
    assert "Traceback" not in status
    return status


def value(update):
    return update["value"] if isinstance(update, dict) else update


# -- choosing a recording --------------------------------------------------------------------------------


def test_first_impression_is_a_shared_trial_with_two_objects(ui, explorer, session):
    from neurochat.vocabulary import SCENES

    choice = next(c for c in explorer.trial_choices(ui.default_subject) if c.nsd_id == ui.default_trial)
    assert choice.shared
    objects = [c for c in explorer.true_concepts(session.trial) if c not in SCENES]
    assert len(objects) == 2 and session.example_concept == objects[0]
    out = ui.start(session)
    assert out[ui.c.stimulus].ndim == 3 and out[ui.c.prior].dtype == np.uint8
    assert out[ui.c.chatbot] == [] and out[ui.c.final] is None
    assert value(out[ui.c.ex_locate]) == f'Locate "{objects[0]}"'


def test_picking_subject_trial_protocol_and_random(ui, explorer, session):
    out = ui.pick_subject("subj02", "averaged", session)
    assert out[ui.c.state].trial.subject == "subj02"
    assert [v for _, v in out[ui.c.trial]["choices"]] == [c.nsd_id for c in explorer.trial_choices("subj02")]
    nsd_id = explorer.trial_choices("subj02")[1].nsd_id
    out = ui.pick_trial("subj02", nsd_id, "single", session)
    assert out[ui.c.state].trial.key == ("subj02", nsd_id, "single", None)
    assert "first repetition" in out[ui.c.status]
    out = ui.random_trial("subj02", "averaged", session)
    assert out[ui.c.state].trial.nsd_id in [c.nsd_id for c in explorer.trial_choices("subj02") if c.shared]


def _open_link(ui, query: dict, session=None):
    """The page's load with `query` in its address, as Gradio hands it over (β 0.9, seed 0, threshold 0.5)."""
    import gradio as gr

    from neurochat.app.session import Session

    return ui.start(session or Session(), 0.9, 0, 0.5, request=gr.Request(query_params=query))


def test_a_link_restores_trial_beta_seed_and_removed_concepts(ui, explorer):
    from neurochat.app.session import Session
    from neurochat.app.share import share_query

    nsd_id = explorer.trial_choices("subj02")[1].nsd_id
    concept = explorer.example_concept(nsd_id)
    out = _open_link(ui, {"subject": "subj02", "trial": str(nsd_id), "protocol": "single", "beta": "0.5", "seed": "3",
                          "remove": concept})  # fmt: skip
    session = out[ui.c.state]
    assert session.trial.key == ("subj02", nsd_id, "single", None) and session.trial.removed == [concept]
    assert value(out[ui.c.trial]) == nsd_id and out[ui.c.protocol] == "single"
    assert out[ui.c.beta] == 0.5 and out[ui.c.seed] == 3 and "as the link shared it" in out[ui.c.status]
    assert concept in out[ui.c.concepts]["choices"] and concept not in out[ui.c.concepts]["value"]  # located, unticked
    assert f'"{concept}"' in out[ui.c.brain_title] and session.shown == concept
    assert out[ui.c.ablated]["value"].ndim == 3 and "voxels zeroed" in out[ui.c.ablation_info]
    assert "β = 0.50** (5 of 10 denoising steps) · seed 3" in out[ui.c.shown_beta]

    link, as_json = ui.share_links(session, 0.5, 3, "http://lab.example:7860/")
    assert link == "http://lab.example:7860/" + share_query(session, 0.5, 3) and f"remove={concept}" in link
    for pasted in (link, as_json):  # either, pasted into another tab's share panel, opens the same view
        other = ui.open_shared(pasted, Session(), 0.9, 0, 0.5)[ui.c.state]
        assert other.trial.key == session.trial.key and other.trial.removed == [concept]
    plain = _open_link(ui, {})
    assert plain[ui.c.state].trial.nsd_id == ui.default_trial and "link" not in plain[ui.c.status]
    assert "value" not in plain[ui.c.beta] and "value" not in plain[ui.c.seed]  # what a link leaves out stays


def test_a_bad_link_is_refused_by_name_and_the_first_trial_opens(ui, explorer, session):
    only_subj01 = sorted(set(explorer.dataset.trials("subj01").train_images) -
                         set(explorer.dataset.trials("subj02").nsd_id))[0]  # fmt: skip
    for query, named in [({"subject": "subj09"}, "subject 'subj09' is not in this dataset"),
                         ({"subject": "subj02", "trial": str(only_subj01)}, f"subj02 never saw image {only_subj01}"),
                         ({"beta": "1.5"}, "β = 1.5 is outside 0…1"),
                         ({"remove": "dog,unicorm"}, "removes 'unicorm': 'unicorm' is not a concept")]:  # fmt: skip
        out = _open_link(ui, query)
        assert named in warning(ui, out) and "The first trial is shown instead." in warning(ui, out)
        assert out[ui.c.state].trial.key == (ui.default_subject, ui.default_trial, "averaged", None)
        assert out[ui.c.state].trial.removed == [] and ui.c.beta not in out and out[ui.c.stimulus] is not None
    before = session.trial.key
    refused = ui.open_shared('{"trial": 12, "seed": -1}', session, 0.9, 0, 0.5)  # pasted: nothing changes
    assert "seed '-1' is not a whole number" in warning(ui, refused) and session.trial.key == before


# -- chat ------------------------------------------------------------------------------------------------


def test_chat_streams_the_answer_and_saves_the_conversation(ui, session):
    out, streamed = ask(ui, session, "Describe the image concisely.")
    messages = out[ui.c.chatbot]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Describe the image concisely." and messages[1]["content"].strip()
    assert len(streamed) >= 2  # piece by piece, then the final update
    conversation = json.loads(Path(value(out[ui.c.dl_chat])).read_text())
    assert conversation["conversation"][0]["content"] == "Describe the image concisely."
    assert conversation["sent_to_model"][0]["content"] == "Describe the image concisely."
    assert out[ui.c.state].busy_since is None  # the next message is accepted


@pytest.mark.parametrize(
    "message, expected",
    [("", "Type a question"), ("   ", "Type a question"), ("x" * 10_000, "10,000 characters")],
)
def test_bad_messages_get_a_sentence(ui, session, message, expected):
    out = ui.accept(message, session)
    assert expected in warning(ui, out)
    assert ui.c.chatbot not in out and session.pending is None


def test_a_concept_the_model_does_not_know_suggests_close_ones(ui, session):
    out = ui.accept('Locating the concept of "bicycel"', session)
    assert "Did you mean 'bicycle'" in warning(ui, out)
    out = ui.locate("zebr", 0.5, session)
    assert "Did you mean 'zebra'" in warning(ui, out)
    out = ui.locate("", 0.5, session)
    assert "which concept" in warning(ui, out).lower()


def test_the_message_box_holds_what_the_model_reads_and_a_refusal_keeps_the_text(ui, explorer, session, monkeypatch):
    from neurochat.errors import DataError

    limit = explorer.max_message_chars
    assert ui.c.message.max_length == limit and 0 < limit < 2000
    too_long = ui.accept("x" * (limit + 1), session)
    assert f"at most {limit:,}" in warning(ui, too_long) and ui.c.message not in too_long  # the text stays in the box
    out = ui.accept("x" * limit, session)
    assert out[ui.c.message] == ""

    def refuse(*args, **kwargs):
        raise DataError("the message is too long: shorten it")

    monkeypatch.setattr(explorer, "chat", refuse)  # the LLM refuses on a later turn, with less room
    refused = list(ui.answer(session))[-1]
    assert "too long" in warning(ui, refused) and refused[ui.c.message] == "x" * limit
    assert refused[ui.c.chatbot] == [] and session.busy_since is None


def test_clear_starts_a_new_conversation(ui, session):
    first, _ = ask(ui, session, "Describe the image concisely.")
    answer = first[ui.c.chatbot][-1]["content"]
    ask(ui, session, "Is this scene indoors or outdoors, and why?")
    assert len(session.trial.history) == 4
    cleared = ui.clear_chat(session)
    assert cleared[ui.c.chatbot] == [] and session.trial.history == [] and session.messages == []
    assert cleared[ui.c.dl_chat]["interactive"] is False
    again, _ = ask(ui, session, "Describe the image concisely.")
    assert again[ui.c.chatbot][-1]["content"] == answer  # a first answer again, not one that remembers
    conversation = json.loads(Path(value(again[ui.c.dl_chat])).read_text())
    assert len(conversation["conversation"]) == 2 and len(conversation["sent_to_model"]) == 2
    assert ui.c.chatbot.autoscroll  # the newest answer is scrolled into view


def test_a_second_message_while_busy_is_not_asked_twice(ui, session):
    first = ui.accept("Describe the image concisely.", session)
    second = ui.accept("Describe the image concisely.", first[ui.c.state])
    assert "will not be asked twice" in warning(ui, second)
    list(ui.answer(session))
    assert session.busy_since is None
    assert ui.c.chatbot in ui.accept("Describe the image concisely.", session)


# -- reconstruction, β, localization, ablation -------------------------------------------------------------


def test_reconstruction_then_beta_re_renders_only_the_final_image(ui, session):
    from neurochat.app.ui import RECONSTRUCT

    out, _ = ask(ui, session, RECONSTRUCT)
    final = out[ui.c.final]
    assert final.dtype == np.uint8 and final.ndim == 3
    assert "prompt:" in out[ui.c.prompt]
    # β = 0.93 runs round(10 × 0.93) = 9 of the demo's 10 denoising steps: the page says β = 0.90, the β of those steps
    assert ui.explorer.steps == 10 and "β = 0.90** (9 of 10 denoising steps) · seed 0" in out[ui.c.shown_beta]
    assert ui.c.beta.step == 1 / 10 and ui.c.beta.value == 0.9  # the slider has only those β
    assert Path(value(out[ui.c.dl_images])).exists()
    again = ui.rerender(0.3, 0, session)
    assert not np.array_equal(again[ui.c.final], final)
    assert ui.c.prior not in again  # the VAE prior does not move with β
    assert ui.rerender(0.3, 0, session) == ui._unchanged()  # what the page shows already is not drawn or sent again
    assert ui.rerender(0.31, 0, session) == ui._unchanged()  # the same 3 steps: the same picture
    assert "β = 0.30** (3 of 10" in again[ui.c.shown_beta]
    step_on = ui.rerender(0.4, 0, session)  # the next slider step: one more denoising step, another picture
    assert not np.array_equal(step_on[ui.c.final], again[ui.c.final])
    assert "outside 0…1" in warning(ui, ui.rerender(1.5, 0, session))
    assert "whole number" in warning(ui, ui.rerender(0.5, -2, session))


def test_a_recording_and_its_ablation_are_drawn_in_one_batch_as_each_is_drawn_alone(explorer, monkeypatch):
    """A β change with a concept off draws both pictures in one pass (cheaper on a CPU); the same seed gives
    each the same starting noise, so each is the picture drawn alone, to a level of rounding."""
    import dataclasses

    from neurochat.lru import LRUCache

    drawer, batches = explorer.reconstructor, []

    def counting(z_c, *args, **kwargs):
        batches.append(len(z_c))
        return drawer(z_c, *args, **kwargs)

    monkeypatch.setattr(explorer, "reconstructor", counting)
    subject = explorer.subjects[0]
    whole = explorer.select(subject, explorer.trial_choices(subject)[2].nsd_id)
    state = dataclasses.replace(whole, removed=[explorer.vocabulary[0]])
    monkeypatch.setattr(explorer, "_pictures", LRUCache(8))
    final, ablated = explorer.reconstruct_with_ablation(state, beta=0.55, seed=7)
    assert batches == [2]
    assert explorer.reconstruct_with_ablation(state, beta=0.55, seed=7)[1] is ablated and batches == [2]  # cached
    monkeypatch.setattr(explorer, "_pictures", LRUCache(8))
    alone = explorer.reconstruct(whole, beta=0.55, seed=7), explorer.reconstruct(state, beta=0.55, seed=7)
    assert batches == [2, 1, 1]
    for batched, single in zip((final, ablated), alone, strict=True):
        assert np.abs(batched.astype(int) - single.astype(int)).max() <= 1
    assert explorer.reconstruct_with_ablation(whole, beta=0.55, seed=7)[1] is None


def test_localize_shows_the_brain_and_ablation_toggles(ui, explorer, session):
    import plotly.graph_objects as go

    concept = session.example_concept
    out, _ = ask(ui, session, f'Locating the concept of "{concept}"')
    figure = out[ui.c.brain3d]
    assert isinstance(figure, go.Figure)
    assert [t.type for t in figure.data] == ["mesh3d", "mesh3d", "scatter3d"] and len(figure.data[2].x) > 0
    assert f'"{concept}"' in out[ui.c.brain_title]
    subject = session.trial.subject
    assert f"{subject}'s encoding map, not this trial's" in out[ui.c.brain_title]
    assert "shows no" not in out[ui.c.brain_title]
    assert concept in out[ui.c.concepts]["choices"] and concept in out[ui.c.concepts]["value"]
    native, mni = Path(value(out[ui.c.dl_native])), Path(value(out[ui.c.dl_mni]))
    assert nib.load(native).shape == explorer.dataset.native_shape(session.trial.subject)
    assert nib.load(mni).shape == (99, 117, 95)
    assert int(nib.load(mni).header["sform_code"]) == 4 and int(nib.load(mni).header["qform_code"]) == 4  # MNI

    kept = [c for c in out[ui.c.concepts]["choices"] if c != concept]
    removed = ui.toggle(kept, 0.93, 0, session)
    assert removed[ui.c.ablated]["value"].ndim == 3 and concept in removed[ui.c.ablated]["label"]
    assert removed[ui.c.state].trial.removed == [concept]
    assert concept not in removed[ui.c.concepts]["value"]
    ablation = session.ablation  # the zeroed voxels, for a brain view to draw
    assert ablation.concepts == (concept,) and ablation.zeroed.dtype == bool
    assert ablation.zeroed.shape == explorer.dataset.native_shape(session.trial.subject) and ablation.voxel_count > 0
    assert f"{ablation.voxel_count:,} voxels zeroed" in removed[ui.c.ablation_info]
    assert "prompt:" in removed[ui.c.ablation_info]
    restored = ui.restore(0.93, 0, session)
    assert restored[ui.c.ablated]["value"] is None and restored[ui.c.state].trial.removed == []
    assert session.ablation is None and restored[ui.c.ablation_info] == ""
    by_name = ui.ablate(f" {concept} ", 0.93, 0, session)  # the API's form: the concepts to remove
    assert session.trial.removed == [concept] and "voxels zeroed" in by_name[ui.c.ablation_info]
    assert "not a concept" in warning(ui, ui.ablate("unicorm", 0.93, 0, session))
    assert session.trial.removed == [concept]  # a refused request changes nothing
    assert ui.ablate("", 0.93, 0, session)[ui.c.ablation_info] == "" and session.trial.removed == []

    redrawn = ui.redraw_brain(0.9, session)
    assert len(redrawn[ui.c.brain3d].data[2].x) <= len(figure.data[2].x)
    glass = ui.show_glass(0.5, session)
    assert glass[ui.c.glass].ndim == 3
    assert ui.show_3d(0.5, session)[ui.c.state].view == "3d"


def test_a_concept_the_picture_lacks_says_so(ui, explorer, session):
    absent = next(name for name in explorer.vocabulary if name not in explorer.true_concepts(session.trial))
    out = ui.locate(absent, 0.5, session)
    assert f'This picture shows no "{absent}"' in out[ui.c.brain_title]


def test_named_concepts_get_chips(ui, explorer, session):
    explorer.note_concepts(session.trial, "a bird and two dogs on the snow")
    assert session.trial.concepts[:3] == ["bird", "dog", "snow"]
    assert ui._chips(session)["value"] == ["bird", "dog", "snow"]


# -- nothing chosen yet, uploads, failures --------------------------------------------------------------


def test_buttons_before_a_trial_is_chosen(ui):
    from neurochat.app.session import Session

    empty = Session()
    for out in (ui.accept("Describe the image concisely.", empty), ui.rerender(0.93, 0, empty),
                ui.toggle([], 0.93, 0, empty), ui.restore(0.93, 0, empty), ui.locate("dog", 0.5, empty),
                ui.pick_trial("subj01", None, "averaged", empty), ui.upload(None, 0, empty)):  # fmt: skip
        assert "first" in warning(ui, out) or "Choose" in warning(ui, out)
    unchanged = ui._unchanged()
    assert ui.redraw_brain(0.5, empty) == {ui.c.state: empty}
    assert list(ui.answer(empty)) == [unchanged] and ui.act(empty, 0.93, 0, 0.5) == unchanged


def test_unexpected_failures_become_a_sentence(ui, explorer, session, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(explorer, "reconstruct", broken)
    out = ui.rerender(0.93, 0, session)
    assert "Something went wrong while re-rendering (RuntimeError)" in warning(ui, out)
    monkeypatch.setattr(explorer, "chat", broken)
    ui.accept("Describe the image concisely.", session)
    streamed = list(ui.answer(session))
    assert "Something went wrong" in warning(ui, streamed[-1]) and session.busy_since is None


# -- start-up and figures ----------------------------------------------------------------------------------


def test_missing_weights_or_data_give_a_page_that_says_what_and_where(tmp_path, micro_bundle):
    import app
    from neurochat.app.startup import load_explorer
    from neurochat.app.ui import error_page

    weights, nsd_root = micro_bundle
    def load(*argv):
        return load_explorer(app.build_parser().parse_args(argv), log_line=lambda *_: None)

    explorer, problem = load("--weights", str(tmp_path / "nothing"), "--nsd-root", str(nsd_root))
    assert explorer is None and str(tmp_path / "nothing") in problem and "extractor" in problem
    explorer, problem = load("--weights", str(weights), "--nsd-root", str(tmp_path / "no-nsd"))
    assert explorer is None and "no-nsd" in problem
    explorer, problem = load("--preset", "paper", "--weights", str(weights))
    assert explorer is None and "--nsd-root" in problem
    page = error_page(problem, "python app.py --preset paper")
    texts = " ".join(str(getattr(block, "value", "")) for block in page.blocks.values())
    assert "could not start" in texts and "--nsd-root" in texts


def test_viz_figures_are_bounded_and_honest_without_an_mni_transform(ui, session):
    # their speed is measured by `python -m neurochat.bench app`, not asserted here
    from neurochat import viz

    heatmap = ui.explorer.localize(session.trial, session.example_concept)
    figure = viz.glass_brain_3d(heatmap, 0.5, max_points=50)
    image = viz.figure_to_image(viz.static_glass_brain(heatmap, 0.5))
    assert len(figure.data[-1].x) <= 50 and image.ndim == 3

    import dataclasses

    native_only = dataclasses.replace(heatmap, to_mni=None)
    figure = viz.glass_brain_3d(native_only, 0.5)
    assert [t.type for t in figure.data] == ["scatter3d"]
    assert "no MNI transform" in figure.layout.annotations[0].text
    assert viz.figure_to_image(viz.static_glass_brain(native_only, 0.5)).ndim == 3
    native, mni = viz.save_heatmap(native_only, ui.downloads)
    assert native.exists() and mni is None
    strip = viz.image_strip([np.zeros((64, 64, 3), np.uint8)] * 2, ["a", "b"])
    assert strip.ndim == 3 and strip.shape[1] > 1.8 * strip.shape[0]  # side by side, under their labels


def test_the_reconstruction_prompt_names_each_concept_once(explorer, monkeypatch):
    """The explorer asks the LLM for a_r with the concept vocabulary banned from repeating."""
    asked = []
    for method in ("generate", "stream"):
        original = getattr(explorer.brainllm, method)

        def spy(*args, _original=original, **kwargs):
            asked.append(kwargs.get("distinct_concepts"))
            return _original(*args, **kwargs)

        monkeypatch.setattr(explorer.brainllm, method, spy)
    subject = explorer.subjects[0]
    state = explorer.select(subject, explorer.trial_choices(subject)[0].nsd_id)
    explorer.reconstruction_prompt(state)
    "".join(explorer.chat(state, "Reconstruct the image"))
    "".join(explorer.chat(state, "Describe the image concisely."))
    assert asked == [explorer.vocabulary, explorer.vocabulary, None] and "cat" in explorer.vocabulary


def test_the_slices_tab_draws_the_located_map_and_redraws_only_once_opened(ui, session):
    import gradio as gr

    ask(ui, session, f'Locating the concept of "{session.example_concept}"')
    unopened = ui.refresh_slices(session, 0.5, "neurological", "", None)
    assert unopened[:3] == (gr.skip(), gr.skip(), gr.skip()) and unopened[3] is None  # nobody looks: no picture
    picture, peaks, readout, view = ui.viewer.show(session, 0.5, "neurological", "", None)
    assert picture.ndim == 3 and view is not None and "⚠️" not in readout
    again = ui.refresh_slices(session, 0.5, "radiological", "", view)
    assert again[0].ndim == 3 and not (again[0].shape == picture.shape and (again[0] == picture).all())
