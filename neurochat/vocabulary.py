"""The vocabulary: the concepts NeuroChat names, and the one way to find them in text.

Object concepts are COCO 2017 categories (real COCO ids, so SimNSD's instances JSON looks like
COCO's), each drawn from one Noto Color Emoji sprite and allowed in the scene contexts where it is
plausible (a cow on grass, a boat by the sea, a laptop in a room). Scenes are concepts too: the
simulated brain has scene-selective cortex (like PPA), and localization can ask for "beach".

`plural` and `article` say a name in English; `mentions` finds which names a text mentions (the
captions' concept recall, the LLM's reconstruction prompts, localization requests, the app's
concept chips all ask it).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

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


# COCO names with irregular plurals (the vocabulary's own objects carry theirs in `ObjectConcept.plural`).
IRREGULAR_PLURALS = {"person": "people", "mouse": "mice", "knife": "knives", "skis": "skis", "scissors": "scissors",
                     "sheep": "sheep", "broccoli": "broccoli"}  # fmt: skip


def plural(name: str) -> str:
    """The English plural of a concept name ("bus" → "buses", "sky" → "skies", "sheep" → "sheep")."""
    if name in OBJECTS_BY_NAME:
        return OBJECTS_BY_NAME[name].plural_name
    if name in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[name]
    if name.endswith(("s", "x", "ch", "sh")):
        return name + "es"
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


def article(name: str) -> str:
    """"a" or "an" before `name`."""
    if name in OBJECTS_BY_NAME:
        return OBJECTS_BY_NAME[name].article
    return "an" if name[:1] in "aeiou" else "a"


# ---------------------------------------------------------------------------------------------
# Finding concept names in text

PLURAL_RULES = ("english", "suffix")
BOUNDARIES = ("word", "letter")


def name_forms(name: str, plurals: str = "english") -> tuple[str, ...]:
    """The spellings that count as naming `name`: the name and its plural.

    plurals : "english" (`plural`: "skies", "buses", "sheep") or "suffix" (the name with "s" or "es"
        appended, whatever the word: what a reader of free user text accepts).
    """
    if plurals == "english":
        forms = (name, plural(name))
    elif plurals == "suffix":
        forms = (name, name + "s", name + "es")
    else:
        raise ValueError(f"plurals={plurals!r}: choose one of {PLURAL_RULES}")
    return tuple(dict.fromkeys(forms))


def mentions(text: str, names: Iterable[str] = CONCEPT_NAMES, *, plurals: str = "english",
             boundary: str = "word") -> list[str]:  # fmt: skip
    """The names that `text` mentions, singular or plural, as whole words, in any case: each name
    once, in the order of its first mention (names mentioned at the same place in name order).

    A name inside a longer one counts too ("dog" in "hot dog"): callers that want the longest
    name pick it from the result.

    Parameters
    ----------
    plurals : "english" or "suffix", see `name_forms`.
    boundary : "word" or "letter"
        "word": a form stands between regular-expression word boundaries (letters, digits and
        "_" are word characters), as in generated captions and prompts. "letter": only letters
        bound a word, and any non-letter may stand for a space of a two-word name ("teddy-bear"),
        for users' free text; with it only names of the letters a-z and spaces can be found.
    """
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary={boundary!r}: choose one of {BOUNDARIES}")
    text = (text or "").lower()
    found = []
    for name in dict.fromkeys(names):
        pattern = _mention_pattern(name, plurals, boundary)
        match = pattern.search(text) if pattern is not None else None
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


@functools.lru_cache(maxsize=4096)  # a generation step asks again for every token it writes
def _mention_pattern(name: str, plurals: str, boundary: str) -> re.Pattern | None:
    """One compiled pattern for all forms of `name`, or None where no form can be found."""
    forms = [form.lower() for form in name_forms(name, plurals)]
    if boundary == "word":
        return re.compile("|".join(rf"\b{re.escape(form)}\b" for form in forms))
    forms = [form for form in forms if re.fullmatch(r"[a-z ]+", form)]  # in "letter" mode a name is letters and spaces
    if not forms:
        return None
    return re.compile("|".join(r"(?<![a-z])" + "[^a-z]".join(form.split(" ")) + r"(?![a-z])" for form in forms))


# ---------------------------------------------------------------------------------------------
# Names a text asserts: mentions that are not negated and not asked about

# Words that deny what follows them in the same clause ("there is no clock", "I don't see a cat").
_NEGATION = re.compile(
    r"\b(?:no|not|never|none|nothing|nobody|neither|nor|without|cannot|zero|absent)\b|n['’]t\b", re.IGNORECASE
)
# Negations about knowing, not about being there: "I can't tell what the dog is doing" still says the dog is there.
_NOT_KNOWING = re.compile(
    r"\b(?:can['’]?t|cannot|can not|could\s*n['’]t|do\s*n['’]t|does\s*n['’]t|is\s*n['’]t|am not|not)\s+"
    r"(?:tell|say|know|sure|determine|possible to (?:tell|say))\b",
    re.IGNORECASE,
)
# Where a clause ends: a denial does not reach past these ("no cat, but a dog"; "No, ..." stands alone).
_CLAUSE_END = re.compile(
    r"[.;:!?\n]|^\s*(?:yes|no|yeah|nope|yep)\s*,|\b(?:but|however|although|though|whereas|while|only|instead|"
    r"except|besides|apart from|rather)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def mention_spans(text: str, names: Iterable[str] = CONCEPT_NAMES, *, plurals: str = "english",
                  boundary: str = "word") -> list[tuple[int, int, str]]:  # fmt: skip
    """Every mention of `names` in `text` as (start, end, name), left to right, the longest name
    winning where two overlap ("hot dog" is a hot dog, not a dog). Same forms and boundaries as
    `mentions`."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary={boundary!r}: choose one of {BOUNDARIES}")
    lowered = (text or "").lower()
    found = []
    for name in dict.fromkeys(names):
        pattern = _mention_pattern(name, plurals, boundary)
        if pattern is not None:
            found += [(m.start(), m.end(), name) for m in pattern.finditer(lowered)]
    kept: list[tuple[int, int, str]] = []
    for start, end, name in sorted(found, key=lambda span: (-(span[1] - span[0]), span[0], span[2])):
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, name))
    return sorted(kept)


