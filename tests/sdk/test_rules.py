"""JsonLogic (passgate.rules.json_logic): the official test suite case by case, JavaScript's coercions
where the suite is silent, the bounds on hostile rules, and a property test that nothing but
RuleError ever leaves. pretix's additions are in test_rules_pretix.py.

The expected values of the hand-written cases are JavaScript's (ECMA-262's ==, <, ToNumber, parseFloat,
Number::toString) as json-logic-js applies them; each was checked against json-logic-js under node
while this file was written."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passgate.rules import DEFAULT_BUDGET, DEFAULT_DEPTH, MAX_SIZE, RuleError, json_logic
from tests.helpers import examples

SUITE = Path(__file__).parents[1] / "vectors" / "jsonlogic" / "tests.json"


def _official_cases() -> list[Any]:
    """Every [rule, data, expected] of the suite, named by its position and the section it is in."""
    params, section = [], "start"
    for entry in json.loads(SUITE.read_text()):
        if isinstance(entry, str):
            section = re.sub(r"[^a-z0-9]+", "-", entry.lower()).strip("-")[:30]
            continue
        rule, data, expected = entry
        params.append(pytest.param(rule, data, expected, id=f"{len(params):03d}-{section}"))
    return params


OFFICIAL = _official_cases()


def same_json(got: Any, expected: Any) -> bool:
    """Equality that JSON would see: true is not 1, 2.0 is 2, list order matters."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, int | float):
        return isinstance(got, int | float) and (got == expected or (got != got and expected != expected))
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(same_json, got, expected))
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            same_json(got[k], expected[k]) for k in expected)
    return type(got) is type(expected) and got == expected


def test_the_official_suite_is_all_here() -> None:
    """The copy is the one SOURCE.md describes (278 cases), so a truncated file cannot pass quietly."""
    assert len(OFFICIAL) == 278


@pytest.mark.parametrize(("rule", "data", "expected"), OFFICIAL)
def test_official_suite(rule: Any, data: Any, expected: Any) -> None:
    assert same_json(json_logic(rule, data), expected)


def test_same_json_tells_types_apart() -> None:
    assert not same_json(1, True) and not same_json([1], [True]) and not same_json("1", 1)
    assert same_json(2.0, 2) and same_json(math.nan, math.nan) and not same_json({"a": 1}, {"a": 2})


# --- JavaScript's coercions, where the official suite says nothing ----------------------------------


