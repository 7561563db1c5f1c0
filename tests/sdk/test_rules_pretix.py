"""pretix's check-in additions to JsonLogic (passgate.rules.check_rules): its operators and variables.

Expected values are worked out by hand from what pretix documents and does, not from running pretix:
the docs page https://docs.pretix.eu/guides/check-in/custom/ (tolerances: "A tolerance always extends
to the opposite direction of the restriction"), libpretixsync's offline checker
(libpretixsync/src/main/java/eu/pretix/libpretixsync/check/AsyncCheckProvider.kt, the rule data and
initJsonLogic) and the cases of its AsyncCheckProviderTest.kt (testRules*), and pretix's server
(src/pretix/base/services/checkin.py: _get_logic_environment, LazyRuleVars, _build_time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import passgate.rules as rules_module
from passgate.rules import CheckinFacts, RuleError, check_rules, json_logic
from tests.helpers import examples

TOKYO = ZoneInfo("Asia/Tokyo")  # UTC+9 all year: its midnight is 15:00 UTC
BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def facts(now: str = "2020-01-01T10:00:00", tz: Any = TOKYO, **fields: Any) -> CheckinFacts:
    fields.setdefault("date_from", utc("2020-01-01T09:00:00"))
    return CheckinFacts(now=utc(now), tz=tz, **fields)


def products(*ids: str | int, model: str = "product") -> dict[str, Any]:
    """The editor's "is one of": inList of the variable and an objectList of lookups."""
    return {"inList": [{"var": model}, {"objectList": [{"lookup": [model, i, f"Name {i}"]} for i in ids]}]}


# --- empty rules and what a rule must be ------------------------------------------------------------


def test_an_empty_rule_admits() -> None:
    assert check_rules({}, facts()) is True
    assert check_rules(None, facts()) is True


def test_a_literal_rule_is_its_truth() -> None:
    assert check_rules(True, facts()) is True
    assert check_rules(False, facts()) is False
    assert check_rules({"and": [True, False]}, facts()) is False  # libpretixsync's testRulesSimple
    assert check_rules({"and": [True, True]}, facts()) is True


@pytest.mark.parametrize("rule", ['{"and": [false]}', "x", 1, [False], ["a"]])
def test_a_rule_that_is_not_an_object_is_refused(rule: Any) -> None:
    """JSON text not yet parsed would be a non-empty string, which JsonLogic calls true: refuse it."""
    with pytest.raises(RuleError, match="a check-in rule is a JsonLogic object"):
        check_rules(rule, facts())


# --- product, variation, gate: ids as text ---------------------------------------------------------


def test_product_is_one_of() -> None:
    assert check_rules(products("1", "2"), facts(product=2)) is True
    assert check_rules(products("2"), facts(product=2)) is True
    assert check_rules(products("1", "3"), facts(product=2)) is False


def test_ids_are_text_as_libpretixsync_has_them() -> None:
    assert check_rules({"===": [{"var": "product"}, "2"]}, facts(product=2)) is True
    assert check_rules({"===": [{"var": "product"}, 2]}, facts(product=2)) is False
    assert check_rules({"===": [{"var": "variation"}, ""]}, facts(variation=None)) is True
    assert check_rules({"===": [{"var": "gate"}, "0"]}, facts(gate=None)) is True  # no gate: 0


def test_a_lookup_id_written_as_a_number_still_matches() -> None:
    """pretix's editor writes ids as text; an API client may write 2. pretix's server matches it
    (int on both sides), libpretixsync would not: passgate matches, as the rule means."""
    assert check_rules(products(2), facts(product=2)) is True
    assert check_rules(products(2.0), facts(product=2)) is True


def test_variation_is_one_of() -> None:
    rule = products("3", "2", model="variation")
    assert check_rules(rule, facts(variation=2)) is True
    assert check_rules(rule, facts(variation=5)) is False
    assert check_rules(rule, facts(variation=None)) is False


