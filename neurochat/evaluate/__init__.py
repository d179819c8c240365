"""Evaluations that reproduce the paper's tables on SimNSD (or NSD): `python -m neurochat.evaluate`.

The loaders below are shared by that command and by `python -m train.demo_bundle`'s evaluate stage;
which folders they read is `neurochat.models.bundle`'s business.
"""

from __future__ import annotations

from neurochat.models.bundle import load_main_models  # noqa: F401  (its callers import it from here)


def answer_key_localizer(preset, dataset, vision, method: str = "auto"):
    """(SimNSD's answer key, a ConceptLocalizer over the preset's ensemble and the key's concepts)."""
    from neurochat.encoding import dataset_references
    from neurochat.localize import ConceptLocalizer
    from neurochat.models.bundle import load_ensemble
    from neurochat.sim.truth import AnswerKey

    key = AnswerKey(dataset.root)  # ground truth exists only for SimNSD
    ensemble = load_ensemble(preset)
    localizer = ConceptLocalizer(ensemble, vision, key.concepts, references=dataset_references(dataset, ensemble),
                                 method=method)  # fmt: skip
    return key, localizer
