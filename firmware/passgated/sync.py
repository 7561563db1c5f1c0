"""The gate's sync worker: talks to the hub in its own thread, never on the decision path.

One round (``sync_once``) has four parts, each of which fails alone and reports alone (a list the
gate cannot apply does not keep the redemptions or the heartbeat from happening):

- upload the journal's unsent events in batches (an event is marked sent only after the hub
  acknowledged it, so the outbox survives restarts and outages and every event is delivered
  exactly once; an event the hub refuses for good is kept, marked, logged and not sent again; one
  the hub cannot judge yet is sent again next round);
- a heartbeat, whose answer gives the hub's clock and so this gate's offset (the hub measures the
  same offset, and judges the times of this gate's events by it);
- the bundle, fetched with ``If-None-Match``: trusted keys, deny-list updates and the settings the
  hub manages for this gate (kept on disk, applied by the gate: ``passgated.settings``);
- the other gates' redemptions, whose times (hub time) are turned into this gate's clock with the
  measured offset, so a fast or slow clock anywhere cannot reorder entries and exits.

Messages are the contract's (``passgate.wire``); a malformed answer is a ``ProtocolError``.

    sync = SyncClient(config.hub, journal_path=layout.journal, gate_id=config.gate_id,
                      lists=deny_lists, trust_dir=layout.hub_trust_dir,
                      list_trust_dir=layout.hub_list_trust_dir)
    sync.start()          # background rounds, backoff with jitter while the hub is unreachable
    sync.status()         # for /status: last success, backlog, list ages, clock offset
    sync.close()

The control loop only ever reads what this writes: the journal (remote redemptions) and the
deny lists (atomic swaps). A journal that lost its redemption history (set aside as damaged) gets
the venue's whole history again, this gate's own redemptions included, before the gate may admit
single-use passes. The worker never dies: an unexpected error is logged, counted in ``status()``
and retried with backoff like a hub outage.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from passgate import TrustStore, cose, wire
from passgate.denylist import DenyListError, atomic_write
from passgate.keys import TRUST_MANIFEST, TrustedKey, manifest_entry

from . import __version__, downloads
from .config import HubSpec
from .denylists import DenyLists
from .journal import Journal, JournalError
from .layout import sync_state_path
from .settings import save as save_settings

__all__ = ["SyncClient", "SyncResult"]

log = logging.getLogger(__name__)

BATCH = 500
MAX_BATCHES = 20  # per round, so one round stays short; a backlog makes the next round start at once
MAX_REDEMPTION_PAGES = 20
TIMEOUT = (3.05, 30.0)  # (connect, read) seconds
MAX_RETRY_AFTER = 3600.0
# The contract's bounds on event fields: a longer value is clipped here rather than refused there,
# because one refused event would stop the outbox behind it for good.
FIELD_LIMITS = {f.name: f.metadata["max_length"] for f in dataclasses.fields(wire.Event)
                if "max_length" in f.metadata}
PARTS = ("upload", "heartbeat", "bundle", "redemptions")


class HubError(Exception):
    """The hub answered with an error status; ``retry_after`` when it said when to come back."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


@dataclass
class SyncResult:
    """What one round did; ``ok`` False with ``error`` when it stopped early."""

    ok: bool = True
    uploaded: int = 0
    rejected: int = 0  # events the hub refused (malformed, or refused for good): kept, not resent
    deferred: int = 0  # events the hub could not judge yet: sent again next round
    more: bool = False  # the outbox still holds events: start the next round at once
    lists: dict[str, int] = field(default_factory=dict)  # kind -> version after the round
    redemptions: int = 0
    error: str | None = None  # the first part's error
    errors: dict[str, str] = field(default_factory=dict)  # part -> its error this round
    retry_after: float | None = None


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _unbase64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{what} is not base64") from exc


def _session(hub: HubSpec) -> requests.Session:
    """Connection errors are retried twice at once (a blip); everything else waits for the next
    round's backoff, which ``close`` can interrupt."""
    session = requests.Session()
    session.headers[wire.PROTOCOL_HEADER] = str(wire.PROTOCOL_VERSION)
    retry = Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.2)
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


CLOCK_SKEW_WARN_S = 30.0  # beyond this the gate's clock is reported as wrong


def _utc(at: float | None) -> datetime | None:
    return datetime.fromtimestamp(at, UTC) if at is not None else None


