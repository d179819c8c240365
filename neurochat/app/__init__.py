"""The Gradio explorer around one `neurochat.explorer.Explorer` (`python app.py` launches it).

    ui.py        the page: layout, the example instructions, and which event runs which handler
    session.py   one browser tab's `Session` and the handlers that read and change it (a trial, the chat)
    panels.py    the handlers that draw: reconstruction and ablation, the brain view, the downloads
    share.py     a view as a link or one line of JSON, and back (subject, trial, β, seed, removed concepts)
    figures.py   the explorer's results as pictures and files for the page (figures are `neurochat.viz`'s)
    picture.py   `Picture`: the page's pictures handed to Gradio as files written once
    viewer.py    the slice viewer's drawing and handlers (`slices.py` its geometry, `regions.py` its anatomy)
    startup.py   loading the models, warming the first trial, serving the page (or a page that says why not)
    style.css    the compact layout (a projector's 1280x720 without scrolling)

UI wiring only: every computation is a call on the `Explorer` (models, loaded once, shared by every
browser tab) or a figure from `neurochat.viz`; choices such as the first trial to show or the concepts
named in an answer are the explorer's too. A tab's `gr.State` holds a small `Session`. All listeners
that use a model share one queue (`DEVICE_QUEUE`), one job at a time; β and seed changes have a lane of
their own (`RENDER_QUEUE`) beside it on a CPU, so dragging β never waits behind another tab's chat.
Errors reach people as sentences (a warning toast and the status line), never as tracebacks. The
user-level actions have stable API names for `gradio_client` (`ExplorerUI._wire`, docs/app_api.md).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home
