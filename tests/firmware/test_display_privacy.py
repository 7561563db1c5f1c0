"""No pass id leaves the guard display: a real simulated gate decides scans of passes whose ids the
test knows, and every answer of its display server (each route, the event stream) is searched."""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from passgate import TrustStore, generate_private_key, issue_pass
from passgated.config import load_config
from passgated.display import ROUTES
from passgated.simulate import SimulatedGate, feed

TIMEOUT_S = 10.0


def get(url: str, path: str) -> bytes:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200, path
        return response.read()
    finally:
        connection.close()


def test_no_pass_id_in_any_answer_of_the_display(tmp_path: Path) -> None:
    key = generate_private_key()
    trust = TrustStore()
    trust.add(key.public_key())
    ids = [os.urandom(16) for _ in range(4)]
    now = time.time()
    single = issue_pass(key, valid_from=now - 60, valid_until=now + 3600, zones=["A"], entries=1,
                        pass_id=ids[0])
    zone_b = issue_pass(key, valid_from=now - 60, valid_until=now + 3600, zones=["B"], pass_id=ids[1])
    expired = issue_pass(key, valid_from=now - 7200, valid_until=now - 3600, zones=["A"], pass_id=ids[2])
    inside = issue_pass(key, valid_from=now - 60, valid_until=now + 3600, zones=["A"], pass_id=ids[3])
    config = load_config(None, zones=["A"], journal_path=tmp_path / "j.db", display_listen="127.0.0.1:0")
    gate = SimulatedGate(config, walk_s=0.0, trust=trust, sources=[])
    gate.start()
    try:
        assert gate.display is not None
        url = gate.display.url
        parts = urlsplit(url)
        stream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
        stream.request("GET", "/events")
        events = stream.getresponse()
        assert events.status == 200
        # admit, used up, wrong zone, expired, admit, already inside: six decisions about four passes
        feed(gate, [single, single, zone_b, expired, inside, inside])
        frames: list[bytes] = []
        while sum(b'"kind":"decision"' in frame for frame in frames) < 6:
            frames.append(events.fp.readline())
        stream.close()
        answers = {path: get(url, path) for path in ROUTES if path != "/events"}
        answers["/events"] = b"".join(frames)
        journal = {event["pass_id"] for event in gate.journal.events()}
        assert {pass_id.hex() for pass_id in ids} <= journal  # the ids are the ones the gate decided on
        assert b'"reason":"already_inside"' in answers["/events"] and b"already_inside" in answers["/status"]
        for path, body in answers.items():
            text = body.decode().lower()
            for pass_id in ids:
                assert pass_id.hex() not in text, path
            assert "pass_id" not in text, path
    finally:
        gate.stop()
