"""Keep gates current with a pretix event without giving them pretix credentials.

An operator's machine that holds the pretix token runs ``pull`` (``passgate pretix pull``, from cron
or a timer). It reads pretix's REST API (``/api/v1/organizers/O/events/E/``): the event resource,
its check-in lists, its revoked secrets (``revokedsecrets/``, incremental with ``created_since``)
and its blocked secrets (``blocked``/``updated``; ``blocked=true`` on a full pull, ``updated_since``
after it), and writes into one output directory what a gate or the hub needs, none of it secret:

- ``event.json``: the event's ``pretix_sig1`` public keys (``valid_keys``, as pretix shows them, so
  ``passgate.pretix.load_event_keys`` reads the file), slug, name, time zone and times: the gate's
  trust in the event;
- ``checkinlists.json``: the check-in lists (their settings; the counts are left out, which change
  at every scan), for a gate's config to pick from;
- ``lists/``: passgate's own signed deny lists, ``revoked`` and ``blocked``, built and signed with
  the operator's deny-list key exactly as ``passgate denylist`` does: each entry is a ticket's pass
  id (``decode_sig1(secret).pass_id``), never the secret. A version changes only when its entries
  change: a signed snapshot of it and a delta from the version before (``KIND-NNNNNNNNNN.snapshot
  .pgdl``, ``.delta.pgdl``); every pull signs a freshness statement for the version in force
  (``KIND.fresh``), so quiet lists stay fresh without new versions. A secret unblocked in pretix
  leaves the blocked list; revocation is permanent, so the revoked list only grows.
- ``ids/``: the same pass ids as plain files (``revoked.txt``, ``blocked.txt``, and ``unblocked.txt``:
  those this pull took off the blocked list), for gates on a hub, whose lists are the hub's;
- ``pretix-state.json``: the cursors for the next incremental pull and each list's pass ids (hex),
  from which a list can be rebuilt. Written last, atomically.

Secrets of pretix's random generator (not ``pretix_sig1``) cannot be checked offline: they are
counted and skipped, never guessed at. Everything is fetched before anything is written, so a
pretix that cannot be reached, refuses the token or answers nonsense leaves the previous files as
they were. A state file that cannot be read, or that disagrees with the signed lists beside it, is
an error (``SyncStateError``) naming the way out (``full=True``, ``--full``), never an empty list.

The HTTP side follows pretix's API documentation: ``Authorization: Token T`` (an API token) or
``Device T`` (a device token), pages followed through their ``next`` links (only on pretix's own
host: the token never goes elsewhere), 429 and 503 waited out as ``Retry-After`` says (up to a
bound), a timeout on every request, no redirects followed. The cursor of an incremental pull is
pretix's ``X-Page-Generated`` header (its clock when the listing began); without it, the newest
time seen less ``CURSOR_MARGIN``: an overlap is fetched twice and changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import requests
from tqdm import tqdm

from . import freshness
from .cose import PrivateKey
from .denylist import (
    KINDS,
    Delta,
    DenyList,
    DenyListError,
    atomic_write,
    describe_version,
    inspect,
    keys_from_ids,
    make_version,
    read_header,
    read_signed,
)
from .keys import TrustedKey, TrustStore, key_id
from .passes import PassRefused
from .pretix import EventKeysError, decode_sig1, load_event_keys
from .wire import KeyPurpose

EVENT_FILE = "event.json"
CHECKIN_LISTS_FILE = "checkinlists.json"
STATE_FILE = "pretix-state.json"
LISTS_DIR = "lists"
IDS_DIR = "ids"  # plain pass-id files for a hub's lists: KIND.txt (the list now), unblocked.txt (this pull)
LOCK_FILE = ".pretix-pull.lock"
FORMAT = 1
DEFAULT_TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
MAX_ATTEMPTS = 6  # one request: the first try and the retries after 429 / 502-504
MAX_WAIT_S = 300.0  # a Retry-After longer than this is an error, not a silent hang in cron
CURSOR_MARGIN = timedelta(minutes=10)
KEEP_DELTAS = 32  # deltas kept beside the newest snapshot: a gate this far behind catches up by deltas
EPOCH_ZERO = 1_704_067_200  # 2024-01-01T00:00:00Z: a new epoch is numbered by the minutes since, as the hub's
MAX_SCOPE = 64
EVENT_FIELDS = ("slug", "name", "timezone", "date_from", "date_to", "date_admission", "has_subevents")
CHECKIN_LIST_FIELDS = (
    "id", "name", "all_products", "limit_products", "limit_variations", "subevent", "include_pending",
    "allow_multiple_entries", "allow_entry_after_exit", "addon_match", "consider_tickets_used",
    "ignore_in_statistics", "exit_all_at", "rules", "gates", "all_sales_channels",
    "limit_sales_channels",
)  # what pretix shows of a list, less its counts; the ones a pretix version lacks are left out
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII, no spaces: nothing that could split a header
_FILE = re.compile(r"(?P<kind>[a-z]+)-(?P<version>\d+)\.(?P<type>snapshot|delta)\.pgdl")


class PretixSyncError(Exception):
    """Base of every error of a pull; the message is one line for an operator and never holds the
    token. ``code`` names the kind of failure for scripts and logs."""

    code = "pretix_sync_failed"


class PretixOptionError(PretixSyncError):
    """An address, slug, scope or token that cannot be used."""

    code = "bad_option"


class PretixUnreachableError(PretixSyncError):
    """No answer: connection refused, name not found, TLS failure, timeout."""

    code = "pretix_unreachable"


class PretixAuthError(PretixSyncError):
    """401: pretix does not take the token."""

    code = "pretix_auth"


class PretixPermissionError(PretixSyncError):
    """403: no such organizer or event, or the token may not read it (pretix does not say which)."""

    code = "pretix_forbidden"


class PretixNotFoundError(PretixSyncError):
    """404: not a pretix API at this address, or no such resource."""

    code = "pretix_not_found"


class PretixRateLimitError(PretixSyncError):
    """429 (or 503) longer or more often than a pull waits."""

    code = "pretix_rate_limited"


class PretixResponseError(PretixSyncError):
    """An answer that is not what pretix's API documents: not JSON, a wrong shape, a redirect, a
    server error, a next-page link to another host."""

    code = "pretix_bad_response"


class SyncStateError(PretixSyncError):
    """The state file or the signed lists beside it cannot be trusted to go on from; ``full``
    rebuilds them from pretix."""

    code = "sync_state"


# --- where: pretix's address ---------------------------------------------------------------------


@dataclass(frozen=True)
class PretixSource:
    """A pretix event: the shop's base address (``https://pretix.eu``, or where a self-hosted pretix
    lives, without ``/api/v1``), the organizer's and the event's slugs."""

    url: str
    organizer: str
    event: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise PretixOptionError(f"--url: not an http(s) address: {self.url!r:.80}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise PretixOptionError("--url: give the shop's address alone (no user, query or fragment)")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise PretixOptionError("--url: plain http would send the token in the clear; use https "
                                    "(http only to a loopback address)")
        path = parts.path.rstrip("/")
        if path.endswith("/api/v1"):
            path = path[: -len("/api/v1")]
        object.__setattr__(self, "url", urlunsplit((parts.scheme, parts.netloc, path, "", "")))
        for name, value in (("organizer", self.organizer), ("event", self.event)):
            if not isinstance(value, str) or not _SLUG.fullmatch(value):
                raise PretixOptionError(f"--{name}: not a pretix slug: {value!r:.80}")

    @property
    def event_path(self) -> str:
        """The event resource's path, from the server's root."""
        prefix = urlsplit(self.url).path
        return f"{prefix}/api/v1/organizers/{quote(self.organizer)}/events/{quote(self.event)}/"

    def describe(self) -> str:
        return f"{self.organizer}/{self.event} at {urlsplit(self.url).netloc}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- how: one HTTP client ------------------------------------------------------------------------


@dataclass
class Listing:
    """Every record of a paginated listing, and pretix's ``X-Page-Generated`` of its first page."""

    records: list[dict[str, Any]]
    generated: str | None


