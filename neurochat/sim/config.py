"""SimNSD sizes: how many subjects, sessions, images and voxels a generated tree has."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from neurochat.errors import ConfigError

# The four NSD subjects the paper uses (Sec. 4.1), and their func1pt8mm grids in NIfTI (X, Y, Z)
# order (NSD_FORMAT.md). SimNSD scales these grids to its coarser voxels, so each simulated subject
# keeps its own shape, as in NSD.
SUBJECTS: tuple[str, ...] = ("subj01", "subj02", "subj05", "subj07")
# NSD's other four subjects: SimNSD can add them to the same world as new subjects (`generate(subjects=...)`),
# each with its own anatomy and its own training pictures, beside the shared test pictures.
NEW_SUBJECTS: tuple[str, ...] = ("subj03", "subj04", "subj06", "subj08")
NSD_GRIDS_XYZ: dict[str, tuple[int, int, int]] = {
    "subj01": (81, 104, 83),
    "subj02": (82, 106, 84),
    "subj03": (81, 106, 82),
    "subj04": (85, 99, 80),
    "subj05": (79, 97, 78),
    "subj06": (85, 113, 83),
    "subj07": (78, 95, 81),
    "subj08": (80, 103, 78),
}
NSD_VOXEL_MM = 1.8
N_NSD_SUBJECTS = 8  # nsd_expdesign.mat has one row per NSD subject, simulated or not
REPETITIONS = 3  # every image is shown three times (NSD design)


def subject_index(subject: str) -> int:
    """A simulated subject's number in the world (its random draws are seeded with it): the four trained
    subjects first, in `SUBJECTS` order, then the new ones."""
    every = SUBJECTS + NEW_SUBJECTS
    if subject not in every:
        raise ConfigError(f"SimNSD simulates {', '.join(every)}; there is no subject {subject!r}")
    return every.index(subject)


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one SimNSD size. Presets are the instances in SIZES."""

    name: str
    voxel_mm: float  # isotropic voxel size; demo ~2x NSD's 1.8 mm
    n_sessions: int  # sessions per subject (NSD: 40)
    trials_per_session: int  # NSD: 750; divisible by REPETITIONS
    n_shared: int  # images every subject sees (NSD: 1000), the test set
    formats: tuple[str, ...] = ("nifti", "hdf5")  # which beta files to write
    image_size: int = 128  # stimuli in nsd_stimuli.hdf5 (NSD: 425)
    # Encoding model (percent signal change). Tuned so that a single trial decodes clearly worse
    # than the average of its three repetitions, as in NSD.
    evc_gain: float = 1.6  # early visual pRF responses to contrast and colour
    concept_gain: float = 2.2  # peak response of a concept's selectivity blobs to a large object
    scene_gain: float = 1.6  # peak response of scene-selective cortex
    noise_smooth: float = 1.2  # std of spatially smooth trial noise
    noise_white: float = 0.6  # std of independent voxel noise
    session_offset: float = 0.5  # std of a smooth per-session offset map
    subject_jitter_mm: float = 3.0  # per-subject shift of concept blobs
    # Higher visual cortex is position-tuned too (large pRFs with a contralateral bias, as in LOC and
    # FFA): 0 makes a concept's response the same wherever the object is, 1 makes it follow the
    # voxel's pRF fully. Without it, what is where can only be read through early visual cortex.
    position_tuning: float = 0.0
    position_prf_size: float = 0.6  # pRF sigma of higher visual voxels, in half-widths of the picture

    @property
    def n_trials(self) -> int:
        return self.n_sessions * self.trials_per_session

    @property
    def images_per_subject(self) -> int:
        return self.n_trials // REPETITIONS

    @property
    def n_own(self) -> int:
        """Training images seen by one subject only."""
        return self.images_per_subject - self.n_shared

    @property
    def n_images(self) -> int:
        """Images with fMRI in the whole tree (the shared set plus every subject's own)."""
        return self.n_shared + len(SUBJECTS) * self.n_own

    def native_grid(self, subject: str) -> tuple[int, int, int]:
        """The subject's native grid: NSD's func1pt8mm grid scaled to this size's voxels."""
        scale = NSD_VOXEL_MM / self.voxel_mm
        return tuple(int(round(n * scale)) for n in NSD_GRIDS_XYZ[subject])

    def validate(self) -> "SimConfig":
        if self.trials_per_session % REPETITIONS:
            raise ConfigError(f"trials_per_session={self.trials_per_session} must be divisible by {REPETITIONS}")
        if not 0 < self.n_shared < self.images_per_subject:
            raise ConfigError(
                f"n_shared={self.n_shared} must be between 1 and images_per_subject-1={self.images_per_subject - 1}"
            )
        unknown = set(self.formats) - {"nifti", "hdf5"}
        if unknown or not self.formats:
            raise ConfigError(f"formats={self.formats}: choose one or both of 'nifti', 'hdf5'")
        return self

    def to_json(self) -> dict:
        return asdict(self)


SIZES: dict[str, SimConfig] = {
    # tests: a few seconds to generate
    "small": SimConfig(name="small", voxel_mm=5.0, n_sessions=2, trials_per_session=60, n_shared=10),
    # the built-in demo: about a minute on 2 cores, well under 1 GB
    # Concept-selective cortex answers twice as strongly as the default: objects are then read linearly
    # from the averaged test recordings first-choice in 93% (NSD-like; 77% at 2.2) and single trials fall
    # behind averaged ones (docs/simnsd.md, "Calibration against NSD's decodability")
    "demo": SimConfig(name="demo", voxel_mm=3.6, n_sessions=2, trials_per_session=750, n_shared=100,
                      concept_gain=4.4),
}
