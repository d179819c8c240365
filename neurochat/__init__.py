"""NeuroChat: talk with a brain recording.

An implementation of *Neuro-Vision to Language* (NeurIPS 2024) as software: an NSD loader and
its SimNSD phantom, the 3D patch preprocessor, the ViT3D fMRI feature extractor, the fMRI-LLM,
UnCLIP reconstruction, and concept localization and ablation.
"""

__version__ = "0.1.0"
