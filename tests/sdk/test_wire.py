"""The gate↔hub contract (``passgate.wire``): every message parses what it dumps, refuses what breaks
its bounds with a ``ProtocolError`` naming the field, and no event kind is spelled outside it."""

from __future__ import annotations

import ast
import dataclasses
import enum
import types
import typing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passgate import wire

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [wire.Event, wire.EventBatch, wire.EventAck, wire.EventRejected, wire.Heartbeat,
            wire.HeartbeatAck, wire.ListHealth, wire.TrustedKey, wire.ListUpdate, wire.GateSettings,
            wire.Bundle, wire.Redemption, wire.RedemptionPage]
PASS_ID = "0123456789abcdef0123456789abcdef"


def full_bundle() -> wire.Bundle:
    return wire.Bundle(
        gate_id="north-1", venue="arena", zone="floor", scope="arena", protocol=wire.PROTOCOL_VERSION,
        keys=[wire.TrustedKey(kid="ab" * 8, pem="-----BEGIN PUBLIC KEY-----",
                              purpose=wire.KeyPurpose.DENYLIST, scope="arena", retired_at=1.5,
                              revoked_at=None, issuer="arena lists")],
        denylists={"revoked": wire.ListUpdate(version=3, issued_at=1000, updates=["AAE="])},
        settings=wire.GateSettings(zones=["floor"], anti_passback=True, anti_passback_minutes=30.0,
                                   stale_policy=wire.StaleListPolicy.REFUSE, relay_pulse_ms=250.0),
        config={"zones": ["floor"]})


def test_every_message_parses_what_it_dumps() -> None:
    samples = [
        full_bundle(),
        wire.EventBatch(events=[wire.Event(event_id="e1", gate_id="g1", t=1.0, kind=wire.EventKind.REDEEMED,
                                           direction="entry", pass_id=PASS_ID, detail="r1")]),
        wire.EventAck(acked=["e1"], stored=1, rejected=[wire.EventRejected(event_id="e2", why="unbacked")]),
        wire.Heartbeat(t=5.0, version="0.1.0", protocol=2, backlog=3, state="IDLE",
                       lists={"revoked": wire.ListHealth(version=2, age_s=10.0)},
                       health={"journal_ok": True}),
        wire.RedemptionPage(redemptions=[wire.Redemption(redemption_id="r1", pass_id=PASS_ID, gate_id="g2",
                                                         direction=wire.Direction.EXIT, t=9.0)], cursor=7),
        wire.HeartbeatAck(server_time=12.5),
    ]
    for message in samples:
        assert wire.parse(type(message), wire.dump(message)) == message


@pytest.mark.parametrize(("message", "body", "error"), [
    (wire.Bundle, [], r"^Bundle: expected an object, got list$"),
    (wire.Bundle, {"venue": "arena"}, r"^Bundle\.gate_id: required$"),
    (wire.Bundle, {"gate_id": "north 1", "venue": "arena"}, r"^Bundle\.gate_id: does not match"),
    (wire.Bundle, {"gate_id": "g", "venue": "a", "protocol": True},
     r"^Bundle\.protocol: expected an integer$"),
    (wire.Bundle, {"gate_id": "g", "venue": "a", "keys": [{"kid": "k", "pem": "p", "purpose": "any"}]},
     r"^Bundle\.keys\[0\]\.purpose: one of passes, denylist, got 'any'$"),
    (wire.Bundle, {"gate_id": "g", "venue": "a", "settings": {"relay_pulse_ms": 1e9}},
     r"^Bundle\.settings\.relay_pulse_ms: must be between 10 and 5000"),
    (wire.GateSettings, {"zones": ["floor", "bal cony"]}, r"^GateSettings\.zones\[1\]: does not match"),
    (wire.GateSettings, {"zones": "floor"}, r"^GateSettings\.zones: expected a list$"),
    (wire.GateSettings, {"stale_policy": "maybe"},
     r"^GateSettings\.stale_policy: one of admit, guard, refuse"),
    (wire.Heartbeat, {"t": float("nan")}, r"^Heartbeat\.t: expected a finite number$"),
    (wire.Heartbeat, {"t": 1, "lists": {f"k{n}": {"version": 1} for n in range(9)}},
     r"^Heartbeat\.lists: length 9 outside 0\.\.8$"),
    (wire.Event, {"event_id": "e", "gate_id": "g", "t": 1, "kind": "x" * 33}, r"^Event\.kind: length 33"),
    (wire.EventBatch, {"events": [{}] * (wire.MAX_BATCH + 1)}, r"^EventBatch\.events: length 1001"),
    (wire.Redemption, {"redemption_id": "r", "pass_id": "XYZ", "gate_id": "g", "direction": "entry", "t": 1},
     r"^Redemption\.pass_id: does not match"),
    (wire.Redemption, {"redemption_id": "r", "pass_id": PASS_ID, "gate_id": "g", "direction": "up", "t": 1},
     r"^Redemption\.direction: one of entry, exit, got 'up'$"),
    (wire.RedemptionPage, {"redemptions": [], "cursor": -1}, r"^RedemptionPage\.cursor: must be between 0"),
    (wire.HeartbeatAck, {"server_time": "now"}, r"^HeartbeatAck\.server_time: expected a number$"),
])
def test_a_message_that_breaks_the_contract_names_the_field(message: type, body: object, error: str) -> None:
    with pytest.raises(wire.ProtocolError, match=error):
        wire.parse(message, body)


