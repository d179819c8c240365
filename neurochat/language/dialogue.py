"""Dialogue turns true to the picture: what people ask about a recording, answered from its facts.

The paper's continuous dialogues came from GPT-3.5 (App. A.2); ours are written from the answer key
(SimNSD's scene graph, or COCO's annotations on real NSD), so every answer is true and the model can
learn to say no, to count, to place, and to say when it cannot tell. A dialogue is three or four
turns; a turn about one object may be followed by one that refers back to it.

Fresh questions (`FRESH_KINDS`, drawn with these weights):

- existence, asked about a present object ("Yes, there is one dog, on the left.") as often as about an
  absent one ("No, there is no clock in the picture."); the absent one is, half of the time, an object
  that could be in this setting, so that "no" needs the recording and not only the scene;
- count, position and size of a present object, and the same questions about an absent one, answered
  by rejecting the premise ("Where is the giraffe?" -> "There is no giraffe in the picture.");
- the scene; what objects there are; a family ("Is there an animal?"); the background's colours
  where the picture world defines them (SimNSD's renderer, not COCO);
- what the recording cannot say: what an object is doing, its colour or kind, the time of day, who
  took the picture ("I can't tell what the dog is doing: ...").

Follow-ups (`FOLLOW_UP_KINDS`) after a turn about an object: "How many are there?", "Where is it?",
"What else is there?", "And the other one?" (the other object of the picture, or that there is none),
"And the cat?" (the same question about another object, present or absent), and after an absent one
"What is there instead?".

Each turn is a `Turn`: a (question, answer) pair that also knows its kind, so the builder can count
them (`summary["dialogue_turns"]`) and label each sample's turns (`turn_kinds`).
"""

from __future__ import annotations

import random
from typing import Sequence

from neurochat.language.facts import ImageFacts, ObjectFacts
from neurochat.language.templates import (
    SETTING_BACKGROUNDS,
    SETTING_PHRASES,
    SIZE_WORDS,
    be,
    capitalize,
    join,
    noun_phrase,
    objects_phrase,
    percent,
    reasoning_candidates,
    the,
    there_are,
    where_long,
    where_short,
)
from neurochat.vocabulary import article, objects_for_scene, plural

TURNS_PER_DIALOGUE = (3, 4)
FOLLOW_UP_PROBABILITY = 0.5  # after a turn about a present object, how often the next one refers back
PLAUSIBLE_ABSENT_SHARE = 0.5  # absent objects drawn from those that could be in the picture's setting
ABSENT_PREMISE_SHARE = 0.25  # count / position / size questions asked about an absent object

# Fresh questions and how often each is drawn; "existence_yes" and "existence_no" weigh the same, so
# the yes and no answers balance.
FRESH_KINDS: dict[str, float] = {
    "existence_yes": 2.5,
    "existence_no": 2.5,
    "count": 1.5,
    "position": 1.5,
    "size": 0.7,
    "scene": 1.2,
    "objects": 1.0,
    "family": 0.8,
    "cannot_tell": 1.0,
    "colour": 0.3,
}
FOLLOW_UP_KINDS: dict[str, float] = {"pronoun": 0.35, "what_else": 0.2, "other_one": 0.25, "and_the": 0.2}

# Families people ask about ("Is there an animal?"): COCO supercategory -> (question phrase, noun).
FAMILY_NOUNS: dict[str, tuple[str, str]] = {
    "animal": ("an animal", "animal"),
    "vehicle": ("a vehicle", "vehicle"),
    "food": ("any food", "food"),
    "furniture": ("any furniture", "furniture"),
    "electronic": ("an electronic device", "electronic device"),
}

# The background's colours as SimNSD draws them (neurochat/sim/render.py); asked only of SimNSD facts,
# because a real photo's colours are not in its annotations.
BACKGROUND_COLOURS = {
    "grass": "The ground is green grass, under a blue sky with white clouds.",
    "sky": "The sky is blue, with white clouds.",
    "beach": "The sand is pale yellow and the sea is blue, under a blue sky.",
    "street": "The road is grey, under a blue sky.",
    "room": "The walls are beige and the floor is brown wood.",
    "snow": "The ground is white snow, under a pale grey sky.",
}

# What the recording does not say, and the honest answers (they name what it does say).
_CANNOT_KNOW = "the recording shows which objects there are, where and how big"


