"""The simulated visual cortex of SimNSD: anatomy, a known encoding model, and noise.

Anatomy comes from the MNI152 2009 template that ships inside nilearn (read with nibabel, so
nothing is downloaded). Each subject has its own native grid and its own affine to MNI (a few
percent of scaling, a few mm of shift, a few degrees of rotation), so one cross-subject decoder
must cope with anatomy, as in the paper (Sec. 3.1).

A voxel's response to a picture is a known function of the picture (SIMNSD.md):
1. early visual cortex (EVC): population receptive fields laid out retinotopically (left
   hemisphere <-> right visual field, dorsal <-> lower field, eccentricity growing anteriorly);
   the response is the pRF-weighted contrast, luminance and colour-opponent energy of the image;
2. higher visual cortex: every concept (object or scene) has a ground-truth selectivity map of a
   few smooth blobs in occipito-temporal cortex, related concepts near each other; the response
   grows with the object's size in the picture;
3. noise: spatially smooth trial noise, independent voxel noise and per-session offsets.
The selectivity maps are the answer key that localization is scored against.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from neurochat.errors import DataError
from neurochat.sim.concepts import CONCEPT_NAMES, OBJECTS, OBJECTS_BY_NAME, SCENES
from neurochat.sim.config import SimConfig, subject_index
from neurochat.sim.scenes import Scene

# MNI152 2009c probability maps shipped in nilearn's wheel (1 mm, uint8 0..255).
_TEMPLATE_FILES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Where the grid of every subject is centred in MNI mm (the middle of the brain's bounding box).
_BRAIN_CENTER_MNI = np.array([0.0, -18.0, 12.0])
# Early visual cortex lies behind this MNI y (mm); higher visual cortex in front of it.
_EVC_MAX_Y = -78.0
# Category "territories" in the right hemisphere (MNI mm); the left hemisphere mirrors x.
# Related concepts share a territory, so their maps lie near each other (SIMNSD.md).
_TERRITORIES = {
    "animal": (44.0, -60.0, -14.0),
    "vehicle": (46.0, -70.0, 4.0),
    "food": (30.0, -50.0, -18.0),
    "furniture": (28.0, -64.0, -4.0),
    "electronic": (50.0, -54.0, 2.0),
    "sports": (40.0, -72.0, -8.0),
    "accessory": (38.0, -64.0, 14.0),
    "indoor": (34.0, -56.0, -6.0),
    "scene": (26.0, -46.0, -10.0),  # parahippocampal, like PPA
}
_SCENE_DORSAL = (30.0, -74.0, 16.0)  # a second scene territory, like TOS
_BLOB_SIGMA_MM = 6.0
_FEATURE_SIZE = 32  # pRFs read the picture at 32x32
_N_FEATURES = 4  # contrast energy, luminance, red-green, blue-yellow


def nilearn_data_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("SimNSD needs nilearn's bundled MNI152 template: `pip install nilearn`")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@dataclass(frozen=True, eq=False)
class MNITemplate:
    """Grey and white matter probabilities of MNI152 at 2 mm."""

    gm: np.ndarray  # (X, Y, Z) float32 in [0, 1]
    wm: np.ndarray
    affine: np.ndarray  # voxel -> MNI mm

    def sample(self, volume: np.ndarray, mni_xyz: np.ndarray) -> np.ndarray:
        """Trilinear samples of `volume` at MNI points (n, 3); 0 outside the template."""
        inverse = np.linalg.inv(self.affine)
        ijk = mni_xyz @ inverse[:3, :3].T + inverse[:3, 3]  # (n, 3)
        return ndimage.map_coordinates(volume, ijk.T, order=1, cval=0.0).astype(np.float32)


@lru_cache(maxsize=1)
def mni_template() -> MNITemplate:
    """The template at 2 mm (block means of the 1 mm maps)."""
    maps = {}
    affine = None
    for key, filename in _TEMPLATE_FILES.items():
        path = nilearn_data_dir() / filename
        if not path.exists():
            raise DataError(f"{path} is missing: reinstall nilearn (SimNSD's anatomy comes from its MNI152 template)")
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32) / 255.0
        x, y, z = (n - n % 2 for n in data.shape)
        # (2X, 2Y, 2Z) -> (X, 2, Y, 2, Z, 2) -> mean over each 2x2x2 block
        data = data[:x, :y, :z].reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5))
        maps[key] = data
        affine = image.affine.copy()
    # a 2 mm voxel's centre is the centre of its 2x2x2 block of 1 mm voxels
    affine_2mm = affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    affine_2mm[:3, 3] = affine[:3, 3] + 0.5 * np.diag(affine)[:3]
    return MNITemplate(gm=maps["gm"], wm=maps["wm"], affine=affine_2mm)


def _cerebellum_below(y: np.ndarray) -> np.ndarray:
    """MNI z under which cortex is cerebellum rather than occipito-temporal cortex, at MNI y."""
    return -22.0 - 0.2 * (y + 50.0)


def visual_cortex_labels(mni_xyz: np.ndarray, gm: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Cortex, nsdgeneral (posterior visual cortex), EVC and higher visual cortex at MNI points."""
    x, y, z = mni_xyz.T
    cortex = brain & (gm > 0.5)
    nsdgeneral = cortex & (y < -45.0) & (z < 25.0) & (z >= _cerebellum_below(y))
    evc = nsdgeneral & (y < _EVC_MAX_Y)
    return {"cortex": cortex, "nsdgeneral": nsdgeneral, "evc": evc, "higher": nsdgeneral & ~evc}