@pytest.mark.parametrize(("rule", "expected"), [
    # == is JavaScript's Abstract Equality: arrays become their joined text, booleans numbers.
    ({"==": [[1], 1]}, True),
    ({"==": [[1, 2], "1,2"]}, True),
    ({"==": [[None], ""]}, True),
    ({"==": [[], False]}, True),
    ({"==": [[0], False]}, True),
    ({"==": [None, 0]}, False),
    ({"==": [None, None]}, True),
    ({"==": [False, "0"]}, True),
    ({"==": [True, "1"]}, True),
    ({"==": ["", 0]}, True),
    ({"==": [" 12 ", 12]}, True),
    ({"==": ["0x10", 16]}, True),
    ({"==": ["0b101", 5]}, True),
    ({"==": ["0o17", 15]}, True),
    ({"==": ["-0x10", -16]}, False),
    ({"==": ["1_000", 1000]}, False),
    ({"==": ["\u0661", 1]}, False),  # only ASCII digits are digits
    ({"==": [{}, "[object Object]"]}, True),
    ({"==": [2**53 + 1, 2**53]}, True),  # both are the same double
    ({"===": [[1], [1]]}, False),  # two arrays are two objects
    ({"===": [1, 1.0]}, True),
    ({"===": [1, True]}, False),
    ({"!==": ["1", 1]}, True),
    # < compares text by UTF-16 code units when both sides are text, numbers otherwise.
    ({"<": ["10", "9"]}, True),
    ({"<": ["10", 9]}, False),
    ({"<": [None, 1]}, True),
    ({"<=": [None, 0]}, True),
    ({">=": ["a", "a"]}, True),
    ({"<": [[2], [10]]}, False),
    ({"<": ["\uffff", "\U00010000"]}, False),  # U+10000 is D800 DC00 in UTF-16
    ({"<": ["a", "b", "c"]}, True),
    ({"<": [1, 3, 2]}, False),
    ({"<=": [1, 1, 1]}, True),
    ({">": ["2", 10]}, False),
    # Arithmetic: + and * read numbers as parseFloat does, - / % as ToNumber.
    ({"+": ["12abc", " 1"]}, 13),
    ({"+": ["1e3", ".5", "-.5e1x"]}, 995.5),
    ({"+": [" \n 3"]}, 3),
    ({"+": []}, 0),
    ({"-": ["\u00a0 7 \ufeff", 1]}, 6),
    ({"-": [[], 1]}, -1),
    ({"/": ["6", " 2 "]}, 3),
    ({"%": [-7, 2]}, -1),
    ({"*": ["2", "3"]}, 6),
    ({"*": ["2"]}, "2"),  # json-logic-js hands a single argument back untouched
    ({"max": ["3", 2, True]}, 3),
    ({"min": [None, 1]}, 0),
    # Text: numbers print as JavaScript prints them, null inside arrays as nothing.
    ({"cat": [None, [1, [2, None]], 1e21, 0.1, {}]}, "1,2,1e+210.1[object Object]"),
    ({"cat": [123456789012345680000, 2**60]}, "1234567890123456800001152921504606847000"),
    ({"cat": [1.5e-7, 0.000001, -0.0, 100, 123.456, -1.5]}, "1.5e-70.0000010100123.456-1.5"),
    ({"cat": [True, False]}, "truefalse"),
    ({"in": [1, "123"]}, True),
    ({"in": ["", ""]}, False),
    ({"in": [[1], [[1]]]}, False),
    ({"in": ["a", None]}, False),
    ({"in": ["a", 5]}, False),
    ({"substr": ["jsonlogic", 20]}, ""),
    ({"substr": ["abcdef", -2]}, "ef"),
    ({"substr": ["abcdef", 1, -1]}, "bcde"),
    ({"substr": ["abcdef", -3, 2]}, "de"),
    ({"substr": [12345, 1, 2]}, "23"),
    ({"substr": ["abcdef", "2", "2"]}, "cd"),
    ({"substr": ["abcdef", 1.9, 2.9]}, "bc"),
    ({"substr": ["abcdef", 1, None]}, ""),
    ({"substr": ["a\U0001d7d8b", 2]}, "\udfd8b"),  # positions are UTF-16 units: a pair can be split
    ({"substr": ["a\U0001d7d8b", -2, 2]}, "\udfd8b"),
    ({"substr": ["\U0001d7d8x", 0, -1]}, "\U0001d7d8"),
    ({"merge": [[1, [2]], 3, [[4]]]}, [1, [2], 3, [4]]),
    # Truthiness and the shapes if/and/or/! accept.
    ({"if": [0, "a", "", "b", [], "c", "0", "d"]}, "d"),
    ({"!": []}, True),
    ({"!!": [{}]}, True),
    ({"!!": [{"cat": []}]}, False),
    ({"and": []}, None),  # undefined in JavaScript: it has no JSON form
    ({"filter": [[1, 0, "", "0", [], [0], None], {"var": ""}]}, [1, "0", [0]]),
    ({"all": [[], True]}, False),
    ({"none": [5, True]}, True),
    ({"reduce": [[1, 2, 3], {"cat": [{"var": "accumulator"}, {"var": "current"}]}, ""]}, "123"),
    ({"reduce": [5, True, 7]}, 7),
    ({"some": [[1, 2], {">": [{"var": ""}, 1]}]}, True),
    ({"log": ["x"]}, "x"),
    ({}, {}),  # not an operation: a literal object
])
def test_javascript_semantics(rule: Any, expected: Any) -> None:
    assert same_json(json_logic(rule), expected)


