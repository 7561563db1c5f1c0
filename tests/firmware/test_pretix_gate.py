"""pretix tickets at the gate: the ``[pretix]`` section, the event's files, and the decision in
pretixSCAN's offline order (signature → revoked → blocked → validity window → product and date on
the zone's check-in list → rules → entries and re-entry → anti-passback)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from passgate import PassRefused, Reason, generate_private_key
from passgate.pretix import event_keys_resource, issue_sig1, seed_pass_id, verify_sig1_signature
from passgate.wire import Direction, StaleListPolicy
from passgated.config import ConfigError, parse_config
from passgated.policy import CheckinList, Context, PolicyConfig, PretixPolicy, Usage, decide
from passgated.pretix_event import PretixEvent, load

KEY = generate_private_key()
TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 3, 19, 30, tzinfo=TZ).timestamp()
EVENT_START = datetime(2026, 12, 3, 19, 0, tzinfo=TZ)


@dataclass
class Journal:
    """What the policy reads of the journal: passages by pass id, oldest first."""

    rows: dict[bytes, list[tuple[Direction, float]]]

    def usage(self, pass_id: bytes) -> Usage:
        rows = self.rows.get(pass_id, [])
        if not rows:
            return Usage()
        entries = [t for d, t in rows if d is Direction.ENTRY]
        return Usage(len(entries), rows[-1][0] is Direction.ENTRY, any(d is Direction.EXIT for d, _ in rows),
                     entries[-1] if entries else None, tuple(entries))


def ticket(seed: str = "seed-1", item: int = 10, **fields: Any) -> Any:
    return verify_sig1_signature(issue_sig1(KEY, seed=seed, item=item, **fields), event_keys())


def event_keys() -> Any:
    from passgate.pretix import load_event_keys

    return load_event_keys(event_keys_resource([KEY.public_key()]))


def policy(lists: dict[str, CheckinList] | None = None, **changes: Any) -> PolicyConfig:
    pretix = PretixPolicy(tz=TZ, date_from=EVENT_START, lists=lists if lists is not None else
                          {"": CheckinList("main")}, gate=3)
    return replace(PolicyConfig(pretix=pretix), **changes)


def decide_at(result: Any, cfg: PolicyConfig, *, journal: Journal | None = None, now: float = NOW,
              direction: Direction = Direction.ENTRY, revoked: set[bytes] | None = None,
              blocked: set[bytes] | None = None, stale: bool = False) -> Any:
    ctx = Context(now, direction, revoked or set(), blocked or set(), journal or Journal({}), stale)
    return decide(result, ctx, cfg)


# -- the decision, pure --------------------------------------------------------------------------

def test_a_ticket_on_the_list_is_admitted_and_keyed_by_its_seed_never_the_secret() -> None:
    t = ticket()
    decision = decide_at(t, policy())
    assert (decision.admit, decision.reason) == (True, Reason.ADMIT)
    assert decision.pass_id == seed_pass_id("seed-1") == t.pass_id
    assert decision.pass_.product == "pretix 10"


def test_order_revoked_before_blocked_before_time_before_product() -> None:
    late = ticket(item=99, valid_from=int(NOW) + 3600, valid_until=int(NOW) + 7200)
    cfg = policy({"": CheckinList("main", products=frozenset({10}))})
    both = {late.pass_id}
    assert decide_at(late, cfg, revoked=both, blocked=both).reason is Reason.REVOKED
    assert decide_at(late, cfg, blocked=both).reason is Reason.BLOCKED
    refused = decide_at(late, cfg)
    assert refused.reason is Reason.NOT_YET_VALID and "Valid from" in refused.text
    assert decide_at(ticket(item=99), cfg).reason is Reason.WRONG_ZONE
    expired = ticket(valid_from=int(NOW) - 7200, valid_until=int(NOW) - 3600)
    assert decide_at(expired, cfg).reason is Reason.EXPIRED


def test_stale_lists_refuse_or_ask_the_guard_as_configured() -> None:
    t = ticket()
    refusing = policy(stale_list=StaleListPolicy.REFUSE)
    assert decide_at(t, refusing, stale=True).reason is Reason.DENY_LIST_STALE
    guarded = decide_at(t, policy(), stale=True)
    assert guarded.admit and guarded.guard_check


def test_product_variation_and_date_must_be_on_the_zones_list() -> None:
    cfg = policy({
        "A": CheckinList("hall", products=frozenset({10, 11}), variations=frozenset({5})),
        "B": CheckinList("backstage", products=frozenset({20}), subevent=7),
    }, zones=("A",))
    assert decide_at(ticket(item=11, variation=5), cfg).admit
    wrong_variation = decide_at(ticket(item=11, variation=6), cfg)
    assert wrong_variation.reason is Reason.WRONG_ZONE and "variation 6" in wrong_variation.detail
    assert decide_at(ticket(item=20, subevent=7), cfg).reason is Reason.WRONG_ZONE  # B's product at A
    at_b = replace(cfg, zones=("B",))
    assert decide_at(ticket(item=20, subevent=7), at_b).admit
    assert decide_at(ticket(item=20, subevent=8), at_b).reason is Reason.WRONG_ZONE  # another date
    nowhere = decide_at(ticket(), replace(cfg, zones=("C",)))
    assert nowhere.reason is Reason.WRONG_ZONE and "no pretix check-in list" in nowhere.detail


def test_rules_refuse_after_the_product_and_before_the_entries() -> None:
    evenings = {"isAfter": [{"var": "now"}, {"buildTime": ["custom", "2026-12-03T20:00:00+01:00"]}, None]}
    cfg = policy({"": CheckinList("late entry", rules=evenings)})
    refused = decide_at(ticket(), cfg)
    assert (refused.reason, refused.text) == (Reason.RULES, Reason.RULES.text)
    assert "late entry" in refused.detail
    assert decide_at(ticket(), cfg, now=NOW + 3600).admit


def test_rules_read_the_tickets_product_and_this_tickets_entries_today() -> None:
    product_10 = {"inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", "10", "T"]}]}]}
    once_a_day = {"and": [product_10, {"<": [{"var": "entries_today"}, 1]}]}
    daily = CheckinList("daily", allow_multiple_entries=True, rules=once_a_day)
    cfg = policy({"": daily}, anti_passback=False)
    t = ticket()
    yesterday = datetime(2026, 12, 2, 20, 0, tzinfo=TZ).timestamp()
    this_morning = datetime(2026, 12, 3, 9, 0, tzinfo=TZ).timestamp()
    assert decide_at(t, cfg, journal=Journal({t.pass_id: [(Direction.ENTRY, yesterday)]})).admit
    again = decide_at(t, cfg, journal=Journal({t.pass_id: [(Direction.ENTRY, this_morning)]}))
    assert again.reason is Reason.RULES
    assert decide_at(ticket(item=11), cfg).reason is Reason.RULES  # not the listed product


def test_a_rule_that_cannot_be_evaluated_refuses() -> None:
    cfg = policy({"": CheckinList("broken", rules={"no_such_operator": [1]})})
    refused = decide_at(ticket(), cfg)
    assert refused.reason is Reason.RULES and "cannot be evaluated" in refused.detail


def test_one_entry_unless_the_list_allows_more_or_entry_after_exit() -> None:
    t = ticket()
    entered = Journal({t.pass_id: [(Direction.ENTRY, NOW - 600)]})
    left = Journal({t.pass_id: [(Direction.ENTRY, NOW - 600), (Direction.EXIT, NOW - 300)]})
    single = policy({"": CheckinList("once", allow_entry_after_exit=False)})
    assert decide_at(t, single, journal=entered).reason is Reason.USED_UP
    assert decide_at(t, single, journal=left).reason is Reason.USED_UP
    assert decide_at(t, single).pass_.entries == 1  # the hub counts a double use of such a ticket
    after_exit = policy({"": CheckinList("re-entry", allow_entry_after_exit=True)})
    assert decide_at(t, after_exit, journal=left).admit
    assert decide_at(t, after_exit, journal=entered).reason is Reason.USED_UP
    many = policy({"": CheckinList("many", allow_multiple_entries=True)})
    assert decide_at(t, many, journal=entered).reason is Reason.ALREADY_INSIDE  # the gate's anti-passback
    assert decide_at(t, replace(many, anti_passback=False), journal=entered).admit


def test_exits_are_never_refused() -> None:
    t = ticket(valid_from=int(NOW) - 7200, valid_until=int(NOW) - 3600)
    decision = decide_at(t, policy(), direction=Direction.EXIT, revoked={t.pass_id})
    assert decision.admit and decision.text == "Goodbye"


def test_a_gate_without_a_pretix_event_refuses_its_tickets_as_an_unknown_issuer() -> None:
    assert decide_at(ticket(), PolicyConfig()).reason is Reason.UNKNOWN_KEY


def test_the_journal_keeps_a_ticket_until_its_end_or_the_events() -> None:
    cfg = policy()
    assert cfg.pretix is not None
    end = int(NOW) + 3600
    assert decide_at(ticket(valid_until=end), cfg).pass_.valid_until == end
    day_after = int(EVENT_START.timestamp()) + 86400
    assert decide_at(ticket(), cfg).pass_.valid_until == day_after
    ends = datetime(2026, 12, 4, 2, 0, tzinfo=TZ)
    assert decide_at(ticket(), replace(cfg, pretix=replace(cfg.pretix, date_to=ends))).pass_.valid_until == \
        int(ends.timestamp())


# -- the section and the files --------------------------------------------------------------------

def write_event(tmp_path: Path, **changes: Any) -> Path:
    event = {"slug": "gig", "name": {"en": "Gig"}, "timezone": "Europe/Berlin",
             "date_from": "2026-12-03T19:00:00+01:00", "date_to": None, "date_admission": None,
             **event_keys_resource([KEY.public_key()]), **changes}
    path = tmp_path / "event.json"
    path.write_text(json.dumps({k: v for k, v in event.items() if v != "-"}))
    return path


LISTS = [
    {"id": 17, "name": "Hall", "all_products": False, "limit_products": [10, 11], "subevent": None,
     "allow_multiple_entries": False, "allow_entry_after_exit": True, "rules": {}},
    {"id": 18, "name": "VIP", "all_products": True, "limit_products": [], "subevent": None,
     "allow_multiple_entries": True, "allow_entry_after_exit": True,
     "rules": {"<": [{"var": "entries_today"}, 3]}},
]


def pretix_config(tmp_path: Path, section: dict[str, Any]) -> Any:
    write_event(tmp_path)
    (tmp_path / "checkinlists.json").write_text(json.dumps(LISTS))
    return parse_config({"pretix": {"event": "event.json", "checkin_lists": "checkinlists.json", **section}},
                        base=tmp_path)


def test_zones_name_fetched_lists_or_write_their_own(tmp_path: Path) -> None:
    config = pretix_config(tmp_path, {"gate": 3, "zones": {
        "hall": {"checkin_list": 17},
        "side": {"products": [12], "allow_multiple_entries": True, "rules": '{"!!": [1]}'}}})
    loaded = load(config.pretix)
    hall, side = loaded.policy.lists["hall"], loaded.policy.lists["side"]
    assert (hall.products, hall.allow_multiple_entries, hall.rules) == (frozenset({10, 11}), False, None)
    assert "Hall" in hall.name
    assert (side.products, side.allow_multiple_entries, side.rules) == (frozenset({12}), True, {"!!": [1]})
    assert loaded.policy.gate == 3 and loaded.policy.tz == TZ
    assert loaded.policy.date_from == datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    gate_wide = load(pretix_config(tmp_path, {"checkin_list": 18}).pretix).policy.lists[""]
    assert gate_wide.products is None and gate_wide.rules == {"<": [{"var": "entries_today"}, 3]}
    default = load(pretix_config(tmp_path, {}).pretix).policy.lists[""]
    assert (default.products, default.allow_multiple_entries) == (None, False)  # pretix's default list


@pytest.mark.parametrize(("section", "message"), [
    ({"checkin_list": 17, "products": [1]}, "pretix.checkin_list: names a list"),
    ({"rules": "{not json"}, "pretix.rules: not JSON"),
    ({"rules": "[1, 2]"}, "pretix.rules: a JsonLogic rule is a JSON object"),
    ({"rules": "{}", "rules_file": "r.json"}, "pretix.rules: set rules or rules_file"),
    ({"rules_file": "missing.json"}, "pretix.rules_file: cannot be read"),
    ({"products": ["10"]}, "pretix.products: a list of pretix ids"),
    ({"zones": {"A": {"colour": "red"}}}, "pretix.zones.A.colour: unknown key"),
    ({"zones": {"A": {}}}, "pretix.zones.A: name a check-in list"),
    ({"zones": {"A": 17}}, "pretix.zones.A: must be a table"),
    ({"allow_multiple_entries": "yes"}, "pretix.allow_multiple_entries: expected bool"),
    ({"flavour": 1}, "pretix.flavour: unknown key"),
])
def test_bad_sections_name_their_key(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        pretix_config(tmp_path, section)
    assert str(caught.value).startswith(message), caught.value


def test_the_event_file_is_required_and_a_list_id_needs_the_lists_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretix\.event: required"):
        parse_config({"pretix": {"gate": 1}}, base=tmp_path)
    with pytest.raises(ConfigError, match=r"pretix\.checkin_lists: required"):
        parse_config({"pretix": {"event": "e.json", "checkin_list": 17}}, base=tmp_path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"valid_keys": {}}, "pretix.event: "),
    ({"timezone": None}, "names no timezone"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"date_from": "tomorrow"}, "date_from is not an ISO 8601 time"),
    ({"date_from": "2026-12-03T19:00:00"}, "date_from has no UTC offset"),
])
def test_a_damaged_event_file_is_a_config_error_naming_what(tmp_path: Path, changes: dict[str, Any],
                                                            message: str) -> None:
    config = pretix_config(tmp_path, {})
    write_event(tmp_path, **changes)
    with pytest.raises(ConfigError, match=message):
        load(config.pretix)


def test_an_unknown_list_id_names_the_lists_there_are(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no list 99 in pretix.checkin_lists \(lists: 17, 18\)"):
        load(pretix_config(tmp_path, {"checkin_list": 99}).pretix)


def test_a_new_key_reaches_the_next_scan_and_a_damaged_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    config = pretix_config(tmp_path, {})
    event = PretixEvent(config.pretix)
    rotated = generate_private_key()
    text = issue_sig1(rotated, seed="new-key", item=10)
    result, _ = event.verify(text)
    assert isinstance(result, PassRefused) and result.reason is Reason.BAD_SIGNATURE
    write_event(tmp_path, **event_keys_resource([KEY.public_key(), rotated.public_key()]))
    result, _ = event.verify(text)
    assert not isinstance(result, PassRefused) and result.seed == "new-key"
    (tmp_path / "event.json").write_text("{damaged")
    result, pretix = event.verify(text)
    assert not isinstance(result, PassRefused) and pretix is not None  # the last good event
    assert event.error is not None and "not JSON" in event.error


def test_a_gate_that_never_read_its_event_refuses_pretix_tickets_with_the_reason(tmp_path: Path) -> None:
    config = pretix_config(tmp_path, {})
    (tmp_path / "event.json").unlink()
    result, pretix = PretixEvent(config.pretix).verify(issue_sig1(KEY, seed="s", item=10))
    assert isinstance(result, PassRefused) and result.reason is Reason.UNKNOWN_KEY and pretix is None
    assert "pretix event not loaded" in result.detail
