"""`NSDDataset`: the Natural Scenes Dataset (or SimNSD) as it lies on disk.

    data = NSDDataset("/data/nsd")                 # or a SimNSD tree
    data.subjects                                  # ['subj01', 'subj02', ...] with betas on disk
    table = data.trials("subj01")                  # trials on disk: 73k id, session, repetition, shared
    volume = data.read_trial("subj01", 123)        # float32 (X, Y, Z), percent signal change
    data.nsdgeneral("subj01")                      # int16 (X, Y, Z): 1 inside, 0 cortex, -1 not cortex
    data.image(table.nsd_id[0])                    # uint8 (H, W, 3) stimulus
    data.captions(table.nsd_id[0])                 # COCO-format captions, if annotations are present

Every volume is in NIfTI axis order (X, Y, Z), whether it came from `.nii.gz` or `.hdf5`.
Sessions are discovered on disk (people often download only some); `max_session=37` reproduces
the classic split that leaves out the sessions NSD withheld for its challenge (NSD_FORMAT.md).
"""

from __future__ import annotations

import csv
import json
from functools import cached_property
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from neurochat.errors import DataError
from neurochat.nsd import layout
from neurochat.nsd.betas import SessionCache, SessionFile, to_percent_signal_change
from neurochat.nsd.design import ExpDesign, TrialTable

FORMATS = ("hdf5", "nifti")