class Turn(tuple):
    """A (question, answer) pair that also knows its kind (`FRESH_KINDS`, follow-ups, ...)."""

    def __new__(cls, question: str, answer: str, kind: str, focus: ObjectFacts | None = None,
                attribute: str | None = None, absent: str | None = None):  # fmt: skip
        turn = super().__new__(cls, (question, answer))
        turn.kind = kind
        turn.focus = focus  # the present object the turn is about (follow-ups refer back to it)
        turn.attribute = attribute  # "existence", "count", "position" or "size"
        turn.absent = absent  # the absent object the turn asked about
        return turn


def dialogue_turns(facts: ImageFacts, rng: random.Random, vocabulary: Sequence[str] = ()) -> list[Turn]:
    """Three or four turns about one picture, each true to its facts (see the module docstring)."""
    absent = [name for name in vocabulary if name not in facts.names]
    n_turns = rng.choice(TURNS_PER_DIALOGUE)
    turns: list[Turn] = []
    asked: set[str] = set()
    for _ in range(10 * n_turns):  # a repeated question is drawn again
        if len(turns) == n_turns:
            break
        previous = turns[-1] if turns else None
        turn = None
        if previous is not None and (previous.focus or previous.absent) and rng.random() < FOLLOW_UP_PROBABILITY:
            turn = _follow_up(previous, facts, rng, absent)
        if turn is None:
            turn = _fresh(facts, rng, absent)
        if turn is not None and turn[0] not in asked:
            asked.add(turn[0])
            turns.append(turn)
    return turns


# ---------------------------------------------------------------------------------------------
# Fresh questions


def _fresh(facts: ImageFacts, rng: random.Random, absent: list[str]) -> Turn | None:
    kinds = {k: w for k, w in FRESH_KINDS.items() if _possible(k, facts, absent)}
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    if kind == "existence_yes":
        obj = rng.choice(facts.objects)
        return Turn(existence_question(obj.name, rng), existence_answer(obj), kind, obj, "existence")
    if kind == "existence_no":
        name = _absent_object(facts, rng, absent)
        return Turn(existence_question(name, rng), absence_answer(name), kind, absent=name)
    if kind in ("count", "position", "size"):
        if absent and rng.random() < ABSENT_PREMISE_SHARE:
            name = _absent_object(facts, rng, absent)
            return Turn(_attribute_question(kind, name, 1, rng), absence_answer(name, premise=True), f"{kind}_absent",
                        absent=name)  # fmt: skip
        obj = rng.choice(facts.objects)
        return Turn(_attribute_question(kind, obj.name, obj.count, rng), attribute_answer(kind, obj), kind, obj, kind)
    if kind == "scene":
        question = rng.choice(["What is the setting?", "Where was this picture taken?", "What is the background?",
                               "What kind of place is this?"])  # fmt: skip
        return Turn(question, scene_answer(facts), kind)
    if kind == "objects":
        question = rng.choice(["What objects are in the picture?", "What can you see in this image?",
                               "What is in the picture?", "Which objects do you see?"])  # fmt: skip
        return Turn(question, objects_answer(facts), kind)
    if kind == "family":
        return _family(facts, rng)
    if kind == "cannot_tell":
        return _cannot_tell(facts, rng)
    question = rng.choice(["What colour is the background?", "What colours are in the background?"])
    return Turn(question, BACKGROUND_COLOURS[facts.setting], kind)


def _possible(kind: str, facts: ImageFacts, absent: list[str]) -> bool:
    if kind == "existence_no":
        return bool(absent)
    if kind == "scene":
        return facts.setting is not None
    if kind == "colour":
        return facts.source == "simnsd" and facts.setting in BACKGROUND_COLOURS
    return True


def _absent_object(facts: ImageFacts, rng: random.Random, absent: list[str]) -> str:
    """An absent object: half of the time one that could be in this setting (a hard "no")."""
    plausible = [c.name for c in objects_for_scene(facts.setting)] if facts.setting else []
    plausible = [name for name in plausible if name in absent]
    if plausible and rng.random() < PLAUSIBLE_ABSENT_SHARE:
        return rng.choice(plausible)
    return rng.choice(absent)


def existence_question(name: str, rng: random.Random) -> str:
    a = f"{article(name)} {name}"
    return rng.choice([f"Is there {a} in the picture?", f"Do you see {a}?", f"Can you see {a}?", f"Is there {a}?",
                       f"Does the picture show {a}?"])  # fmt: skip


def existence_answer(obj: ObjectFacts) -> str:
    """'Yes, there is one dog, on the left.'"""
    there = there_are(obj)
    return f"Yes, {there[0].lower()}{there[1:]}, {where_short(obj)}."


