"""The guard display's HTTP interface over real loopback HTTP: /status, /metrics, /events, the Host
check on every route, and no control over HTTP."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from passgate import Reason
from passgated.display import QUEUE_LENGTH, ROUTES, STATES, GateMetrics, GuardDisplay

TIMEOUT_S = 10.0


@pytest.fixture
def display(make_display: Callable[..., GuardDisplay]) -> GuardDisplay:
    return make_display()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET, without raising on error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    """Status and JSON answer of a POST."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def raw_request(url: str, data: bytes) -> bytes:
    """Send raw bytes to the server and return everything it answers before closing."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # a body shorter than its Content-Length ends here, not at a timeout
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class EventStream:
    """A minimal SSE client over http.client: enough to see frames in order and the end of the stream."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
        self.connection.request("GET", "/events", headers={"Accept": "text/event-stream"})
        self.response = self.connection.getresponse()

    def next_event(self) -> dict | None:
        """The next data frame as JSON (comments and retry frames skipped); None at the end of the stream."""
        data: list[str] = []
        while True:
            line = self.response.fp.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text.startswith("data:"):
                data.append(text[5:].strip())
            elif text == "" and data:
                return json.loads("\n".join(data))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def open_stream() -> Iterator[Callable[[str], EventStream]]:
    streams: list[EventStream] = []

    def open_(url: str) -> EventStream:
        stream = EventStream(url)
        streams.append(stream)
        return stream

    yield open_
    for stream in streams:
        stream.close()


def decision(n: int, *, decision: str = "refuse", reason: str = "wrong_zone", pad: str = "") -> dict:
    return {"kind": "decision", "decision": decision, "reason": reason, "text": f"Pass for zone B{pad}",
            "direction": "entry", "pass_id": None, "t": float(n), "n": n}


# /status, /, unknown paths


def test_status_serves_the_daemons_dict_as_json(make_display: Callable[..., GuardDisplay]) -> None:
    when = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
    status = {"state": "IDLE", "gate_id": "G1", "counts_today": {"admit": 3}, "deny_list_at": when}
    display = make_display(status=lambda: status)
    code, headers, body = get(display.url + "/status")
    assert code == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {**status, "deny_list_at": str(when)}


def test_status_failure_is_a_json_503_without_traceback(make_display: Callable[..., GuardDisplay]) -> None:
    def broken() -> dict:
        raise RuntimeError("journal locked")

    code, _, body = get(make_display(status=broken).url + "/status")
    assert code == 503
    assert json.loads(body) == {"error": "status unavailable"}


def test_guard_page_is_self_contained_html(display: GuardDisplay) -> None:
    code, headers, body = get(display.url + "/")
    assert code == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = body.decode()
    for marker in ('id="headline"', 'id="reason"', 'new EventSource("/events")', "reconnecting…"):
        assert marker in page
    assert "http://" not in page and "https://" not in page  # offline: nothing fetched from elsewhere


@pytest.mark.parametrize("path", ["/nope", "/../etc/passwd", "/status/extra", "/control"])
def test_unknown_paths_are_json_404(display: GuardDisplay, path: str) -> None:
    code, _, body = get(display.url + path)
    assert code == 404
    assert "error" in json.loads(body)


def test_url_reports_the_bound_port(display: GuardDisplay) -> None:
    parts = urlsplit(display.url)
    assert parts.hostname == "127.0.0.1"
    assert parts.port not in (None, 0)


# /metrics


def metric_samples(display: GuardDisplay) -> dict[tuple[str, frozenset], float]:
    code, headers, body = get(display.url + "/metrics")
    assert code == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_histogram_and_counts_by_reason(display: GuardDisplay, metrics: GateMetrics) -> None:
    metrics.observe_decision("admit", "admit", "entry", 0.003)
    metrics.observe_decision("refuse", "wrong_zone", "entry", 0.02)
    metrics.observe_decision("refuse", "wrong_zone", "exit", 0.2)
    metrics.observe_decision("refuse", "used_up", "entry", 7.0)
    samples = metric_samples(display)

    def bucket(le: str) -> float:
        return samples[("passgate_decision_latency_seconds_bucket", frozenset({("le", le)}))]

    assert [bucket(le) for le in ("0.001", "0.005", "0.025", "0.25", "2.5", "+Inf")] == [0, 1, 2, 3, 3, 4]
    assert samples[("passgate_decision_latency_seconds_count", frozenset())] == 4
    assert samples[("passgate_decision_latency_seconds_sum", frozenset())] == pytest.approx(7.223)

    def count(decision: str, reason: str, direction: str) -> float:
        labels = frozenset({("decision", decision), ("reason", reason), ("direction", direction)})
        return samples[("passgate_decisions_total", labels)]

    assert count("admit", "admit", "entry") == 1
    assert count("refuse", "wrong_zone", "entry") == 1
    assert count("refuse", "wrong_zone", "exit") == 1
    assert count("refuse", "used_up", "entry") == 1
    assert count("refuse", "expired", "entry") == 0  # known reasons are exported before they happen


