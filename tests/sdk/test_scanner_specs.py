"""``check_scanner``: a ``[[scanner]]`` table is refused by ``check-config`` for the reasons the
gate would fail at start (or misbehave later), without opening a device or importing pyserial,
evdev or cv2; ``open_scanner`` refuses exactly the same; third-party sources come in through the
``passgate.scanners`` entry-point group."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import passgate.scanners as scanners
from passgate.scanners import (
    Scan,
    ScannerSource,
    ScannerSpecError,
    SerialScanner,
    StdinScanner,
    check_scanner,
    open_scanner,
    register_scanner,
    scanner_kinds,
)
from passgate.scanners.framing import FRAMINGS
from tests.helpers import examples

WAIT = 5.0
INF = float("inf")

GOOD = [
    ("serial:/dev/ttyACM0", {}),
    ("serial:/dev/serial/by-id/usb-Scanner-if00", {"baud": 9600, "framing": "cr", "gap_ms": 30}),
    ("serial:loop://", {"framing": "gap", "gap_ms": None, "min_len": 1, "max_len": 64, "strip_aim": False}),
    ("serial:socket://192.0.2.7:4001", {"dedupe": 0, "retry": 0.5, "max_rate": 50}),
    ("serial:rfc2217://scanner.local:2217?ign_set_control", {"baud": 115200}),
    ("serial:socket://[2001:db8::1]:65535", {"max_rate": INF}),
    ("serial:SOCKET://host:1", {"dedupe": 2.5}),
    ("keyboard:/dev/input/by-id/usb-Scanner-event-kbd", {"gap_ms": 40, "grab": False, "min_len": 4}),
    ("keyboard:/dev/input/event3", {"max_len": 512, "dedupe": 1, "retry": 2}),
    ("camera:0", {"hold_off": 3, "retry": 0.5}),
    ("camera:/srv/video.mp4", {}),  # not opened, so it need not exist here
    ("camera:rtsp://192.0.2.9/stream", {"hold_off": 0.0}),
    ("folder:/srv/passes", {"watch": True, "poll": 0.5, "dedupe": 1}),
    ("stdin:", {}),
    ("stdin:", {"max_len": 100, "dedupe": 0.5, "max_rate": INF}),
]


@pytest.mark.parametrize(("spec", "options"), GOOD)
def test_good_specs_pass(spec: str, options: dict[str, Any]) -> None:
    check_scanner(spec, options)


@pytest.mark.parametrize(("spec", "options"), GOOD)
def test_check_needs_no_optional_dependency(monkeypatch, spec: str, options: dict[str, Any]) -> None:
    for module in ("serial", "evdev", "cv2"):
        monkeypatch.setitem(sys.modules, module, None)  # an install without the extras
    check_scanner(spec, options)


# (spec, options, what the message starts with, a fragment it contains)
BAD = [
    ("seriall:/dev/x", {}, "source:", "unknown scanner kind 'seriall' (known: serial, keyboard, camera, "
     "folder, stdin"),
    ("Serial:/dev/x", {}, "source:", "did you mean 'serial'"),
    ("usb:/dev/x", {}, "source:", "unknown scanner kind 'usb'"),
    ("serial", {}, "source:", "kind:target"),
    ("", {}, "source:", "kind:target"),
    ("serial:", {}, "source:", "serial needs a target"),
    ("keyboard:", {}, "source:", "keyboard needs a target"),
    ("camera:", {}, "source:", "camera needs a target"),
    ("folder:", {}, "source:", "folder needs a target"),
    ("stdin:/dev/tty", {}, "source:", "stdin takes no target"),
    ("serial:socket://192.0.2.7:80900", {}, "source:", "1-65535, got '80900'"),
    ("serial:socket://192.0.2.7:0", {}, "source:", "1-65535"),
    ("serial:rfc2217://host:port", {}, "source:", "1-65535, got 'port'"),
    ("serial:socket://192.0.2.7", {}, "source:", "needs host:port"),
    ("serial:socket://:4001", {}, "source:", "needs host:port"),
    ("serial:sockett://192.0.2.7:4001", {}, "source:", "unknown serial URL scheme 'sockett'"),
    ("serial:/dev/x", {"bauds": 9600}, "bauds:", "unknown option 'bauds' for serial (accepted: baud, "
     "framing, gap_ms,"),
    ("serial:/dev/x", {"port": "/dev/y"}, "port:", "unknown option 'port'"),
    ("stdin:", {"stream": "/dev/tty"}, "stream:", "unknown option 'stream' for stdin"),
    ("keyboard:/dev/x", {"framing": "cr"}, "framing:", "unknown option 'framing' for keyboard"),
    ("camera:0", {"dedupe": 1}, "dedupe:", "accepted: hold_off, decoder, retry"),
    ("serial:/dev/x", {"baud": "9600"}, "baud:", "expected int, got str '9600'"),
    ("serial:/dev/x", {"baud": 9600.5}, "baud:", "expected int, got float"),
    ("serial:/dev/x", {"baud": True}, "baud:", "expected int, got bool"),
    ("serial:/dev/x", {"dedupe": True}, "dedupe:", "expected float, got bool"),
    ("stdin:", {"dedupe": "1s"}, "dedupe:", "expected float"),
    ("serial:/dev/x", {"gap_ms": "50"}, "gap_ms:", "expected float or None"),
    ("serial:/dev/x", {"strip_aim": 1}, "strip_aim:", "expected bool, got int"),
    ("serial:/dev/x", {"framing": ["cr"]}, "framing:", "expected str, got list"),
    ("keyboard:/dev/x", {"grab": "yes"}, "grab:", "expected bool"),
    ("folder:/srv", {"watch": None}, "watch:", "expected bool, got NoneType"),
    ("camera:0", {"decoder": {"backend": "zbar"}}, "decoder:", "expected Decoder or None"),
    ("serial:/dev/x", {"framing": "crr"}, "framing:", "unknown framing 'crr' (accepted: any, cr, lf"),
    ("serial:/dev/x", {"baud": 0}, "baud:", "must be positive"),
    ("serial:/dev/x", {"baud": -9600}, "baud:", "must be positive"),
    ("serial:/dev/x", {"max_len": 0}, "max_len:", "must be positive"),
    ("stdin:", {"max_len": -1}, "max_len:", "must be positive"),
    ("stdin:", {"max_rate": 0}, "max_rate:", "must be positive"),
    ("serial:/dev/x", {"max_rate": -1.5}, "max_rate:", "must be positive"),
    ("serial:/dev/x", {"gap_ms": 0}, "gap_ms:", "must be positive"),
    ("keyboard:/dev/x", {"gap_ms": -10}, "gap_ms:", "must be positive"),
    ("serial:/dev/x", {"retry": 0}, "retry:", "must be positive"),
    ("keyboard:/dev/x", {"retry": INF}, "retry:", "must be finite"),
    ("folder:/srv", {"poll": 0}, "poll:", "must be positive"),
    ("serial:/dev/x", {"dedupe": -1}, "dedupe:", "must be 0 or more"),
    ("camera:0", {"hold_off": -0.5}, "hold_off:", "must be 0 or more"),
    ("stdin:", {"dedupe": math.nan}, "dedupe:", "nan"),
    ("serial:/dev/x", {"min_len": 0}, "min_len:", "at least 1"),
    ("serial:/dev/x", {"min_len": 100, "max_len": 10}, "min_len:", "at most max_len (10)"),
    ("serial:/dev/x", {"max_len": 4}, "max_len:", "at least min_len (8)"),
    ("keyboard:/dev/x", {"min_len": 5000}, "min_len:", "at most max_len (4096)"),
]


def _refusal(spec: str, options: dict[str, Any]) -> str:
    with pytest.raises(ScannerSpecError) as caught:
        check_scanner(spec, options)
    return str(caught.value)


@pytest.mark.parametrize(("spec", "options", "start", "fragment"), BAD)
def test_bad_specs_are_refused_naming_the_option(
    spec: str, options: dict[str, Any], start: str, fragment: str
) -> None:
    message = _refusal(spec, options)
    assert message.startswith(start)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(("spec", "options", "start", "fragment"), BAD)
def test_open_scanner_refuses_the_same(spec: str, options: dict[str, Any], start: str, fragment: str) -> None:
    with pytest.raises(ScannerSpecError) as caught:
        open_scanner(spec, **options)
    assert str(caught.value) == _refusal(spec, options)
    assert isinstance(caught.value, ValueError)  # what callers of open_scanner caught before


def test_unknown_option_suggests_the_near_name() -> None:
    assert "did you mean 'baud'?" in _refusal("serial:/dev/x", {"bauds": 9600})
    assert "did you mean" not in _refusal("serial:/dev/x", {"colour": "red"})


def test_check_opens_nothing(monkeypatch) -> None:
    """check_scanner never constructs a source (the constructors import and open things)."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("constructed")

    monkeypatch.setattr(ScannerSource, "__init__", boom)  # every source calls it
    for spec, opts in GOOD:
        check_scanner(spec, opts)


