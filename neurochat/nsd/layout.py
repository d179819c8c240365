"""Where NSD keeps each file, relative to the dataset root (NSD_FORMAT.md).

SimNSD writes these same paths, so the one loader reads both. Subjects are named `subjNN`,
sessions are numbered from 1 (`betas_session01`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

EXPDESIGN = PurePosixPath("nsddata/experiments/nsd/nsd_expdesign.mat")
STIM_INFO = PurePosixPath("nsddata/experiments/nsd/nsd_stim_info_merged.csv")
STIMULI = PurePosixPath("nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")
PPDATA = PurePosixPath("nsddata/ppdata")
BETAS_PPDATA = PurePosixPath("nsddata_betas/ppdata")
# COCO-format captions_*.json and instances_*.json. NSD users supply COCO 2017's (or re-annotations
# such as the paper's BLIP-2 captions and DETR boxes); SimNSD writes its own here.
ANNOTATIONS = PurePosixPath("annotations")
# SimNSD's answer key (not part of NSD): concept maps, scene graphs, transforms to MNI.
SIMNSD = PurePosixPath("simnsd")

BETA_SUFFIXES = {"nifti": ".nii.gz", "hdf5": ".hdf5"}
SUBJECT_PATTERN = re.compile(r"^subj(\d{2})$")
SESSION_PATTERN = re.compile(r"^betas_session(\d{2})\.(nii\.gz|hdf5)$")


def subject_name(number: int) -> str:
    return f"subj{number:02d}"


def responses(subject: str) -> PurePosixPath:
    return PPDATA / subject / "behav" / "responses.tsv"


def brainmask(subject: str) -> PurePosixPath:
    return PPDATA / subject / "func1pt8mm" / "brainmask.nii.gz"


def nsdgeneral(subject: str) -> PurePosixPath:
    return roi_file(subject, "nsdgeneral")


def roi_file(subject: str, name: str) -> PurePosixPath:
    """An ROI volume of the func1pt8mm grid: "nsdgeneral", "floc-faces", "prf-visualrois", ..."""
    return PPDATA / subject / "func1pt8mm" / "roi" / f"{name}.nii.gz"


def roi_label_table(subject: str, name: str) -> PurePosixPath:
    """What each integer of ROI `name` stands for (FreeSurfer colour-table lines "value name")."""
    return PurePosixPath("nsddata") / "freesurfer" / subject / "label" / f"{name}.mgz.ctab"


def betas_dir(subject: str) -> PurePosixPath:
    return BETAS_PPDATA / subject / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"


def betas_file(subject: str, session: int, fmt: str) -> PurePosixPath:
    """`fmt` is "nifti" or "hdf5"."""
    return betas_dir(subject) / f"betas_session{session:02d}{BETA_SUFFIXES[fmt]}"