@dataclass(frozen=True)
class ConceptBlobs:
    """The world's ground-truth concept territories: blob centres in MNI mm, per concept."""

    centers: dict[str, np.ndarray]  # concept -> (n_blobs, 3)

    @classmethod
    def sample(cls, seed: int) -> "ConceptBlobs":
        rng = np.random.default_rng([seed, 7001])
        higher = _template_higher_points()
        centers = {}
        for concept in CONCEPT_NAMES:
            territory = "scene" if concept in SCENES else OBJECTS_BY_NAME[concept].supercategory
            anchors = [np.array(_TERRITORIES[territory])]
            if concept in SCENES:
                anchors.append(np.array(_SCENE_DORSAL))
            blobs = []
            for anchor in anchors:
                for hemisphere in (1.0, -1.0):
                    target = anchor * np.array([hemisphere, 1.0, 1.0]) + rng.normal(0.0, 6.0, 3) * [1.0, 1.0, 0.7]
                    # snap to the nearest point of higher visual cortex, so the blob sits in grey matter
                    blobs.append(higher[np.argmin(((higher - target) ** 2).sum(axis=1))])
            centers[concept] = np.stack(blobs)
        return cls(centers)


@lru_cache(maxsize=1)
def _template_higher_points() -> np.ndarray:
    """MNI points (n, 3) of the template's higher visual cortex, where concept blobs may sit."""
    template = mni_template()
    ijk = np.argwhere(np.ones(template.gm.shape, bool))
    xyz = ijk @ template.affine[:3, :3].T + template.affine[:3, 3]
    brain = (template.gm + template.wm).reshape(-1) > 0.5
    labels = visual_cortex_labels(xyz, template.gm.reshape(-1), brain)
    return xyz[labels["higher"] & (template.gm.reshape(-1) > 0.6)]