def _trusted(key: wire.TrustedKey) -> TrustedKey:
    """The SDK's trusted key for a bundle's key; ``ValueError`` when the PEM is not an Ed25519 or
    P-256 public key or the role does not fit (a deny-list key without a scope)."""
    try:
        public = load_pem_public_key(key.pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"key {key.kid}: not a PEM public key ({exc})") from None
    if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"key {key.kid}: only Ed25519 and P-256 keys are supported")
    try:
        trusted = TrustedKey(public, issuer=key.issuer, purpose=key.purpose, scope=key.scope,
                             retired=_utc(key.retired_at), revoked=_utc(key.revoked_at))
    except (ValueError, cose.CoseError) as exc:
        raise ValueError(f"key {key.kid}: {exc}") from None
    if trusted.kid.hex() != key.kid:
        raise ValueError(f"key {key.kid}: its PEM has kid {trusted.kid.hex()}")
    return trusted


class SyncClient:
    """Background sync with the hub for one gate; see the module docstring."""

    def __init__(
        self,
        hub: HubSpec,
        *,
        journal_path: str | Path,
        gate_id: str,
        lists: DenyLists | None,
        trust_dir: Path | None,
        list_trust_dir: Path | None = None,
        on_trust_changed: Callable[[], None] | None = None,
        settings_path: Path | None = None,
        on_settings: Callable[[wire.GateSettings], None] | None = None,
        gate_state: Callable[[], str] | None = None,
        gate_health: Callable[[], dict[str, Any]] | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        backoff: tuple[float, float] = (1.0, 300.0),
    ) -> None:
        """``trust_dir`` belongs to this client: it holds exactly the hub's pass-issuer keys;
        ``list_trust_dir`` the keys that sign deny lists (to rebuild a damaged local copy).
        ``settings_path`` keeps the hub's settings for this gate, ``on_settings`` hears them;
        ``gate_state`` tells the gate's state for the heartbeat, ``gate_health`` what else the
        console's fleet page shows of it (its fault, its scanners, whether its lists are stale).
        ``sleep`` waits between rounds (default: an Event wait that ``close`` interrupts);
        ``backoff``: first and longest wait after failed rounds, in seconds."""
        self.hub = hub
        self.gate_id = gate_id
        self.lists = lists
        self.trust_dir = trust_dir
        self.list_trust_dir = list_trust_dir
        self.on_trust_changed = on_trust_changed
        self.settings_path = settings_path
        self.on_settings = on_settings
        self.gate_state = gate_state
        self.gate_health = gate_health
        self.clock = clock
        self.backoff = backoff
        self.session = session or _session(hub)
        self.session.headers["Authorization"] = f"Bearer {hub.token}"
        self._files = _session(hub)  # published list files: no token goes to a static server or CDN
        self._base = f"{hub.url.rstrip('/')}/v1/gates/{gate_id}"
        self._journal = Journal(journal_path, gate_id, recover=False, defer_errors=True)
        self._journal_lock = threading.Lock()  # status() runs on the display's threads
        self._state_path = sync_state_path(journal_path)
        self._refetching = False
        state = self._load_state()
        self._cursor: int = state.get("cursor", 0)
        self._etag: str | None = None
        self._combined: bool | None = None  # the hub answers POST sync (protocol 3); None: not tried
        self._answer: wire.SyncAnswer | None = None  # this round's, for the bundle and redemptions
        self._raw_bundle: dict[str, Any] | None = None
        self._keys: list[wire.TrustedKey] | None = None  # as the hub last sent them
        self._list_trust = TrustStore()  # the hub's deny-list keys: the only ones its lists may use
        self.hub_settings: wire.GateSettings | None = None  # as the hub last sent them
        self.parts: dict[str, dict[str, Any]] = {
            name: {"ok": None, "last_success": None, "error": None} for name in PARTS}
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._thread: threading.Thread | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.clock_offset_s: float | None = None
        self.clock_skewed = False
        self.failures = 0  # rounds that failed in a row (hub outage, or an error of ours: see the log)
        self.crashes = 0  # rounds that raised something unexpected (each logged with its traceback)

    # -- persistence of the redemption cursor -------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) and isinstance(state.get("cursor"), int) else {}

    def _save_state(self) -> None:
        atomic_write(self._state_path, [json.dumps({"cursor": self._cursor}).encode()])

    # -- HTTP ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        # verify= on every request: requests lets $REQUESTS_CA_BUNDLE override Session.verify, which
        # would silently drop the configured CA bundle on machines that export it.
        response = self.session.request(method, f"{self._base}/{path}", timeout=TIMEOUT,
                                        verify=self.hub.ca_bundle or True, **kwargs)
        if response.status_code >= 400:
            detail = response.text[:200].replace("\n", " ")
            raise HubError(f"{method} {path}: HTTP {response.status_code} {detail}",
                           _retry_after(response.headers.get("Retry-After"), self.clock()),
                           status=response.status_code)
        return response

    # -- one round ----------------------------------------------------------------------------
    def sync_once(self) -> SyncResult:
        """One round; network and hub errors end it early and are recorded, never raised."""
        result = SyncResult()
        self._answer = self._raw_bundle = None
        # The heartbeat after the upload, so the backlog it reports is what is left; the hub judges
        # uploaded times by the offset of the previous one (events it cannot judge yet it defers).
        parts: dict[str, Callable[[SyncResult], None]] = {
            "upload": self._upload, "heartbeat": self._heartbeat, "bundle": self._pull_bundle,
            "redemptions": self._pull_redemptions}
        for name, part in parts.items():
            try:
                part(result)
            except (requests.RequestException, HubError, DenyListError, JournalError, OSError, ValueError,
                    KeyError, TypeError) as exc:  # ProtocolError is a ValueError
                error = f"{type(exc).__name__}: {exc}"
                result.errors[name] = error
                result.error = result.error or f"{name}: {error}"
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is not None:
                    result.retry_after = max(result.retry_after or 0.0, retry_after)
                self.parts[name].update(ok=False, error=error)
                log.warning("hub sync, %s failed: %s", name, error)
                if isinstance(exc, requests.ConnectionError | requests.Timeout) or (
                        isinstance(exc, HubError) and exc.status in (401, 403, 426, 429, 503)):
                    break  # the hub is unreachable, refuses us or asks us to wait: so would the rest
            else:
                self.parts[name].update(ok=True, error=None, last_success=self.clock())
        result.ok = not result.errors
        if result.ok:
            self.last_success, self.last_error = self.clock(), None
        else:
            self.last_error = result.error
        result.lists = self.lists.versions() if self.lists is not None else {}
        return result

    def _upload(self, result: SyncResult) -> None:
        for _ in range(MAX_BATCHES):
            with self._journal_lock:
                events = self._journal.unsent(BATCH)
            if not events:
                return
            for event in events:
                for name, limit in FIELD_LIMITS.items():
                    if isinstance(event[name], str):
                        event[name] = event[name][:limit]
            try:
                acked = self._acknowledged(self._call("POST", "events", json={"events": events}), result)
            except HubError as exc:
                if exc.status != 422:
                    raise
                acked = self._upload_one_by_one(events, result)
            sent = {e["event_id"] for e in events}.intersection(acked)
            with self._journal_lock:
                self._journal.mark_sent(sent)
            result.uploaded += len(sent)
            if len(events) < BATCH or result.deferred:
                return  # (deferred events lead the outbox: the next round, after a heartbeat)
        result.more = True

    def _upload_one_by_one(self, events: list[dict[str, Any]], result: SyncResult) -> list[str]:
        """The hub refused a batch as malformed: find the event(s) it refuses, so one poison event
        cannot hold back every event queued behind it. A refused event stays in the journal
        (for audit) but is never sent again."""
        acked: list[str] = []
        for event in events:
            try:
                acked += self._acknowledged(self._call("POST", "events", json={"events": [event]}), result)
            except HubError as exc:
                if exc.status != 422:
                    raise
                log.error("hub refused journal event %s (%s): %s; kept locally, not sent again",
                          event["event_id"], event["kind"], exc)
                with self._journal_lock:
                    self._journal.mark_rejected([event["event_id"]])
                result.rejected += 1
        return acked

    def _acknowledged(self, response: requests.Response, result: SyncResult) -> list[str]:
        """The ids the hub holds; events it refused for good are marked so and never sent again
        (one refused event must not hold back the outbox behind it)."""
        ack = wire.parse(wire.EventAck, response.json())
        if ack.rejected:
            for rejected in ack.rejected:
                log.error("hub refused journal event %s: %s; kept locally, not sent again",
                          rejected.event_id, rejected.why)
            with self._journal_lock:
                self._journal.mark_rejected([r.event_id for r in ack.rejected])
            result.rejected += len(ack.rejected)
        if ack.deferred:
            log.warning("hub deferred %d journal event(s) (%s): sent again next round",
                        len(ack.deferred), ack.deferred[0].why)
            result.deferred += len(ack.deferred)
        return ack.acked

    def _held(self) -> dict[str, wire.ListHeld]:
        """Each list's version with its signing time: a restored hub that reused a number is told
        apart by it."""
        if self.lists is None:
            return {}
        held = {}
        for kind, live in self.lists.live.items():
            current = live.current  # one reference: a drop folder may swap it meanwhile
            statement = self.lists.fresh.get(kind)
            vouched = statement is not None and statement.version == current.version and current.version
            held[kind] = wire.ListHeld(current.version, current.issued_at if current.version else None,
                                       statement.as_of if statement is not None and vouched else None)
        return held

    def _pull_bundle(self, result: SyncResult) -> None:
        if self._answer is not None:  # the round's one request brought it, if it changed
            if self._raw_bundle is not None:
                self._take_bundle(self._raw_bundle, self._answer.etag)
            self._take_statements(self._answer.fresh)
            return
        params: dict[str, int] = {}
        for kind, held in self._held().items():
            params[kind] = held.version
            if held.issued_at is not None:
                params[f"{kind}_issued_at"] = held.issued_at
        headers = {"If-None-Match": self._etag} if self._etag else {}
        response = self._call("GET", "bundle", params=params, headers=headers)
        if response.status_code == 304:
            return
        self._take_bundle(response.json(), response.headers.get("ETag"))

    def _take_bundle(self, raw: Any, etag: str | None) -> None:
        """Apply a bundle: settings, keys, then each list's files and statement; the ETag is kept
        only once everything applied, so a failure is fetched again next round."""
        bundle = wire.parse(wire.Bundle, raw)  # the contract first: a malformed bundle changes nothing
        # a hub of protocol 1 sent the settings as ``config``
        self._apply_settings(bundle.settings if "settings" in raw else
                             wire.parse(wire.GateSettings, bundle.config, where="Bundle.config"))
        problems = self._apply_keys(bundle.keys)
        self._etag = None  # kept only once every update applied
        for kind, info in bundle.denylists.items():
            if self.lists is None or kind not in self.lists.live:
                continue
            try:  # each list on its own: one refused update does not hold back the other list
                for update in info.updates:
                    self.lists.apply_signed(_unbase64(update, "an update"), self._list_trust)  # hub's keys
                for named in info.files:
                    self._apply_file(named)
                if info.fresh is not None:  # after the updates: it speaks of the version they bring
                    self.lists.apply_fresh(_unbase64(info.fresh, "a freshness statement"), self._list_trust)
            except (DenyListError, ValueError) as exc:  # FreshnessError, DownloadError: ValueErrors
                problems.append(f"{kind} list: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        self._etag = etag

    def _take_statements(self, fresh: dict[str, str]) -> None:
        """Apply the freshness statements a sync answer brought apart from the bundle (protocol 4:
        a quiet list stays fresh without the bundle), each on its own."""
        if self.lists is None:
            return
        problems = []
        for kind, text in fresh.items():
            try:
                self.lists.apply_fresh(_unbase64(text, "a freshness statement"), self._list_trust)
            except ValueError as exc:  # FreshnessError is one
                problems.append(f"{kind} list: {exc}")
        if problems:
            raise ValueError("; ".join(problems))

    def _apply_file(self, named: wire.ListFile) -> None:
        """Download a published list file (resuming a cut one) and apply it; the file goes to
        ``applied/`` when it applies and is deleted when it is refused."""
        assert self.lists is not None and self.lists.layout is not None
        url = downloads.url_of(named, self.hub.url)
        same_origin = urlsplit(url)[:2] == urlsplit(self.hub.url)[:2]
        path = downloads.download(self._files, url, named, self.lists.layout.downloads,
                                  verify=(self.hub.ca_bundle or True) if same_origin else True,
                                  timeout=TIMEOUT, max_bytes=self.lists.max_bytes)
        try:
            self.lists.apply_signed(path, self._list_trust)
        finally:
            path.unlink(missing_ok=True)

    def _apply_keys(self, keys: list[wire.TrustedKey]) -> list[str]:
        """Trust the bundle's keys, each in its role: deny-list keys (with their scope) for the
        hub's lists and ``list_trust_dir``, pass keys (retired, revoked) in ``trust_dir``. A key
        whose PEM does not fit its entry is left out (never trusted) and returned as a problem, so
        one bad entry cannot hold back a revocation of another key."""
        usable: list[tuple[wire.TrustedKey, TrustedKey]] = []  # one key may come in two roles
        problems = []
        for key in keys:
            try:
                usable.append((key, _trusted(key)))
            except ValueError as exc:
                problems.append(f"key left out: {exc}")
        parsed = [key for key, _ in usable]
        if parsed == self._keys:
            return problems
        lists = [k for k in parsed if k.purpose is wire.KeyPurpose.DENYLIST]
        passes = [k for k in parsed if k.purpose is wire.KeyPurpose.PASSES]
        self._list_trust = TrustStore(trusted for key, trusted in usable
                                      if key.purpose is wire.KeyPurpose.DENYLIST)
        self._keys = parsed
        if self.list_trust_dir is not None:
            self._write_trust_dir(self.list_trust_dir, lists)
        if self.trust_dir is not None:
            self._write_trust_dir(self.trust_dir, passes)
            if self.on_trust_changed is not None:
                self.on_trust_changed()
        return problems

    @staticmethod
    def _write_trust_dir(root: Path, keys: list[wire.TrustedKey]) -> None:
        """New key files first, then the manifest naming them (with each key's role and times),
        then stale files go: a reader at any moment finds a loadable directory."""
        root.mkdir(parents=True, exist_ok=True)
        manifest = []
        for key in sorted(keys, key=lambda k: k.kid):
            name = f"{key.kid}.pub.pem"
            atomic_write(root / name, [key.pem.encode()])
            manifest.append(manifest_entry(name, purpose=key.purpose, scope=key.scope,
                                           issuer=key.issuer or None, retired=_utc(key.retired_at),
                                           revoked=_utc(key.revoked_at)))
        atomic_write(root / TRUST_MANIFEST, ["\n".join(manifest).encode()])
        wanted = {k.kid for k in keys}
        for stale in root.glob("*.pem"):
            if stale.name.removesuffix(".pub.pem") not in wanted:
                stale.unlink()

    def _apply_settings(self, settings: wire.GateSettings) -> None:
        """The settings the hub manages for this gate: kept on disk first, then handed to the gate."""
        if settings == self.hub_settings:
            return
        if self.settings_path is not None:
            save_settings(self.settings_path, settings)
        self.hub_settings = settings
        if self.on_settings is not None:
            self.on_settings(settings)

    def _local_time(self, hub_t: float) -> float:
        """A hub time in this gate's clock (the offset is hub minus gate; unknown counts as 0)."""
        return hub_t - (self.clock_offset_s or 0.0)

    def _pull_redemptions(self, result: SyncResult) -> None:
        with self._journal_lock:
            missing = self._journal.history_missing()
        if missing and not self._refetching:
            # The journal was set aside: the whole venue's history again, this gate's own included.
            log.warning("journal lost its redemption history (%s): fetching it from the hub", missing)
            self._refetching, self._cursor = True, 0
        params: dict[str, Any] = {"include_own": "true"} if self._refetching else {}
        first = self._answer.redemptions if self._answer is not None and not self._refetching else None
        for _ in range(MAX_REDEMPTION_PAGES):
            page = first or wire.parse(wire.RedemptionPage, self._call(
                "GET", "redemptions", params={"after": self._cursor, **params}).json())
            with self._journal_lock:
                for r in page.redemptions:
                    result.redemptions += self._journal.add_remote_redemption(
                        r.redemption_id, r.pass_id, r.gate_id, str(r.direction), self._local_time(r.t),
                        r.valid_until)
            if page.cursor == self._cursor:
                if self._refetching:
                    with self._journal_lock:
                        self._journal.history_restored(f"fetched again from the hub ({self.hub.url})")
                    self._refetching = False
                    log.warning("redemption history restored from the hub")
                return
            self._cursor = page.cursor
            self._save_state()
            if first is not None and not first.more:  # the sync answer held all there was
                return
            first = None

    def _heartbeat(self, _result: SyncResult) -> None:
        """The heartbeat; to a hub of protocol 3 with the rest of the round in the same request
        (``POST sync``: the bundle if it changed, the first page of redemptions)."""
        now = self.clock()
        with self._journal_lock:
            backlog = self._journal.backlog()
        beat = wire.Heartbeat(
            t=now, version=__version__, protocol=wire.PROTOCOL_VERSION, backlog=backlog,
            state=self.gate_state() if self.gate_state is not None else None,
            lists={kind: wire.ListHealth(**value) for kind, value in self._list_status(now).items()},
            health={"journal_ok": True, **(self.gate_health() if self.gate_health is not None else {})})
        sent = self.clock()
        server_time = self._sync_round(beat) if self._combined is not False else None
        if server_time is None:
            server_time = wire.parse(wire.HeartbeatAck,
                                     self._call("POST", "heartbeat", json=wire.dump(beat)).json()).server_time
        received = self.clock()
        self.clock_offset_s = server_time - (sent + received) / 2
        skewed = abs(self.clock_offset_s) > CLOCK_SKEW_WARN_S
        if skewed and not self.clock_skewed:
            # Validity windows are judged on the gate's own clock: a wrong clock admits expired
            # passes or refuses valid ones, so the operator must hear about it.
            log.warning("gate clock is %.0f s %s the hub's (more than %.0f s): check NTP",
                        abs(self.clock_offset_s), "behind" if self.clock_offset_s > 0 else "ahead of",
                        CLOCK_SKEW_WARN_S)
        self.clock_skewed = skewed

    def _sync_round(self, beat: wire.Heartbeat) -> float | None:
        """``POST sync``; the hub's time, or None from a hub without it (older than protocol 3:
        the round goes request by request from then on)."""
        request = wire.SyncRequest(heartbeat=beat, lists=self._held(), etag=self._etag,
                                   redemptions_after=self._cursor)
        try:
            response = self._call("POST", "sync", json=wire.dump(request))
        except HubError as exc:
            if exc.status not in (404, 405):
                raise
            log.info("the hub has no one-request sync round (older than protocol 3): request by request")
            self._combined = False
            return None
        raw = response.json()
        if not isinstance(raw, dict):
            raise wire.ProtocolError("SyncAnswer: not an object")
        # the bundle is parsed by the bundle's part, so a malformed one fails that part alone
        answer = wire.parse(wire.SyncAnswer, {**raw, "bundle": None})
        self._combined, self._answer = True, answer
        self._raw_bundle = raw.get("bundle")
        return answer.server_time

    def _list_status(self, now: float) -> dict[str, dict[str, Any]]:
        if self.lists is None:
            return {}
        return {kind: {"version": live.current.version,
                       "age_s": self.lists.age(kind, now) if live.current.version else None}
                for kind, live in self.lists.live.items()}

    # -- background worker ---------------------------------------------------------------------
    def start(self) -> None:
        """Run rounds in a daemon thread until ``close``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="passgate-sync", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.sync_once()
            except Exception as exc:  # a bug of ours must not end the sync for good
                self.crashes += 1
                log.exception("hub sync round failed unexpectedly (%d so far)", self.crashes)
                self.last_error = f"{type(exc).__name__}: {exc}"
                result = SyncResult(ok=False, error=self.last_error)
            if result.ok:
                self.failures = 0
                delay = 0.0 if result.more else self.hub.interval_s
            else:
                self.failures += 1
                first, longest = self.backoff
                ceiling = min(longest, first * 2 ** min(self.failures - 1, 30))
                delay = random.uniform(ceiling / 2, ceiling)  # jitter: gates do not return in step
                delay = max(delay, result.retry_after or 0.0)
            self._sleep(delay)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the worker (interrupting its wait) and close the journal connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT[0] + TIMEOUT[1] + 5)
            self._thread = None
        with self._journal_lock:
            self._journal.close()
        self.session.close()
        self._files.close()

    def status(self) -> dict[str, Any]:
        """For /status: last success and error, unsent backlog, list versions and ages, offset."""
        now = self.clock()
        try:
            with self._journal_lock:
                backlog: int | None = self._journal.backlog()
        except JournalError:
            backlog = None
        return {"last_success": self.last_success, "last_error": self.last_error, "backlog": backlog,
                "lists": self._list_status(now), "clock_offset_s": self.clock_offset_s,
                "clock_skewed": self.clock_skewed, "alive": self.alive(),
                "failures": self.failures, "crashes": self.crashes, "refetching_history": self._refetching,
                "parts": {name: dict(part) for name, part in self.parts.items()}}
