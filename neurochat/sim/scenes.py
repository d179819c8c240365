"""Scene graphs of the SimNSD picture world, and the captions written from them.

A scene is one background context plus one to three object categories, each drawn one to three
times with an exact box. Everything language needs later (captions, positions, sizes, counts) is
read off the scene graph, so the text is always true to the picture, unlike NSD's cropped COCO
captions (paper Fig. 9).

Scene `k` of a world is drawn from its own random stream `(seed, k)`, so any image of the
"73k pool" can be rendered alone, in any order, on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurochat.sim.concepts import OBJECTS_BY_NAME, SCENE_PHRASES, SCENES, objects_for_scene

# Scenes are laid out on this canvas; boxes are stored in pixels of the rendered image.
CANVAS = 128
# Outdoor scenes have a horizon; ground objects stand below it, flying things above it.
HORIZON = {"grass": 0.42, "beach": 0.45, "street": 0.40, "snow": 0.42, "room": 0.55, "sky": 1.0}
FLYING = {"bird", "airplane", "kite"}
SIZE_RANGES = {"small": (0.20, 0.28), "medium": (0.30, 0.40), "large": (0.44, 0.56)}  # fraction of CANVAS
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}


@dataclass
class SceneObject:
    """One object category in a scene: how many, where and how large."""

    name: str
    boxes: list[list[float]]  # COCO [x, y, width, height] in pixels of a CANVAS-sized image, one per instance
    size: str  # "small", "medium" or "large"
    flips: list[bool] = field(default_factory=list)  # sprite mirrored left-right, per instance

    @property
    def count(self) -> int:
        return len(self.boxes)

    @property
    def area_fraction(self) -> float:
        """Total area of the instances' boxes as a fraction of the picture."""
        return float(sum(w * h for _, _, w, h in self.boxes)) / CANVAS**2

    @property
    def center(self) -> tuple[float, float]:
        """Mean box centre in [0, 1] image coordinates (x right, y down)."""
        xs = [(x + w / 2) / CANVAS for x, _, w, _ in self.boxes]
        ys = [(y + h / 2) / CANVAS for _, y, _, h in self.boxes]
        return float(np.mean(xs)), float(np.mean(ys))

    @property
    def horizontal(self) -> str:
        x, _ = self.center
        return "left" if x < 0.4 else "right" if x > 0.6 else "center"

    @property
    def vertical(self) -> str:
        _, y = self.center
        return "top" if y < 0.4 else "bottom" if y > 0.65 else "middle"


@dataclass
class Scene:
    """A picture of the world: its id, background context, objects and captions."""

    image_id: int  # the 0-based "73k" id of the picture
    scene: str  # background context, one of SCENES
    objects: list[SceneObject]
    background_seed: int  # seeds the procedural background texture
    captions: list[str] = field(default_factory=list)

    @property
    def concepts(self) -> list[str]:
        """Every concept present: object names, then the scene."""
        return [obj.name for obj in self.objects] + [self.scene]

    def to_json(self) -> dict:
        return {
            "image_id": self.image_id,
            "scene": self.scene,
            "background_seed": self.background_seed,
            "objects": [
                {
                    "name": obj.name,
                    "count": obj.count,
                    "size": obj.size,
                    "boxes": [[round(v, 2) for v in box] for box in obj.boxes],
                    "flips": obj.flips,
                    "position": {"horizontal": obj.horizontal, "vertical": obj.vertical},
                }
                for obj in self.objects
            ],
            "captions": self.captions,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Scene":
        objects = [
            SceneObject(name=o["name"], boxes=[list(b) for b in o["boxes"]], size=o["size"], flips=list(o["flips"]))
            for o in data["objects"]
        ]
        return cls(data["image_id"], data["scene"], objects, data["background_seed"], list(data["captions"]))


def sample_scene(seed: int, image_id: int) -> Scene:
    """Draw scene `image_id` of the world with seed `seed` (independent of every other scene)."""
    rng = np.random.default_rng([seed, image_id])
    scene = SCENES[rng.integers(len(SCENES))]
    candidates = objects_for_scene(scene)
    n_categories = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.20]))
    n_categories = min(n_categories, len(candidates))
    chosen = rng.choice(len(candidates), size=n_categories, replace=False)

    placed: list[list[float]] = []
    objects = []
    for index in chosen:
        concept = candidates[int(index)]
        count = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1])) if n_categories < 3 else 1
        size = str(rng.choice(list(SIZE_RANGES), p=[0.3, 0.4, 0.3] if count == 1 else [0.6, 0.4, 0.0]))
        boxes, flips = [], []
        for _ in range(count):
            box = _place_box(rng, scene, concept.name, size, placed)
            if box is None:
                break
            placed.append(box)
            boxes.append(box)
            flips.append(bool(rng.random() < 0.5))
        if boxes:
            objects.append(SceneObject(concept.name, boxes, size, flips))
    result = Scene(image_id, scene, objects, background_seed=int(rng.integers(2**31)))
    result.captions = write_captions(result, rng)
    return result


