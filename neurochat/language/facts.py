"""Facts about one picture that every answer of the language extension is built from.

The paper had GPT-3.5 write dialogues from captions and boxes (App. A.2). We have no LLM, so the
answers are written from templates over facts that are true to the picture:

- from a SimNSD scene graph (`simnsd/scenes.json`): exact objects, counts, sizes, positions and
  the scene context;
- from COCO-format annotations (real NSD, or any tree): category names and pixel boxes, turned
  into the same facts relative to the stimulus size, and a scene context read from the captions
  when they agree on one.

Both paths use the same thresholds as SimNSD's scene graph (`neurochat.sim.scenes`), so on a SimNSD
tree they give the same facts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from neurochat.errors import DataError
from neurochat.nsd import NSDDataset, layout
from neurochat.sim.scenes import CANVAS, Scene
from neurochat.vocabulary import OBJECTS, OBJECTS_BY_NAME, SCENES

SOURCES = ("auto", "simnsd", "coco")
SCENES_JSON = layout.SIMNSD / "scenes.json"

# Position bins of an object's box centre in [0, 1] image coordinates, as SimNSD's SceneObject.
LEFT_OF, RIGHT_OF = 0.4, 0.6  # x < 0.4: left, x > 0.6: right, else center
TOP_OF, BOTTOM_OF = 0.4, 0.65  # y < 0.4: top, y > 0.65: bottom, else middle
# Size words from the box side as a fraction of the picture side; they separate SimNSD's size
# ranges (small 0.20-0.28, medium 0.30-0.40, large 0.44-0.56 in neurochat.sim.scenes.SIZE_RANGES).
SMALL_BELOW, LARGE_FROM = 0.29, 0.42

# COCO names that SimNSD (and people) say more simply; SimNSD's concepts use the short name.
DISPLAY_NAMES: dict[str, str] = {c.coco_name: c.name for c in OBJECTS if c.coco_name != c.name}

# COCO 2017's supercategory of each of its 80 categories (from its instances JSON), for names that
# SimNSD's vocabulary does not cover. Reasoning templates are keyed by these families.
COCO_SUPERCATEGORIES: dict[str, str] = {
    **{n: "person" for n in ("person",)},
    **{n: "vehicle" for n in ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat")},
    **{n: "outdoor" for n in ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench")},
    **{n: "animal" for n in ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")},
    **{n: "accessory" for n in ("backpack", "umbrella", "handbag", "tie", "suitcase")},
    **{n: "sports" for n in ("frisbee", "skis", "snowboard", "sports ball", "ball", "kite", "baseball bat",
                             "baseball glove", "skateboard", "surfboard", "tennis racket")},
    **{n: "kitchen" for n in ("bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl")},
    **{n: "food" for n in ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
                           "donut", "cake")},
    **{n: "furniture" for n in ("chair", "couch", "potted plant", "bed", "dining table", "toilet")},
    **{n: "electronic" for n in ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone")},
    **{n: "appliance" for n in ("microwave", "oven", "toaster", "sink", "refrigerator")},
    **{n: "indoor" for n in ("book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")},
}  # fmt: skip

# Words in captions that name a scene context (SimNSD's SCENES). COCO has no scene labels, so the
# COCO path takes the context the captions agree on (paper Fig. 9: NSD's captions can mismatch the
# cropped picture, so a single caption is not trusted).
SETTING_WORDS: dict[str, re.Pattern] = {
    "grass": re.compile(r"\b(grass|grassy|meadow|pasture|lawn)\b"),
    "sky": re.compile(r"\bsky\b"),
    "beach": re.compile(r"\b(beach|sea|ocean|shore|sand|sandy)\b"),
    "street": re.compile(r"\b(street|streets|road|city|traffic|sidewalk|intersection|highway)\b"),
    "room": re.compile(r"\b(room|indoors|kitchen|bedroom|bathroom)\b"),
    "snow": re.compile(r"\b(snow|snowy|ski|skiing|skier)\b"),
}
assert set(SETTING_WORDS) == set(SCENES), "every SimNSD scene context needs caption words"


@dataclass(frozen=True)
class ObjectFacts:
    """One object category in a picture, with all its instances."""

    name: str  # the concept name ("cat", "teddy bear")
    count: int  # instances
    size: str  # "small", "medium" or "large", from the instances' mean box side
    horizontal: str  # "left", "center" or "right" of the instances' mean box centre
    vertical: str  # "top", "middle" or "bottom"
    area_fraction: float  # total box area of the instances / picture area
    supercategory: str  # COCO family ("animal", "vehicle", ...)
    instance_horizontals: tuple[str, ...]  # left/center/right of each instance, left to right
    boxes: tuple[tuple[float, float, float, float], ...]  # [x0, y0, x1, y1] in [0, 1] (LLaVA's box format)


@dataclass(frozen=True)
class ImageFacts:
    """What is true of one picture: its captions, its objects and (if known) its scene context."""

    nsd_id: int
    captions: tuple[str, ...]
    objects: tuple[ObjectFacts, ...]  # largest first
    setting: str | None  # one of SimNSD's scene contexts (grass, sky, beach, street, room, snow), or None
    source: str  # "simnsd" (scene graph) or "coco" (annotations)

    @property
    def concepts(self) -> list[str]:
        """Every concept present, for localization: the objects, then the scene context."""
        return [obj.name for obj in self.objects] + ([self.setting] if self.setting else [])

    @property
    def names(self) -> set[str]:
        return {obj.name for obj in self.objects}

    def to_json(self) -> dict:
        return asdict(self)


def supercategory_of(name: str) -> str:
    if name in OBJECTS_BY_NAME:
        return OBJECTS_BY_NAME[name].supercategory
    return COCO_SUPERCATEGORIES.get(name, "object")


def _bins(x: float, y: float) -> tuple[str, str]:
    horizontal = "left" if x < LEFT_OF else "right" if x > RIGHT_OF else "center"
    vertical = "top" if y < TOP_OF else "bottom" if y > BOTTOM_OF else "middle"
    return horizontal, vertical


def _size_word(side_fraction: float) -> str:
    return "small" if side_fraction < SMALL_BELOW else "large" if side_fraction >= LARGE_FROM else "medium"


def _object_facts(name: str, boxes: list[tuple[float, float, float, float]], size: str | None = None) -> ObjectFacts:
    """Facts of one category from its boxes, [x0, y0, x1, y1] in [0, 1]; `size` overrides the size word."""
    boxes = sorted(boxes)  # left to right, so instance order does not depend on the annotation order
    centers = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes]
    areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes]
    horizontal, vertical = _bins(sum(c[0] for c in centers) / len(centers), sum(c[1] for c in centers) / len(centers))
    return ObjectFacts(
        name=name,
        count=len(boxes),
        size=size or _size_word(sum(math.sqrt(a) for a in areas) / len(areas)),
        horizontal=horizontal,
        vertical=vertical,
        area_fraction=min(1.0, float(sum(areas))),  # overlapping boxes (crowds in COCO) can sum past the picture
        supercategory=supercategory_of(name),
        instance_horizontals=tuple(_bins(x, y)[0] for x, y in centers),
        boxes=tuple(tuple(round(v, 4) for v in box) for box in boxes),
    )


def _largest_first(objects: list[ObjectFacts]) -> tuple[ObjectFacts, ...]:
    return tuple(sorted(objects, key=lambda o: (-o.area_fraction, o.name)))


# ---------------------------------------------------------------------------------------------
# SimNSD scene graphs


def facts_from_scene(scene: Scene) -> ImageFacts:
    """Facts of a SimNSD picture, read off its scene graph (the answer key)."""
    objects = []
    for obj in scene.objects:
        boxes = [(x / CANVAS, y / CANVAS, (x + w) / CANVAS, (y + h) / CANVAS) for x, y, w, h in obj.boxes]
        facts = _object_facts(obj.name, boxes, size=obj.size)
        # the scene graph's own position words are the ground truth
        objects.append(ObjectFacts(**{**asdict(facts), "horizontal": obj.horizontal, "vertical": obj.vertical}))
    return ImageFacts(scene.image_id, tuple(scene.captions), _largest_first(objects), scene.scene, "simnsd")


def read_scene_graphs(path: Path) -> dict[int, Scene]:
    """SimNSD's `simnsd/scenes.json`: 73k id -> scene graph."""
    try:
        entries = json.loads(Path(path).read_text())
        return {int(entry["image_id"]): Scene.from_json(entry) for entry in entries}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a readable SimNSD scenes.json ({error}); regenerate the tree") from error