def absence_answer(name: str, *, premise: bool = False) -> str:
    """'No, there is no clock in the picture.'; a question that presumed it (premise) gets no "No,"."""
    return f"There is no {name} in the picture." if premise else f"No, there is no {name} in the picture."


def _attribute_question(attribute: str, name: str, count: int, rng: random.Random) -> str:
    names, the_x, be_x = plural(name), f"the {name}" if count == 1 else f"the {plural(name)}", "is" if count == 1 else "are"
    if attribute == "count":
        return rng.choice([f"How many {names} are there?", f"How many {names} can you see?",
                           f"How many {names} are in the picture?", f"Can you count the {names}?"])  # fmt: skip
    if attribute == "position":
        return rng.choice([f"Where {be_x} {the_x}?", f"Where in the picture {be_x} {the_x}?"])
    return rng.choice([f"How big {be_x} {the_x}?", f"How large {be_x} {the_x}?"])


def attribute_answer(attribute: str, obj: ObjectFacts) -> str:
    """The count, position or size of a present object, naming it."""
    if attribute == "count":
        return f"{there_are(obj)}."
    if attribute == "position":
        return f"{capitalize(the(obj))} {be(obj)} {where_long(obj)}."
    if attribute == "size":
        return f"{capitalize(the(obj))} {be(obj)} {SIZE_WORDS[obj.size]}, taking up {percent(obj.area_fraction)} of the picture."
    return existence_answer(obj)


def scene_answer(facts: ImageFacts) -> str:
    return f"The picture was taken {SETTING_PHRASES[facts.setting]}. {SETTING_BACKGROUNDS[facts.setting]}"


def objects_answer(facts: ImageFacts) -> str:
    return f"The picture shows {objects_phrase(facts)}."


def _family(facts: ImageFacts, rng: random.Random) -> Turn | None:
    present = {obj.supercategory for obj in facts.objects} & set(FAMILY_NOUNS)
    missing = set(FAMILY_NOUNS) - present
    pick_present = present and (not missing or rng.random() < 0.5)
    family = rng.choice(sorted(present if pick_present else missing))
    phrase, noun = FAMILY_NOUNS[family]
    question = rng.choice([f"Is there {phrase} in the picture?", f"Do you see {phrase}?"])
    members = [obj for obj in facts.objects if obj.supercategory == family]
    if not members:
        return Turn(question, f"No, there is no {noun} in the picture.", "family_no")
    shown = join([f"{noun_phrase(obj)} {where_short(obj)}" for obj in members])
    return Turn(question, f"Yes, the picture shows {shown}.", "family_yes", members[0], "existence")


def _cannot_tell(facts: ImageFacts, rng: random.Random) -> Turn:
    obj = rng.choice(facts.objects)
    the_x, be_x = the(obj), be(obj)
    family = FAMILY_NOUNS.get(obj.supercategory)
    options = [
        (f"What {be_x} {the_x} doing?", f"I can't tell what {the_x} {be_x} doing: {_CANNOT_KNOW}, not what they do."),
        (f"What {'colour' if rng.random() < 0.5 else 'color'} {be_x} {the_x}?",
         f"I can't tell the colour of {the_x}: {_CANNOT_KNOW}, not their colours."),
        ("What time of day is it?", f"I can't tell the time of day: {_CANNOT_KNOW}, not when the picture was taken."),
        ("Who took this picture?", f"I can't tell who took the picture: {_CANNOT_KNOW}, not who took it."),
    ]  # fmt: skip
    if obj.count == 1:
        options.append((f"What kind of {obj.name} is it?",
                        f"I can't tell what kind of {obj.name} it is: {_CANNOT_KNOW}, not what kind they are."))  # fmt: skip
    if family is not None and sum(o.supercategory == obj.supercategory for o in facts.objects) == 1:
        # "What is the animal doing?": the model has to say which animal, then that it cannot tell
        noun = family[1]
        options.append((f"What is the {noun} doing?", f"I can't tell what {the_x} {be_x} doing: {_CANNOT_KNOW}, not what they do."))
    question, answer = rng.choice(options)
    return Turn(question, answer, "cannot_tell")


# ---------------------------------------------------------------------------------------------
# Follow-ups: questions that refer back to the turn before


