"""Deny lists as published files (protocol 3): the bundle names each file by URL, size and SHA-256,
and the gate streams it to disk, resumes a cut download with Range, checks size and digest, then
verifies and applies it; a file that does not match is refused and the old list stays. Served by
the hub itself, by a static server that cuts or alters files (a real one on loopback), and by
Debian's nginx."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from passgate import wire
from passgate_hub import ops, published
from tests.hub.fixtures import db_url, hub
from tests.hub.pgcluster import free_port
from tests.hub.server import HubServer
from tests.hub.test_api import setup_venue

from .test_sync import Gate

__all__ = ["db_url", "hub"]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def revoke(hub: HubServer, count: int = 3) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    with hub.session() as s:
        ops.deny(s, ops.get_venue(s, "arena"), "revoked", ids, external=True)
        s.commit()
    return ids


def publish_to(hub: HubServer, root: Path, base_url: str | None = None) -> published.Published:
    hub.app.state.published = published.Published(root, base_url)
    return hub.app.state.published


def bundle(hub: HubServer, token: str, protocol: int = wire.PROTOCOL_VERSION) -> dict:
    r = requests.get(f"{hub.url}/v1/gates/arena-g1/bundle", timeout=10,
                     headers={"Authorization": f"Bearer {token}", wire.PROTOCOL_HEADER: str(protocol)})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_gate_downloads_the_files_the_hub_publishes(hub: HubServer, tmp_path: Path) -> None:
    publish_to(hub, tmp_path / "published")
    tokens = setup_venue(hub, hub.admin())
    ids = revoke(hub)
    answer = bundle(hub, tokens["g1"])["denylists"]["revoked"]
    assert answer["updates"] == [] and len(answer["files"]) == 1
    (named,) = answer["files"]
    assert named["url"] == f"/lists/{named['sha256']}.pgdl"
    on_disk = tmp_path / "published" / f"{named['sha256']}.pgdl"
    assert on_disk.stat().st_size == named["size"]
    r = requests.get(f"{hub.url}{named['url']}", headers={"Range": "bytes=10-"}, timeout=10)
    assert r.status_code == 206 and r.content == on_disk.read_bytes()[10:]
    assert "immutable" in r.headers["cache-control"]
    for bad in ("x.pgdl", "..%2Fhub.db", "%2e%2e"):
        assert requests.get(f"{hub.url}/lists/{bad}", timeout=10).status_code == 404
    older = bundle(hub, tokens["g1"], protocol=2)["denylists"]["revoked"]  # protocol 2: bytes inline
    assert older["files"] == [] and len(older["updates"]) == 1
    gate = Gate(tmp_path / "g1", "arena-g1", hub.url, tokens["g1"])
    try:
        result = gate.sync.sync_once()
        assert result.ok, result.errors
        assert all(bytes.fromhex(p) in gate.lists.live["revoked"].current for p in ids)
        assert list(gate.lists.layout.downloads.iterdir()) == []  # applied: moved to applied/
    finally:
        gate.close()


class Server(http.server.ThreadingHTTPServer):
    """A static server of a directory on loopback that can cut or alter what it sends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cut_first = False  # the first whole answer of a large file stops halfway, connection closed
        self.flip = False  # one byte altered
        self.seen: list[str | None] = []  # each request's Range header
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/files"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        path = self.server.root / self.path.rsplit("/", 1)[-1]
        if not path.is_file():
            self.send_error(404)
            return
        data = bytearray(path.read_bytes())
        if self.server.flip:
            data[len(data) // 2] ^= 1
        wanted = self.headers.get("Range")
        self.server.seen.append(wanted)
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
        self.send_response(206 if wanted else 200)
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.server.cut_first and not wanted and len(data) > 100_000:
            self.server.cut_first = False
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # a cable pulled, halfway
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def static(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "published")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def big_revocation(hub: HubServer) -> list[str]:
    """Enough entries for a file of a few hundred kB, so a cut leaves a real part."""
    return revoke(hub, 30_000)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the download, not the database
def test_a_cut_download_resumes_where_it_stopped(hub: HubServer, static: Server, tmp_path: Path) -> None:
    publish_to(hub, static.root, static.url)
    tokens = setup_venue(hub, hub.admin())
    ids = big_revocation(hub)
    static.cut_first = True
    gate = Gate(tmp_path / "g1", "arena-g1", hub.url, tokens["g1"])
    try:
        first = gate.sync.sync_once()
        assert not first.ok and "bundle" in first.errors
        (part,) = gate.lists.layout.downloads.glob("*.part")
        received = part.stat().st_size
        assert 0 < received < sum(p.stat().st_size for p in static.root.glob("*.pgdl"))
        assert gate.lists.live["revoked"].current.version == 0  # nothing applied from half a file
        gate.sync._etag = None
        second = gate.sync.sync_once()
        assert second.ok, second.errors
        assert static.seen[-1] == f"bytes={received}-"  # only the rest was asked for
        assert all(bytes.fromhex(p) in gate.lists.live["revoked"].current for p in ids[:100])
        assert len(gate.lists.live["revoked"].current) == len(ids)
    finally:
        gate.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_file_that_is_not_what_the_bundle_named_is_refused(hub: HubServer, static: Server,
                                                               tmp_path: Path) -> None:
    publish_to(hub, static.root, static.url)
    tokens = setup_venue(hub, hub.admin())
    first_ids = revoke(hub)
    gate = Gate(tmp_path / "g1", "arena-g1", hub.url, tokens["g1"])
    try:
        assert gate.sync.sync_once().ok
        before = gate.lists.live["revoked"].current
        more = revoke(hub)
        static.flip = True
        gate.sync._etag = None
        result = gate.sync.sync_once()
        assert not result.ok and "SHA-256" in result.errors["bundle"]
        assert gate.lists.live["revoked"].current is before  # the old list stays, whole
        assert list(gate.lists.layout.downloads.iterdir()) == []  # the bad file is gone
        static.flip = False
        assert gate.sync.sync_once().ok
        assert all(bytes.fromhex(p) in gate.lists.live["revoked"].current for p in first_ids + more)
    finally:
        gate.close()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Debian's nginx serving a directory on loopback (required under CI)."""
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (.ci/run installs nginx-light)")
        pytest.skip("nginx is not installed")
    root, port = tmp_path / "published", free_port()
    root.mkdir()
    conf = tmp_path / "nginx.conf"
    user = "user root;" if os.getuid() == 0 else ""  # its worker reads the test's private tmp dir
    conf.write_text(f"""daemon off; worker_processes 1; pid {tmp_path}/nginx.pid; {user}
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {tmp_path}/access.log;
  client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
  fastcgi_temp_path {tmp_path}/fastcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
  server {{ listen 127.0.0.1:{port}; location /lists/ {{ alias {root}/; }} }}
}}
""")
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/lists/", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/lists", root
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_gates_fetch_lists_through_nginx(hub: HubServer, nginx: tuple[str, Path], tmp_path: Path) -> None:
    url, root = nginx
    publish_to(hub, root, url)
    tokens = setup_venue(hub, hub.admin())
    ids = big_revocation(hub)
    gates = [Gate(tmp_path / name, f"arena-{name}", hub.url, tokens[name]) for name in ("g1", "g2")]
    try:
        for gate in gates:
            result = gate.sync.sync_once()
            assert result.ok, result.errors
            assert len(gate.lists.live["revoked"].current) == len(ids)
        named = bundle(hub, tokens["g1"])["denylists"]["blocked"]["files"]
        assert all(f["url"].startswith(url) for f in named)
        log = (tmp_path / "access.log").read_text()
        assert log.count("GET /lists/") >= 2 and " 200 " in log
    finally:
        for gate in gates:
            gate.close()
