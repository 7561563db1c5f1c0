"""``passgate-hub --url``: the operator's commands from any machine, through the admin API.

    export PASSGATE_HUB_URL=https://hub.example.org PASSGATE_HUB_API_KEY=pgk_...
    passgate-hub gate list --venue arena
    passgate-hub --url https://hub.example.org --api-key-file ~/.config/passgate/arena.key counts arena

Each command here prints what the same command prints on the database (``cli.COMMANDS``), and the
hub checks the key's role and venues and writes the audit log as for any API call. The commands in
``LOCAL_ONLY`` belong to the hub's own machine. Bulk commands are split into the API's batch sizes
(each batch its own transaction): ``issue`` of more than ``ISSUE_BATCH`` passes, ``revoke`` of more
than ``DENY_BATCH`` ids.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from tqdm import tqdm

from passgate.batch import write_batch
from passgate.times import parse_time

from . import claims, cliargs, schemas

ENV_URL = "PASSGATE_HUB_URL"
ENV_KEY = "PASSGATE_HUB_API_KEY"
ENV_KEY_FILE = "PASSGATE_HUB_API_KEY_FILE"
TIMEOUT_S = (10.0, 300.0)  # connect, read: a purge or a batch of 10,000 passes takes a while
ISSUE_BATCH, DENY_BATCH, RECORD_BATCH = schemas.MAX_ISSUE, schemas.MAX_DENY_IDS, schemas.MAX_RECORD

# Commands of the hub's own machine: they work on the database or the sealing key themselves.
LOCAL_ONLY = {
    "serve": "it runs the hub itself",
    "migrate": "it changes the database's schema",
    "seal new-key": "it writes a sealing key file where the hub runs",
    "seal status": "it reads the hub's sealing key",
    "seal rotate": "it re-seals with a key file on the hub's machine",
}


class RemoteError(Exception):
    """A refusal or failure to print on one line (the hub's own reason when it gave one)."""


class AdminClient:
    """The admin API at ``url`` with an API key: ``get``/``post``/... return the answer's JSON
    (or text), and raise ``RemoteError`` with the hub's reason for anything but success."""

    def __init__(self, url: str, api_key: str, *, session: requests.Session | None = None) -> None:
        self.base = url.rstrip("/") + "/v1/admin"
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
             data: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/octet-stream"} if data is not None else None
        try:
            answer = self.session.request(method, self.base + path, json=json, data=data, headers=headers,
                                          params={k: v for k, v in (params or {}).items() if v is not None},
                                          timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise RemoteError(f"cannot reach the hub at {self.base}: {_cause(exc)}") from None
        if answer.status_code == 204:
            return None
        if not answer.ok:
            raise RemoteError(_refusal(answer))
        if answer.headers.get("content-type", "").startswith("application/json"):
            return answer.json()
        return answer.text

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json={} if body is None else body)

    def patch(self, path: str, body: Any) -> Any:
        return self.call("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def _cause(exc: requests.RequestException) -> str:
    """The reason in words (``Connection refused``), not urllib3's nested repr."""
    if isinstance(exc, requests.Timeout):
        return "no answer in time" if isinstance(exc, requests.ReadTimeout) else "no connection in time"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if errno:
        return errno.group(1)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (is the hub's certificate trusted? $REQUESTS_CA_BUNDLE names a CA file)"
    return str(exc)


def _refusal(answer: requests.Response) -> str:
    """The hub's ``detail`` in words; a 422's field errors as ``field: why``."""
    try:
        detail = answer.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}"
                           for e in detail if isinstance(e, dict))
    if answer.status_code == 401:
        return f"the hub refused the API key ({detail or 'unknown or revoked'})"
    return f"{detail or answer.reason} (HTTP {answer.status_code})"


def _v(name: str) -> str:
    return "/venues/" + quote(name, safe="")


def _gate(args: argparse.Namespace) -> str:
    return f"{_v(args.venue)}/gates/{quote(args.gate_id, safe='')}"


def _time(text: str | None, name: str) -> float | None:
    return None if text is None else parse_time(text, name=name)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _issue(hub: AdminClient, args: argparse.Namespace) -> Any:
    """Batches of ``ISSUE_BATCH`` (a bar on stderr when there are several), written as they come."""
    if args.holder_bound:
        return _issue_bound(hub, args)
    body = {"valid_from": parse_time(args.valid_from, name="--valid-from"),
            "valid_until": parse_time(args.valid_until, name="--valid-until"), "zones": args.zone,
            "entries": args.entries, "product": args.product, "reentry": args.reentry,
            "record": not args.no_record}
    kids: set[str] = set()

    def passes() -> Iterator[tuple[str, str]]:
        with tqdm(total=args.count, unit="pass", disable=args.count <= ISSUE_BATCH, file=sys.stderr) as bar:
            for start in range(0, args.count, ISSUE_BATCH):
                count = min(ISSUE_BATCH, args.count - start)
                done = hub.post(f"{_v(args.venue)}/passes", {**body, "count": count})
                kids.add(done["kid"])
                yield from ((p["pass_id"], p["text"]) for p in done["passes"])
                bar.update(len(done["passes"]))

    path = write_batch(args.out, passes(), qr=None if args.no_qr else "png")
    return {"kid": ", ".join(sorted(kids)), "issued": args.count, "csv": str(path)}


def _issue_bound(hub: AdminClient, args: argparse.Namespace) -> Any:
    """Holder-bound passes in batches: claim links (the hub's, or ``--public-url``'s) in claims.csv."""
    if args.no_record:
        raise RemoteError("a holder-bound pass is signed when claimed, from its record: drop --no-record")
    body = {"valid_from": parse_time(args.valid_from, name="--valid-from"),
            "valid_until": parse_time(args.valid_until, name="--valid-until"), "zones": args.zone,
            "entries": args.entries, "product": args.product, "reentry": args.reentry,
            "holder_bound": True, "holder_step": args.holder_step}
    kids: set[str] = set()

    def rows() -> Iterator[tuple[str, str, str]]:
        with tqdm(total=args.count, unit="pass", disable=args.count <= ISSUE_BATCH, file=sys.stderr) as bar:
            for start in range(0, args.count, ISSUE_BATCH):
                count = min(ISSUE_BATCH, args.count - start)
                done = hub.post(f"{_v(args.venue)}/passes", {**body, "count": count})
                kids.add(done["kid"])
                for p in done["passes"]:
                    code = p["claim_code"]
                    url = claims.claim_url(args.public_url, code) if args.public_url else p["claim_url"]
                    yield p["pass_id"], url, code
                bar.update(len(done["passes"]))

    path = claims.write_claim_links(args.out, rows(), qr=None if args.no_qr else "png")
    return {"kid": ", ".join(sorted(kids)), "issued": args.count, "holder_bound": True, "csv": str(path)}


def _claim_reset(hub: AdminClient, args: argparse.Namespace) -> Any:
    done = hub.post(f"{_v(args.venue)}/passes/{quote(args.pass_id.strip().lower(), safe='')}/claim/reset")
    if args.public_url:
        done["claim_url"] = claims.claim_url(args.public_url, done["claim_code"])
    return done


def _deny(path: str, kind: str) -> Callable[[AdminClient, argparse.Namespace], Any]:
    def run(hub: AdminClient, args: argparse.Namespace) -> Any:
        if (nothing := cliargs.empty_file(args, kind)) is not None:
            return nothing
        ids = cliargs.pass_ids(args)
        if not ids:
            raise RemoteError("name at least one pass id (or --file)")
        out = {"kind": kind, "version": 0, "changed": 0}
        for chunk in _chunks(ids, DENY_BATCH):
            done = hub.post(f"{_v(args.venue)}/{path}", {"pass_ids": chunk, "reason": args.reason,
                                                          "external": args.external})
            out = {"kind": kind, "version": done["version"], "changed": out["changed"] + done["changed"]}
        return out
    return run


def _record(hub: AdminClient, args: argparse.Namespace) -> Any:
    out = {"recorded": 0, "already": 0}
    for chunk in _chunks(cliargs.pass_texts(args.files), RECORD_BATCH):
        done = hub.post(f"{_v(args.venue)}/passes/upload", {"passes": chunk})
        out = {key: out[key] + done[key] for key in out}
    return out


def _upload_lists(hub: AdminClient, args: argparse.Namespace) -> Any:
    """The files in turn (the snapshot, then its delta); a refusal names the file."""
    out = []
    for name in args.files:
        data = Path(name).read_bytes()
        try:
            out.append(hub.call("POST", f"{_v(args.venue)}/denylists/signed", data=data))
        except RemoteError as exc:
            raise RemoteError(f"{name}: {exc}" + (f" (accepted before it: {', '.join(args.files[:len(out)])})"
                                                 if out else "")) from None
    return out


def _operator_create(hub: AdminClient, args: argparse.Namespace) -> Any:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    return hub.post("/operators", {"name": args.name, "role": args.role, "venues": args.venue,
                                   "all_venues": args.all_venues, "password": password})


def _events(hub: AdminClient, args: argparse.Namespace) -> Any:
    return hub.get(f"{_v(args.venue)}/events", gate_id=args.gate, kind=args.kind, after=args.after,
                   since=_time(args.since, "--since"), until=_time(args.until, "--until"), limit=args.limit)


def _key_add(hub: AdminClient, args: argparse.Namespace) -> Any:
    pem = Path(args.pem).read_text() if args.pem else None
    row = hub.post(f"{_v(args.venue)}/keys", {"public_pem": pem, "generate": pem is None, "alg": args.alg,
                                               "issuer": args.issuer})
    return {key: row[key] for key in ("kid", "purpose", "has_private")}


def _venue_create(hub: AdminClient, args: argparse.Namespace) -> Any:
    pem = Path(args.denylist_key).read_text() if args.denylist_key else None
    venue = hub.post("/venues", {"name": args.name, "offline": args.offline, "denylist_public_pem": pem})
    return {"venue": venue["name"], "offline": venue["offline"]}


def _enroll_code(hub: AdminClient, args: argparse.Namespace) -> Any:
    done = hub.post(f"{_gate(args)}/enrollment")
    hub_url = hub.base.removesuffix("/v1/admin")
    return {"gate_id": done["gate_id"], "code": done["code"], "expires_at": done["expires_at"],
            "on_the_gate": f"passgated enroll {done['code']} --hub {hub_url}"}


def _gone(what: str, key: str) -> Callable[[AdminClient, argparse.Namespace], Any]:
    def run(hub: AdminClient, args: argparse.Namespace) -> Any:
        name = getattr(args, key)
        hub.delete(f"{_gate(args)}" if what == "gate" else f"/operators/{quote(name, safe='')}")
        return {key: name, "deleted": True}
    return run


def _without_venue(answer: dict[str, Any]) -> dict[str, Any]:
    """A new token as the database mode prints it (the venue is in the command)."""
    return {key: value for key, value in answer.items() if key != "venue"}


Remote = Callable[[AdminClient, argparse.Namespace], Any]
COMMANDS: dict[str, Remote] = {
    "apikey-create": lambda h, a: h.post("/apikeys", {"name": a.name, "role": a.role, "venues": a.venue,
                                                      "all_venues": a.all_venues}),
    "apikey-list": lambda h, a: h.get("/apikeys"),
    "apikey-rotate": lambda h, a: h.post(f"/apikeys/{quote(a.name, safe='')}/rotate"),
    "apikey-revoke": lambda h, a: h.post(f"/apikeys/{quote(a.name, safe='')}/revoke"),
    "operator-create": _operator_create,
    "operator-list": lambda h, a: h.get("/operators"),
    "operator-unlock": lambda h, a: h.post(f"/operators/{quote(a.name, safe='')}/unlock"),
    "operator-disable": lambda h, a: h.post(f"/operators/{quote(a.name, safe='')}/disable"),
    "operator-enable": lambda h, a: h.post(f"/operators/{quote(a.name, safe='')}/enable"),
    "operator-delete": _gone("operator", "name"),
    "venue-create": _venue_create,
    "venue-list": lambda h, a: h.get("/venues"),
    "venue-set": lambda h, a: h.patch(_v(a.name), {"retention_days": a.retention_days,
                                                   "window_hours": a.window_hours, "timezone": a.timezone}),
    "purge": lambda h, a: h.post("/purge", {"venue": a.venue, "dry_run": a.dry_run}),
    "zone-create": lambda h, a: {"zone": h.post(f"{_v(a.venue)}/zones", {"name": a.name})["name"]},
    "gate-create": lambda h, a: _without_venue(h.post(f"{_v(a.venue)}/gates", {
        "gate_id": a.gate_id, "zone": a.zone, "settings": cliargs.settings_given(a)})),
    "gate-set": lambda h, a: h.patch(_gate(a), {"zone": a.zone, "settings": cliargs.settings_given(a)}),
    "gate-list": lambda h, a: h.get("/gates", venue=a.venue),
    "gate-disable": lambda h, a: h.post(f"{_gate(a)}/disable"),
    "gate-enable": lambda h, a: h.post(f"{_gate(a)}/enable"),
    "gate-delete": _gone("gate", "gate_id"),
    "gate-enroll-code": _enroll_code,
    "gate-rotate-token": lambda h, a: _without_venue(h.post(f"{_gate(a)}/token/rotate")),
    "gate-revoke-token": lambda h, a: h.post(f"{_gate(a)}/token/revoke"),
    "key-add": _key_add,
    "key-list": lambda h, a: h.get(f"{_v(a.venue)}/keys"),
    "key-retire": lambda h, a: h.post(f"{_v(a.venue)}/keys/{quote(a.kid, safe='')}/retire",
                                      {"at": parse_time(a.at, name="--at")}),
    "key-revoke": lambda h, a: h.post(f"{_v(a.venue)}/keys/{quote(a.kid, safe='')}/revoke"),
    "key-rotate": lambda h, a: h.post(f"{_v(a.venue)}/keys/rotate", {"alg": a.alg}),
    "key-export": lambda h, a: h.get(f"{_v(a.venue)}/keys/{quote(a.kid, safe='')}.pem"),
    "issue": _issue,
    "events": _events,
    "counts": lambda h, a: h.get(f"{_v(a.venue)}/counts"),
    "alerts": lambda h, a: h.get(f"{_v(a.venue)}/alerts", after=a.after, limit=a.limit),
    "audit": lambda h, a: h.get("/audit", venue=a.venue, after=a.after, limit=a.limit),
    "pass-record": _record,
    "pass-issue": _issue,
    "pass-claim-reset": _claim_reset,
    "denylist-pending": lambda h, a: h.get(f"{_v(a.venue)}/denylists/{quote(a.kind, safe='')}/pending"),
    "denylist-upload": _upload_lists,
    "revoke": _deny("revocations", "revoked"),
    "block": _deny("blocks", "blocked"),
    "unblock": _deny("unblocks", "blocked"),
}


def api_key(key_file: str | None) -> str:
    """The key from ``--api-key-file``, else ``$PASSGATE_HUB_API_KEY``, else the file
    ``$PASSGATE_HUB_API_KEY_FILE`` names (never a command-line argument: others could read it)."""
    path = key_file or (None if os.environ.get(ENV_KEY) else os.environ.get(ENV_KEY_FILE))
    if path:
        try:
            key = Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise RemoteError(f"cannot read the API key file: {exc}") from None
    else:
        key = os.environ.get(ENV_KEY, "").strip()
    if not key:
        raise RemoteError(f"--url needs an API key: --api-key-file FILE, ${ENV_KEY} or ${ENV_KEY_FILE} "
                          f"(passgate-hub apikey create on the hub makes one)")
    return key


def run(command: str, url: str, args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """``command`` (``"gate list"``) through the admin API at ``url``: its answer, and the time
    zones of the key's venues for the dates printed (none with ``--epoch``)."""
    if command in LOCAL_ONLY:
        raise RemoteError(f"runs on the hub's machine only ({LOCAL_ONLY[command]}): drop --url")
    if not url.startswith(("https://", "http://")):
        raise RemoteError(f"--url must start with https:// (or http:// on a trusted network): {url!r}")
    hub = AdminClient(url, api_key(args.api_key_file))
    result = COMMANDS[command.replace(" ", "-")](hub, args)
    return result, {} if args.epoch else time_zones(hub)


def time_zones(hub: AdminClient) -> dict[str, str]:
    """Venue name → time zone; after the command, so a failure costs only the zones (UTC), never
    an answer shown once (a new token)."""
    try:
        return {venue["name"]: venue["timezone"] for venue in hub.get("/venues")}
    except (RemoteError, KeyError, TypeError):
        return {}