def test_a_newer_peers_extra_fields_are_ignored_and_defaults_fill_the_rest() -> None:
    """Messages only grow: a protocol-1 bundle (``config``, no ``settings``) still parses."""
    old = wire.parse(wire.Bundle, {"gate_id": "g1", "venue": "arena", "scope": "arena", "keys": [],
                                   "denylists": {}, "config": {"zones": ["floor"]}, "future": 1})
    assert old.protocol == 1 and old.settings == wire.GateSettings() and old.config == {"zones": ["floor"]}


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=4),
                       max_leaves=20)


@given(message=st.sampled_from(MESSAGES), body=JSONISH | st.dictionaries(
    st.sampled_from(["t", "kind", "keys", "settings", "zones", "events", "pem", "cursor", "gate_id",
                     "venue", "redemptions", "direction", "pass_id", "lists", "acked"]), JSONISH, max_size=6))
def test_anything_else_is_a_protocol_error_never_another_exception(message: type, body: object) -> None:
    try:
        parsed = wire.parse(message, body)
    except wire.ProtocolError:
        return
    assert wire.parse(message, wire.dump(parsed)) == parsed


def test_settings_name_only_what_the_hub_set() -> None:
    assert wire.GateSettings(zones=["floor"], anti_passback=False).given() == {"zones": ["floor"],
                                                                               "anti_passback": False}
    assert wire.bounds(wire.GateSettings, "relay_pulse_ms") == {"ge": 10, "le": 5000}


def test_counting_rule_one_passage_one_count() -> None:
    assert wire.counts_as_passage(wire.EventKind.REDEEMED, "r1")
    assert wire.counts_as_passage(wire.EventKind.FORCED_PASSAGE, "")
    assert wire.counts_as_passage(wire.EventKind.PASSAGE, "free exit")
    assert not wire.counts_as_passage(wire.EventKind.PASSAGE, None)  # protocol 1's repeat of a redemption
    assert not wire.counts_as_passage(wire.EventKind.DECISION, "admit")
    assert not wire.counts_as_passage(wire.EventKind.RELEASED, "r1")


# Words that are event kinds and also names of other things, so allowed as plain strings:
# "decision" and "state" are column names (the journal's and the hub's), "tamper" is an input pin,
# "released" a state of a reservation in the gate's journal.
ALSO_FIELD_NAMES = {str(wire.EventKind.DECISION), str(wire.EventKind.STATE), str(wire.EventKind.TAMPER),
                    str(wire.EventKind.RELEASED)}


def spelled_kinds(path: Path) -> list[tuple[int, str]]:
    kinds = {str(kind) for kind in wire.EventKind} - ALSO_FIELD_NAMES
    tree = ast.parse(path.read_text(), str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in kinds]


def test_no_event_kind_is_spelled_outside_the_contract() -> None:
    sources = [p for package in ("sdk/passgate", "firmware/passgated", "hub/passgate_hub")
               for p in (ROOT / package).rglob("*.py") if p.name != "wire.py"]
    assert len(sources) > 40
    spelled = {str(p.relative_to(ROOT)): found for p in sources if (found := spelled_kinds(p))}
    assert spelled == {}


def test_the_check_sees_a_spelled_kind(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('COUNTED = ("redeemed", "forced_passage")\nx = "decision"\n')
    assert spelled_kinds(sample) == [(1, "redeemed"), (1, "forced_passage")]


def sample(hint: object) -> object:
    """A plain JSON value of a field's type (its bounds aside)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return sample(args[0])
    if origin is list:
        return [sample(args[0])]
    if origin is dict:
        return {"k": sample(args[1])}
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return {f.name: sample(hints[f.name]) for f in dataclasses.fields(hint)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return next(iter(hint)).value
    return {str: "x", int: 1, float: 1.0, bool: True}.get(hint)  # type: ignore[call-overload]


def test_every_field_of_every_message_has_a_rule() -> None:
    """A field type the parser has no rule for would fail at the first real message."""
    for message in MESSAGES:
        try:
            wire.parse(message, sample(message))
        except wire.ProtocolError as exc:  # a bound may refuse the sample; a missing rule may not
            assert "no rule" not in str(exc), exc
    assert wire.parse(wire.Bundle, wire.dump(full_bundle())).keys[0].purpose is wire.KeyPurpose.DENYLIST


def test_the_rule_check_sees_a_field_without_one() -> None:
    @dataclasses.dataclass(frozen=True)
    class Odd:
        when: complex = wire.limits(default=0j)

    with pytest.raises(wire.ProtocolError, match="no rule"):
        wire.parse(Odd, {"when": 1})