class NSDDataset:
    """Read-only access to an NSD tree.

    Parameters
    ----------
    root : path
        The folder holding `nsddata/`, `nsddata_betas/` and `nsddata_stimuli/`.
    max_session : int, optional
        Ignore sessions after this one (37 for the classic split, 40 for everything released).
    prefer : {"hdf5", "nifti"}
        Which beta format to read when both are on disk. HDF5 reads single trials directly;
        `.nii.gz` sessions are decompressed once and cached.
    zscore : bool
        Z-score each voxel over the trials of its session (as MindEye does; the paper does not say).
    annotations : path, optional
        Folder with COCO-format `captions_*.json` / `instances_*.json`; default `ROOT/annotations`.
    session_cache : int
        How many decompressed `.nii.gz` sessions to keep in memory (NSD's are ~1 GB each).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_session: int | None = None,
        prefer: str = "hdf5",
        zscore: bool = False,
        annotations: str | Path | None = None,
        session_cache: int = 2,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"NSD root {self.root} is not a folder: pass the folder that holds nsddata/ and nsddata_betas/")
        if prefer not in FORMATS:
            raise DataError(f"prefer={prefer!r}: choose 'hdf5' or 'nifti'")
        if max_session is not None and max_session < 1:
            raise DataError(f"max_session={max_session}: sessions are numbered from 1 (NSD has 40)")
        self.max_session = max_session
        self.prefer = prefer
        self.zscore = zscore
        self.annotations_dir = Path(annotations) if annotations else self.root / layout.ANNOTATIONS
        self._cache = SessionCache(session_cache)
        self._session_files: dict[tuple[str, int], SessionFile] = {}
        self._tables: dict[str, TrialTable] = {}
        self._zscore_stats: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def path(self, relative) -> Path:
        return self.root / relative

    # -- subjects and sessions ----------------------------------------------------------------

    @cached_property
    def subjects(self) -> list[str]:
        """Subjects with a beta folder on disk, sorted (`subj01`, ...)."""
        folder = self.path(layout.BETAS_PPDATA)
        if not folder.is_dir():
            raise DataError(
                f"missing {folder}: no betas found. Expected NSD's layout "
                f"{layout.betas_dir('subj01')}/betas_session01.nii.gz (or .hdf5) under {self.root}; "
                "or generate the phantom with `python -m neurochat.sim --out DIR`"
            )
        names = sorted(p.name for p in folder.iterdir() if layout.SUBJECT_PATTERN.match(p.name))
        if not names:
            raise DataError(f"{folder} holds no subjNN folders")
        return names

    def check_subject(self, subject: str) -> str:
        if subject not in self.subjects:
            raise DataError(
                f"unknown subject {subject!r}: {self.root} has betas for {', '.join(self.subjects)} "
                f"(folders under {layout.BETAS_PPDATA})"
            )
        return subject

    def sessions(self, subject: str) -> list[int]:
        """Sessions on disk for `subject` (1-based), up to `max_session`."""
        return sorted(self._session_paths(subject))

    def _session_paths(self, subject: str) -> dict[int, dict[str, Path]]:
        self.check_subject(subject)
        folder = self.path(layout.betas_dir(subject))
        found: dict[int, dict[str, Path]] = {}
        if folder.is_dir():
            for path in folder.iterdir():
                match = layout.SESSION_PATTERN.match(path.name)
                if match:
                    session = int(match.group(1))
                    fmt = "nifti" if match.group(2) == "nii.gz" else "hdf5"
                    if self.max_session is None or session <= self.max_session:
                        found.setdefault(session, {})[fmt] = path
        if not found:
            raise DataError(
                f"no beta sessions for {subject} in {folder}: expected files named betas_session01.nii.gz or "
                "betas_session01.hdf5"
                + (f" up to session {self.max_session}" if self.max_session else "")
            )
        return found

    def session_file(self, subject: str, session: int) -> SessionFile:
        key = (subject, session)
        if key not in self._session_files:
            paths = self._session_paths(subject).get(session)
            if paths is None:
                raise DataError(f"session {session} of {subject} is not on disk (sessions present: {self.sessions(subject)})")
            fmt = self.prefer if self.prefer in paths else next(iter(paths))
            session_file = SessionFile(paths[fmt], fmt)
            expected = self.native_shape(subject)
            if session_file.shape != expected:
                raise DataError(
                    f"{session_file.path} holds volumes of shape {session_file.shape} (X, Y, Z), but {subject}'s "
                    f"masks ({layout.brainmask(subject)}) are {expected}: the file belongs to another subject or "
                    "resolution (NeuroChat reads func1pt8mm)"
                )
            self._session_files[key] = session_file
        return self._session_files[key]

    # -- design ---------------------------------------------------------------------------------

    @cached_property
    def design(self) -> ExpDesign:
        return ExpDesign.load(self.path(layout.EXPDESIGN))

    def trials(self, subject: str) -> TrialTable:
        """The subject's trials on disk, with image, session, repetition and split."""
        if subject not in self._tables:
            sessions = self.sessions(subject)
            trials_per_session = self.session_file(subject, sessions[0]).n_trials
            n_design_sessions = self.design.n_trials // trials_per_session
            for session in sessions:
                n = self.session_file(subject, session).n_trials
                if n != trials_per_session:
                    raise DataError(
                        f"{self.session_file(subject, session).path} has {n} trials, but session {sessions[0]} has "
                        f"{trials_per_session}; NSD sessions all have the same number (750)"
                    )
                if session > n_design_sessions:
                    raise DataError(
                        f"{subject} has a session {session} on disk, but {self.design.path} describes only "
                        f"{n_design_sessions} sessions of {trials_per_session} trials"
                    )
            self._tables[subject] = TrialTable.build(subject, self.design, sessions, trials_per_session)
        return self._tables[subject]

    def _locate(self, subject: str, trial: int) -> tuple[int, int]:
        """(session, position within session) of global trial `trial`, checking it is on disk."""
        table = self.trials(subject)
        n_design = self.design.n_trials
        if not isinstance(trial, (int, np.integer)) or not 0 <= trial < n_design:
            raise DataError(
                f"trial {trial} is out of range for {subject}: trials are numbered 0..{n_design - 1} over all "
                f"sessions ({len(table)} of them on disk, sessions {_ranges(self.sessions(subject))})"
            )
        session, within = divmod(int(trial), table.trials_per_session)
        if session + 1 not in self.sessions(subject):
            raise DataError(
                f"trial {trial} of {subject} belongs to session {session + 1}, which is not on disk "
                f"(sessions present: {_ranges(self.sessions(subject))})"
            )
        return session + 1, within

    # -- betas ----------------------------------------------------------------------------------

    def read_trial(self, subject: str, trial: int) -> np.ndarray:
        """One trial's betas, float32 (X, Y, Z) in percent signal change (z-scored if asked)."""
        return self.read_trials(subject, [trial])[0]

    def read_trials(self, subject: str, trials, voxels: np.ndarray | None = None) -> np.ndarray:
        """Several trials, float32 (n, X, Y, Z); or (n, V) at flat C-order voxel indices `voxels`.

        Trials are grouped by session, so each `.nii.gz` session is decompressed at most once.
        """
        trials = np.asarray(trials).reshape(-1)
        shape = self.native_shape(subject)
        located = [self._locate(subject, int(t)) for t in trials]
        out_shape = (len(trials), len(voxels)) if voxels is not None else (len(trials), *shape)
        out = np.empty(out_shape, np.float32)
        sessions = np.array([s for s, _ in located])
        within = np.array([w for _, w in located])
        for session in np.unique(sessions):
            rows = np.flatnonzero(sessions == session)
            session_file = self.session_file(subject, int(session))
            if session_file.format == "hdf5":
                stored = session_file.read_trials(within[rows])
            else:
                stored = self._cache.get(session_file)[within[rows]]
            values = to_percent_signal_change(stored, session_file.path, trials[rows])  # (r, X, Y, Z)
            if self.zscore:
                mean, std = self._session_stats(subject, int(session))
                values = (values - mean) / std
            values = values.reshape(len(rows), -1)
            out[rows] = values[:, voxels] if voxels is not None else values.reshape(len(rows), *shape)
        return out

    def read_session(self, subject: str, session: int, voxels: np.ndarray | None = None) -> np.ndarray:
        """All trials of one session, float32 (trials, V) at `voxels` or (trials, X, Y, Z)."""
        n = self.session_file(subject, session).n_trials
        first = (session - 1) * n
        return self.read_trials(subject, np.arange(first, first + n), voxels=voxels)

    def _session_stats(self, subject: str, session: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-voxel mean and std over a session's trials, for z-scoring (computed once)."""
        key = (subject, session)
        if key not in self._zscore_stats:
            session_file = self.session_file(subject, session)
            stored = session_file.read_all() if session_file.format == "hdf5" else self._cache.get(session_file)
            values = to_percent_signal_change(stored, session_file.path, np.arange(len(stored)))
            mean = values.mean(axis=0)
            std = values.std(axis=0)
            std[std == 0] = 1.0  # voxels outside the brain are constant 0: leave them at 0
            self._zscore_stats[key] = (mean, std)
        return self._zscore_stats[key]

    # -- masks and geometry ----------------------------------------------------------------------

    def _load_volume(self, relative, what: str) -> nib.Nifti1Image:
        path = self.path(relative)
        if not path.exists():
            raise DataError(f"missing {path}: NSD's {what} is needed; it is part of nsddata (func1pt8mm)")
        try:
            image = nib.load(path)
            data = np.asanyarray(image.dataobj)
        except Exception as error:
            raise DataError(f"{path} is damaged or truncated ({error}); download it again") from error
        if data.ndim != 3:
            raise DataError(f"{path} has shape {data.shape}; NSD's {what} is a 3-D (X, Y, Z) volume")
        return nib.Nifti1Image(data, image.affine, image.header)

    def brainmask(self, subject: str) -> np.ndarray:
        """bool (X, Y, Z): inside the brain."""
        self.check_subject(subject)
        return np.asarray(self._load_volume(layout.brainmask(subject), "brain mask").dataobj) > 0

    def nsdgeneral(self, subject: str) -> np.ndarray:
        """int16 (X, Y, Z): 1 inside nsdgeneral, 0 other cortex, -1 not cortex. Use `> 0` for the ROI."""
        self.check_subject(subject)
        image = self._load_volume(layout.nsdgeneral(subject), "nsdgeneral ROI")
        return np.round(np.asarray(image.dataobj)).astype(np.int16)

    def native_shape(self, subject: str) -> tuple[int, int, int]:
        """The subject's func1pt8mm grid, (X, Y, Z), read from its brain mask header."""
        self.check_subject(subject)
        path = self.path(layout.brainmask(subject))
        if not path.exists():
            raise DataError(f"missing {path}: NSD's brain mask gives {subject}'s grid; it is part of nsddata (func1pt8mm)")
        shape = nib.load(path).shape
        if len(shape) != 3:
            raise DataError(f"{path} has shape {shape}; a brain mask is a 3-D (X, Y, Z) volume")
        return tuple(int(n) for n in shape)

    def affine(self, subject: str) -> np.ndarray:
        """The subject's voxel -> scanner mm affine (from its brain mask)."""
        self.check_subject(subject)
        return nib.load(self.path(layout.brainmask(subject))).affine

    # -- stimuli and text -------------------------------------------------------------------------

    @cached_property
    def _stimuli(self) -> h5py.Dataset:
        path = self.path(layout.STIMULI)
        if not path.exists():
            raise DataError(f"missing {path}: NSD's stimuli (nsd_stimuli.hdf5, dataset imgBrick) are needed to show images")
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise DataError(f"{path} is not a readable HDF5 file ({error}); download it again") from error
        if "imgBrick" not in handle:
            raise DataError(f"{path} has no dataset 'imgBrick' (found {list(handle)})")
        brick = handle["imgBrick"]
        if brick.ndim != 4 or brick.shape[-1] != 3:
            raise DataError(f"{path}: imgBrick has shape {brick.shape}, expected (images, height, width, 3)")
        return brick

    @property
    def n_images(self) -> int:
        return int(self._stimuli.shape[0])

    def image(self, nsd_id: int) -> np.ndarray:
        """The stimulus with 0-based 73k id `nsd_id`, uint8 (H, W, 3)."""
        return self.images([nsd_id])[0]

    def images(self, nsd_ids) -> np.ndarray:
        """Stimuli, uint8 (n, H, W, 3), in the order given."""
        ids = np.asarray(nsd_ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_images):
            raise DataError(f"73k id {ids.max() if ids.max() >= self.n_images else ids.min()} is out of range: "
                            f"nsd_stimuli.hdf5 holds ids 0..{self.n_images - 1}")
        unique, inverse = np.unique(ids, return_inverse=True)
        return self._stimuli[unique.tolist()][inverse]

    @cached_property
    def coco_ids(self) -> dict[int, int]:
        """0-based 73k id -> COCO image id, from nsd_stim_info_merged.csv."""
        path = self.path(layout.STIM_INFO)
        if not path.exists():
            raise DataError(f"missing {path}: it maps NSD images to COCO ids, needed for captions and boxes")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"cocoId", "nsdId"} <= set(reader.fieldnames or ()):
                raise DataError(f"{path} lacks the columns cocoId and nsdId (found {reader.fieldnames})")
            return {int(row["nsdId"]): int(row["cocoId"]) for row in reader}

    @cached_property
    def _annotations(self) -> tuple[dict[int, list[str]], dict[int, list[dict]]]:
        """COCO image id -> captions, and -> boxes [{name, bbox}], from every COCO-format file found."""
        folder = self.annotations_dir
        captions: dict[int, list[str]] = {}
        boxes: dict[int, list[dict]] = {}
        if not folder.is_dir():
            return captions, boxes
        for path in sorted(folder.glob("captions_*.json")):
            for ann in _read_json(path).get("annotations", []):
                captions.setdefault(int(ann["image_id"]), []).append(str(ann["caption"]).strip())
        for path in sorted(folder.glob("instances_*.json")):
            data = _read_json(path)
            names = {int(c["id"]): c["name"] for c in data.get("categories", [])}
            for ann in data.get("annotations", []):
                boxes.setdefault(int(ann["image_id"]), []).append(
                    {"name": names.get(int(ann["category_id"]), str(ann["category_id"])), "bbox": list(ann["bbox"])}
                )
        return captions, boxes

    def has_annotations(self) -> bool:
        return bool(self._annotations[0])

    def captions(self, nsd_id: int) -> list[str]:
        """Captions of an image (may be empty when the annotations do not cover it)."""
        return list(self._annotations[0].get(self.coco_ids.get(int(nsd_id), -1), []))

    def boxes(self, nsd_id: int) -> list[dict]:
        """Object boxes of an image: [{"name": COCO category, "bbox": [x, y, w, h]}]."""
        return list(self._annotations[1].get(self.coco_ids.get(int(nsd_id), -1), []))

    # -- summary ----------------------------------------------------------------------------------

    def summary(self) -> dict:
        """What is on disk: subjects, sessions, trials, grids, nsdgeneral sizes and the split."""
        subjects = []
        for subject in self.subjects:
            table = self.trials(subject)
            formats = sorted({fmt for paths in self._session_paths(subject).values() for fmt in paths})
            subjects.append(
                {
                    "name": subject,
                    "grid": list(self.native_shape(subject)),
                    "sessions": self.sessions(subject),
                    "n_trials": len(table),
                    "trials_per_session": table.trials_per_session,
                    "nsdgeneral_voxels": int((self.nsdgeneral(subject) > 0).sum()),
                    "n_train_images": int(len(table.train_images)),
                    "n_test_images": int(len(table.test_images)),
                    "formats": formats,
                }
            )
        stimuli = self.path(layout.STIMULI)
        return {
            "root": str(self.root),
            "max_session": self.max_session,
            "subjects": subjects,
            "n_shared_images": int(len(self.design.shared_ids)),
            "design_trials": self.design.n_trials,
            "stimuli": {"n_images": self.n_images, "shape": list(self._stimuli.shape[1:])} if stimuli.exists() else None,
            "annotations": str(self.annotations_dir) if self.has_annotations() else None,
        }


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is not valid JSON ({error})") from error


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(f"{start}" if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)
