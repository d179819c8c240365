"""The language extension of NSD (paper Sec. 3.3-3.4, App. A.2): instructions, facts, conversations.

    from neurochat.language import build_extension, parse_localization_request
    train, test, summary = build_extension(NSDDataset(root), seed=0)

Public names (later code relies on them):

- instruction lists: BRIEF_INSTRUCTIONS (Table 3), DETAILED_INSTRUCTIONS (Table 4),
  RECONSTRUCTION_INSTRUCTION (Table 5), LOCALIZATION_TEMPLATE (Table 6), IMAGE_TOKEN, TASKS;
- localization: localization_instruction(concept), localization_answer(concept),
  parse_localization_answer(text), parse_localization_request(text, vocabulary=None);
- building: build_extension(dataset, ...) -> (train, test, summary), DialogueWriter,
  TemplateDialogueWriter (its dialogues: `neurochat.language.dialogue`);
- unknown concepts: unknown_concept(text, vocabulary), unknown_concept_answer(phrase, vocabulary)
  (`neurochat.language.questions`); reading answers back: `neurochat.language.answers`;
- evaluation: reference_answers(facts), build_references(dataset) -> {73k id: answers per task};
- facts: ImageFacts, ObjectFacts, load_facts(dataset, nsd_ids).

Command line: `python -m neurochat.language build --root NSD_ROOT --out DIR`.
"""

from neurochat.language.extension import build_extension, build_references, reference_answers
from neurochat.language.facts import ImageFacts, ObjectFacts, load_facts
from neurochat.language.instructions import (
    BRIEF_INSTRUCTIONS,
    DETAILED_INSTRUCTIONS,
    IMAGE_TOKEN,
    LOCALIZATION_ANSWER_TEMPLATE,
    LOCALIZATION_TEMPLATE,
    RECONSTRUCTION_INSTRUCTION,
    RECONSTRUCTION_INSTRUCTIONS,
    TASKS,
    localization_answer,
    localization_instruction,
    parse_localization_answer,
    parse_localization_request,
)
from neurochat.language.dialogue import TemplateDialogueWriter
from neurochat.language.questions import unknown_concept, unknown_concept_answer
from neurochat.language.templates import DialogueWriter

__all__ = [
    "BRIEF_INSTRUCTIONS",
    "DETAILED_INSTRUCTIONS",
    "IMAGE_TOKEN",
    "LOCALIZATION_ANSWER_TEMPLATE",
    "LOCALIZATION_TEMPLATE",
    "RECONSTRUCTION_INSTRUCTION",
    "RECONSTRUCTION_INSTRUCTIONS",
    "TASKS",
    "DialogueWriter",
    "ImageFacts",
    "ObjectFacts",
    "TemplateDialogueWriter",
    "build_extension",
    "build_references",
    "load_facts",
    "localization_answer",
    "localization_instruction",
    "parse_localization_answer",
    "parse_localization_request",
    "reference_answers",
    "unknown_concept",
    "unknown_concept_answer",
]
