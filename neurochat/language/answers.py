"""Reading facts back out of an answer: yes or no, a count, a position, a size, a scene, "I can't tell".

The dialogue evaluation (`neurochat.evaluate.dialogue`) asks the fMRI-LLM questions whose answers the
answer key knows, and needs to read what each answer claims. The readers accept the extension's own
phrasing and the usual paraphrases ("Yep, I count 2 dogs", "the dog sits on the right-hand side", "it
was taken on a sandy beach"); an answer they cannot read returns None, which the evaluation scores as
wrong (an answer that says nothing definite is not a right answer).

- `read_yes_no`: a leading "yes"/"no" decides; otherwise whether the asked object is asserted or denied
  (`neurochat.vocabulary.asserted_mentions`).
- `read_count`: digits or number words ("zero" to "twenty", "a", "a single", "a pair of", "no", "none"),
  the one nearest before the object's name, else the first in the answer.
- `read_position`: the horizontal sides named (left, right, center/centre/middle; "across the picture"
  is all three) and the vertical one (top/upper, bottom/lower, "halfway up"/"in the middle").
- `read_scene`: the first scene context named, by the words of `SCENE_WORDS`.
- `read_size`: small/little/tiny, medium/medium-sized/mid-sized, large/big/huge: the first one named.
- `says_cannot_tell`: "I can't tell", "cannot say", "the recording does not show", ...
"""

from __future__ import annotations

import re
from typing import Iterable

from neurochat.vocabulary import OBJECTS, asserted_mentions, mention_spans

