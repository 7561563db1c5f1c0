"""Holder-bound passes on the hub: issued with a one-time claim code, signed when claimed.

A holder-bound pass carries its holder's public key (``cnf``), so the hub cannot sign it before the
holder's wallet has made that key: at issue it records the pass and a **claim code** (16 random
bytes, base32 lower-case without padding: 26 characters; only its SHA-256 is kept, ample for a
128-bit random code); ``POST /v1/wallet/claim`` (``api.wallet``) takes the code and the wallet's
public key and answers the pass, signed then with the venue's hub-held key. A code works once,
from one device: two devices racing get one pass and one ``claim_taken``. An operator's reset
(``reset``) makes a new code for the same pass; the device that claimed it before keeps a valid
pass (same pass id: the same entries and anti-passback), so a stolen phone is answered by revoking
the pass and issuing a new one instead.

The claim row (``PassClaim``) is deleted with the pass record (its retention). The audit log names
the venue and never the pass id, the code or the holder's key; a claim is audited as actor
``wallet`` without the client's address (the holder is not an operator).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from passgate import issue_pass, key_id, wire
from passgate.cose import PrivateKey
from passgate.holder import public_key_from_jwk

from . import audit, ops, sealing
from .keys import held_key
from .models import DenyEntry, IssuedPass, PassClaim, Venue

CODE_BYTES = 16
CODE_LENGTH = 26  # base32 of 16 bytes, without padding
_CODE = re.compile(r"[a-z2-7]{26}")
DEFAULT_STEP = 15  # seconds a wallet's presentation code lasts (the contract's default)
STEPS = (5, 300)  # bounds of a pass's presentation step
WALLET_PATH = "/wallet"  # where the hub serves the wallet page (``api.wallet``)
ENV_PUBLIC_URL = "PASSGATE_HUB_PUBLIC_URL"
STOLEN = ("the pass stays valid on the device that claimed it before; if that phone was lost or "
          "stolen, revoke the pass and issue a new one instead")


class ClaimRefused(Exception):
    """A claim the hub refuses: HTTP ``status``, a stable ``code`` for the wallet, and a sentence."""

    def __init__(self, status: int, code: str, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after


# -- codes and links -------------------------------------------------------------------------------


def new_code() -> str:
    """A fresh claim code: 16 random bytes, base32 lower-case, no padding."""
    return base64.b32encode(os.urandom(CODE_BYTES)).decode().rstrip("=").lower()


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def normal_code(text: str) -> str | None:
    """A code as typed or pasted (any case, spaces or hyphens) in its stored form, or None when it
    cannot be a claim code at all."""
    code = re.sub(r"[\s-]", "", text).lower()
    return code if _CODE.fullmatch(code) else None


def public_url(configured: str | None = None, request_base: str | None = None) -> str | None:
    """The hub's public URL for claim links: ``configured`` (``serve --public-url``), else
    ``$PASSGATE_HUB_PUBLIC_URL``, else the URL the request came in on (None: no request)."""
    url = configured or os.environ.get(ENV_PUBLIC_URL) or request_base
    return url.rstrip("/") if url else None


def request_base(request: Any) -> str:
    """The claim links' base for a request to the hub app (its API or console): the configured
    public URL (``app.state.public_url``), else the address the request came in on."""
    return public_url(request.app.state.public_url, str(request.base_url)) or ""


def claim_url(base: str, code: str) -> str:
    """``<hub>/wallet#claim=<code>``: a fragment, so the code never reaches a server's log by URL."""
    return f"{base.rstrip('/')}{WALLET_PATH}#claim={code}"


def require_public_url(configured: str | None) -> str:
    """The public URL a command without a request must be told (``--public-url`` or the variable)."""
    url = public_url(configured)
    if url is None:
        raise ops.Invalid(f"holder-bound passes need the hub's public URL for their claim links: give "
                          f"--public-url https://hub.example.org or set ${ENV_PUBLIC_URL}")
    if not url.startswith(("https://", "http://")):
        raise ops.Invalid(f"the public URL must start with https:// (or http://): {url!r}")
    return url


# -- issuing and resetting (the operator's side) -------------------------------------------------