# ---------------------------------------------------------------------------------------------
# COCO-format annotations


def facts_from_coco(
    nsd_id: int, captions: list[str], boxes: list[dict], image_size: tuple[int, int]
) -> tuple[ImageFacts | None, str | None]:
    """Facts from COCO-format captions and boxes; (None, reason) when the annotations are missing.

    `boxes` are NSDDataset.boxes items, {"name", "bbox": [x, y, w, h] in pixels}; `image_size` is
    (height, width) of the stimulus the boxes refer to. Boxes are clipped to the picture; a box
    wholly outside it (NSD crops COCO images) is dropped.
    """
    captions = [c.strip() for c in captions if c and c.strip()]
    if not captions and not boxes:
        return None, "no captions and no boxes"
    if not captions:
        return None, "no captions"
    if not boxes:
        return None, "no boxes"
    height, width = image_size
    by_name: dict[str, list[tuple[float, float, float, float]]] = {}
    for box in boxes:
        x, y, w, h = (float(v) for v in box["bbox"])
        x0, y0 = max(0.0, x / width), max(0.0, y / height)
        x1, y1 = min(1.0, (x + w) / width), min(1.0, (y + h) / height)
        if x1 <= x0 or y1 <= y0:
            continue
        name = str(box["name"]).strip().lower()
        by_name.setdefault(DISPLAY_NAMES.get(name, name), []).append((x0, y0, x1, y1))
    if not by_name:
        return None, "no boxes inside the picture"
    objects = [_object_facts(name, name_boxes) for name, name_boxes in by_name.items()]
    return ImageFacts(int(nsd_id), tuple(captions), _largest_first(objects), setting_from_captions(captions), "coco"), None


