"""The guard display and status server: what the people beside the gate and its operators can see.

One small HTTP server on the gate (loopback unless the config says otherwise):

- ``/`` a full-screen page for the monitor beside the gate (ADMIT / REFUSED and why, the last
  decisions, today's counts, live over SSE), in the gate's language (``passgated.texts``);
- ``/events`` the server-sent event stream that page reads;
- ``/status`` the daemon's status dict as JSON; ``/metrics`` Prometheus text.

Nothing here changes the gate: operators control it through a Unix socket (``passgated.control``),
because an address is no credential. Every request must name the gate in its Host header (one of
its addresses, localhost, or a name from ``[display] hosts``): a web page whose own name was
re-pointed at the gate (DNS rebinding) is refused, so it cannot read what a guard sees. Pass ids are
never among what the daemon hands this server.

The gate's control loop calls :meth:`GuardDisplay.publish` on its hot path, so publishing only appends
to per-client bounded queues: a slow or stuck monitor loses old events, never delays a turnstile.

    metrics = GateMetrics()
    with GuardDisplay(status=lambda: {"state": "IDLE"}, metrics=metrics, port=0) as display:
        display.publish({"kind": "state", "state": "IDLE", "text": "Ready", "t": time.time()})
"""

from __future__ import annotations

import collections
import contextlib
import html
import ipaddress
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from passgate import Reason

from . import texts

__all__ = ["ROUTES", "STATES", "GateMetrics", "GuardDisplay"]

log = logging.getLogger(__name__)

STATES: tuple[str, ...] = (
    "BOOT",
    "IDLE",
    "GRANTED",
    "REFUSED",
    "EMERGENCY",
    "FAULT",
    "MAINTENANCE_FREE",
    "MAINTENANCE_LOCKED",
)
"""The gate's states, each a label of the ``passgate_state`` gauge (known up front so dashboards see 0s)."""

LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Scan-to-decision seconds: verification takes about a millisecond, anything near a second is felt."""

MAX_STREAMS = 32
"""Open /events streams at once; each holds a thread, and a gate has one or two monitors."""

QUEUE_LENGTH = 64
"""Events kept per stream client; a client further behind than this loses the oldest ones."""

KEEPALIVE_S = 15.0
"""Idle seconds before a stream sends a comment, so a vanished client is noticed and its thread ends."""

RETRY_MS = 1000
"""How soon a browser reconnects after the stream drops (EventSource's default is ~3 s)."""

RECENT = 5
"""Decisions the page lists under the big one (a guard who looked away sees what happened)."""

RECENT_FIELDS = ("decision", "reason", "text", "detail", "direction", "t", "product", "guard_check")
"""What the page itself carries of each: what the screen shows, whatever else an event holds."""

REQUEST_TIMEOUT_S = 10.0
"""Socket timeout for every connection: a client that stalls while sending or receiving is dropped."""

_REASON_CODES = frozenset(reason.value for reason in Reason)

ROUTES: dict[str, str] = {"/": "page", "/events": "events", "/status": "status", "/metrics": "metrics"}
"""Every path the server answers (GET), and the handler method (``_get_<name>``) that serves it."""

CONTROL_MOVED = ("control is not served over HTTP: run 'passgated reset' or 'passgated maintenance' "
                 "on the gate (it uses the gate's control socket)")


class GateMetrics:
    """Prometheus metrics for one gate, on its own CollectorRegistry.

    Its own registry keeps tests and several simulated gates in one process apart; the daemon may add
    its own collectors to :attr:`registry`.

        metrics = GateMetrics()
        metrics.observe_decision("refuse", "wrong_zone", "entry", 0.004)
        body, content_type = metrics.render()
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._decisions = Counter(
            "passgate_decisions",
            "Decisions taken on scanned passes, by outcome, reason code and direction.",
            ("decision", "reason", "direction"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "passgate_decision_latency_seconds",
            "Seconds from a scan to its decision.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._state = Gauge(
            "passgate_state", "1 for the gate's current state, 0 for the others.", ("state",),
            registry=self.registry,
        )
        self._state_lock = threading.Lock()
        self._current_state: str | None = None
        # Known label sets start at 0, so rates and "no refusals today" are visible from the first scrape.
        for direction in ("entry", "exit"):
            for reason in Reason:
                decision = "admit" if reason is Reason.ADMIT else "refuse"
                self._decisions.labels(decision, reason.value, direction)
        for state in STATES:
            self._state.labels(state).set(0)

    def observe_decision(self, decision: str, reason: str, direction: str, latency_s: float) -> None:
        """Count one decision and its latency; a reason outside ``passgate.Reason`` counts as ``other``.

        Mapping unknown reasons keeps the number of series bounded if free text is passed by mistake.
        """
        code = reason if reason in _REASON_CODES else "other"
        self._decisions.labels(decision, code, direction).inc()
        self._latency.observe(latency_s)

    def set_state(self, state: str) -> None:
        """Set the state gauge to 1 for ``state`` and 0 for the previous one."""
        with self._state_lock:  # render() takes it too, so a scrape never sees two states at 1
            if self._current_state is not None:
                self._state.labels(self._current_state).set(0)
            self._state.labels(state).set(1)
            self._current_state = state

    def render(self) -> tuple[bytes, str]:
        """The ``/metrics`` body in Prometheus text format and its content type."""
        with self._state_lock:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Stream:
    """One /events client: a bounded queue the publisher appends to and the client's thread drains.

    ``deque(maxlen=...)`` drops the oldest entry itself and its append is atomic, so the publisher never
    waits for the client; the Event wakes the client's thread.
    """

    def __init__(self, connection: socket.socket, last: str | None) -> None:
        self.connection = connection
        self.queue: collections.deque[str] = collections.deque(maxlen=QUEUE_LENGTH)
        self.wake = threading.Event()
        if last is not None:
            self.put(last)

    def put(self, frame: str) -> None:
        self.queue.append(frame)
        self.wake.set()


class _Server(ThreadingHTTPServer):
    """The stdlib server with daemon threads and its errors sent to logging instead of stderr."""

    daemon_threads = True
    display: GuardDisplay

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("guard display: error while serving %s", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class GuardDisplay:
    """HTTP server: / (guard page), /events (SSE), /status (JSON), /metrics (see ``ROUTES``).

    ``status`` is the daemon's callback; it runs on the server's request threads. ``hosts`` are the
    names, besides its addresses and localhost, a request may call the gate by in its Host header.
    ``port=0`` picks a free port (see :attr:`url`). The socket is bound here, so a port in use fails
    at construction; used as a context manager the display is started on entry and closed on exit.

        with GuardDisplay(status=daemon.status, metrics=metrics) as display:
            display.publish({"kind": "state", "state": "IDLE", "text": "Ready", "t": time.time()})
    """

    def __init__(
        self,
        *,
        status: Callable[[], dict],
        metrics: GateMetrics,
        host: str = "127.0.0.1",
        port: int = 8080,
        hosts: Sequence[str] = (),
        gate_name: str = "",
        language: str = texts.REFERENCE,
        sound: bool = True,
    ) -> None:
        self._status = status
        self._metrics = metrics
        self._hosts = frozenset(name.lower().rstrip(".") for name in hosts)
        self._page_html = resources.files(__package__).joinpath("guard_page.html").read_text(encoding="utf-8")
        self._gate_name = gate_name
        self._language = language
        self._texts = texts.catalog(language)  # raises for a language not shipped: at start, not per page
        self._sound = sound
        self._recent: collections.deque[dict] = collections.deque(maxlen=RECENT)
        self._lock = threading.Condition()
        self._streams: set[_Stream] = set()
        self._last: str | None = None
        self._ids = itertools.count(1)
        self._closed = False
        self._thread: threading.Thread | None = None
        host = host.strip("[]")  # "[::1]" as written in a listen address
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _Handler)
        except OSError as exc:  # say which address: "address already in use" alone helps nobody
            raise OSError(exc.errno, f"guard display cannot listen on {host}:{port}: "
                                     f"{exc.strerror or exc}") from None
        self._server.display = self
        self.failures = 0  # times the server loop died and was restarted

    @property
    def url(self) -> str:
        """The server's base URL, with the port actually bound."""
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a daemon thread (the gate's control loop must never wait on HTTP clients)."""
        if self._thread is not None or self._closed:
            raise RuntimeError("GuardDisplay.start() called twice or after close()")
        self._thread = threading.Thread(target=self._serve, name="guard-display", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """The accept loop, restarted with backoff if it ever dies (the page must come back)."""
        backoff = 0.5
        while not self._closed:
            try:
                # close() waits for the accept loop to notice: 50 ms polls keep that short.
                self._server.serve_forever(poll_interval=0.05)
                return
            except Exception:
                self.failures += 1
                log.exception("guard display server failed (%d so far); restarting in %.1f s",
                              self.failures, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def publish(self, event: dict) -> None:
        """Send ``event`` to every connected page and remember it for pages that connect later.

        Thread-safe and non-blocking: the frame is formatted once and appended to each client's bounded
        queue; a client that is behind loses its oldest events instead of slowing the caller.
        """
        data = json.dumps(event, default=str, separators=(",", ":"))
        with self._lock:
            frame = f"id: {next(self._ids)}\ndata: {data}\n\n"
            if event.get("kind") == "decision":
                self._recent.append(event)
            if event.get("kind") != "counts":  # the screen a page that connects later shows
                self._last = frame
            for stream in self._streams:
                stream.put(frame)

    def close(self) -> None:
        """Stop the server and end open /events streams (waits briefly for their threads to finish)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            streams = list(self._streams)
        for stream in streams:
            stream.wake.set()  # an idle stream returns at once
            with contextlib.suppress(OSError):  # one blocked writing to a stuck client fails at once
                stream.connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        with self._lock:
            if not self._lock.wait_for(lambda: not self._streams, timeout=2.0):
                log.warning("guard display: %d event streams still open after close()", len(self._streams))

    def __enter__(self) -> GuardDisplay:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Used by _Handler, on the server's threads.

    def page(self) -> bytes:
        """The guard page as it is now: the gate's name, language and words in the HTML itself, the
        last decisions and the sound setting for its script to draw at once (no wait for /status)."""
        with self._lock:
            recent = [{key: event.get(key) for key in RECENT_FIELDS} for event in reversed(self._recent)]
        setup = {"gate": self._gate_name, "language": self._language, "sound": self._sound,
                 "recent": recent, "texts": self._texts}
        values = {"LANG": html.escape(self._language), "GATE": html.escape(self._gate_name or "–"),
                  "GATE_LABEL": html.escape(self._texts["label"]["gate"]),
                  "CONNECTING": html.escape(self._texts["headline"]["CONNECTING"]),
                  "SETUP": _script_json(setup)}
        # One pass: a value (a gate named "__SETUP__") is never read as a placeholder again.
        page = _PLACEHOLDER.sub(lambda found: values[found.group(1)], self._page_html)
        return page.encode()

    def _open_stream(self, connection: socket.socket) -> _Stream | None:
        """Register a client, seeded with the last event; None when closed or too many are open."""
        with self._lock:
            if self._closed or len(self._streams) >= MAX_STREAMS:
                return None
            stream = _Stream(connection, self._last)
            self._streams.add(stream)
            return stream

    def _close_stream(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.discard(stream)
            self._lock.notify_all()

    def _host_allowed(self, host_header: str | None, local_address: str) -> bool:
        """Whether a Host header names this gate: localhost, a configured name, a loopback address
        or the address the client reached the gate on (a rebound page sends its own name)."""
        if not host_header:
            return False
        try:
            host = (urlsplit(f"//{host_header}").hostname or "").rstrip(".")
        except ValueError:  # "[::1" and the like
            return False
        if host == "localhost" or host in self._hosts:
            return True
        address = _ip(host)
        return address is not None and (address.is_loopback or address == _ip(local_address))


class _HTTPError(Exception):
    """Ends a request with a JSON error; raised by the checks so each route reads top to bottom."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "passgated"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._dispatch(self._route_get)

    def do_POST(self) -> None:
        self._dispatch(self._route_post)

    def _dispatch(self, route: Callable[[str], None]) -> None:
        """Check Host, then run a route; checks raise _HTTPError, and a client that went away is no error."""
        try:
            local_address = str(self.connection.getsockname()[0])
            hosts = self.headers.get_all("Host") or []
            host = hosts[0] if len(hosts) == 1 else None  # none, or two that may disagree
            if not self.server.display._host_allowed(host, local_address):
                raise _HTTPError(HTTPStatus.FORBIDDEN, "Host does not name this gate: use its address, "
                                                       "localhost or a name in [display] hosts")
            route(urlsplit(self.path).path)
        except _HTTPError as error:
            self._send_json(error.status, {"error": error.message})
        except (ConnectionError, TimeoutError):
            pass

    def _route_get(self, path: str) -> None:
        if path in ROUTES:
            getattr(self, f"_get_{ROUTES[path]}")()
        elif path.startswith("/control/"):
            raise _HTTPError(HTTPStatus.FORBIDDEN, CONTROL_MOVED)
        else:
            raise _HTTPError(HTTPStatus.NOT_FOUND, "not found")

    def _route_post(self, path: str) -> None:
        if path.startswith("/control/"):
            raise _HTTPError(HTTPStatus.FORBIDDEN, CONTROL_MOVED)
        if path in ROUTES:
            raise _HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes GET")
        raise _HTTPError(HTTPStatus.NOT_FOUND, "not found")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by the stdlib's request parsing (bad request line, headers) answer JSON too."""
        with contextlib.suppress(ConnectionError, TimeoutError):
            self._send_json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("guard display: %s " + format, self.address_string(), *args)

    # Routes.

    def _get_page(self) -> None:
        self._send(
            HTTPStatus.OK,
            self.server.display.page(),
            "text/html; charset=utf-8",
            # The page is offline by design: allow nothing but itself and its own inline code.
            {"Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
             "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"},
        )

    def _get_status(self) -> None:
        try:
            status = self.server.display._status()
        except Exception:
            log.exception("guard display: status() failed")
            raise _HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "status unavailable") from None
        self._send_json(HTTPStatus.OK, status)

    def _get_metrics(self) -> None:
        body, content_type = self.server.display._metrics.render()
        self._send(HTTPStatus.OK, body, content_type)

    def _get_events(self) -> None:
        display = self.server.display
        # Registered before the headers go out: once a client sees the response, no later event is missed.
        stream = display._open_stream(self.connection)
        if stream is None:
            raise _HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "too many streams or shutting down")
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.wfile.write(f"retry: {RETRY_MS}\n\n".encode())
            while True:
                if not stream.wake.wait(KEEPALIVE_S):
                    self.wfile.write(b": keepalive\n\n")
                    continue
                stream.wake.clear()  # before draining: a frame appended after this sets it again
                if display._closed:
                    return
                while stream.queue:
                    self.wfile.write(stream.queue.popleft().encode())
        finally:
            display._close_stream(stream)

    # Helpers.

    def _send_json(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload, default=str).encode()
        self._send(status, body, "application/json")

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


_PLACEHOLDER = re.compile(r"__(LANG|GATE|GATE_LABEL|CONNECTING|SETUP)__")


def _script_json(value: Any) -> str:
    """JSON to put inside a ``<script type="application/json">``: no ``</script>`` can end it early."""
    return json.dumps(value, default=str, ensure_ascii=False).replace("<", "\\u003c")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address (zone dropped, a dual-stack socket's IPv4-mapped form unwrapped), or None."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
