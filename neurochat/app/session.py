"""One browser tab's state (`Session`) and the handlers that read and change it (`SessionHandlers`).

Handlers take and return plain values: a dict of component → value (or `gr.update`), as Gradio
accepts, keyed by the components that `ExplorerUI.build` puts in `self.c`. Every handler that can fail
is wrapped by `guarded`, so a failure becomes a sentence in the UI, never a traceback. Choosing a
recording and the chat are here; the panels that draw (reconstruction, ablation, brain, downloads) are
`PanelHandlers` in `panels.py`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from neurochat import viz
from neurochat.app import figures
from neurochat.app.panels import DEFAULT_SEED, PanelHandlers
from neurochat.app.problems import Problem, guarded, sentence
from neurochat.app.share import SharedView, parse_shared, share_json, share_query
from neurochat.errors import NeuroChatError
from neurochat.language import localization_instruction

if TYPE_CHECKING:
    from neurochat.ablate import Ablation
    from neurochat.trial import TrialState

log = logging.getLogger("neurochat.app")

BUSY_TIMEOUT_S = 300.0  # a chat turn still "running" after this long is taken as abandoned (closed tab)
__all__ = ["DEFAULT_SEED", "Session", "SessionHandlers"]


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
    upload_path: str | None = None  # the uploaded file explored now (another of its volumes can be picked)
    # The ablated picture's zeroed voxels (`ablation.zeroed`, bool in the trial's native grid, whose affine is
    # `explorer.features(trial).affine`) and the prompt it was drawn with; None while nothing is removed.
    ablation: Ablation | None = None


def _as_text(content) -> str:
    """Chatbot content arrives as a list of blocks in Gradio 6; flatten it to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(_as_text(block) for block in content)
    return "" if content is None else str(content)


