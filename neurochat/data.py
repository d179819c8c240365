"""Training and test samples: (tokens, subject, 73k id, repetition, image), built on the fly.

NSD has ~30k trials per subject; materialising every trial's (N, r³) patch tensor would take
~80 GB (ARCHITECTURE.md). Instead a `TrialBank` keeps, per subject, the betas of only the native
voxels that reach a token (the preprocessor's *support*), and tokens are made per batch with the
subject's sparse operator.

Training items apply MixUp between repetitions of the same image for the same subject, with
λ ~ U(0, 1) (paper App. B). Test sets follow the two protocols of the paper (App. A.1, C.1):
*averaged* (the mean of an image's repetitions) and *single* (its first repetition only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurochat.errors import DataError
from neurochat.nsd.dataset import NSDDataset
from neurochat.nsd.design import TrialTable
from neurochat.preprocess import PatchPreprocessor, SubjectOperator

PROTOCOLS = ("averaged", "single")


class TrialBank:
    """Each subject's betas at its support voxels, read once: float32 (trials on disk, n_support).

    Parameters
    ----------
    dataset : NSDDataset
    preprocessor : PatchPreprocessor
        Defines the support and the tokens. Preprocessors of the localization ensemble (other patch
        sizes, same common grid and union mask) can share one bank through `tokens(..., operator=)`.
    subjects : list of str, optional
        Default: every subject on disk.
    """

    def __init__(self, dataset: NSDDataset, preprocessor: PatchPreprocessor, subjects: list[str] | None = None):
        self.dataset = dataset
        self.preprocessor = preprocessor
        self.subjects = list(subjects) if subjects is not None else list(dataset.subjects)
        for subject in self.subjects:
            dataset.check_subject(subject)
        self.tables: dict[str, TrialTable] = {}
        self.operators: dict[str, SubjectOperator] = {}
        self.voxels: dict[str, np.ndarray] = {}
        for subject in self.subjects:
            table = dataset.trials(subject)
            operator = preprocessor.operator(dataset.native_shape(subject))
            # read whole sessions: one pass over each file, in trial order
            rows = [dataset.read_session(subject, session, voxels=operator.support) for session in dataset.sessions(subject)]
            self.tables[subject] = table
            self.operators[subject] = operator
            self.voxels[subject] = np.concatenate(rows)  # (trials on disk, n_support), rows follow table.trial

    def subject_index(self, subject: str) -> int:
        return self.subjects.index(subject)

    def tokens(self, subject: str, voxel_rows: np.ndarray | torch.Tensor, preprocessor: PatchPreprocessor | None = None):
        """Tokens (B, N, r³) of support-voxel rows (B, n_support) of `subject`.

        `preprocessor` may be another member of the localization ensemble (same common grid and
        union mask, another patch size): with `zero_outside_mask` its support is the same voxels.
        """
        operator = self.operators[subject]
        if preprocessor is None or preprocessor is self.preprocessor:
            return operator.tokens_from_support(voxel_rows)
        return preprocessor.operator(operator.native_shape).tokens_from_voxels(operator.support, voxel_rows)

    def rows_of(self, subject: str, trials: np.ndarray) -> np.ndarray:
        """Bank rows of global trial indices."""
        return np.searchsorted(self.tables[subject].trial, trials)


@dataclass(frozen=True)
class TrainItem:
    subject: int
    trial: int  # global trial index of the primary repetition
    partner: int  # trial mixed in (equal to `trial` when the image has a single repetition on disk)


class MixUpTrainingSet(torch.utils.data.Dataset):
    """Training trials (the subjects' own images) of every subject in one set, with MixUp.

    Each item is a dict of the support voxels (mixed), the subject index, the 73k id, the primary
    trial's repetition and λ. Use `collate` as the DataLoader's `collate_fn`: it turns the voxels of
    a batch into tokens, subject by subject. Call `set_epoch` each epoch: λ and the partner trial
    are drawn from (seed, epoch, index), so a run is reproducible and resumable.
    """

    def __init__(self, bank: TrialBank, *, mixup: bool = True, seed: int = 0, split: str = "train", images: bool = False):
        if split not in ("train", "test"):
            raise DataError(f"split={split!r}: choose 'train' (own images) or 'test' (shared images)")
        self.bank = bank
        self.mixup = mixup
        self.seed = seed
        self.images = images
        self.epoch = 0
        self.items: list[TrainItem] = []
        self.partners: dict[tuple[int, int], np.ndarray] = {}  # (subject, nsd id) -> trials
        for s, subject in enumerate(bank.subjects):
            table = bank.tables[subject]
            use = ~table.shared if split == "train" else table.shared
            for nsd_id in np.unique(table.nsd_id[use]):
                self.partners[(s, int(nsd_id))] = table.trials_of_image(int(nsd_id))
            for trial in table.trial[use]:
                self.items.append(TrainItem(s, int(trial), int(trial)))
        if not self.items:
            raise DataError(f"no {split} trials on disk for {', '.join(bank.subjects)}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        subject = self.bank.subjects[item.subject]
        table = self.bank.tables[subject]
        row = table.row(item.trial)
        nsd_id = int(table.nsd_id[row])
        voxels = self.bank.voxels[subject][row]
        lam = 1.0
        partner = item.trial
        if self.mixup:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            others = self.partners[(item.subject, nsd_id)]
            others = others[others != item.trial]
            if len(others):
                partner = int(rng.choice(others))
                lam = float(rng.uniform(0.0, 1.0))  # λ ~ U(0, 1), App. B
                partner_voxels = self.bank.voxels[subject][table.row(partner)]
                voxels = lam * voxels + (1.0 - lam) * partner_voxels
        return {
            "voxels": np.asarray(voxels, np.float32),
            "subject": item.subject,
            "nsd_id": nsd_id,
            "repetition": int(table.repetition[row]),
            "trial": item.trial,
            "partner": partner,
            "lam": lam,
        }

    def collate(self, items: list[dict]) -> dict:
        """Batch items: tokens (B, N, r³) float32, integer tensors of the other fields, and with
        `images=True` the stimuli as uint8 (B, H, W, 3)."""
        batch = collate_items(self.bank, items)
        if self.images:
            batch["image"] = torch.from_numpy(self.bank.dataset.images(batch["nsd_id"].numpy()))
        return batch


def collate_items(bank: TrialBank, items: list[dict], preprocessor: PatchPreprocessor | None = None) -> dict:
    preprocessor = preprocessor or bank.preprocessor
    tokens = torch.empty(len(items), preprocessor.n_patches, preprocessor.token_dim)
    subjects = np.array([item["subject"] for item in items])
    for s in np.unique(subjects):
        rows = np.flatnonzero(subjects == s)
        voxels = np.stack([items[i]["voxels"] for i in rows])
        tokens[torch.as_tensor(rows)] = bank.tokens(bank.subjects[s], voxels, preprocessor).float()
    batch = {"tokens": tokens}
    for key in ("subject", "nsd_id", "repetition", "trial", "partner"):
        batch[key] = torch.tensor([item[key] for item in items], dtype=torch.long)
    batch["lam"] = torch.tensor([item["lam"] for item in items], dtype=torch.float32)
    return batch


@dataclass
class TestSet:
    """One protocol's test samples: one row per (subject, shared image)."""

    protocol: str
    voxels: list[np.ndarray]  # per row, (n_support of its subject,)
    subject: np.ndarray  # (M,) index into bank.subjects
    nsd_id: np.ndarray  # (M,)
    n_repetitions: np.ndarray  # (M,) trials averaged (1 for "single")

    def __len__(self) -> int:
        return len(self.nsd_id)

    def tokens(self, bank: TrialBank, preprocessor: PatchPreprocessor | None = None) -> torch.Tensor:
        """All rows' tokens, (M, N, r³)."""
        items = [{"voxels": v, "subject": int(s), "nsd_id": 0, "repetition": 0, "trial": 0, "partner": 0, "lam": 1.0}
                 for v, s in zip(self.voxels, self.subject)]  # fmt: skip
        return collate_items(bank, items, preprocessor)["tokens"]


def test_set(bank: TrialBank, protocol: str = "averaged") -> TestSet:
    """The shared images of every subject: averaged over repetitions, or the first repetition only."""
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol={protocol!r}: choose 'averaged' (mean of repetitions) or 'single' (first one)")
    voxels, subjects, ids, counts = [], [], [], []
    for s, subject in enumerate(bank.subjects):
        table = bank.tables[subject]
        for nsd_id in table.test_images:
            trials = table.trials_of_image(int(nsd_id))  # in repetition order
            if protocol == "single":
                trials = trials[:1]
            rows = bank.rows_of(subject, trials)
            voxels.append(bank.voxels[subject][rows].mean(axis=0))
            subjects.append(s)
            ids.append(int(nsd_id))
            counts.append(len(trials))
    if not ids:
        raise DataError(f"no shared test images on disk for {', '.join(bank.subjects)}")
    return TestSet(protocol, voxels, np.array(subjects), np.array(ids), np.array(counts))


test_set.__test__ = False  # not a pytest test, despite its name
TestSet.__test__ = False


def build_preprocessor(dataset: NSDDataset, patch_size: int, zero_outside_mask: bool = True) -> PatchPreprocessor:
    """The paper's preprocessor for a dataset: common grid = the first subject's native grid (subj01
    in NSD, App. B), union of every subject's nsdgeneral mask."""
    from neurochat.preprocess import PreprocessConfig

    masks = {subject: dataset.nsdgeneral(subject) for subject in dataset.subjects}
    config = PreprocessConfig(dataset.native_shape(dataset.subjects[0]), patch_size, zero_outside_mask)
    return PatchPreprocessor.from_subject_masks(config, masks)