NUMBER_WORDS = {
    "zero": 0, "no": 0, "none": 0, "one": 1, "a": 1, "an": 1, "single": 1, "two": 2, "pair": 2, "couple": 2,
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20,
}  # fmt: skip
# Words that may stand between a number and its noun: "two small dogs", "a pair of large cats".
_NUMBER_GAP = {"small", "little", "tiny", "medium", "medium-sized", "large", "big", "huge", "of", "other", "more"}
_NUMBER = re.compile(r"\b(\d+)\b(?!\s*%)|\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
# Articles count only right before the object ("a dog" is one dog; "a picture" says nothing).
_ARTICLES = {"a", "an", "no"}

_YES = re.compile(r"^\W*(?:yes|yeah|yep|yup|sure|correct|indeed|affirmative|of course)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(?:no|nope|nah|not|none|negative)\b", re.IGNORECASE)

# The scene contexts of SimNSD and the words that name them in answers.
SCENE_WORDS: dict[str, re.Pattern] = {
    "grass": re.compile(r"\b(?:grass|grassy|field|meadow|lawn|pasture|park)\b", re.IGNORECASE),
    "sky": re.compile(r"\b(?:sky|skies|air|flying|clouds?)\b", re.IGNORECASE),
    "beach": re.compile(r"\b(?:beach|sand|sandy|sea|ocean|shore|seaside|coast)\b", re.IGNORECASE),
    "street": re.compile(r"\b(?:street|streets|road|city|town|urban|traffic|sidewalk)\b", re.IGNORECASE),
    "room": re.compile(r"\b(?:room|indoors|indoor|inside|house|home|kitchen|bedroom|living room)\b", re.IGNORECASE),
    "snow": re.compile(r"\b(?:snow|snowy|winter|ice|icy)\b", re.IGNORECASE),
}

_LEFT = re.compile(r"\bleft\b", re.IGNORECASE)
_RIGHT = re.compile(r"\bright(?:-hand)?\b(?!\s+(?:now|away))", re.IGNORECASE)
_CENTER = re.compile(r"\b(?:center|centre|central|centered|centred|middle)\b", re.IGNORECASE)
_ACROSS = re.compile(r"\b(?:across|all over|everywhere)\b", re.IGNORECASE)
_TOP = re.compile(r"\b(?:top|upper|above|high up)\b", re.IGNORECASE)
_BOTTOM = re.compile(r"\b(?:bottom|lower|below|low down)\b", re.IGNORECASE)
_HALFWAY = re.compile(r"\b(?:halfway|half way|vertically centered|in the (?:center|centre|middle) of the (?:picture|image))\b",
                      re.IGNORECASE)  # fmt: skip

SIZE_READINGS = {
    "small": re.compile(r"\b(?:small|little|tiny|smallish)\b", re.IGNORECASE),
    "medium": re.compile(r"\b(?:medium|medium-sized|mid-sized|midsize|moderate|average-sized)\b", re.IGNORECASE),
    "large": re.compile(r"\b(?:large|big|huge|giant|largest)\b", re.IGNORECASE),
}

_CANNOT_TELL = re.compile(
    r"\b(?:can['’]?t|cannot|can not|could\s*n['’]t|unable to|not possible to|no way to|hard to)\s+"
    r"(?:tell|say|know|determine|see what|judge)\b"
    r"|\b(?:does\s*n['’]t|do\s*n['’]t|does not|do not)\s+(?:say|show|tell|record|reveal)\b"
    r"|\bI\s+do\s*n['’]?t\s+know\b|\bnot\s+sure\b|\bunknown\b",
    re.IGNORECASE,
)

OBJECT_NAMES: tuple[str, ...] = tuple(concept.name for concept in OBJECTS)


def read_yes_no(answer: str, name: str | None = None) -> bool | None:
    """True for yes, False for no, None when the answer says neither.

    A leading yes or no word decides ("Yes, there is one dog", "No, there is no clock"). Otherwise,
    with the object's `name`: True when the answer asserts it, False when it only denies it ("There is
    no clock in the picture"); without a name, a bare denial ("there is nothing like that") is a no.
    """
    answer = answer or ""
    if _YES.search(answer):
        return True
    if _NO.search(answer):
        return False
    if name is not None:
        if name in asserted_mentions(answer, [name]):
            return True
        if mention_spans(answer, [name]):
            return False  # named, never asserted: denied
    if re.search(r"\b(?:no|not|none|nothing)\b|n['’]t\b", answer, re.IGNORECASE):
        return False
    return None


def read_count(answer: str, name: str | None = None) -> int | None:
    """How many of `name` the answer says there are; None when it gives no number.

    The number nearest before a mention of the object counts ("two small dogs", "a single dog", "no
    dogs": 0), else the first number anywhere that is not an article ("There are three."), else 0
    for an answer that denies the object. Percentages are not counts.
    """
    answer = answer or ""
    words = [(m.start(), m.group(1) or m.group(2).lower()) for m in _NUMBER.finditer(answer)]
    if name is not None:
        for start, _, _ in mention_spans(answer, [name]):
            before = re.findall(r"[\w'-]+", answer[:start].lower())[-4:]
            for word in reversed(before):
                if word.isdigit():
                    return int(word)
                if word in NUMBER_WORDS:
                    return NUMBER_WORDS[word]
                if word not in _NUMBER_GAP:
                    break
    for _, word in words:
        if word.isdigit():
            return int(word)
        if word not in _ARTICLES and word not in ("pair", "couple", "single"):
            return NUMBER_WORDS[word]
    if name is not None and read_yes_no(answer, name) is False:
        return 0
    return None


def read_position(answer: str) -> tuple[frozenset[str], str | None]:
    """(the horizontal sides named, the vertical position or None).

    Sides are "left", "center", "right": "spread across the picture: one on the left and one on the
    right" gives {left, right}; "across the picture" naming no side gives all three. The vertical
    position is "top", "bottom" or "middle" ("halfway up", "in the center of the picture"), None when
    not said.
    """
    answer = answer or ""
    sides = set()
    if _LEFT.search(answer):
        sides.add("left")
    if _RIGHT.search(answer):
        sides.add("right")
    if _CENTER.search(answer):
        sides.add("center")
    if not sides and _ACROSS.search(answer):
        sides = {"left", "center", "right"}
    top, bottom = bool(_TOP.search(answer)), bool(_BOTTOM.search(answer))
    vertical = None
    if top != bottom:
        vertical = "top" if top else "bottom"
    elif not top and _HALFWAY.search(answer):
        vertical = "middle"
    return frozenset(sides), vertical


def read_scene(answer: str) -> str | None:
    """The scene context named first in the answer, or None."""
    found = [(m.start(), scene) for scene, words in SCENE_WORDS.items() for m in [words.search(answer or "")] if m]
    return min(found)[1] if found else None


def read_size(answer: str) -> str | None:
    """"small", "medium" or "large", whichever the answer names first; None if none."""
    found = [(m.start(), size) for size, words in SIZE_READINGS.items() for m in [words.search(answer or "")] if m]
    return min(found)[1] if found else None


def says_cannot_tell(answer: str) -> bool:
    """Does the answer say that it cannot tell (rather than make something up)?"""
    return bool(_CANNOT_TELL.search(answer or ""))


def asserted_objects(answer: str, names: Iterable[str] = OBJECT_NAMES) -> list[str]:
    """The objects an answer says are in the picture (not those it denies or asks about)."""
    return asserted_mentions(answer, names)
