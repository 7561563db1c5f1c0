"""JsonLogic, with the operators and variables pretix adds for check-in rules, evaluated offline.

pretix check-in lists carry a ``rules`` field: JsonLogic (https://jsonlogic.com/operations.html) that
venue staff build in pretix's rule editor, plus pretix's own operators (``inList``, ``buildTime``,
``isAfter`` ...) and variables (``product``, ``entries_today`` ...). A gate scanning pretix tickets
must decide them exactly as pretixSCAN does offline, so:

- the standard operators follow the reference implementation, json-logic-js, including JavaScript's
  coercions for the types JSON has (``==``, ``<``, ``+``, truthiness); the official test suite
  (tests/vectors/jsonlogic/) is the judge;
- pretix's additions follow libpretixsync's offline checker
  (``eu.pretix.libpretixsync.check.AsyncCheckProvider``), which is what pretixSCAN runs without a
  network; where pretix's server (``pretix/base/services/checkin.py``) differs, a comment says so.

A rule is data from outside, so it is hostile until evaluated: nesting, steps and the size of what it
builds are bounded, and whatever the rule and data, the only exception that leaves is ``RuleError``.
It is also what a rule gets where json-logic-js would compute something meaningless (a division by
zero, a missing operand, an object of two keys as an operation) and, in ``check_rules``, for a
variable pretix does not define. Evaluation is pure: no I/O (``log`` goes to this module's logger at
DEBUG), no global state.
"""

from __future__ import annotations

import logging
import math
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as clock_time
from typing import Any, Final

__all__ = ["DEFAULT_BUDGET", "DEFAULT_DEPTH", "MAX_SIZE", "CheckinFacts", "RuleError", "check_rules",
           "json_logic"]

DEFAULT_BUDGET: Final = 100_000  # steps; a pretix rule takes tens, the limit about 0.1 s of CPU
DEFAULT_DEPTH: Final = 100  # nesting of operations and arrays; pretix's editor nests a handful
MAX_SIZE: Final = 1_000_000  # characters of a string, elements of an array that a rule may build

_logger = logging.getLogger(__name__)


class RuleError(ValueError):
    """A rule could not be evaluated: malformed, unknown operator or variable, or over a bound."""


# --- JavaScript's view of JSON values --------------------------------------------------------------
#
# json-logic-js leaves coercions to JavaScript, so the spec's ``==``, ``<`` and ``+`` are JavaScript's
# Abstract Equality, relational comparison and parseFloat (ECMA-262 7.1, 7.2) over the types JSON
# has. Numbers are IEEE doubles there: Python ints are compared and printed as the double they
# would be. Arrays and objects compare by identity under ``==``/``===``, as in JavaScript. The one
# type JSON lacks, a datetime (pretix's times), is text in ISO 8601 and a number in epoch milliseconds.

_NULL, _BOOL, _NUM, _STR, _OBJ = range(5)
_KINDS: Final[dict[type, int]] = {type(None): _NULL, bool: _BOOL, int: _NUM, float: _NUM, str: _STR}
_ARRAYS: Final = (list, tuple)
_INDEXED: Final = (list, tuple, str)
_PLAIN: Final = frozenset((str, int, float, bool, type(None)))  # evaluate to themselves
_SAFE_INT: Final = 2**53
_NAN: Final = math.nan
# StrWhiteSpaceChar: JavaScript's white space and line terminators (not Python's str.isspace()).
_JS_SPACE: Final = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009" \
                   "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_DECIMAL: Final = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX: Final = re.compile(r"0(?:[xX]([0-9a-fA-F]+)|[oO]([0-7]+)|[bB]([01]+))")
_INDEX: Final = re.compile(r"0|[1-9][0-9]{0,15}")  # a canonical array index


def _kind(value: Any) -> int:
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int | float):
        return _NUM
    return _STR if isinstance(value, str) else _OBJ


def _double(number: Any) -> float:
    """A number as JavaScript holds it: an int too large for a double is ±Infinity, not an error."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _number_out(value: float) -> int | float:
    """An arithmetic result: whole numbers a double holds exactly come back as int (3, not 3.0)."""
    if value.is_integer() and -_SAFE_INT <= value <= _SAFE_INT:
        return int(value)
    return value


def _number_text(number: int | float) -> str:
    """JavaScript's Number::toString: shortest round-trip digits, exponent outside 1e-7..1e21."""
    if isinstance(number, int) and -_SAFE_INT <= number <= _SAFE_INT:
        return str(int(number))
    value = _double(number)
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        power = point - 1
        text = digits[0] + (f".{digits[1:]}" if count > 1 else "") + ("e+" if power >= 0 else "e-") \
            + str(abs(power))
    return "-" + text if value < 0 else text


def _string_number(text: str) -> float:
    """JavaScript's StringToNumber: decimal, 0x/0o/0b or Infinity with white space around; else NaN."""
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _DECIMAL.fullmatch(text):
        return float(text)
    radix = _RADIX.fullmatch(text)
    if radix:
        hexa, octal, binary = radix.groups()
        return _double(int(hexa, 16) if hexa else int(octal, 8) if octal else int(binary, 2))
    return _NAN