def issue_bound(db: Session, venue: Venue, *, count: int, valid_from: float, valid_until: float,
                zones: Iterable[str] = (), entries: int | None = None, product: str | None = None,
                reentry: bool = False, holder_step: int = DEFAULT_STEP,
                now: float | None = None) -> tuple[str, list[tuple[str, str]]]:
    """Record ``count`` holder-bound passes, each with a claim code: ``(kid, [(pass id, code)])``.
    Nothing is signed yet; the checks signing would make are made now, so a claim cannot fail on
    them. The kid is the key that would sign now (a claim signs with the newest key then)."""
    key = ops.issuing_key(db, venue)
    zones = ops.check_zones(db, venue, zones)
    if int(valid_until) <= int(valid_from):
        raise ops.Conflict("valid_until must be after valid_from")
    if isinstance(holder_step, bool) or not STEPS[0] <= holder_step <= STEPS[1]:
        raise ops.Invalid(f"holder_step is from {STEPS[0]} to {STEPS[1]} seconds, got {holder_step}")
    if entries is not None and not 1 <= entries <= wire.MAX_ENTRIES:
        raise ops.Invalid(f"entries is from 1 to {wire.MAX_ENTRIES}, got {entries}")
    kid = key_id(key).hex()
    now = time.time() if now is None else now
    out = [(os.urandom(16).hex(), new_code()) for _ in range(count)]
    db.add_all(IssuedPass(pass_id=p, venue_id=venue.id, kid=kid, product=product, zones=zones,
                          entries=entries, valid_from=valid_from, valid_until=valid_until, issued_at=now)
               for p, _ in out)
    db.flush()  # the records first: the claims refer to them
    db.add_all(PassClaim(pass_id=p, code_hash=code_hash(code), code_made_at=now, reentry=reentry,
                         holder_step=holder_step, claims=0) for p, code in out)
    audit.record(db, "passes.issue", venue.name, venues=[venue], kid=kid, count=count, zones=zones,
                 valid_from=valid_from, valid_until=valid_until, recorded=True, holder_bound=True,
                 holder_step=holder_step)
    return kid, out


def claim_state(db: Session, venue: Venue, pass_id: str) -> dict[str, Any] | None:
    """What an operator may see of a holder-bound pass's claim (None: the pass is not one): when its
    current code was made, when it was claimed with it (None: not yet) and by how many devices in all.
    Never the code (only its hash is kept) nor the holder's key."""
    claim = db.scalar(select(PassClaim).join(IssuedPass, IssuedPass.pass_id == PassClaim.pass_id)
                      .where(PassClaim.pass_id == pass_id.strip().lower(), IssuedPass.venue_id == venue.id))
    if claim is None:
        return None
    return {"code_made_at": claim.code_made_at, "claimed_at": claim.claimed_at, "claims": claim.claims,
            "holder_step": claim.holder_step}


def _revoked(db: Session, venue_id: int, pass_id: str) -> bool:
    return db.scalar(select(DenyEntry.id).where(
        DenyEntry.venue_id == venue_id, DenyEntry.kind == "revoked", DenyEntry.pass_id == pass_id,
        DenyEntry.version_removed.is_(None)).limit(1)) is not None


def reset(db: Session, venue: Venue, pass_id: str, *, now: float | None = None) -> str:
    """A new claim code for a holder-bound pass of the venue (returned once); the old code is void
    at once. Whoever claimed the pass before keeps it (see ``STOLEN``)."""
    pass_id = pass_id.strip().lower()
    if not re.fullmatch(wire.HEX_ID, pass_id):
        raise ops.Invalid(f"not a pass id: {pass_id[:40]!r} (give 32 hex characters)")
    row = db.execute(select(PassClaim, IssuedPass).join(IssuedPass, IssuedPass.pass_id == PassClaim.pass_id)
                     .where(PassClaim.pass_id == pass_id, IssuedPass.venue_id == venue.id)
                     .with_for_update(of=PassClaim)).first()
    if row is None:
        issued = db.scalar(select(IssuedPass.pass_id).where(IssuedPass.pass_id == pass_id,
                                                            IssuedPass.venue_id == venue.id))
        if issued is not None:
            raise ops.Conflict(f"pass {pass_id} is not holder-bound: it has no claim code (its text was "
                               "handed out when it was issued)")
        raise ops.NotFound(f"no pass {pass_id} issued by this hub for {venue.name!r}")
    claim, record = row
    now = time.time() if now is None else now
    if _revoked(db, venue.id, pass_id):
        raise ops.Conflict(f"pass {pass_id} is revoked: a new code could not be claimed (issue a new pass)")
    if now >= record.valid_until:
        raise ops.Conflict(f"pass {pass_id} has expired: a new code could not be claimed")
    code = new_code()
    claim.code_hash, claim.code_made_at = code_hash(code), now
    claim.claimed_at = claim.holder_thumbprint = None
    # the venue only: the audit log never names a pass (README "Privacy")
    audit.record(db, "pass.claim_reset", venue.name, venues=[venue], claims_before=claim.claims)
    return code