def test_gate_is_one_of() -> None:
    """libpretixsync's testRulesGate: gate 0 (none) and 2 are refused by [1], admitted by [1, 2]."""
    assert check_rules(products("1", model="gate"), facts(gate=None)) is False
    assert check_rules(products("1", model="gate"), facts(gate=2)) is False
    assert check_rules(products("1", "2", model="gate"), facts(gate=2)) is True
    assert check_rules(products("1", "2", model="gate"), facts(gate="2")) is True


# --- entries ---------------------------------------------------------------------------------------


def test_entries_number_and_entry_status() -> None:
    two = (utc("2020-01-01T08:00:00"), utc("2020-01-01T09:00:00"))
    assert check_rules({"<": [{"var": "entries_number"}, 3]}, facts(entries=two)) is True
    assert check_rules({"<": [{"var": "entries_number"}, 2]}, facts(entries=two)) is False
    status = {"or": [{"==": [{"var": "entry_status"}, "absent"]}, {"<": [{"var": "entries_number"}, 1]}]}
    assert check_rules(status, facts(entries=two, inside=False)) is True
    assert check_rules(status, facts(entries=two, inside=True)) is False
    assert check_rules(status, facts(entries=(), inside=True)) is True


def test_entries_today_counts_from_midnight_in_the_event_zone() -> None:
    """Tokyo's midnight is 15:00 UTC. Two entries on 1 January (Tokyo): at 14:55 UTC they were today,
    at 15:10 UTC it is 2 January there and none was, although all of it is 1 January in UTC."""
    entries = (utc("2020-01-01T10:00:00"), utc("2020-01-01T14:50:00"))
    rule = {"==": [{"var": "entries_today"}, 2]}
    assert check_rules(rule, facts("2020-01-01T14:55:00", entries=entries)) is True
    assert check_rules({"==": [{"var": "entries_today"}, 0]}, facts("2020-01-01T15:10:00", entries=entries))
    assert check_rules({"==": [{"var": "entries_today"}, 2]}, facts("2020-01-01T15:10:00", tz=UTC,
                                                                     entries=entries))


def test_entries_days_counts_distinct_days_in_the_event_zone() -> None:
    entries = (utc("2020-01-01T10:00:00"), utc("2020-01-01T14:50:00"), utc("2020-01-01T15:10:00"),
               utc("2020-01-03T01:00:00"))
    at = "2020-01-03T02:00:00"
    assert check_rules({"==": [{"var": "entries_days"}, 3]}, facts(at, entries=entries))  # 1, 2, 3 Jan
    assert check_rules({"==": [{"var": "entries_days"}, 2]}, facts(at, tz=UTC, entries=entries))


def test_unlimited_entries_on_two_days() -> None:
    """libpretixsync's testRulesEntriesDays: any number of entries, but on two days only."""
    rule = {"or": [{">": [{"var": "entries_today"}, 0]}, {"<": [{"var": "entries_days"}, 2]}]}
    day1, day3 = utc("2020-01-01T10:00:00"), utc("2020-01-03T10:00:00")
    assert check_rules(rule, facts("2020-01-01T10:00:00")) is True
    assert check_rules(rule, facts("2020-01-01T11:00:00", entries=(day1,))) is True
    assert check_rules(rule, facts("2020-01-03T10:00:00", entries=(day1,))) is True
    assert check_rules(rule, facts("2020-01-03T14:50:00", entries=(day1, day3))) is True
    assert check_rules(rule, facts("2020-01-03T15:10:00", entries=(day1, day3))) is False  # 4 Jan in Tokyo


def since(op: str, cutoff: str) -> dict[str, Any]:
    return {op: [{"buildTime": ["custom", cutoff]}]}


