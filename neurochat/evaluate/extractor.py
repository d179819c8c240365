"""How well extractors predict CLIP and VAE features of the test pictures (paper Sec. 3.2, 4.2).

For each test image of each subject (the shared images), in the averaged-trial and single-trial
protocols (App. A.1, C.1): two-way identification and top-1 retrieval of predicted vs true CLIP
embeddings, and the correlation of predicted vs true VAE latents. Identification compares images
within a subject's test set; numbers are averaged over subjects. ViT3D and the paper's two
baselines, "w/o ViT3D" (flattened voxels) and "w/o C_Subj" (one model per subject), side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurochat.data import TrialBank, test_set
from neurochat.errors import ConfigError
from neurochat.metrics import mean_correlation, top1_retrieval, two_way_identification
from neurochat.models.bundle import WeightsLayout, baseline_dirs, has_extractor
from neurochat.models.extractor import ExtractorBundle, load_extractor
from neurochat.nsd.dataset import NSDDataset
from neurochat.targets import ImageTargets

PROTOCOLS = ("averaged", "single")


def extractor_folders(extractor_dir: Path, patch_size: int, subjects: list[str]) -> dict[str, Path | dict[str, Path]]:
    """Where train/extractor.py puts the main model and the two baselines, given a preset's
    `extractor_dir` (`neurochat.models.bundle.baseline_dirs` of its layout)."""
    return baseline_dirs(WeightsLayout(Path(extractor_dir).parent), patch_size, subjects)


@torch.no_grad()
def predict(bundle: ExtractorBundle, bank: TrialBank, rows_tokens: torch.Tensor, batch_size: int = 128):
    """ẑ_c and ẑ_v for 3D patch tokens (M, N, r³) made with the bank's preprocessor."""
    clips, vaes = [], []
    for start in range(0, len(rows_tokens), batch_size):
        output = bundle.model(bundle.tokens(rows_tokens[start : start + batch_size]))
        clips.append(output.clip.float().cpu().numpy())
        vaes.append(output.vae.float().cpu().numpy())
    return np.concatenate(clips), np.concatenate(vaes)


def score(clip_pred, vae_pred, subjects, nsd_ids, targets: ImageTargets) -> dict:
    """The three metrics per subject, averaged over subjects."""
    per_subject = []
    for s in np.unique(subjects):
        rows = np.flatnonzero(subjects == s)
        target_rows = targets.rows(nsd_ids[rows])
        true_clip, true_vae = targets.clip[target_rows], targets.vae[target_rows]
        per_subject.append(
            {
                "clip_2way": two_way_identification(clip_pred[rows], true_clip),
                "clip_top1": top1_retrieval(clip_pred[rows], true_clip),
                "vae_corr": mean_correlation(vae_pred[rows], true_vae),
            }
        )
    return {key: float(np.mean([p[key] for p in per_subject])) for key in per_subject[0]}


def evaluate_extractors(dataset: NSDDataset, targets: ImageTargets, folders: dict, log=print) -> dict:
    """{"vit3d": {"averaged": {...}, "single": {...}}, "flattened": ..., "subject_specific": ...};
    a model that is not on disk is reported as None."""
    main_folder = Path(folders["vit3d"])
    if not has_extractor(main_folder):
        raise ConfigError(f"no trained extractor at {main_folder}: train it with `python -m train.extractor`")
    main = load_extractor(main_folder)
    bank = TrialBank(dataset, main.preprocessor)
    test_sets = {protocol: test_set(bank, protocol) for protocol in PROTOCOLS}
    tokens = {protocol: ts.tokens(bank) for protocol, ts in test_sets.items()}

    results: dict = {}
    for name in ("vit3d", "flattened"):
        folder = Path(folders[name])
        if not has_extractor(folder):
            log(f"{name}: no checkpoint at {folder} — skipped")
            results[name] = None
            continue
        bundle = main if name == "vit3d" else load_extractor(folder)
        results[name] = {}
        for protocol, ts in test_sets.items():
            clip, vae = predict(bundle, bank, _retokenize(bank, bundle, ts, tokens[protocol]))
            results[name][protocol] = score(clip, vae, ts.subject, ts.nsd_id, targets)

    # "w/o C_Subj": each subject's own model, on that subject's test rows
    per_subject_folders = folders["subject_specific"]
    if all(has_extractor(f) for f in per_subject_folders.values()):
        results["subject_specific"] = {}
        for protocol, ts in test_sets.items():
            clip = np.zeros((len(ts), targets.clip.shape[1]), np.float32)
            vae = np.zeros((len(ts), *targets.vae.shape[1:]), np.float32)
            for s, subject in enumerate(bank.subjects):
                rows = np.flatnonzero(ts.subject == s)
                bundle = load_extractor(per_subject_folders[subject])
                clip[rows], vae[rows] = predict(bundle, bank, _retokenize(bank, bundle, ts, tokens[protocol])[rows])
            results["subject_specific"][protocol] = score(clip, vae, ts.subject, ts.nsd_id, targets)
    else:
        log("subject_specific: not every subject's checkpoint is on disk — skipped")
        results["subject_specific"] = None
    return results


def _retokenize(bank: TrialBank, bundle: ExtractorBundle, ts, tokens: torch.Tensor) -> torch.Tensor:
    """Test tokens for a model whose preprocessor differs from the bank's (another patch size)."""
    if bundle.preprocessor.state()["patch_size"] == bank.preprocessor.config.patch_size:
        return tokens
    return ts.tokens(bank, bundle.preprocessor)


def format_table(results: dict) -> str:
    lines = [f"{'model':18} {'protocol':9} {'CLIP 2-way':>10} {'CLIP top-1':>10} {'VAE corr':>9}"]
    for name, by_protocol in results.items():
        if by_protocol is None:
            lines.append(f"{name:18} (not trained)")
            continue
        for protocol, m in by_protocol.items():
            lines.append(f"{name:18} {protocol:9} {m['clip_2way']:>10.3f} {m['clip_top1']:>10.3f} {m['vae_corr']:>9.3f}")
    return "\n".join(lines)