def test_metrics_start_with_every_reason_at_zero(display: GuardDisplay) -> None:
    samples = metric_samples(display)
    reasons = {
        dict(labels)["reason"] for name, labels in samples if name == "passgate_decisions_total"
    }
    assert reasons == {reason.value for reason in Reason}


def test_unknown_reason_counts_as_other(display: GuardDisplay, metrics: GateMetrics) -> None:
    metrics.observe_decision("refuse", "Valid from 18:00", "entry", 0.01)
    labels = frozenset({("decision", "refuse"), ("reason", "other"), ("direction", "entry")})
    assert metric_samples(display)[("passgate_decisions_total", labels)] == 1


def test_state_gauge_has_one_state_at_one(display: GuardDisplay, metrics: GateMetrics) -> None:
    for state in ("BOOT", "IDLE", "GRANTED", "EMERGENCY"):
        metrics.set_state(state)
    samples = metric_samples(display)
    states = {
        dict(labels)["state"]: value for (name, labels), value in samples.items() if name == "passgate_state"
    }
    assert states == {state: float(state == "EMERGENCY") for state in STATES}


# /events


def test_stream_sends_the_last_event_first_then_new_ones_in_order(
    display: GuardDisplay, open_stream: Callable[[str], EventStream]
) -> None:
    display.publish(decision(0))
    display.publish(decision(1))
    stream = open_stream(display.url)
    assert stream.response.status == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.next_event() == decision(1)  # only the last one: the page shows the present
    for n in range(2, 12):
        display.publish(decision(n))
    assert [stream.next_event() for _ in range(10)] == [decision(n) for n in range(2, 12)]


def test_every_stream_gets_every_event(
    display: GuardDisplay, open_stream: Callable[[str], EventStream]
) -> None:
    # With no last event, the response itself proves the stream is registered (it is, before headers).
    streams = [open_stream(display.url) for _ in range(3)]
    state = {"kind": "state", "state": "IDLE", "text": "Ready", "t": 1.0}
    display.publish(state)
    display.publish(decision(1))
    for stream in streams:
        assert [stream.next_event(), stream.next_event()] == [state, decision(1)]


def test_publish_never_waits_for_a_client_that_does_not_read(
    display: GuardDisplay, open_stream: Callable[[str], EventStream]
) -> None:
    """A stuck monitor must not stall the gate: its oldest events are dropped instead."""
    stream = open_stream(display.url)
    pad = "x" * 8192
    total = 4000  # ~32 MB: far more than the loopback socket buffers and the client's queue hold
    publisher = threading.Thread(target=lambda: [display.publish(decision(n, pad=pad)) for n in range(total)])
    publisher.start()
    publisher.join(timeout=60)
    assert not publisher.is_alive(), "publish() blocked on a client that does not read"
    received = []
    while (event := stream.next_event()) is not None and event["n"] != total - 1:
        received.append(event["n"])
    assert event is not None and event["n"] == total - 1  # the newest event always arrives
    assert received == sorted(received)
    assert len(received) < total - QUEUE_LENGTH  # and old ones were dropped rather than buffered


def test_close_ends_open_streams(make_display: Callable[..., GuardDisplay],
                                 open_stream: Callable[[str], EventStream]) -> None:
    display = make_display()
    display.publish(decision(1))
    streams = [open_stream(display.url) for _ in range(2)]
    assert [stream.next_event() for stream in streams] == [decision(1), decision(1)]
    display.close()
    assert [stream.next_event() for stream in streams] == [None, None]


