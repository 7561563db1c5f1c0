"""Fuzz JsonLogic and pretix's check-in rules: any JSON gives a result or ``RuleError``, nothing else.

The input is JSON text: ``[rule, data]``, or any other document as a rule over fixed sample data.
Text that is not JSON (or nests past the json module's own limit) is skipped: the parser is not
under test. Each rule is run by ``json_logic`` and by ``check_rules`` against fixed scan facts, and
the results must also be sound: JSON again (no internal marker leaks out), the same when evaluated
twice, a bool from ``check_rules``, and rule and data left as they were.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fuzz.common import main
from passgate.rules import CheckinFacts, RuleError, check_rules, json_logic

NOW = datetime(2026, 3, 29, 0, 40, tzinfo=UTC)  # 01:40 in Berlin, the night the clocks go forward
FACTS = CheckinFacts(
    now=NOW, tz=ZoneInfo("Europe/Berlin"), product=2, variation=None, gate=1,
    entries=(NOW - timedelta(days=1, hours=3), NOW - timedelta(minutes=95)), inside=False,
    date_from=NOW - timedelta(hours=2), date_to=NOW + timedelta(hours=6), date_admission=None)
SAMPLE = {"a": 1, "b": "x", "xs": [1, "2", None, 3.5, [4]], "o": {"p": {"q": [True, ""]}}, "s": " 12 "}


def _pretix(ids: list[str]) -> dict[str, Any]:
    return {"inList": [{"var": "product"}, {"objectList": [{"lookup": ["product", i, "T"]} for i in ids]}]}


def seeds() -> dict[str, bytes]:
    """Seed inputs: the official suite's kinds of case, pretix editor rules, a few hostile shapes."""
    docs: dict[str, Any] = {
        "compare": [{"and": [{"<": [{"var": "a"}, 2]}, {"==": [{"var": "s"}, 12]}]}, SAMPLE],
        "if-chain": [{"if": [{"var": "x"}, "a", {"in": ["1", {"var": "s"}]}, "b", "c"]}, SAMPLE],
        "iterate": [{"reduce": [{"filter": [{"var": "xs"}, {"!!": {"var": ""}}]},
                                {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, SAMPLE],
        "text": [{"cat": [{"substr": [{"var": "b"}, -1, 1]}, {"merge": [[1], {"var": "xs"}]}]}, SAMPLE],
        "missing": [{"missing_some": [1, ["a", "o.p.q.1", "zz"]]}, SAMPLE],
        "pretix-product-entries": {"or": [
            {"and": [_pretix(["1"])]},
            {"and": [_pretix(["2", "3"]), {"==": [{"var": "entries_number"}, 0]}]}]},
        "pretix-times": {"and": [
            {"isAfter": [{"var": "now"}, {"buildTime": ["date_admission"]}, 10]},
            {"isBefore": [{"var": "now"}, {"buildTime": ["customtime", "02:30"]}]},
            {"<=": [{"entries_days_since": [{"buildTime": ["custom", "2026-03-28T00:00:00+01:00"]}]}, 1]}]},
        "pretix-vars": {"or": [
            {">": [{"var": "minutes_since_last_entry"}, 90]},
            {"==": [{"var": "entry_status"}, "absent"]}, {"<": [{"var": "now_isoweekday"}, 6]}]},
        "deep": [{"!": [{"!": [{"!": [{"!": [{"!": [{"var": "a"}]}]}]}]}]}, SAMPLE],
        "doubling": [{"reduce": [{"var": "xs"}, {"merge": [{"var": "accumulator"}, {"var": "accumulator"}]},
                                 [[0]]]}, SAMPLE],
    }
    return {name: json.dumps(doc).encode() for name, doc in docs.items()}


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def test_one_input(data: bytes) -> None:
    """One JSON document: evaluated twice by json_logic and once by check_rules."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(document, list) and len(document) == 2:
        rule, sample = document
    else:
        rule, sample = document, SAMPLE
    before = _dump([rule, sample])
    try:
        result = json_logic(rule, sample)
    except RuleError:
        result = RuleError
    if result is not RuleError:
        text = _dump(result)  # a TypeError here: something that is not JSON came out
        assert _dump(json_logic(rule, sample)) == text, "a second evaluation gave another result"
    try:
        admitted = check_rules(rule, FACTS)
    except RuleError:
        admitted = None
    assert admitted is True or admitted is False or admitted is None, f"check_rules gave {admitted!r}"
    assert _dump([rule, sample]) == before, "evaluation changed the rule or the data"


if __name__ == "__main__":
    main(test_one_input)
