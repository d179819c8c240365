# %% [markdown]
# # NeuroChat walkthrough: talking with a brain recording, in code
#
# Everything the explorer app does, through `neurochat`'s public API: pick a subject and a trial of
# the SimNSD phantom, ask the recording to describe what the person saw, reconstruct the picture
# (Eq. 4 with the β knob), find where a concept lives in that brain, and remove it.
#
# Runs on the built-in demo (CPU). Set `NEUROCHAT_WEIGHTS` to another demo bundle folder and
# `NEUROCHAT_NSD_ROOT` to another tree to run it elsewhere (CI uses the micro bundle).
# This file is the source; `walkthrough.ipynb` is generated from it by `python notebooks/sync.py`.

# %%
import os
from pathlib import Path

import numpy as np

from neurochat.explorer import Explorer

weights = os.environ.get("NEUROCHAT_WEIGHTS")  # None: the committed demo in checkpoints/demo
nsd_root = os.environ.get("NEUROCHAT_NSD_ROOT")  # None: the SimNSD demo, generated into the cache once
out = Path(os.environ.get("NEUROCHAT_NOTEBOOK_OUT", "notebook_outputs"))
out.mkdir(exist_ok=True)

explorer = Explorer.load("demo", nsd_root=nsd_root, weights=weights)
print("subjects:", explorer.subjects)

# %% [markdown]
# ## 1. Pick a trial
# The shared test images come first: no model was trained on them. `averaged` uses the mean of the
# image's three repetitions; `single` only the first one (the paper's two protocols).

# %%
subject = explorer.subjects[0]
choice = explorer.trial_choices(subject)[0]
state = explorer.select(subject, choice.nsd_id, protocol="averaged")
stimulus, captions = explorer.stimulus(state)
print(choice.label, "— seen (for reference):", captions[:1], "— truly present:", explorer.true_concepts(state))

# %% [markdown]
# ## 2. Ask the recording
# Answers stream token by token; the conversation is multi-turn (it lives in `state.history`).

# %%
for question in ["Describe the image concisely.", "Describe the following image in detail."]:
    turn = explorer.chat(state, question)
    answer = "".join(turn)
    print(f"Q: {question}\nA: {answer}\n")

# %% [markdown]
# ## 3. Reconstruct (Eq. 4)
# Asking for the Stable Diffusion prompt routes the LLM's answer to the decoder as a_r. β is the
# noise strength: 0 returns the VAE decode of ẑ_v, 1 draws from ẑ_c and the prompt alone.

# %%
turn = explorer.chat(state, "Provide the corresponding Stable Diffusion prompts for the image.")
print("prompt a_r:", "".join(turn), "| action:", turn.action)
pictures = {beta: explorer.reconstruct(state, beta=beta, seed=0) for beta in (0.0, 0.6, 0.93, 1.0)}

from PIL import Image  # noqa: E402

strip = np.concatenate([np.asarray(Image.fromarray(stimulus).resize(pictures[0.0].shape[:2]))] + list(pictures.values()), axis=1)
Image.fromarray(strip).save(out / "reconstructions.png")
print("stimulus, then β = 0, 0.6, 0.93, 1 →", out / "reconstructions.png")

# %% [markdown]
# ## 4. Where does a concept live in this brain?
# The ensemble's encoding map (three patch sizes): the extractors' evidence for the concept over this
# subject's training trials, regressed onto its voxels; in native space and in MNI space for display.
# The paper's GradCAM of this one recording is `explorer.localizer.localize(..., method="gradcam")`.

# %%
concept = explorer.true_concepts(state)[0]
heatmap = explorer.localize(state, concept)
print(f"method: {heatmap.method}")
heatmap.to_nifti().to_filename(out / f"{concept}_native.nii.gz")
if heatmap.to_mni is not None:
    heatmap.to_mni_nifti().to_filename(out / f"{concept}_mni.nii.gz")
top = heatmap.top_voxels(0.1)
print(f"'{concept}': {int(top.sum())} voxels in the top 10% of the heatmap; saved NIfTI files to {out}")

# %% [markdown]
# ## 5. Remove it and look again
# The concept's top voxels are zeroed, the recording is encoded again, and the picture is
# reconstructed with the same seed and β. The original recording is untouched.

# %%
original = explorer.reconstruct(state, beta=0.93, seed=0)
without = explorer.ablate(state, [concept], beta=0.93, seed=0)
Image.fromarray(np.concatenate([original, without], axis=1)).save(out / f"without_{concept.replace(' ', '_')}.png")
print(f"original vs without '{concept}' →", out / f"without_{concept.replace(' ', '_')}.png")