def subject_transform(config: SimConfig, seed: int, subject: str) -> tuple[np.ndarray, np.ndarray]:
    """The subject's scanner affine (as in its NIfTI headers) and its affine to MNI mm.

    The scanner affine is a plain grid of `voxel_mm` voxels centred on the volume, like NSD's
    func1pt8mm headers. The MNI affine adds the subject's own anatomy: a few percent of scaling,
    a few degrees of rotation and a few mm of shift.
    """
    shape = np.array(config.native_grid(subject), dtype=float)
    center_index = (shape - 1) / 2
    scanner = np.diag([config.voxel_mm] * 3 + [1.0])
    scanner[:3, 3] = -config.voxel_mm * center_index

    rng = np.random.default_rng([seed, 7002, subject_index(subject)])
    scale = 1.0 + rng.uniform(-0.04, 0.04, 3)
    angles = np.deg2rad(rng.uniform(-4.0, 4.0, 3))
    shift = rng.uniform(-3.0, 3.0, 3)
    rotation = _rotation(*angles)
    linear = rotation @ np.diag(scale * config.voxel_mm)
    to_mni = np.eye(4)
    to_mni[:3, :3] = linear
    to_mni[:3, 3] = _BRAIN_CENTER_MNI + shift - linear @ center_index
    return scanner, to_mni


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class SimulatedSubject:
    """One simulated subject: anatomy in its native grid and its encoding model."""

    name: str
    shape: tuple[int, int, int]
    scanner_affine: np.ndarray
    to_mni: np.ndarray
    brain: np.ndarray  # (X, Y, Z) bool
    nsdgeneral: np.ndarray  # (X, Y, Z) int16: 1 inside, 0 other cortex, -1 not cortex (NSD coding)
    visual_index: np.ndarray  # (V,) flat indices of the nsdgeneral voxels, where signal lives
    evc: np.ndarray  # (V,) bool over visual_index
    concept_maps: np.ndarray  # (n_concepts, V) float32 in [0, 1], over visual_index, order CONCEPT_NAMES
    prf_center: np.ndarray  # (V_evc, 2) visual-field position, x right, y up, image half-width = 1
    prf_size: np.ndarray  # (V_evc,)
    prf_weights: np.ndarray  # (V_evc, 4) weights of contrast, luminance, red-green, blue-yellow
    object_prf_center: np.ndarray  # (V, 2) preferred visual-field position of each voxel's object responses

    @classmethod
    def build(cls, config: SimConfig, seed: int, subject: str, blobs: ConceptBlobs) -> "SimulatedSubject":
        template = mni_template()
        shape = config.native_grid(subject)
        scanner, to_mni = subject_transform(config, seed, subject)
        ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)  # (X*Y*Z, 3), C order
        xyz = ijk @ to_mni[:3, :3].T + to_mni[:3, 3]
        gm = template.sample(template.gm, xyz)
        wm = template.sample(template.wm, xyz)
        brain = (gm + wm) > 0.5
        labels = visual_cortex_labels(xyz, gm, brain)
        nsdgeneral = np.full(len(xyz), -1, np.int16)
        nsdgeneral[labels["cortex"]] = 0
        nsdgeneral[labels["nsdgeneral"]] = 1
        visual_index = np.flatnonzero(labels["nsdgeneral"])
        visual_xyz = xyz[visual_index]
        evc = labels["evc"][visual_index]
        higher = labels["higher"][visual_index]

        rng = np.random.default_rng([seed, 7003, subject_index(subject)])
        maps = np.zeros((len(CONCEPT_NAMES), len(visual_index)), np.float32)
        for c, concept in enumerate(CONCEPT_NAMES):
            centers = blobs.centers[concept] + rng.normal(0.0, config.subject_jitter_mm, blobs.centers[concept].shape)
            d2 = ((visual_xyz[None, :, :] - centers[:, None, :]) ** 2).sum(-1)  # (n_blobs, V)
            value = np.exp(-d2 / (2 * _BLOB_SIGMA_MM**2)).max(axis=0)
            maps[c] = np.where(higher & (value > 0.05), value, 0.0)

        prf_center, prf_size = _retinotopy(visual_xyz[evc], rng)
        prf_weights = np.stack(
            [
                1.0 + 0.3 * rng.standard_normal(evc.sum()),  # contrast energy drives every EVC voxel
                0.5 * rng.standard_normal(evc.sum()),
                0.6 * rng.standard_normal(evc.sum()),
                0.6 * rng.standard_normal(evc.sum()),
            ],
            axis=1,
        ).astype(np.float32)
        # a draw of its own, so that the rest of the subject does not depend on it
        position_rng = np.random.default_rng([seed, 7004, subject_index(subject)])
        contralateral = np.where(visual_xyz[:, 0] < 0, 1.0, -1.0)  # the left hemisphere sees the right field
        object_prf_center = np.stack([contralateral * position_rng.uniform(0.1, 0.7, len(visual_xyz)),
                                      position_rng.normal(0.0, 0.35, len(visual_xyz))], axis=1)  # fmt: skip
        return cls(
            name=subject,
            shape=shape,
            scanner_affine=scanner,
            to_mni=to_mni,
            brain=brain.reshape(shape),
            nsdgeneral=nsdgeneral.reshape(shape),
            visual_index=visual_index,
            evc=evc,
            concept_maps=maps,
            prf_center=prf_center.astype(np.float32),
            prf_size=prf_size.astype(np.float32),
            prf_weights=prf_weights,
            object_prf_center=object_prf_center.astype(np.float32),
        )

    def _position_weights(self, obj, config: SimConfig) -> np.ndarray:
        """(V,) how strongly each voxel responds to the object where it is: 1 − t + 2t·pRF overlap (mean ≈ 1)."""
        positions = _object_field_positions(obj)  # (k, 2)
        d2 = ((self.object_prf_center[:, None, :] - positions[None]) ** 2).sum(-1)  # (V, k)
        overlap = np.exp(-d2 / (2 * config.position_prf_size**2)).mean(axis=1)
        return (1 - config.position_tuning) + 2 * config.position_tuning * overlap

    def responses(self, config: SimConfig, features: np.ndarray, scenes: list[Scene]) -> np.ndarray:
        """Noise-free responses (n_images, V) in percent signal change over `visual_index`.

        `features` are `image_features` of the same images, (n, 4, 32, 32).
        """
        n = len(scenes)
        out = np.zeros((n, len(self.visual_index)), np.float32)
        # 1. early visual cortex: pRF-weighted feature energy
        prf = _prf_matrix(self.prf_center, self.prf_size)  # (V_evc, 32*32)
        pooled = np.einsum("vp,nfp->nvf", prf, features.reshape(n, _N_FEATURES, -1))  # (n, V_evc, 4)
        out[:, self.evc] = config.evc_gain * (pooled * self.prf_weights[None]).sum(-1)
        # 2. higher visual cortex: concept maps scaled by how much of the picture each object fills
        concept_row = {name: i for i, name in enumerate(CONCEPT_NAMES)}
        for i, scene in enumerate(scenes):
            for obj in scene.objects:
                gain = np.clip(np.sqrt(obj.area_fraction / 0.12), 0.4, 1.5)
                if config.position_tuning:
                    gain = gain * self._position_weights(obj, config)
                out[i] += config.concept_gain * gain * self.concept_maps[concept_row[obj.name]]
            out[i] += config.scene_gain * self.concept_maps[concept_row[scene.scene]]
        return out


