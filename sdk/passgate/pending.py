"""An unsigned deny-list change, prepared by a hub that holds no signing key (an offline-issuer
venue), to be signed where the venue's deny-list key lives (``passgate denylist sign``).

The hub writes it (``PendingList.to_json``), the operator carries it to the signing machine, and
``sign`` gives the two files the hub takes back: the snapshot of the list at ``version`` (what a
gate far behind or new gets) and the delta from ``base`` (what a gate one version behind gets).
Both carry the same ``issued_at``. The hub verifies each against the venue's deny-list public key
and against the change it prepared before it serves them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .cose import PrivateKey
from .denylist import KINDS, MAX_VERSION, PASS_ID_SIZE, Delta, DenyList, FormatError

FORMAT = "passgate pending deny list 1"


@dataclass(frozen=True)
class PendingList:
    """The ``kind`` list of ``scope`` at ``version`` (= ``base`` + 1): every id on it (``ids``),
    and the change from ``base`` (``adds``, ``removes``); ids are 16-byte pass ids."""

    kind: str
    scope: str
    base: int
    ids: tuple[bytes, ...]
    adds: tuple[bytes, ...]
    removes: tuple[bytes, ...]

    @property
    def version(self) -> int:
        return self.base + 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FormatError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not isinstance(self.scope, str) or not self.scope:
            raise FormatError("a pending list names its scope")
        if not isinstance(self.base, int) or isinstance(self.base, bool) or not 0 <= self.base < MAX_VERSION:
            raise FormatError(f"base must be a list version, not {self.base!r}")
        listed = set(self.ids)
        if not set(self.adds) <= listed or listed & set(self.removes):
            raise FormatError("the change does not match the list (an added id missing from it, "
                              "or a removed id still on it)")
        if self.kind == "revoked" and self.removes:
            raise FormatError("revocation is permanent: a revoked list cannot remove")

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "kind": self.kind, "scope": self.scope,
                           "base": self.base, "version": self.version,
                           "ids": sorted(i.hex() for i in self.ids),
                           "adds": sorted(i.hex() for i in self.adds),
                           "removes": sorted(i.hex() for i in self.removes)}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingList:
        """Read what ``to_json`` wrote; anything else is a one-line ``FormatError``."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError(f"not a pending deny list (JSON: {exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FormatError(f"not a pending deny list (no \"format\": \"{FORMAT}\")")
        base = data.get("base")
        if not isinstance(base, int) or data.get("version") != base + 1:
            raise FormatError("a pending list's version is its base + 1")
        return cls(kind=str(data.get("kind")), scope=str(data.get("scope") or ""), base=base,
                   ids=_ids(data, "ids"), adds=_ids(data, "adds"), removes=_ids(data, "removes"))

    def sign(self, private_key: PrivateKey, *, issued_at: int | None = None) -> tuple[bytes, bytes]:
        """The signed snapshot at ``version`` and the signed delta from ``base``, signed at the
        same time."""
        at = int(time.time()) if issued_at is None else issued_at
        snapshot = DenyList.from_ids(self.ids, kind=self.kind, scope=self.scope,
                                     version=self.version, issued_at=at)
        delta = Delta.from_ids(kind=self.kind, scope=self.scope, base=self.base, adds=self.adds,
                               removes=self.removes, issued_at=at)
        return snapshot.to_signed(private_key), delta.to_signed(private_key)


def _ids(data: dict[str, Any], name: str) -> tuple[bytes, ...]:
    values = data.get(name)
    if not isinstance(values, list):
        raise FormatError(f"{name}: a list of hex pass ids")
    out = []
    for value in values:
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != PASS_ID_SIZE:
            raise FormatError(f"{name}: not a {PASS_ID_SIZE}-byte hex pass id: {str(value)!r:.50}")
        out.append(raw)
    return tuple(out)