def test_arithmetic_gives_ints_where_a_double_holds_them_exactly() -> None:
    """3, not 3.0 (json.dumps shows the difference); past 2**53 a double is not a whole number any more."""
    assert [json.dumps(json_logic({op: [6, "2"]})) for op in ("+", "-", "*", "/")] == ["8", "4", "12", "3"]
    assert json.dumps(json_logic({"*": [1e300, 1]})) == "1e+300"
    assert json.dumps(json_logic({"/": [1, 4]})) == "0.25"


@pytest.mark.parametrize("rule", [
    {"-": ["12abc", 1]}, {"+": [True]}, {"+": [None]}, {"-": ["\x1c7", 1]},  # \x1c is not JS white space
    {"max": [1, "x"]}, {"%": [math.inf, 2]}, {"/": [{}, 2]},
])
def test_not_a_number(rule: Any) -> None:
    result = json_logic(rule)
    assert isinstance(result, float) and math.isnan(result)


@pytest.mark.parametrize(("rule", "data", "expected"), [
    ({"var": "a.0.b"}, {"a": [{"b": "deep"}]}, "deep"),
    ({"var": ["a.1", "def"]}, {"a": [1]}, "def"),
    ({"var": ["a", "def"]}, {"a": None}, None),  # found, and null: not the default
    ({"var": "1"}, "xyz", "y"),
    ({"var": "1"}, "\U0001d7d8x", "\udfd8"),  # a UTF-16 unit, as JavaScript indexes strings
    ({"var": ["x"]}, 5, None),
    ({"var": "01"}, ["a", "b"], None),  # not an index JavaScript would read
    ({"var": 1.0}, ["a", "b"], "b"),  # String(1.0) is "1"
    ({"var": "a.b"}, {"a.b": 1, "a": {"b": 2}}, 2),
    ({"missing": ["a", "b"]}, {"a": "", "b": 0}, ["a"]),
    ({"missing": [["a", "zz"], "x"]}, {"zz": 1}, ["a"]),  # a first array is the list of names
    ({"missing": ["x", ["a", "zz"]]}, {}, ["x"]),  # a later one is {"var": ["a", "zz"]}: it has a default
    ({"missing_some": [1, ["a", "b"]]}, {"b": False}, []),
    ({"missing_some": [2, ["a", "b", "c"]]}, {"b": 1}, ["a", "c"]),
    ({"map": [{"var": "xs"}, {"+": [{"var": ""}, 1]}]}, {"xs": [1, "2"]}, [2, 3]),
    ({"==": [{"var": "xs"}, {"var": "xs"}]}, {"xs": [1]}, True),  # one array, compared with itself
    ({"in": [{"var": "x"}, [{"var": "x"}, 1]]}, {"x": {"a": 1}}, True),  # the very object, found by ===
])
def test_data(rule: Any, data: Any, expected: Any) -> None:
    assert same_json(json_logic(rule, data), expected)


def test_in_finds_the_same_object() -> None:
    shared = {"a": 1}
    assert json_logic({"in": [{"var": "x"}, {"var": "xs"}]}, {"x": shared, "xs": [shared]}) is True
    assert json_logic({"in": [{"var": "x"}, {"var": "xs"}]}, {"x": shared, "xs": [{"a": 1}]}) is False


