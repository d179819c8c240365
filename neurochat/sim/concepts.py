"""The SimNSD picture world's vocabulary: it lives in `neurochat.vocabulary`; these names are kept here
so that older imports keep working."""

from neurochat.vocabulary import (  # noqa: F401 (re-exported)
    CONCEPT_NAMES,
    OBJECTS,
    OBJECTS_BY_NAME,
    SCENE_PHRASES,
    SCENES,
    SUPERCATEGORIES,
    ObjectConcept,
    objects_for_scene,
    sprite_filename,
)
