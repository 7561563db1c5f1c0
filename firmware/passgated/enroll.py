"""``passgated enroll CODE --hub URL``: a new gate joins its hub with the one-time code an operator
was shown (console or ``passgate-hub gate enroll-code``), and writes its config. No token is ever
pasted: the hub hands it over once, in exchange for the code, and it goes straight into the file
(mode 0600)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import requests

from passgate import wire

from .config import ConfigError, load_config

DEFAULT_CONFIG = Path("/etc/passgate/gate.toml")
TIMEOUT_S = 15.0


class EnrollError(Exception):
    """Enrollment failed: one line saying why and what to do."""


def exchange(code: str, hub_url: str, *, ca_bundle: str | None = None, wait_s: float = 0.0,
             session: requests.Session | None = None) -> wire.Enrolled:
    """The hub's answer to ``code``: the gate's id, venue and token. While the hub cannot be
    reached, tries again for up to ``wait_s`` (a hub starting beside the gate)."""
    if not hub_url.startswith(("https://", "http://")):
        raise EnrollError(f"--hub must be the hub's URL (https://...), got {hub_url!r}")
    url = f"{hub_url.rstrip('/')}/v1/enroll"
    body = wire.dump(wire.EnrollRequest(code=code.strip()))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            answer = (session or requests).post(url, json=body, timeout=TIMEOUT_S, verify=ca_bundle or True,
                                                headers={wire.PROTOCOL_HEADER: str(wire.PROTOCOL_VERSION)})
            break
        except requests.ConnectionError as exc:
            if time.monotonic() >= deadline:
                raise EnrollError(f"cannot reach the hub at {hub_url}: {type(exc).__name__}") from None
            time.sleep(0.5)
        except requests.RequestException as exc:
            raise EnrollError(f"cannot reach the hub at {hub_url}: {type(exc).__name__}") from None
    if answer.status_code == 404:
        raise EnrollError("the hub does not know this code (wrong, used or expired): ask for a new one")
    if answer.status_code == 422:
        raise EnrollError("not an enrollment code (it looks like ABCDE-FGHJK-MNPQR)")
    if answer.status_code != 200:
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = answer.text[:200]
        raise EnrollError(f"the hub answered {answer.status_code}: {detail}")
    try:
        return wire.parse(wire.Enrolled, answer.json())
    except (ValueError, wire.ProtocolError) as exc:
        raise EnrollError(f"the hub's answer is not an enrollment: {exc}") from None


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string: the same escapes as JSON for what we write


def write_config(path: Path, enrolled: wire.Enrolled, hub_url: str, *, ca_bundle: str | None = None,
                 force: bool = False) -> Path | None:
    """Write the gate's config: its id, its venue and the hub (the token readable by its owner
    only); returns where an existing file was kept (``force``), else None. The gate takes its
    keys, lists, zone and settings from the hub."""
    kept = None
    if path.exists():
        if not force:
            raise EnrollError(f"{path} exists: --force replaces it (the old one is kept as .bak), or "
                              "--config names another file")
        kept = path.with_name(path.name + ".bak")
        os.replace(path, kept)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# written by passgated enroll on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
             "[gate]", f"id = {_toml_string(enrolled.gate_id)}", f"venue = {_toml_string(enrolled.venue)}",
             "", "[hub]", f"url = {_toml_string(hub_url.rstrip('/'))}",
             f"token = {_toml_string(enrolled.token)}"]
    if ca_bundle:
        lines.append(f"ca_bundle = {_toml_string(ca_bundle)}")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        load_config(path)  # what the daemon will read
    except ConfigError as exc:
        raise EnrollError(f"the config written to {path} does not load: {exc}") from None
    return kept