def _place_box(rng, scene, name, size, placed, tries=30):
    """A box for one instance that overlaps the others little, in a plausible part of the picture."""
    low, high = SIZE_RANGES[size]
    horizon = HORIZON[scene]
    for _ in range(tries):
        side = rng.uniform(low, high) * CANVAS
        if name in FLYING:
            y_lo, y_hi = 0.02 * CANVAS, max(0.02 * CANVAS, min(horizon, 0.75) * CANVAS - side)
        else:
            # the object's foot stands on the ground, below the horizon
            y_lo = max(0.0, horizon * CANVAS - 0.6 * side)
            y_hi = CANVAS - side - 2
        x = rng.uniform(2, CANVAS - side - 2)
        y = rng.uniform(y_lo, max(y_lo, y_hi))
        box = [float(x), float(y), float(side), float(side)]
        if all(_overlap_fraction(box, other) < 0.15 for other in placed):
            return box
    return None


def _overlap_fraction(a, b) -> float:
    """Intersection area over the smaller box's area."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])


# ---------------------------------------------------------------------------------------------
# Captions: a small grammar over the scene graph, five per image as in COCO.


def noun_phrase(obj: SceneObject) -> str:
    """'a cat', 'two cats', 'an apple', 'three sheep'."""
    concept = OBJECTS_BY_NAME[obj.name]
    if obj.count == 1:
        return f"{concept.article} {concept.name}"
    return f"{COUNT_WORDS[obj.count]} {concept.plural_name}"


def join_phrases(phrases: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def objects_phrase(scene: Scene) -> str:
    return join_phrases([noun_phrase(obj) for obj in scene.objects]) or "nothing"


def write_captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """Captions in the style of COCO's, all true to the scene graph."""
    objects = objects_phrase(scene)
    where = SCENE_PHRASES[scene.scene]
    largest = max(scene.objects, key=lambda o: o.area_fraction, default=None)
    templates = [
        lambda: f"{objects} {rng.choice(where)}",
        lambda: f"a picture of {objects} {rng.choice(where)}",
        lambda: f"{objects} {_verb(scene)} {rng.choice(where)}",
        lambda: f"a {scene.scene} scene with {objects}",
        lambda: _placement_caption(scene, largest, rng.choice(where)),
    ]
    order = rng.permutation(len(templates))[:n]
    return [templates[i]().strip() for i in order]


def _placement_caption(scene: Scene, largest: SceneObject | None, where: str) -> str:
    """'a dog on the left side of the picture and a ball on the grass' (every object is named)."""
    if largest is None or largest.horizontal == "center":
        return f"an image of {objects_phrase(scene)} {where}"
    others = [noun_phrase(obj) for obj in scene.objects if obj is not largest]
    rest = f" and {join_phrases(others)}" if others else ""
    return f"{noun_phrase(largest)} on the {largest.horizontal} side of the picture{rest} {where}"


def _verb(scene: Scene) -> str:
    """A verb phrase that fits every object in the scene."""
    families = {OBJECTS_BY_NAME[o.name].supercategory for o in scene.objects}
    count = sum(o.count for o in scene.objects)
    plural = count > 1
    if scene.scene == "sky":
        return "are flying" if plural else "is flying"
    if families == {"vehicle"} and scene.scene == "beach":
        return "are sailing" if plural else "is sailing"
    if families == {"animal"}:
        return "are standing" if plural else "is standing"
    if families == {"vehicle"}:
        return "are parked" if plural else "is parked"
    return "are shown" if plural else "is shown"
