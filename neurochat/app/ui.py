"""The page: its layout, the example instructions, and which event runs which handler.

    ui = ExplorerUI(explorer)          # the handlers (see `session.py`) around one loaded Explorer
    blocks = ui.build()                # the Blocks, every listener wired
    blocks.launch(theme=THEME, css=CSS)
"""

from __future__ import annotations

import functools
from functools import cached_property
from pathlib import Path

import gradio as gr

from neurochat import viz
from neurochat.app.picture import Picture
from neurochat.app.problems import sentence
from neurochat.app.session import DEFAULT_SEED, Session, SessionHandlers
from neurochat.app.viewer import CONVENTIONS, PEAK_HEADERS, ViewerHandlers
from neurochat.language import BRIEF_INSTRUCTIONS, DETAILED_INSTRUCTIONS, RECONSTRUCTION_INSTRUCTION

DEVICE_QUEUE = "device"  # the queue every model-using listener joins, one job at a time...
# ...but a β or seed change, the one a person drags through, has a lane of its own: it waits only for the
# β change before it, never behind another tab's chat or ablation (`bench soak`: with one queue a β change
# waited for every other user's job). It runs beside the device queue's job (`Reconstructor` draws the
# same picture either way); on a CPU only (`ExplorerUI._wire`).
RENDER_QUEUE = "render"
THEME = gr.themes.Soft(primary_hue="indigo", text_size="sm", spacing_size="sm", radius_size="sm")
CSS = (Path(__file__).with_name("style.css")).read_text()
PROTOCOL_CHOICES = [("average of repetitions", "averaged"), ("single trial", "single")]

# The paper's instructions (App. A.2): Table 3, Table 4, a complex-reasoning question, Table 5, Table 6.
BRIEF = BRIEF_INSTRUCTIONS[0]
DETAILED = DETAILED_INSTRUCTIONS[0]
REASONING = "Is this scene indoors or outdoors, and why?"
RECONSTRUCT = RECONSTRUCTION_INSTRUCTION
EXAMPLES = [("Describe", BRIEF), ("Detailed", DETAILED), ("Reason", REASONING), ("Reconstruct", RECONSTRUCT)]

HELP = """**How to use.** Pick a subject and a trial on the left (the picture is shown for reference only:
the models read the fMRI recording, never the picture). Ask in the chat, or press an example; the bin
above the chat starts a new conversation. *Reconstruct* renders the picture from the brain with the
LLM's prompt; move **β** to mix more noise into the brain's VAE latent (β = 0: the VAE prior alone,
β = 1: CLIP embedding + prompt alone). β moves in steps of 1/{steps}: the decoder runs round({steps}·β) of
its {steps} denoising steps, and the line under the pictures says which β is shown. *Locating the concept
of "…"* shows where the subject's brain codes the concept (the subject's map, the same for every trial)
and adds a chip under *Concepts*: untick a chip to zero that concept's voxels and see the ablated
reconstruction. *Upload* reads your own beta map (NIfTI); pick the volume of a 4D file with *volume*.
Scripts can drive the same actions through `gradio_client` (see the README). *Share* gives a link (or JSON)
that reopens this view."""

SHARE_HELP = """**Share this view.** The link reopens this subject, trial, protocol, β, seed and the removed
concepts (not the chat). Paste a link or its JSON into either box and press Enter to open that view."""
# The browser knows the page's public address (the server may sit behind a proxy): it is handed to the link.
PAGE_ADDRESS_JS = "(state, beta, seed, address) => [state, beta, seed, location.origin + location.pathname]"