# -- claiming (the holder's side) -------------------------------------------------------------------


def holder_key(jwk: Any) -> ec.EllipticCurvePublicKey:
    """The wallet's public key from its JWK (as WebCrypto exports it; only ``kty``, ``crv``, ``x``
    and ``y`` are read, and a private ``d`` is refused): a P-256 point on the curve."""
    if not isinstance(jwk, Mapping):
        raise ClaimRefused(422, "claim_bad_key", "public_key: a JWK object is expected")
    if "d" in jwk:
        raise ClaimRefused(422, "claim_bad_key", "public_key holds a private key: send the public key only")
    try:
        return public_key_from_jwk(jwk)
    except ValueError as exc:
        raise ClaimRefused(422, "claim_bad_key", f"public_key: {exc}") from None


def thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """The key's JWK thumbprint (RFC 7638, SHA-256, base64url): the required members in
    lexicographic order, no whitespace."""
    numbers = key.public_numbers()

    def member(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32)).decode().rstrip("=")

    canonical = json.dumps({"crv": "P-256", "kty": "EC", "x": member(numbers.x), "y": member(numbers.y)},
                           separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


def sign_bound(key: PrivateKey, record: IssuedPass, claim: PassClaim, holder: ec.EllipticCurvePublicKey,
               now: float) -> str:
    """The bound pass's PG1 text: the record's claims with the holder's key inside (``cnf``), signed
    now. The one place the hub signs a holder-bound pass."""
    return issue_pass(key, valid_from=record.valid_from, valid_until=record.valid_until,
                      zones=record.zones, entries=record.entries, product=record.product,
                      reentry=claim.reentry, pass_id=bytes.fromhex(record.pass_id), issued_at=now,
                      holder_key=holder, holder_step=claim.holder_step)


@dataclass(frozen=True)
class Claimed:
    text: str
    pass_id: str
    step: int
    venue: str
    valid_from: float
    valid_until: float

    def answer(self) -> dict[str, Any]:
        """The JSON the wallet receives (the contract's field names)."""
        return {"pass": self.text, "pass_id": self.pass_id, "step": self.step, "venue": self.venue,
                "valid_from": int(self.valid_from), "valid_until": int(self.valid_until)}


def claim(db: Session, code_text: str, jwk: Any, *, now: float | None = None) -> Claimed:
    """Claim a holder-bound pass with its code and the wallet's public key, in the caller's
    transaction (its commit makes the claim). The code's row is locked (PostgreSQL) or the
    transaction is the only writer (SQLite's ``BEGIN IMMEDIATE``), and the update is conditional
    on the code being unclaimed still: of two devices racing, exactly one gets the pass."""
    holder = holder_key(jwk)
    code = normal_code(code_text)
    if code is None:
        raise ClaimRefused(404, "claim_unknown", "no such claim code (check the link, or ask the venue)")
    found = db.execute(select(PassClaim, IssuedPass, Venue)
                       .join(IssuedPass, IssuedPass.pass_id == PassClaim.pass_id)
                       .join(Venue, Venue.id == IssuedPass.venue_id)
                       .where(PassClaim.code_hash == code_hash(code))
                       .with_for_update(of=PassClaim)).first()
    if found is None:
        raise ClaimRefused(404, "claim_unknown", "no such claim code (check the link, or ask the venue)")
    row, record, venue = found
    now = time.time() if now is None else now
    if row.claimed_at is not None:
        raise ClaimRefused(409, "claim_taken", "this pass was claimed already, on another device or "
                                               "in another browser; the venue can reset the claim")
    if _revoked(db, venue.id, record.pass_id):
        raise ClaimRefused(410, "claim_revoked", "this pass was cancelled by the venue")
    if now >= record.valid_until:
        raise ClaimRefused(410, "claim_expired", "this pass has expired")
    try:
        key = held_key(db, venue, "passes")
    except sealing.SealingError:
        key = None
    if key is None:
        raise ClaimRefused(503, "claim_cannot_sign", "the venue cannot sign passes on the hub right now; "
                                                     "try again later or ask the venue")
    text = sign_bound(key, record, row, holder, now)
    won = db.execute(update(PassClaim).where(PassClaim.pass_id == row.pass_id,
                                             PassClaim.code_hash == row.code_hash,
                                             PassClaim.claimed_at.is_(None))
                     .values(claimed_at=now, holder_thumbprint=thumbprint(holder),
                             claims=PassClaim.claims + 1)
                     .execution_options(synchronize_session=False))
    if won.rowcount != 1:  # type: ignore[attr-defined]
        raise ClaimRefused(409, "claim_taken", "this pass was claimed already, on another device")
    kid = key_id(key).hex()
    record.kid = kid  # the key that signed it
    audit.record(db, "pass.claim", venue.name, venues=[venue], kid=kid, holder_step=row.holder_step)
    return Claimed(text, record.pass_id, row.holder_step, venue.name, record.valid_from, record.valid_until)


# -- wrong codes, per client address ----------------------------------------------------------------


class Limiter:
    """Wrong claim codes per client address: a token bucket of ``burst`` tries, refilled by one
    every ``refill_s`` seconds; with none left every claim from the address is refused (429 with
    ``Retry-After``) until one is back. In memory, per worker process (``serve --workers N``
    allows N times as many), for at most ``max_addresses`` addresses (the oldest forgotten first).
    IPv6 clients count per /64 (one customer's network). Only wrong codes spend tries: a holder's
    claim, a code claimed already and a bad key do not. A 128-bit code is not found by guessing in
    any case; this keeps guessers from costing the database."""

    def __init__(self, *, burst: int = 10, refill_s: float = 6.0, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill_s, self.max_addresses, self.clock = burst, refill_s, max_addresses, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address: tries, when
        self._lock = threading.Lock()

    @staticmethod
    def _key(address: str | None) -> str:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return address or "?"
        if ip.version == 6 and ip.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)

    def _tries(self, key: str, now: float) -> float:
        tries, when = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tries + (now - when) / self.refill_s)

    def wait_s(self, address: str | None) -> int:
        """Whole seconds until the address may try again; 0: now."""
        key, now = self._key(address), self.clock()
        with self._lock:
            tries = self._tries(key, now)
        return 0 if tries >= 1 else max(1, math.ceil((1 - tries) * self.refill_s))

    def wrong(self, address: str | None) -> None:
        """The address tried a code that does not exist."""
        key, now = self._key(address), self.clock()
        with self._lock:
            self._buckets[key] = (self._tries(key, now) - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)


# -- the CLI's claim links ----------------------------------------------------------------------------

CLAIMS_CSV = "claims.csv"
CLAIMS_FIELDS = ("pass_id", "claim_url", "claim_code", "qr_file")


def write_claim_links(out: str | Path, rows: Iterable[tuple[str, str, str]], *,
                      qr: str | None = "png") -> Path:
    """Write ``(pass id, claim url, claim code)`` rows as they come to ``out/claims.csv``, with a QR
    image of each claim link (the holder's phone camera opens the wallet with it); refused before
    anything is consumed when the CSV exists (its codes may be handed out already)."""
    from passgate.batch import write_table  # (segno: only when links are written)

    return write_table(out, CLAIMS_CSV, CLAIMS_FIELDS, rows, qr=qr)


def links(base: str, issued: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    """``(pass id, claim url, code)`` for ``(pass id, code)`` pairs."""
    for pass_id, code in issued:
        yield pass_id, claim_url(base, code), code