def test_log_returns_its_value_through_logging_not_stdout(capsys: pytest.CaptureFixture[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="passgate.rules"):
        assert json_logic({"log": {"var": "a"}}, {"a": [1, 2]}) == [1, 2]
    assert capsys.readouterr().out == ""
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert "[1, 2]" in caplog.text


def test_evaluation_leaves_rule_and_data_as_they_were() -> None:
    rule = {"map": [{"merge": [{"var": "xs"}, [9]]}, {"cat": [{"var": ""}, "!"]}]}
    data = {"xs": [1, 2]}
    before = json.dumps([rule, data])
    assert json_logic(rule, data) == ["1!", "2!", "9!"]
    assert json_logic(rule, data) == ["1!", "2!", "9!"]
    assert json.dumps([rule, data]) == before


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "message"), [
    ({"/": [1, 0]}, "division by zero"),
    ({"%": [1, "0"]}, "division by zero"),
    ({"/": [0, []]}, "division by zero"),
    ({"nope": [1]}, "unknown operator 'nope'"),
    ({"method": ["abc", "toUpperCase"]}, "unknown operator"),  # json-logic-js removed it: unsafe
    ({"and": [True, {"if": [1, 2], "extra": 3}]}, "one key, not 2"),
    ({"==": [1]}, "== needs 2 arguments"),
    ({"<": []}, "< needs 2 arguments"),
    ({"-": []}, "- needs 1 argument"),
    ({"*": []}, "* needs 1 argument"),
    ({"min": []}, "min needs 1 argument"),
    ({"substr": []}, "substr needs 1 argument"),
    ({"missing_some": [1, "a"]}, "array of names"),
    ({"x" * 1000: 1}, "unknown operator 'xxxx"),
])
def test_refused_with_a_short_reason(rule: Any, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)) as refused:
        json_logic(rule)
    assert len(str(refused.value)) < 120
    assert isinstance(refused.value, ValueError)


def test_operations_add_operators_and_their_failures_are_rule_errors() -> None:
    plus_one = {"plus_one": lambda value: value + 1, "boom": lambda: 1 / 0}
    assert json_logic({"plus_one": {"var": "n"}}, {"n": 41}, operations=plus_one) == 42
    with pytest.raises(RuleError, match="'boom' failed: ZeroDivisionError"):
        json_logic({"boom": []}, operations=plus_one)
    with pytest.raises(RuleError, match="cannot be replaced"):
        json_logic(True, operations={"if": lambda *args: None})
    with pytest.raises(RuleError, match="unknown operator 'plus_one'"):
        json_logic({"plus_one": 1})  # added for one call only


@pytest.mark.parametrize("bounds", [{"budget": 0}, {"max_depth": -1}, {"budget": 1.5}, {"budget": True}])
def test_bounds_must_be_positive_ints(bounds: dict[str, Any]) -> None:
    with pytest.raises(RuleError, match="must be a positive int"):
        json_logic(1, **bounds)


# --- hostile rules ---------------------------------------------------------------------------------


def nested(levels: int, op: str = "!") -> Any:
    rule: Any = True
    for _ in range(levels):
        rule = {op: rule}
    return rule


def test_ten_thousand_levels_of_not_are_refused() -> None:
    with pytest.raises(RuleError, match=f"nested deeper than {DEFAULT_DEPTH} levels"):
        json_logic(nested(10_000))


def test_nesting_up_to_the_depth_is_evaluated() -> None:
    assert json_logic(nested(DEFAULT_DEPTH)) is (DEFAULT_DEPTH % 2 == 0)
    assert json_logic(nested(DEFAULT_DEPTH + 1), max_depth=DEFAULT_DEPTH + 1) is (DEFAULT_DEPTH % 2 == 1)
    with pytest.raises(RuleError, match="nested deeper"):
        json_logic(nested(DEFAULT_DEPTH + 1))
    with pytest.raises(RuleError, match="nested deeper"):
        json_logic(nested(11), max_depth=10)


def test_deep_arrays_in_rule_and_data_are_refused() -> None:
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(RuleError, match="nested deeper"):
        json_logic(deep)
    with pytest.raises(RuleError, match="array nested deeper"):
        json_logic({"cat": [{"var": "d"}]}, {"d": deep})
    with pytest.raises(RuleError, match="array nested deeper"):
        json_logic({"==": [{"var": "d"}, "x"]}, {"d": deep})


def test_an_array_that_contains_itself_is_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(RuleError, match="nested deeper"):
        json_logic({"cat": {"var": "loop"}}, {"loop": loop})
    with pytest.raises(RuleError, match="nested deeper"):
        json_logic(loop)


def test_a_deep_stack_of_the_caller_ends_in_rule_error_not_recursion_error() -> None:
    """Whatever the interpreter's stack has left, running out of it is a RuleError."""
    rule = nested(DEFAULT_DEPTH - 1)

    def descend(levels: int) -> Any:
        return json_logic(rule) if levels == 0 else descend(levels - 1)

    headroom = sys.getrecursionlimit() - len(_frames()) - 40
    with pytest.raises(RuleError, match="stack"):
        descend(headroom)


