"""Write a SimNSD tree: NSD's exact file layout, plus the answer key.

    generate(out_dir, size="small", seed=0)

Steps (each subject's betas are simulated and written in a worker process):
1. design: which 73k ids are shared, each subject's own images, the trial order (NSD's design);
2. pictures: scene graphs, rendered stimuli, COCO-format captions and boxes;
3. brains: anatomy, masks and the encoding model of each subject;
4. betas: signal + noise per trial, int16 = 300 x percent signal change, per session in
   `.nii.gz` and/or `.hdf5`;
5. the answer key under `simnsd/`: concept maps in native space, transforms to MNI, scene graphs.

Files are deterministic: the same seed and size give byte-identical files on any machine with the
same library versions (gzip and HDF5 timestamps are pinned).
"""

from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import nibabel as nib
import numpy as np
import scipy.io

from neurochat.floc import write_sim_floc_rois
from neurochat.nsd import layout
from neurochat.sim.brain import ConceptBlobs, SimulatedSubject, image_features, smooth_noise
from neurochat.sim.concepts import CONCEPT_NAMES, OBJECTS, OBJECTS_BY_NAME
from neurochat.sim.config import N_NSD_SUBJECTS, NEW_SUBJECTS, REPETITIONS, SIZES, SUBJECTS, SimConfig, subject_index
from neurochat.sim.render import render_scene
from neurochat.sim.scenes import CANVAS, Scene, sample_scene

BETA_SCALE = 300.0  # NSD stores int16 = 300 x percent signal change
RUN_LENGTHS = (63, 62)  # NSD sessions alternate runs of 63 and 62 trials (12 runs, 750 trials)
SIMNSD_VERSION = 2  # 2: the demo size's concept gain doubled (calibration against NSD)


@dataclass(frozen=True)
class Design:
    """NSD's experimental design for the simulated subjects (nsd_expdesign.mat, 0-based here)."""

    shared_ids: np.ndarray  # (n_shared,) 73k ids every subject sees: the test set
    subject_images: np.ndarray  # (n_subjects, images_per_subject) 73k ids; shared ones first
    master_ordering: np.ndarray  # (n_trials,) index into a subject's image list, same for all subjects
    subjects: tuple[str, ...] = SUBJECTS  # whose rows `subject_images` holds, in order

    @classmethod
    def sample(cls, config: SimConfig, seed: int, new_subjects: Sequence[str] = ()) -> "Design":
        """The trained subjects' design, and a row for each of `new_subjects`: the shared pictures and
        its own fresh ones, numbered after the trained subjects' (so adding one changes nothing else)."""
        rng = np.random.default_rng([seed, 7100])
        ids = rng.permutation(config.n_images)
        shared = ids[: config.n_shared]
        own = ids[config.n_shared :].reshape(len(SUBJECTS), config.n_own)
        subject_images = np.concatenate([np.tile(shared, (len(SUBJECTS), 1)), own], axis=1)
        ordering = np.repeat(np.arange(config.images_per_subject), REPETITIONS)
        master_ordering = rng.permutation(ordering)
        new_rows = [np.concatenate([shared, config.n_images + NEW_SUBJECTS.index(subject) * config.n_own
                                    + np.arange(config.n_own)]) for subject in new_subjects]  # fmt: skip
        if new_rows:
            subject_images = np.concatenate([subject_images, np.stack(new_rows)])
        return cls(shared, subject_images, master_ordering, SUBJECTS + tuple(new_subjects))

    @property
    def n_images(self) -> int:
        """Pictures the tree holds: every 73k id up to the highest any subject sees."""
        return int(self.subject_images.max()) + 1

    def trial_image(self, subject_index: int) -> np.ndarray:
        """The 73k id shown on every trial of a subject (its row in `subjects`), (n_trials,)."""
        return self.subject_images[subject_index, self.master_ordering]


