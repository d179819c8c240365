"""Functional-localizer ROIs (NSD's `floc-*` files): read from a tree, written for SimNSD, and the
concept maps scored against them.

NSD ran a functional localizer (faces, bodies, places, words) in every subject and ships its ROIs
beside nsdgeneral: `nsddata/ppdata/subjNN/func1pt8mm/roi/floc-faces.nii.gz`, `floc-bodies`,
`floc-places`, `floc-words` (integer labels, 0 outside every ROI; what each label names is in
`nsddata/freesurfer/subjNN/label/floc-*.mgz.ctab`). They are a ground truth on real data for where a
concept such as *person* or *beach* should live, independent of our models.

SimNSD has no faces, bodies or words, so it writes the two ROIs its world has a territory for: the
animal territory as `floc-bodies` (body-selective cortex answers to animals too) and the scene
territory as `floc-places` (PPA where the ventral scene blobs lie, OPA where the dorsal ones do).
Each is the set of voxels where a member concept's ground-truth selectivity is ≥ 0.5
(`write_sim_floc_rois`): the answer key, in NSD's format. It also writes `prf-visualrois` (early
visual cortex), so that maps can be scored in higher visual cortex alone, as on NSD.

`score_floc` scores each ROI's concept family (the vocabulary's concepts that the localizer
contrast selects for: animals and *person* for bodies, scenes for places) against it, per subject:
- AUC of the family's map (at each voxel, the highest of its members' maps: where any of them
  lives) for ROI voxels vs the rest of nsdgeneral;
- enrichment: the share of the map's top voxels (as many as the ROI has) inside the ROI, over the
  share expected by chance;
- pointing game: the share of member concepts whose map peaks inside the ROI;
- two nulls: as many other concepts drawn at random in the family's place (label shuffle), and the
  family's map against random compact ROIs of the same size (the voxels nearest a random point of nsdgeneral).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from neurochat.errors import DataError
from neurochat.metrics import roc_auc
from neurochat.nsd import layout
from neurochat.vocabulary import OBJECTS, SCENES

ANIMALS = tuple(o.name for o in OBJECTS if o.supercategory == "animal")


@dataclass(frozen=True)
class FlocROI:
    """One of NSD's localizer ROI files: its labels (value 1, 2, ...) and the concepts its contrast selects for."""

    name: str
    labels: tuple[str, ...]
    concepts: tuple[str, ...]