def _is_time(value: Any) -> bool:
    return isinstance(value, datetime)


def _time_value(moment: datetime) -> float:
    """A datetime as JavaScript's Date primitive: milliseconds since the epoch."""
    try:
        return moment.timestamp() * 1000
    except (OverflowError, ValueError, OSError):
        return _NAN


class _Run:
    """One evaluation: the operators in force, the steps left and the bounds."""

    __slots__ = ("budget", "facts", "left", "max_depth", "ops")

    def __init__(self, ops: Mapping[str, _Op], budget: int, max_depth: int,
                 facts: CheckinFacts | None = None) -> None:
        self.ops = ops
        self.budget = budget
        self.left = budget
        self.max_depth = max_depth
        self.facts = facts

    def charge(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise RuleError(f"rule takes more than {self.budget} steps")

    def ev(self, rule: Any, data: Any, depth: int) -> Any:
        """json-logic-js's ``apply``: arrays are evaluated element by element, an object with one key
        is an operation, everything else is a literal."""
        kind = type(rule)
        if kind is dict:
            return self.operation(rule, data, depth)
        if kind is list:
            if depth >= self.max_depth:
                raise RuleError(f"rule nested deeper than {self.max_depth} levels")
            self.charge(1 + len(rule))
            depth += 1
            ev = self.ev
            return [a if type(a) in _PLAIN else ev(a, data, depth) for a in rule]
        if kind not in _PLAIN and isinstance(rule, dict):
            return self.operation(rule, data, depth)
        return rule

    def operation(self, rule: dict[Any, Any], data: Any, depth: int) -> Any:
        if len(rule) != 1:
            if not rule:
                return rule  # {} is a literal object (pretix's "no rule")
            raise RuleError(f"an operation is an object with one key, not {len(rule)}")
        if depth >= self.max_depth:
            raise RuleError(f"rule nested deeper than {self.max_depth} levels")
        self.left -= 1
        if self.left < 0:
            self.charge(0)
        ((op, args),) = rule.items()
        if type(args) is not list:
            args = [args]
        depth += 1
        call = self.ops.get(op)
        if call is not None:  # the operators whose arguments are evaluated first
            ev = self.ev
            plain = _PLAIN
            return call(self, [a if type(a) in plain else ev(a, data, depth) for a in args], data)
        lazy = _LAZY.get(op)
        if lazy is not None:
            return lazy(self, args, data, depth)
        raise RuleError(f"unknown operator {_brief(op)}")

    # JavaScript conversions that may walk an array charge for it, and stop at the bounds.

    def text(self, value: Any, depth: int = 0) -> str:
        """ToString."""
        kind = _kind(value)
        if kind == _STR:
            return str(value)
        if kind == _NUM:
            return _number_text(value)
        if kind == _BOOL:
            return "true" if value else "false"
        if kind == _NULL:
            return "null"
        if isinstance(value, _ARRAYS):
            return self.join(value, ",", depth)
        if _is_time(value):
            return str(value.isoformat())
        return "[object Object]"

    def join(self, items: list[Any] | tuple[Any, ...], separator: str, depth: int = 0) -> str:
        """Array.prototype.join: null elements are empty, nested arrays joined with commas."""
        if depth > self.max_depth:
            raise RuleError(f"array nested deeper than {self.max_depth} levels")
        self.charge(1 + len(items))
        parts = []
        size = 0
        for item in items:
            part = item if type(item) is str else "" if item is None else self.text(item, depth + 1)
            size += len(part) + len(separator)
            if size > MAX_SIZE:
                raise RuleError(f"text longer than {MAX_SIZE} characters")
            parts.append(part)
        return separator.join(parts)

    def primitive(self, value: Any) -> Any:
        """ToPrimitive of an object: arrays join to text, a datetime is its epoch milliseconds."""
        if isinstance(value, _ARRAYS):
            return self.join(value, ",")
        if _is_time(value):
            return _time_value(value)
        return "[object Object]"

    def number(self, value: Any) -> float:
        """ToNumber."""
        kind = _kind(value)
        if kind == _NUM:
            return _double(value)
        if kind == _STR:
            return _string_number(value)
        if kind == _BOOL:
            return 1.0 if value else 0.0
        if kind == _NULL:
            return 0.0
        primitive = self.primitive(value)
        return primitive if isinstance(primitive, float) else _string_number(primitive)

    def parse_float(self, value: Any) -> float:
        """parseFloat(String(value)): the longest decimal prefix after white space, else NaN."""
        kind = _kind(value)
        if kind == _NUM:
            return _double(value)
        found = _DECIMAL.match((value if kind == _STR else self.text(value)).lstrip(_JS_SPACE))
        if found is None:
            return _NAN
        literal = found.group()
        if literal.endswith("Infinity"):
            return -math.inf if literal[0] == "-" else math.inf
        return float(literal)

    def loose_equal(self, a: Any, b: Any) -> bool:
        """``==``: JavaScript's Abstract Equality."""
        while True:
            ka, kb = _kind(a), _kind(b)
            if ka == kb:
                return _same(a, b, ka)
            if ka == _NULL or kb == _NULL:
                return False
            if ka == _BOOL:
                a = 1.0 if a else 0.0
            elif kb == _BOOL:
                b = 1.0 if b else 0.0
            elif ka == _NUM and kb == _STR:
                return _double(a) == _string_number(b)
            elif ka == _STR and kb == _NUM:
                return _string_number(a) == _double(b)
            elif ka == _OBJ:
                a = self.primitive(a)
            else:
                b = self.primitive(b)

    def less(self, a: Any, b: Any, or_equal: bool = False) -> bool:
        """``<`` (or ``<=``): text against text by UTF-16 code units, anything else as numbers."""
        ka, kb = _kind(a), _kind(b)
        if ka == _NUM and kb == _NUM:
            x, y = _double(a), _double(b)
            return x <= y if or_equal else x < y
        if ka == _OBJ:
            a = self.primitive(a)
        if kb == _OBJ:
            b = self.primitive(b)
        if isinstance(a, str) and isinstance(b, str):
            if not (a.isascii() and b.isascii()):
                a, b = a.encode("utf-16-be", "surrogatepass"), b.encode("utf-16-be", "surrogatepass")
            return a <= b if or_equal else a < b
        x, y = self.number(a), self.number(b)
        return x <= y if or_equal else x < y


def _same(a: Any, b: Any, kind: int) -> bool:
    """Equality of two values of the same kind (``===`` once the kinds agree)."""
    if kind == _NUM:
        return _double(a) == _double(b)
    if kind == _OBJ:
        return a is b or (_is_time(a) and _is_time(b) and a == b)
    return bool(a == b)


def _strict_equal(a: Any, b: Any) -> bool:
    kind = _kind(a)
    return kind == _kind(b) and _same(a, b, kind)


def _truthy(value: Any) -> bool:
    """JsonLogic's truthiness (https://jsonlogic.com/truthy.html): JavaScript's, except that an empty
    array is false. "0" and {} are true; 0, NaN, "" and null are false."""
    kind = type(value)
    if kind is bool:
        return bool(value)
    if value is None:
        return False
    if kind is str:
        return value != ""
    if kind is int:
        return value != 0
    if kind is float:
        return value == value and value != 0
    if isinstance(value, _ARRAYS):
        return len(value) > 0
    if isinstance(value, str):
        return value != ""
    if isinstance(value, int | float):
        return value == value and value != 0
    return True


_BRIEF: Final = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 40, 40
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = 4


def _brief(value: Any) -> str:
    """A value for a message: short whatever its size or depth (a rule is not to be echoed back)."""
    try:
        return _BRIEF.repr(value)
    except ValueError:  # an int of more than 4,300 digits has no repr
        return f"a {type(value).__name__}"


def _need(values: list[Any], count: int, op: str) -> None:
    if len(values) < count:
        raise RuleError(f"{op} needs {count} argument{'s' if count > 1 else ''}, got {len(values)}")


_Op = Callable[[_Run, list[Any], Any], Any]
_LazyOp = Callable[[_Run, list[Any], Any, int], Any]


# --- the standard operators ------------------------------------------------------------------------
#
# Each takes (run, evaluated arguments, data). Where json-logic-js would yield undefined, NaN or
# Infinity because an argument is missing or a divisor is zero, the rule has no meaning and is
# refused: RuleError (pretix's Python implementation raises there too).

_MISSING: Final = object()


def _lookup(container: Any, key: str) -> Any:
    """``container[key]`` as JavaScript reads a property of parsed JSON (arrays by index)."""
    if isinstance(container, dict):
        try:
            return container[key]
        except KeyError:
            return _MISSING
    if isinstance(container, _INDEXED) and _INDEX.fullmatch(key):
        index = int(key)
        if isinstance(container, str) and not _narrow(container):
            return _substring(container, index, 1) or _MISSING
        return container[index] if index < len(container) else _MISSING
    return _MISSING


def _var(run: _Run, values: list[Any], data: Any) -> Any:
    path = values[0] if values else None
    default = values[1] if len(values) > 1 else None
    if path is None or (isinstance(path, str) and not path):
        return data
    if type(path) is not str:
        path = run.text(path)
    if "." not in path:
        found = _lookup(data, path)
        return default if found is _MISSING else found
    parts = path.split(".")
    run.charge(len(parts))
    for part in parts:
        if data is None:
            return default
        data = _lookup(data, part)
        if data is _MISSING:
            return default
    return data


def _missing_keys(run: _Run, keys: list[Any] | tuple[Any, ...], data: Any) -> list[Any]:
    run.charge(len(keys))
    missing = []
    for key in keys:
        found = _var(run, list(key) if isinstance(key, _ARRAYS) else [key], data)  # {"var": key}
        if found is None or (isinstance(found, str) and not found):
            missing.append(key)
    return missing


def _missing(run: _Run, values: list[Any], data: Any) -> list[Any]:
    keys = values[0] if values and isinstance(values[0], _ARRAYS) else values
    return _missing_keys(run, keys, data)


def _missing_some(run: _Run, values: list[Any], data: Any) -> list[Any]:
    _need(values, 2, "missing_some")
    need, keys = values[0], values[1]
    if not isinstance(keys, _ARRAYS):
        raise RuleError("missing_some takes a count and an array of names")
    missing = _missing_keys(run, keys, data)
    return [] if run.less(need, len(keys) - len(missing), or_equal=True) else missing


def _less(run: _Run, values: list[Any], data: Any) -> bool:
    _need(values, 2, "<")
    if len(values) == 2:
        return run.less(values[0], values[1])
    return run.less(values[0], values[1]) and run.less(values[1], values[2])  # "between"


def _less_equal(run: _Run, values: list[Any], data: Any) -> bool:
    _need(values, 2, "<=")
    if len(values) == 2:
        return run.less(values[0], values[1], or_equal=True)
    return run.less(values[0], values[1], or_equal=True) and run.less(values[1], values[2], or_equal=True)


def _binary(test: Callable[[_Run, Any, Any], bool], op: str) -> _Op:
    def apply(run: _Run, values: list[Any], data: Any) -> bool:
        _need(values, 2, op)
        return test(run, values[0], values[1])
    return apply


def _divisor(run: _Run, value: Any, op: str) -> float:
    divisor = run.number(value)
    if divisor == 0:
        raise RuleError(f"{op}: division by zero")
    return divisor


def _remainder(run: _Run, values: list[Any], data: Any) -> int | float:
    _need(values, 2, "%")
    dividend, divisor = run.number(values[0]), _divisor(run, values[1], "%")
    if math.isnan(dividend) or math.isnan(divisor) or math.isinf(dividend):
        return _NAN
    return _number_out(math.fmod(dividend, divisor))  # the dividend's sign, as JavaScript's %


def _divide(run: _Run, values: list[Any], data: Any) -> int | float:
    _need(values, 2, "/")
    dividend, divisor = run.number(values[0]), _divisor(run, values[1], "/")
    return _number_out(dividend / divisor)


def _plus(run: _Run, values: list[Any], data: Any) -> int | float:
    total = 0.0
    for value in values:
        total += run.parse_float(value)
    return _number_out(total)


def _times(run: _Run, values: list[Any], data: Any) -> Any:
    # json-logic-js reduces without an initial value: one argument comes back as it is ({"*": ["1"]}
    # is "1"), none is an error.
    _need(values, 1, "*")
    if len(values) == 1:
        return values[0]
    product = 1.0
    for value in values:
        product *= run.parse_float(value)
    return _number_out(product)


def _minus(run: _Run, values: list[Any], data: Any) -> int | float:
    _need(values, 1, "-")
    if len(values) == 1:
        return _number_out(-run.number(values[0]))
    return _number_out(run.number(values[0]) - run.number(values[1]))


def _extreme(pick: Callable[[list[float]], float], op: str) -> _Op:
    def apply(run: _Run, values: list[Any], data: Any) -> int | float:
        _need(values, 1, op)
        numbers = [run.number(value) for value in values]
        if any(math.isnan(number) for number in numbers):
            return _NAN
        return _number_out(pick(numbers))
    return apply


def _in(run: _Run, values: list[Any], data: Any) -> bool:
    _need(values, 2, "in")
    needle, haystack = values[0], values[1]
    if not _truthy(haystack) and not isinstance(haystack, _ARRAYS):
        return False  # json-logic-js: "if (!b ...) return false", so nothing is in ""
    if isinstance(haystack, str):
        return run.text(needle) in haystack
    if isinstance(haystack, _ARRAYS):
        run.charge(len(haystack))
        return any(_strict_equal(needle, item) for item in haystack)  # indexOf: ===
    return False


def _cat(run: _Run, values: list[Any], data: Any) -> str:
    return _build_text(run, run.join(values, ""))


def _build_text(run: _Run, text: str) -> str:
    run.charge(len(text) // 64)
    return text


def _integer(number: float) -> float:
    """ToIntegerOrInfinity."""
    if math.isnan(number):
        return 0.0
    return number if math.isinf(number) else float(math.trunc(number))


def _substr(run: _Run, values: list[Any], data: Any) -> str:
    """String.prototype.substr(start, length), negative length counting back from the end as PHP's
    (json-logic-js)."""
    _need(values, 1, "substr")
    source = run.text(values[0])
    start = _integer(run.number(values[1])) if len(values) > 1 else 0.0
    if len(values) > 2 and run.less(values[2], 0):
        rest = _substring(source, start, None)
        return _substring(rest, 0.0, _integer(_units(rest) + run.number(values[2])))
    return _substring(source, start, _integer(run.number(values[2])) if len(values) > 2 else None)


# JavaScript counts a string's length and positions in UTF-16 code units: a character beyond U+FFFF
# is two of them (a surrogate pair), which substr and indexing may split as JavaScript does.


def _narrow(text: str) -> bool:
    return text.isascii() or max(text) <= "\uffff"


def _units(text: str) -> int:
    return len(text) if _narrow(text) else len(text.encode("utf-16-le", "surrogatepass")) // 2


def _substring(text: str, start: float, length: float | None) -> str:
    size = _units(text)
    if start < 0:
        start = max(size + start, 0)
    first = int(min(start, size))
    end = first + int(size - first if length is None else min(max(length, 0), size - first))
    if size == len(text):
        return text[first:end]
    return text.encode("utf-16-le", "surrogatepass")[2 * first:2 * end].decode("utf-16-le", "surrogatepass")


def _merge(run: _Run, values: list[Any], data: Any) -> list[Any]:
    merged: list[Any] = []
    for value in values:
        if isinstance(value, _ARRAYS):
            merged.extend(value)
        else:
            merged.append(value)
        if len(merged) > MAX_SIZE:
            raise RuleError(f"array longer than {MAX_SIZE} elements")
    run.charge(len(merged) // 16)
    return merged


def _log(run: _Run, values: list[Any], data: Any) -> Any:
    value = values[0] if values else None
    if _logger.isEnabledFor(logging.DEBUG):
        _logger.debug("JsonLogic log: %s", _brief(value))
    return value


_STANDARD: Final[dict[str, _Op]] = {
    "var": _var,
    "missing": _missing,
    "missing_some": _missing_some,
    "==": _binary(lambda run, a, b: run.loose_equal(a, b), "=="),
    "!=": _binary(lambda run, a, b: not run.loose_equal(a, b), "!="),
    "===": _binary(lambda run, a, b: _strict_equal(a, b), "==="),
    "!==": _binary(lambda run, a, b: not _strict_equal(a, b), "!=="),
    "<": _less,
    "<=": _less_equal,
    ">": _binary(lambda run, a, b: run.less(b, a), ">"),
    ">=": _binary(lambda run, a, b: run.less(b, a, or_equal=True), ">="),
    "!": lambda run, values, data: not _truthy(values[0] if values else None),
    "!!": lambda run, values, data: _truthy(values[0] if values else None),
    "%": _remainder,
    "+": _plus,
    "-": _minus,
    "*": _times,
    "/": _divide,
    "min": _extreme(min, "min"),
    "max": _extreme(max, "max"),
    "in": _in,
    "cat": _cat,
    "substr": _substr,
    "merge": _merge,
    "log": _log,
}


# --- operators that evaluate their own arguments ---------------------------------------------------


def _if(run: _Run, args: list[Any], data: Any, depth: int) -> Any:
    """if / ?: : condition, value pairs, then an optional else; null when nothing matched."""
    count, index = len(args), 0
    while index < count - 1:
        if _truthy(run.ev(args[index], data, depth)):
            return run.ev(args[index + 1], data, depth)
        index += 2
    return run.ev(args[index], data, depth) if index == count - 1 else None


def _and(run: _Run, args: list[Any], data: Any, depth: int) -> Any:
    """The first falsy value, or the last value."""
    value = None
    for arg in args:
        value = run.ev(arg, data, depth)
        if not _truthy(value):
            return value
    return value


def _or(run: _Run, args: list[Any], data: Any, depth: int) -> Any:
    """The first truthy value, or the last value."""
    value = None
    for arg in args:
        value = run.ev(arg, data, depth)
        if _truthy(value):
            return value
    return value


def _scope(run: _Run, args: list[Any], data: Any, depth: int) -> tuple[list[Any] | tuple[Any, ...], Any]:
    """The array an iterating operator walks (empty unless its first argument gives an array) and the
    logic applied to each element, which becomes the data that logic sees."""
    items = run.ev(args[0], data, depth) if args else None
    return (items if isinstance(items, _ARRAYS) else ()), (args[1] if len(args) > 1 else None)


def _visit(run: _Run) -> None:
    run.left -= 1
    if run.left < 0:
        run.charge(0)


def _map(run: _Run, args: list[Any], data: Any, depth: int) -> list[Any]:
    items, logic = _scope(run, args, data, depth)
    out = []
    for item in items:
        _visit(run)
        out.append(run.ev(logic, item, depth))
    return out


def _filter(run: _Run, args: list[Any], data: Any, depth: int) -> list[Any]:
    items, logic = _scope(run, args, data, depth)
    out = []
    for item in items:
        _visit(run)
        if _truthy(run.ev(logic, item, depth)):
            out.append(item)
    return out


def _reduce(run: _Run, args: list[Any], data: Any, depth: int) -> Any:
    """reduce: the logic sees {"current": element, "accumulator": value so far}; the initial value is
    evaluated against the outer data (json-logic-js since 2024)."""
    items, logic = _scope(run, args, data, depth)
    value = run.ev(args[2], data, depth) if len(args) > 2 else None
    for item in items:
        _visit(run)
        value = run.ev(logic, {"current": item, "accumulator": value}, depth)
    return value


def _all(run: _Run, args: list[Any], data: Any, depth: int) -> bool:
    items, logic = _scope(run, args, data, depth)
    if not items:
        return False  # all of nothing is false in JsonLogic
    for item in items:
        _visit(run)
        if not _truthy(run.ev(logic, item, depth)):
            return False
    return True


def _some(run: _Run, args: list[Any], data: Any, depth: int) -> bool:
    items, logic = _scope(run, args, data, depth)
    for item in items:
        _visit(run)
        if _truthy(run.ev(logic, item, depth)):
            return True
    return False


def _none(run: _Run, args: list[Any], data: Any, depth: int) -> bool:
    return not _some(run, args, data, depth)


_LAZY: Final[dict[str, _LazyOp]] = {
    "if": _if,
    "?:": _if,
    "and": _and,
    "or": _or,
    "map": _map,
    "filter": _filter,
    "reduce": _reduce,
    "all": _all,
    "some": _some,
    "none": _none,
}


def _evaluate(rule: Any, data: Any, ops: Mapping[str, _Op], budget: int, max_depth: int,
              facts: CheckinFacts | None = None) -> Any:
    for name, bound in (("budget", budget), ("max_depth", max_depth)):
        if type(bound) is not int or bound < 1:
            raise RuleError(f"{name} must be a positive int")
    run = _Run(ops, budget, max_depth, facts)
    try:
        return run.ev(rule, data, 0)
    except RecursionError:  # the caller's own stack was already deep
        raise RuleError("rule nested too deeply for the interpreter's stack") from None


def _user_operation(name: str, function: Callable[..., Any]) -> _Op:
    def apply(run: _Run, values: list[Any], data: Any) -> Any:
        try:
            return function(*values)
        except RuleError:
            raise
        except Exception as exc:
            raise RuleError(f"operation {_brief(name)} failed: {type(exc).__name__}") from exc
    return apply


def json_logic(rule: Any, data: Any = None, *, operations: Mapping[str, Callable[..., Any]] | None = None,
               budget: int = DEFAULT_BUDGET, max_depth: int = DEFAULT_DEPTH) -> Any:
    """Evaluate a JsonLogic ``rule`` against ``data`` (both parsed JSON) with the standard operators.

    ``operations`` adds or replaces operators as json-logic-js's ``add_operation`` does: each is called
    with the evaluated arguments; ``if``, ``and``, ``or`` and the iterating operators cannot be
    replaced. Raises ``RuleError`` for a malformed rule, an unknown operator, a division by zero, or a
    rule over the ``budget`` of steps, the ``max_depth`` of nesting or the ``MAX_SIZE`` of what it builds.
    """
    ops: Mapping[str, _Op] = _STANDARD
    if operations:
        ops = dict(_STANDARD)
        for name, function in operations.items():
            if not isinstance(name, str) or not callable(function):
                raise RuleError(f"operations: {_brief(name)} is not a name with a callable")
            if name in _LAZY:
                raise RuleError(f"operations: {name!r} evaluates its own arguments and cannot be replaced")
            ops[name] = _user_operation(name, function)
    return _evaluate(rule, data, ops, budget, max_depth)


# --- pretix's check-in additions -------------------------------------------------------------------
#
# Read, not copied: libpretixsync's libpretixsync/src/main/java/eu/pretix/libpretixsync/check/
# AsyncCheckProvider.kt (initJsonLogic and the rule data built in its offline check) and its
# AsyncCheckProviderTest.kt rule tests; pretix's src/pretix/base/services/checkin.py
# (_get_logic_environment, LazyRuleVars, _build_time); pretix's rule editor's variable list
# (static/pretixcontrol/js/ui/checkinrules); the docs page https://docs.pretix.eu/guides/check-in/custom/.


def _aware(moment: Any) -> bool:
    return isinstance(moment, datetime) and moment.utcoffset() is not None


@dataclass(frozen=True)
class CheckinFacts:
    """What pretix's operators and variables read about one scan: no I/O, no personal data."""

    now: datetime  # aware
    tz: tzinfo  # the event's time zone
    product: int | None = None  # pretix item id
    variation: int | None = None
    gate: int | str | None = None  # pretix gate id (or name) of this device, if configured
    entries: tuple[datetime, ...] = ()  # this ticket's earlier successful entries, aware, oldest first
    inside: bool = False  # entry_status: "present" if inside else "absent"
    date_from: datetime | None = None  # the event's (or subevent's) times, aware
    date_to: datetime | None = None
    date_admission: datetime | None = None

    def __post_init__(self) -> None:
        # A naive time would make a comparison raise TypeError mid-rule: refuse it here, once.
        if not _aware(self.now):
            raise ValueError("CheckinFacts.now must be an aware datetime")
        if not isinstance(self.tz, tzinfo):
            raise ValueError("CheckinFacts.tz must be a tzinfo (the event's time zone)")
        if not isinstance(self.entries, tuple):
            object.__setattr__(self, "entries", tuple(self.entries))
        if not all(_aware(entry) for entry in self.entries):
            raise ValueError("CheckinFacts.entries must be aware datetimes")
        for name in ("date_from", "date_to", "date_admission"):
            if getattr(self, name) is not None and not _aware(getattr(self, name)):
                raise ValueError(f"CheckinFacts.{name} must be an aware datetime or None")
        for name in ("product", "variation"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int):
                raise ValueError(f"CheckinFacts.{name} must be an int id or None")
        if self.gate is not None and type(self.gate) not in (int, str):
            raise ValueError("CheckinFacts.gate must be an int id, a str or None")


def _local_day(moment: datetime, tz: tzinfo) -> date:
    return moment.astimezone(tz).date()


def _whole_minutes(since: datetime, now: datetime) -> int:
    """Minutes from ``since`` to ``now``, truncated toward zero (libpretixsync's
    Duration.toStandardMinutes; pretix's server floors, which differs only for an entry after now)."""
    micros = (now - since) // timedelta(microseconds=1)
    minutes = abs(micros) // 60_000_000
    return minutes if micros >= 0 else -minutes


def _minutes_since(facts: CheckinFacts, pick: Callable[[list[int]], int]) -> int:
    # -1 when there was no entry: pretix chose it over null, whose comparisons differ between platforms.
    if not facts.entries:
        return -1
    return pick([_whole_minutes(entry, facts.now) for entry in facts.entries])


def _id_text(value: int | str) -> str:
    return value if isinstance(value, str) else str(value)


# Variables as libpretixsync's offline check puts them in the rule data. Ids are text: libpretixsync
# stores product, variation and gate as strings, compared with the strings the editor writes into
# lookups (pretix's server compares ints on both sides instead). No variation is "" and no gate "0",
# libpretixsync's values; the day boundaries are the event's time zone's.
_VARIABLES: Final[dict[str, Callable[[CheckinFacts], Any]]] = {
    "now": lambda f: f.now,
    "now_isoweekday": lambda f: f.now.astimezone(f.tz).isoweekday(),
    "product": lambda f: "" if f.product is None else _id_text(f.product),
    "variation": lambda f: "" if f.variation is None else _id_text(f.variation),
    "gate": lambda f: "0" if f.gate is None else _id_text(f.gate),
    "entries_number": lambda f: len(f.entries),
    "entries_today": lambda f: sum(
        1 for entry in f.entries if _local_day(entry, f.tz) == _local_day(f.now, f.tz)),
    "entries_days": lambda f: len({_local_day(entry, f.tz) for entry in f.entries}),
    "minutes_since_last_entry": lambda f: _minutes_since(f, min),
    "minutes_since_first_entry": lambda f: _minutes_since(f, max),
    "entry_status": lambda f: "present" if f.inside else "absent",
}


class _RuleVars(dict[str, Any]):
    """The data a check-in rule sees: each variable computed the first time the rule reads it (as
    pretix's LazyRuleVars). A name pretix does not define is refused, not read as null: it is most
    likely a newer pretix's variable, and a gate must not guess what it meant."""

    __slots__ = ("facts",)

    def __init__(self, facts: CheckinFacts) -> None:
        super().__init__()
        self.facts = facts

    def __missing__(self, key: str) -> Any:
        compute = _VARIABLES.get(key)
        if compute is None:
            raise RuleError(f"unknown pretix variable {_brief(key)}")
        value = self[key] = compute(self.facts)
        return value


def _facts(run: _Run) -> CheckinFacts:
    assert run.facts is not None  # the pretix operators are only installed by check_rules
    return run.facts


def _moment(value: Any, op: str) -> datetime:
    if not _aware(value):
        raise RuleError(f"{op} needs a time (a buildTime or the variable now), got {_brief(value)}")
    return value


def _parse_text(value: Any, op: str) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise RuleError(f"{op} needs an ISO 8601 text, got {_brief(value)}")
    return value


def _localize(naive: datetime, tz: tzinfo) -> datetime:
    """A wall-clock time in ``tz``. A time the clocks skip (DST gap) is taken an hour earlier, as
    libpretixsync does ("rather do something wrong than crash")."""
    moment = naive.replace(tzinfo=tz)
    if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        earlier = naive - timedelta(hours=1)
        moment = datetime.combine(naive.date(), earlier.time(), tzinfo=tz)
    return moment


def _in_range(moment: datetime, op: str) -> datetime:
    """Years 2 to 9998 only: converting a time at the ends of datetime's range between zones overflows."""
    if not 1 < moment.year < 9999:
        raise RuleError(f"{op}: the year {moment.year} is out of range")
    return moment


def _build_time(run: _Run, values: list[Any], data: Any) -> datetime | None:
    """buildTime: a custom date and time, a time of day today (event's zone), or an event time."""
    facts = _facts(run)
    kind = values[0] if values and isinstance(values[0], str) else None
    if kind == "custom":
        _need(values, 2, "buildTime custom")
        try:
            moment = datetime.fromisoformat(_parse_text(values[1], "buildTime custom"))
        except ValueError:
            raise RuleError(f"buildTime custom: not an ISO 8601 date and time: {_brief(values[1])}") from None
        # Without an offset, the event's zone (pretix's editor always writes one).
        _in_range(moment, "buildTime custom")
        return moment if _aware(moment) else _localize(moment, facts.tz)
    if kind == "customtime":
        _need(values, 2, "buildTime customtime")
        try:
            wall = clock_time.fromisoformat(_parse_text(values[1], "buildTime customtime"))
        except ValueError:
            raise RuleError(f"buildTime customtime: not a time of day: {_brief(values[1])}") from None
        today = facts.now.astimezone(facts.tz).date()
        return _localize(datetime.combine(today, wall.replace(tzinfo=None)), facts.tz)
    if kind == "date_from":
        return _event_time(facts.date_from, "date_from")
    if kind == "date_to":
        # libpretixsync has no fallback here (a missing end fails the rule offline); pretix's server
        # falls back to date_from. Offline wins: refused.
        return _event_time(facts.date_to, "date_to")
    if kind == "date_admission":
        # Both fall back to the start; libpretixsync's code means to (optString ?: date_from).
        return _event_time(facts.date_admission or facts.date_from, "date_admission")
    return None  # as both pretix implementations: an unknown kind builds nothing


def _event_time(moment: datetime | None, name: str) -> datetime:
    if moment is None:
        raise RuleError(f"buildTime {name}: the event's time is not known")
    return moment


def _tolerance(value: Any, op: str) -> float:
    """Minutes. libpretixsync takes an integer; pretix's server any number: both are accepted."""
    minutes = _double(value) if _kind(value) == _NUM else _NAN
    if not math.isfinite(minutes):
        raise RuleError(f"{op}: the tolerance is a number of minutes, got {_brief(value)}")
    return minutes * 60


def _compare_times(values: list[Any], op: str, after: bool) -> bool:
    """isAfter(a, b, tolerance): a + tolerance > b. isBefore(a, b, tolerance): a - tolerance < b.
    Either way the tolerance admits people that many minutes beyond the limit (pretix docs, "Date
    and time tolerances"). A null tolerance is none; other argument counts are false (libpretixsync)."""
    if len(values) == 2 or (len(values) == 3 and values[2] is None):
        slack = 0.0
    elif len(values) == 3:
        slack = _tolerance(values[2], op)
    else:
        return False
    first = _moment(values[0], op).timestamp()
    second = _moment(values[1], op).timestamp()
    return first + slack > second if after else first - slack < second


def _entries_counter(days: bool, since: bool, op: str) -> _Op:
    """entries_since / entries_before (and their _days_ forms): earlier entries at or after the given
    time, or strictly before it; the days forms count distinct days in the event's zone."""
    def apply(run: _Run, values: list[Any], data: Any) -> int:
        _need(values, 1, op)
        facts = _facts(run)
        cutoff = _moment(values[0], op)
        run.charge(len(facts.entries))
        chosen = [entry for entry in facts.entries if (entry >= cutoff) == since]
        return len({_local_day(entry, facts.tz) for entry in chosen}) if days else len(chosen)
    return apply


def _lookup_id(run: _Run, values: list[Any], data: Any) -> str:
    """lookup(model, id, label): the id, as text (libpretixsync returns it as written, and the editor
    writes text; an id written as a number is read as its text, so it still matches, as on pretix's
    server, where libpretixsync would not match it)."""
    _need(values, 2, "lookup")
    key = values[1]
    if isinstance(key, str):
        return key
    if _kind(key) == _NUM:
        return _number_text(key)
    raise RuleError(f"lookup: an id is text or a number, got {_brief(key)}")


def _in_list(run: _Run, values: list[Any], data: Any) -> bool:
    _need(values, 2, "inList")
    items = values[1]
    if not isinstance(items, _ARRAYS):
        raise RuleError("inList needs a list (objectList) as its second argument")
    run.charge(len(items))
    return any(_strict_equal(values[0], item) for item in items)


_PRETIX: Final[dict[str, _Op]] = {
    **_STANDARD,
    "objectList": lambda run, values, data: list(values),
    "lookup": _lookup_id,
    "inList": _in_list,
    "buildTime": _build_time,
    "isAfter": lambda run, values, data: _compare_times(values, "isAfter", after=True),
    "isBefore": lambda run, values, data: _compare_times(values, "isBefore", after=False),
    "entries_since": _entries_counter(days=False, since=True, op="entries_since"),
    "entries_before": _entries_counter(days=False, since=False, op="entries_before"),
    "entries_days_since": _entries_counter(days=True, since=True, op="entries_days_since"),
    "entries_days_before": _entries_counter(days=True, since=False, op="entries_days_before"),
}


def check_rules(rule: Any, facts: CheckinFacts, *, budget: int = DEFAULT_BUDGET,
                max_depth: int = DEFAULT_DEPTH) -> bool:
    """True when ``rule`` admits: a rule of ``{}``/None admits; RuleError when it cannot be evaluated."""
    if not isinstance(facts, CheckinFacts):
        raise TypeError("check_rules needs a CheckinFacts")
    if rule is None or (isinstance(rule, dict) and not rule):
        return True
    if isinstance(rule, bool):
        return rule
    if not isinstance(rule, dict):
        # A text here is most likely the rule still in JSON: as a literal it would be true and admit.
        raise RuleError(f"a check-in rule is a JsonLogic object, not {type(rule).__name__}")
    return _truthy(_evaluate(rule, _RuleVars(facts), _PRETIX, budget, max_depth, facts))
