"""One browser tab's state (`Session`) and the handlers that read and change it (`SessionHandlers`).

Handlers take and return plain values: a dict of component → value (or `gr.update`), as Gradio
accepts, keyed by the components that `ExplorerUI.build` puts in `self.c`. Every handler that can fail
is wrapped by `guarded`, so a failure becomes a sentence in the UI, never a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from neurochat import viz
from neurochat.app import figures
from neurochat.app.problems import Problem, guarded, sentence
from neurochat.errors import NeuroChatError
from neurochat.language import localization_instruction

if TYPE_CHECKING:
    from neurochat.explorer import TrialState

log = logging.getLogger("neurochat.app")

BUSY_TIMEOUT_S = 300.0  # a chat turn still "running" after this long is taken as abandoned (closed tab)
DEFAULT_SEED = 0


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


def _as_text(content) -> str:
    """Chatbot content arrives as a list of blocks in Gradio 6; flatten it to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(_as_text(block) for block in content)
    return "" if content is None else str(content)


class SessionHandlers:
    """The handlers of one page around one loaded `Explorer` (shared by every tab; a tab's own state
    is the `Session` passed in). `ExplorerUI` adds the layout that fills `self.c` with components."""

    def __init__(self, explorer, downloads: str | Path | None = None):
        self.explorer = explorer
        self.downloads = Path(downloads) if downloads else viz.download_dir()
        self.c = SimpleNamespace()  # the components, filled by build()
        self._rng = np.random.default_rng()
        self.default_subject = explorer.subjects[0]
        self.default_trial = explorer.first_impression(self.default_subject)

    # -- choosing what to look at -------------------------------------------------------------------

    def _trial_choices(self, subject: str) -> list[tuple[str, int]]:
        return [(choice.label, choice.nsd_id) for choice in self.explorer.trial_choices(subject)]

    def _fresh(self, session: Session, trial, subject_value=None, trial_value=None) -> dict:
        """Everything that changes when a new recording is chosen."""
        c = self.c
        session.trial, session.messages, session.pending, session.action = trial, [], None, None
        session.busy_since, session.shown, session.files_for, session.rendered = None, None, None, {}
        session.example_concept = self.explorer.example_concept(trial.nsd_id, trial.concepts)
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

    @guarded("loading the first trial")
    def start(self, session: Session) -> dict:
        """The page's first trial (also used when a tab reloads)."""
        trial = self.explorer.select(self.default_subject, self.default_trial)
        return self._fresh(session or Session(), trial, self.default_subject, self.default_trial)

    @guarded("changing the subject")
    def pick_subject(self, subject: str, protocol: str, session: Session) -> dict:
        if not subject:
            raise Problem("Choose a subject.")
        nsd_id = self.explorer.first_impression(subject)
        trial = self.explorer.select(subject, nsd_id, protocol or "averaged")
        out = self._fresh(session, trial)
        out[self.c.trial] = gr.update(choices=self._trial_choices(subject), value=nsd_id)
        return out

    @guarded("opening the trial")
    def pick_trial(self, subject: str, nsd_id, protocol: str, session: Session) -> dict:
        if not subject or nsd_id in (None, ""):
            raise Problem("Pick a subject and a trial first (left column).")
        trial = self.explorer.select(subject, int(nsd_id), protocol or "averaged")
        return self._fresh(session, trial)

    @guarded("picking a random trial")
    def random_trial(self, subject: str, protocol: str, session: Session) -> dict:
        if not subject:
            raise Problem("Choose a subject first.")
        choice = self.explorer.random_choice(subject, self._rng)
        trial = self.explorer.select(subject, choice.nsd_id, protocol or "averaged")
        return self._fresh(session, trial, trial_value=choice.nsd_id)

    @guarded("reading the uploaded volume")
    def upload(self, path, session: Session) -> dict:
        if not path:
            raise Problem("Choose a NIfTI file (.nii or .nii.gz) holding one trial's 3D beta map.")
        path = getattr(path, "name", path)  # a tempfile wrapper in older Gradio versions
        trial = self.explorer.upload(path)
        return self._fresh(session, trial)

    # -- chat ----------------------------------------------------------------------------------------

    def _require_trial(self, session: Session | None) -> Session:
        if session is None or session.trial is None:
            raise Problem("Pick a subject and a trial first (left column).")
        return session

    @guarded("reading your message")
    def accept(self, message, session: Session) -> dict:
        """Show the message at once and hand it to `answer` (refusing bad input with a sentence)."""
        from neurochat.explorer import MAX_MESSAGE_CHARS

        c = self.c
        session = self._require_trial(session)
        text = _as_text(message).strip()
        if session.busy_since is not None and time.time() - session.busy_since < BUSY_TIMEOUT_S:
            raise Problem("Still working on the previous message — it will not be asked twice. "
                           "Ask again when it is done.")  # fmt: skip
        if not text:
            raise Problem("Type a question about this trial, or press one of the examples below the chat.")
        if len(text) > MAX_MESSAGE_CHARS:
            raise Problem(f"That message has {len(text):,} characters; please ask in at most {MAX_MESSAGE_CHARS:,}.")
        self.explorer.check_localization_request(text)  # a concept it does not know: a sentence naming close ones
        session.pending, session.busy_since = text, time.time()
        session.messages = session.messages + [{"role": "user", "content": text}]
        return {c.status: "", c.state: session, c.message: "", c.chatbot: session.messages}

    def accept_locate(self, session: Session) -> dict:
        """The 'Locate' example: Table 6's instruction for a concept this picture shows."""
        concept = session.example_concept if session is not None else ""
        if not concept:
            named = session.trial.concepts if session is not None and session.trial is not None else None
            concept = self.explorer.example_concept(None, named)
        return self.accept(localization_instruction(concept), session)

    @guarded("answering")
    def answer(self, session: Session):
        """Stream the recording's answer into the chat (whole history each time, as Gradio wants)."""
        c = self.c
        if session is None or session.pending is None:
            yield self._unchanged()
            return
        text, session.pending = session.pending, None
        turn = self.explorer.chat(session.trial, text)
        if turn.notes:
            gr.Info(sentence(" ".join(turn.notes)))
        session.messages = session.messages + [{"role": "assistant", "content": ""}]
        for piece in turn:
            session.messages[-1]["content"] += piece
            yield {c.chatbot: session.messages, c.state: session}
        if not turn.text.strip():
            session.messages[-1]["content"] = "(the model gave no answer)"
        session.action = turn.action
        if turn.action is None:
            session.busy_since = None  # nothing more to do for this turn (else `act` ends it)
        self.explorer.note_concepts(session.trial, turn.text)  # what the answer asserts gets a chip (a localized concept gets its own)
        yield {c.status: "", c.state: session, c.chatbot: session.messages, c.concepts: self._chips(session),
               c.dl_chat: self._chat_file(session)}  # fmt: skip

    def _chips(self, session: Session):
        trial = session.trial
        kept = [name for name in trial.concepts if name not in trial.removed]
        return gr.update(choices=list(trial.concepts), value=kept)

    @guarded("running the request")
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
        strip = figures.save_reconstruction_strip(self._folder(session), trial, prior, final, beta, seed, ablated)
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

    @guarded("re-rendering")
    def rerender(self, beta: float, seed, session: Session, progress=gr.Progress()) -> dict:
        """β or seed changed: only the diffusion runs again (the explorer caches the features)."""
        self._require_trial(session)
        return self._render(session, beta, seed, progress)

    @guarded("removing the concept")
    def toggle(self, kept: list[str] | None, beta: float, seed, session: Session, progress=gr.Progress()) -> dict:
        """The chips say which concepts stay; the unticked ones are ablated (same β and seed)."""
        trial = self._require_trial(session).trial
        kept = set(kept or [])
        for name in kept - set(trial.concepts):
            raise Problem(f"'{name}' is not one of this trial's concepts.")
        trial.removed = [name for name in trial.concepts if name not in kept]
        try:
            return self._render(session, beta, seed, progress)
        except NeuroChatError:
            trial.removed = []  # an unknown concept cannot be removed: keep the recording whole
            raise

    @guarded("restoring the concepts")
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
        glass = figures.glass_image(heatmap, threshold) if session.view == "glass" else None
        method = "encoding map" if heatmap.method == "encoding" else "GradCAM"
        return {c.status: "", c.state: session, c.brain_title: f'**Where is "{heatmap.concept}"?** '
                f"(drag to rotate · {heatmap.subject} · {method})", c.brain3d: figure, c.glass: glass,
                c.concepts: self._chips(session)}  # fmt: skip

    @guarded("locating the concept")
    def locate(self, concept: str, threshold: float, session: Session, progress=gr.Progress()) -> dict:
        self._require_trial(session)
        return self._locate(session, concept, threshold, progress)

    @guarded("redrawing the brain")
    def redraw_brain(self, threshold: float, session: Session) -> dict:
        c = self.c
        if session is None or session.trial is None or session.shown is None:
            return {c.state: session}
        return self._brain(session, self.explorer.localize(session.trial, session.shown), threshold)

    def show_3d(self, threshold: float, session: Session) -> dict:
        return self.show_view("3d", threshold, session)

    def show_glass(self, threshold: float, session: Session) -> dict:
        return self.show_view("glass", threshold, session)

    @guarded("switching the brain view")
    def show_view(self, view: str, threshold: float, session: Session) -> dict:
        c = self.c
        if session is None:
            return self._unchanged()
        session.view = view
        if view == "glass" and session.trial is not None and session.shown is not None:
            heatmap = self.explorer.localize(session.trial, session.shown)
            return {c.state: session, c.glass: figures.glass_image(heatmap, threshold)}
        return {c.state: session}

    # -- downloads ------------------------------------------------------------------------------------

    def _folder(self, session: Session) -> Path:
        if session.folder is None:
            session.folder = uuid.uuid4().hex[:12]
        folder = self.downloads / session.folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @guarded("preparing the heatmap files")
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
        conversation = [{"role": m["role"], "content": _as_text(m["content"])} for m in session.messages]
        path = figures.save_conversation(self._folder(session), self.explorer.preset.name, session.trial, conversation)
        return gr.update(value=str(path), interactive=True)

    # -- errors -----------------------------------------------------------------------------------------

    def _unchanged(self) -> dict:
        """No update (Gradio takes an empty dict for one value, so name one component)."""
        return {self.c.status: gr.update()}

    def _problem(self, error: Exception, doing: str, args) -> dict:
        """The sentence for a failed handler, as a warning toast and in the status line."""
        if isinstance(error, (NeuroChatError, Problem)):
            message = sentence(str(error))
        else:
            log.error("error while %s", doing, exc_info=error)
            message = (f"Something went wrong while {doing} ({error.__class__.__name__}). Nothing was changed; "
                       "the server log has the details.")  # fmt: skip
        gr.Warning(message)
        out = {self.c.status: f"⚠️ {message}"}
        if isinstance(error, Problem):
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
        raise Problem(f"β = {beta:g} is outside 0…1: it is the share of noise mixed into the brain's VAE latent.")
    return beta


def _check_seed(seed) -> int:
    if seed is None or seed == "":
        return DEFAULT_SEED
    value = float(seed)
    if not value.is_integer() or value < 0:
        raise Problem(f"The seed must be a whole number ≥ 0, not {seed}.")
    return int(value)


def _progress_steps(progress):
    """A `callable(step, total)` for the reconstructor that drives a Gradio progress bar."""

    def named(what: str):
        return None if progress is None else lambda step, total: progress((step, total), desc=what, unit="steps")

    return named