def test_entries_since_includes_the_cutoff_and_before_excludes_it() -> None:
    entries = (utc("2020-01-01T08:00:00"), utc("2020-01-01T09:00:00"), utc("2020-01-01T10:00:00"))
    fact = facts("2020-01-01T11:00:00", entries=entries)
    cutoff = "2020-01-01T18:00:00+09:00"  # 09:00 UTC, the second entry
    assert check_rules({"==": [since("entries_since", cutoff), 2]}, fact)
    assert check_rules({"==": [since("entries_before", cutoff), 1]}, fact)
    assert check_rules({"==": [since("entries_since", "2020-01-01T09:00:00.001Z"), 1]}, fact)


def test_entries_days_since_and_before_count_days() -> None:
    entries = (utc("2019-12-30T10:00:00"), utc("2019-12-30T11:00:00"), utc("2019-12-31T10:00:00"),
               utc("2020-01-01T14:00:00"), utc("2020-01-01T15:30:00"))  # the last is 2 Jan in Tokyo
    fact = facts("2020-01-02T10:00:00", entries=entries)
    cutoff = "2020-01-01T00:00:00+09:00"
    assert check_rules({"==": [since("entries_days_before", cutoff), 2]}, fact)  # 30 and 31 Dec
    assert check_rules({"==": [since("entries_days_since", cutoff), 2]}, fact)  # 1 and 2 Jan
    assert check_rules({"==": [since("entries_since", cutoff), 2]}, fact)
    assert check_rules({"==": [since("entries_before", cutoff), 3]}, fact)


def test_once_before_and_once_after_a_time() -> None:
    """libpretixsync's testRulesEntriesSince: valid once before 23:00 (+01:00) and once after."""
    cutoff = {"buildTime": ["custom", "2020-01-01T23:00:00.000+01:00"]}
    after = {"and": [{"isAfter": [{"var": "now"}, cutoff, 0]}, {"<=": [{"entries_since": [cutoff]}, 0]}]}
    rule = {"or": [{"<=": [{"var": "entries_number"}, 0]}, after]}
    first = utc("2020-01-01T21:00:00")
    assert check_rules(rule, facts("2020-01-01T21:00:00")) is True
    assert check_rules(rule, facts("2020-01-01T21:05:00", entries=(first,))) is False
    assert check_rules(rule, facts("2020-01-01T22:10:00", entries=(first,))) is True
    second = utc("2020-01-01T22:10:00")
    assert check_rules(rule, facts("2020-01-01T22:20:00", entries=(first, second))) is False


def test_minutes_since_last_and_first_entry() -> None:
    now = utc("2020-01-01T12:00:00")
    entries = (now - timedelta(minutes=90), now - timedelta(minutes=30, seconds=59))
    fact = facts("2020-01-01T12:00:00", entries=entries)
    assert check_rules({"===": [{"var": "minutes_since_last_entry"}, 30]}, fact)  # whole minutes
    assert check_rules({"===": [{"var": "minutes_since_first_entry"}, 90]}, fact)
    assert check_rules({"===": [{"var": "minutes_since_last_entry"}, -1]}, facts())  # no entry yet
    assert check_rules({"===": [{"var": "minutes_since_first_entry"}, -1]}, facts())


def test_three_hours_between_entries() -> None:
    """libpretixsync's testRulesMinutesSinceLastEntry."""
    rule = {"or": [{"<=": [{"var": "minutes_since_last_entry"}, -1]},
                   {">": [{"var": "minutes_since_last_entry"}, 180]}]}
    first = (utc("2020-01-01T10:00:00"),)
    assert check_rules(rule, facts("2020-01-01T10:00:00")) is True
    assert check_rules(rule, facts("2020-01-01T12:55:00", entries=first)) is False
    assert check_rules(rule, facts("2020-01-01T13:01:00", entries=first)) is True


# --- times -----------------------------------------------------------------------------------------


ADMISSION = utc("2020-01-01T09:00:00")
END = utc("2020-01-01T14:00:00")


def at(minutes: float, base: datetime = ADMISSION) -> str:
    return (base + timedelta(minutes=minutes)).replace(tzinfo=None).isoformat()


