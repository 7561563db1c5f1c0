"""A fake pretix REST API on loopback, for ``passgate pretix pull`` and its tests.

It answers the few endpoints the sync reads, in the shapes pretix's API documentation shows
(docs.pretix.eu/en/latest/api/): the event resource with ``valid_keys.pretix_sig1`` (base64 of PEM
public keys), check-in lists, revoked secrets (``created``, filter ``created_since``, newest first)
and blocked secrets (``blocked``, ``updated``, filters ``updated_since`` and ``blocked``, newest
first). Lists are paginated as pretix does: ``count``, absolute ``next`` and ``previous`` links
with a ``page`` parameter, ``results``; the two secret lists carry ``X-Page-Generated`` (the server
time when the first page was asked for, the cursor of the next pull). ``Authorization`` is checked:
``Token <t>`` (or ``Device <t>`` for a device token); anything else is 401, an organizer or event it
does not hold is 403 (pretix does not tell them apart from a lack of permission), an unknown path
404. ``rate_limit`` makes the next answers 429 with ``Retry-After`` first.

Its clock is its own: every change moves it on a second and stamps the record, so cursors and
filters behave as on a server, without the tests sleeping.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ORGANIZER, EVENT, TOKEN = "demo", "democon", "pretix-test-token-0123456789"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    """A time as pretix's API writes it: ISO 8601 in UTC with a ``Z``."""
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Record:
    id: int
    secret: str
    moment: datetime
    blocked: bool = True


@dataclass
class Seen:
    """One request as the fake received it."""

    path: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class FakeState:
    organizer: str = ORGANIZER
    event_slug: str = EVENT
    token: str = TOKEN
    device: bool = False  # expects "Device <token>" instead of "Token <token>"
    page_size: int = 50
    page_generated: bool = True  # send X-Page-Generated on the secret lists
    rate_limit: int = 0  # answer this many next requests 429 first
    retry_after: str = "1"
    next_base: str | None = None  # write next-page links on this base instead of the fake's own
    echo_token: bool = False  # a 401 repeats the Authorization header it got (a careless server)
    event: dict[str, Any] = field(default_factory=dict)
    checkinlists: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[Record] = field(default_factory=list)
    blocked: dict[str, Record] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    now: datetime = START
    next_id: int = 1


class FakePretix(http.server.ThreadingHTTPServer):
    """``with FakePretix.running(...) as pretix:`` serves on 127.0.0.1 at ``pretix.url``."""

    daemon_threads = True

    def __init__(self, **options: Any) -> None:
        self.state = FakeState(**options)
        self.lock = threading.Lock()
        if not self.state.event:
            self.state.event = event_resource(self.state.event_slug, [])
        super().__init__(("127.0.0.1", 0), Handler)

    @classmethod
    @contextmanager
    def running(cls, **options: Any) -> Iterator[FakePretix]:
        server = cls(**options)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    # -- what the shop does ---------------------------------------------------------------------
    def _tick(self) -> datetime:
        self.state.now += timedelta(seconds=1)
        return self.state.now

    def revoke(self, *secrets: str) -> None:
        with self.lock:
            for secret in secrets:
                self.state.revoked.append(Record(self.state.next_id, secret, self._tick()))
                self.state.next_id += 1

    def block(self, *secrets: str, blocked: bool = True) -> None:
        """Block (or, ``blocked=False``, unblock) secrets: pretix keeps one record a secret and
        updates it."""
        with self.lock:
            for secret in secrets:
                record = self.state.blocked.get(secret)
                if record is None:
                    record = self.state.blocked[secret] = Record(self.state.next_id, secret, START)
                    self.state.next_id += 1
                record.blocked, record.moment = blocked, self._tick()

    def unblock(self, *secrets: str) -> None:
        self.block(*secrets, blocked=False)

    def paths(self) -> list[str]:
        with self.lock:
            return [seen.path for seen in self.state.seen]


