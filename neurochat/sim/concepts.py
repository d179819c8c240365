"""The SimNSD picture world's vocabulary: COCO object categories drawn as emoji, and scene contexts.

Each object concept is a COCO 2017 category (real COCO ids, so the instances JSON looks like
COCO's), drawn from one Noto Color Emoji sprite, and allowed in the scene contexts where it is
plausible (a cow on grass, a boat by the sea, a laptop in a room). Scenes are concepts too: the
simulated brain has scene-selective cortex (like PPA), and localization can ask for "beach".
"""

from __future__ import annotations

from dataclasses import dataclass

SCENES: tuple[str, ...] = ("grass", "sky", "beach", "street", "room", "snow")

# How captions place objects in each scene ("a cat on the grass").
SCENE_PHRASES: dict[str, tuple[str, ...]] = {
    "grass": ("on the grass", "in a grassy field", "in a green meadow"),
    "sky": ("in the sky", "in a blue sky", "high up in the sky"),
    "beach": ("on the beach", "by the sea", "on a sandy beach"),
    "street": ("on the street", "on a city street", "on the road"),
    "room": ("in a room", "indoors", "inside a room"),
    "snow": ("in the snow", "on a snowy field", "in a snowy landscape"),
}


@dataclass(frozen=True)
class ObjectConcept:
    """One object category of the picture world."""

    name: str  # what captions and localization requests call it ("ball")
    coco_name: str  # the COCO 2017 category name ("sports ball")
    coco_id: int  # the COCO 2017 category id
    supercategory: str  # COCO-like family; related concepts share cortex in the simulated brain
    emoji: str  # the Noto Color Emoji sequence its sprite is rendered from
    scenes: tuple[str, ...]  # the scene contexts it may appear in
    plural: str = ""  # irregular plural; default adds "s"
    article: str = "a"

    @property
    def plural_name(self) -> str:
        return self.plural or f"{self.name}s"


def _obj(name, coco_id, supercategory, emoji, scenes, *, coco_name=None, plural="", article="a"):
    return ObjectConcept(
        name=name,
        coco_name=coco_name or name,
        coco_id=coco_id,
        supercategory=supercategory,
        emoji=emoji,
        scenes=tuple(scenes.split()),
        plural=plural,
        article=article,
    )


OBJECTS: tuple[ObjectConcept, ...] = (
    # animals
    _obj("bird", 16, "animal", "\U0001F426", "sky grass beach snow"),
    _obj("cat", 17, "animal", "\U0001F408", "room grass"),
    _obj("dog", 18, "animal", "\U0001F415", "grass beach street room snow"),
    _obj("horse", 19, "animal", "\U0001F40E", "grass beach snow"),
    _obj("sheep", 20, "animal", "\U0001F411", "grass snow", plural="sheep"),
    _obj("cow", 21, "animal", "\U0001F404", "grass"),
    _obj("elephant", 22, "animal", "\U0001F418", "grass beach", article="an"),
    _obj("bear", 23, "animal", "\U0001F43B", "grass snow"),
    _obj("zebra", 24, "animal", "\U0001F993", "grass"),
    _obj("giraffe", 25, "animal", "\U0001F992", "grass"),
    # vehicles
    _obj("bicycle", 2, "vehicle", "\U0001F6B2", "street"),
    _obj("car", 3, "vehicle", "\U0001F697", "street snow"),
    _obj("motorcycle", 4, "vehicle", "\U0001F3CD\ufe0f", "street"),
    _obj("airplane", 5, "vehicle", "\u2708\ufe0f", "sky", article="an"),
    _obj("bus", 6, "vehicle", "\U0001F68C", "street", plural="buses"),
    _obj("train", 7, "vehicle", "\U0001F686", "street snow"),
    _obj("truck", 8, "vehicle", "\U0001F69A", "street"),
    _obj("boat", 9, "vehicle", "\u26F5", "beach"),
    # food
    _obj("banana", 52, "food", "\U0001F34C", "room"),
    _obj("apple", 53, "food", "\U0001F34E", "room grass", article="an"),
    _obj("sandwich", 54, "food", "\U0001F96A", "room beach", plural="sandwiches"),
    _obj("orange", 55, "food", "\U0001F34A", "room", article="an"),
    _obj("broccoli", 56, "food", "\U0001F966", "room", plural="broccoli"),
    _obj("carrot", 57, "food", "\U0001F955", "room"),
    _obj("hot dog", 58, "food", "\U0001F32D", "street room"),
    _obj("pizza", 59, "food", "\U0001F355", "room"),
    _obj("donut", 60, "food", "\U0001F369", "room"),
    _obj("cake", 61, "food", "\U0001F370", "room"),
    # furniture
    _obj("chair", 62, "furniture", "\U0001FA91", "room"),
    _obj("couch", 63, "furniture", "\U0001F6CB\ufe0f", "room", plural="couches"),
    _obj("potted plant", 64, "furniture", "\U0001FAB4", "room"),
    _obj("bed", 65, "furniture", "\U0001F6CF\ufe0f", "room"),
    _obj("toilet", 70, "furniture", "\U0001F6BD", "room"),
    # electronics
    _obj("tv", 72, "electronic", "\U0001F4FA", "room"),
    _obj("laptop", 73, "electronic", "\U0001F4BB", "room"),
    _obj("cell phone", 77, "electronic", "\U0001F4F1", "room street"),
    # sports and outdoor things
    _obj("umbrella", 28, "accessory", "\u2602\ufe0f", "beach street", article="an"),
    _obj("ball", 37, "sports", "\u26BD", "grass beach street", coco_name="sports ball"),
    _obj("kite", 38, "sports", "\U0001FA81", "sky beach"),
    # indoor things
    _obj("book", 84, "indoor", "\U0001F4D5", "room"),
    _obj("clock", 85, "indoor", "\u23F0", "room"),
    _obj("vase", 86, "indoor", "\U0001F3FA", "room"),
    _obj("teddy bear", 88, "indoor", "\U0001F9F8", "room"),
)

OBJECTS_BY_NAME: dict[str, ObjectConcept] = {concept.name: concept for concept in OBJECTS}

# Every concept the simulated brain has a selectivity map for: objects, then scenes.
CONCEPT_NAMES: tuple[str, ...] = tuple(concept.name for concept in OBJECTS) + SCENES

SUPERCATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(concept.supercategory for concept in OBJECTS))


def objects_for_scene(scene: str) -> tuple[ObjectConcept, ...]:
    """The object concepts that may appear in `scene`."""
    return tuple(concept for concept in OBJECTS if scene in concept.scenes)


def sprite_filename(concept: ObjectConcept) -> str:
    """The PNG file name of a concept's sprite under `assets/emoji/`."""
    return concept.name.replace(" ", "_") + ".png"
