"""The hub's gate-API models are derived from the contract: same fields, same bounds. A body the
gate's parser accepts the hub accepts, and the other way round."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from passgate import wire
from passgate_hub import schemas

DERIVED = {wire.EventBatch: schemas.EventBatch, wire.Heartbeat: schemas.Heartbeat,
           wire.EventAck: schemas.EventAck, wire.HeartbeatAck: schemas.HeartbeatAck,
           wire.Bundle: schemas.Bundle, wire.RedemptionPage: schemas.Redemptions}


@pytest.mark.parametrize(("message", "model"), DERIVED.items())
def test_same_fields(message: type, model: type[pydantic.BaseModel]) -> None:
    assert list(model.model_fields) == [f.name for f in dataclasses.fields(message)]


def agree(message: type, model: type[pydantic.BaseModel], body: Any) -> None:
    try:
        wire.parse(message, body)
        gate_says = True
    except wire.ProtocolError:
        gate_says = False
    try:
        model.model_validate(body)
        hub_says = True
    except pydantic.ValidationError:
        hub_says = False
    assert gate_says == hub_says, body


VALUES = st.none() | st.booleans() | st.integers(-2, 2**64) | st.floats() | st.text(max_size=70) | st.just(
    "0123456789abcdef0123456789abcdef")


def bodies(message: type) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the message's own field names (a request model refuses unknown ones)."""
    fields = [f.name for f in dataclasses.fields(message)]
    return st.dictionaries(st.sampled_from(fields), VALUES | st.lists(VALUES, max_size=3),
                           max_size=len(fields))


@given(body=bodies(wire.Heartbeat))
def test_heartbeats_agree(body: dict[str, Any]) -> None:
    agree(wire.Heartbeat, schemas.Heartbeat, body)


@given(event=bodies(wire.Event))
def test_events_agree(event: dict[str, Any]) -> None:
    agree(wire.EventBatch, schemas.EventBatch, {"events": [event]})


@pytest.mark.parametrize(("field", "good", "bad"), [
    ("kind", "k" * 32, "k" * 33), ("detail", "d" * 2000, "d" * 2001), ("gate_id", "g" * 64, "g" * 65),
    ("t", 1e12, float("inf")), ("event_id", "e", ""),
])
def test_event_bounds_at_the_edge(field: str, good: object, bad: object) -> None:
    event = {"event_id": "e1", "gate_id": "g1", "t": 1.0, "kind": str(wire.EventKind.DECISION)}
    agree(wire.EventBatch, schemas.EventBatch, {"events": [{**event, field: good}]})
    schemas.EventBatch.model_validate({"events": [{**event, field: good}]})
    with pytest.raises(pydantic.ValidationError):
        schemas.EventBatch.model_validate({"events": [{**event, field: bad}]})
    with pytest.raises(wire.ProtocolError):
        wire.parse(wire.EventBatch, {"events": [{**event, field: bad}]})
