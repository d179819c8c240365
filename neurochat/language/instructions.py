"""The paper's instruction lists (App. A.2, Tables 3-6), and the localization sentence with its parsers.

Tables 3-6 are copied from the paper. They are LLaVA's instruction lists; two characters are fixed
where the PDF text is garbled: Table 3's "photo´s" (an acute accent) is written "photo's", and the
missing closing quote after "Share a concise interpretation of the image provided." is dropped.

Concept localization (Sec. 4.4) needs the concept back from the LLM's answer, so the answer is one
fixed sentence (`localization_answer`) that `parse_localization_answer` reads exactly. Users type
requests in many ways; `parse_localization_request` finds the concept in the usual phrasings.
"""

from __future__ import annotations

import re
from typing import Iterable

from neurochat.vocabulary import mentions

# The fMRI placeholder (Sec. 3.4): "<human>: [image] [instruction]". It appears exactly once per
# conversation, at the start of the first human turn, and is replaced by the fMRI embeddings t.
IMAGE_TOKEN = "<image>"

TASKS: tuple[str, ...] = ("brief", "detailed", "dialogue", "reasoning", "reconstruction", "localization")

# Table 3: instructions for brief description.
BRIEF_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.",
    "Summarize the visual content of the image.",
    "Provide a brief description of the image.",
    "Describe the image briefly.",
    "Summarize the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the photo.",
    "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.",
)

# Table 4: instructions for detailed description.
DETAILED_INSTRUCTIONS: tuple[str, ...] = (
    "Describe the following image in detail.",
    "Provide a detailed description of the given image.",
    "Give an elaborate explanation of the image you see.",
    "Share a comprehensive rundown of the presented image.",
    "Offer a detailed description of the image.",
    "Describe the image in detail.",
    "Offer a thorough analysis of the image.",
    "Provide a detailed explanation of the subsequent image.",
    "Explain the various aspects of the image before you.",
    "Clarify the contents of the displayed image with great detail.",
    "Characterize the image using a well-detailed description.",
    "Break down the elements of the image in a detailed manner.",
    "Walk through the important details of the image.",
    "Portray the image with a rich, descriptive narrative.",
    "Narrate the contents of the image with precision.",
    "Analyze the image in a comprehensive and detailed manner.",
    "Illustrate the image through a descriptive explanation.",
    "Explain the image in detail.",
    "Examine the image closely and share its details.",
    "Write an exhaustive depiction of the given image.",
)

# Table 5: the instruction for instruction reconstruction; the answer is the prompt a_r of Eq. 4.
RECONSTRUCTION_INSTRUCTION = "Provide the corresponding Stable Diffusion prompts for the image."
RECONSTRUCTION_INSTRUCTIONS: tuple[str, ...] = (RECONSTRUCTION_INSTRUCTION,)

# Table 6: the instruction for concept localization; "<object>" is replaced by the concept.
LOCALIZATION_TEMPLATE = 'Locating the concept of "<object>"'
_OBJECT_SLOT = "<object>"

# What the model is trained to answer: the Table 6 sentence again (so the concept can be parsed back
# from the model's words), then a short confirmation.
LOCALIZATION_ANSWER_TEMPLATE = 'Locating the concept of "<object>". I highlighted the brain regions most relevant to "<object>".'


def localization_instruction(concept: str) -> str:
    """Table 6's instruction for `concept`: 'Locating the concept of "cat"'."""
    return LOCALIZATION_TEMPLATE.replace(_OBJECT_SLOT, _check_concept(concept))


def localization_answer(concept: str) -> str:
    """The answer the model learns for a localization request; `parse_localization_answer` inverts it."""
    return LOCALIZATION_ANSWER_TEMPLATE.replace(_OBJECT_SLOT, _check_concept(concept))


def _check_concept(concept: str) -> str:
    concept = concept.strip()
    if not concept or any(q in concept for q in _QUOTES):
        raise ValueError(f"concept {concept!r} must be a non-empty name without quote characters")
    return concept


# ---------------------------------------------------------------------------------------------
# Parsing

_QUOTES = "\"'“”‘’«»`"
_QUOTED = re.compile(r"[\"“”«`]([^\"“”«»`]+)[\"“”»`]|(?<![A-Za-z])['‘]([^'‘’]+)['’](?![A-Za-z])")
# The model's answer: 'Locating the concept of "cat"...' (any quote style, any case).
_ANSWER = re.compile(r"locat\w*\s+(?:the\s+)?concepts?\s+(?:of\s+)?[\"“'‘«`]([^\"“”'‘’«»`]+)[\"”'’»`]", re.IGNORECASE)
_ANSWER_FALLBACKS = (
    re.compile(r"relevant\s+to\s+[\"“'‘«`]([^\"“”'‘’«»`]+)[\"”'’»`]", re.IGNORECASE),
    re.compile(r"locat\w*\s+(?:the\s+)?concepts?\s+(?:of\s+)?([a-z][a-z -]*[a-z])", re.IGNORECASE),  # unquoted
)