def _frames() -> list[Any]:
    frame, frames = sys._getframe(), []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_map_over_a_huge_merge_runs_out_of_budget() -> None:
    big = list(range(200_000))
    with pytest.raises(RuleError, match=f"more than {DEFAULT_BUDGET} steps"):
        json_logic({"map": [{"merge": [{"var": "big"}, {"var": "big"}]}, {"var": ""}]}, {"big": big})


def test_merge_and_cat_stop_at_the_size_bound() -> None:
    half = MAX_SIZE // 2 + 1
    with pytest.raises(RuleError, match=f"array longer than {MAX_SIZE}"):
        json_logic({"merge": [{"var": "a"}, {"var": "a"}]}, {"a": [0] * half})
    with pytest.raises(RuleError, match=f"text longer than {MAX_SIZE}"):
        json_logic({"cat": [{"var": "s"}, {"var": "s"}]}, {"s": "x" * half})


def test_doubling_in_reduce_is_stopped() -> None:
    twice = [{"var": "accumulator"}, {"var": "accumulator"}]
    for rule in ({"reduce": [{"var": "xs"}, {"cat": twice}, "ab"]},
                 {"reduce": [{"var": "xs"}, {"merge": twice}, [[1]]]}):
        with pytest.raises(RuleError, match=r"longer than|more than"):
            json_logic(rule, {"xs": list(range(64))})


def test_reduce_building_a_big_list_one_element_at_a_time_runs_out_of_budget() -> None:
    """Each merge copies the list so far: the work grows with the square of the length."""
    rule = {"reduce": [{"var": "xs"}, {"merge": [{"var": "accumulator"}, [{"var": "current"}]]}, []]}
    assert json_logic(rule, {"xs": list(range(100))}) == list(range(100))
    with pytest.raises(RuleError, match="more than"):
        json_logic(rule, {"xs": list(range(100_000))})


def test_the_budget_counts_operations_and_visited_elements() -> None:
    rule = {"all": [{"var": "xs"}, {">": [{"var": ""}, 0]}]}  # 2 steps, then 3 a visited element
    data = {"xs": [1] * 100}
    assert json_logic(rule, data, budget=1_000) is True
    with pytest.raises(RuleError, match="more than 100 steps"):
        json_logic(rule, data, budget=100)
    with pytest.raises(RuleError, match="more than 50 steps"):
        json_logic(list(range(60)), budget=50)  # a literal array's elements count too


# --- any input: a result or RuleError --------------------------------------------------------------

OPERATORS = ["var", "missing", "missing_some", "if", "?:", "==", "===", "!=", "!==", "!", "!!", "or", "and",
             "<", "<=", ">", ">=", "max", "min", "+", "-", "*", "/", "%", "map", "filter", "reduce", "all",
             "none", "some", "merge", "in", "cat", "substr", "log", "nope"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
           | st.sampled_from(["", "0", " 1 ", "0x1f", "a.b", "1e400", "Infinity", "current", "accumulator"])
           # ints past what a double holds, and past what repr() will print
           | st.builds(pow, st.sampled_from([2, -10]), st.sampled_from([54, 400, 5000])))


def _json_like(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(OPERATORS) | st.text(max_size=3), inner, max_size=2)
        | st.builds(lambda op, args: {op: args}, st.sampled_from(OPERATORS), inner),
        max_leaves=20,
    )


@given(_json_like(SCALARS), _json_like(SCALARS))
@settings(max_examples=examples(300, 2000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_rule_on_any_data_gives_a_result_or_rule_error(rule: Any, data: Any) -> None:
    try:
        first = json_logic(rule, data)
    except RuleError:
        with pytest.raises(RuleError):
            json_logic(rule, data)  # and the same refusal again: nothing depends on earlier calls
        return
    assert same_json(json_logic(rule, data), first)
