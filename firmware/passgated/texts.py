"""The guard page's words, per language: ``locales/<code>.json`` beside this module.

English is the reference: every other catalog has exactly its keys, plus a ``reason`` text for
each ``passgate.Reason`` (English takes those from the SDK, ``Reason.text``, and shows the gate's own
words, which may say more: "All entries used (3 of 3)"). To add a language, copy ``en.json`` to
``<code>.json``, translate the values (keep ``{age}`` and ``{n}``), add a ``reason`` text for every
reason code (``de.json`` has them all), and run ``tests/firmware/test_texts.py``; then
``[display] language = "<code>"``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from passgate import Reason

REFERENCE = "en"


def languages() -> tuple[str, ...]:
    """The language codes shipped, sorted."""
    folder = resources.files(__package__).joinpath("locales")
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")))


@functools.cache
def catalog(language: str) -> dict[str, Any]:
    """One language's words for the guard page (``ValueError`` for a language not shipped)."""
    if language not in languages():
        raise ValueError(f"no guard page texts for language {language!r} (shipped: {', '.join(languages())})")
    words: dict[str, Any] = json.loads(resources.files(__package__).joinpath(f"locales/{language}.json")
                                       .read_text(encoding="utf-8"))
    if language == REFERENCE:
        words["reason"] = {str(reason): reason.text for reason in Reason}
    return words