# Words that make a sentence a localization request rather than a question about the picture:
# "Where is the dog?" asks about the image; "where is the dog in this brain?" asks for a heatmap.
_REQUEST_CUE = re.compile(
    r"\b(locat\w*|locali[sz]\w*|concept\w*|brain\w*|cortex|cortical|voxels?|neurons?|regions?|"
    r"represent\w*|encod\w*|heat\s*maps?|activation\w*|selectiv\w*|grad-?cam|highlight\w*)\b",
    re.IGNORECASE,
)
# A request that says "picture" and nothing of the brain is about the picture: "Which region of the
# picture is the dog in?", "Locate the dog in the image".
_PICTURE_WORD = re.compile(r"\b(?:picture|image|photo|photograph|stimulus|frame)s?\b", re.IGNORECASE)
_BRAIN_WORD = re.compile(
    r"\b(?:brain\w*|cortex|cortical|voxels?|neurons?|heat\s*maps?|activation\w*|selectiv\w*|grad-?cam|"
    r"represent\w*|encod\w*|concepts?|fmri|recording)\b",
    re.IGNORECASE,
)
# "<verb> [me] [where] [the concept of] X ..." and "where is/are [the concept] X ..."
_REQUEST_PATTERNS = (
    re.compile(r"\bconcepts?\s+(?:of\s+|for\s+|called\s+)?(?P<x>.+)", re.IGNORECASE),
    re.compile(
        r"\b(?:locate|locating|locali[sz]e|locali[sz]ing|find|show|highlight|map)\s+(?:me\s+)?(?:where\s+)?"
        r"(?P<x>.+)",
        re.IGNORECASE,
    ),
    # "... encode cell phones", "... respond to a giraffe" (not "represented in the brain")
    re.compile(
        r"\b(?:encod\w*|represent\w*|process\w*|(?:respond\w*|react\w*)\s+to|selective\s+(?:to|for))\s+(?!in\b|within\b|by\b|on\b|at\b)(?P<x>.+)",
        re.IGNORECASE,
    ),
    re.compile(r"\bheat\s*maps?\s+(?:of|for)\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bwhere(?:'s|’s|\s+(?:is|are|does|do|would))\s+(?P<x>.+)", re.IGNORECASE),
    re.compile(r"\bwhich\s+(?:brain\s+)?(?:regions?|areas?|voxels?)\s+\w+\s+(?:to\s+)?(?P<x>.+)", re.IGNORECASE),
)
# Trailing words after the concept: "... in this brain?", "... represented", "... is located".
_TAIL = re.compile(
    r"\s+(?:is|are|gets?|lives?|sits?|in|on|within|inside|across|over|for|of|to|from|at|located|represented|"
    r"encoded|processed|stored|found|activ\w*|respond\w*|please|here)\b.*$",
    re.IGNORECASE,
)
_LEADING = re.compile(
    r"^(?:the|a|an|this|that|some|any|concepts?|of|for|where|is|are|brain|areas?|regions?|voxels?)\s+", re.IGNORECASE
)


def parse_localization_answer(text: str) -> str | None:
    """The concept named in a localization answer, or None if `text` is not one.

    'Locating the concept of "cat". I highlighted ...' -> 'cat'. Any quote style and case is
    accepted; the concept keeps its own case and is stripped of spaces.
    """
    for pattern in (_ANSWER, *_ANSWER_FALLBACKS):
        match = pattern.search(text or "")
        if match and match.group(1).strip():
            return match.group(1).strip()
    return None


def parse_localization_request(text: str, vocabulary: Iterable[str] | None = None) -> str | None:
    """The concept a user asks to localize, or None if `text` is not a localization request.

    Understands Table 6's 'Locating the concept of "cat"', 'locate "teddy bear"', 'localize cat',
    'where is the cat in this brain?', 'show me where dogs are represented', 'which regions respond
    to beach?'. A quoted phrase wins; otherwise the words after the verb, without articles and
    trailing 'in this brain'. A question about the picture ('Where is the dog?') has no localization
    cue (locate, concept, brain, region, represented, ...) and gives None; so has one that names the
    picture and nothing of the brain ('Which region of the picture is the dog in?', 'Locate the dog
    in the image').

    With `vocabulary` (known concept names) the result is snapped to a vocabulary name: exact, then
    singular ('cats' -> 'cat'), then a vocabulary name contained in the phrase; None if none fits.
    The result is lower case.
    """
    text = (text or "").strip()
    if not text or not _REQUEST_CUE.search(text):
        return None
    if _PICTURE_WORD.search(text) and not _BRAIN_WORD.search(text):
        return None  # "where in the picture", not "where in the brain"
    phrase = None
    quoted = _QUOTED.search(text)
    if quoted:
        phrase = quoted.group(1) or quoted.group(2)
    else:
        for pattern in _REQUEST_PATTERNS:
            match = pattern.search(text)
            if match:
                phrase = match.group("x")
                break
    if phrase is not None:
        phrase = _clean_phrase(phrase)
    if vocabulary is not None:
        return _snap(phrase, text, vocabulary)
    return phrase or None


def _clean_phrase(phrase: str) -> str:
    phrase = re.split(r"[?!.;,:\n]", phrase, maxsplit=1)[0]
    phrase = phrase.strip(" " + _QUOTES)
    previous = None
    while previous != phrase:  # peel "the concept of the ..." one word at a time
        previous = phrase
        phrase = _LEADING.sub("", phrase).strip(" " + _QUOTES)
    phrase = _TAIL.sub("", phrase).strip(" " + _QUOTES)
    return phrase.lower()


def _snap(phrase: str | None, text: str, vocabulary: Iterable[str]) -> str | None:
    """The vocabulary concept that `phrase` (or, failing that, the whole request) names.

    Users' free text: any "s" or "es" plural counts and only letters bound a word ("teddy-bear"), so
    `mentions(..., plurals="suffix", boundary="letter")`. Of several names the longest wins ("teddy
    bear" before "bear"), and of equally long ones the first mentioned.
    """
    names = list(dict.fromkeys(v.lower() for v in vocabulary))
    if phrase:
        for candidate in (phrase, _singular(phrase)):
            if candidate in names:
                return candidate
    for source in (phrase, text):  # the extracted phrase first, then the whole request
        found = mentions(source or "", names, plurals="suffix", boundary="letter")
        if found:
            return max(found, key=len)
    return None


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "uses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
