"""What generation hands back: a reply, a stream of text pieces, and the one logits processor the
explorer asks for (`NamesEachConceptOnce`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from neurochat.vocabulary import mentions, name_forms


@dataclass
class Reply:
    """One generated answer."""

    text: str
    token_ids: list[int]
    notes: list[str]  # how the prompt was fitted into the context (dropped turns), for the user to see
    prompt_tokens: int


class ChatStream:
    """Text pieces as the model writes them (`TextIteratorStreamer` on a thread).

    `notes` is known before the first piece; `text` holds everything streamed so far; `cancel()`
    stops the generation after the current token (a UI's stop button). Errors in the generation
    thread are raised in the reader's thread when the stream ends.
    """

    def __init__(self, run, streamer, notes: list[str], cancelled: threading.Event):
        self.notes = notes
        self.text = ""
        self._streamer = streamer
        self._cancelled = cancelled
        self._error: BaseException | None = None

        def target():
            try:
                run()
            except BaseException as error:  # noqa: BLE001 — handed to the reader below
                self._error = error
                streamer.end()  # unblock the reader

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            self.text += piece
            yield piece
        self._thread.join()
        if self._error is not None:
            raise self._error


class NamesEachConceptOnce:
    """A logits processor: once the answer has named a concept, it cannot name it again.

    For answers that list a picture's objects, such as the reconstruction prompt of Table 5: SimNSD's
    scenes hold distinct objects and their prompts name each once ("two apples", never "an apple ...
    an apple"), yet a small LM unsure of the second object tends to repeat the first. Banning the
    repeat makes greedy decoding take its next most probable object instead. A concept counts as
    named when `neurochat.vocabulary.mentions` finds it in the decoded answer (singular or plural, a
    whole word; a name inside another counts too, "dog" in "hot dog"); its spellings with a leading
    space, lower case and capitalised, are then banned (a multi-token spelling's last token after
    the others, as transformers' bad-words processor does).

    `excluded` concepts count as named from the start: the answer never names them (the prompt of a
    reconstruction after the user removed them from the brain must not ask the decoder to draw them).
    """

    def __init__(self, tokenizer, concepts: Sequence[str], excluded: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.concepts = list(dict.fromkeys([*concepts, *excluded]))
        self.excluded = list(dict.fromkeys(excluded))
        self.spellings = {}
        for concept in self.concepts:
            forms = set(name_forms(concept))
            words = forms | {f[:1].upper() + f[1:] for f in forms}
            self.spellings[concept] = [tokenizer.encode(" " + w, add_special_tokens=False) for w in sorted(words)]
        self.prompt_length: int | None = None  # generation from embeddings passes only the new ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            for concept in dict.fromkeys([*self.excluded, *mentions(text, self.concepts)]):
                for spelling in self.spellings[concept]:
                    if len(spelling) == 1 or ids[len(ids) - len(spelling) + 1 :] == spelling[:-1]:
                        scores[row, spelling[-1]] = -float("inf")
        return scores


def until_stop(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stop_ids:
            return ids[:i]
    return ids
