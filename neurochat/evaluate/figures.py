"""Figures of the localization evaluation: the Fig. 8 analog (concept ablation) and the Fig. 7
analog (glass-brain heatmaps of several concepts for one stimulus, beside their ground truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neurochat.ablate import ablate
from neurochat.data import TrialBank, test_set
from neurochat.evaluate.localize import native_volume


def localization_figures(dataset, localizer, reconstructor, key, folder: Path, *, rows: int = 4, beta: float = 0.93,
                         seed: int = 0, steps: int = 20) -> dict:  # fmt: skip
    """Write ablation_grid.png and glass_brains.png into `folder`; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nilearn import plotting

    folder.mkdir(parents=True, exist_ok=True)
    main = localizer.bundles[0]
    bank = TrialBank(dataset, main.preprocessor)
    ts = test_set(bank, "averaged")

    def picture(volume):
        with torch.no_grad():
            output = main.model(main.tokens(main.preprocessor(volume[None])))
        return reconstructor(output.clip, output.vae, "", beta=beta, seed=seed, steps=steps)[0]

    # Fig. 8: stimulus | reconstruction | − concept A | − concept B, for pictures with two objects
    lines, first = [], None
    for row in range(len(ts)):
        concepts = key.concepts_in(int(ts.nsd_id[row]))[:-1]  # objects only
        if len(concepts) < 2:
            continue
        subject = bank.subjects[int(ts.subject[row])]
        mask = dataset.nsdgeneral(subject) > 0
        volume = native_volume(bank, subject, ts.voxels[row])
        stimulus = dataset.image(int(ts.nsd_id[row]))
        size = stimulus.shape[0]
        cells = [stimulus, picture(volume)]
        heatmaps = []
        for concept in concepts[:2]:
            heatmap = localizer.localize(volume, concept, subject=subject, affine=dataset.affine(subject), mask=mask,
                                         to_mni=key.to_mni(subject))  # fmt: skip
            heatmaps.append(heatmap)
            cells.append(picture(ablate(volume, [heatmap])[0]))
        lines.append(np.concatenate([np.asarray(Image.fromarray(c).resize((size, size))) for c in cells], axis=1))
        first = first or (stimulus, heatmaps, concepts[:2])
        if len(lines) >= rows:
            break
    grid_path = folder / "ablation_grid.png"
    Image.fromarray(np.concatenate(lines, axis=0)).save(grid_path)

    # Fig. 7: one stimulus, a glass brain per concept (MNI space), next to SimNSD's ground truth
    from neurochat.localize import Heatmap

    stimulus, heatmaps, concepts = first
    figure, axes = plt.subplots(len(heatmaps) + 1, 2, figsize=(16, 2.6 * (len(heatmaps) + 1)))
    axes[0, 0].imshow(stimulus)
    axes[0, 0].set_title("stimulus (for reference)")
    for axis in axes[0]:
        axis.axis("off")
    for row, heatmap in zip(axes[1:], heatmaps):
        truth = key.concept_map(heatmap.subject, heatmap.concept)
        truth_map = Heatmap(heatmap.concept, heatmap.subject, truth, heatmap.affine, heatmap.to_mni)
        method = "encoding map" if heatmap.method == "encoding" else "GradCAM"
        for axis, shown, title in ((row[0], heatmap, f'"{heatmap.concept}": {method}'),
                                   (row[1], truth_map, f'"{heatmap.concept}": ground truth')):  # fmt: skip
            plotting.plot_glass_brain(shown.to_mni_nifti(), figure=figure, axes=axis, display_mode="lyrz",
                                      threshold=0.5, plot_abs=False, colorbar=False, title=title)  # fmt: skip
    brains_path = folder / "glass_brains.png"
    figure.savefig(brains_path, dpi=100)
    plt.close(figure)
    return {"ablation_grid": str(grid_path), "glass_brains": str(brains_path), "concepts": concepts}


def picture_rows(rows: list[np.ndarray], path: str | Path, size: int = 128) -> Path:
    """Rows of pictures (each uint8 (n, H, W, 3), the same n) as one PNG, every cell resized to `size`."""
    lines = [np.concatenate([np.asarray(Image.fromarray(p).resize((size, size))) for p in row], axis=1) for row in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(lines, axis=0)).save(path)
    return path