class SessionHandlers(PanelHandlers):
    """The handlers of one page around one loaded `Explorer` (shared by every tab; a tab's own state
    is the `Session` passed in). `ExplorerUI` adds the layout that fills `self.c` with components."""

    def __init__(self, explorer, downloads: str | Path | None = None):
        self.explorer = explorer
        self.downloads = Path(downloads) if downloads else viz.download_dir()
        self.c = SimpleNamespace()  # the components, filled by build()
        self._rng = np.random.default_rng()
        self.default_subject = explorer.subjects[0]
        self.default_trial = explorer.first_impression(self.default_subject)
        self.max_message_chars = explorer.max_message_chars  # the message box holds no more than the LLM reads

    # -- choosing what to look at -------------------------------------------------------------------

    def _trial_choices(self, subject: str) -> list[tuple[str, int]]:
        return [(choice.label, choice.nsd_id) for choice in self.explorer.trial_choices(subject)]

    def _fresh(self, session: Session, trial, subject_value=None, trial_value=None) -> dict:
        """Everything that changes when a new recording is chosen."""
        c = self.c
        session.trial, session.messages, session.pending, session.action = trial, [], None, None
        session.busy_since, session.shown, session.files_for, session.rendered = None, None, None, {}
        session.ablation = None
        if trial.upload is None:
            session.upload_path = None
        session.example_concept = self.explorer.example_concept(trial.nsd_id, trial.concepts)
        if trial.upload is None:
            self.explorer.prepare_localization(trial.subject)  # so the first "where is …" need not wait for the fit
        picture, captions = self.explorer.stimulus(trial)
        if trial.upload is not None:
            caption = f"**{trial.label()}** — no picture is known for an uploaded volume."
            subject_value = trial_value = None  # the boxes name no trial of the dataset now
        else:
            caption = f"*“{captions[0]}”*" if captions else "(no caption on disk)"
        prior = self.explorer.vae_prior(trial)
        return {
            c.status: f"Now exploring {trial.label()}.",
            c.state: session,
            c.subject: gr.update(value=subject_value) if subject_value or trial.upload else gr.update(),
            c.trial: trial_value if trial_value is not None or trial.upload else gr.update(),
            c.stimulus: picture,
            c.caption: caption,
            c.chatbot: [],
            c.prior: prior,
            c.final: None,
            c.ablated: None,
            c.prompt: "Ask for a reconstruction (“Provide the corresponding Stable Diffusion prompts…”) to render it.",
            c.shown_beta: "",
            c.ablation_info: "",
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
    def start(self, session: Session, beta=None, seed=None, threshold=None, request: gr.Request | None = None,
              progress=gr.Progress()) -> dict:  # fmt: skip
        """The page's first trial (also used when a tab reloads), or the view its link names (`share.py`).

        A link is opened whole or not at all: a bad value is refused with a sentence and the first trial
        opens, so the page is always usable."""
        session = session or Session()
        params = dict(request.query_params) if request is not None else {}
        try:
            return self._open_view(session, parse_shared(params, self.explorer.subjects), beta, seed, threshold,
                                   progress)  # fmt: skip
        except (Problem, NeuroChatError) as error:
            trial = self.explorer.select(self.default_subject, self.default_trial)
            out = self._fresh(session, trial, self.default_subject, self.default_trial)
            reason = sentence(str(error))
            reason += "" if reason.endswith((".", "?", "!")) else "."
            refusal = Problem(f"{reason} The first trial is shown instead.")
            return {**out, **self._problem(refusal, "opening the link", ())}

    @guarded("opening the shared view")
    def open_shared(self, text, session: Session, beta=None, seed=None, threshold=None, progress=gr.Progress()):
        """A link or JSON pasted into the share panel: the view it names, or a refusal that changes nothing."""
        if not str(text or "").strip():
            raise Problem("Paste a link of this page, or its JSON, into the share panel and press Enter.")
        view = parse_shared(text, self.explorer.subjects)
        return self._open_view(session or Session(), view, beta, seed, threshold, progress)

    def _open_view(self, session: Session, view: SharedView, beta, seed, threshold, progress=None) -> dict:
        """Open a shared view as a person would: pick the trial, set β and seed, locate each removed concept
        (its chip appears) and untick them. Everything is checked before anything changes."""
        c = self.c
        subject = view.subject or self.default_subject
        if view.trial is not None:
            nsd_id = view.trial
        else:  # the page's own first trial, or the other subject's
            nsd_id = self.default_trial if subject == self.default_subject else self.explorer.first_impression(subject)
        try:
            trial = self.explorer.select(subject, nsd_id, view.protocol or "averaged")
        except NeuroChatError as error:
            raise Problem(f"The link's trial cannot be opened: {error}. Pick one of {subject}'s trials from the "
                          "list, or ask for a new link.") from None  # fmt: skip
        removed = []
        for name in view.remove:
            try:
                removed.append(self.explorer.localizer.check_concept(name))
            except NeuroChatError as error:
                raise Problem(f"The link removes '{name}': {error}") from None
        out = self._fresh(session, trial, subject, nsd_id)
        out[c.trial] = gr.update(choices=self._trial_choices(subject), value=nsd_id)
        out[c.protocol] = trial.protocol
        out[c.beta] = gr.update() if view.beta is None else view.beta  # what the link leaves out stays as it is
        out[c.seed] = gr.update() if view.seed is None else view.seed
        beta = view.beta if view.beta is not None else beta
        seed = view.seed if view.seed is not None else seed
        if removed:
            for name in removed:
                out.update(self._locate(session, name, threshold))
            out.update(self._ablate(session, removed, beta, seed, progress))
        if view != SharedView():
            out[c.status] = f"Now exploring {trial.label()}, as the link shared it."
        return out

    def share_links(self, session: Session, beta, seed, page_address: str | None) -> tuple[str, str]:
        """The link and the JSON that reopen this tab's view. The page's own address comes from the browser
        (the server may sit behind a proxy); without it the link is its query string alone."""
        try:
            return (page_address or "") + share_query(session, beta, seed), share_json(session, beta, seed)
        except Problem as why:
            return f"({why})", ""

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
        if not str(nsd_id).strip().isdigit():
            raise Problem(f"'{nsd_id}' is not a trial: pick one from the list (its NSD image number).")
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
    def upload(self, path, volume_index, session: Session) -> dict:
        """A NIfTI file: a 3D beta map, or a 4D file of several, of which `volume_index` (0-based) is read."""
        if not path:
            raise Problem("Choose a NIfTI file (.nii or .nii.gz) holding one trial's 3D beta map.")
        path = str(getattr(path, "name", path))  # a tempfile wrapper in older Gradio versions
        return self._read_upload(path, volume_index, session)

    @guarded("reading the picked volume")
    def pick_volume(self, volume_index, session: Session) -> dict:
        """Another volume of the 4D file uploaded last."""
        if session is None or session.upload_path is None:
            return self._unchanged()  # nothing uploaded: the number is used by the next upload
        return self._read_upload(session.upload_path, volume_index, session)

    def _read_upload(self, path: str, volume_index, session: Session) -> dict:
        from neurochat.nsd.betas import volume_count

        count, name = volume_count(path), Path(path).name
        index = 0 if volume_index in (None, "") or count == 1 else float(volume_index)  # a 3D file has one to read
        if not float(index).is_integer() or not 0 <= index < count:
            raise Problem(f"{name} holds {count} volume{'s' if count > 1 else ''}: pick a volume from 0 to "
                          f"{count - 1}, not {volume_index}.")  # fmt: skip
        trial = self.explorer.upload(path, int(index) if count > 1 else None)
        session.upload_path = path
        out = self._fresh(session, trial)
        if count > 1:
            out[self.c.caption] += (f" Volume {int(index)} of the file's {count} (0 to {count - 1}): change "
                                    "*volume* to read another.")  # fmt: skip
        return out

    # -- chat ----------------------------------------------------------------------------------------

    def _require_trial(self, session: Session | None) -> Session:
        if session is None or session.trial is None:
            raise Problem("Pick a subject and a trial first (left column).")
        return session

    @guarded("reading your message")
    def accept(self, message, session: Session) -> dict:
        """Show the message at once and hand it to `answer` (refusing bad input with a sentence; a refused
        message stays in the box, to be edited)."""
        c = self.c
        session = self._require_trial(session)
        text = _as_text(message).strip()
        if session.busy_since is not None and time.time() - session.busy_since < BUSY_TIMEOUT_S:
            raise Problem("Still working on the previous message — it will not be asked twice. "
                           "Ask again when it is done.")  # fmt: skip
        if not text:
            raise Problem("Type a question about this trial, or press one of the examples below the chat.")
        if len(text) > self.max_message_chars:
            raise Problem(f"That message has {len(text):,} characters; this model reads at most "
                          f"{self.max_message_chars:,}: please shorten it.")  # fmt: skip
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
        try:
            turn = self.explorer.chat(session.trial, text)
        except NeuroChatError as error:  # refused before any answer (e.g. too long for the model's context)
            session.messages, session.busy_since = session.messages[:-1], None  # the message goes back to its box
            yield {**self._problem(error, "answering", ()), c.state: session, c.chatbot: session.messages,
                   c.message: text}  # fmt: skip
            return
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

    @guarded("clearing the conversation")
    def clear_chat(self, session: Session) -> dict:
        """Clear means a new conversation: the LLM's history goes too, so the next answer is a first answer."""
        c = self.c
        if session is None or session.trial is None:
            return self._unchanged()
        session.messages, session.pending, session.action, session.busy_since = [], None, None, None
        session.trial.history = []
        return {c.status: "The conversation was cleared: the model starts afresh on this trial.", c.state: session,
                c.chatbot: [], c.dl_chat: gr.update(value=None, interactive=False)}  # fmt: skip

    def chat(self, message, beta: float, seed, threshold: float, session: Session, progress=gr.Progress()):
        """The API's chat: one whole turn (accept, the streamed answer, then the reconstruction or the map it
        asked for, and the heatmap files), each update merged into the last. Its pictures are always sent: a
        script has no earlier copy (the page's events skip unchanged ones)."""
        if session is not None:
            session.rendered = {}
        merged = {}
        steps = (lambda: [self.accept(message, session)],
                 lambda: self.answer(session),  # streamed
                 lambda: [self.act(session, beta, seed, threshold, progress)],
                 lambda: [self.heatmap_files(session)])  # fmt: skip
        for step in steps:
            for out in step():
                merged.update(out)
                yield dict(merged)
            if str(merged.get(self.c.status, "")).startswith("⚠️"):
                return  # refused or failed: nothing more is run

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