def test_the_stricter_checks_catch_what_would_fail_later() -> None:
    """The constructors store these values and fail on them only once the gate runs (the reader
    thread dies): that is why check_scanner checks what the constructors do not."""
    source = SerialScanner("loop://", baud=-1)
    with pytest.raises(ValueError, match="baudrate"), source:
        next(iter(source))
    assert _refusal("serial:loop://", {"baud": -1}).startswith("baud: must be positive")
    read_end, write_end = os.pipe()
    os.write(write_end, b"PG1:A\n")
    os.close(write_end)
    stdin = StdinScanner(os.fdopen(read_end, "rb"), max_len="4")  # type: ignore[arg-type]
    with pytest.raises(TypeError), stdin:
        list(stdin)
    assert _refusal("stdin:", {"max_len": "4"}).startswith("max_len: expected int, got str")


# -- third-party sources ---------------------------------------------------------------------------
class FakeScanner(ScannerSource):
    """A third-party source: one scan, its target."""

    def __init__(self, url: str, *, speed: int = 1, label: str | None = None, dedupe: float = 0.0) -> None:
        super().__init__(f"fake:{url}", dedupe=dedupe)
        self.url, self.speed, self.label = url, speed, label

    def _read(self) -> Generator[Scan, None, None]:
        yield Scan(self.url.encode(), self.source, time.monotonic())