def event(now: str) -> CheckinFacts:
    return facts(now, date_from=ADMISSION - timedelta(hours=1), date_admission=ADMISSION, date_to=END)


def test_is_after_with_a_tolerance_admits_that_many_minutes_early() -> None:
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, 10]}
    assert check_rules(rule, event(at(-11))) is False
    assert check_rules(rule, event(at(-10))) is False  # now + 10 min > admission: strictly
    assert check_rules(rule, event(at(-9))) is True
    assert check_rules(rule, event(at(10))) is True


def test_is_before_with_a_tolerance_admits_that_many_minutes_late() -> None:
    rule = {"isBefore": [{"var": "now"}, {"buildTime": ["date_to"]}, 10]}
    assert check_rules(rule, event(at(-60, END))) is True
    assert check_rules(rule, event(at(9, END))) is True
    assert check_rules(rule, event(at(10, END))) is False
    assert check_rules(rule, event(at(11, END))) is False


@pytest.mark.parametrize("tolerance", [[], [None], [0]])
def test_no_tolerance_is_exact(tolerance: list[Any]) -> None:
    after = {"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, *tolerance]}
    before = {"isBefore": [{"var": "now"}, {"buildTime": ["date_admission"]}, *tolerance]}
    assert (check_rules(after, event(at(-0.5))), check_rules(before, event(at(-0.5)))) == (False, True)
    assert (check_rules(after, event(at(0))), check_rules(before, event(at(0)))) == (False, False)
    assert (check_rules(after, event(at(0.5))), check_rules(before, event(at(0.5)))) == (True, False)


def test_a_tolerance_may_be_a_fraction_of_a_minute() -> None:
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, 0.5]}
    assert check_rules(rule, event(at(-0.25))) is True
    assert check_rules(rule, event(at(-0.75))) is False


def test_admission_falls_back_to_the_start() -> None:
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}]}
    start = utc("2020-01-01T09:00:00")
    assert check_rules(rule, facts("2020-01-01T09:01:00", date_from=start)) is True
    assert check_rules(rule, facts("2020-01-01T08:59:00", date_from=start)) is False


def test_an_event_time_that_is_not_known_is_refused() -> None:
    """Offline, libpretixsync fails a rule on a missing end (pretix's server would use the start)."""
    with pytest.raises(RuleError, match="date_to"):
        check_rules({"isBefore": [{"var": "now"}, {"buildTime": ["date_to"]}]}, facts())
    with pytest.raises(RuleError, match="date_from"):
        check_rules({"isAfter": [{"var": "now"}, {"buildTime": ["date_from"]}]}, facts(date_from=None))


def test_custom_time_of_day_is_in_the_event_zone() -> None:
    """libpretixsync's testRulesIsAfterCustomTime: 14:00 in Tokyo is 05:00 UTC."""
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "14:00"]}]}
    assert check_rules(rule, facts("2020-01-01T04:50:00")) is False
    assert check_rules(rule, facts("2020-01-01T05:01:00")) is True
    assert check_rules(rule, facts("2020-01-01T05:01:00", tz=UTC)) is False


def test_custom_time_of_day_that_the_clocks_skip_is_an_hour_earlier() -> None:
    """29 March 2026, Berlin: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist. libpretixsync
    takes 01:30 CET (00:30 UTC) rather than fail; reading it with the summer offset would give 00:30."""
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "02:30:00"]}]}
    assert check_rules(rule, facts("2026-03-29T00:40:00", tz=BERLIN)) is True
    assert check_rules(rule, facts("2026-03-29T00:20:00", tz=BERLIN)) is False