def _object_field_positions(obj) -> np.ndarray:
    """Centres of an object's instances in visual-field coordinates (x right, y up, half-width 1), (k, 2)."""
    from neurochat.sim.scenes import CANVAS

    return np.array([[(x + w / 2) / CANVAS * 2 - 1, 1 - (y + h / 2) / CANVAS * 2] for x, y, w, h in obj.boxes])


def _retinotopy(xyz: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """pRF centres and sizes of EVC voxels from their MNI position (a schematic V1-V3 map)."""
    x, y, z = xyz.T
    eccentricity = np.clip((y + 104.0) / 26.0, 0.03, 1.0) * 1.1  # foveal at the occipital pole
    polar = np.arctan2(z - 3.0, np.abs(x) + 2.0)  # above the calcarine sulcus -> lower field
    field_x = np.where(x < 0, 1.0, -1.0) * eccentricity * np.cos(polar)  # left hemisphere sees the right field
    field_y = -eccentricity * np.sin(polar)
    center = np.stack([field_x, field_y], axis=1) + rng.normal(0.0, 0.05, (len(x), 2))
    size = 0.06 + 0.2 * eccentricity
    return center, size


def _prf_matrix(center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Normalised Gaussian pRF weights over the 32x32 feature grid, (V, 1024)."""
    coords = (np.arange(_FEATURE_SIZE) + 0.5) / _FEATURE_SIZE * 2 - 1
    grid_x = np.tile(coords, _FEATURE_SIZE)  # column -> x right
    grid_y = -np.repeat(coords, _FEATURE_SIZE)  # row -> y up
    d2 = (grid_x[None] - center[:, :1]) ** 2 + (grid_y[None] - center[:, 1:]) ** 2
    weights = np.exp(-d2 / (2 * size[:, None] ** 2))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def image_features(images: np.ndarray) -> np.ndarray:
    """Low-level feature maps the pRFs read: (n, H, W, 3) uint8 -> (n, 4, 32, 32) float32.

    Channels: local contrast energy, luminance, red-green and blue-yellow opponency, each centred
    and scaled to about unit spread over typical SimNSD pictures.
    """
    n, h, w, _ = images.shape
    factor = h // _FEATURE_SIZE
    rgb = images.astype(np.float32) / 255.0
    # (n, H, W, 3) -> (n, 32, f, 32, f, 3) -> mean over each f x f block
    rgb = rgb.reshape(n, _FEATURE_SIZE, factor, _FEATURE_SIZE, factor, 3).mean(axis=(2, 4))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    blurred = ndimage.gaussian_filter(luminance, sigma=(0, 1.0, 1.0))
    contrast = ndimage.gaussian_filter(np.abs(luminance - blurred), sigma=(0, 0.7, 0.7))
    features = np.stack(
        [
            (contrast - 0.02) / 0.02,
            (luminance - 0.55) / 0.2,
            (r - g) / 0.2,
            ((r + g) / 2 - b) / 0.25,
        ],
        axis=1,
    )
    return features.astype(np.float32)


def smooth_noise(rng: np.random.Generator, n: int, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """n fields of spatially smooth Gaussian noise with unit standard deviation, (n, X, Y, Z)."""
    white = rng.standard_normal((n, *shape), dtype=np.float32)
    smooth = ndimage.gaussian_filter(white, sigma=(0, sigma, sigma, sigma), truncate=2.5)
    return smooth / np.float32(smooth.std() + 1e-8)


def object_names() -> list[str]:
    return [concept.name for concept in OBJECTS]