class PretixClient:
    """GET requests to one pretix event's API with one token; a context manager (closes its session).

    ``session``, ``sleep`` and ``timeout`` are injected edges (tests, proxies, a pull that must not
    wait). Every failure is a ``PretixSyncError`` subclass whose message names what failed and never
    the token, even where pretix's answer would repeat it.
    """

    def __init__(self, source: PretixSource, token: str, *, device: bool = False,
                 session: requests.Session | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 sleep: Callable[[float], object] = time.sleep, max_attempts: int = MAX_ATTEMPTS,
                 max_wait_s: float = MAX_WAIT_S, progress: bool = True) -> None:
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise PretixOptionError("the pretix token is empty or holds spaces or control characters "
                                    "(is it the right file?)")
        self.source = source
        self.device = device
        self._token = token
        self._auth = f"{'Device' if device else 'Token'} {token}"
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self.timeout = timeout
        self.sleep = sleep
        self.max_attempts = max(1, max_attempts)
        self.max_wait_s = max_wait_s
        self.progress = progress
        self.requests = 0

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> PretixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _base(self) -> tuple[str, str]:
        parts = urlsplit(self.source.url)
        return parts.scheme, parts.netloc

    def get(self, path: str, params: Mapping[str, str] | None = None) -> tuple[Any, Mapping[str, str]]:
        """The JSON answer to ``GET path`` (from the server's root) and its headers."""
        scheme, netloc = self._base
        url = urlunsplit((scheme, netloc, path.split("?")[0], path.partition("?")[2], ""))
        shown = path.split("?")[0]
        for attempt in range(self.max_attempts):
            response = self._send(url, params, shown)
            status = response.status_code
            if status == 200:
                return self._json(response, shown), response.headers
            if status in (429, 502, 503, 504) and attempt + 1 < self.max_attempts:
                wait = _retry_after(response.headers.get("Retry-After"), 2.0**attempt)
                if wait > self.max_wait_s:
                    raise PretixRateLimitError(
                        f"pretix answered {status} to GET {shown} and asks to wait {wait:.0f} s, "
                        f"longer than {self.max_wait_s:.0f} s; try again later")
                self.sleep(wait)
                continue
            raise self._error(response, shown)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _send(self, url: str, params: Mapping[str, str] | None, shown: str) -> requests.Response:
        host = self._base[1]
        self.requests += 1
        try:
            return self._session.get(url, params=params, timeout=self.timeout, allow_redirects=False,
                                     headers={"Authorization": self._auth, "Accept": "application/json"})
        except requests.Timeout:
            raise PretixUnreachableError(f"pretix at {host} did not answer GET {shown} within "
                                         f"{self.timeout[1]:.0f} s") from None
        except requests.RequestException as exc:
            raise PretixUnreachableError(f"cannot reach pretix at {host} ({_why(exc)})") from None

    def _json(self, response: requests.Response, shown: str) -> Any:
        try:
            return response.json()
        except ValueError:  # requests' JSONDecodeError, and bytes that are not text
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise PretixResponseError(f"pretix's answer to GET {shown} is not JSON ({kind}); is --url "
                                      "the address of a pretix?") from None

    def _error(self, response: requests.Response, shown: str) -> PretixSyncError:
        status = response.status_code
        detail = self._detail(response)
        if status == 401:
            scheme = "device" if self.device else "API"
            return PretixAuthError(
                f"pretix refused the {scheme} token (401) for GET {shown}{detail}: check --token-file or "
                f"PASSGATE_PRETIX_TOKEN" + ("" if self.device else ", and --device for a device token"))
        if status == 403:
            return PretixPermissionError(
                f"pretix answered 403 to GET {shown}{detail}: no organizer {self.source.organizer!r} with "
                f"an event {self.source.event!r}, or the token may not read it (it needs to view the "
                f"event's orders)")
        if status == 404:
            return PretixNotFoundError(
                f"pretix answered 404 to GET {shown}{detail}: check --url (the shop's address, without "
                f"/api/v1), --organizer and --event")
        if 300 <= status < 400:
            where = self._scrub(response.headers.get("Location", "somewhere"))
            return PretixResponseError(f"pretix redirects GET {shown} ({status}) to {where:.120}; give "
                                       "--url as the address it names")
        if status == 429:
            return PretixRateLimitError(f"pretix still answers 429 (too many requests) to GET {shown} "
                                        f"after {self.max_attempts} attempts; try again later")
        return PretixResponseError(f"pretix answered {status} to GET {shown}{detail}")

    def _detail(self, response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        text = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return ""
        return f" ({self._scrub(' '.join(text.split()))[:120]})"

    def _scrub(self, text: str) -> str:
        """Server-sent text with the token blanked out: a hostile or buggy server may echo it."""
        return text.replace(self._token, "***")

    def listing(self, path: str, params: Mapping[str, str] | None = None, *, what: str) -> Listing:
        """Every page of a listing, through its ``next`` links (on pretix's own host only)."""
        records: list[dict[str, Any]] = []
        generated: str | None = None
        seen: set[str] = set()
        bar: tqdm[Any] | None = None
        nxt: str | None = path
        first = True
        try:
            while nxt is not None:
                body, headers = self.get(nxt, params if first else None)
                shown = nxt.split("?")[0]
                if first:
                    generated = headers.get("X-Page-Generated")
                if (not isinstance(body, dict) or not isinstance(body.get("results"), list)
                        or not isinstance(body.get("next"), str | None)):
                    raise PretixResponseError(f"pretix's answer to GET {shown} is not a page of results "
                                              "(count, next, results)")
                page = body["results"]
                for index, record in enumerate(page):
                    if not isinstance(record, dict):
                        number = len(records) + index + 1
                        raise PretixResponseError(f"{what}: entry {number} is not an object")
                records.extend(page)
                if bar is None and self.progress:
                    count = body.get("count")
                    total = count if type(count) is int and count >= 0 else None
                    bar = tqdm(total=total, desc=what, unit=" records", disable=None, leave=False)
                if bar is not None:
                    bar.update(len(page))
                nxt = self._follow(body["next"], shown) if body["next"] else None
                if nxt is not None:
                    if nxt in seen:
                        raise PretixResponseError(f"{what}: pretix's next-page links go round in a loop")
                    seen.add(nxt)
                first = False
        finally:
            if bar is not None:
                bar.close()
        return Listing(records, generated)

    def _follow(self, link: str, shown: str) -> str:
        """A ``next`` link as a path on pretix's own address (its scheme and port as given: a proxy
        that writes http:// links for an https shop is common), or an error for any other host."""
        parts = urlsplit(link)
        base = urlsplit(self.source.url)
        if parts.netloc and (parts.hostname or "").lower() != (base.hostname or "").lower():
            raise PretixResponseError(f"the next page of GET {shown} is on another host "
                                      f"({parts.hostname!r:.60}); the token is not sent there")
        if not parts.path.startswith(f"{base.path}/api/v1/"):
            raise PretixResponseError(f"the next page of GET {shown} is outside pretix's API "
                                      f"({parts.path!r:.80})")
        return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), else ``default``."""
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _why(exc: BaseException) -> str:
    """A few words on why a connection failed (requests' own message is a paragraph)."""
    text = str(exc)
    for needle, why in (("CERTIFICATE_VERIFY_FAILED", "its TLS certificate does not verify"),
                        ("SSLError", "TLS failed"), ("Connection refused", "connection refused"),
                        ("Name or service not known", "host name not found"),
                        ("nodename nor servname", "host name not found"),
                        ("Temporary failure in name resolution", "host name not found (DNS)"),
                        ("Network is unreachable", "network unreachable"),
                        ("No route to host", "no route to host"),
                        ("Connection reset", "connection reset"),
                        ("RemoteDisconnected", "the connection closed without an answer")):
        if needle in text:
            return why
    return type(exc).__name__


# --- what: pretix's resources ---------------------------------------------------------------------


def fetch_event(client: PretixClient) -> dict[str, Any]:
    body, _ = client.get(client.source.event_path)
    if not isinstance(body, dict) or not isinstance(body.get("slug"), str):
        raise PretixResponseError("pretix's event resource is not an object with a slug")
    if body["slug"].lower() != client.source.event.lower():
        raise PretixResponseError(f"pretix answered with event {body['slug']!r:.60}, not "
                                  f"{client.source.event!r}")
    return body


def fetch_checkin_lists(client: PretixClient) -> list[dict[str, Any]]:
    listing = client.listing(client.source.event_path + "checkinlists/", what="check-in lists")
    for record in listing.records:
        if type(record.get("id")) is not int or not isinstance(record.get("name"), str):
            raise PretixResponseError("a check-in list without an integer id and a name")
    return listing.records


def fetch_revoked(client: PretixClient, since: str | None) -> Listing:
    """Revoked secrets (``id``, ``secret``, ``created``), those created at or after ``since``."""
    params = {"created_since": since} if since else {}
    listing = client.listing(client.source.event_path + "revokedsecrets/", params, what="revoked secrets")
    _check_secrets(listing, "revoked secrets", "created")
    return listing


def fetch_blocked(client: PretixClient, since: str | None) -> Listing:
    """Blocked secrets (``id``, ``secret``, ``blocked``, ``updated``): those updated at or after
    ``since`` (blocked or not: an unblocking is a change), or, without ``since``, the blocked ones."""
    params = {"updated_since": since} if since else {"blocked": "true"}
    listing = client.listing(client.source.event_path + "blockedsecrets/", params, what="blocked secrets")
    _check_secrets(listing, "blocked secrets", "updated")
    for number, record in enumerate(listing.records, start=1):
        if not isinstance(record.get("blocked"), bool):
            raise PretixResponseError(f"blocked secrets: entry {number} has no true/false 'blocked'")
    return listing


def _check_secrets(listing: Listing, what: str, stamp: str) -> None:
    for number, record in enumerate(listing.records, start=1):
        if not isinstance(record.get("secret"), str) or not record["secret"]:
            raise PretixResponseError(f"{what}: entry {number} has no secret")
        if not isinstance(record.get(stamp), str) or _parse_time(record[stamp]) is None:
            raise PretixResponseError(f"{what}: entry {number} has no readable '{stamp}' time")


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cursor(listing: Listing, stamp: str, previous: str | None) -> str | None:
    """Where the next pull starts: pretix's ``X-Page-Generated``; without it, the newest ``stamp``
    seen less ``CURSOR_MARGIN`` (pretix's own clock either way); without records, ``previous``."""
    if listing.generated and _parse_time(listing.generated) is not None:
        return listing.generated.strip()
    times = [t for t in (_parse_time(r.get(stamp)) for r in listing.records) if t is not None]
    if not times:
        return previous
    return (max(times) - CURSOR_MARGIN).astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_file(resource: Mapping[str, Any], source: PretixSource) -> dict[str, Any]:
    """What a gate needs of the event resource: its ``pretix_sig1`` keys (under ``valid_keys``, as
    pretix shows them), slug, name, time zone and times, and where they came from."""
    valid_keys = resource.get("valid_keys")
    if not isinstance(valid_keys, dict):
        raise PretixResponseError("pretix's event resource has no valid_keys object (pretix before 3.12?)")
    sig1 = valid_keys.get("pretix_sig1", [])
    if not isinstance(sig1, list) or not all(isinstance(k, str) for k in sig1):
        raise PretixResponseError("the event's valid_keys.pretix_sig1 is not a list of keys")
    out: dict[str, Any] = {"format": FORMAT, "source": source.url, "organizer": source.organizer}
    out.update({name: resource.get(name) for name in EVENT_FIELDS})
    out["valid_keys"] = {"pretix_sig1": list(sig1)}
    return out


def count_keys(event: Mapping[str, Any]) -> int:
    """How many usable ``pretix_sig1`` keys the event file holds (0: none listed); a key that cannot
    be used is an error, not a smaller count."""
    if not event["valid_keys"]["pretix_sig1"]:
        return 0
    try:
        return len(load_event_keys(event))
    except EventKeysError as exc:
        raise PretixResponseError(f"the event's signing key cannot be used: {exc}") from None


def checkin_lists_file(records: list[dict[str, Any]], source: PretixSource) -> dict[str, Any]:
    lists = [{name: record[name] for name in CHECKIN_LIST_FIELDS if name in record}
             for record in sorted(records, key=lambda r: r["id"])]
    return {"format": FORMAT, "organizer": source.organizer, "event": source.event, "lists": lists}


# --- the state between pulls ----------------------------------------------------------------------


@dataclass
class ListState:
    """One deny list between pulls: its version, pretix's cursor, the pass ids on it, and digests
    of the secrets on it that are not pretix_sig1 (counted, never listed)."""

    version: int = 0
    since: str | None = None
    ids: set[bytes] = field(default_factory=set)
    unchecked: set[str] = field(default_factory=set)


@dataclass
class SyncState:
    url: str
    organizer: str
    event: str
    scope: str
    lists: dict[str, ListState]

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "source": {"url": self.url, "organizer": self.organizer,
                                             "event": self.event},
                "scope": self.scope,
                "lists": {kind: {"version": s.version, "since": s.since,
                                 "ids": sorted(i.hex() for i in s.ids), "unchecked": sorted(s.unchecked)}
                          for kind, s in self.lists.items()}}
        return (json.dumps(body, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> SyncState:
        """A state file, checked field by field; raises ``ValueError`` saying what is wrong."""
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError(f"not a state file of format {FORMAT}")
        source, lists = body.get("source"), body.get("lists")
        if not isinstance(source, dict) or not all(isinstance(source.get(k), str)
                                                   for k in ("url", "organizer", "event")):
            raise ValueError("bad 'source'")
        if not isinstance(body.get("scope"), str) or not isinstance(lists, dict) or set(lists) != set(KINDS):
            raise ValueError("bad 'scope' or 'lists'")
        states = {}
        for kind in KINDS:
            entry = lists[kind]
            if not isinstance(entry, dict):
                raise ValueError(f"bad {kind} list")
            version, since = entry.get("version"), entry.get("since")
            ids, unchecked = entry.get("ids"), entry.get("unchecked")
            if type(version) is not int or version < 0 or not isinstance(since, str | None):
                raise ValueError(f"{kind} list: bad version or cursor")
            if since is not None and _parse_time(since) is None:
                raise ValueError(f"{kind} list: the cursor is not a time")
            if not isinstance(ids, list) or not isinstance(unchecked, list):
                raise ValueError(f"{kind} list: bad ids")
            pass_ids = set()
            for text in ids:
                if not isinstance(text, str) or not re.fullmatch(r"[0-9a-f]{32}", text):
                    raise ValueError(f"{kind} list: {text!r:.40} is not a pass id")
                pass_ids.add(bytes.fromhex(text))
            if not all(isinstance(d, str) and re.fullmatch(r"[0-9a-f]{32}", d) for d in unchecked):
                raise ValueError(f"{kind} list: bad digests of unchecked secrets")
            states[kind] = ListState(version, since, pass_ids, set(unchecked))
        return cls(source["url"], source["organizer"], source["event"], body["scope"], states)


def load_state(out: Path) -> SyncState | None:
    """The state in ``out``, or None when there is none yet; ``SyncStateError`` when it is damaged."""
    path = out / STATE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SyncStateError(f"{path}: cannot read it ({exc.strerror or exc}); run with --full to "
                             "rebuild it from pretix") from None
    try:
        return SyncState.from_json(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise SyncStateError(f"{path}: damaged ({str(exc).splitlines()[0][:100]}); run with --full to "
                             "rebuild it from pretix") from None


def secret_digest(secret: str) -> str:
    """What the state keeps of a secret it cannot turn into a pass id: enough to count it once."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- one pull ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListResult:
    """What a pull did to one deny list."""

    kind: str
    scope: str
    version: int
    previous: int  # the version before the pull (0: none)
    entries: int
    added: int
    removed: int
    unchecked: int  # non-sig1 secrets on the list in pretix, which no gate can check
    unchecked_new: int  # of them, seen for the first time in this pull
    files: tuple[Path, ...]  # the signed files written (snapshot, delta, freshness statement)

    @property
    def changed(self) -> bool:
        return self.version != self.previous


@dataclass(frozen=True)
class PullResult:
    event: str
    name: str
    keys: int
    timezone: str | None
    checkin_lists: int
    lists: dict[str, ListResult]
    written: tuple[Path, ...]  # event.json / checkinlists.json when their content changed, and the lists
    new_epoch: tuple[str, ...] = ()  # kinds that started a new epoch (a --full pull without a prior list)


def pull(client: PretixClient, out: str | Path, signing_key: PrivateKey, *, scope: str | None = None,
         full: bool = False, now: float | None = None) -> PullResult:
    """Fetch the event from pretix and bring the files in ``out`` up to date; see the module's text.

    ``scope``: the deny lists' scope (default: the signing key's kid in hex, as ``passgate denylist
    build`` does); gates trust the key for this scope. ``full``: ignore the state and fetch every
    revoked and blocked secret again; lists go on from the newest signed snapshot in ``out/lists``
    (a revoked entry is never dropped), or, without one, start a new epoch that every gate takes
    as newer than what it holds.
    """
    out = Path(out)
    scope = key_id(signing_key).hex() if scope is None else scope
    if not isinstance(scope, str) or not 0 < len(scope) <= MAX_SCOPE:
        raise PretixOptionError(f"--scope: 1 to {MAX_SCOPE} characters")
    moment = int(time.time() if now is None else now)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        state = None if full else load_state(out)
        if not full:
            _check_state(state, out, client.source, scope)
        # Everything is fetched before anything is written.
        resource = fetch_event(client)
        event = event_file(resource, client.source)
        keys = count_keys(event)
        lists = checkin_lists_file(fetch_checkin_lists(client), client.source)
        prior = state.lists if state is not None else {kind: ListState() for kind in KINDS}
        revoked = fetch_revoked(client, prior["revoked"].since)
        blocked = fetch_blocked(client, prior["blocked"].since)
        new_states = {"revoked": _apply_revoked(prior["revoked"], revoked),
                      "blocked": _apply_blocked(prior["blocked"], blocked)}

        lists_dir = out / LISTS_DIR
        lists_dir.mkdir(exist_ok=True)
        trust = TrustStore([TrustedKey(signing_key.public_key(), purpose=KeyPurpose.DENYLIST, scope=scope)])
        results: dict[str, ListResult] = {}
        written: list[Path] = []
        epochs: list[str] = []
        for kind in KINDS:
            result, started = _update_list(kind, scope, lists_dir, trust, signing_key, prior[kind],
                                           new_states[kind], full=full, now=moment)
            new_states[kind].version = result.version
            results[kind] = result
            written += result.files
            if started:
                epochs.append(kind)
        for name, content in ((EVENT_FILE, event), (CHECKIN_LISTS_FILE, lists)):
            text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
            if _write_if_changed(out / name, text.encode()):
                written.append(out / name)
        src = client.source
        new_state = SyncState(src.url, src.organizer, src.event, scope, new_states)
        atomic_write(out / STATE_FILE, [new_state.to_json()])
        _write_ids(out / IDS_DIR, new_states, prior["blocked"])
        for kind in KINDS:
            _prune(lists_dir, kind, results[kind].version)
    return PullResult(event=src.event, name=_name(resource.get("name"), src.event), keys=keys,
                      timezone=tz if isinstance(tz := resource.get("timezone"), str) else None,
                      checkin_lists=len(lists["lists"]), lists=results, written=tuple(written),
                      new_epoch=tuple(epochs))


def _write_ids(ids_dir: Path, states: Mapping[str, ListState], blocked_before: ListState) -> None:
    """The lists' pass ids as plain files (one hex id a line), for gates on a hub, whose lists are
    the hub's: ``passgate-hub revoke|block VENUE --external --file ids/KIND.txt`` and ``unblock ...
    --file ids/unblocked.txt`` (the ids this pull took off the blocked list)."""
    ids_dir.mkdir(exist_ok=True)
    for name, ids in ((f"{kind}.txt", states[kind].ids) for kind in KINDS):
        atomic_write(ids_dir / name, ["".join(f"{i.hex()}\n" for i in sorted(ids)).encode()])
    unblocked = blocked_before.ids - states["blocked"].ids
    atomic_write(ids_dir / "unblocked.txt", ["".join(f"{i.hex()}\n" for i in sorted(unblocked)).encode()])


def _name(name: object, default: str) -> str:
    """An event's name for a summary: pretix's names are translated (``{"en": ..., "de": ...}``)."""
    if isinstance(name, dict):
        name = name.get("en") or next((v for v in name.values() if isinstance(v, str)), None)
    return name if isinstance(name, str) and name else default


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One pull at a time in ``out`` (cron may start the next before a slow one ends)."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SyncStateError(f"{out}: another pull is running there") from None
            raise
        yield
    finally:
        os.close(fd)


def _check_state(state: SyncState | None, out: Path, source: PretixSource, scope: str) -> None:
    lists_dir = out / LISTS_DIR
    if state is None:
        if any(lists_dir.glob("*.pgdl")):
            raise SyncStateError(f"{out}: signed lists but no {STATE_FILE}; run with --full to rebuild "
                                 "the state from pretix (the lists go on from their newest versions)")
        return
    if (state.url, state.organizer, state.event) != (source.url, source.organizer, source.event):
        raise SyncStateError(f"{out} holds the state of {state.organizer}/{state.event} at {state.url}; "
                             "pull another event into another directory (or start over with --full)")
    if state.scope != scope:
        raise SyncStateError(f"{out}: its lists are of scope {state.scope!r}, not {scope!r}; give that "
                             "--scope (or start lists of the new scope with --full)")


def _apply_revoked(before: ListState, listing: Listing) -> ListState:
    after = ListState(before.version, cursor(listing, "created", before.since), set(before.ids),
                      set(before.unchecked))
    for record in listing.records:
        _put(after, record["secret"], listed=True)
    return after


def _apply_blocked(before: ListState, listing: Listing) -> ListState:
    """Each secret's newest record wins (a page shift during the listing may show one twice)."""
    newest: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for record in listing.records:
        moment = _parse_time(record["updated"])
        assert moment is not None  # checked by fetch_blocked
        held = newest.get(record["secret"])
        if held is None or moment > held[0]:
            newest[record["secret"]] = (moment, record)
    after = ListState(before.version, cursor(listing, "updated", before.since), set(before.ids),
                      set(before.unchecked))
    for _, record in newest.values():
        _put(after, record["secret"], listed=record["blocked"])
    return after


def _put(state: ListState, secret: str, *, listed: bool) -> None:
    try:
        pass_id: bytes | None = decode_sig1(secret).pass_id
    except PassRefused:  # pretix's random generator: no pass id a gate could look up
        pass_id = None
    if pass_id is None:
        digest = secret_digest(secret)
        (state.unchecked.add if listed else state.unchecked.discard)(digest)
    elif listed:
        state.ids.add(pass_id)
    else:
        state.ids.discard(pass_id)


def _update_list(kind: str, scope: str, lists_dir: Path, trust: TrustStore, key: PrivateKey,
                 before: ListState, after: ListState, *, full: bool, now: int) -> tuple[ListResult, bool]:
    """Sign a new version when the entries changed (snapshot and delta), and a freshness statement
    for the version in force either way. Returns the result and whether a new epoch began."""
    base, highest, problems = _newest_snapshot(lists_dir, kind, scope, trust)
    where = f"{kind} list in {lists_dir}"
    if not full:
        if base is None and before.version:
            raise SyncStateError(f"{where}: the state says version {describe_version(before.version)} but "
                                 f"no signed snapshot of it is there{problems}; run with --full")
        if base is not None and base.version < before.version:
            raise SyncStateError(f"{where}: the state says version {describe_version(before.version)} but "
                                 f"the newest signed snapshot is {describe_version(base.version)}{problems}; "
                                 "run with --full")
    target = keys_from_ids(after.ids)
    if kind == "revoked" and base is not None:  # revocation is permanent: nothing leaves this list
        target = np.union1d(target, base.keys).astype(np.uint64)
    files: list[Path] = []
    started = False
    if base is not None and np.array_equal(target, base.keys):
        version, added, removed = base.version, 0, 0
    else:
        if base is not None:
            version = base.version + 1
        elif full:  # gates may hold versions of a list this directory lost: a new epoch is newer
            version, started = max(make_version((now - EPOCH_ZERO) // 60, 1), highest + 1), True
        else:
            version = 1
        new = DenyList(target, kind=kind, scope=scope, version=version, issued_at=now)
        name = f"{kind}-{version:010d}"
        snapshot = lists_dir / f"{name}.snapshot.pgdl"
        atomic_write(snapshot, [new.to_signed(key)])
        files.append(snapshot)
        if base is not None:
            delta = Delta.between(base, new)
            atomic_write(lists_dir / f"{name}.delta.pgdl", [delta.to_signed(key)])
            files.append(lists_dir / f"{name}.delta.pgdl")
            added, removed = len(delta.adds), len(delta.removes)
        else:
            added, removed = len(new), 0
    statement = lists_dir / f"{kind}.fresh"
    atomic_write(statement, [freshness.sign(key, kind=kind, scope=scope, version=version, as_of=now)])
    files.append(statement)
    unchecked_new = len(after.unchecked - before.unchecked)
    return ListResult(kind, scope, version, base.version if base is not None else 0, len(target), added,
                      removed, len(after.unchecked), unchecked_new, tuple(files)), started


def _newest_snapshot(lists_dir: Path, kind: str, scope: str, trust: TrustStore
                     ) -> tuple[DenyList | None, int, str]:
    """The newest snapshot of this list that the signing key verifies, the highest version any
    snapshot of this kind claims (verified or not), and a note on files that did not verify."""
    best: tuple[int, Path] | None = None
    highest = 0
    refused: list[str] = []
    for path in sorted(lists_dir.glob(f"{kind}-*.snapshot.pgdl")):
        try:
            claimed = inspect(path)
            if claimed.get("kind") == kind and type(claimed.get("version")) is int:
                highest = max(highest, claimed["version"])
            header = read_header(path, trust)
        except (DenyListError, OSError) as exc:
            refused.append(f"{path.name}: {exc}")
            continue
        if header.kind == kind and header.scope == scope and not header.is_delta and (
                best is None or header.version > best[0]):
            best = (header.version, path)
    note = f" ({'; '.join(refused)[:300]})" if refused else ""
    if best is None:
        return None, highest, note
    try:
        base = read_signed(best[1], trust)
    except (DenyListError, OSError) as exc:
        raise SyncStateError(f"{best[1]}: {exc}; run with --full") from None
    assert isinstance(base, DenyList)
    return base, highest, note


def _prune(lists_dir: Path, kind: str, version: int) -> None:
    """Keep the newest snapshot and the last ``KEEP_DELTAS`` deltas of a list; a gate further
    behind takes the snapshot."""
    for path in lists_dir.glob(f"{kind}-*.pgdl"):
        match = _FILE.fullmatch(path.name)
        if match is None or match["kind"] != kind:
            continue
        number = int(match["version"])
        if (match["type"] == "snapshot" and number < version) or (
                match["type"] == "delta" and number <= version - KEEP_DELTAS):
            path.unlink(missing_ok=True)


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless the file already holds it (a copy to gates by mtime then
    moves nothing)."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, [data])
    return True