def test_custom_date_and_time() -> None:
    """libpretixsync's testRulesIsAfterCustomDateTime; without an offset, the event's zone."""
    rule = {"isAfter": [{"var": "now"}, {"buildTime": ["custom", "2020-01-01T22:00:00.000Z"]}]}
    assert check_rules(rule, facts("2020-01-01T21:51:00")) is False
    assert check_rules(rule, facts("2020-01-01T22:01:00")) is True
    naive = {"isAfter": [{"var": "now"}, {"buildTime": ["custom", "2020-01-02T07:00:00"]}]}  # Tokyo
    assert check_rules(naive, facts("2020-01-01T21:59:00")) is False
    assert check_rules(naive, facts("2020-01-01T22:01:00")) is True


def test_weekday_is_the_event_zones() -> None:
    """Saturday 9 April 2022, 22:05 UTC, is Sunday 07:05 in Tokyo (libpretixsync's
    testRulesCompareIsoweekday: >= 6 admits)."""
    assert check_rules({"==": [{"var": "now_isoweekday"}, 7]}, facts("2022-04-09T22:05:00"))
    assert check_rules({"==": [{"var": "now_isoweekday"}, 6]}, facts("2022-04-09T22:05:00", tz=UTC))
    assert check_rules({">=": [{"var": "now_isoweekday"}, 6]}, facts("2022-04-06T21:55:00")) is False


