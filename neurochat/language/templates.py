"""Answers of the language extension, written from templates over `ImageFacts`.

The paper's answers came from GPT-3.5 (App. A.2). Ours are template-built, so every statement is
true to the picture: objects, counts, positions, sizes and setting come from the facts; the
complex-reasoning answers add a small, common-sense inference keyed by scene context and COCO
supercategory (the kind of answer LLaVA's complex reasoning has: "why might the dog be on the beach").

Every function takes a `random.Random` only to vary the wording; the facts stated never vary.
"""

from __future__ import annotations

import random
from typing import Protocol, Sequence

from neurochat.language.facts import ImageFacts, ObjectFacts
from neurochat.vocabulary import article, plural

QA = tuple[str, str]

COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}

SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}
# How text places things in each scene context ("a cat on the grass").
SETTING_PHRASES = {
    "grass": "on a grassy field",
    "sky": "in the sky",
    "beach": "on a sandy beach by the sea",
    "street": "on a city street",
    "room": "in a room",
    "snow": "in a snowy landscape",
}
# The closing sentence of a detailed description. Generic on purpose: true of SimNSD's renderings
# and of a real photo whose captions name the setting.
SETTING_BACKGROUNDS = {
    "grass": "The ground is covered in green grass.",
    "sky": "The background is open sky.",
    "beach": "The setting is a beach, with sand and the sea.",
    "street": "The setting is a street in a town or city.",
    "room": "The scene is indoors, inside a room.",
    "snow": "The ground is covered in white snow.",
}
# Stable Diffusion style for the reconstruction prompt (the a_r of Eq. 4).
SETTING_STYLES = {
    "grass": "on green grass, bright daylight",
    "sky": "in a clear blue sky",
    "beach": "on a sandy beach by the sea, sunny",
    "street": "on a city street, urban",
    "room": "in a cozy room, indoor lighting",
    "snow": "in a snowy landscape, winter",
}
OUTDOOR_EVIDENCE = {
    "grass": "the ground is grass under open sky",
    "sky": "the background is open sky",
    "beach": "it shows a sandy beach by the sea",
    "street": "it shows a street, which is outside",
    "snow": "the ground is covered in snow, which lies outside",
}

# Complex reasoning (App. A.2): why an object fits its setting. Looked up by (name, setting), (name,
# None), (supercategory, setting), (supercategory, None), so specific things ("kite") get specific
# reasons. "{the}" is "the dog" or "the dogs"; "{is}" and "{its}" agree with it.
WHY_IN_SETTING: dict[tuple[str, str | None], str] = {
    ("bird", "sky"): "{The} {is} flying; birds travel through the sky to move between places and to find food.",
    ("bird", None): "{The} may be resting or looking for food on the ground; birds land wherever they find seeds or insects.",
    ("hot dog", "street"): "Hot dogs are a common street food, sold from stands and eaten on the go.",
    ("airplane", None): "Airplanes fly high in the sky to carry people and goods over long distances.",
    ("boat", "beach"): "Boats travel on the sea and are pulled up on the shore, so the beach is a natural place for {the}.",
    ("kite", None): "Kites need wind and open space, so {the} {is} flown where nothing is in the way.",
    ("umbrella", "beach"): "An umbrella gives shade from the sun, which is strong on a beach.",
    ("umbrella", None): "An umbrella keeps off rain or sun, so it is useful outdoors.",
    ("animal", "grass"): "Grassy fields give animals food and space, so {the} may be resting, feeding or roaming there.",
    ("animal", "snow"): "{The} may be crossing the snowy land or looking for food; some animals cope well with cold and snow.",
    ("animal", "beach"): "{The} may be walking along the shore or playing by the water; beaches give animals room to move.",
    ("animal", "room"): "{The} {is} probably a pet that lives indoors with people.",
    ("animal", "street"): "{The} may be out for a walk with {its} owner; pets are often walked along town streets.",
    ("vehicle", "street"): "Streets are built for traffic, so {the} may be moving along, waiting or parked there.",
    ("vehicle", "snow"): "{The} may be travelling through a snowy region; roads and railways are used in winter too.",
    ("food", "room"): "Food is usually prepared and eaten indoors, so {the} may be part of a meal or a snack.",
    ("food", None): "{The} may be a snack that someone brought along to eat outside.",
    ("furniture", None): "Furniture belongs in a home, where people sit, sleep or keep plants, so {the} {is} part of the room.",
    ("electronic", "room"): "Electronic devices are used indoors for work, study and entertainment.",
    ("electronic", None): "People carry devices like {the} to stay in touch or look things up while they are out.",
    ("sports", None): "{The} {is} for playing, and open places like this leave room for games.",
    ("accessory", None): "People carry things like {the} with them when they go out.",
    ("indoor", None): "Things like {the} are usually kept inside a home.",
    ("person", None): "People come to places like this to work, travel or spend their free time.",
}
WHY_FALLBACK = "Such objects are often found {where}, so {the} fit{s} the setting."