def asserted_mentions(text: str, names: Iterable[str] = CONCEPT_NAMES, *, plurals: str = "english",
                      boundary: str = "word") -> list[str]:  # fmt: skip
    """The names `text` says are there: its mentions (`mention_spans`) without those it denies or asks
    about. Each name once, in the order of its first asserted mention.

    A question ("Is there a clock?") asserts nothing. A mention after a denial in the same clause
    ("No, there is no clock", "I don't see a cat", "without a hat") is not asserted; a clause ends at
    punctuation, after a leading "Yes," / "No,", and before "but", "only", "instead", "except" and the
    like ("no cat, but a dog" asserts the dog). Not knowing is not denying: "I can't tell what the
    dog is doing" asserts the dog. What an answer claims to see is what the app makes chips of and
    what the dialogue evaluation counts as hallucinated when the picture lacks it.
    """
    names = list(names)
    asserted: list[str] = []
    for sentence in _SENTENCE.finditer(text or ""):
        if sentence.group().rstrip().endswith("?"):
            continue  # a question asks; it does not say that anything is there
        clause = _clause_starts(sentence.group())
        for start, _, name in mention_spans(sentence.group(), names, plurals=plurals, boundary=boundary):
            before = sentence.group()[clause(start) : start]
            if not _NEGATION.search(_NOT_KNOWING.sub(" ", before)) and name not in asserted:
                asserted.append(name)
    return asserted


def _clause_starts(sentence: str):
    """A function: position in `sentence` -> where the clause holding that position starts."""
    ends = [m.end() for m in _CLAUSE_END.finditer(sentence)]

    def start_of(position: int) -> int:
        return max([0] + [end for end in ends if end <= position])

    return start_of