# --- refusals and shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "message"), [
    ({"==": [{"var": "ticket_colour"}, "red"]}, "unknown pretix variable 'ticket_colour'"),
    ({"isAfterish": [{"var": "now"}, 1]}, "unknown operator 'isAfterish'"),
    ({"isAfter": [{"var": "now"}, {"buildTime": ["date_sometime"]}]}, "isAfter needs a time"),
    ({"isAfter": [{"var": "now"}, {"buildTime": ["custom", "yesterday"]}]}, "not an ISO 8601"),
    ({"isAfter": [{"var": "now"}, {"buildTime": ["customtime", "25:00"]}]}, "not a time of day"),
    ({"isAfter": [{"var": "now"}, {"buildTime": ["custom", "0001-01-01T00:00:00"]}]}, "out of range"),
    ({"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, "10"]}, "tolerance is a number"),
    ({"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, 10**5000]}, "tolerance is a number"),
    ({"isBefore": [{"var": "now"}, {"buildTime": ["date_to"]}, [10**5000]]}, "tolerance is a number"),
    ({"isAfter": ["2020-01-01", {"var": "now"}]}, "isAfter needs a time"),
    ({"inList": [{"var": "product"}, "12"]}, "inList needs a list"),
    ({"lookup": ["product", None, "x"]}, "lookup: an id is text or a number"),
    ({"<": [{"entries_since": ["2020"]}, 1]}, "entries_since needs a time"),
    ({"entries_before": []}, "entries_before needs 1 argument"),
])
def test_refused(rule: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        check_rules(rule, event("2020-01-01T10:00:00"))


@pytest.mark.parametrize("count", [0, 1, 4])
def test_a_time_comparison_with_another_argument_count_is_false(count: int) -> None:
    """libpretixsync: isAfter/isBefore of other than two or three arguments is false."""
    args = [{"var": "now"}] * count
    assert check_rules({"isAfter": args}, facts()) is False
    assert check_rules({"isBefore": args}, facts()) is False


def test_pretix_operators_are_not_standard_json_logic() -> None:
    with pytest.raises(RuleError, match="unknown operator 'inList'"):
        json_logic({"inList": [1, [1]]})


def test_variables_are_read_only_when_the_rule_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[str] = []

    def counting(name: str, compute: Any) -> Any:
        def read(fact: CheckinFacts) -> Any:
            computed.append(name)
            return compute(fact)
        return read

    monkeypatch.setattr(rules_module, "_VARIABLES",
                        {name: counting(name, compute) for name, compute in rules_module._VARIABLES.items()})
    rule = {"and": [products("2"), {"!=": [{"var": "product"}, "3"]}, {"<": [{"var": "entries_days"}, 9]}]}
    assert check_rules(rule, facts(product=2)) is True
    assert computed == ["product", "entries_days"]  # once each, nothing else
    computed.clear()
    assert check_rules({"or": [products("2"), {"<": [{"var": "entries_days"}, 9]}]}, facts(product=2))
    assert computed == ["product"]


def test_a_rule_from_the_docs_season_pass_or_one_entry() -> None:
    """docs "Allowing multiple entries": a season pass (1) always, other tickets (2, 3) once."""
    rule = {"or": [{"and": [products("1")]},
                   {"and": [products("2", "3"), {"==": [{"var": "entries_number"}, 0]}]}]}
    once = (utc("2020-01-01T08:00:00"),)
    assert check_rules(rule, facts(product=1, entries=once * 5)) is True
    assert check_rules(rule, facts(product=2)) is True
    assert check_rules(rule, facts(product=2, entries=once)) is False
    assert check_rules(rule, facts(product=4)) is False


# --- the facts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"now": datetime(2020, 1, 1)}, "now must be an aware datetime"),
    ({"tz": "Asia/Tokyo"}, "tz must be a tzinfo"),
    ({"entries": (datetime(2020, 1, 1),)}, "entries must be aware"),
    ({"date_to": datetime(2020, 1, 1)}, "date_to must be an aware datetime"),
    ({"product": "12"}, "product must be an int"),
    ({"gate": 1.5}, "gate must be"),
])
def test_facts_refuse_what_a_rule_could_not_compare(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"now": utc("2020-01-01T10:00:00"), "tz": TOKYO}
    with pytest.raises(ValueError, match=message):
        CheckinFacts(**{**base, **fields})


def test_facts_take_entries_as_any_sequence() -> None:
    entry = utc("2020-01-01T08:00:00")
    listed: Any = [entry]
    assert CheckinFacts(now=utc("2020-01-01T10:00:00"), tz=TOKYO, entries=listed).entries == (entry,)


def test_check_rules_needs_facts() -> None:
    with pytest.raises(TypeError, match="CheckinFacts"):
        check_rules({}, {"now": 1})  # type: ignore[arg-type]


# --- any rule: True, False or RuleError -------------------------------------------------------------

PRETIX_OPS = ["inList", "objectList", "lookup", "buildTime", "isAfter", "isBefore", "entries_since",
              "entries_before", "entries_days_since", "entries_days_before", "var", "and", "or", "==", "<",
              ">=", "!", "if", "count"]
VARIABLES = ["now", "now_isoweekday", "product", "variation", "gate", "entries_number", "entries_today",
             "entries_days", "minutes_since_last_entry", "minutes_since_first_entry", "entry_status", "x"]
LEAVES = (st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.sampled_from(VARIABLES)
          | st.builds(pow, st.just(10), st.just(5000))  # an int with no repr
          | st.sampled_from(["custom", "customtime", "date_from", "date_to", "date_admission", "14:00",
                             "2020-01-01T10:00:00+01:00", "2020-01-01", "product", "2"])
          | st.builds(lambda name: {"var": name}, st.sampled_from(VARIABLES)))
PRETIX_RULES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4)
    | st.builds(lambda op, args: {op: args}, st.sampled_from(PRETIX_OPS), st.lists(inner, max_size=3)),
    max_leaves=15,
)


@given(PRETIX_RULES, st.booleans())
@settings(max_examples=examples(300, 2000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_pretix_rule_admits_refuses_or_raises_rule_error(rule: Any, with_entries: bool) -> None:
    entries = (utc("2019-12-31T23:00:00"), utc("2020-01-01T09:30:00")) if with_entries else ()
    fact = facts("2020-01-01T10:00:00", tz=BERLIN, product=2, gate=1, entries=entries,
                 date_admission=utc("2020-01-01T09:00:00"), date_to=utc("2020-01-01T18:00:00"))
    try:
        result = check_rules({"and": [rule]}, fact)
    except RuleError:
        return
    assert result is True or result is False
