"""The handlers of the right-hand panels: the reconstruction and its ablation, the brain view, the downloads.

`PanelHandlers` is the half of `SessionHandlers` (see `session.py`) that draws; it reads the same
`self.c`, `self.explorer` and `Session`. Handlers return a dict of component → value, as Gradio accepts.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import gradio as gr
import numpy as np

from neurochat import viz
from neurochat.app import figures
from neurochat.app.problems import Problem, guarded
from neurochat.errors import NeuroChatError

DEFAULT_SEED = 0
BRAIN_HEIGHT = 276  # px of the 3D brain: with the ablation's lines under the pictures the page still fits 720 px


class PanelHandlers:
    """Reconstruction, ablation, localization and downloads for one tab's `Session`."""

    # -- reconstruction and ablation -------------------------------------------------------------

    def _render(self, session, beta: float, seed, progress=None) -> dict:
        """The reconstruction with the current β and seed; and the ablated one when concepts are off."""
        from neurochat.reconstruct import denoising_steps

        c, explorer = self.c, self.explorer
        trial = self._require_trial(session).trial
        # A pass at β runs round(steps·β) denoising steps (`denoising_steps`): β moves the picture in steps of
        # 1/steps, so the β drawn with is the one of the step count, and the page says so.
        run, seed = denoising_steps(_check_beta(beta), explorer.steps), _check_seed(seed)
        beta = run / explorer.steps
        drawn = (trial.key, trial.prompt, beta, seed)
        shown = {"final": drawn, "ablated": (*drawn, tuple(trial.removed))}
        if session.rendered == shown:  # e.g. the `release` after an `input` of the same β: already on the page
            return self._unchanged()
        steps = _progress_steps(progress)
        original_state = dataclasses.replace(trial, removed=[])
        if progress is not None:
            progress(0.0, desc="denoising")
        # the recording and its ablation (when concepts are off) in one batch: same seed, same starting noise
        final, ablated = explorer.reconstruct_with_ablation(trial, beta=beta, seed=seed, progress=steps("denoising"))
        session.ablation = explorer.ablation(trial, trial.removed) if trial.removed else None  # cached by the above
        prompt = trial.prompt
        shown_prompt = f"**prompt:** {prompt}" if prompt else "**prompt:** none yet (ẑ_c alone): ask to reconstruct"
        prior = explorer.vae_prior(original_state)  # (with concepts removed it would decode the ablated ẑ_v)
        strip = figures.save_reconstruction_strip(self._folder(session), trial, prior, final, beta, seed, ablated)
        # Send a picture only when it changed: Gradio rewrites an image's cache file in place on every
        # send, and a browser still fetching the same picture then gets a truncated response.
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
            c.prompt: shown_prompt,
            c.shown_beta: f"Shown: **β = {beta:.2f}** ({run} of {explorer.steps} denoising steps) · seed {seed}",
            c.ablation_info: _ablation_sentence(session.ablation),
            c.concepts: self._chips(session),
            c.dl_images: gr.update(value=str(strip), interactive=True),
        }  # fmt: skip

    @guarded("re-rendering")
    def rerender(self, beta: float, seed, session, progress=gr.Progress()) -> dict:
        """β or seed changed: only the diffusion runs again (the explorer caches the features)."""
        self._require_trial(session)
        return self._render(session, beta, seed, progress)

    @guarded("removing the concept")
    def toggle(self, kept: list[str] | None, beta: float, seed, session, progress=gr.Progress()) -> dict:
        """The chips say which concepts stay; the unticked ones are ablated (same β and seed)."""
        trial = self._require_trial(session).trial
        kept = set(kept or [])
        for name in kept - set(trial.concepts):
            raise Problem(f"'{name}' is not one of this trial's concepts.")
        return self._ablate(session, [name for name in trial.concepts if name not in kept], beta, seed, progress)

    @guarded("removing the concepts")
    def ablate(self, concepts: str | None, beta: float, seed, session, progress=gr.Progress()) -> dict:
        """The API's ablation: `concepts` to remove, comma-separated ("" restores the recording). Its pictures
        are always sent: a script has no earlier copy (the page's events skip unchanged ones)."""
        self._require_trial(session).rendered = {}
        names = [name.strip() for name in (concepts or "").split(",") if name.strip()]
        return self._ablate(session, [self.explorer.localizer.check_concept(name) for name in names], beta, seed,
                            progress)  # fmt: skip

    def _ablate(self, session, removed: list[str], beta: float, seed, progress) -> dict:
        trial = session.trial
        trial.removed = removed
        try:
            return self._render(session, beta, seed, progress)
        except NeuroChatError:
            trial.removed = []  # an unknown concept cannot be removed: keep the recording whole
            raise

    @guarded("restoring the concepts")
    def restore(self, beta: float, seed, session, progress=gr.Progress()) -> dict:
        trial = self._require_trial(session).trial
        trial.removed = []
        return self._render(session, beta, seed, progress)

    # -- localization ------------------------------------------------------------------------------

    def _locate(self, session, concept: str, threshold: float, progress=None) -> dict:
        trial = self._require_trial(session).trial
        if progress is not None:
            progress(0.0, desc=f"mapping the concept with {len(self.explorer.ensemble)} extractors")
        heatmap = self.explorer.localize(trial, concept)
        session.shown = heatmap.concept
        return self._brain(session, heatmap, threshold)

    def _brain(self, session, heatmap, threshold: float) -> dict:
        c = self.c
        threshold = float(np.clip(threshold if threshold is not None else viz.DEFAULT_THRESHOLD, 0.0, 0.99))
        figure = viz.glass_brain_3d(heatmap, threshold, height=BRAIN_HEIGHT)
        glass = figures.glass_image(heatmap, threshold) if session.view == "glass" else None
        return {c.status: "", c.state: session, c.brain_title: self._brain_title(session.trial, heatmap),
                c.brain3d: figure, c.glass: glass, c.concepts: self._chips(session)}  # fmt: skip

    def _brain_title(self, trial, heatmap) -> str:
        """Whose map it is (an encoding map is the subject's, the same for every trial), and whether the
        picture shows the concept at all (when the answer key knows)."""
        concept, subject = heatmap.concept, heatmap.subject
        whose = f"{subject}'s encoding map, not this trial's" if heatmap.method == "encoding" else "GradCAM on this volume"
        title = f'**Where is "{concept}"?** {whose}'  # one line: the page must fit a projector's 720 px
        truth = self.explorer.true_concepts(trial)
        if truth and concept not in truth:
            title += (f'  \n⚠️ This picture shows no "{concept}" (answer key): the map is where {subject} codes '
                      f'"{concept}" in general, not something seen here.')  # fmt: skip
        return title

    @guarded("locating the concept")
    def locate(self, concept: str, threshold: float, session, progress=gr.Progress()) -> dict:
        self._require_trial(session)
        return self._locate(session, concept, threshold, progress)

    @guarded("locating the concept")
    def localize(self, concept: str, threshold: float, session, progress=gr.Progress()) -> dict:
        """The API's localization: the brain figure and the heatmap's NIfTI files in one answer."""
        self._require_trial(session)
        out = self._locate(session, concept, threshold, progress)
        return {**out, **self.heatmap_files(session)}

    @guarded("redrawing the brain")
    def redraw_brain(self, threshold: float, session) -> dict:
        c = self.c
        if session is None or session.trial is None or session.shown is None:
            return {c.state: session}
        return self._brain(session, self.explorer.localize(session.trial, session.shown), threshold)

    def show_3d(self, threshold: float, session) -> dict:
        return self.show_view("3d", threshold, session)

    def show_glass(self, threshold: float, session) -> dict:
        return self.show_view("glass", threshold, session)

    @guarded("switching the brain view")
    def show_view(self, view: str, threshold: float, session) -> dict:
        c = self.c
        if session is None:
            return self._unchanged()
        session.view = view
        if view == "glass" and session.trial is not None and session.shown is not None:
            heatmap = self.explorer.localize(session.trial, session.shown)
            return {c.state: session, c.glass: figures.glass_image(heatmap, threshold)}
        return {c.state: session}

    # -- downloads ------------------------------------------------------------------------------------

    def _folder(self, session) -> Path:
        if session.folder is None:
            session.folder = uuid.uuid4().hex[:12]
        folder = self.downloads / session.folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @guarded("preparing the heatmap files")
    def heatmap_files(self, session) -> dict:
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


def _ablation_sentence(ablation) -> str:
    """What the ablated picture was drawn from, in one line under it."""
    if ablation is None:
        return ""
    from neurochat.ablate import DEFAULT_FRACTION

    prompt = f"“{ablation.prompt}”" if ablation.prompt else "none (ẑ_c alone)"
    return (f"**Ablated:** {ablation.voxel_count:,} voxels zeroed (the top {DEFAULT_FRACTION:.0%} of "
            f"{', '.join(ablation.concepts)}'s map) · prompt: {prompt}")  # fmt: skip


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
