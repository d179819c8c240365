"""The vocabulary and its one finder of concept mentions."""

import pytest

from neurochat import vocabulary
from neurochat.sim import concepts
from neurochat.vocabulary import CONCEPT_NAMES, mentions, name_forms, plural


def test_the_simulator_reads_the_same_vocabulary():
    assert concepts.CONCEPT_NAMES is CONCEPT_NAMES and concepts.OBJECTS is vocabulary.OBJECTS


def test_plurals():
    assert [plural(n) for n in ("bus", "sheep", "sky", "cat", "person")] == ["buses", "sheep", "skies", "cats", "people"]
    assert name_forms("sky") == ("sky", "skies")
    assert name_forms("sky", "suffix") == ("sky", "skys", "skyes")
    with pytest.raises(ValueError, match="plurals"):
        name_forms("sky", "latin")


def test_mentions_in_order_of_first_mention_whole_words_any_case():
    text = "A Teddy bear beside two DOGS on the beach; a catalogue, no cat."
    assert mentions(text) == ["teddy bear", "bear", "dog", "beach", "cat"]
    assert mentions("two buses and three sheep", ["sheep", "bus"]) == ["bus", "sheep"]
    assert mentions("", CONCEPT_NAMES) == [] and mentions("nothing here") == []


def test_free_text_plurals_and_letter_boundaries():
    # "suffix": any s/es plural; "letter": digits, "_" and "-" separate words, and stand for a space
    assert mentions("skies", ["sky"]) == ["sky"] and mentions("skies", ["sky"], plurals="suffix") == []
    assert mentions("cats2 teddy-bear", ["cat", "teddy bear"]) == []
    assert mentions("cats2 teddy-bear", ["cat", "teddy bear"], plurals="suffix", boundary="letter") == ["cat", "teddy bear"]
    assert mentions("a t-shirt", ["t-shirt"], boundary="letter") == []  # letter mode knows letters and spaces only
    with pytest.raises(ValueError, match="boundary"):
        mentions("cat", boundary="space")
