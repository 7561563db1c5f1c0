"""The guard display's HTTP interface over real loopback HTTP: /status, /metrics, /events, /control."""

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
from passgated.display import MAX_BODY, QUEUE_LENGTH, STATES, GateMetrics, GuardDisplay

TIMEOUT_S = 10.0


class Control:
    """The daemon's control callback: records calls; ``reject`` makes it refuse like unknown commands."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, command: str, body: dict) -> dict:
        if command == "reject":
            raise ValueError("unknown command: reject")
        if command == "crash":
            raise RuntimeError("bug in the daemon")
        self.calls.append((command, body))
        return {"ok": True, "command": command}


@pytest.fixture
def control() -> Control:
    return Control()


@pytest.fixture
def display(make_display: Callable[..., GuardDisplay], control: Control) -> GuardDisplay:
    return make_display(control=control)


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


# POST /control/<command>


def test_control_passes_the_json_body_and_returns_the_answer(display: GuardDisplay, control: Control) -> None:
    code, answer = post(display.url + "/control/maintenance", b'{"mode": "free", "minutes": 5}')
    assert (code, answer) == (200, {"ok": True, "command": "maintenance"})
    assert control.calls == [("maintenance", {"mode": "free", "minutes": 5})]


def test_control_with_an_empty_body_gets_an_empty_dict(display: GuardDisplay, control: Control) -> None:
    assert post(display.url + "/control/resync", b"")[0] == 200
    assert control.calls == [("resync", {})]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status"),
    [
        ("/control/reject", b"{}", "application/json", 400),  # control raised ValueError
        ("/control/mode", b"{not json", "application/json", 400),
        ("/control/mode", b"\xff\xfe", "application/json", 400),
        ("/control/mode", b"[1, 2]", "application/json", 400),
        ("/control/Mode%20X", b"{}", "application/json", 400),
        ("/control/mode", b"{}", "text/plain", 415),  # a cross-site form could send this without asking
        ("/control/crash", b"{}", "application/json", 500),  # a daemon bug: logged, no traceback sent
        ("/status", b"{}", "application/json", 405),
        ("/nope", b"{}", "application/json", 404),
    ],
)
def test_control_refusals_are_json(
    display: GuardDisplay, control: Control, path: str, body: bytes, content_type: str, status: int
) -> None:
    code, answer = post(display.url + path, body, content_type)
    assert code == status
    assert set(answer) == {"error"}
    assert "Traceback" not in answer["error"]
    assert control.calls == []


def test_control_is_404_when_the_daemon_offers_none(make_display: Callable[..., GuardDisplay]) -> None:
    code, answer = post(make_display(control=None).url + "/control/open", b"{}")
    assert code == 404 and "error" in answer


def test_control_body_is_size_limited(display: GuardDisplay, control: Control) -> None:
    body = json.dumps({"pad": "x" * MAX_BODY}).encode()
    code, answer = post(display.url + "/control/mode", body)
    assert code == 413 and "error" in answer
    assert control.calls == []


def test_control_only_from_allowed_addresses(
    make_display: Callable[..., GuardDisplay], control: Control
) -> None:
    display = make_display(control=control, control_from=["10.0.0.0/8"])
    code, answer = post(display.url + "/control/open", b"{}")
    assert code == 403 and "error" in answer
    assert control.calls == []


def test_control_refuses_a_dns_name_in_host(display: GuardDisplay, control: Control) -> None:
    """A page on another site re-pointed at 127.0.0.1 (DNS rebinding) carries its own name as Host."""
    answer = raw_request(
        display.url,
        b"POST /control/open HTTP/1.1\r\nHost: attacker.example:8080\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    assert answer.startswith(b"HTTP/1.0 403 ")
    assert control.calls == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"BLAH\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Long: " + b"x" * 70000 + b"\r\n\r\n",
        b"POST /control/mode HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n{}",
        b"POST /control/mode HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{}",
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


def test_ipv4_clients_of_a_dual_stack_server_count_as_loopback(
    metrics: GateMetrics, control: Control
) -> None:
    """A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; loopback must still count.
    Checked on the address rule itself: binding every interface in a test would expose /control."""
    with GuardDisplay(status=dict, metrics=metrics, control=control, port=0) as display:
        assert display._control_allowed("::ffff:127.0.0.1")
        assert display._control_allowed("127.0.0.1") and display._control_allowed("::1")
        assert not display._control_allowed("::ffff:192.0.2.7")
        assert not display._control_allowed("192.0.2.7")