def generate(out_dir: str | Path, size: str | SimConfig = "small", seed: int = 0, workers: int | None = None,
             subjects: Sequence[str] = SUBJECTS) -> Path:  # fmt: skip
    """Write a SimNSD tree of the given size into `out_dir` and return its path.

    `subjects`: whom to simulate; by default the four trained ones. New subjects (`NEW_SUBJECTS`) live
    in the same world (concept territories, pictures, test set) with their own anatomy and their own
    training pictures; a tree of new subjects holds every picture up to theirs.
    """
    config = (SIZES[size] if isinstance(size, str) else size).validate()
    for subject in subjects:
        subject_index(subject)  # an unknown name fails here, before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # 1. design
    design = Design.sample(config, seed, [subject for subject in subjects if subject not in SUBJECTS])
    simulated = [design.subjects.index(subject) for subject in subjects]

    # 2. pictures
    scenes = [sample_scene(seed, image_id) for image_id in range(design.n_images)]
    images = np.stack([render_scene(scene, config.image_size) for scene in scenes])
    _write_stimuli(out, images)
    _write_annotations(out, scenes, config.image_size)
    _write_expdesign(out, config, design, simulated)
    _write_stim_info(out, config, design, simulated)

    # 3-4. brains and betas, one subject per task
    features = image_features(images)
    blobs = ConceptBlobs.sample(seed)
    tasks = [(out, config, seed, index, design, features, scenes, blobs) for index in simulated]
    workers = workers or min(len(tasks), os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            subject_info = list(pool.map(_write_subject, tasks))
    else:
        subject_info = [_write_subject(task) for task in tasks]

    # 5. the answer key
    _write_answer_key(out, config, seed, scenes, dict(zip(subjects, subject_info)), time.perf_counter() - started)
    # 6. functional-localizer ROIs in NSD's format, from the answer key's territories
    write_sim_floc_rois(out)
    return out


# ---------------------------------------------------------------------------------------------
# Pictures and text


def _write_stimuli(out: Path, images: np.ndarray) -> None:
    path = out / layout.STIMULI
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "imgBrick",
            data=images,
            chunks=(1, *images.shape[1:]),
            compression="gzip",
            compression_opts=4,
            track_times=False,
        )


def coco_id(nsd_id: int) -> int:
    """SimNSD's stand-in COCO id of a picture (real NSD maps 73k ids to COCO ids in the stim-info CSV)."""
    return 1_000_000 + int(nsd_id)


def _write_annotations(out: Path, scenes: list[Scene], image_size: int) -> None:
    scale = image_size / CANVAS
    images = [
        {"id": coco_id(s.image_id), "file_name": f"simnsd_{s.image_id:05d}.png", "width": image_size, "height": image_size}
        for s in scenes
    ]
    captions, instances = [], []
    for scene in scenes:
        for caption in scene.captions:
            captions.append({"id": len(captions) + 1, "image_id": coco_id(scene.image_id), "caption": caption})
        for obj in scene.objects:
            for box in obj.boxes:
                bbox = [round(v * scale, 2) for v in box]
                instances.append(
                    {
                        "id": len(instances) + 1,
                        "image_id": coco_id(scene.image_id),
                        "category_id": OBJECTS_BY_NAME[obj.name].coco_id,
                        "bbox": bbox,
                        "area": round(bbox[2] * bbox[3], 2),
                        "iscrowd": 0,
                    }
                )
    categories = [{"id": c.coco_id, "name": c.coco_name, "supercategory": c.supercategory} for c in OBJECTS]
    info = {"description": "SimNSD phantom annotations (COCO 2017 format)", "version": str(SIMNSD_VERSION)}
    folder = out / layout.ANNOTATIONS
    folder.mkdir(parents=True, exist_ok=True)
    _dump_json(folder / "captions_train2017.json", {"info": info, "images": images, "annotations": captions})
    _dump_json(
        folder / "instances_train2017.json",
        {"info": info, "images": images, "annotations": instances, "categories": categories},
    )


# ---------------------------------------------------------------------------------------------
# Experimental design files


def _write_expdesign(out: Path, config: SimConfig, design: Design, simulated: list[int]) -> None:
    subjectim = np.zeros((N_NSD_SUBJECTS, config.images_per_subject))  # rows of unsimulated subjects stay 0
    for index in simulated:
        subjectim[int(design.subjects[index][-2:]) - 1] = design.subject_images[index] + 1
    path = out / layout.EXPDESIGN
    path.parent.mkdir(parents=True, exist_ok=True)
    # MATLAB stores doubles, 1-based, as NSD does
    scipy.io.savemat(
        path,
        {
            "masterordering": (design.master_ordering + 1).astype(float)[None, :],
            "subjectim": subjectim,
            "sharedix": (np.sort(design.shared_ids) + 1).astype(float)[None, :],
        },
    )
    _pin_mat_header(path)


def _pin_mat_header(path: Path) -> None:
    """Replace the creation date in a MAT-file's 116-byte text header, so files are reproducible."""
    text = b"MATLAB 5.0 MAT-file, written by SimNSD (neurochat.sim)".ljust(116, b" ")
    with open(path, "r+b") as f:
        f.write(text)


