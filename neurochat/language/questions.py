"""Questions about things the picture world does not have: found before the LLM is asked.

The demo LLM knows only its world's words. Asked about a unicorn it answers about something it knows
("Where is the unicorn in the brain?" -> "The umbrella is on the right"). So the explorer asks
`unknown_concept` first: if the question is about a thing (the noun phrase after "is there", "where
is", "how many", "do you see", "locate", ...) that names no concept of the vocabulary, no scene word
and no generic word ("animal", "object", "it", "anything", "background"), the answer is
`unknown_concept_answer`, a fixed sentence saying that the world has no such concept, whatever the
wording, and the LLM is not asked.

A question about the picture ("Where is the dog?") and one about the brain ("Where is the dog in the
brain?") stay apart: the second has a localization cue (`parse_localization_request`); both are
checked here for unknown concepts.

A yes/no question about one object ("Is there a dog in the picture?") is answered from the LLM's own
list of what it sees (`existence_target`, `existence_from_listing`): the small demo LLM, asked
directly, answers yes or no at chance even when its list names the object, so the chat reads the
verdict off the list and says so, and never contradicts its own description.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Sequence

from neurochat.language.answers import SCENE_WORDS, read_count
from neurochat.language.instructions import _singular, parse_localization_request
from neurochat.language.templates import count_word
from neurochat.vocabulary import SCENES, asserted_mentions, mentions, plural

# Where a thing is named: the noun phrase right after these.
_SLOT_TRIGGERS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(?:is|are)\s+there\s+",
        r"\bthere(?:'s|’s|\s+is|\s+are)\s+",
        r"\b(?:see|spot|notice|find)\s+",
        r"\b(?:picture|image|photo|photograph|scene|it)\s+(?:have|has|contains?|shows?|includes?)\s+",
        r"\bany\s+",
        r"\bwhere(?:'s|’s|\s+is|\s+are|\s+was|\s+were)\s+",
        r"\bhow\s+many\s+(?!(?:are|is|do|does|can|could|of|were|was)\b)",
        r"\bcount\s+",
        r"\bwhat\s+(?:colou?r|size|kind|breed|type)\s+(?:is|are)\s+",
        r"\bhow\s+(?:big|large|small|tall|wide|old)\s+(?:is|are)\s+",
        r"\bwhat\s+(?:is|are)\s+(?=(?:the\s+|a\s+|an\s+)?[\w' -]+?\s+doing\b)",
        r"\babout\s+",
        r"\bdescribe\s+",
        r"\b(?:is|are)\s+(?=(?:a|an)\s+[\w' -]+?\s+(?:visible|present|there|shown|in)\b)",
        r"^\W*(?:and|what about|how about)\s+(?=(?:the|a|an)\s)",
    )
]
# Words that end the noun phrase: prepositions, verbs, adverbs, conjunctions.
_PHRASE_END = set(
    "in on at of near next to from with by inside under over behind beside around above below here there "
    "anywhere somewhere visible present shown doing located represented and or but is are was were do does "
    "can could would should be been have has look looks looking sitting standing please too also now instead "
    "then so still really actually exactly "
    "left right top bottom that which who this these those".split()
)  # fmt: skip
# Leading words of a noun phrase that say nothing about what the thing is.
_MODIFIERS = set(
    "a an the any some other another more one two three four five six seven eight nine ten many few several "
    "big small little large tiny huge giant red green blue yellow white black brown grey gray orange pink purple "
    "main first second third last whole entire real single".split()
)  # fmt: skip
# Words that mean "whatever is there" or the picture itself: never an unknown concept.
GENERIC_WORDS = set(
    "it its they them this that these those one ones else anything something everything nothing anyone "
    "someone everyone nobody me you us what where how which who "
    "thing things object objects item items stuff subject subjects animal animals creature creatures "
    "vehicle vehicles food foods furniture device devices electronics electronic sports accessory "
    "accessories family kind kinds type types "
    "picture pictures image images photo photos photograph scene scenes setting settings background "
    "foreground ground place places view landscape environment surroundings area part side corner middle center "
    "centre edge weather time day season color colour colors colours size sizes shape shapes number count "
    "difference differences detail details idea clue guess information info reason answer question way chance "
    "cloud clouds water wall walls floor window windows road sun light lighting shadow shadows horizon".split()
)  # fmt: skip
_WORD = re.compile(r"[a-z][a-z'’-]*")


def unknown_concept(text: str, vocabulary: Iterable[str]) -> str | None:
    """The thing `text` asks about if the world has no such concept, else None.

    `vocabulary`: every concept the world knows (objects and scenes). None also when the question
    names no thing ("What is the setting?") or only generic ones ("Is there an animal?", "Where is
    it?"); a scene word ("the sea") counts as known. The result is the asked phrase in lower case,
    its last word singular ("unicorns" -> "unicorn").
    """
    names = list(vocabulary)
    text = (text or "").strip()
    if not text or not names:
        return None
    phrases = [parse_localization_request(text)] if parse_localization_request(text, names) is None else []
    for trigger in _SLOT_TRIGGERS:
        phrases += [_noun_phrase(text[match.end() :]) for match in trigger.finditer(text)]
    for phrase in phrases:
        unknown = _unknown(phrase, names)
        if unknown is not None:
            return unknown
    return None


def _noun_phrase(rest: str) -> str:
    """The words right after a trigger, up to punctuation or a word that ends a noun phrase (at most four)."""
    rest = re.sub(r"[\"“”«»`]|(?<![a-z])['‘]|['’](?![a-z])", " ", rest.lower())  # quotes around a name are not punctuation
    rest = re.split(r"[?.!,;:()\n]", rest, maxsplit=1)[0]
    words = []
    for raw in rest.split():
        word = raw.lower().strip("'’`-")
        if word.endswith(("'s", "’s")):  # "the dog's collar": the owner is the thing asked about
            words.append(word[:-2])
            break
        if not _WORD.fullmatch(word) or word in _PHRASE_END:
            break
        words.append(word)
        if len(words) == 4:
            break
    return " ".join(words)


def _unknown(phrase: str | None, names: Sequence[str]) -> str | None:
    if not phrase:
        return None
    words = phrase.lower().split()
    while words and words[0] in _MODIFIERS:
        words = words[1:]
    if not words or any(word in GENERIC_WORDS or _singular(word) in GENERIC_WORDS for word in words):
        return None
    text = " ".join(words)
    if mentions(text, names, plurals="suffix", boundary="letter") or mentions(text, names):
        return None
    if any(pattern.search(text) for pattern in SCENE_WORDS.values()):
        return None  # "the sea", "a field": the scene, in other words
    return " ".join(words[:-1] + [_singular(words[-1])])


def unknown_concept_answer(phrase: str, vocabulary: Iterable[str], world: str = "the demo world") -> str:
    """The answer to a question about `phrase`, which `world` has no concept of; close names are suggested."""
    names = list(vocabulary)
    objects = [name for name in names if name not in SCENES]
    scenes = [name for name in names if name in SCENES]
    close = difflib.get_close_matches(phrase, names, n=2, cutoff=0.75)
    # the suggestions and the list are questions: they name concepts without saying that they are in the
    # picture (the app makes chips only of what an answer asserts, `asserted_mentions`)
    offer = (f"Did you mean {' or '.join(f'“{c}”' for c in close)}? " if close else "") + (
        f"Would you like to ask about one of the {len(objects)} objects it knows ({', '.join(objects)}) "
        f"or its {len(scenes)} settings ({', '.join(scenes)})?"
    )
    return f"There is no “{phrase}” in {world}, so I cannot see one in this picture or locate one in the brain. {offer}"


# ---------------------------------------------------------------------------------------------
# Yes/no questions about one object, answered from the LLM's own list

OBJECT_LIST_QUESTION = "What objects are in the picture?"
_EXISTENCE = re.compile(
    r"^\W*(?:(?:is|are)\s+there|(?:do|can|could)\s+you\s+(?:see|spot|find)|"
    r"does\s+(?:the|this)\s+(?:picture|image|photo)\s+(?:show|contain|have|include))\s+"
    r"(?:(?:a|an|any|some)\s+)?(?P<noun>[a-z][a-z -]*?)"
    r"(?:\s+(?:in|on)\s+(?:the|this)\s+(?:picture|image|photo|scene))?(?:\s+(?:here|there|visible))?\s*[?.!]*\s*$",
    re.IGNORECASE,
)


def existence_target(text: str, objects: Iterable[str]) -> str | None:
    """The object a plain yes/no question asks about ("Is there a dog in the picture?", "Do you see any
    dogs?" -> "dog"), else None: questions with more to them ("Is there a dog on the left?", "Is there a
    dog and a ball?") and questions about scenes go to the LLM as they are."""
    match = _EXISTENCE.match((text or "").strip())
    if match is None:
        return None
    noun = match["noun"].lower().strip()
    for name in objects:
        if noun in (name, plural(name), name + "s"):
            return name
    return None


def existence_from_listing(name: str, listing: str, objects: Iterable[str]) -> str:
    """The answer to "Is there a `name`?" read off `listing`, the LLM's answer to `OBJECT_LIST_QUESTION`
    about the same recording: yes, with its count, when the listing names the object, else no. Worded
    as the training dialogues word it, so that follow-up questions read a familiar history."""
    if name not in asserted_mentions(listing, list(objects)):
        return f"No, there is no {name} in the picture."
    count = read_count(listing, name) or 1
    thing = f"one {name}" if count == 1 else f"{count_word(count)} {plural(name)}"
    return f"Yes, there {'is' if count == 1 else 'are'} {thing} in the picture."


def listing_note(listing: str) -> str:
    """What the user is told about an answer read off the LLM's list."""
    return f"Answered from what the model lists for this recording: “{listing.strip()}”"
