"""The explorer's results as what the page shows and hands out: pictures and download files.

The figures themselves are drawn by `neurochat.viz`; here they are only turned into the values the
Gradio components take (a picture array, a file path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurochat import viz


def glass_image(heatmap, threshold: float) -> np.ndarray:
    """nilearn's static glass brain as a uint8 picture (the figure is closed: a server draws many)."""
    import matplotlib.pyplot as plt

    figure = viz.static_glass_brain(heatmap, threshold)
    try:
        return viz.figure_to_image(figure)
    finally:
        plt.close(figure)


def download_stem(trial) -> str:
    """The start of a download's file name: the upload's key, else subject, picture and protocol."""
    return viz.safe_name(trial.upload or f"{trial.subject}_image{trial.nsd_id}_{trial.protocol}")


def save_reconstruction_strip(folder: Path, trial, prior: np.ndarray, final: np.ndarray, beta: float, seed: int,
                              ablated: np.ndarray | None = None) -> Path:  # fmt: skip
    """The VAE prior, the reconstruction and (when concepts are off) the ablated one, labelled, as one PNG."""
    labels, images = ["VAE prior", f"reconstruction β={beta:.2f} seed={seed}"], [prior, final]
    if ablated is not None:
        labels.append("without " + ", ".join(trial.removed))
        images.append(ablated)
    return viz.save_png(viz.image_strip(images, labels), folder, f"reconstruction_{download_stem(trial)}")


def save_conversation(folder: Path, preset: str, trial, conversation: list[dict]) -> Path:
    """The chat as shown and as the LLM saw it, with the prompt and the concepts, as JSON.

    `conversation` is the chat as shown, each message's content already flattened to text.
    """
    payload = {
        "preset": preset,
        "recording": trial.label(),
        "subject": trial.subject,
        "nsd_id": trial.nsd_id,
        "protocol": trial.protocol,
        "conversation": conversation,
        "sent_to_model": trial.history,  # the paper's instructions, as the LLM saw them
        "reconstruction_prompt": trial.prompt,
        "concepts": trial.concepts,
        "removed": trial.removed,
    }
    return viz.save_json(payload, folder, f"conversation_{download_stem(trial)}")
