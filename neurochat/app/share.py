"""A view of the explorer as a link or a small JSON, and back: subject, trial, protocol, β, seed, removed concepts.

    ?subject=subj01&trial=2950&protocol=averaged&beta=0.5&seed=3&remove=dog,ball
    {"subject": "subj01", "trial": 2950, "protocol": "averaged", "beta": 0.5, "seed": 3, "remove": ["dog", "ball"]}

`share_query(session, beta, seed)` and `share_json(...)` write them; `parse_shared(source, subjects)` reads
either form back (a whole link, its query string, the query's parameters as a mapping, or the JSON) and
refuses a bad value with a sentence that names it and says what to do. A parameter left out means the
page's default. Whether the subject saw that trial and whether a concept is known are the explorer's to
say; the page asks it when the view is opened (`SessionHandlers._open_view`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from neurochat.app.problems import Problem
from neurochat.trial import PROTOCOLS

PARAMETERS = ("subject", "trial", "protocol", "beta", "seed", "remove")
GRADIO_PARAMETERS = ("view",)  # Gradio's own (`?view=api`, and every `__name`): not ours to refuse


@dataclass(frozen=True)
class SharedView:
    """What a link reopens; None (or no concepts) leaves the page's default."""

    subject: str | None = None
    trial: int | None = None  # the NSD image number
    protocol: str | None = None  # "averaged" or "single"
    beta: float | None = None
    seed: int | None = None
    remove: tuple[str, ...] = ()  # concepts ablated, as unticked chips


def shared_view(session, beta, seed) -> SharedView:
    """The view a tab shows: its trial and removed concepts (`Session`), with the page's β and seed."""
    trial = session.trial if session is not None else None
    if trial is None:
        raise Problem("Open a trial first: a link reopens a trial of the dataset.")
    if trial.upload is not None:
        raise Problem("An uploaded volume lives only in this tab: a link can reopen a trial of the dataset, "
                      "not an uploaded file.")  # fmt: skip
    return SharedView(trial.subject, trial.nsd_id, trial.protocol, _beta(beta), _seed(seed), tuple(trial.removed))


def share_query(session, beta, seed) -> str:
    """The query string ("?subject=…&trial=…") that reopens this tab's view: every setting is written out,
    so the link opens the same view even where the page's defaults differ."""
    view = shared_view(session, beta, seed)
    query = {"subject": view.subject, "trial": view.trial, "protocol": view.protocol, "beta": f"{view.beta:g}",
             "seed": view.seed}  # fmt: skip
    if view.remove:
        query["remove"] = ",".join(view.remove)
    return "?" + urllib.parse.urlencode(query, safe=",", quote_via=urllib.parse.quote)


def share_json(session, beta, seed) -> str:
    """The same view as one line of JSON (for notes and scripts); `parse_shared` reads it back."""
    view = shared_view(session, beta, seed)
    return json.dumps({"subject": view.subject, "trial": view.trial, "protocol": view.protocol, "beta": view.beta,
                       "seed": view.seed, "remove": list(view.remove)})  # fmt: skip


def parse_shared(source: str | Mapping | None, subjects: Sequence[str]) -> SharedView:
    """The view a link, its query string, its parameters (a mapping) or the JSON names; `subjects` are the
    dataset's. An empty source is the default view; a bad value raises a `Problem` naming it."""
    params = _parameters(source)
    for key in params:
        if key not in PARAMETERS and key not in GRADIO_PARAMETERS and not key.startswith("__"):
            raise Problem(f"The link has an unknown setting '{key}': it may set {', '.join(PARAMETERS)}.")
    subject, trial, protocol, beta, seed, remove = (params.get(key) for key in PARAMETERS)
    if subject is not None and subject not in subjects:
        raise Problem(f"The link's subject '{subject}' is not in this dataset: use one of {', '.join(subjects)}.")
    if trial is not None and not (trial.isascii() and trial.isdigit()):
        raise Problem(f"The link's trial '{trial}' is not an NSD image number: give the number the trial "
                      "list shows (e.g. trial=2950).")  # fmt: skip
    if protocol is not None and protocol not in PROTOCOLS:
        raise Problem(f"The link's protocol '{protocol}' is unknown: use 'averaged' (the mean of the "
                      "repetitions) or 'single' (the first repetition).")  # fmt: skip
    names = [name.strip() for name in (remove or "").split(",") if name.strip()]
    for name in names:
        if names.count(name) > 1:
            raise Problem(f"The link removes '{name}' twice: name each concept once.")
    return SharedView(subject, None if trial is None else int(trial), protocol,
                      None if beta is None else _beta(beta, "The link's "),
                      None if seed is None else _seed(seed, "The link's "), tuple(names))  # fmt: skip


def _parameters(source) -> dict[str, str]:
    """The settings as text, whatever form they came in (a link, a query string, a mapping, the JSON)."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(key): str(value) for key, value in source.items()}
    text = str(source).strip()
    if text.startswith(("{", "[")):
        return _json_parameters(text)
    query = text.split("#", 1)[0].split("?", 1)[-1]  # a whole link, "?a=b" or "a=b"
    if text and "=" not in query:
        raise Problem(f"'{_clip(text)}' is neither a link of this page nor its JSON: paste what the share "
                      "panel shows.")  # fmt: skip
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    params = {}
    for key, value in pairs:
        if key in params:
            raise Problem(f"The link sets '{key}' twice ({params[key]!r} and {value!r}): keep one.")
        params[key] = value
    return params


def _json_parameters(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise Problem(f"The pasted JSON cannot be read ({error.msg} at character {error.pos}): paste the JSON "
                      "the share panel shows.") from None  # fmt: skip
    if not isinstance(data, dict):
        raise Problem("The pasted JSON must be one object such as {\"subject\": \"subj01\", \"trial\": 2950}.")
    params = {}
    for key, value in data.items():
        if value is None:
            continue  # left out: the page's default
        if key == "remove" and isinstance(value, list):
            if not all(isinstance(name, str) for name in value):
                raise Problem(f"The JSON's remove must list concept names, not {value!r}.")
            value = ",".join(value)
        elif isinstance(value, (bool, list, dict)):
            raise Problem(f"The JSON's {key} cannot be {json.dumps(value)}: give a name or a number.")
        params[str(key)] = str(value)
    return params


def _beta(value, whose: str = "") -> float:
    try:
        beta = float(value)
    except (TypeError, ValueError):
        raise Problem(f"{whose}β '{value}' is not a number: give one from 0 to 1.") from None
    if not 0.0 <= beta <= 1.0:
        raise Problem(f"{whose}β = {beta:g} is outside 0…1: it is the share of noise mixed into the brain's "
                      "VAE latent.")  # fmt: skip
    return round(beta, 4)  # the slider's steps kept, its float dust (0.15000000000000002) dropped


def _seed(value, whose: str = "") -> int:
    try:
        seed = float(value)
    except (TypeError, ValueError):
        seed = None
    if seed is None or not seed.is_integer() or seed < 0:
        raise Problem(f"{whose}seed '{value}' is not a whole number ≥ 0: give one such as 0 or 3.")
    return int(seed)


def _clip(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
