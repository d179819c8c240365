"""What the explorer hands out: a trial's state, what the extractor read from it, a streamed chat answer.

Plain values, so that the app, scripts and tests can hold and compare them without the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from neurochat.language import parse_localization_answer

PROTOCOLS = ("averaged", "single")


@dataclass
class TrialState:
    """What one person is looking at: a trial (or an upload), the conversation and the toggles."""

    subject: str
    nsd_id: int | None  # the picture shown (None for an uploaded volume)
    protocol: str  # "averaged" over repetitions, "single" (first repetition) or "upload"
    upload: str | None = None  # key of an uploaded volume
    history: list[dict] = field(default_factory=list)  # messages as the LLM saw them
    prompt: str | None = None  # the LLM's latest reconstruction prompt a_r
    concepts: list[str] = field(default_factory=list)  # concepts named or localized so far
    removed: list[str] = field(default_factory=list)  # concepts whose voxels are switched off

    @property
    def key(self) -> tuple:
        return (self.subject, self.nsd_id, self.protocol, self.upload)

    def label(self) -> str:
        if self.upload:
            return f"uploaded volume {self.upload}"
        how = "average of its repetitions" if self.protocol == "averaged" else "first repetition only"
        return f"{self.subject}, image {self.nsd_id} ({how})"


@dataclass
class Features:
    """One recording and what the extractor reads from it (cached per trial)."""

    volume: np.ndarray  # native (X, Y, Z) betas, percent signal change
    mask: np.ndarray  # native bool: where concepts are searched (nsdgeneral, or the tokens' support)
    affine: np.ndarray
    to_mni: np.ndarray | None
    clip: torch.Tensor  # (clip_dim,) ẑ_c
    vae: torch.Tensor  # (C, h, w) ẑ_v
    fmri_tokens: torch.Tensor  # (1 + N, D) the LLM's fMRI tokens (penultimate layer)


@dataclass(frozen=True)
class TrialChoice:
    label: str
    nsd_id: int
    shared: bool


class ChatTurn:
    """A streamed answer; iterate for text pieces. After the stream: `text`, and `action`, which is
    ("reconstruct", prompt) or ("localize", concept) when the LLM was asked for one, else None.
    An answer the LLM did not write (`remember=False`) stays out of the history it reads."""

    def __init__(self, stream, state: TrialState, sent: str, action: tuple | None, notes: list[str],
                 remember: bool = True):  # fmt: skip
        self._stream = stream
        self._state = state
        self._sent = sent
        self.notes = notes
        self.action = action
        self.remember = remember
        self.text = ""

    def __iter__(self):
        for piece in self._stream:
            self.text += piece
            yield piece
        self._finish()

    def _finish(self) -> None:
        answer = self.text.strip()
        if not self.remember:
            return
        self._state.history += [{"role": "user", "content": self._sent}, {"role": "assistant", "content": answer}]
        if self.action and self.action[0] == "reconstruct":
            self._state.prompt = answer or None
            self.action = ("reconstruct", answer)
        elif self.action and self.action[0] == "localize":
            concept = parse_localization_answer(answer) or self.action[1]
            self.action = ("localize", concept)
