"""The guard page's languages: every catalog says everything English says, keeps its placeholders,
and gives every refusal reason words; a gate set to a language not shipped does not start."""

from __future__ import annotations

import re
from typing import Any

import pytest

from passgate import Reason
from passgated import texts
from passgated.config import ConfigError, parse_config
from passgated.display import STATES


def keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


def leaves(tree: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in leaves(value).items()})
        else:
            out[key] = value
    return out


def test_english_and_at_least_one_other_language_are_shipped() -> None:
    assert "en" in texts.languages() and len(texts.languages()) >= 2


@pytest.mark.parametrize("language", texts.languages())
def test_a_catalog_says_everything_english_says(language: str) -> None:
    english, words = texts.catalog("en"), texts.catalog(language)
    assert keys(words) == keys(english)
    for key, text in leaves(words).items():
        assert isinstance(text, str) and text.strip(), (language, key)
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", leaves(english)[key])), key
    assert set(words["reason"]) == {str(reason) for reason in Reason}  # every refusal has words
    assert set(words["state"]) == {*STATES, "CONNECTING"}  # every state is written for a person
    assert set(words["headline"]) == {*STATES, "CONNECTING"}


def test_english_reasons_are_the_sdks() -> None:
    assert texts.catalog("en")["reason"]["expired"] == Reason.EXPIRED.text


def test_a_language_not_shipped_is_a_config_error() -> None:
    assert parse_config({"display": {"language": "de"}}).display_language == "de"
    assert parse_config({}).display_language == "en" and parse_config({}).display_sound is True
    with pytest.raises(ConfigError, match=r"display\.language: one of de, en, got 'xx'"):
        parse_config({"display": {"language": "xx"}})
    with pytest.raises(ConfigError, match=r"display\.sound: expected bool"):
        parse_config({"display": {"sound": "loud"}})
    with pytest.raises(ValueError, match="no guard page texts for language 'xx'"):
        texts.catalog("xx")


def test_the_states_a_heartbeat_names_are_the_machines() -> None:
    """The hub reads a gate's state from its heartbeat as ``wire.GateState``: one set of names."""
    from passgate import wire
    from passgated.machine import State

    assert {str(s) for s in State} == {str(s) for s in wire.GateState} == set(STATES)
    assert all(wire.GateState(s).words for s in STATES)
