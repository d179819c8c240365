"""Experiment (issue 8): a copy of the committed demo bundle, ready for `train.unclip` to train a new
decoder on the committed CLIP and VAE — the state the vision stage leaves `unclip/` in, i.e. with
CLIP's own text tower and tokenizer (the committed ones were fine-tuned with the committed decoder).

    python notebooks/experiments/decoder_steps/prepare.py /tmp/dec600
    python -m train.unclip --out /tmp/dec600/unclip --clip /tmp/dec600/clip --steps 600 --threads 1 --no-progress
    python notebooks/experiments/decoder_steps/score.py /tmp/dec600
"""

import shutil
import sys
from pathlib import Path

import torch
from transformers import CLIPModel, CLIPTokenizer

from neurochat.paths import CHECKPOINTS
from neurochat.training.vision import text_encoder_from_clip

out = Path(sys.argv[1])
if out.exists():
    raise SystemExit(f"{out} exists; give a new folder")
shutil.copytree(CHECKPOINTS / "demo", out)
clip = CLIPModel.from_pretrained(out / "clip", dtype=torch.float32, local_files_only=True)
for name in ("text_encoder", "tokenizer"):
    shutil.rmtree(out / "unclip" / name)
text_encoder_from_clip(clip).save_pretrained(out / "unclip" / "text_encoder")
CLIPTokenizer.from_pretrained(out / "clip", local_files_only=True).save_pretrained(out / "unclip" / "tokenizer")
print(f"{out}: the committed bundle with CLIP's own text tower in unclip/; train a decoder into {out / 'unclip'}")