class NoTargetScanner(ScannerSource):
    def __init__(self, *, token: str) -> None:
        super().__init__("beacon:")
        self.token = token

    def _read(self) -> Generator[Scan, None, None]:
        yield from ()


class FakeEntryPoint:
    """What ``importlib.metadata.entry_points`` yields: a name, a value and ``load()``."""

    def __init__(self, name: str, value: str, load: Any) -> None:
        self.name, self.value, self.group = name, value, "passgate.scanners"
        self._load = load
        self.loads = 0

    def load(self) -> Any:
        self.loads += 1
        if isinstance(self._load, BaseException):
            raise self._load
        return self._load


@pytest.fixture
def plugins(monkeypatch) -> Iterator[dict[str, Any]]:
    """Fake entry points installed; the registry is restored afterwards."""
    monkeypatch.setattr(scanners, "_SOURCES", dict(scanners._SOURCES))
    monkeypatch.setattr(scanners, "_entry_points", None)
    points = {
        "fake": FakeEntryPoint("fake", "fakepkg.scan:FakeScanner", FakeScanner),
        "beacon": FakeEntryPoint("beacon", "fakepkg.beacon:NoTargetScanner", NoTargetScanner),
        "broken": FakeEntryPoint("broken", "brokenpkg:Scanner", ImportError("No module named 'usb'\n(hint)")),
        "notone": FakeEntryPoint("notone", "fakepkg:helper", len),
        "bad:name": FakeEntryPoint("bad:name", "fakepkg:x", FakeScanner),
    }
    calls: list[str] = []

    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        calls.append(group)
        return list(points.values()) if group == "passgate.scanners" else []

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    yield {"points": points, "calls": calls}


