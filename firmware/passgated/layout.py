"""The gate's on-disk layout, in one place: every directory and file the gate owns, from its config.

::

    [trust] dir                 operator's issuer keys (*.pem, trust.toml); the gate only reads it
    <state>/                    beside the journal (its directory) unless the config says otherwise
      journal.db (+ -wal, -shm) the journal ([journal] path)
      journal.db.hub.json       the sync client's redemption cursor
      journal.db.damaged        left by the upkeep's check: the next start sets the journal aside
      damaged/                  journals set aside, kept for evidence
      hub-trust/                pass issuers' keys the hub sends (the sync client owns it)
      hub-list-trust/           the keys the hub signs deny lists with (to rebuild a damaged list)
      hub-settings.json         the settings the hub manages for this gate, as last received
      control.sock              operator control (mode 0660) unless [control] socket says where
      lists/                    deny lists when a hub supplies them and [denylist] dir is not set
    <lists>/                    [denylist] dir
      revoked.pgdl, blocked.pgdl   the gate's local copies (checksummed, verified when they arrived)
      revoked.fresh, blocked.fresh the newest signed statement that the copy is current (protocol 3)
      incoming/                 signed files dropped in, applied in version order
      downloads/                published files the hub's bundle named, while they download
      applied/                  the signed files the local copies were built from (rebuild source)
      rejected/                 files that can never apply, each with a .why note
      damaged/                  local copies that failed their checksum, kept for evidence
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import GateConfig


def sync_state_path(journal: Path | str) -> Path:
    """The sync client's redemption cursor, beside its journal."""
    return Path(f"{journal}.hub.json")


FRESH_SUFFIX = ".fresh"  # a signed freshness statement, kept here and dropped in incoming/ as KIND.fresh


@dataclass(frozen=True, slots=True)
class ListsLayout:
    """A deny-list directory."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def applied(self) -> Path:
        return self.root / "applied"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def damaged(self) -> Path:
        return self.root / "damaged"

    def local(self, kind: str) -> Path:
        return self.root / f"{kind}.pgdl"

    def fresh(self, kind: str) -> Path:
        return self.root / f"{kind}{FRESH_SUFFIX}"

    def make(self) -> None:
        for folder in (self.root, self.incoming, self.applied, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class GateLayout:
    """Where one gate keeps what it owns (see the module docstring)."""

    trust_dir: Path | None
    journal: Path
    lists: ListsLayout | None
    control: Path | None = None  # [control] socket, when the config names one

    @classmethod
    def from_config(cls, config: GateConfig) -> GateLayout:
        lists_root = config.denylist_dir
        if lists_root is None and config.hub is not None:
            lists_root = config.journal_path.parent / "lists"
        return cls(trust_dir=config.trust_dir, journal=config.journal_path,
                   lists=ListsLayout(lists_root) if lists_root is not None else None,
                   control=config.control_socket)

    @property
    def state_dir(self) -> Path:
        return self.journal.parent

    @property
    def control_socket(self) -> Path:
        """The Unix socket operators control the gate through (``passgated.control``)."""
        return self.control if self.control is not None else self.state_dir / "control.sock"

    @property
    def hub_trust_dir(self) -> Path:
        """Keys the hub sends; the sync client owns this directory, the operator's stays apart."""
        return self.state_dir / "hub-trust"

    @property
    def hub_list_trust_dir(self) -> Path:
        """Deny-list signing keys the hub sends: never trusted for passes."""
        return self.state_dir / "hub-list-trust"

    @property
    def hub_settings(self) -> Path:
        """The hub's settings for this gate, kept for a start while the hub is unreachable."""
        return self.state_dir / "hub-settings.json"

    @property
    def sync_state(self) -> Path:
        return sync_state_path(self.journal)

    @property
    def journal_damaged_marker(self) -> Path:
        return Path(f"{self.journal}.damaged")

    @property
    def journal_aside_dir(self) -> Path:
        return self.state_dir / "damaged"
