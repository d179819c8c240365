"""Evaluations that reproduce the paper's tables on SimNSD (or NSD): `python -m neurochat.evaluate`."""