def event_resource(slug: str, public_pems: list[bytes], **fields: Any) -> dict[str, Any]:
    """An event resource as pretix's API returns it (the fields the docs list, a few of them)."""
    import base64

    resource: dict[str, Any] = {
        "name": {"en": "Demo Conference"},
        "slug": slug,
        "live": True,
        "testmode": False,
        "currency": "EUR",
        "date_from": "2024-06-01T09:00:00Z",
        "date_to": "2024-06-02T18:00:00Z",
        "date_admission": "2024-06-01T08:00:00Z",
        "is_public": True,
        "presale_start": None,
        "presale_end": None,
        "location": None,
        "geo_lat": None,
        "geo_lon": None,
        "has_subevents": False,
        "meta_data": {},
        "seating_plan": None,
        "seat_category_mapping": {},
        "timezone": "Europe/Berlin",
        "item_meta_properties": {},
        "plugins": ["pretix.plugins.banktransfer", "pretix.plugins.ticketoutputpdf"],
        "sales_channels": ["web"],
        "valid_keys": {"pretix_sig1": [base64.b64encode(pem).decode() for pem in public_pems]},
        "public_url": f"https://pretix.eu/demo/{slug}/",
    }
    resource.update(fields)
    return resource


def checkin_list(list_id: int, name: str, **fields: Any) -> dict[str, Any]:
    """A check-in list resource as pretix's API returns it."""
    resource: dict[str, Any] = {
        "id": list_id,
        "name": name,
        "checkin_count": 0,
        "position_count": 0,
        "all_products": True,
        "limit_products": [],
        "include_pending": False,
        "subevent": None,
        "allow_multiple_entries": False,
        "allow_entry_after_exit": True,
        "exit_all_at": None,
        "rules": {},
        "addon_match": False,
        "ignore_in_statistics": False,
        "consider_tickets_used": True,
    }
    resource.update(fields)
    return resource


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakePretix
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        state = self.server.state
        with self.server.lock:
            state.seen.append(Seen(parts.path, query, self.headers.get("Authorization")))
            if state.rate_limit > 0:
                state.rate_limit -= 1
                self._json(429, {"detail": "Request was throttled."}, {"Retry-After": state.retry_after})
                return
            scheme = "Device" if state.device else "Token"
            if self.headers.get("Authorization") != f"{scheme} {state.token}":
                echo = f" {self.headers.get('Authorization')}" if state.echo_token else ""
                self._json(401, {"detail": f"Invalid token.{echo}"})
                return
            self._route(parts.path, query)

    def _route(self, path: str, query: dict[str, str]) -> None:
        state = self.server.state
        segments = path.strip("/").split("/")
        if segments[:3] != ["api", "v1", "organizers"] or len(segments) < 6 or segments[4] != "events":
            self._json(404, {"detail": "Not found."})
            return
        if (segments[3], segments[5]) != (state.organizer, state.event_slug):
            self._json(403, {"detail": "You do not have permission to perform this action."})
            return
        rest = segments[6:]
        if rest == []:
            self._json(200, state.event)
        elif rest == ["checkinlists"]:
            self._page(path, query, sorted(state.checkinlists, key=lambda r: r["id"]), generated=False)
        elif rest == ["revokedsecrets"]:
            since = _since(query.get("created_since"))
            records = [r for r in state.revoked if since is None or r.moment >= since]
            records.sort(key=lambda r: (r.moment, r.id), reverse=True)  # ordering: -created
            self._page(path, query, [{"id": r.id, "secret": r.secret, "created": stamp(r.moment)}
                                     for r in records])
        elif rest == ["blockedsecrets"]:
            since = _since(query.get("updated_since"))
            wanted = query.get("blocked")
            records = [r for r in state.blocked.values() if since is None or r.moment >= since]
            if wanted is not None:
                records = [r for r in records if r.blocked == (wanted.lower() == "true")]
            records.sort(key=lambda r: (r.moment, r.id), reverse=True)  # ordering: -updated, -pk
            self._page(path, query, [{"id": r.id, "secret": r.secret, "blocked": r.blocked,
                                      "updated": stamp(r.moment)} for r in records])
        else:
            self._json(404, {"detail": "Not found."})

    def _page(self, path: str, query: dict[str, str], records: list[dict[str, Any]],
              generated: bool = True) -> None:
        state = self.server.state
        try:
            page = int(query.get("page", "1"))
        except ValueError:
            page = 0
        size = state.page_size
        pages = max(1, -(-len(records) // size))
        if not 1 <= page <= pages:
            self._json(404, {"detail": "Invalid page."})
            return

        def link(number: int) -> str | None:
            if not 1 <= number <= pages:
                return None
            base = state.next_base or self.server.url
            return f"{base}{path}?{urlencode({**query, 'page': str(number)})}"

        body = {"count": len(records), "next": link(page + 1), "previous": link(page - 1),
                "results": records[(page - 1) * size : page * size]}
        headers = {"X-Page-Generated": stamp(state.now)} if generated and state.page_generated else {}
        self._json(200, body, headers)

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Vary", "Accept")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


def _since(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))
