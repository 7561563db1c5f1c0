"""Scanner sources: every one is an iterable of ``Scan`` and a context manager, so the gate does
not care where a scan came from.

>>> from passgate.scanners import open_scanner
>>> with open_scanner("serial:/dev/ttyACM0", framing="cr") as scanner:
...     for scan in scanner:
...         print(scan.text, scan.source)

Optional dependencies are imported by the source that needs them, when it is created.
``check_scanner`` validates a spec and its options (as a ``[[scanner]]`` table of a gate config
gives them) without creating the source, so ``check-config`` catches what would otherwise fail
at start; ``open_scanner`` runs the same check first.

Other packages add kinds through the entry-point group ``passgate.scanners``: the entry point's
name is the kind, its value a ``ScannerSource`` subclass, built as ``cls(target, **options)``
(``cls(**options)`` when its constructor takes no positional target). The group is read the first
time a kind is not a built-in one, and only the entry point asked for is imported.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import math
import threading
import types
import typing
from collections.abc import Mapping
from typing import Any

from ..decode import MissingExtra
from .base import ReaderHealth, Scan, ScanKind, ScannerHealth, ScannerSource
from .camera import CameraScanner
from .dedupe import Dedupe
from .folder import ImageFolderScanner
from .framing import FRAMINGS, Frame, Framer
from .keyboard import KeyboardScanner, KeyMap
from .osdp import OsdpError, OsdpScanner
from .serial import SerialScanner
from .stdin import StdinScanner

ENTRY_POINT_GROUP = "passgate.scanners"
SPEC_FORMS = (
    "serial:/dev/ttyACM0",
    "serial:loop://",
    "keyboard:/dev/input/event3",
    "camera:0",
    "camera:/path/video.mp4",
    "stdin:",
    "folder:/path",
    "osdp:/dev/ttyUSB0?addr=1",
    "osdp:/dev/ttyUSB0?addr=1:entry,2:exit&baud=115200",
)
# The one kind -> class mapping: the built-ins, then kinds registered or loaded from entry points.
_SOURCES: dict[str, type[ScannerSource]] = {
    "serial": SerialScanner,
    "keyboard": KeyboardScanner,
    "camera": CameraScanner,
    "folder": ImageFolderScanner,
    "stdin": StdinScanner,
    "osdp": OsdpScanner,
}
_BUILTINS = frozenset(_SOURCES)
_BUILTIN_CLASSES = frozenset(_SOURCES.values())
_NO_TARGET: tuple[type[ScannerSource], ...] = (StdinScanner,)  # "stdin:" takes no target
# Schemes of pyserial's URL handlers (serial.urlhandler.protocol_*), known without importing it.
PYSERIAL_SCHEMES = ("loop", "socket", "rfc2217", "spy", "alt", "hwgrep", "cp2110")
# Value rules by option name, for every source that has the option (the names come from the base
# class and the Framer, so they mean the same thing everywhere).
_POSITIVE = frozenset({"baud", "max_len", "max_rate", "gap_ms", "retry", "poll", "part_timeout"})
_NON_NEGATIVE = frozenset({"dedupe", "hold_off"})
_INFINITE_OK = frozenset({"max_rate"})  # inf: no flood limit (a simulation reading a file)

_entry_points: dict[str, Any] | None = None  # name -> EntryPoint, read when first needed
_lock = threading.Lock()


class ScannerSpecError(ValueError):
    """A wrong scanner spec or option. The message is one line that starts with the option's name
    (or ``source``), so a config layer can prefix it with where the table is (``scanner[0].``)."""


def check_scanner(spec: str, options: Mapping[str, Any]) -> type[ScannerSource]:
    """Validate ``spec`` and the constructor ``options`` of its source, without creating the
    source: nothing is opened and no optional dependency (pyserial, evdev, cv2) is imported.

    Checks that the kind is known, the target is present where one is needed (and that a
    ``socket://`` or ``rfc2217://`` serial URL has a port 1-65535), that every option is a keyword
    parameter of the source's constructor, that its value has the parameter's annotated type
    (an int is a float, a bool is not an int) and the value rules the source applies later
    (``framing``, positive ``baud``/``max_len``/``max_rate``/``gap_ms``/``retry``/``poll``,
    ``dedupe >= 0``, ``1 <= min_len <= max_len``) and the source's own ``check_target``. Returns
    the source's class; raises ``ScannerSpecError``.
    """
    return _check(spec, options)[0]


def open_scanner(spec: str, **options: Any) -> ScannerSource:
    """Create a source from a config string; ``options`` go to its constructor. Everything
    ``check_scanner`` refuses is refused here, with the same ``ScannerSpecError``.

    - ``serial:/dev/ttyACM0`` or ``serial:`` + any pyserial URL (``serial:loop://``,
      ``serial:socket://host:4001``); options ``baud``, ``framing``, ``gap_ms``, ``dedupe``...
    - ``keyboard:/dev/input/event3`` (better: a ``/dev/input/by-id/...-event-kbd`` path)
    - ``camera:0`` (device index), ``camera:/path/video.mp4``, ``camera:rtsp://...``; ``hold_off``
    - ``stdin:`` (one scan a line); ``max_rate=float("inf")`` to take every line of a file
    - ``folder:/path`` (images in a folder); ``watch=True`` to wait for new files
    - ``osdp:/dev/ttyUSB0?addr=1:entry,2:exit&baud=115200`` (OSDP readers on one RS-485 bus);
      ``keys`` (the secure-channel keys file), ``max_len``, ``part_timeout``, ``retry``
    - ``kind:target`` of a source registered in the ``passgate.scanners`` entry-point group
    """
    cls, target = _check(spec, options)
    return cls(**options) if target is None else cls(target, **options)


def register_scanner(kind: str, cls: type[ScannerSource]) -> None:
    """Make ``kind:target`` build ``cls``, as an entry point in ``passgate.scanners`` does.
    Built-in kinds cannot be replaced."""
    if not kind or ":" in kind or kind != kind.strip():
        raise ValueError(f"bad scanner kind {kind!r}: a non-empty name without ':'")
    if not (isinstance(cls, type) and issubclass(cls, ScannerSource)):
        raise TypeError(f"{cls!r} is not a ScannerSource subclass")
    if kind in _BUILTINS:
        raise ValueError(f"scanner kind {kind!r} is built in")
    with _lock:
        _SOURCES[kind] = cls


def scanner_kinds() -> tuple[str, ...]:
    """Every known kind: built-ins, registered ones, then entry points (not imported)."""
    with _lock:
        plugins = _discover()
        return (*_SOURCES, *(name for name in plugins if name not in _SOURCES))


# -- the checks ----------------------------------------------------------------------------------
def _check(spec: str, options: Mapping[str, Any]) -> tuple[type[ScannerSource], str | None]:
    """The class to build and the target to pass it (None: build it with options only)."""
    if not isinstance(spec, str):
        raise ScannerSpecError(f"source: must be a string like 'serial:/dev/ttyACM0', got {_show(spec)}")
    kind, colon, target = spec.partition(":")
    bad = f"source: bad scanner spec {_short(spec)}"
    if not colon:
        raise ScannerSpecError(f"{bad}: write kind:target, e.g. {_forms(kind)}")
    cls = _source_class(kind)
    if cls is None:
        known = scanner_kinds()
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ScannerSpecError(f"{bad}: unknown scanner kind {kind!r} (known: {', '.join(known)}){hint}")
    sig, target_param = _signature(cls)
    rule = _target_rule(cls, target_param)
    if rule == "none" and target:
        raise ScannerSpecError(f"{bad}: {kind} takes no target, write {kind + ':'!r}")
    if rule == "required" and not target:
        raise ScannerSpecError(f"{bad}: {kind} needs a target, e.g. {_forms(kind)}")
    if issubclass(cls, SerialScanner):
        _check_serial_url(target, bad)
    if target:
        try:
            cls.check_target(target)
        except ValueError as exc:
            raise ScannerSpecError(f"{bad}: {_line(exc)}") from None
    _check_options(kind, cls, sig, target_param, options)
    passed = target if target and rule != "none" else None
    try:  # what Python would refuse that the checks above did not foresee (positional-only...)
        if passed is None:
            sig.bind(None, **options)
        else:
            sig.bind(None, passed, **options)
    except TypeError as exc:
        raise ScannerSpecError(f"source: {kind} cannot be built with these options: {exc}") from None
    return cls, passed


def _source_class(kind: str) -> type[ScannerSource] | None:
    cls = _SOURCES.get(kind)
    if cls is not None:
        return cls
    with _lock:
        cls = _SOURCES.get(kind)  # loaded by another thread meanwhile
        if cls is not None:
            return cls
        entry_point = _discover().get(kind)
        if entry_point is None:
            return None
        where = f"source: scanner kind {kind!r} (entry point {ENTRY_POINT_GROUP} {entry_point.value!r})"
        try:
            loaded = entry_point.load()
        except Exception as exc:  # a plugin's import error is a config error of this gate
            raise ScannerSpecError(f"{where} failed to load: {type(exc).__name__}: {_line(exc)}") from exc
        if not (isinstance(loaded, type) and issubclass(loaded, ScannerSource)):
            raise ScannerSpecError(f"{where} is {_show(loaded)}, not a ScannerSource subclass")
        _SOURCES[kind] = loaded
        return loaded


def _discover() -> dict[str, Any]:
    """The entry points of the group by name, read once (the caller holds ``_lock``)."""
    global _entry_points
    if _entry_points is None:
        found: dict[str, Any] = {}
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = entry_point.name
            if name and ":" not in name and name == name.strip():
                found.setdefault(name, entry_point)  # the first distribution wins
        _entry_points = found
    return _entry_points


def _signature(cls: type[ScannerSource]) -> tuple[inspect.Signature, inspect.Parameter | None]:
    """The constructor's signature and its positional target parameter (None: it has none)."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError) as exc:
        raise ScannerSpecError(f"source: cannot inspect {cls.__name__}: {_line(exc)}") from None
    params = list(sig.parameters.values())[1:]  # without self
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    target = params[0] if params and params[0].kind in positional else None
    return sig, target


def _target_rule(cls: type[ScannerSource], target: inspect.Parameter | None) -> str:
    """``required``, ``optional`` or ``none``: built-ins need one (but stdin); other sources say
    it with their constructor (a positional parameter, with or without a default)."""
    if issubclass(cls, _NO_TARGET) or target is None:
        return "none"
    if cls in _BUILTIN_CLASSES:
        return "required"
    return "optional" if target.default is not inspect.Parameter.empty else "required"


def _check_serial_url(target: str, bad: str) -> None:
    """A pyserial URL must name a known handler; a network one needs host and port 1-65535."""
    if "://" not in target:
        return  # a device path
    scheme, _, rest = target.partition("://")
    scheme = scheme.lower()
    if scheme not in PYSERIAL_SCHEMES:
        raise ScannerSpecError(
            f"{bad}: unknown serial URL scheme {scheme!r} (pyserial knows: {', '.join(PYSERIAL_SCHEMES)})"
        )
    if scheme not in ("socket", "rfc2217"):
        return
    netloc = rest.split("?", 1)[0].split("/", 1)[0]
    if netloc.startswith("["):  # [IPv6]:port
        end = netloc.find("]")
        host, after = (netloc[1:end], netloc[end + 1 :]) if end > 0 else ("", "")
        port = after[1:] if after.startswith(":") else None
    else:
        host, colon, port_text = netloc.rpartition(":")
        port = port_text if colon else None
    if not host or port is None:
        raise ScannerSpecError(f"{bad}: {scheme}:// needs host:port, e.g. '{scheme}://192.0.2.7:4001'")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ScannerSpecError(f"{bad}: the port must be an integer 1-65535, got {_short(port)}")


def _check_options(
    kind: str,
    cls: type[ScannerSource],
    sig: inspect.Signature,
    target: inspect.Parameter | None,
    options: Mapping[str, Any],
) -> None:
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = {
        name: p for name, p in list(sig.parameters.items())[1:] if p is not target and p.kind in keyword
    }
    any_name = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    hints = _hints(cls)
    for name, value in options.items():
        if not isinstance(name, str):
            raise ScannerSpecError(f"source: option names must be strings, got {_show(name)}")
        param = params.get(name)
        if param is None:
            if any_name:
                continue
            close = difflib.get_close_matches(name, params, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            accepted = ", ".join(params) or "none"
            raise ScannerSpecError(f"{name}: unknown option {name!r} for {kind} (accepted: {accepted}){hint}")
        hint_type = hints.get(name, param.annotation)
        typed = hint_type is not inspect.Parameter.empty and not isinstance(hint_type, str)
        if typed and not _matches(value, hint_type):
            raise ScannerSpecError(f"{name}: expected {_describe(hint_type)}, got {_show(value)}")
        _check_value(name, value)
    missing = [
        name for name, p in params.items() if p.default is inspect.Parameter.empty and name not in options
    ]
    if missing:
        raise ScannerSpecError(f"{missing[0]}: required option for {kind}")
    _check_lengths(params, options)


def _hints(cls: type[ScannerSource]) -> dict[str, Any]:
    """The constructor's evaluated annotations; ``{}`` when they cannot be evaluated (a name
    imported only for type checkers), and then the raw annotations are used where not strings."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:
        return {}


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation; True for what cannot be told at run time."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    check = origin if isinstance(origin, type) else hint
    if not isinstance(check, type) or getattr(check, "__module__", "") == "typing":
        return True  # typing.IO, protocols, type variables: not checked
    try:
        return isinstance(value, check)
    except TypeError:
        return True


def _check_value(name: str, value: Any) -> None:
    """The rules the sources apply when they run (or that would make them misbehave)."""
    if isinstance(value, float):
        if math.isnan(value):
            raise ScannerSpecError(f"{name}: must be a number, got nan")
        if math.isinf(value) and not (name in _INFINITE_OK and value > 0):
            raise ScannerSpecError(f"{name}: must be finite, got {value}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "framing" and isinstance(value, str) and value not in FRAMINGS:
        raise ScannerSpecError(f"framing: unknown framing {_short(value)} (accepted: {', '.join(FRAMINGS)})")
    if number and name in _POSITIVE and not value > 0:
        raise ScannerSpecError(f"{name}: must be positive, got {value}")
    if number and name in _NON_NEGATIVE and not value >= 0:
        raise ScannerSpecError(f"{name}: must be 0 or more, got {value}")
    if number and name == "min_len" and not value >= 1:
        raise ScannerSpecError(f"min_len: must be at least 1, got {value}")


def _check_lengths(params: Mapping[str, inspect.Parameter], options: Mapping[str, Any]) -> None:
    """``min_len <= max_len``, with the constructor's default for the one not given."""
    if "min_len" not in params or "max_len" not in params:
        return
    low = options.get("min_len", params["min_len"].default)
    high = options.get("max_len", params["max_len"].default)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if numbers and low > high:
        if "min_len" in options:
            raise ScannerSpecError(f"min_len: must be at most max_len ({high}), got {low}")
        raise ScannerSpecError(f"max_len: must be at least min_len ({low}), got {high}")


# -- message helpers -----------------------------------------------------------------------------
def _forms(kind: str) -> str:
    forms = [f for f in SPEC_FORMS if f.startswith(f"{kind}:")]
    if not forms and kind in _SOURCES:  # a third-party kind
        forms = [f"{kind}:<target>"]
    return " or ".join(repr(f) for f in forms) if forms else ", ".join(repr(f) for f in SPEC_FORMS)


def _describe(hint: Any) -> str:
    if hint is None or hint is type(None):
        return "None"
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    return f"{type(value).__name__} {_short(value)}"


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


__all__ = [
    "ENTRY_POINT_GROUP",
    "SPEC_FORMS",
    "CameraScanner",
    "Dedupe",
    "Frame",
    "Framer",
    "ImageFolderScanner",
    "KeyMap",
    "KeyboardScanner",
    "MissingExtra",
    "OsdpError",
    "OsdpScanner",
    "ReaderHealth",
    "Scan",
    "ScanKind",
    "ScannerHealth",
    "ScannerSource",
    "ScannerSpecError",
    "SerialScanner",
    "StdinScanner",
    "check_scanner",
    "open_scanner",
    "register_scanner",
    "scanner_kinds",
]
