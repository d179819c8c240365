"""NSD's experimental design: which 73k image each trial showed, its repetition, and the split.

`nsd_expdesign.mat` (NSD_FORMAT.md) holds, 1-based as MATLAB writes them:
- `masterordering` (1, 30000): for each trial, an index into the subject's 10,000-image list,
  the same sequence for every subject;
- `subjectim` (8, 10000): each subject's list of 73k ids, the shared images first;
- `sharedix` (1, 1000): the 73k ids every subject saw, the standard test set.
Trial t (0-based over all sessions) of subject s showed `subjectim[s-1, masterordering[t]-1] - 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from neurochat.errors import DataError


@dataclass(frozen=True)
class ExpDesign:
    """The design file, converted to 0-based integer arrays."""

    master_ordering: np.ndarray  # (n_trials,) 0-based index into a subject's image list
    subject_images: np.ndarray  # (n_nsd_subjects, images_per_subject) 0-based 73k ids; -1 where absent
    shared_ids: np.ndarray  # (n_shared,) 0-based 73k ids
    path: Path

    @classmethod
    def load(cls, path: Path) -> "ExpDesign":
        if not path.exists():
            raise DataError(
                f"missing {path}: NSD's design file (nsddata/experiments/nsd/nsd_expdesign.mat) is needed to "
                "know which image each trial showed; download it with the rest of nsddata"
            )
        try:
            mat = scipy.io.loadmat(path)
        except Exception as error:  # scipy raises several types for damaged files
            raise DataError(f"{path} is not a readable MATLAB file ({error}); download it again") from error
        for key in ("masterordering", "subjectim", "sharedix"):
            if key not in mat:
                raise DataError(f"{path} has no variable '{key}': is this NSD's nsd_expdesign.mat?")
        ordering = _one_based_integers(mat["masterordering"], path, "masterordering").reshape(-1) - 1
        subject_images = _one_based_integers(mat["subjectim"], path, "subjectim", allow_zero=True) - 1
        shared = _one_based_integers(mat["sharedix"], path, "sharedix").reshape(-1) - 1
        if subject_images.ndim != 2:
            raise DataError(f"{path}: subjectim has shape {subject_images.shape}, expected (subjects, images)")
        if ordering.max() >= subject_images.shape[1]:
            raise DataError(
                f"{path}: masterordering refers to image {ordering.max() + 1} of a subject's list, "
                f"but subjectim has only {subject_images.shape[1]} columns"
            )
        return cls(ordering, subject_images, shared, path)

    @property
    def n_trials(self) -> int:
        return len(self.master_ordering)

    def trial_images(self, subject_number: int) -> np.ndarray:
        """0-based 73k id of every trial of subject `subject_number` (1-based as in `subj01`)."""
        row = subject_number - 1
        if not 0 <= row < len(self.subject_images) or (self.subject_images[row] < 0).all():
            raise DataError(f"{self.path}: the design has no image list for subject {subject_number}")
        return self.subject_images[row, self.master_ordering]


def _one_based_integers(values: np.ndarray, path: Path, name: str, allow_zero: bool = False) -> np.ndarray:
    values = np.asarray(values)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise DataError(f"{path}: {name} must hold whole numbers (1-based indices)")
    values = values.astype(np.int64)
    if values.min() < (0 if allow_zero else 1):
        raise DataError(f"{path}: {name} has value {values.min()}, but its indices are 1-based")
    return values


@dataclass(frozen=True)
class TrialTable:
    """One subject's trials that are on disk, in trial order.

    `trial` is the 0-based index over all sessions (as in NSD's masterordering); `repetition` is
    0, 1 or 2: how many times the subject had seen the image before, counted over the whole design
    (not only the sessions on disk).
    """

    subject: str
    trial: np.ndarray  # (n,) int64
    session: np.ndarray  # (n,) 1-based session number
    nsd_id: np.ndarray  # (n,) 0-based 73k id
    repetition: np.ndarray  # (n,) 0-based
    shared: np.ndarray  # (n,) bool: one of the shared test images
    trials_per_session: int

    @classmethod
    def build(cls, subject: str, design: ExpDesign, sessions: list[int], trials_per_session: int) -> "TrialTable":
        images = design.trial_images(int(subject[-2:]))
        # repetition = number of earlier trials of the same image, over the full design
        order = np.argsort(images, kind="stable")
        sorted_images = images[order]
        first_of_run = np.r_[0, np.flatnonzero(np.diff(sorted_images)) + 1]
        run_start = np.repeat(first_of_run, np.diff(np.r_[first_of_run, len(images)]))
        repetition = np.empty_like(images)
        repetition[order] = np.arange(len(images)) - run_start

        all_trials = np.arange(design.n_trials)
        session = all_trials // trials_per_session + 1
        keep = np.isin(session, sessions)
        shared = np.isin(images, design.shared_ids)
        return cls(
            subject=subject,
            trial=all_trials[keep],
            session=session[keep],
            nsd_id=images[keep],
            repetition=repetition[keep],
            shared=shared[keep],
            trials_per_session=trials_per_session,
        )

    def __len__(self) -> int:
        return len(self.trial)

    def row(self, trial: int) -> int:
        """Position of global trial index `trial` in this table (it must be on disk)."""
        position = int(np.searchsorted(self.trial, trial))
        if position >= len(self.trial) or self.trial[position] != trial:
            raise KeyError(trial)
        return position

    def trials_of_image(self, nsd_id: int) -> np.ndarray:
        """Global trial indices on disk that showed `nsd_id`, in repetition order."""
        rows = np.flatnonzero(self.nsd_id == nsd_id)
        return self.trial[rows[np.argsort(self.repetition[rows])]]

    @property
    def test_images(self) -> np.ndarray:
        """Shared 73k ids with at least one trial on disk, sorted."""
        return np.unique(self.nsd_id[self.shared])

    @property
    def train_images(self) -> np.ndarray:
        """The subject's own (non-shared) 73k ids with at least one trial on disk, sorted."""
        return np.unique(self.nsd_id[~self.shared])
