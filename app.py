"""NeuroChat — talk with a brain recording (the Gradio explorer).

    python app.py                                    # demo preset: SimNSD generated on first run, committed weights
    python app.py --port 7861 --host 0.0.0.0         # serve on the network (e.g. a talk's laptop)
    python app.py --weights /tmp/micro --nsd-root .cache/simnsd-small-seed0   # any weights bundle and NSD tree
    python app.py --preset paper --nsd-root /data/nsd --weights /data/weights --device cuda
    python app.py --info [--json]                    # only prepare the demo data and summarise it

UI wiring only: every computation is a call on `neurochat.explorer.Explorer` (models, loaded once,
module-level and shared by every browser tab) or a figure from `neurochat.viz`. A tab's `gr.State`
holds a small `Session`: its `TrialState` (a dataclass of lists and strings), the chat as shown, and
a few UI flags. All listeners that use a model share one queue (`DEVICE_QUEUE`), so work never runs
twice at once on the one device. Errors reach people as sentences (a warning toast and the status
line), never as tracebacks.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

import argparse
import atexit
import dataclasses
import functools
import inspect
import json
import logging
import re
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Sequence

import gradio as gr
import numpy as np

from neurochat import viz
from neurochat.cli import run_main
from neurochat.errors import ConfigError, NeuroChatError
from neurochat.paths import ensure_simnsd

if TYPE_CHECKING:
    from neurochat.explorer import TrialState

log = logging.getLogger("neurochat.app")

DEVICE_QUEUE = "device"  # the one queue every model-using listener joins (one device, one job at a time)
BUSY_TIMEOUT_S = 300.0  # a chat turn still "running" after this long is taken as abandoned (closed tab)
DEFAULT_SEED = 0
THEME = gr.themes.Soft(primary_hue="indigo", text_size="sm", spacing_size="sm", radius_size="sm")
PROTOCOL_CHOICES = [("average of repetitions", "averaged"), ("single trial", "single")]

# The paper's instructions (App. A.2): Table 3, Table 4, a complex-reasoning question, Table 5, Table 6.
BRIEF = "Describe the image concisely."
DETAILED = "Describe the following image in detail."
REASONING = "Is this scene indoors or outdoors, and why?"
RECONSTRUCT = "Provide the corresponding Stable Diffusion prompts for the image."
EXAMPLES = [("Describe", BRIEF), ("Detailed", DETAILED), ("Reason", REASONING), ("Reconstruct", RECONSTRUCT)]


def locate_example(concept: str) -> str:
    return f'Locating the concept of "{concept}"'


HELP = """**How to use.** Pick a subject and a trial on the left (the picture is shown for reference only:
the models read the fMRI recording, never the picture). Ask in the chat, or press an example.
*Reconstruct* renders the picture from the brain with the LLM's prompt; move **β** to mix more noise
into the brain's VAE latent (β = 0: the VAE prior alone, β = 1: CLIP embedding + prompt alone).
*Locating the concept of "…"* shows where the concept lives on the 3D brain and adds a chip under
*Concepts*: untick a chip to silence that concept's voxels and see the ablated reconstruction."""

CSS = """
.gradio-container {max-width: 100% !important; padding: 2px 10px !important;}
#nc-header {align-items: center; gap: 8px; min-height: 0; flex-wrap: nowrap;}
#nc-header h2 {margin: 0; font-size: 1.15rem; white-space: nowrap;}
#nc-header h2 small {font-size: 0.75rem; font-weight: normal;}
#nc-title {flex: 0 0 auto !important; width: auto !important;}
#nc-status, #nc-status p {margin: 0; font-size: 0.82rem;}
#nc-status {max-height: 2.7em; overflow-y: auto;}  /* the full sentence is in the toast too */
.nc-compact {gap: 4px !important;}
.nc-small, .nc-small p {font-size: 0.8rem !important; line-height: 1.25; margin: 0 !important;}
.nc-examples {gap: 4px !important; flex-wrap: wrap !important;}
.nc-examples button {flex: 0 0 auto !important; width: auto !important; min-width: 0 !important;
  white-space: nowrap; font-size: 0.75rem !important; padding: 1px 8px !important;}
.nc-downloads {gap: 4px !important; flex-wrap: nowrap !important;}
.nc-downloads button {font-size: 0.72rem !important; padding: 2px 4px !important; min-width: 0 !important;}
.nc-picture img {width: 100% !important; height: 100% !important; object-fit: contain;}
.nc-prompt {max-height: 4.2em; overflow-y: auto;}
.nc-examples .prose {flex: 0 0 auto !important; width: auto !important; min-width: 0 !important;}
#nc-concepts label {font-size: 0.82rem;}
"""


# -- per-tab state ---------------------------------------------------------------------------------


@dataclass
class Session:
    """One browser tab's small state (Gradio deep-copies it per tab: no models in here)."""

    trial: TrialState | None = None  # the recording looked at, its LLM history, prompt and concepts
    messages: list[dict] = field(default_factory=list)  # the chat as shown (the user's own words)
    pending: str | None = None  # a message accepted and waiting for the model
    action: tuple | None = None  # the last turn's ("reconstruct", prompt) / ("localize", concept)
    busy_since: float | None = None  # a chat turn is running since (time.time())
    shown: str | None = None  # the concept on the brain view
    files_for: tuple | None = None  # (trial key, concept) whose heatmap files are written
    rendered: dict = field(default_factory=dict)  # what the reconstruction panel shows now (see `_render`)
    example_concept: str = ""  # the concept the 'Locate' example asks for (one this picture shows)
    view: str = "3d"  # the brain tab in front: "3d" or "glass" (the static view renders on demand)
    folder: str | None = None  # this tab's download folder


