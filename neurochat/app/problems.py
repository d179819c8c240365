"""How a handler's failure reaches a person: as a sentence (a warning toast and the status line).

A `Problem` is a friendly refusal (nothing was started); NeuroChat's own errors are sentences
already; anything else is logged with its traceback and summarised in a sentence.
"""

from __future__ import annotations

import functools
import inspect


class Problem(Exception):
    """A friendly refusal inside the app (e.g. no trial chosen yet)."""


def guarded(doing: str):
    """Turn every exception of a handler into a sentence in the UI; a generator stays a generator.

    NeuroChat's own errors already are sentences; anything else is logged with its traceback for the
    developer, and the person sees what failed and where to look. The handler's object turns the error
    into the page's update (`SessionHandlers._problem`), since only it knows the components.
    """

    def decorate(method):
        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def stream(self, *args, **kwargs):
                try:
                    yield from method(self, *args, **kwargs)
                except Exception as error:  # noqa: BLE001 — shown as a sentence, logged in full
                    yield self._problem(error, doing, args)

            return stream

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as error:  # noqa: BLE001 — shown as a sentence, logged in full
                return self._problem(error, doing, args)

        return call

    return decorate


def sentence(text: str) -> str:
    """Capitalise a message's first word, unless it is a name ("notes.txt is not ...", "'zebr' is ...")."""
    text = str(text).strip()
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first.islower() else text
