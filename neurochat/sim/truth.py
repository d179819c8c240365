"""Reading SimNSD's answer key (`simnsd/` in a generated tree): what each picture shows, where each
concept lives in each subject's brain, and each subject's transform to MNI."""

from __future__ import annotations

import json
from functools import cached_property, lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from neurochat.errors import DataError
from neurochat.nsd import layout
from neurochat.sim.scenes import Scene


class AnswerKey:
    """The ground truth of a SimNSD tree."""

    def __init__(self, root: str | Path):
        self.folder = Path(root) / layout.SIMNSD
        if not (self.folder / "simnsd.json").exists():
            raise DataError(f"{self.folder} holds no SimNSD answer key (simnsd.json): ground truth exists only for "
                            "trees written by `python -m neurochat.sim`")  # fmt: skip

    @staticmethod
    def exists(root: str | Path) -> bool:
        return (Path(root) / layout.SIMNSD / "simnsd.json").exists()

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.folder / "simnsd.json").read_text())

    @property
    def concepts(self) -> list[str]:
        return list(self.meta["concepts"])

    @cached_property
    def scenes(self) -> dict[int, Scene]:
        return {s["image_id"]: Scene.from_json(s) for s in json.loads((self.folder / "scenes.json").read_text())}

    def concepts_in(self, nsd_id: int) -> list[str]:
        """Concepts present in a picture: its objects, then its scene."""
        return self.scenes[int(nsd_id)].concepts

    def to_mni(self, subject: str) -> np.ndarray:
        """(4, 4) native voxel index → MNI152 mm."""
        return np.array(self.meta["subjects"][subject]["native_to_mni"], dtype=np.float64)

    def concept_map(self, subject: str, concept: str) -> np.ndarray:
        """The ground-truth selectivity of `concept` in the subject's native space, float32 (X, Y, Z)."""
        if concept not in self.concepts:
            raise DataError(f"the answer key has no concept {concept!r}")
        return _maps(self.folder / subject / "concept_maps.nii.gz")[..., self.concepts.index(concept)]


@lru_cache(maxsize=8)
def _maps(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)
