"""Training samples: tokens built on the fly from compact voxel arrays, MixUp, test protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurochat.data import MixUpTrainingSet, TrialBank, test_set
from neurochat.errors import DataError
from neurochat.nsd import NSDDataset
from neurochat.preprocess import PatchPreprocessor, PreprocessConfig
from neurochat.sim.config import SUBJECTS


@pytest.fixture(scope="module")
def bank(sim_root):
    data = NSDDataset(sim_root)
    masks = {s: data.nsdgeneral(s) for s in data.subjects}
    config = PreprocessConfig(common_grid=data.native_shape("subj01"), patch_size=5)
    return TrialBank(data, PatchPreprocessor.from_subject_masks(config, masks))


def test_bank_tokens_equal_preprocessing_the_full_volume(bank):
    data = bank.dataset
    for subject in ("subj01", "subj07"):
        trials = bank.tables[subject].trial[[0, 5]]
        volumes = data.read_trials(subject, trials)
        expected = bank.preprocessor(volumes)
        got = bank.tokens(subject, bank.voxels[subject][bank.rows_of(subject, trials)])
        torch.testing.assert_close(got, expected)
    # every subject gives the same number of tokens
    shapes = {tuple(bank.tokens(s, bank.voxels[s][:1]).shape) for s in SUBJECTS}
    assert shapes == {(1, bank.preprocessor.n_patches, 125)}


def test_mixup_mixes_repetitions_of_the_same_image(bank):
    train = MixUpTrainingSet(bank, seed=1)
    assert len(train) == 4 * 30 * 3  # own images x repetitions, all subjects in one set
    lams = []
    for index in range(0, len(train), 17):
        item = train[index]
        subject = bank.subjects[item["subject"]]
        table = bank.tables[subject]
        assert item["partner"] != item["trial"]
        assert table.nsd_id[table.row(item["partner"])] == item["nsd_id"], "partner shows the same image"
        a = bank.voxels[subject][table.row(item["trial"])]
        b = bank.voxels[subject][table.row(item["partner"])]
        np.testing.assert_allclose(item["voxels"], item["lam"] * a + (1 - item["lam"]) * b, rtol=1e-5, atol=1e-5)
        lams.append(item["lam"])
    assert 0 <= min(lams) and max(lams) <= 1 and np.std(lams) > 0.15  # λ ~ U(0, 1)
    # reproducible for a given (seed, epoch, index); new draws in the next epoch
    assert train[3]["lam"] == MixUpTrainingSet(bank, seed=1)[3]["lam"]
    first = train[3]["lam"]
    train.set_epoch(1)
    assert train[3]["lam"] != first
    # the test split never leaks into training
    assert not any(bank.tables[bank.subjects[i.subject]].shared[bank.tables[bank.subjects[i.subject]].row(i.trial)]
                   for i in train.items)  # fmt: skip


def test_collate_batches_tokens_and_images(bank):
    train = MixUpTrainingSet(bank, mixup=False, images=True)
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, collate_fn=train.collate,
                                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    batch = next(iter(loader))
    assert batch["tokens"].shape == (8, bank.preprocessor.n_patches, 125)
    assert batch["image"].shape == (8, 128, 128, 3) and batch["image"].dtype == torch.uint8
    assert torch.all(batch["lam"] == 1)
    # without MixUp an item is exactly its trial's tokens
    item = train[0]
    subject = bank.subjects[item["subject"]]
    direct = bank.tokens(subject, item["voxels"][None])
    torch.testing.assert_close(train.collate([item])["tokens"], direct)


def test_averaged_and_single_trial_test_sets(bank):
    averaged = test_set(bank, "averaged")
    single = test_set(bank, "single")
    assert len(averaged) == len(single) == 4 * 10
    assert set(averaged.n_repetitions) == {3} and set(single.n_repetitions) == {1}
    subject = bank.subjects[int(averaged.subject[0])]
    table = bank.tables[subject]
    trials = table.trials_of_image(int(averaged.nsd_id[0]))
    rows = bank.rows_of(subject, trials)
    np.testing.assert_allclose(averaged.voxels[0], bank.voxels[subject][rows].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(single.voxels[0], bank.voxels[subject][rows[0]])
    assert table.repetition[table.row(trials[0])] == 0
    tokens = averaged.tokens(bank)
    assert tokens.shape == (40, bank.preprocessor.n_patches, 125)
    with pytest.raises(DataError, match="protocol='mean'"):
        test_set(bank, "mean")


def test_ensemble_preprocessors_share_the_bank(bank):
    other = PatchPreprocessor(PreprocessConfig(bank.preprocessor.config.common_grid, 4), bank.preprocessor.union_mask)
    subject = "subj02"
    trials = bank.tables[subject].trial[:2]
    volumes = bank.dataset.read_trials(subject, trials)
    got = bank.tokens(subject, bank.voxels[subject][bank.rows_of(subject, trials)], other)
    torch.testing.assert_close(got, other(volumes))