class ExplorerUI(SessionHandlers):
    """The Blocks and their handlers around one loaded `Explorer`.

    Handlers take and return plain values (a dict of component → value, as Gradio accepts), so tests
    call them directly: `ui = ExplorerUI(explorer); ui.build(); ui.start(Session())`.
    """

    # -- layout ----------------------------------------------------------------------------------

    def build(self):
        from neurochat.reconstruct import DEFAULT_BETA, denoising_steps

        explorer, c = self.explorer, self.c
        preset = explorer.preset.name
        data = "SimNSD phantom" if explorer.answer_key is not None else "NSD"
        with gr.Blocks(title="NeuroChat", delete_cache=(3600, 7200)) as blocks:
            c.state = gr.State(Session())
            with gr.Row(elem_id="nc-header"):
                gr.Markdown(f"## NeuroChat — talk with a brain recording <small>· preset: **{preset}** ({data}) · "
                            f"{explorer.reconstructor.device}</small>", elem_id="nc-title")  # fmt: skip
                # the status takes the room the title leaves (style.css): a long sentence wraps, never covers the title
                c.status = gr.Markdown("", label="status", elem_id="nc-status")
                c.share = gr.Button("↗ share", size="sm", variant="secondary", scale=0, min_width=70)
                c.help = gr.Button("? help", size="sm", variant="secondary", scale=0, min_width=60)
            with gr.Column(visible=False, elem_id="nc-help") as c.help_panel:  # floats over the page (style.css)
                gr.Markdown(HELP.format(steps=explorer.steps))
                c.help_close = gr.Button("close", size="sm", scale=0, min_width=60)
            with gr.Column(visible=False, elem_id="nc-share") as c.share_panel:  # floats too
                gr.Markdown(SHARE_HELP)
                # kept up to date after every change of view (`_wire`); a pasted link or JSON opens its view
                c.share_link = gr.Textbox(label="link to this view", max_lines=3, buttons=["copy"],
                                          elem_id="nc-share-link")  # fmt: skip
                c.share_json = gr.Textbox(label="the same as JSON", max_lines=3, buttons=["copy"],
                                          elem_id="nc-share-json")  # fmt: skip
                c.page_address = gr.Textbox(visible=False)  # filled by the browser (PAGE_ADDRESS_JS)
                c.share_close = gr.Button("close", size="sm", scale=0, min_width=60)
            with gr.Row(equal_height=False):
                # -- left: what is being looked at ------------------------------------------------------
                with gr.Column(scale=2, min_width=200, elem_classes="nc-compact"):
                    # custom values pass to the handlers, which check them: a script may name any subject's trial
                    c.subject = gr.Dropdown(explorer.subjects, value=self.default_subject, label="Subject",
                                            elem_id="nc-subject", allow_custom_value=True)  # fmt: skip
                    c.trial = gr.Dropdown(self._trial_choices(self.default_subject), value=self.default_trial,
                                          label="Trial (shared test first)", elem_id="nc-trial",
                                          allow_custom_value=True)  # fmt: skip
                    c.protocol = gr.Radio(PROTOCOL_CHOICES, value="averaged", show_label=False)
                    c.random = gr.Button("🎲 random trial", size="sm")
                    # The picture is shown for reference only: the models read the recording, never the picture.
                    c.stimulus = Picture(label="Seen (reference only)", height=210, interactive=False,
                                          buttons=["fullscreen"], elem_classes="nc-picture")  # fmt: skip
                    c.caption = gr.Markdown("", label="caption", elem_classes="nc-small")
                    with gr.Row(elem_classes=["nc-compact", "nc-upload-row"], equal_height=True):
                        c.upload = gr.UploadButton("⤒ upload a beta map (NIfTI)", file_count="single", type="filepath",
                                                   size="sm", variant="secondary", scale=3, min_width=0)  # fmt: skip
                        c.volume = gr.Number(0, label="volume", precision=0, minimum=0, scale=1, min_width=58,
                                             elem_id="nc-volume")  # fmt: skip
                # -- middle: the conversation ------------------------------------------------------
                with gr.Column(scale=3, min_width=330, elem_classes="nc-compact"):
                    c.chatbot = gr.Chatbot(label="Chat with the recording", show_label=False, height=510,
                                           elem_id="nc-chat", buttons=["copy"], autoscroll=True,
                                           placeholder="Chat with the recording: ask about this trial, or press an example.")  # fmt: skip
                    with gr.Row(elem_classes="nc-compact"):
                        c.message = gr.Textbox(placeholder="Ask about this trial…", label="message", show_label=False, container=False,
                                               max_lines=3, scale=6, max_length=self.max_message_chars,
                                               elem_id="nc-message")  # fmt: skip
                        c.send = gr.Button("➤", variant="primary", scale=0, min_width=48)
                    with gr.Row(elem_classes="nc-examples"):
                        gr.Markdown("Try:", elem_classes="nc-small")
                        c.examples = {text: gr.Button(label, size="sm", scale=0, min_width=0)
                                      for label, text in EXAMPLES}  # fmt: skip
                        c.ex_locate = gr.Button(f'Locate "{explorer.example_concept(self.default_trial)}"',
                                                size="sm", scale=0, min_width=0)  # fmt: skip
                # -- right: reconstruction, concepts, brain -------------------------------------------
                with gr.Column(scale=6, min_width=560, elem_classes="nc-compact"):
                    with gr.Row(elem_classes="nc-compact"):
                        picture = {"height": 156, "interactive": False, "buttons": ["download"],
                                   "elem_classes": "nc-picture"}  # fmt: skip
                        c.prior = Picture(label="VAE prior (ẑ_v)", elem_id="nc-prior", **picture)
                        c.final = Picture(label="Reconstruction", elem_id="nc-final", **picture)
                        c.ablated = Picture(label="Ablated", elem_id="nc-ablated", **picture)
                    # under the pictures: the β they were drawn with, and what the ablated one was drawn from
                    c.shown_beta = gr.Markdown("", label="shown β", elem_id="nc-shown-beta", elem_classes="nc-small")
                    c.ablation_info = gr.Markdown("", label="ablation", elem_id="nc-ablation", elem_classes="nc-small")
                    with gr.Row(elem_classes="nc-compact", equal_height=False):
                        with gr.Column(scale=2, min_width=230, elem_classes="nc-compact"):
                            with gr.Row(elem_classes="nc-compact"):
                                # only the β of whole denoising steps exist (`denoising_steps`): the slider snaps to them
                                default = denoising_steps(DEFAULT_BETA, explorer.steps) / explorer.steps
                                c.beta = gr.Slider(0.0, 1.0, value=default, step=1 / explorer.steps,
                                                   label="β (noise into ẑ_v)", scale=3, elem_id="nc-beta")  # fmt: skip
                                c.seed = gr.Number(DEFAULT_SEED, label="seed", precision=0, minimum=0, scale=1,
                                                   min_width=64)  # fmt: skip
                            c.prompt = gr.Markdown("", label="prompt", elem_classes=["nc-small", "nc-prompt"])
                            c.concepts = gr.CheckboxGroup([], value=[], label="Concepts · untick to remove",
                                                          elem_id="nc-concepts")  # fmt: skip
                            with gr.Row(elem_classes="nc-compact"):
                                c.locate_box = gr.Textbox(placeholder="locate a concept, e.g. dog", label="concept", show_label=False,
                                                          container=False, max_lines=1, scale=3)  # fmt: skip
                                c.locate = gr.Button("Locate", size="sm", scale=1, min_width=60)
                                c.reset = gr.Button("↺ restore all", size="sm", scale=1, min_width=60)
                            c.remove_box = gr.Textbox(visible=False, label="concepts to remove, comma-separated")
                            with gr.Row(elem_classes="nc-downloads"):
                                c.dl_native = gr.DownloadButton("⤓ heatmap (native)", size="sm", interactive=False)
                                c.dl_mni = gr.DownloadButton("⤓ heatmap (MNI)", size="sm", interactive=False)
                            with gr.Row(elem_classes="nc-downloads"):
                                c.dl_images = gr.DownloadButton("⤓ images PNG", size="sm", interactive=False)
                                c.dl_chat = gr.DownloadButton("⤓ chat JSON", size="sm", interactive=False)
                        with gr.Column(scale=3, min_width=320, elem_classes="nc-compact"):
                            c.brain_title = gr.Markdown("Ask to locate a concept to see it on the brain.", label="brain title",
                                                        elem_classes="nc-small")  # fmt: skip
                            with gr.Tabs(elem_id="nc-brain"):
                                with gr.Tab("3D brain") as c.tab_3d:
                                    c.brain3d = gr.Plot(label="3D brain", show_label=False, elem_id="nc-brain3d")
                                with gr.Tab("glass brain") as c.tab_glass:
                                    c.glass = Picture(label="glass brain", show_label=False, interactive=False, height=260,
                                                       buttons=["download"], elem_classes="nc-picture",
                                                       elem_id="nc-glass")  # fmt: skip
                                with gr.Tab("slices") as c.tab_slices:
                                    # orthogonal slices as neuroscientists read them; a click reads out the MNI
                                    # coordinate and the value under it (neurochat/app/viewer.py)
                                    c.slices = Picture(label="slices", show_label=False, interactive=False, height=200,
                                                        buttons=["download"], elem_id="nc-slices")  # fmt: skip
                                    c.readout = gr.Markdown("Locate a concept, then click the slices.",
                                                            elem_classes="nc-small", elem_id="nc-readout")  # fmt: skip
                                    with gr.Row():
                                        c.convention = gr.Radio(list(CONVENTIONS), value=CONVENTIONS[0], label="convention",
                                                                min_width=120)  # fmt: skip
                                        c.compare = gr.Textbox(label="side by side with", placeholder="dog", min_width=90)
                                        c.goto_box = gr.Textbox(label="go to x, y, z (mm)", placeholder="34, -62, -10",
                                                                min_width=90)  # fmt: skip
                                    with gr.Accordion("peaks", open=False):
                                        c.peaks = gr.Dataframe(headers=PEAK_HEADERS, interactive=False, label="peaks",
                                                               show_label=False, elem_id="nc-peaks")  # fmt: skip
                                    c.viewer_view = gr.State(None)
                            c.threshold = gr.Slider(0.0, 0.99, value=viz.DEFAULT_THRESHOLD, step=0.01,
                                                    label="heat threshold", elem_id="nc-threshold")  # fmt: skip
            self._wire(blocks)
        return blocks

    # -- events ------------------------------------------------------------------------------------

    def _wire(self, blocks) -> None:
        """Every listener. The user-level actions have stable API names for `gradio_client` (select_trial,
        random_trial, upload, chat, clear_chat, reconstruct, localize, ablate); the page's own steps are private."""
        c = self.c
        on_device = {"concurrency_id": DEVICE_QUEUE, "concurrency_limit": 1}
        private = {"api_visibility": "private"}
        trial_out = [c.status, c.state, c.subject, c.trial, c.stimulus, c.caption, c.chatbot, c.prior, c.final,
                     c.ablated, c.prompt, c.shown_beta, c.ablation_info, c.concepts, c.brain_title, c.brain3d, c.glass,
                     c.ex_locate, c.dl_native, c.dl_mni, c.dl_images, c.dl_chat]  # fmt: skip
        chat_out = [c.status, c.state, c.message, c.chatbot, c.concepts, c.dl_chat]
        render_out = [c.status, c.state, c.final, c.ablated, c.prompt, c.shown_beta, c.ablation_info, c.concepts,
                      c.dl_images]  # fmt: skip
        brain_out = [c.status, c.state, c.brain_title, c.brain3d, c.glass, c.concepts]
        act_out = list(dict.fromkeys(render_out + brain_out))
        files_out = [c.status, c.state, c.dl_native, c.dl_mni]
        view_out = list(dict.fromkeys(trial_out + [c.protocol, c.beta, c.seed] + render_out + brain_out))
        view_in = [c.state, c.beta, c.seed, c.threshold]

        # -- the page itself: the first trial, or the view its link names (share.py); a link or JSON pasted
        # into the share panel opens its view too
        opened = [blocks.load(self.start, view_in, view_out, **on_device, **private)]
        opened += [paste.submit(self.open_shared, [paste, *view_in], view_out, **on_device, **private)
                   for paste in (c.share_link, c.share_json)]  # fmt: skip
        for open_view in opened:  # a view with removed concepts shows a map: its files too
            open_view.then(self.heatmap_files, [c.state], files_out, show_progress="hidden", **on_device, **private)
        view_changes = list(opened)  # the events after which the share panel's link is written again (wired below)
        c.help.click(lambda: gr.update(visible=True), None, c.help_panel, queue=False, **private)
        c.help_close.click(lambda: gr.update(visible=False), None, c.help_panel, queue=False, **private)
        c.share.click(lambda: gr.update(visible=True), None, c.share_panel, queue=False, **private)
        c.share_close.click(lambda: gr.update(visible=False), None, c.share_panel, queue=False, **private)

        # -- what to look at ---------------------------------------------------------------------------
        pick = [c.subject, c.trial, c.protocol, c.state]
        view_changes += [
            c.subject.input(self.pick_subject, [c.subject, c.protocol, c.state], trial_out, **on_device, **private),
            c.trial.input(self.pick_trial, pick, trial_out, api_name="select_trial", **on_device),
            c.protocol.input(self.pick_trial, pick, trial_out, **on_device, **private),
            c.random.click(self.random_trial, [c.subject, c.protocol, c.state], trial_out, api_name="random_trial",
                           **on_device),
            c.upload.upload(self.upload, [c.upload, c.volume, c.state], trial_out, api_name="upload", **on_device),
            gr.on([c.volume.submit, c.volume.blur], self.pick_volume, [c.volume, c.state], trial_out,
                  trigger_mode="always_last", **on_device, **private),
        ]  # fmt: skip

        # -- the chat: show the message at once, stream the answer, then run what it asked for. Accepting
        # is queued (toasts need the queue) but not on the device, so it never waits for a model.
        asks = [(c.message.submit, self.accept, [c.message, c.state]),
                (c.send.click, self.accept, [c.message, c.state]),
                (c.ex_locate.click, self.accept_locate, [c.state])]  # fmt: skip
        asks += [(button.click, functools.partial(self.accept, text), [c.state]) for text, button in c.examples.items()]
        map_changes = list(opened)  # the events after which the slice viewer redraws (wired below)
        for trigger, accept, inputs in asks:
            map_changes.append(
                trigger(accept, inputs, chat_out, show_progress="hidden", concurrency_limit=None, **private)
                .then(self.answer, [c.state], chat_out, show_progress="minimal", **on_device, **private)
                .then(self.act, [c.state, c.beta, c.seed, c.threshold], act_out,
                      show_progress_on=[c.final, c.brain3d], **on_device, **private)
                .then(self.heatmap_files, [c.state], files_out, show_progress="hidden", **on_device, **private))  # fmt: skip
        c.chatbot.clear(self.clear_chat, [c.state], [c.status, c.state, c.chatbot, c.dl_chat], api_name="clear_chat",
                        queue=False)  # fmt: skip
        gr.on([], self.chat, [c.message, c.beta, c.seed, c.threshold, c.state],
              list(dict.fromkeys(chat_out + act_out + files_out)), api_name="chat", **on_device)  # fmt: skip

        # -- the reconstruction: the latest β or seed always wins (a change while one renders runs next,
        # the ones in between are dropped); arrow keys fire `input`, the mouse and the number box `release`
        render = {"show_progress_on": [c.final, c.ablated], "trigger_mode": "always_last", **on_device}
        # A GPU keeps one queue: its models may be offloaded, and offload hooks move weights for one caller at a time
        lane = RENDER_QUEUE if self.explorer.reconstructor.device.type == "cpu" else DEVICE_QUEUE
        render_lane = {**render, "concurrency_id": lane}
        view_changes.append(gr.on([c.beta.input, c.beta.release], self.rerender, [c.beta, c.seed, c.state], render_out,
                                  api_name="reconstruct", **render_lane))  # fmt: skip
        view_changes.append(gr.on([c.seed.submit, c.seed.blur], self.rerender, [c.beta, c.seed, c.state], render_out,
                                  **render_lane, **private))  # fmt: skip
        toggled = c.concepts.input(self.toggle, [c.concepts, c.beta, c.seed, c.state], render_out, **render, **private)
        restored = c.reset.click(self.restore, [c.beta, c.seed, c.state], render_out, **render, **private)
        map_changes += [toggled, restored]
        view_changes += [toggled, restored]
        gr.on([], self.ablate, [c.remove_box, c.beta, c.seed, c.state], render_out, api_name="ablate", **on_device)

        # -- the brain -----------------------------------------------------------------------------------
        map_changes.append(gr.on([c.locate.click, c.locate_box.submit], self.locate, [c.locate_box, c.threshold, c.state],
                                 brain_out, show_progress_on=[c.brain3d], **on_device, **private).then(
            self.heatmap_files, [c.state], files_out, show_progress="hidden", **on_device, **private))  # fmt: skip
        gr.on([], self.localize, [c.locate_box, c.threshold, c.state], list(dict.fromkeys(brain_out + files_out)),
              api_name="localize", **on_device)  # fmt: skip
        c.threshold.release(self.redraw_brain, [c.threshold, c.state], brain_out, show_progress="minimal",
                            trigger_mode="always_last", **on_device, **private)  # fmt: skip
        c.tab_3d.select(self.show_3d, [c.threshold, c.state], brain_out, queue=False, show_progress="hidden", **private)
        c.tab_glass.select(self.show_glass, [c.threshold, c.state], brain_out, show_progress_on=[c.glass], **on_device,
                           **private)  # fmt: skip

        # -- the slice viewer: drawn when its tab opens, redrawn after what changes its map (while it has been
        # opened once), clicks and typed coordinates move the crosshair
        viewer = self.viewer
        slice_in = [c.state, c.threshold, c.convention, c.compare, c.viewer_view]
        slice_out = [c.slices, c.peaks, c.readout, c.viewer_view]
        c.tab_slices.select(viewer.show, slice_in, slice_out, show_progress_on=[c.slices], **on_device, **private)
        gr.on([c.convention.change, c.compare.submit, c.threshold.release], self.refresh_slices, slice_in, slice_out,
              trigger_mode="always_last", show_progress="hidden", **on_device, **private)  # fmt: skip
        for change_of_map in map_changes:
            change_of_map.then(self.refresh_slices, slice_in, slice_out, show_progress="hidden", **on_device, **private)
        c.slices.select(viewer.click, slice_in, slice_out, show_progress="hidden", **private)
        c.peaks.select(viewer.pick_peak, slice_in, slice_out, show_progress="hidden", **private)
        c.goto_box.submit(viewer.goto, [*slice_in, c.goto_box], slice_out, show_progress="hidden", **private)

        # -- the share panel's link and JSON, written again after every change of view (cheap: no queue)
        for change_of_view in view_changes:
            change_of_view.then(self.share_links, [c.state, c.beta, c.seed, c.page_address],
                                [c.share_link, c.share_json], js=PAGE_ADDRESS_JS, queue=False, show_progress="hidden",
                                **private)  # fmt: skip

    @cached_property
    def viewer(self) -> ViewerHandlers:
        return ViewerHandlers(self.explorer)

    def refresh_slices(self, session, threshold, convention, compare, view):
        """Redraw the slices after a change of map, but only once the tab has been opened: the other views
        should not pay for a picture nobody looks at."""
        if view is None:
            return gr.skip(), gr.skip(), gr.skip(), view
        return self.viewer.show(session, threshold, convention, compare, view)


def error_page(message: str, command: str):
    """What the browser shows when the models or data cannot be loaded: the sentence, not a crash."""
    with gr.Blocks(title="NeuroChat — cannot start") as blocks:
        gr.Markdown("## NeuroChat could not start")
        gr.Markdown(f"**{sentence(message)}**")
        gr.Markdown(f"Fix this, then start the app again: `{command}`")
    return blocks