def _write_stim_info(out: Path, config: SimConfig, design: Design, simulated: list[int]) -> None:
    shared = set(design.shared_ids.tolist())
    seen = np.zeros((N_NSD_SUBJECTS, design.n_images), bool)
    reps = np.zeros((N_NSD_SUBJECTS, design.n_images, REPETITIONS), int)
    for index in simulated:
        row = int(design.subjects[index][-2:]) - 1
        shown = design.trial_image(index)
        for trial, image in enumerate(shown):
            rep = int((reps[row, image] > 0).sum())  # repetitions already shown
            seen[row, image] = True
            reps[row, image, rep] = trial + 1  # 1-based trial number (NSD_FORMAT.md)
    header = ["", "cocoId", "cocoSplit", "cropBox", "loss", "nsdId", "flagged", "BOLD5000", "shared1000"]
    header += [f"subject{k + 1}" for k in range(N_NSD_SUBJECTS)]
    header += [f"subject{k + 1}_rep{r}" for k in range(N_NSD_SUBJECTS) for r in range(REPETITIONS)]
    path = out / layout.STIM_INFO
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for nsd_id in range(design.n_images):
            row = [nsd_id, coco_id(nsd_id), "train2017", "(0, 0, 0, 0)", 0.0, nsd_id, False, False, nsd_id in shared]
            row += [int(seen[k, nsd_id]) for k in range(N_NSD_SUBJECTS)]
            row += [int(reps[k, nsd_id, r]) for k in range(N_NSD_SUBJECTS) for r in range(REPETITIONS)]
            writer.writerow(row)


def _runs(trials_per_session: int) -> np.ndarray:
    """Run number (1-based) of each trial in a session, NSD style: runs of 63 and 62 trials."""
    runs, run, left = [], 1, trials_per_session
    while left > 0:
        length = min(left, RUN_LENGTHS[(run - 1) % 2])
        runs += [run] * length
        left -= length
        run += 1
    return np.array(runs)


def _write_responses(out: Path, config: SimConfig, design: Design, row: int, seed: int) -> None:
    """Behavioural responses: one row per trial, NSD's columns (the continuous recognition task)."""
    rng = np.random.default_rng([seed, 7200, row])
    subject = design.subjects[row]
    shown = design.trial_image(row)
    runs = _runs(config.trials_per_session)
    first_seen: dict[int, int] = {}
    last_seen: dict[int, int] = {}
    path = out / layout.responses(subject)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID", "TIME", "ISOLD", "ISCORRECT", "RT",
               "CHANGEMIND", "MEMORYRECENT", "MEMORYFIRST", "MISSINGDATA"]  # fmt: skip
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for trial, image in enumerate(shown):
            session, within = divmod(trial, config.trials_per_session)
            run = runs[within]
            trial_in_run = within - int(np.searchsorted(runs, run))
            is_old = int(image) in first_seen
            correct = rng.random() < 0.8
            writer.writerow(
                [
                    int(subject[-2:]),
                    session + 1,
                    int(run),
                    trial_in_run + 1,
                    int(image) + 1,
                    int(design.master_ordering[trial]) + 1,
                    f"{738000 + trial * 4.0 / 86400:.6f}",  # a MATLAB datenum, 4 s per trial
                    int(is_old),
                    int(correct),
                    f"{rng.uniform(0.6, 1.4):.3f}",
                    0,
                    trial - last_seen[int(image)] if is_old else "nan",
                    trial - first_seen[int(image)] if is_old else "nan",
                    0,
                ]
            )
            first_seen.setdefault(int(image), trial)
            last_seen[int(image)] = trial


# ---------------------------------------------------------------------------------------------
# Brains and betas


def _write_subject(task) -> dict:
    """Simulate one subject and write its masks, behaviour, betas and concept maps."""
    out, config, seed, index, design, features, scenes, blobs = task
    subject = design.subjects[index]
    brain = SimulatedSubject.build(config, seed, subject, blobs)
    _write_responses(out, config, design, index, seed)

    # masks, in NSD's codes
    _save_nifti(out / layout.brainmask(subject), brain.brain.astype(np.int16), brain.scanner_affine)
    _save_nifti(out / layout.nsdgeneral(subject), brain.nsdgeneral, brain.scanner_affine)

    # noise-free responses to the subject's own images, in the order of its image list
    own_ids = design.subject_images[index]
    signal = brain.responses(config, features[own_ids], [scenes[i] for i in own_ids])  # (images, V)

    rng = np.random.default_rng([seed, 7300, index])
    for session in range(config.n_sessions):
        trials = np.arange(session * config.trials_per_session, (session + 1) * config.trials_per_session)
        n = len(trials)
        betas = session_betas(config, brain, signal[design.master_ordering[trials]], rng)  # (n, X*Y*Z)
        scaled = np.clip(np.round(betas * BETA_SCALE), -32768, 32767).astype(np.int16).reshape(n, *brain.shape)
        if "nifti" in config.formats:
            # nibabel takes (X, Y, Z, trials)
            _save_nifti(
                out / layout.betas_file(subject, session + 1, "nifti"),
                np.moveaxis(scaled, 0, -1),
                brain.scanner_affine,
            )
        if "hdf5" in config.formats:
            _save_betas_hdf5(out / layout.betas_file(subject, session + 1, "hdf5"), scaled)

    # answer key: concept maps back in native space, (X, Y, Z, n_concepts)
    maps = np.zeros((len(CONCEPT_NAMES), int(np.prod(brain.shape))), np.float32)
    maps[:, brain.visual_index] = brain.concept_maps
    key_dir = out / layout.SIMNSD / subject
    _save_nifti(key_dir / "concept_maps.nii.gz", np.moveaxis(maps.reshape(-1, *brain.shape), 0, -1), brain.scanner_affine)
    np.savez_compressed(
        key_dir / "encoding.npz",
        visual_index=brain.visual_index,
        evc=brain.evc,
        prf_center=brain.prf_center,
        prf_size=brain.prf_size,
        prf_weights=brain.prf_weights,
    )
    return {
        "native_grid": list(brain.shape),
        "scanner_affine": brain.scanner_affine.round(6).tolist(),
        "native_to_mni": brain.to_mni.round(6).tolist(),
        "nsdgeneral_voxels": int((brain.nsdgeneral == 1).sum()),
        "evc_voxels": int(brain.evc.sum()),
    }