def test_third_party_source_through_an_entry_point(plugins: dict[str, Any]) -> None:
    check_scanner("serial:loop://", {})
    assert plugins["calls"] == []  # built-in kinds never read the entry points
    check_scanner("fake:udp://192.0.2.1", {"speed": 3, "label": None, "dedupe": 1})
    assert plugins["calls"] == ["passgate.scanners"]
    source = open_scanner("fake:udp://192.0.2.1", speed=2, label="north")
    assert isinstance(source, FakeScanner)
    assert (source.url, source.speed, source.label) == ("udp://192.0.2.1", 2, "north")
    assert [s.text for s in source] == ["udp://192.0.2.1"]
    assert plugins["calls"] == ["passgate.scanners"]  # read once
    assert plugins["points"]["fake"].loads == 1  # loaded once, then in the registry
    assert scanners._SOURCES["fake"] is FakeScanner
    assert plugins["points"]["broken"].loads == 0  # only the kind asked for is imported


def test_third_party_options_are_checked_like_builtins(plugins: dict[str, Any]) -> None:
    assert _refusal("fake:x", {"sped": 2}) == (
        "sped: unknown option 'sped' for fake (accepted: speed, label, dedupe); did you mean 'speed'?"
    )
    assert _refusal("fake:x", {"speed": "2"}).startswith("speed: expected int, got str")
    assert _refusal("fake:x", {"speed": True}).startswith("speed: expected int, got bool")
    assert _refusal("fake:x", {"label": 3}).startswith("label: expected str or None")
    assert _refusal("fake:x", {"dedupe": -1}).startswith("dedupe: must be 0 or more")
    assert "fake needs a target" in _refusal("fake:", {})
    with pytest.raises(ScannerSpecError, match=r"^speed:"):
        open_scanner("fake:x", speed=1.5)


def test_third_party_without_target_and_with_required_option(plugins: dict[str, Any]) -> None:
    assert open_scanner("beacon:", token="t").token == "t"
    assert _refusal("beacon:", {}) == "token: required option for beacon"
    assert "beacon takes no target" in _refusal("beacon:x", {"token": "t"})


def test_broken_entry_points_are_config_errors(plugins: dict[str, Any]) -> None:
    message = _refusal("broken:x", {})
    assert message.startswith("source: scanner kind 'broken'")
    assert "'brokenpkg:Scanner'" in message and "ImportError: No module named 'usb' (hint)" in message
    assert "not a ScannerSource subclass" in _refusal("notone:x", {})
    message = _refusal("nosuch:x", {})
    assert "(known: serial, keyboard, camera, folder, stdin, osdp, fake, beacon, broken, notone)" in message
    assert "bad:name" not in message
    assert scanner_kinds()[:5] == ("serial", "keyboard", "camera", "folder", "stdin")


def test_register_scanner(plugins: dict[str, Any]) -> None:
    register_scanner("fake2", FakeScanner)
    assert open_scanner("fake2:x", speed=4).speed == 4
    with pytest.raises(ValueError, match="built in"):
        register_scanner("serial", FakeScanner)
    with pytest.raises(ValueError, match="bad scanner kind"):
        register_scanner("a:b", FakeScanner)
    with pytest.raises(TypeError):
        register_scanner("x", dict)  # type: ignore[arg-type]


# -- check_scanner and the constructors never disagree ---------------------------------------------
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*FRAMINGS, "crr", "", "9600", "x"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
SENSIBLE = {
    "baud": st.integers(1, 1_000_000),
    "framing": st.sampled_from(FRAMINGS),
    "gap_ms": st.one_of(st.none(), st.floats(0.5, 1000)),
    "max_len": st.integers(1, 8192),
    "min_len": st.integers(1, 64),
    "strip_aim": st.booleans(),
    "dedupe": st.one_of(st.integers(0, 5), st.floats(0, 10)),
    "retry": st.floats(0.01, 5),
    "max_rate": st.one_of(st.floats(0.5, 100), st.just(INF)),
}
SERIAL_NAMES = [*SENSIBLE, "bauds", "port", "stream"]
STDIN_NAMES = ["max_len", "dedupe", "max_rate", "stream", "min_len", "baud"]