def _follow_up(previous: Turn, facts: ImageFacts, rng: random.Random, absent: list[str]) -> Turn | None:
    if previous.focus is None:  # the turn before asked about an absent object
        question = rng.choice(["What is there instead?", "Then what is in the picture?", "So what do you see?"])
        return Turn(question, objects_answer(facts), "instead")
    kind = rng.choices(list(FOLLOW_UP_KINDS), weights=list(FOLLOW_UP_KINDS.values()))[0]
    obj, attribute = previous.focus, previous.attribute
    if kind == "pronoun":
        attribute = rng.choice([a for a in ("count", "position", "position", "size") if a != previous.attribute])
        it, be_it = ("it", "is") if obj.count == 1 else ("they", "are")
        question = {"count": rng.choice(["How many are there?", f"How many of {'it' if obj.count == 1 else 'them'} are there?"]),
                    "position": f"Where {be_it} {it}?", "size": f"How big {be_it} {it}?"}[attribute]  # fmt: skip
        return Turn(question, attribute_answer(attribute, obj), f"follow_{attribute}", obj, attribute)
    others = [o for o in facts.objects if o.name != obj.name]
    if kind == "what_else":
        question = rng.choice(["What else is there?", "What else can you see?", "Anything else?"])
        if others:
            answer = f"Besides {the(obj)}, the picture shows {join([noun_phrase(o) for o in others])}."
        else:
            answer = f"{capitalize(the(obj))} {be(obj)} the only {'object' if obj.count == 1 else 'objects'} in the picture; there is nothing else."
        return Turn(question, answer, kind, obj, attribute)
    if kind == "other_one":
        return _other_one(obj, others, attribute, rng)
    return _and_the(obj, others, attribute, facts, rng, absent)


def _other_one(obj: ObjectFacts, others: list[ObjectFacts], attribute: str, rng: random.Random) -> Turn:
    if len(others) <= 1:
        question = rng.choice(["And the other one?", "What about the other one?", "And the other object?"])
    else:
        question = rng.choice(["And the others?", "What about the other objects?"])
    if not others:
        kind_of = "object" if obj.count == 1 else "kind of object"
        answer = f"There is no other {kind_of}: {the(obj)} {be(obj)} the only {'one' if obj.count == 1 else 'ones'} in the picture."
        return Turn(question, answer, "other_one", obj, attribute)
    if attribute == "existence":
        placed = join([f"{noun_phrase(o)} {where_short(o)}" for o in others])
        answer = f"The other {'object is' if len(others) == 1 else 'objects are'} {placed}."
    else:
        sentences = [attribute_answer(attribute, o).rstrip(".") for o in others]
        answer = "; ".join([sentences[0]] + [s[0].lower() + s[1:] for s in sentences[1:]]) + "."
    focus = others[0] if len(others) == 1 else None
    return Turn(question, answer, "other_one", focus, attribute)


def _and_the(obj, others, attribute: str, facts: ImageFacts, rng: random.Random, absent: list[str]) -> Turn | None:
    """'And the cat?': the question before, about another object, present or absent."""
    if others and (not absent or rng.random() < 0.5):
        other = rng.choice(others)
        name, present = other.name, other
    elif absent:
        name, present = _absent_object(facts, rng, absent), None
    else:
        return None
    count = present.count if present is not None else 1
    if attribute == "existence":
        question = rng.choice([f"And {article(name)} {name}?", f"What about {article(name)} {name}?"])
        answer = existence_answer(present) if present is not None else absence_answer(name)
    elif attribute == "count":
        question = f"And how many {plural(name)}?"
        answer = attribute_answer("count", present) if present is not None else f"There are no {plural(name)} in the picture."
    else:
        the_x = f"the {name}" if count == 1 else f"the {plural(name)}"
        question = rng.choice([f"And {the_x}?", f"What about {the_x}?"])
        answer = attribute_answer(attribute, present) if present is not None else absence_answer(name, premise=True)
    if present is None:
        return Turn(question, answer, "and_the", absent=name)
    return Turn(question, answer, "and_the", present, attribute)


# ---------------------------------------------------------------------------------------------
# The default writer


class TemplateDialogueWriter:
    """The default `DialogueWriter`: 3-4 dialogue turns (`dialogue_turns`), 1-2 reasoning turns.

    Parameters
    ----------
    vocabulary : sequence of str
        Object concepts the world knows; absent ones are asked about and answered "No".
    """

    def __init__(self, vocabulary: Sequence[str] = ()):
        self.vocabulary = tuple(vocabulary)

    def __call__(self, facts: ImageFacts, task: str, rng: random.Random) -> list[tuple[str, str]]:
        if task == "dialogue":
            return dialogue_turns(facts, rng, self.vocabulary)
        if task == "reasoning":
            candidates = reasoning_candidates(facts, rng)
            return rng.sample(candidates, min(rng.randint(1, 2), len(candidates)))
        raise ValueError(f"task={task!r}: a dialogue writer writes 'dialogue' or 'reasoning'")