def session_betas(config: SimConfig, brain: SimulatedSubject, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One session's betas in percent signal change, float32 (trials, X*Y*Z): the trials' noise-free
    responses `signal` (trials, V) plus a smooth session offset, smooth trial noise and voxel noise."""
    n = len(signal)
    brain_mask = brain.brain.reshape(-1)
    offset = smooth_noise(rng, 1, brain.shape, sigma=2.0)[0] * np.float32(config.session_offset)
    noise = smooth_noise(rng, n, brain.shape, sigma=1.0) * np.float32(config.noise_smooth)  # (n, X, Y, Z)
    noise += offset
    betas = noise.reshape(n, -1)  # (n, X*Y*Z) view
    betas[:, brain_mask] += rng.standard_normal((n, int(brain_mask.sum())), dtype=np.float32) * np.float32(config.noise_white)
    betas[:, brain.visual_index] += signal
    betas[:, ~brain_mask] = 0.0  # NSD betas are 0 outside the brain
    return betas


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    nib.save(image, path)


def _save_betas_hdf5(path: Path, betas: np.ndarray) -> None:
    """NSD's HDF5 betas: dataset `betas` shaped (trials, Z, Y, X), the MATLAB order reversed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(betas.transpose(0, 3, 2, 1))  # (n, X, Y, Z) -> (n, Z, Y, X)
    with h5py.File(path, "w") as f:
        # one chunk per trial keeps random access per trial cheap, as in NSD's uncompressed files
        f.create_dataset(
            "betas", data=data, chunks=(1, *data.shape[1:]), compression="gzip", compression_opts=1, track_times=False
        )


# ---------------------------------------------------------------------------------------------
# Answer key


def _write_answer_key(out: Path, config: SimConfig, seed: int, scenes: list[Scene], subjects: dict, seconds: float) -> None:
    key = out / layout.SIMNSD
    key.mkdir(parents=True, exist_ok=True)
    _dump_json(key / "scenes.json", [scene.to_json() for scene in scenes])
    _dump_json(
        key / "simnsd.json",
        {
            "simnsd_version": SIMNSD_VERSION,
            "size": config.name,
            "seed": seed,
            "config": config.to_json(),
            "concepts": list(CONCEPT_NAMES),
            "subjects": subjects,
            "beta_scale": BETA_SCALE,
        },
    )
    (key / "README.md").write_text(_ANSWER_KEY_README)


_ANSWER_KEY_README = """# SimNSD answer key

This folder is not part of NSD: it holds the ground truth of the simulated dataset around it.

- `simnsd.json`: size, seed and parameters; per subject its native grid, scanner affine (as in its
  NIfTI headers), `native_to_mni` (4x4, native voxel index -> MNI152 mm) and nsdgeneral voxel count;
  `concepts`, the order of the concept maps.
- `scenes.json`: the scene graph of every picture, indexed by its 0-based 73k id: background
  context, objects with their boxes (pixels), sizes, positions, and the captions.
- `subjNN/concept_maps.nii.gz`: (X, Y, Z, concepts) ground-truth selectivity of each concept in the
  subject's native space (0..1, non-zero only in higher visual cortex inside nsdgeneral).
- `subjNN/encoding.npz`: the encoding model's parameters over the nsdgeneral voxels (flat C-order
  `visual_index`): early-visual mask `evc`, pRF centres, sizes and feature weights.

Beside nsdgeneral, `nsddata/ppdata/subjNN/func1pt8mm/roi/` holds localizer ROIs in NSD's files and
codes, made from these maps: `floc-bodies` (the animal territory), `floc-places` (the scene territory:
OPA 1, PPA 2) and `prf-visualrois` (early visual cortex: V1v 1, V1d 2); `neurochat/floc.py`.

Regenerate with `python -m neurochat.sim --out DIR --size {small,demo} --seed N`.
"""


def _dump_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))
