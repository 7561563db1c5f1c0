"""The hub in-process over real HTTP: uvicorn on a free loopback port, stoppable and restartable."""

from __future__ import annotations

import threading
import time

import requests
import uvicorn

from passgate_hub import apikeys, audit, db
from passgate_hub import app as hub_app
from passgate_hub.scope import EVERYTHING, Role

from .pgcluster import free_port

START_TIMEOUT_S = 15.0


class HubServer:
    """``start()`` / ``stop()`` any number of times on the same port (an outage and a recovery)."""

    def __init__(self, url: str, *, tls: tuple[str, str] | None = None,
                 purge_every_s: float | None = None) -> None:
        """``tls``: (certificate file, key file) to serve HTTPS; ``purge_every_s``: run the app's
        lifespan, so its retention purge runs in rounds this far apart (else: no lifespan)."""
        self.engine = db.make_engine(url)
        db.migrate(self.engine)
        self.app = hub_app.create_app(self.engine, **({} if purge_every_s is None else
                                                      {"purge_every_s": purge_every_s}))
        self.lifespan = "off" if purge_every_s is None else "on"
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        certfile, keyfile = self.tls or (None, None)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan=self.lifespan, ssl_certfile=certfile, ssl_keyfile=keyfile)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the hub did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving; a client holding a keep-alive connection does not hold the stop up."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=START_TIMEOUT_S)
            if self._thread.is_alive():
                raise RuntimeError("the hub did not stop")
            self._server = self._thread = None

    def session(self) -> db.Session:
        """A session on the hub's database whose changes the audit log puts down to "test"."""
        session = self.app.state.sessions()
        audit.act_as(session, audit.Actor("test", None))
        return session

    def api_key(self, role: Role = Role.ADMIN, venues: tuple[str, ...] = (), name: str | None = None) -> str:
        """A fresh admin API key (bootstrapped on the database, as the CLI does): ``role`` on
        ``venues``, or on every venue when none are named."""
        with self.session() as s:
            key = apikeys.create(s, name or f"test-{time.monotonic_ns()}", role=role, venues=venues,
                                 all_venues=not venues, by=EVERYTHING)
            s.commit()
        return key

    def admin(self, role: Role = Role.ADMIN, venues: tuple[str, ...] = ()) -> requests.Session:
        """An HTTP client carrying a fresh admin key (hub-wide admin unless told)."""
        client = requests.Session()
        client.headers["Authorization"] = f"Bearer {self.api_key(role, venues)}"
        return client

    def close(self) -> None:
        self.stop()
        self.engine.dispose()


def issue(hub: HubServer, admin: requests.Session, count: int = 1, **claims: object) -> list[dict[str, str]]:
    """Passes for the arena's floor (see ``test_api.setup_venue``), single entry unless told,
    issued through the admin API with the hub-held key."""
    body = {"count": count, "valid_from": time.time() - 60, "valid_until": time.time() + 3600,
            "zones": ["floor"], "entries": 1, **claims}
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["passes"]