class _Problem(Exception):
    """A friendly refusal inside the app (e.g. no trial chosen yet)."""


def _guarded(doing: str):
    """Turn every exception of a handler into a sentence in the UI; a generator stays a generator.

    NeuroChat's own errors already are sentences; anything else is logged with its traceback for the
    developer, and the person sees what failed and where to look.
    """

    def decorate(method):
        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def stream(self, *args, **kwargs):
                try:
                    yield from method(self, *args, **kwargs)
                except Exception as error:  # noqa: BLE001 — shown as a sentence, logged in full
                    yield self._problem(error, doing, args)

            return stream

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as error:  # noqa: BLE001 — shown as a sentence, logged in full
                return self._problem(error, doing, args)

        return call

    return decorate


def _sentence(text: str) -> str:
    """Capitalise a message's first word, unless it is a name ("notes.txt is not ...", "'zebr' is ...")."""
    text = str(text).strip()
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first.islower() else text


def _as_text(content) -> str:
    """Chatbot content arrives as a list of blocks in Gradio 6; flatten it to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(_as_text(block) for block in content)
    return "" if content is None else str(content)


# -- the UI ------------------------------------------------------------------------------------------


class ExplorerUI:
    """The Blocks and their handlers around one loaded `Explorer`.

    Handlers take and return plain values (a dict of component → value, as Gradio accepts), so tests
    call them directly: `ui = ExplorerUI(explorer); ui.build(); ui.start(Session())`.
    """

    def __init__(self, explorer, downloads: str | Path | None = None):
        self.explorer = explorer
        self.downloads = Path(downloads) if downloads else viz.download_dir()
        self.c = SimpleNamespace()  # the components, filled by build()
        self._rng = np.random.default_rng()
        self.default_subject = explorer.subjects[0]
        self.default_trial = self._first_impression(self.default_subject)

    # -- layout ----------------------------------------------------------------------------------

    def build(self):
        from neurochat.reconstruct import DEFAULT_BETA

        explorer, c = self.explorer, self.c
        preset = explorer.preset.name
        data = "SimNSD phantom" if explorer.answer_key is not None else "NSD"
        with gr.Blocks(title="NeuroChat", delete_cache=(3600, 7200)) as blocks:
            c.state = gr.State(Session())
            with gr.Row(elem_id="nc-header"):
                gr.Markdown(f"## NeuroChat — talk with a brain recording <small>· preset: **{preset}** ({data}) · "
                            f"{explorer.reconstructor.device}</small>", elem_id="nc-title")  # fmt: skip
                c.status = gr.Markdown("", elem_id="nc-status")
                c.help = gr.Button("? help", size="sm", variant="secondary", scale=0, min_width=60)
            with gr.Row(equal_height=False):
                # -- left: what is being looked at ------------------------------------------------------
                with gr.Column(scale=2, min_width=200, elem_classes="nc-compact"):
                    c.subject = gr.Dropdown(explorer.subjects, value=self.default_subject, label="Subject",
                                            elem_id="nc-subject")  # fmt: skip
                    c.trial = gr.Dropdown(self._trial_choices(self.default_subject), value=self.default_trial,
                                          label="Trial (shared test first)", elem_id="nc-trial")  # fmt: skip
                    c.protocol = gr.Radio(PROTOCOL_CHOICES, value="averaged", show_label=False)
                    c.random = gr.Button("🎲 random trial", size="sm")
                    # The picture is shown for reference only: the models read the recording, never the picture.
                    c.stimulus = gr.Image(label="Seen (reference only)", height=210, interactive=False,
                                          buttons=["fullscreen"], elem_classes="nc-picture")  # fmt: skip
                    c.caption = gr.Markdown("", elem_classes="nc-small")
                    c.upload = gr.UploadButton("⤒ upload a beta map (3D NIfTI)", file_count="single", type="filepath",
                                               size="sm", variant="secondary")  # fmt: skip
                # -- middle: the conversation ------------------------------------------------------
                with gr.Column(scale=3, min_width=330, elem_classes="nc-compact"):
                    c.chatbot = gr.Chatbot(label="Chat with the recording", show_label=False, height=530,
                                           elem_id="nc-chat", buttons=["copy"],
                                           placeholder="Chat with the recording: ask about this trial, or press an example.")  # fmt: skip
                    with gr.Row(elem_classes="nc-compact"):
                        c.message = gr.Textbox(placeholder="Ask about this trial…", show_label=False, container=False,
                                               max_lines=3, scale=6)  # fmt: skip
                        c.send = gr.Button("➤", variant="primary", scale=0, min_width=48)
                    with gr.Row(elem_classes="nc-examples"):
                        gr.Markdown("Try:", elem_classes="nc-small")
                        c.examples = {text: gr.Button(label, size="sm", scale=0, min_width=0)
                                      for label, text in EXAMPLES}  # fmt: skip
                        c.ex_locate = gr.Button(f'Locate "{self._example_concept(None, self.default_trial)}"',
                                                size="sm", scale=0, min_width=0)  # fmt: skip
                # -- right: reconstruction, concepts, brain -------------------------------------------
                with gr.Column(scale=6, min_width=560, elem_classes="nc-compact"):
                    with gr.Row(elem_classes="nc-compact"):
                        picture = {"height": 170, "interactive": False, "buttons": ["download"],
                                   "elem_classes": "nc-picture"}  # fmt: skip
                        c.prior = gr.Image(label="VAE prior (ẑ_v)", elem_id="nc-prior", **picture)
                        c.final = gr.Image(label="Reconstruction", elem_id="nc-final", **picture)
                        c.ablated = gr.Image(label="Ablated", elem_id="nc-ablated", **picture)
                    with gr.Row(elem_classes="nc-compact", equal_height=False):
                        with gr.Column(scale=2, min_width=230, elem_classes="nc-compact"):
                            with gr.Row(elem_classes="nc-compact"):
                                c.beta = gr.Slider(0.0, 1.0, value=DEFAULT_BETA, step=0.01, label="β (noise into ẑ_v)",
                                                   scale=3, elem_id="nc-beta")  # fmt: skip
                                c.seed = gr.Number(DEFAULT_SEED, label="seed", precision=0, minimum=0, scale=1,
                                                   min_width=64)  # fmt: skip
                            c.prompt = gr.Markdown("", elem_classes=["nc-small", "nc-prompt"])
                            c.concepts = gr.CheckboxGroup([], value=[], label="Concepts · untick to remove",
                                                          elem_id="nc-concepts")  # fmt: skip
                            with gr.Row(elem_classes="nc-compact"):
                                c.locate_box = gr.Textbox(placeholder="locate a concept, e.g. dog", show_label=False,
                                                          container=False, max_lines=1, scale=3)  # fmt: skip
                                c.locate = gr.Button("Locate", size="sm", scale=1, min_width=60)
                                c.reset = gr.Button("↺ restore all", size="sm", scale=1, min_width=60)
                            with gr.Row(elem_classes="nc-downloads"):
                                c.dl_native = gr.DownloadButton("⤓ heatmap (native)", size="sm", interactive=False)
                                c.dl_mni = gr.DownloadButton("⤓ heatmap (MNI)", size="sm", interactive=False)
                            with gr.Row(elem_classes="nc-downloads"):
                                c.dl_images = gr.DownloadButton("⤓ images PNG", size="sm", interactive=False)
                                c.dl_chat = gr.DownloadButton("⤓ chat JSON", size="sm", interactive=False)
                        with gr.Column(scale=3, min_width=320, elem_classes="nc-compact"):
                            c.brain_title = gr.Markdown("Ask to locate a concept to see it on the brain.",
                                                        elem_classes="nc-small")  # fmt: skip
                            with gr.Tabs(elem_id="nc-brain"):
                                with gr.Tab("3D brain") as c.tab_3d:
                                    c.brain3d = gr.Plot(show_label=False, elem_id="nc-brain3d")
                                with gr.Tab("glass brain") as c.tab_glass:
                                    c.glass = gr.Image(show_label=False, interactive=False, height=260,
                                                       buttons=["download"], elem_classes="nc-picture",
                                                       elem_id="nc-glass")  # fmt: skip
                            c.threshold = gr.Slider(0.0, 0.99, value=viz.DEFAULT_THRESHOLD, step=0.01,
                                                    label="heat threshold", elem_id="nc-threshold")  # fmt: skip
            self._wire(blocks)
        return blocks

    def _wire(self, blocks) -> None:
        c = self.c
        on_device = {"concurrency_id": DEVICE_QUEUE, "concurrency_limit": 1}
        trial_out = [c.status, c.state, c.subject, c.trial, c.stimulus, c.caption, c.chatbot, c.prior, c.final,
                     c.ablated, c.prompt, c.concepts, c.brain_title, c.brain3d, c.glass, c.ex_locate, c.dl_native,
                     c.dl_mni, c.dl_images, c.dl_chat]  # fmt: skip
        chat_out = [c.status, c.state, c.message, c.chatbot, c.concepts, c.dl_chat]
        render_out = [c.status, c.state, c.final, c.ablated, c.prompt, c.concepts, c.dl_images]
        brain_out = [c.status, c.state, c.brain_title, c.brain3d, c.glass, c.concepts]
        act_out = list(dict.fromkeys(render_out + brain_out))
        files_out = [c.status, c.state, c.dl_native, c.dl_mni]

        blocks.load(self.start, [c.state], trial_out, **on_device)
        c.help.click(lambda: gr.Info(HELP, duration=30), None, None, queue=False)
        c.subject.input(self.pick_subject, [c.subject, c.protocol, c.state], trial_out, **on_device)
        c.trial.input(self.pick_trial, [c.subject, c.trial, c.protocol, c.state], trial_out, **on_device)
        c.protocol.input(self.pick_trial, [c.subject, c.trial, c.protocol, c.state], trial_out, **on_device)
        c.random.click(self.random_trial, [c.subject, c.protocol, c.state], trial_out, **on_device)
        c.upload.upload(self.upload, [c.upload, c.state], trial_out, **on_device)

        # Ask: show the message at once (no queue), stream the answer, then run what it asked for.
        asks = [(c.message.submit, self.accept, [c.message, c.state]),
                (c.send.click, self.accept, [c.message, c.state]),
                (c.ex_locate.click, self.accept_locate, [c.state])]  # fmt: skip
        asks += [(button.click, functools.partial(self.accept, text), [c.state]) for text, button in c.examples.items()]
        for trigger, accept, inputs in asks:
            (trigger(accept, inputs, chat_out, queue=False, show_progress="hidden")
             .then(self.answer, [c.state], chat_out, show_progress="minimal", **on_device)
             .then(self.act, [c.state, c.beta, c.seed, c.threshold], act_out,
                   show_progress_on=[c.final, c.brain3d], **on_device)
             .then(self.heatmap_files, [c.state], files_out, show_progress="hidden", **on_device))  # fmt: skip

        c.beta.release(self.rerender, [c.beta, c.seed, c.state], render_out, show_progress_on=[c.final, c.ablated],
                       **on_device)  # fmt: skip
        for trigger in (c.seed.submit, c.seed.blur):  # unchanged pictures come from the cache and are not re-sent
            trigger(self.rerender, [c.beta, c.seed, c.state], render_out, show_progress_on=[c.final, c.ablated],
                    **on_device)  # fmt: skip
        c.concepts.input(self.toggle, [c.concepts, c.beta, c.seed, c.state], render_out,
                         show_progress_on=[c.ablated], **on_device)  # fmt: skip
        c.reset.click(self.restore, [c.beta, c.seed, c.state], render_out, show_progress_on=[c.ablated], **on_device)
        for trigger in (c.locate.click, c.locate_box.submit):
            (trigger(self.locate, [c.locate_box, c.threshold, c.state], brain_out, show_progress_on=[c.brain3d],
                     **on_device)
             .then(self.heatmap_files, [c.state], files_out, show_progress="hidden", **on_device))  # fmt: skip
        c.threshold.release(self.redraw_brain, [c.threshold, c.state], brain_out, show_progress="minimal", **on_device)
        c.tab_3d.select(self.show_3d, [c.threshold, c.state], brain_out, queue=False, show_progress="hidden")
        c.tab_glass.select(self.show_glass, [c.threshold, c.state], brain_out, show_progress_on=[c.glass], **on_device)

    # -- choosing what to look at -------------------------------------------------------------------

    def _trial_choices(self, subject: str) -> list[tuple[str, int]]:
        return [(choice.label, choice.nsd_id) for choice in self.explorer.trial_choices(subject)]

    def _object_concepts(self, nsd_id: int | None) -> list[str]:
        """What the picture shows (answer key, else the annotation boxes); objects before scenes."""
        from neurochat.explorer import TrialState
        from neurochat.sim.concepts import SCENES

        if nsd_id is None:
            return []
        known = self.explorer.true_concepts(TrialState(self.default_subject, nsd_id, "averaged"))
        if not known:
            known = list(dict.fromkeys(box["name"] for box in self.explorer.dataset.boxes(nsd_id)))
        return [c for c in known if c not in SCENES] + [c for c in known if c in SCENES]

    def _first_impression(self, subject: str) -> int:
        """A shared test picture of two different objects (a good start for a talk), else the first shared one.

        Two single instances ("a bird and a dog") beat two kinds in several copies ("two apples and two
        oranges"); the annotation boxes count instances, for SimNSD and real NSD alike.
        """
        from neurochat.sim.concepts import SCENES

        choices = [choice for choice in self.explorer.trial_choices(subject) if choice.shared]
        choices = choices or self.explorer.trial_choices(subject)
        if not choices:
            raise ConfigError(f"{subject} has no trials on disk")

        def objects(nsd_id: int) -> list[str]:
            return [c for c in self._object_concepts(nsd_id) if c not in SCENES]

        def instances(nsd_id: int) -> int:
            return len(self.explorer.dataset.boxes(nsd_id))

        for good in (lambda n: len(objects(n)) == 2 and instances(n) == 2, lambda n: len(objects(n)) == 2):
            for choice in choices:
                if good(choice.nsd_id):
                    return choice.nsd_id
        return choices[0].nsd_id

    def _example_concept(self, session: Session | None, nsd_id: int | None) -> str:
        concepts = self._object_concepts(nsd_id)
        if concepts:
            return concepts[0]
        if session is not None and session.trial is not None and session.trial.concepts:
            return session.trial.concepts[0]
        vocabulary = self.explorer.vocabulary
        return vocabulary[0] if vocabulary else "person"

    def _fresh(self, session: Session, trial, subject_value=None, trial_value=None) -> dict:
        """Everything that changes when a new recording is chosen."""
        c = self.c
        session.trial, session.messages, session.pending, session.action = trial, [], None, None
        session.busy_since, session.shown, session.files_for, session.rendered = None, None, None, {}
        session.example_concept = self._example_concept(session, trial.nsd_id)
        if trial.upload is None:
            self.explorer.prepare_localization(trial.subject)  # so the first "where is …" need not wait for the fit
        picture, captions = self.explorer.stimulus(trial)
        if trial.upload is not None:
            caption = f"**{trial.label()}** — no picture is known for an uploaded volume."
        else:
            caption = f"*“{captions[0]}”*" if captions else "(no caption on disk)"
        prior = self.explorer.vae_prior(trial)
        return {
            c.status: f"Now exploring {trial.label()}.",
            c.state: session,
            c.subject: gr.update(value=subject_value) if subject_value else gr.update(),
            c.trial: trial_value if trial_value is not None else gr.update(),
            c.stimulus: picture,
            c.caption: caption,
            c.chatbot: [],
            c.prior: prior,
            c.final: None,
            c.ablated: None,
            c.prompt: "Ask for a reconstruction (“Provide the corresponding Stable Diffusion prompts…”) to render it.",
            c.concepts: gr.update(choices=[], value=[]),
            c.brain_title: "",
            c.brain3d: None,
            c.glass: None,
            c.ex_locate: gr.update(value=f'Locate "{session.example_concept}"'),
            c.dl_native: gr.update(value=None, interactive=False),
            c.dl_mni: gr.update(value=None, interactive=False),
            c.dl_images: gr.update(value=None, interactive=False),
            c.dl_chat: gr.update(value=None, interactive=False),
        }

    @_guarded("loading the first trial")
    def start(self, session: Session) -> dict:
        """The page's first trial (also used when a tab reloads)."""
        trial = self.explorer.select(self.default_subject, self.default_trial)
        return self._fresh(session or Session(), trial, self.default_subject, self.default_trial)

    @_guarded("changing the subject")
    def pick_subject(self, subject: str, protocol: str, session: Session) -> dict:
        if not subject:
            raise _Problem("Choose a subject.")
        nsd_id = self._first_impression(subject)
        trial = self.explorer.select(subject, nsd_id, protocol or "averaged")
        out = self._fresh(session, trial)
        out[self.c.trial] = gr.update(choices=self._trial_choices(subject), value=nsd_id)
        return out

    @_guarded("opening the trial")
    def pick_trial(self, subject: str, nsd_id, protocol: str, session: Session) -> dict:
        if not subject or nsd_id in (None, ""):
            raise _Problem("Pick a subject and a trial first (left column).")
        trial = self.explorer.select(subject, int(nsd_id), protocol or "averaged")
        return self._fresh(session, trial)

    @_guarded("picking a random trial")
    def random_trial(self, subject: str, protocol: str, session: Session) -> dict:
        if not subject:
            raise _Problem("Choose a subject first.")
        choice = self.explorer.random_choice(subject, self._rng)
        trial = self.explorer.select(subject, choice.nsd_id, protocol or "averaged")
        return self._fresh(session, trial, trial_value=choice.nsd_id)

    @_guarded("reading the uploaded volume")
    def upload(self, path, session: Session) -> dict:
        if not path:
            raise _Problem("Choose a NIfTI file (.nii or .nii.gz) holding one trial's 3D beta map.")
        path = getattr(path, "name", path)  # a tempfile wrapper in older Gradio versions
        trial = self.explorer.upload(path)
        return self._fresh(session, trial)

    # -- chat ----------------------------------------------------------------------------------------

    def _require_trial(self, session: Session | None) -> Session:
        if session is None or session.trial is None:
            raise _Problem("Pick a subject and a trial first (left column).")
        return session

    @_guarded("reading your message")
    def accept(self, message, session: Session) -> dict:
        """Show the message at once and hand it to `answer` (refusing bad input with a sentence)."""
        from neurochat.explorer import MAX_MESSAGE_CHARS
        from neurochat.language import parse_localization_request

        c = self.c
        session = self._require_trial(session)
        text = _as_text(message).strip()
        if session.busy_since is not None and time.time() - session.busy_since < BUSY_TIMEOUT_S:
            raise _Problem("Still working on the previous message — it will not be asked twice. "
                           "Ask again when it is done.")  # fmt: skip
        if not text:
            raise _Problem("Type a question about this trial, or press one of the examples below the chat.")
        if len(text) > MAX_MESSAGE_CHARS:
            raise _Problem(f"That message has {len(text):,} characters; please ask in at most {MAX_MESSAGE_CHARS:,}.")
        vocabulary = self.explorer.vocabulary
        if vocabulary is not None and re.search(r"\blocat|\blocali[sz]", text, re.IGNORECASE):
            asked = parse_localization_request(text)  # the phrase, before snapping to the vocabulary
            if asked and parse_localization_request(text, vocabulary) is None:
                self.explorer.localizer.check_concept(asked)  # raises a ConceptError naming close concepts
        session.pending, session.busy_since = text, time.time()
        session.messages = session.messages + [{"role": "user", "content": text}]
        return {c.status: "", c.state: session, c.message: "", c.chatbot: session.messages}

    def accept_locate(self, session: Session) -> dict:
        """The 'Locate' example: Table 6's instruction for a concept this picture shows."""
        concept = session.example_concept if session is not None else ""
        return self.accept(locate_example(concept or self._example_concept(session, None)), session)

    @_guarded("answering")
    def answer(self, session: Session):
        """Stream the recording's answer into the chat (whole history each time, as Gradio wants)."""
        c = self.c
        if session is None or session.pending is None:
            yield self._unchanged()
            return
        text, session.pending = session.pending, None
        turn = self.explorer.chat(session.trial, text)
        if turn.notes:
            gr.Info(_sentence(" ".join(turn.notes)))
        session.messages = session.messages + [{"role": "assistant", "content": ""}]
        for piece in turn:
            session.messages[-1]["content"] += piece
            yield {c.chatbot: session.messages, c.state: session}
        if not turn.text.strip():
            session.messages[-1]["content"] = "(the model gave no answer)"
        session.action = turn.action
        if turn.action is None:
            session.busy_since = None  # nothing more to do for this turn (else `act` ends it)
        self._note_concepts(session, text + " " + turn.text)
        yield {c.status: "", c.state: session, c.chatbot: session.messages, c.concepts: self._chips(session),
               c.dl_chat: self._chat_file(session)}  # fmt: skip

    def _note_concepts(self, session: Session, text: str) -> None:
        """Concepts named in the conversation get a chip too (the demo knows its vocabulary)."""
        vocabulary = self.explorer.vocabulary or []
        found = []
        for name in vocabulary:
            match = re.search(rf"\b{re.escape(name)}(?:s|es)?\b", text, re.IGNORECASE)
            if match:
                found.append((match.start(), name))
        for _, name in sorted(found):
            if name not in session.trial.concepts:
                session.trial.concepts.append(name)

    def _chips(self, session: Session):
        trial = session.trial
        kept = [name for name in trial.concepts if name not in trial.removed]
        return gr.update(choices=list(trial.concepts), value=kept)

    @_guarded("running the request")
    def act(self, session: Session, beta: float, seed, threshold: float, progress=gr.Progress()) -> dict:
        """After a turn: render the reconstruction or localize the concept the LLM was asked for."""
        if session is None or session.action is None:
            return self._unchanged()
        (kind, argument), session.action = session.action, None
        try:
            if kind == "reconstruct":
                return self._render(session, beta, seed, progress)
            return self._locate(session, argument, threshold, progress)
        finally:
            session.busy_since = None

    # -- reconstruction and ablation -------------------------------------------------------------

    def _render(self, session: Session, beta: float, seed, progress=None) -> dict:
        """The reconstruction with the current β and seed; and the ablated one when concepts are off."""
        c, explorer = self.c, self.explorer
        trial = self._require_trial(session).trial
        beta, seed = _check_beta(beta), _check_seed(seed)
        steps = _progress_steps(progress)
        original_state = dataclasses.replace(trial, removed=[])
        if progress is not None:
            progress(0.0, desc="denoising")
        final = explorer.reconstruct(original_state, beta=beta, seed=seed, progress=steps("denoising"))
        prior = explorer.vae_prior(original_state)  # (with concepts removed it would decode the ablated ẑ_v)
        ablated = None
        if trial.removed:
            ablated = explorer.reconstruct(trial, beta=beta, seed=seed, progress=steps("ablating and denoising"))
        prompt = trial.prompt
        shown_prompt = f"**prompt:** {prompt}" if prompt else "**prompt:** none yet (ẑ_c alone): ask to reconstruct"
        labels, images = ["VAE prior", f"reconstruction β={beta:.2f} seed={seed}"], [prior, final]
        if ablated is not None:
            labels.append("without " + ", ".join(trial.removed))
            images.append(ablated)
        strip = viz.save_png(viz.image_strip(images, labels), self._folder(session), f"reconstruction_{_stem(trial)}")
        # Send a picture only when it changed: Gradio rewrites an image's cache file in place on every
        # send, and a browser still fetching the same picture then gets a truncated response.
        drawn = (trial.key, prompt, beta, seed)
        shown = {"final": drawn, "ablated": (*drawn, tuple(trial.removed))}
        changed = {name: session.rendered.get(name) != key for name, key in shown.items()}
        session.rendered.update(shown)
        if ablated is None:
            ablated_update = gr.update(value=None, label="Ablated (untick a concept)")
        else:
            ablated_update = gr.update(label="Ablated: without " + ", ".join(trial.removed))
            if changed["ablated"]:
                ablated_update["value"] = ablated
        return {
            c.status: "", c.state: session,
            c.final: final if changed["final"] else gr.update(),
            c.ablated: ablated_update,
            c.prompt: f"{shown_prompt} · β = {beta:.2f} · seed {seed}",
            c.concepts: self._chips(session),
            c.dl_images: gr.update(value=str(strip), interactive=True),
        }  # fmt: skip

    @_guarded("re-rendering")
    def rerender(self, beta: float, seed, session: Session, progress=gr.Progress()) -> dict:
        """β or seed changed: only the diffusion runs again (the explorer caches the features)."""
        self._require_trial(session)
        return self._render(session, beta, seed, progress)

    @_guarded("removing the concept")
    def toggle(self, kept: list[str] | None, beta: float, seed, session: Session, progress=gr.Progress()) -> dict:
        """The chips say which concepts stay; the unticked ones are ablated (same β and seed)."""
        trial = self._require_trial(session).trial
        kept = set(kept or [])
        for name in kept - set(trial.concepts):
            raise _Problem(f"'{name}' is not one of this trial's concepts.")
        trial.removed = [name for name in trial.concepts if name not in kept]
        try:
            return self._render(session, beta, seed, progress)
        except NeuroChatError:
            trial.removed = []  # an unknown concept cannot be removed: keep the recording whole
            raise

    @_guarded("restoring the concepts")
    def restore(self, beta: float, seed, session: Session, progress=gr.Progress()) -> dict:
        trial = self._require_trial(session).trial
        trial.removed = []
        return self._render(session, beta, seed, progress)

    # -- localization ------------------------------------------------------------------------------

    def _locate(self, session: Session, concept: str, threshold: float, progress=None) -> dict:
        trial = self._require_trial(session).trial
        if progress is not None:
            progress(0.0, desc=f"mapping the concept with {len(self.explorer.ensemble)} extractors")
        heatmap = self.explorer.localize(trial, concept)
        session.shown = heatmap.concept
        return self._brain(session, heatmap, threshold)

    def _brain(self, session: Session, heatmap, threshold: float) -> dict:
        c = self.c
        threshold = float(np.clip(threshold if threshold is not None else viz.DEFAULT_THRESHOLD, 0.0, 0.99))
        figure = viz.glass_brain_3d(heatmap, threshold)
        glass = self._glass_image(heatmap, threshold) if session.view == "glass" else None
        method = "encoding map" if heatmap.method == "encoding" else "GradCAM"
        return {c.status: "", c.state: session, c.brain_title: f'**Where is "{heatmap.concept}"?** '
                f"(drag to rotate · {heatmap.subject} · {method})", c.brain3d: figure, c.glass: glass,
                c.concepts: self._chips(session)}  # fmt: skip

    @staticmethod
    def _glass_image(heatmap, threshold: float) -> np.ndarray:
        import matplotlib.pyplot as plt

        figure = viz.static_glass_brain(heatmap, threshold)
        try:
            return viz.figure_to_image(figure)
        finally:
            plt.close(figure)

    @_guarded("locating the concept")
    def locate(self, concept: str, threshold: float, session: Session, progress=gr.Progress()) -> dict:
        self._require_trial(session)
        return self._locate(session, concept, threshold, progress)

    @_guarded("redrawing the brain")
    def redraw_brain(self, threshold: float, session: Session) -> dict:
        c = self.c
        if session is None or session.trial is None or session.shown is None:
            return {c.state: session}
        return self._brain(session, self.explorer.localize(session.trial, session.shown), threshold)

    def show_3d(self, threshold: float, session: Session) -> dict:
        return self.show_view("3d", threshold, session)

    def show_glass(self, threshold: float, session: Session) -> dict:
        return self.show_view("glass", threshold, session)

    @_guarded("switching the brain view")
    def show_view(self, view: str, threshold: float, session: Session) -> dict:
        c = self.c
        if session is None:
            return self._unchanged()
        session.view = view
        if view == "glass" and session.trial is not None and session.shown is not None:
            heatmap = self.explorer.localize(session.trial, session.shown)
            return {c.state: session, c.glass: self._glass_image(heatmap, threshold)}
        return {c.state: session}

    # -- downloads ------------------------------------------------------------------------------------

    def _folder(self, session: Session) -> Path:
        if session.folder is None:
            session.folder = uuid.uuid4().hex[:12]
        folder = self.downloads / session.folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @_guarded("preparing the heatmap files")
    def heatmap_files(self, session: Session) -> dict:
        """The shown heatmap as NIfTI, native and MNI (after the figure, so the brain shows first)."""
        c = self.c
        if session is None or session.trial is None or session.shown is None:
            return self._unchanged()
        if session.files_for == (session.trial.key, session.shown):
            return self._unchanged()  # written already
        session.files_for = (session.trial.key, session.shown)
        heatmap = self.explorer.localize(session.trial, session.shown)
        native, mni = viz.save_heatmap(heatmap, self._folder(session))
        mni_update = gr.update(value=str(mni), interactive=True) if mni else gr.update(value=None, interactive=False)
        return {c.state: session, c.dl_native: gr.update(value=str(native), interactive=True), c.dl_mni: mni_update}

    def _chat_file(self, session: Session):
        trial = session.trial
        payload = {
            "preset": self.explorer.preset.name,
            "recording": trial.label(),
            "subject": trial.subject,
            "nsd_id": trial.nsd_id,
            "protocol": trial.protocol,
            "conversation": [{"role": m["role"], "content": _as_text(m["content"])} for m in session.messages],
            "sent_to_model": trial.history,  # the paper's instructions, as the LLM saw them
            "reconstruction_prompt": trial.prompt,
            "concepts": trial.concepts,
            "removed": trial.removed,
        }
        path = viz.save_json(payload, self._folder(session), f"conversation_{_stem(trial)}")
        return gr.update(value=str(path), interactive=True)

    # -- errors -----------------------------------------------------------------------------------------

    def _unchanged(self) -> dict:
        """No update (Gradio takes an empty dict for one value, so name one component)."""
        return {self.c.status: gr.update()}

    def _problem(self, error: Exception, doing: str, args) -> dict:
        """The sentence for a failed handler, as a warning toast and in the status line."""
        if isinstance(error, (NeuroChatError, _Problem)):
            message = _sentence(str(error))
        else:
            log.error("error while %s", doing, exc_info=error)
            message = (f"Something went wrong while {doing} ({error.__class__.__name__}). Nothing was changed; "
                       "the server log has the details.")  # fmt: skip
        gr.Warning(message)
        out = {self.c.status: f"⚠️ {message}"}
        if isinstance(error, _Problem):
            return out  # a refusal: nothing was started, the tab's state stays as it was
        for arg in args:  # a failed step: end the turn, so that the next message is accepted
            if isinstance(arg, Session):
                arg.pending, arg.action, arg.busy_since = None, None, None
                out[self.c.state] = arg
                if arg.trial is not None:
                    out[self.c.concepts] = self._chips(arg)
        return out


def _check_beta(beta) -> float:
    from neurochat.reconstruct import DEFAULT_BETA

    beta = DEFAULT_BETA if beta is None else float(beta)
    if not 0.0 <= beta <= 1.0:
        raise _Problem(f"β = {beta:g} is outside 0…1: it is the share of noise mixed into the brain's VAE latent.")
    return beta


def _check_seed(seed) -> int:
    if seed is None or seed == "":
        return DEFAULT_SEED
    value = float(seed)
    if not value.is_integer() or value < 0:
        raise _Problem(f"The seed must be a whole number ≥ 0, not {seed}.")
    return int(value)


def _progress_steps(progress):
    """A `callable(step, total)` for the reconstructor that drives a Gradio progress bar."""

    def named(what: str):
        return None if progress is None else lambda step, total: progress((step, total), desc=what, unit="steps")

    return named


def _stem(trial) -> str:
    return viz.safe_name(trial.upload or f"{trial.subject}_image{trial.nsd_id}_{trial.protocol}")


# -- start-up ------------------------------------------------------------------------------------------


def error_page(message: str, command: str):
    """What the browser shows when the models or data cannot be loaded: the sentence, not a crash."""
    with gr.Blocks(title="NeuroChat — cannot start") as blocks:
        gr.Markdown("## NeuroChat could not start")
        gr.Markdown(f"**{_sentence(message)}**")
        gr.Markdown(f"Fix this, then start the app again: `{command}`")
    return blocks


def load_explorer(args: argparse.Namespace, log_line=print):
    """(explorer, None) or (None, the sentence that says what is missing and where)."""
    import torch

    from neurochat.explorer import Explorer

    if args.device == "cuda" and not torch.cuda.is_available():
        return None, "--device cuda was asked for, but torch sees no CUDA GPU on this machine: use --device cpu"
    try:
        nsd_root = args.nsd_root
        if nsd_root is None and args.preset == "demo":
            nsd_root = ensure_simnsd("demo", args.seed)  # generated once into the cache (about a minute)
        started = time.perf_counter()
        log_line(f"loading the {args.preset} models from {args.weights or 'the committed checkpoints'} …")
        explorer = Explorer.load(args.preset, nsd_root=nsd_root, weights=args.weights, device=args.device,
                                 log=log_line)  # fmt: skip
        log_line(f"models ready in {time.perf_counter() - started:.1f} s")
        return explorer, None
    except NeuroChatError as error:
        return None, str(error)
    except (OSError, ValueError, RuntimeError, KeyError) as error:  # a damaged or foreign weights folder
        log.error("could not load the models", exc_info=error)
        return None, f"the models could not be loaded ({error.__class__.__name__}: {error})"


def warm_up(ui: ExplorerUI) -> None:
    """First trial's features and the figure libraries, so the first clicks are fast."""
    ui.explorer.select(ui.default_subject, ui.default_trial)
    ui.explorer.prepare_localization(ui.default_subject)

    def figures():
        try:
            viz.warm_up()
        except Exception as error:  # noqa: BLE001 — only a speed-up
            log.warning("figure warm-up failed: %s", error)

    threading.Thread(target=figures, daemon=True, name="viz-warm-up").start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--preset", choices=("demo", "paper"), default="demo")
    parser.add_argument("--nsd-root", help="NSD tree (demo default: the SimNSD phantom, generated into the cache)")
    parser.add_argument("--weights", help="weights folder (demo default: checkpoints/demo; paper: its weights root)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (0.0.0.0 for the network)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--seed", type=int, default=0, help="SimNSD seed of the demo data")
    parser.add_argument("--info", action="store_true", help="only prepare the demo data and print its summary")
    parser.add_argument("--json", action="store_true", help="with --info: print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.info or args.json:
        from neurochat.nsd import NSDDataset
        from neurochat.nsd.__main__ import _format_info

        summary = NSDDataset(args.nsd_root or ensure_simnsd("demo", args.seed)).summary()
        print(json.dumps(summary, indent=2) if args.json else _format_info(summary))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    explorer, problem = load_explorer(args)
    if explorer is None:
        print(f"error: {problem}", file=sys.stderr)
        blocks = error_page(problem, "python " + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
    else:
        ui = ExplorerUI(explorer)
        atexit.register(shutil.rmtree, ui.downloads, ignore_errors=True)
        blocks = ui.build()
        warm_up(ui)
    blocks.queue(default_concurrency_limit=1)
    print(f"NeuroChat on http://{args.host}:{args.port}", flush=True)
    blocks.launch(server_name=args.host, server_port=args.port, theme=THEME,
                  css=CSS, ssr_mode=False, footer_links=[], show_error=False, quiet=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    run_main(main)