def options(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(st.sampled_from(names), unique=True, max_size=5).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.one_of(SENSIBLE.get(k, JUNK), JUNK) for k in keys})
    )


def _agree(spec: str, build: Any, opts: dict[str, Any]) -> None:
    try:
        check_scanner(spec, opts)
        refused = None
    except ScannerSpecError as exc:
        refused = str(exc)
    try:
        build(**opts)
        built = True
    except (TypeError, ValueError):
        built = False
    # Whatever the constructor refuses, check_scanner refuses first (it is stricter: it also
    # refuses what a constructor stores and only fails on, or misuses, once the gate runs).
    assert built or refused is not None
    # open_scanner refuses exactly what check_scanner refuses, with the same message.
    try:
        source = open_scanner(spec, **opts)
    except ScannerSpecError as exc:
        assert str(exc) == refused
    else:
        assert refused is None
        assert isinstance(source, ScannerSource)


@settings(max_examples=examples(100, 300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options(STDIN_NAMES))
def test_property_stdin_check_agrees_with_the_constructor(opts: dict[str, Any]) -> None:
    _agree("stdin:", StdinScanner, opts)


@settings(max_examples=examples(100, 300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options(SERIAL_NAMES))
def test_property_serial_check_agrees_with_the_constructor(opts: dict[str, Any]) -> None:
    _agree("serial:loop://", lambda **o: SerialScanner("loop://", **o), opts)


@settings(max_examples=examples(75, 200), deadline=None)
@given(options(["max_len", "dedupe", "max_rate"]))
def test_property_accepted_stdin_options_read_a_pipe(opts: dict[str, Any]) -> None:
    """What check_scanner accepts works, not only constructs: the source reads lines to EOF."""
    try:
        check_scanner("stdin:", opts)
    except ScannerSpecError:
        return
    read_end, write_end = os.pipe()
    os.write(write_end, b"PG1:A\nPG1:B\n")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream, StdinScanner(stream, **opts) as source:
        texts = [scan.text for scan in source]
    assert set(texts) <= {"PG1:A", "PG1:B"}
    assert source.health().scans == len(texts)


# -- stdin without a flood limit -------------------------------------------------------------------
def test_stdin_with_infinite_max_rate_takes_every_line(monkeypatch) -> None:
    lines = [f"PG1:LINE-{i:04d}" for i in range(500)]
    read_end, write_end = os.pipe()

    def write() -> None:
        with os.fdopen(write_end, "wb") as out:
            for i in range(0, 500, 50):  # in bursts, as a file copied into a pipe arrives
                out.write("".join(f"{line}\n" for line in lines[i : i + 50]).encode())
                out.flush()

    with os.fdopen(read_end, "rb") as stream:
        monkeypatch.setattr(sys, "stdin", stream)
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        with open_scanner("stdin:", max_rate=INF) as source:
            texts = [scan.text for scan in source]
        writer.join(WAIT)
    assert texts == lines
    assert source.health().dropped == 0


def test_stdin_default_max_rate_still_limits_a_flood() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"".join(b"PG1:LINE-%04d\n" % i for i in range(500)))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream, StdinScanner(stream) as source:
        texts = [scan.text for scan in source]
    assert 0 < len(texts) < 500
    assert source.health().dropped == 500 - len(texts)


def test_token_bucket_with_infinite_rate_never_goes_nan() -> None:
    """The base class's bucket: ``0 s x inf`` is nan, which ``min(inf, nan)`` happens to hide."""
    source = ScannerSource("x", max_rate=INF)
    assert all(source._take_token(5.0) for _ in range(1000))  # the same instant, again and again
    assert source._take_token(4.0)  # a scan stamped before the last refill
    assert not math.isnan(source._tokens)
    stdin = StdinScanner(max_rate=INF)
    assert all(stdin._take_token(5.0) for _ in range(1000))
