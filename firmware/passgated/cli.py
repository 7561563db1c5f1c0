"""The ``passgated`` command: run the gate, simulate it, demo it, check a config, reset it, and
recover a journal that was set aside. Every error is one line naming what is wrong, never a
traceback (``-v`` logs the traceback of an unexpected one)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from passgate import KeyFileError
from passgate.denylist import DenyListError

from . import __version__
from .config import ConfigError, GateConfig, PinFactory, check_files, load_config
from .journal import JournalError
from .policy import Direction

log = logging.getLogger("passgated")

DEFAULT_CONTROL_SOCKET = "/run/passgate/control.sock"
"""Where the packaged gate listens (packaging/gate.toml, systemd's RuntimeDirectory=passgate)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passgated", description="The passgate gate daemon.")
    parser.add_argument("--version", action="version", version=f"passgated {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the gate (systemd Type=notify)")
    p.add_argument("--config", required=True, metavar="FILE")
    p.set_defaults(run=cmd_run)

    p = sub.add_parser("simulate", help="the real daemon on simulated pins; pass texts on stdin")
    p.add_argument("--config", metavar="FILE", help="gate.toml (default: embedded defaults)")
    p.add_argument("--trust", metavar="DIR", help="trusted public keys (overrides the config)")
    p.add_argument("--zone", action="append", metavar="Z", help="zone this gate serves (repeatable)")
    p.add_argument("--journal", metavar="PATH", help="journal file (default: a throwaway one)")
    p.add_argument("--walk-ms", type=int, default=800, help="passage after N ms (default 800; 0 = at once)")
    p.add_argument("--direction", choices=("entry", "exit"), default="entry")
    p.add_argument("--display", metavar="HOST:PORT", help="guard page address (default from config)")
    p.add_argument("--trace", action="store_true",
                   help='also print every output change: {"output": "relay_entry", "on": true, "t": …}')
    p.set_defaults(run=cmd_simulate)

    p = sub.add_parser("demo", help="a simulated gate deciding a handful of passes, no set-up")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("check-config", help="validate a gate.toml")
    p.add_argument("config", metavar="FILE")
    p.set_defaults(run=cmd_check_config)

    p = sub.add_parser("sync", help="one round with the hub now: keys, lists, settings, events "
                                    "(before the first start, or to check the connection)")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="while the hub cannot be reached, keep trying for up to S seconds (default 0)")
    p.set_defaults(run=cmd_sync)

    p = sub.add_parser("enroll", help="join the hub with the one-time code an operator was shown, and "
                                      "write this gate's config")
    p.add_argument("code", metavar="CODE", help="the enrollment code (ABCDE-FGHJK-MNPQR)")
    p.add_argument("--hub", required=True, metavar="URL", help="the hub's URL")
    p.add_argument("--config", metavar="FILE",
                   help="where to write the config (default /etc/passgate/gate.toml)")
    p.add_argument("--ca-bundle", metavar="FILE", help="the CA that signed the hub's certificate")
    p.add_argument("--force", action="store_true", help="replace an existing config (kept as .bak)")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="while the hub cannot be reached, keep trying for up to S seconds (default 0)")
    p.set_defaults(run=cmd_enroll)

    p = sub.add_parser("denylist", help="deny lists on a gate without a hub")
    p.add_argument("action", choices=("add",), help="add: verify signed files and drop them in")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="signed snapshots or deltas (.pgdl) and freshness statements (KIND.fresh)")
    p.add_argument("--config", required=True, metavar="FILE")
    p.set_defaults(run=cmd_denylist)

    p = sub.add_parser("journal", help="recover the redemption history after a damaged journal")
    p.add_argument("action", choices=("recover",),
                   help="recover: copy every readable redemption from the journal set aside into the "
                        "new one, then let the gate admit again")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="the set-aside journal (default: the newest in the journal's damaged/ folder)")
    p.set_defaults(run=cmd_journal)

    p = sub.add_parser("osdp", help="OSDP readers: give a reader in install mode its key, once")
    p.add_argument("action", choices=("install",),
                   help="install: set a fresh key (SCBK) on the one reader SPEC names, prove it, then "
                        "write it to the keys file")
    p.add_argument("spec", metavar="SPEC",
                   help='the reader, as in gate.toml (quoted for the shell): "osdp:/dev/ttyUSB0?addr=1"')
    p.add_argument("--keys", metavar="FILE", help="the keys file (default /etc/passgated/osdp.keys)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the reader at each step (default 10)")
    p.set_defaults(run=cmd_osdp)

    for name, helptext in (("reset", "operator reset after an emergency (loop must be closed)"),
                           ("maintenance", "maintenance mode: free, locked or off")):
        p = sub.add_parser(name, help=f"{helptext}; as root, the gate's user or a member of its "
                                      "control socket's group")
        if name == "maintenance":
            p.add_argument("mode", choices=("free", "locked", "off"))
        where = p.add_mutually_exclusive_group()
        where.add_argument("--socket", metavar="PATH",
                           help=f"the gate's control socket (default {DEFAULT_CONTROL_SOCKET})")
        where.add_argument("--config", metavar="FILE", help="take the control socket from this gate.toml")
        p.set_defaults(run=cmd_control)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except (ConfigError, KeyFileError, DenyListError, JournalError, OSError, ValueError) as exc:
        print(f"passgated {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for the operator; the traceback with -v
        log.debug("unexpected error", exc_info=True)
        print(f"passgated {args.command}: error: {type(exc).__name__}: {exc} (-v shows where)",
              file=sys.stderr)
        return 2


def cmd_osdp(args: argparse.Namespace) -> int:
    from passgate.scanners.osdp import DEFAULT_KEYS, install_reader

    kind, _, target = args.spec.partition(":")
    if kind != "osdp" or not target:
        raise ValueError(f"SPEC must look like osdp:/dev/ttyUSB0?addr=1, got {args.spec!r}")
    keys = args.keys or DEFAULT_KEYS
    address = install_reader(target, keys, timeout=args.timeout)
    print(f"reader {address}: a fresh key is set and proven over the secure channel; written to {keys}")
    return 0


def _stop_on_signals() -> threading.Event:
    """SIGTERM or SIGINT sets the event returned; installed before the gate starts, so a stop that
    comes while it boots (its wait for the scanners) ends in a clean stop, not the default death."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for(stop: threading.Event) -> None:
    while not stop.wait(1.0):
        pass


def cmd_run(args: argparse.Namespace) -> int:
    from .gate import Gate

    handler = logging.getLogger().handlers[0]
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stdout)  # journald reads stdout
    config = load_config(args.config)
    check_files(config)
    stop = _stop_on_signals()
    with Gate(config) as gate:
        gate.start()
        _wait_for(stop)
    return 0


def _simulation_config(args: argparse.Namespace) -> GateConfig:
    from .simulate import default_journal

    overrides: dict[str, object] = {"pin_factory": PinFactory.MOCK}
    if args.trust:
        overrides["trust_dir"] = Path(args.trust)
    if args.zone:
        overrides["zones"] = args.zone
    if args.journal:
        overrides["journal_path"] = Path(args.journal)
    elif not args.config:
        overrides["journal_path"] = default_journal()
    if args.display:
        overrides["display_listen"] = args.display
    return load_config(args.config, **overrides)


def cmd_simulate(args: argparse.Namespace) -> int:
    from passgate.scanners import ScannerSource

    from .simulate import SimulatedGate, decision_line, simulate_stdin

    config = _simulation_config(args)
    check_files(config)
    on_stdin = not args.config or all(spec.source == "stdin:" for spec in config.scanners)

    lock = threading.Lock()  # decisions and output changes come from different threads

    def emit(record: dict[str, object]) -> None:
        # the line and its newline in one write: a hub beside it on the same terminal or pipe (as in
        # README's flow) could otherwise put its own line between them (print writes them apart)
        with lock:
            sys.stdout.write(decision_line(record) + "\n")
            sys.stdout.flush()

    sources: list[tuple[ScannerSource, Direction]] | None = [] if on_stdin else None
    gate = SimulatedGate(config, walk_s=args.walk_ms / 1000, sources=sources, on_decision=emit,
                         trace=emit if args.trace else None)
    stop = None if on_stdin else _stop_on_signals()
    with gate:
        gate.start()
        if gate.display is not None:
            log.info("guard page: %s", gate.display.url)
        if stop is None:
            simulate_stdin(gate, Direction(args.direction))
        else:
            _wait_for(stop)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .simulate import demo

    logging.getLogger("passgated").setLevel(logging.ERROR)
    return demo()


def cmd_check_config(args: argparse.Namespace) -> int:
    from .gate import load_gate_trust
    from .layout import GateLayout
    from .settings import HUB, effective, load

    config = load_config(args.config)
    check_files(config)
    layout = GateLayout.from_config(config)
    hub_settings = load(layout.hub_settings) if config.hub is not None else None
    current = effective(config, hub_settings)
    print(f"{args.config}: OK — gate {config.gate_id} at {config.venue}, "
          f"zones {', '.join(current.policy.zones) or 'any'}, directions "
          f"{', '.join(config.directions)}, {len(config.scanners)} scanner(s), "
          f"pins via {config.pin_factory}, journal {config.journal_path}")
    if config.hub is not None:
        from_hub = sorted(key for key, source in current.sources.items() if source == HUB)
        last = f"from its last bundle: {', '.join(from_hub)}" if from_hub else "no bundle yet"
        print(f"hub {config.hub.url}: manages zones, anti-passback, stale-list policy, list age, skew "
              f"and timing; {last}")
        if not len(load_gate_trust(config, layout)):
            print("no keys yet: the gate will refuse every pass (gate_fault, 'waiting for the hub') "
                  "until the hub's first bundle arrives")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from .enroll import DEFAULT_CONFIG, EnrollError, exchange, write_config

    path = Path(args.config) if args.config else DEFAULT_CONFIG
    try:
        if path.exists() and not args.force:  # before the code is used up
            raise EnrollError(f"{path} exists: --force replaces it (the old one is kept as .bak), or "
                              "--config names another file")
        enrolled = exchange(args.code, args.hub, ca_bundle=args.ca_bundle, wait_s=args.wait)
        kept = write_config(path, enrolled, args.hub, ca_bundle=args.ca_bundle, force=args.force)
    except EnrollError as exc:
        print(f"passgated enroll: error: {exc}", file=sys.stderr)
        return 2
    print(f"enrolled as gate {enrolled.gate_id} of venue {enrolled.venue}; wrote {path} (mode 0600)"
          + (f", the old config kept as {kept}" if kept else ""))
    print(f"next: passgated sync --config {path}, then start the gate (systemctl restart passgated)")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """One sync round as the running gate makes it, printed; exit 1 when a part failed. Meant for a
    gate that is not running (a running gate syncs by itself): it primes a new gate with its keys,
    lists and settings, or shows an operator what the hub answers."""
    from .denylists import DenyLists, kinds_in_use
    from .gate import load_gate_trust, load_list_trust
    from .layout import GateLayout
    from .settings import effective, load
    from .sync import SyncClient

    config = load_config(args.config)
    if config.hub is None:
        raise ConfigError("hub: no [hub] section in the config: nothing to sync with")
    check_files(config)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # each failed part is one line of its own
    layout = GateLayout.from_config(config)
    kinds = kinds_in_use(layout.lists, config.denylist_kinds, hub=True)
    lists = DenyLists(layout.lists, kinds, scope=config.denylist_scope or config.venue,
                      trust=lambda: load_list_trust(config, layout, load_gate_trust(config, layout)),
                      max_age_s=config.max_list_age_s, auto=config.denylist_kinds is None,
                      max_bytes=config.max_list_bytes)
    client = SyncClient(config.hub, journal_path=layout.journal, gate_id=config.gate_id, lists=lists,
                        trust_dir=layout.hub_trust_dir, list_trust_dir=layout.hub_list_trust_dir,
                        settings_path=layout.hub_settings)
    deadline = time.monotonic() + args.wait
    try:
        while True:
            result = client.sync_once()
            unreachable = any("ConnectionError" in error for error in result.errors.values())
            if not unreachable or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    current = effective(config, load(layout.hub_settings))
    print(json.dumps({
        "ok": result.ok, "errors": result.errors, "uploaded": result.uploaded, "rejected": result.rejected,
        "redemptions": result.redemptions, "lists": result.lists,
        "keys": len(load_gate_trust(config, layout)), "clock_offset_s": client.clock_offset_s,
        "zones": list(current.policy.zones)}, indent=2))
    return 0 if result.ok else 1


def cmd_denylist(args: argparse.Namespace) -> int:
    """Verify each file against the gate's trust, then drop it into the gate's incoming folder,
    where the running gate (or the next start) applies it in version order."""
    from passgate import freshness
    from passgate.denylist import Delta, atomic_write, read_signed
    from passgate.passes import iso_utc

    from .gate import load_gate_trust
    from .layout import FRESH_SUFFIX, GateLayout

    config = load_config(args.config)
    layout = GateLayout.from_config(config)
    if layout.lists is None:
        raise ConfigError("denylist.dir: required to add deny lists to a gate without a hub")
    trust = load_gate_trust(config, layout)
    incoming = layout.lists.incoming
    incoming.mkdir(parents=True, exist_ok=True)
    for name in args.files:
        source = Path(name)
        # refuse a bad file here, with its reason
        if source.suffix == FRESH_SUFFIX:  # a freshness statement: it keeps the list's version fresh
            statement = freshness.read(source.read_bytes()[:freshness.MAX_BYTES + 1], trust)
            what = f"v{statement.version} current as of {iso_utc(statement.as_of)}"
            kind, scope = statement.kind, statement.scope
        else:
            update = read_signed(source, trust, max_bytes=config.max_list_bytes)
            what = (f"delta {update.base}->{update.base + 1}" if isinstance(update, Delta)
                    else f"snapshot v{update.version}, {len(update)} entries")
            kind, scope = update.kind, update.scope
        atomic_write(incoming / source.name, [source.read_bytes()])
        print(f"{source.name}: {kind} list {scope!r}, {what}: queued in {incoming}")
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    """Salvage the readable redemptions of a set-aside journal into the gate's journal and clear its
    "history missing" mark; the running gate notices within a second and leaves FAULT."""
    from .journal import Journal, salvage
    from .layout import GateLayout

    config = load_config(args.config)
    layout = GateLayout.from_config(config)
    if args.source:
        source = Path(args.source)
    else:
        candidates = sorted(layout.journal_aside_dir.glob(f"{layout.journal.stem}-*{layout.journal.suffix}"),
                            key=lambda path: path.stat().st_mtime)
        if not candidates:
            raise ValueError(f"no journal set aside in {layout.journal_aside_dir}: nothing to recover "
                             "(use --from FILE)")
        source = candidates[-1]
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    with Journal(layout.journal, config.gate_id, recover=False) as journal:
        missing = journal.history_missing()
        copied, skipped = salvage(source, journal)
        journal.history_restored(f"recovered from {source}: {copied} redemption(s), {skipped} unreadable")
    print(f"{source}: {copied} redemption(s) recovered into {layout.journal}"
          + (f", {skipped} unreadable part(s) skipped" if skipped else "")
          + ("" if missing else " (the journal was not marked as missing its history)"))
    if skipped:
        print("warning: some redemptions could not be read: a single-use pass used before the damage "
              "may be admitted again", file=sys.stderr)
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    """One command over the gate's control socket; exit 1 when it did not take or this user has no
    access (the reason on one line), 2 when no gate listens there."""
    from .control import Command, ControlDenied, ControlRefused, ControlRequest, send
    from .layout import GateLayout
    from .machine import MaintenanceMode

    if args.config:
        path = GateLayout.from_config(load_config(args.config)).control_socket
    else:
        path = Path(args.socket or DEFAULT_CONTROL_SOCKET)
    if args.command == "maintenance":
        mode = None if args.mode == "off" else MaintenanceMode(args.mode)
        request = ControlRequest(Command.MAINTENANCE, mode)
    else:
        request = ControlRequest(Command.RESET)
    try:
        answer = send(path, request)
    except ControlDenied as denied:
        print(f"passgated {args.command}: refused: {denied} (run as root or the gate's user, or join "
              "the socket's group)", file=sys.stderr)
        return 1
    except ControlRefused as refused:
        print(f"passgated {args.command}: did not take: {refused}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ConnectionRefusedError):
        raise ValueError(f"{path}: no gate is listening there (is passgated running? --socket or "
                         "--config names another gate)") from None
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