def setting_from_captions(captions: Iterable[str]) -> str | None:
    """The scene context most captions mention, if at least two (or all, when fewer) agree and it is unique."""
    captions = list(captions)
    votes = {scene: sum(bool(words.search(c.lower())) for c in captions) for scene, words in SETTING_WORDS.items()}
    ranked = sorted(votes.items(), key=lambda kv: -kv[1])
    (best, n_best), (_, n_second) = ranked[0], ranked[1]
    if n_best >= min(2, len(captions)) and n_best > n_second:
        return best
    return None


# ---------------------------------------------------------------------------------------------
# Loading facts for a dataset


def resolve_source(dataset: NSDDataset, source: str = "auto") -> str:
    """'simnsd' when the tree has SimNSD's scene graphs (and `source` allows it), else 'coco'."""
    if source not in SOURCES:
        raise DataError(f"source={source!r}: choose one of {', '.join(SOURCES)}")
    has_scenes = (dataset.root / SCENES_JSON).is_file()
    if source == "simnsd" and not has_scenes:
        raise DataError(f"missing {dataset.root / SCENES_JSON}: source='simnsd' needs a SimNSD tree's scene graphs")
    if source == "auto":
        return "simnsd" if has_scenes else "coco"
    return source


def load_facts(
    dataset: NSDDataset, nsd_ids: Iterable[int], *, source: str = "auto", image_size: tuple[int, int] | None = None
) -> tuple[dict[int, ImageFacts], dict[int, str], list[str]]:
    """Facts of each image, the images skipped (73k id -> reason), and the vocabulary.

    The vocabulary is every object concept the source knows (SimNSD's 43, or every category named in
    the annotations): dialogues ask about absent ones to teach the model to say no.
    `image_size` (height, width) is what COCO boxes are measured in; default: the stimuli's size.
    """
    nsd_ids = sorted({int(i) for i in nsd_ids})
    source = resolve_source(dataset, source)
    facts: dict[int, ImageFacts] = {}
    skipped: dict[int, str] = {}
    if source == "simnsd":
        scenes = read_scene_graphs(dataset.root / SCENES_JSON)
        for nsd_id in nsd_ids:
            if nsd_id in scenes:
                facts[nsd_id] = facts_from_scene(scenes[nsd_id])
            else:
                skipped[nsd_id] = "not in simnsd/scenes.json"
        return facts, skipped, sorted(c.name for c in OBJECTS)

    if not dataset.has_annotations():
        raise DataError(
            f"no COCO-format captions_*.json in {dataset.annotations_dir}: the language extension needs captions "
            "and boxes (COCO 2017's captions_*.json and instances_*.json, or re-annotations in that format); "
            "pass their folder with --annotations DIR"
        )
    if image_size is None and nsd_ids:
        try:
            image_size = tuple(dataset.image(nsd_ids[0]).shape[:2])
        except DataError as error:
            raise DataError(
                f"{error}. Boxes are measured in stimulus pixels; without the stimuli pass image_size (--image-size)"
            ) from error
    vocabulary: set[str] = set()
    for nsd_id in nsd_ids:
        image_facts, reason = facts_from_coco(nsd_id, dataset.captions(nsd_id), dataset.boxes(nsd_id), image_size)
        if image_facts is None:
            skipped[nsd_id] = reason
        else:
            facts[nsd_id] = image_facts
            vocabulary |= image_facts.names
    return facts, skipped, sorted(vocabulary)
