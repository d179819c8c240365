"""What the data knows about a subject's anatomy, for the slice viewer: named regions (SimNSD's answer
key, or NSD's ROI files) and an anatomical underlay (nilearn's MNI152 T1, never downloaded).

    atlas = regions_for(str(dataset.root), "subj01")   # None when the data names no regions
    atlas.name_at((20, 14, 18))                         # "right higher visual cortex"
    underlay = template_underlay(shape, to_mni)         # the T1 at each native voxel
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage


@dataclass
class RegionAtlas:
    """Named regions in one native grid: layers of integer labels, most specific first; the first layer
    that labels a voxel (> 0) names it."""

    layers: list[tuple[np.ndarray, dict[int, str]]]  # (labels int (X, Y, Z), label -> name)
    source: str  # where the names come from, said on the page

    def name_at(self, voxel) -> str:
        index = tuple(int(v) for v in voxel)
        for labels, names in self.layers:
            value = int(labels[index])
            if value > 0:
                return names.get(value, f"label {value}")
        return ""


_SIMNSD_REGIONS = {1: "left early visual cortex", 2: "right early visual cortex", 3: "left higher visual cortex",
                   4: "right higher visual cortex", 5: "cortex outside nsdgeneral"}  # fmt: skip
# NSD's ROI files (func1pt8mm/roi/), the most specific first; the rest follow alphabetically.
_NSD_ROI_ORDER = ("prf-visualrois", "floc-faces", "floc-places", "floc-bodies", "floc-words", "prf-eccrois",
                  "streams", "nsdgeneral")  # fmt: skip


def simnsd_regions(root, subject: str) -> RegionAtlas:
    """SimNSD's regions in the subject's grid: early and higher visual cortex (the answer key's encoding
    model), by hemisphere (the sign of MNI x), and the cortex outside nsdgeneral (its ROI file)."""
    from neurochat.nsd import layout
    from neurochat.sim.truth import AnswerKey

    key = AnswerKey(root)
    nsdgeneral = np.rint(np.asarray(nib.load(Path(root) / layout.nsdgeneral(subject)).dataobj)).astype(np.int16)
    encoding = np.load(key.folder / subject / "encoding.npz")
    visual = np.zeros(nsdgeneral.size, bool)
    visual[encoding["visual_index"]] = True
    early = np.zeros(nsdgeneral.size, bool)
    early[encoding["visual_index"][encoding["evc"]]] = True
    to_mni = key.to_mni(subject)
    ijk = np.indices(nsdgeneral.shape).reshape(3, -1).T  # (V, 3), C order like visual_index
    right = ijk @ to_mni[0, :3] + to_mni[0, 3] > 0  # MNI x > 0 is the right hemisphere
    labels = np.where(nsdgeneral.ravel() == 0, 5, 0)
    labels[visual] = np.where(early[visual], 1, 3) + right[visual]
    return RegionAtlas([(labels.reshape(nsdgeneral.shape), dict(_SIMNSD_REGIONS))], "SimNSD answer key")


def nsd_roi_regions(root, subject: str) -> RegionAtlas | None:
    """NSD's ROI files of the subject (func1pt8mm/roi/*.nii.gz), named by FreeSurfer's colour tables
    (nsddata/freesurfer/subjNN/label/NAME.mgz.ctab) where present; None when the folder has none."""
    from neurochat.nsd import layout

    folder = Path(root) / layout.nsdgeneral(subject).parent
    files = [f for f in folder.glob("*.nii.gz") if not f.name.startswith(("lh.", "rh."))]  # the whole-brain files
    stem = lambda path: path.name[: -len(".nii.gz")]  # noqa: E731
    rank = {name: index for index, name in enumerate(_NSD_ROI_ORDER)}
    files.sort(key=lambda path: (rank.get(stem(path), len(rank)), stem(path)))
    layers = []
    for path in files:
        labels = np.rint(np.asarray(nib.load(path).dataobj)).astype(np.int16)
        if labels.ndim != 3:
            continue  # not a label volume
        names = _colour_table(Path(root) / "nsddata" / "freesurfer" / subject / "label" / f"{stem(path)}.mgz.ctab")
        if not names and stem(path) == "nsdgeneral":
            names = {1: "nsdgeneral"}  # NSD ships no colour table for it: 1 is the ROI
        present = [int(v) for v in np.unique(labels) if v > 0]
        layers.append((labels, {v: names.get(v, f"{stem(path)} {v}") for v in present}))
    return RegionAtlas(layers, "NSD roi/ files") if layers else None


def _colour_table(path: Path) -> dict[int, str]:
    """FreeSurfer's `index name [r g b a]` lines; {} when the file is absent."""
    if not path.exists():
        return {}
    names = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return names


@lru_cache(maxsize=8)
def regions_for(root: str, subject: str) -> RegionAtlas | None:
    """The regions the data knows for a subject: SimNSD's answer key, else NSD's ROI files, else None."""
    from neurochat.sim.truth import AnswerKey

    if AnswerKey.exists(root) and (Path(root) / "simnsd" / subject / "encoding.npz").exists():
        return simnsd_regions(root, subject)
    return nsd_roi_regions(root, subject)


@lru_cache(maxsize=1)
def _mni_t1() -> tuple[np.ndarray, np.ndarray]:
    """MNI152 2009 T1 at 1 mm as shipped inside nilearn's wheel (never downloaded)."""
    from neurochat.sim.brain import nilearn_data_dir

    image = nib.load(nilearn_data_dir() / _MNI_T1_FILE)
    return np.asarray(image.dataobj, np.float32), image.affine


_MNI_T1_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def template_underlay(shape, to_mni) -> np.ndarray:
    """The MNI152 T1 sampled (trilinear) at each native voxel through the voxel → MNI transform."""
    data, affine = _mni_t1()
    ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)  # (V, 3)
    to_template = np.linalg.inv(affine) @ np.asarray(to_mni, np.float64)  # native voxel -> template voxel
    points = ijk @ to_template[:3, :3].T + to_template[:3, 3]
    return ndimage.map_coordinates(data, points.T, order=1, cval=0.0).reshape(shape).astype(np.float32)