class DialogueWriter(Protocol):
    """Writes the question-answer turns of a dialogue or complex-reasoning sample.

    Called once per sample with the picture's facts, the task ("dialogue" or "reasoning") and a
    seeded `random.Random`; returns one or more (question, answer) pairs, without `<image>` (the
    builder adds it to the first question). A pair that has a `kind` attribute (`dialogue.Turn`) is
    counted under that kind in the summary. A writer backed by a local LLM (the paper used
    GPT-3.5 on captions + boxes) can read `facts.captions` and `facts.objects[i].boxes`; it is
    called for every trial, so it may cache its answers by `facts.nsd_id`.
    """

    def __call__(self, facts: ImageFacts, task: str, rng: random.Random) -> list[QA]: ...


# ---------------------------------------------------------------------------------------------
# Grammar


def count_word(n: int) -> str:
    return COUNT_WORDS.get(n, str(n))


def noun_phrase(obj: ObjectFacts, *, size: bool = False) -> str:
    """'a cat', 'two cats', 'a small cat', '12 people'."""
    adjective = f"{SIZE_WORDS[obj.size]} " if size else ""
    if obj.count == 1:
        return f"{article(adjective + obj.name)} {adjective}{obj.name}"
    return f"{count_word(obj.count)} {adjective}{plural(obj.name)}"


def the(obj: ObjectFacts) -> str:
    """'the cat' or 'the cats'."""
    return f"the {obj.name}" if obj.count == 1 else f"the {plural(obj.name)}"


def be(obj: ObjectFacts) -> str:
    return "is" if obj.count == 1 else "are"