def test_close_ends_a_stream_stuck_writing_to_a_client_that_does_not_read(
    make_display: Callable[..., GuardDisplay], open_stream: Callable[[str], EventStream],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream thread blocked on a stalled monitor must not outlive close() (it warns if one does)."""
    display = make_display()
    stream = open_stream(display.url)
    for n in range(4000):  # ~32 MB: more than loopback buffers hold, so the thread blocks in a write
        display.publish(decision(n, pad="x" * 8192))
    with caplog.at_level(logging.WARNING, logger="passgated.display"):
        display.close()
    assert caplog.records == []
    while stream.next_event() is not None:  # what was sent before the close, then the end
        pass


def test_close_without_start_and_twice(metrics: GateMetrics) -> None:
    display = GuardDisplay(status=dict, metrics=metrics, port=0)
    display.publish(decision(1))
    display.close()
    display.close()
    with pytest.raises(RuntimeError):
        display.start()


def test_context_manager_serves_then_stops(metrics: GateMetrics) -> None:
    with GuardDisplay(status=lambda: {"state": "BOOT"}, metrics=metrics, port=0) as display:
        url = display.url
        assert json.loads(get(url + "/status")[2]) == {"state": "BOOT"}
    with pytest.raises(urllib.error.URLError):
        get(url + "/status")


# No control over HTTP


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_control_over_http_is_refused_with_a_pointer_to_the_cli(display: GuardDisplay, method: str) -> None:
    request = urllib.request.Request(display.url + "/control/maintenance", data=b'{"mode": "free"}',
                                     method=method, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=TIMEOUT_S)
    with refused.value as error:
        assert error.code == 403
        assert "passgated maintenance" in json.loads(error.read())["error"]


@pytest.mark.parametrize(("path", "status"), [("/status", 405), ("/events", 405), ("/nope", 404)])
def test_other_posts_are_json_errors(display: GuardDisplay, path: str, status: int) -> None:
    code, answer = post(display.url + path, b"{}")
    assert code == status and set(answer) == {"error"}


# Host: a page whose own name was re-pointed at the gate (DNS rebinding) must read nothing


def request_with_host(url: str, method: str, path: str, host: str | None) -> bytes:
    """The raw answer to a request carrying ``host`` as its Host header (None: no Host at all)."""
    header = f"Host: {host}\r\n" if host is not None else ""
    return raw_request(url, f"{method} {path} HTTP/1.1\r\n{header}Connection: close\r\n\r\n".encode())


FOREIGN_HOSTS = ["attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example",
                 "192.0.2.7", "[2001:db8::1]:80", "", "[::1", None]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_foreign_host_gets_403_on_every_route(
    display: GuardDisplay, metrics: GateMetrics, host: str | None, method: str
) -> None:
    """Every route the server knows (and any other path) answers 403 before anything else."""
    display.publish(decision(1))
    metrics.observe_decision("admit", "admit", "entry", 0.001)
    for path in [*ROUTES, "/control/reset", "/nope"]:
        answer = request_with_host(display.url, method, path, host)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"403", (path, host, head)
        assert json.loads(body) == {"error": "Host does not name this gate: use its address, localhost or "
                                             "a name in [display] hosts"}
        assert b"Pass for zone" not in answer and b"passgate_" not in answer and b"G-07" not in answer


def test_the_routes_table_is_what_the_server_serves(display: GuardDisplay) -> None:
    """ROUTES is the list the Host test walks: every path in it is served, nothing else is."""
    parts = urlsplit(display.url)
    for path in ROUTES:
        with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head:  # the status line is enough: /events never ends
                head += sock.recv(1024)
        assert head.split(b" ", 2)[1] == b"200", path


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.2:99", "[::1]:8080",
                                  "gate-3.venue.lan", "Gate-3.Venue.LAN.:8080"])
def test_the_gates_own_names_are_served(make_display: Callable[..., GuardDisplay], host: str) -> None:
    display = make_display(hosts=["gate-3.venue.lan"])
    assert request_with_host(display.url, "GET", "/status", host).startswith(b"HTTP/1.0 200 ")


def test_an_address_is_the_gates_when_the_client_reached_it_there(metrics: GateMetrics) -> None:
    """Checked on the rule itself: binding a LAN interface in a test would expose the display.
    A dual-stack socket reports IPv4 addresses as ::ffff:a.b.c.d; they count as themselves."""
    with GuardDisplay(status=dict, metrics=metrics, port=0) as display:
        assert display._host_allowed("192.0.2.10:8080", "192.0.2.10")
        assert display._host_allowed("192.0.2.10", "::ffff:192.0.2.10")
        assert display._host_allowed("[fe80::1%25eth0]:8080", "fe80::1%eth0")
        assert not display._host_allowed("192.0.2.11", "192.0.2.10")
        assert not display._host_allowed("gate-3.venue.lan", "192.0.2.10")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"BLAH\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Long: " + b"x" * 70000 + b"\r\n\r\n",
        b"POST /control/mode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n{}",
        b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: attacker.example\r\n\r\n",
        b"PUT /status HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_requests_get_an_http_error_never_a_traceback(
    display: GuardDisplay, request_bytes: bytes
) -> None:
    answer = raw_request(display.url, request_bytes)
    assert b"Traceback" not in answer
    if answer.startswith(b"HTTP/"):
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500 or status in (501, 505)  # unknown method, HTTP version: protocol answers
    else:  # a one-word request line is HTTP/0.9, answered with a bare body
        assert "error" in json.loads(answer)
    assert get(display.url + "/status")[0] == 200  # and the server still serves