FLOC_ROIS = (
    FlocROI("floc-faces", ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"), ("person",)),
    FlocROI("floc-bodies", ("EBA", "FBA-1", "FBA-2", "mTL-bodies"), ("person", *ANIMALS)),
    FlocROI("floc-places", ("OPA", "PPA", "RSC"), SCENES),
    FlocROI("floc-words", ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"), ()),
)
FLOC_BY_NAME = {roi.name: roi for roi in FLOC_ROIS}


def roi_of(concept: str) -> FlocROI | None:
    """The localizer ROI whose contrast selects for `concept` (the first that lists it), or None."""
    return next((roi for roi in FLOC_ROIS if concept in roi.concepts), None)

PRF_VISUAL_LABELS = ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4")  # NSD's prf-visualrois: early visual cortex
SIM_SELECTIVITY = 0.5  # a SimNSD voxel joins a territory's ROI where a member's true selectivity is ≥ this
RANDOM_ROIS = 100  # size-matched random ROIs per (subject, ROI) for the null
SHUFFLED_FAMILIES = 20  # families of other concepts per (subject, ROI) for the label-shuffle null


# ---------------------------------------------------------------------------------------------
# Files


def read_floc_roi(root: str | Path, subject: str, name: str) -> np.ndarray | None:
    """The integer label volume (X, Y, Z) of ROI file `name` for `subject`, None when the tree has none."""
    path = Path(root) / layout.roi_file(subject, name)
    if not path.exists():
        return None
    try:
        return np.asarray(nib.load(path).dataobj, dtype=np.int16)
    except Exception as error:  # a truncated or foreign file: say which one
        raise DataError(f"cannot read the ROI file {path}: {error}. Replace it with NSD's (or regenerate SimNSD)") from error


def write_sim_floc_rois(root: str | Path) -> list[Path]:
    """Write SimNSD's floc-bodies, floc-places and prf-visualrois (and their .ctab label tables) from its
    answer key. SimNSD's early visual cortex is one retinotopic map: it is written as V1v and V1d, by the
    half of the visual field each voxel sees."""
    from neurochat.sim.brain import _SCENE_DORSAL, _TERRITORIES
    from neurochat.sim.truth import AnswerKey

    root = Path(root)
    key = AnswerKey(root)
    ventral, dorsal = np.array(_TERRITORIES["scene"]), np.array(_SCENE_DORSAL)
    written = []
    for subject in key.meta["subjects"]:
        image = nib.load(root / layout.nsdgeneral(subject))
        nsdgeneral = np.asarray(image.dataobj)
        outside = np.where(nsdgeneral < 0, -1, 0).astype(np.int16)  # NSD's codes: -1 is not cortex
        ijk = np.indices(nsdgeneral.shape).reshape(3, -1).T
        to_mni = key.to_mni(subject)
        xyz = (ijk @ to_mni[:3, :3].T + to_mni[:3, 3]).reshape(*nsdgeneral.shape, 3)

        def territory(concepts) -> np.ndarray:
            return np.max([key.concept_map(subject, c) for c in concepts], axis=0) >= SIM_SELECTIVITY

        bodies = outside.copy()
        bodies[territory(ANIMALS)] = 1  # EBA
        places = outside.copy()
        scene = territory(SCENES)
        folded = xyz.copy()
        folded[..., 0] = np.abs(folded[..., 0])  # both hemispheres' blobs sit at ±x of the same anchors
        nearer_ventral = ((folded - ventral) ** 2).sum(-1) < ((folded - dorsal) ** 2).sum(-1)
        places[scene & nearer_ventral] = 2  # PPA
        places[scene & ~nearer_ventral] = 1  # OPA
        encoding = np.load(root / layout.SIMNSD / subject / "encoding.npz")
        early = outside.copy().reshape(-1)
        upper_field = encoding["prf_center"][:, 1] > 0  # ventral early visual cortex sees the upper field
        early[encoding["visual_index"][encoding["evc"]]] = np.where(upper_field, 1, 2)  # V1v, V1d
        early = early.reshape(nsdgeneral.shape)
        for name, labels in (("floc-bodies", bodies), ("floc-places", places), ("prf-visualrois", early)):
            path = root / layout.roi_file(subject, name)
            nib.save(nib.Nifti1Image(labels, image.affine), path)
            table = root / layout.roi_label_table(subject, name)
            table.parent.mkdir(parents=True, exist_ok=True)
            names = PRF_VISUAL_LABELS if name == "prf-visualrois" else FLOC_BY_NAME[name].labels
            table.write_text("0 Unknown\n" + "".join(f"{i} {label}\n" for i, label in enumerate(names, 1)))
            written += [path, table]
    return written


# ---------------------------------------------------------------------------------------------
# Scoring


def score_floc(dataset, concept_map, vocabulary, *, seed: int = 0, log=print) -> dict:
    """Every floc ROI of every subject that has one, against its concept family's maps.

    `concept_map(subject, concept)` -> native (X, Y, Z) map, 0..1 (the explorer's localization).
    Scored over nsdgeneral, and over higher visual cortex alone (nsdgeneral outside `prf-visualrois`,
    where the tree has it): a scene's colours and textures drive early visual cortex too, which a
    localizer contrast controls for and an encoding map does not.

    {"rois": {roi: {"concept" (its concepts joined by " / "), "concepts", "subjects", "auc", "enrichment",
    "pointing", "null_auc", "random_roi_auc", "random_roi_p95", "higher": {the same scores} or None}},
    "mean_auc", "mean_auc_higher", "skipped": {roi: why}}
    """
    vocabulary = list(vocabulary)
    rng = np.random.default_rng(seed)
    subject_maps: dict[str, dict[str, np.ndarray]] = {}  # every concept's map, once per subject for all its ROIs
    collected: dict[str, dict[str, dict[str, list]]] = {}  # roi -> region -> score -> values
    subjects: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for roi in FLOC_ROIS:
        family = [c for c in roi.concepts if c in vocabulary]
        others = [c for c in vocabulary if c not in family]
        for subject in dataset.subjects:
            labels = read_floc_roi(dataset.root, subject, roi.name)
            if labels is None:
                continue
            if not family:
                skipped[roi.name] = "no concept of the vocabulary is selective for it"
                continue
            nsdgeneral = dataset.nsdgeneral(subject) > 0
            if labels.shape != nsdgeneral.shape:
                raise DataError(f"{layout.roi_file(subject, roi.name)} has shape {labels.shape}, but the subject's "
                                f"nsdgeneral has {nsdgeneral.shape}: both must be on the func1pt8mm grid")  # fmt: skip
            regions = {"nsdgeneral": nsdgeneral}
            early = read_floc_roi(dataset.root, subject, "prf-visualrois")
            if early is not None and early.shape == nsdgeneral.shape:
                regions["higher"] = nsdgeneral & ~(early > 0)
            if subject not in subject_maps:
                subject_maps[subject] = {c: concept_map(subject, c) for c in vocabulary}
            maps = subject_maps[subject]
            for region, search in regions.items():
                inside = (labels > 0) & search
                if not inside.any() or inside.sum() == search.sum():
                    skipped[roi.name] = f"{subject}'s ROI holds no voxel of its {region} search region, or all of them"
                    continue
                scores = collected.setdefault(roi.name, {}).setdefault(region, {})
                for name, values in _roi_scores(maps, family, others, inside, search, rng).items():
                    scores.setdefault(name, []).extend(values)
            subjects.setdefault(roi.name, []).append(subject)
    rois = {}
    for name, regions in collected.items():
        if "nsdgeneral" not in regions:
            continue
        concepts = [c for c in FLOC_BY_NAME[name].concepts if c in vocabulary]
        rois[name] = {"concept": " / ".join(concepts), "concepts": concepts, "subjects": subjects[name],
                      **_summary(regions["nsdgeneral"]),
                      "higher": _summary(regions["higher"]) if "higher" in regions else None}  # fmt: skip
        log(format_roi(name, rois[name]))
    for name, why in skipped.items():
        if name not in rois:
            log(f"{name}: skipped, {why}")
    if not rois:
        raise DataError(f"{dataset.root} has no floc ROI files (e.g. {layout.roi_file(dataset.subjects[0], 'floc-places')}) "
                        "that a concept of the vocabulary matches: on real NSD copy nsddata/ppdata/subjNN/func1pt8mm/roi/ "
                        "as NSD ships it")  # fmt: skip
    higher = [r["higher"]["auc"] for r in rois.values() if r["higher"]]
    return {"rois": rois, "mean_auc": float(np.mean([r["auc"] for r in rois.values()])),
            "mean_auc_higher": float(np.mean(higher)) if len(higher) == len(rois) else None,
            "skipped": {k: v for k, v in skipped.items() if k not in rois}}  # fmt: skip


def _roi_scores(maps: dict, family: list[str], others: list[str], inside: np.ndarray, search: np.ndarray,
                rng: np.random.Generator) -> dict[str, list]:  # fmt: skip
    """One subject's scores of one ROI within one search region (see the module docstring)."""
    family_map = np.max([maps[c] for c in family], axis=0)[search]  # where any member concept lives
    truth = inside[search]
    shuffled = []
    for _ in range(SHUFFLED_FAMILIES):  # as many other concepts, drawn at random, in the family's place
        drawn = rng.choice(others, size=min(len(family), len(others)), replace=False)
        shuffled.append(roc_auc(np.max([maps[c] for c in drawn], axis=0)[search], truth))
    return {
        "auc": [roc_auc(family_map, truth)],
        "enrichment": [_enrichment(family_map, truth)],
        "pointing": [bool(truth[np.argmax(maps[c][search])]) for c in family],
        "null_auc": shuffled,
        "random_roi_auc": [roc_auc(family_map, random[search]) for random in _random_rois(inside, search, rng)],
    }


def _summary(scores: dict[str, list]) -> dict:
    random_aucs = np.asarray(scores["random_roi_auc"])
    return {"auc": float(np.mean(scores["auc"])), "enrichment": float(np.mean(scores["enrichment"])),
            "pointing": float(np.mean(scores["pointing"])), "null_auc": float(np.mean(scores["null_auc"])),
            "random_roi_auc": float(random_aucs.mean()), "random_roi_p95": float(np.percentile(random_aucs, 95))}  # fmt: skip


def format_roi(name: str, r: dict) -> str:
    """One line per ROI: its scores over nsdgeneral, then over higher visual cortex."""

    def scores(s: dict) -> str:
        return (f"AUC {s['auc']:.3f} (other concepts {s['null_auc']:.3f}, random ROIs {s['random_roi_auc']:.3f}, 95th "
                f"percentile {s['random_roi_p95']:.3f}), enrichment {s['enrichment']:.1f}×, pointing {s['pointing']:.0%}")  # fmt: skip

    line = f"{name} ({len(r['subjects'])} subjects, {len(r['concepts'])} concepts): {scores(r)}"
    return line + (f"; in higher visual cortex: {scores(r['higher'])}" if r["higher"] else "")


def _enrichment(scores: np.ndarray, inside: np.ndarray) -> float:
    """Share of the top-|ROI| voxels of the map that fall inside the ROI, over the ROI's share of all voxels."""
    k = int(inside.sum())
    top = np.argsort(-scores, kind="stable")[:k]
    return float(inside[top].mean() / inside.mean())


def _random_rois(inside: np.ndarray, mask: np.ndarray, rng: np.random.Generator, n: int = RANDOM_ROIS):
    """`n` compact ROIs as large as `inside`: the mask voxels nearest a random mask voxel, as many as the ROI holds."""
    points = np.argwhere(mask)
    size = int(inside.sum())
    for center in points[rng.choice(len(points), size=n, replace=len(points) < n)]:
        nearest = np.argsort(((points - center) ** 2).sum(axis=1), kind="stable")[:size]
        roi = np.zeros_like(mask)
        roi[tuple(points[nearest].T)] = True
        yield roi