def join(phrases: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    phrases = list(phrases)
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def objects_phrase(facts: ImageFacts, *, size: bool = False) -> str:
    return join([noun_phrase(obj, size=size) for obj in facts.objects])


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def percent(fraction: float) -> str:
    return "less than 1%" if fraction < 0.01 else f"about {round(100 * fraction)}%"


def where_long(obj: ObjectFacts) -> str:
    """'on the left side of the picture, near the bottom'; spread instances are placed one by one."""
    if obj.count > 1 and len(set(obj.instance_horizontals)) > 1:
        groups = {h: obj.instance_horizontals.count(h) for h in ("left", "center", "right") if h in obj.instance_horizontals}
        parts = [f"{count_word(n)} {'in the center' if h == 'center' else 'on the ' + h}" for h, n in groups.items()]
        return "spread across the picture: " + join(parts)
    vertical = {"top": "near the top", "middle": "halfway up", "bottom": "near the bottom"}[obj.vertical]
    if obj.horizontal == "center":
        return {"top": "at the top center of the picture", "middle": "in the center of the picture",
                "bottom": "at the bottom center of the picture"}[obj.vertical]  # fmt: skip
    return f"on the {obj.horizontal} side of the picture, {vertical}"


def where_short(obj: ObjectFacts) -> str:
    """'on the left', 'at the top right', 'on the left and right' (for a prompt)."""
    if obj.count > 1 and len(set(obj.instance_horizontals)) > 1:
        sides = [h for h in ("left", "center", "right") if h in obj.instance_horizontals]
        return "across the picture" if len(sides) == 3 else f"on the {join(sides)}"
    if obj.horizontal == "center":
        return {"top": "at the top", "middle": "in the center", "bottom": "at the bottom"}[obj.vertical]
    if obj.vertical == "middle":
        return f"on the {obj.horizontal}"
    return f"at the {obj.vertical} {obj.horizontal}"


def there_are(obj: ObjectFacts) -> str:
    """'There is one cat' / 'There are two cats'."""
    return f"There {be(obj)} {count_word(obj.count)} {obj.name if obj.count == 1 else plural(obj.name)}"


# ---------------------------------------------------------------------------------------------
# Brief, detailed, reconstruction


def brief_answer(facts: ImageFacts, rng: random.Random) -> str:
    """One of the picture's captions (App. A.2: brief descriptions are the captions)."""
    return rng.choice(facts.captions)


def detailed_answer(facts: ImageFacts) -> str:
    """Several sentences: what, how many, where, how large, and the background."""
    where = f" {SETTING_PHRASES[facts.setting]}" if facts.setting else ""
    sentences = [f"The picture shows {objects_phrase(facts)}{where}."]
    if not facts.setting:
        sentences.append(f"{capitalize(facts.captions[0].rstrip('.'))}.")  # the setting, in a caption's words
    for obj in facts.objects:
        pronoun = "it is" if obj.count == 1 else "they are"
        sentences.append(
            f"{capitalize(the(obj))} {be(obj)} {where_long(obj)}; {pronoun} {SIZE_WORDS[obj.size]}, "
            f"taking up {percent(obj.area_fraction)} of the picture."
        )
    if len(facts.objects) > 1:
        largest = facts.objects[0]
        sentences.append(f"{capitalize(the(largest))} {'takes' if largest.count == 1 else 'take'} up the most space.")
    if facts.setting:
        sentences.append(SETTING_BACKGROUNDS[facts.setting])
    return " ".join(sentences)


def reconstruction_prompt(facts: ImageFacts) -> str:
    """A concise Stable Diffusion prompt naming every object, its count, size, position and the setting.

    This is the a_r of Eq. 4: the LLM's answer to Table 5's instruction conditions UnCLIP.
    """
    parts = [f"{noun_phrase(obj, size=True)} {where_short(obj)}" for obj in facts.objects]
    style = [SETTING_STYLES[facts.setting]] if facts.setting else []
    return ", ".join([f"a photo of {join(parts)}", *style, "high detail"])


# ---------------------------------------------------------------------------------------------
# Dialogue: questions whose answers are read off the facts


def dialogue_candidates(facts: ImageFacts, rng: random.Random, vocabulary: Sequence[str] = ()) -> list[QA]:
    """The plain questions about this picture (count, position, size, existence, objects, setting) with
    their answers: the dialogue references of `reference_answers`. The training dialogues are
    `neurochat.language.dialogue.dialogue_turns`, which also ask follow-ups and what cannot be told.

    One absent concept from `vocabulary` is asked about, so the references also hold a "no".
    """
    qa: list[QA] = []
    for obj in facts.objects:
        names = plural(obj.name)
        how_many = [f"How many {names} are there?", f"How many {names} can you see in the picture?", f"Can you count the {names}?"]
        qa.append((rng.choice(how_many), f"{there_are(obj)}."))
        where = [f"Where {be(obj)} {the(obj)}?", f"Where in the picture {be(obj)} {the(obj)}?"]
        qa.append((rng.choice(where), f"{capitalize(the(obj))} {be(obj)} {where_long(obj)}."))
        size = f"{SIZE_WORDS[obj.size]}, taking up {percent(obj.area_fraction)} of the picture"
        qa.append((f"How big {be(obj)} {the(obj)}?", f"{capitalize(the(obj))} {be(obj)} {size}."))
        qa.append((_is_there(obj.name, rng), f"Yes, {there_are(obj)[0].lower()}{there_are(obj)[1:]}, {where_short(obj)}."))
    absent = [name for name in vocabulary if name not in facts.names]
    if absent:
        name = rng.choice(absent)
        qa.append((_is_there(name, rng), f"No, there is no {name} in the picture."))
    what = ["What objects are in the picture?", "What can you see in this image?"]
    qa.append((rng.choice(what), f"The picture shows {objects_phrase(facts)}."))
    if facts.setting:
        setting = ["What is the setting?", "Where was this picture taken?", "What is the background?"]
        answer = f"The picture was taken {SETTING_PHRASES[facts.setting]}. {SETTING_BACKGROUNDS[facts.setting]}"
        qa.append((rng.choice(setting), answer))
    return qa


def _is_there(name: str, rng: random.Random) -> str:
    return rng.choice([f"Is there {article(name)} {name} in the picture?", f"Do you see {article(name)} {name}?"])


# ---------------------------------------------------------------------------------------------
# Complex reasoning: a small inference from the facts


def reasoning_candidates(facts: ImageFacts, rng: random.Random) -> list[QA]:
    """Questions that need a step of inference from the facts, with their answers."""
    qa: list[QA] = []
    largest = facts.objects[0]  # objects are sorted largest first
    takes = "takes" if largest.count == 1 else "take"
    main = ["What is the main subject of the picture, and how can you tell?", "What stands out most in this picture?"]
    qa.append((rng.choice(main), f"The main subject is {the(largest)}: {'it' if largest.count == 1 else 'they'} {takes} "
                                 f"up {percent(largest.area_fraction)} of the picture, more than anything else."))  # fmt: skip
    total = sum(obj.count for obj in facts.objects)
    if total > 1:
        qa.append(("How many objects are there in total?", f"There are {count_word(total)} objects in total: {objects_phrase(facts)}."))
    if len(facts.objects) > 1:
        others = join([the(obj) for obj in facts.objects[1:]])
        qa.append(("Which object takes up the most space in the picture?",
                   f"{capitalize(the(largest))} {takes} up the most space, {percent(largest.area_fraction)} of the picture, "
                   f"more than {others}."))  # fmt: skip
        relation = _left_right(facts.objects[0], facts.objects[1])
        if relation:
            qa.append(relation)
    if facts.setting:
        qa.append(_indoors_or_outdoors(facts))
        obj = rng.choice(facts.objects)
        qa.append((f"Why might {the(obj)} be {SETTING_PHRASES[facts.setting]}?", _why(obj, facts.setting)))
        if facts.setting == "snow":
            qa.append(("What season might it be?", "It is probably winter: the ground is covered in snow."))
    return qa


def _left_right(a: ObjectFacts, b: ObjectFacts) -> QA | None:
    """'Is the cat to the left or to the right of the dog?', when their sides clearly differ."""
    order = {"left": 0, "center": 1, "right": 2}
    if a.horizontal == b.horizontal or len(set(a.instance_horizontals)) > 1 or len(set(b.instance_horizontals)) > 1:
        return None
    side = "left" if order[a.horizontal] < order[b.horizontal] else "right"
    sides = {"left": "on the left", "center": "near the middle", "right": "on the right"}
    return (f"{capitalize(be(a))} {the(a)} to the left or to the right of {the(b)}?",
            f"{capitalize(the(a))} {be(a)} to the {side} of {the(b)}: {the(a)} {be(a)} {sides[a.horizontal]} "
            f"of the picture, and {the(b)} {be(b)} {sides[b.horizontal]}.")  # fmt: skip


def _indoors_or_outdoors(facts: ImageFacts) -> QA:
    question = "Is this scene indoors or outdoors, and why?"
    if facts.setting == "room":
        return question, f"It is indoors: the picture shows the inside of a room, with {objects_phrase(facts)} in it."
    return question, f"It is outdoors: {OUTDOOR_EVIDENCE[facts.setting]}."


def _why(obj: ObjectFacts, setting: str) -> str:
    keys = [(obj.name, setting), (obj.name, None), (obj.supercategory, setting), (obj.supercategory, None)]
    template = next((WHY_IN_SETTING[key] for key in keys if key in WHY_IN_SETTING), WHY_FALLBACK)
    words = {"the": the(obj), "The": capitalize(the(obj)), "is": be(obj), "its": "its" if obj.count == 1 else "their",
             "s": "s" if obj.count == 1 else "", "where": SETTING_PHRASES[setting]}  # fmt: skip
    return template.format(**words)
