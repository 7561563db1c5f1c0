"""``passgate pretix pull`` against a fake pretix API on loopback (tests/pretix_fake.py): the files it
writes, the signed lists passgate's own verifier accepts, incremental pulls, pagination, rate limits
and every way it refuses to go on."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from passgate import freshness
from passgate.cli import main
from passgate.denylist import DenyList, LiveDenyList, epoch_of, read_signed
from passgate.keys import TrustStore, load_private_key
from passgate.pretix import decode_sig1, issue_sig1, load_event_keys
from passgate.pretix_sync import (
    LOCK_FILE,
    STATE_FILE,
    Listing,
    ListState,
    PretixClient,
    PretixOptionError,
    PretixRateLimitError,
    PretixResponseError,
    PretixSource,
    _apply_blocked,
    pull,
)
from tests.pretix_fake import EVENT, ORGANIZER, TOKEN, FakePretix, checkin_list, event_resource

SCOPE = "acme"


@pytest.fixture(scope="module")
def event_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def ticket(key: ed25519.Ed25519PrivateKey, seed: str, item: int = 1) -> str:
    return issue_sig1(key, seed=seed, item=item)


def pid(secret: str) -> bytes:
    return decode_sig1(secret).pass_id


@pytest.fixture()
def work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A deny-list key for scope acme (and its trust directory), and a token file."""
    assert main(["keygen", "--out", str(tmp_path / "keys"), "--name", "lists", "--purpose", "denylist",
                 "--scope", SCOPE]) == 0
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    capsys.readouterr()
    return tmp_path


@pytest.fixture()
def pretix(event_key: ed25519.Ed25519PrivateKey) -> Iterator[FakePretix]:
    pem = event_key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    lists = [checkin_list(7, "Main entrance", checkin_count=12, position_count=40),
             checkin_list(3, "VIP", all_products=False, limit_products=[2], rules={"and": [True]})]
    with FakePretix.running(event=event_resource(EVENT, [pem]), checkinlists=lists, page_size=2) as fake:
        yield fake


def run_pull(work: Path, pretix_url: str, *extra: str, token_file: Path | None = None) -> int:
    return main(["pretix", "pull", "--url", pretix_url, "--organizer", ORGANIZER, "--event", EVENT,
                 "--out", str(work / "out"), "--signing-key", str(work / "keys/lists.key.pem"),
                 "--scope", SCOPE, "--token-file", str(token_file or work / "token"), *extra])


def trust(work: Path) -> TrustStore:
    return TrustStore.load(work / "keys")


def newest(work: Path, kind: str) -> DenyList:
    """The newest snapshot of a list, verified by passgate's own reader against the gate's trust."""
    files = sorted((work / "out/lists").glob(f"{kind}-*.snapshot.pgdl"))
    assert files, f"no {kind} snapshot"
    lists = [read_signed(f, trust(work)) for f in files]
    best = max(lists, key=lambda dl: dl.version)
    assert isinstance(best, DenyList)
    return best


def snapshot_of(work: Path) -> dict[str, bytes]:
    out = work / "out"
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_first_pull_writes_the_event_the_checkin_lists_and_signed_lists(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    revoked, blocked, fine = (ticket(event_key, s) for s in ("seed-rev", "seed-blk", "seed-ok"))
    pretix.revoke(revoked)
    pretix.block(blocked)
    assert run_pull(work, pretix.url) == 0
    out = capsys.readouterr()
    assert "revoked list 'acme' version 1: 1 entry" in out.out
    assert TOKEN not in out.out + out.err

    event = json.loads((work / "out/event.json").read_text())
    (key,) = load_event_keys(work / "out/event.json")  # the gate's reader takes the file as it is
    assert key.raw == event_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)
    assert (event["slug"], event["timezone"], event["organizer"]) == (EVENT, "Europe/Berlin", ORGANIZER)
    assert event["date_admission"] == "2024-06-01T08:00:00Z" and event["has_subevents"] is False
    lists = json.loads((work / "out/checkinlists.json").read_text())["lists"]
    assert [(lst["id"], lst["name"]) for lst in lists] == [(3, "VIP"), (7, "Main entrance")]
    assert lists[0]["limit_products"] == [2] and lists[0]["rules"] == {"and": [True]}
    assert "checkin_count" not in lists[1] and "position_count" not in lists[1]

    rev, blk = newest(work, "revoked"), newest(work, "blocked")
    assert (rev.kind, rev.scope, rev.version, blk.version) == ("revoked", SCOPE, 1, 1)
    assert pid(revoked) in rev and pid(blocked) not in rev and pid(fine) not in rev
    assert pid(blocked) in blk and pid(revoked) not in blk and len(blk) == 1
    for kind, dl in (("revoked", rev), ("blocked", blk)):
        statement = freshness.read((work / f"out/lists/{kind}.fresh").read_bytes(), trust(work))
        assert statement.applies_to(kind, SCOPE, dl.version)
    assert {seen.authorization for seen in pretix.state.seen} == {f"Token {TOKEN}"}
    state = json.loads((work / f"out/{STATE_FILE}").read_text())
    assert state["lists"]["revoked"]["ids"] == [pid(revoked).hex()]
    assert revoked not in (work / f"out/{STATE_FILE}").read_text()  # pass ids, never secrets


def test_a_second_pull_makes_a_new_version_with_exactly_the_change(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, later, kept, unblocked = (ticket(event_key, s) for s in ("r1", "r2", "b1", "b2"))
    pretix.revoke(first)
    pretix.block(kept, unblocked)
    assert run_pull(work, pretix.url) == 0
    generated = {s.path.rsplit("/", 2)[-2]: s for s in pretix.state.seen}
    pretix.state.seen.clear()
    pretix.revoke(later)
    pretix.unblock(unblocked)
    capsys.readouterr()
    assert run_pull(work, pretix.url) == 0
    out = capsys.readouterr().out
    assert "revoked list 'acme' version 2: 2 entries, new version from 1: +1 −0" in out
    assert "blocked list 'acme' version 2: 1 entry, new version from 1: +0 −1" in out

    # Incremental: the second pull asked only for what changed since pretix's X-Page-Generated.
    queries = {s.path.rsplit("/", 2)[-2]: s.query for s in pretix.state.seen if "secrets" in s.path}
    assert queries["revokedsecrets"]["created_since"] and "blocked" not in queries["blockedsecrets"]
    assert queries["blockedsecrets"]["updated_since"]
    assert "created_since" not in generated["revokedsecrets"].query  # the first pull took everything

    store = trust(work)
    for kind, gone, present in (("revoked", None, [first, later]), ("blocked", unblocked, [kept])):
        delta = read_signed(work / f"out/lists/{kind}-0000000002.delta.pgdl", store)
        assert (delta.base, delta.version) == (1, 2)  # type: ignore[union-attr]
        assert all(pid(s) in newest(work, kind) for s in present)
        assert gone is None or pid(gone) not in newest(work, kind)
    assert not (work / "out/lists/revoked-0000000001.snapshot.pgdl").exists()  # pruned: v2 replaces it
    # the same as plain id files, for a hub's lists (passgate-hub revoke|block|unblock --file)
    ids = {name: (work / "out/ids" / f"{name}.txt").read_text().split() for name in
           ("revoked", "blocked", "unblocked")}
    assert ids == {"revoked": sorted(pid(s).hex() for s in (first, later)), "blocked": [pid(kept).hex()],
                   "unblocked": [pid(unblocked).hex()]}


def test_a_gate_at_version_1_follows_the_deltas(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
) -> None:
    a, b = ticket(event_key, "a"), ticket(event_key, "b")
    pretix.block(a)
    assert run_pull(work, pretix.url) == 0
    store = trust(work)
    gate = LiveDenyList(work / "gate.pgdl", kind="blocked", scope=SCOPE)
    gate.apply_signed(work / "out/lists/blocked-0000000001.snapshot.pgdl", store)
    pretix.block(b)
    pretix.unblock(a)
    assert run_pull(work, pretix.url) == 0
    gate.apply_signed(work / "out/lists/blocked-0000000002.delta.pgdl", store)
    assert gate.current.version == 2 and gate.current.same_entries(newest(work, "blocked"))
    assert pid(b) in gate and pid(a) not in gate


def test_a_pull_with_nothing_changed_makes_no_new_version(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pretix.revoke(ticket(event_key, "x"))
    assert run_pull(work, pretix.url) == 0
    before = snapshot_of(work)
    capsys.readouterr()
    assert run_pull(work, pretix.url) == 0
    out = capsys.readouterr().out
    after = snapshot_of(work)
    assert "revoked list 'acme' version 1: 1 entry, unchanged" in out
    assert "wrote" in out and "event.json" not in out and "checkinlists.json" not in out
    assert set(after) == set(before)  # no new files: no new version
    changed = {name for name in after if after[name] != before[name]}
    assert changed <= {"lists/revoked.fresh", "lists/blocked.fresh", STATE_FILE}
    statement = freshness.read(after["lists/revoked.fresh"], trust(work))
    assert statement.applies_to("revoked", SCOPE, 1)


def test_paging_follows_every_next_link(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
) -> None:
    secrets = [ticket(event_key, f"page-{i}") for i in range(7)]
    pretix.revoke(*secrets)
    assert run_pull(work, pretix.url) == 0
    pages = [s for s in pretix.state.seen if s.path.endswith("/revokedsecrets/")]
    assert [s.query.get("page", "1") for s in pages] == ["1", "2", "3", "4"]  # 7 records, 2 a page
    rev = newest(work, "revoked")
    assert len(rev) == 7 and all(pid(s) in rev for s in secrets)


def test_a_bad_token_is_one_line_exit_2_without_the_token(
    work: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with FakePretix.running(echo_token=True) as pretix:
        wrong = work / "wrong"
        wrong.write_text("not-the-token-but-still-secret\n")
        wrong.chmod(0o600)
        assert run_pull(work, pretix.url, token_file=wrong) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "401" in err and "[pretix_auth]" in err and "--device" in err
    assert "not-the-token-but-still-secret" not in err  # even though the server echoed it
    assert not (work / "out/event.json").exists() and not (work / "out/lists").exists()


def test_a_device_token_is_sent_as_a_device_token(
    work: Path, event_key: ed25519.Ed25519PrivateKey, capsys: pytest.CaptureFixture[str],
) -> None:
    with FakePretix.running(device=True) as pretix:
        assert run_pull(work, pretix.url) == 2
        assert "refused the API token" in capsys.readouterr().err
        assert run_pull(work, pretix.url, "--device") == 0
        assert pretix.state.seen[-1].authorization == f"Device {TOKEN}"


def test_pretix_unreachable_leaves_the_previous_files(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pretix.revoke(ticket(event_key, "gone"))
    assert run_pull(work, pretix.url) == 0
    before = snapshot_of(work)
    pretix.shutdown()
    pretix.server_close()  # nothing listens on its port any more
    capsys.readouterr()
    assert run_pull(work, pretix.url) == 2
    err = capsys.readouterr().err
    assert "cannot reach pretix at 127.0.0.1" in err and "connection refused" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot_of(work) == before


def test_a_failure_halfway_writes_nothing(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The event and check-in lists arrived, the blocked secrets did not: no file changes."""
    pretix.revoke(ticket(event_key, "one"))
    assert run_pull(work, pretix.url) == 0
    before = snapshot_of(work)
    pretix.revoke(ticket(event_key, "two"))
    pretix.state.event = {**pretix.state.event, "timezone": "Europe/Vienna"}
    real_route = pretix.RequestHandlerClass._route  # type: ignore[attr-defined]

    def failing(self: object, path: str, query: dict[str, str]) -> None:
        if path.endswith("/blockedsecrets/"):  # asks for a wait longer than a pull waits
            self._json(429, {"detail": "slow down"}, {"Retry-After": "100000"})  # type: ignore[attr-defined]
            return
        real_route(self, path, query)

    pretix.RequestHandlerClass._route = failing  # type: ignore[attr-defined]
    try:
        assert run_pull(work, pretix.url) == 2
    finally:
        pretix.RequestHandlerClass._route = real_route  # type: ignore[attr-defined]
    assert "[pretix_rate_limited]" in capsys.readouterr().err
    assert snapshot_of(work) == before


def test_a_non_sig1_secret_is_counted_and_skipped(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signed = ticket(event_key, "signed")
    pretix.revoke("k24fiuwvu8kxz3y1", signed)  # pretix's random generator, and a sig1 ticket
    assert run_pull(work, pretix.url) == 0
    out = capsys.readouterr().out
    assert "1 revoked secret is not pretix_sig1 (1 new): skipped" in out
    assert len(newest(work, "revoked")) == 1 and pid(signed) in newest(work, "revoked")
    pretix.revoke("m5kpk768q69gkbyr")
    assert run_pull(work, pretix.url) == 0
    out = capsys.readouterr().out
    assert "2 revoked secrets are not pretix_sig1 (1 new)" in out
    assert "revoked list 'acme' version 1: 1 entry, unchanged" in out


def test_a_damaged_state_file_is_an_error_and_full_rebuilds_it(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = ticket(event_key, "kept")
    pretix.revoke(kept)
    pretix.block(ticket(event_key, "blk"))
    assert run_pull(work, pretix.url) == 0
    lists_before = {k: v for k, v in snapshot_of(work).items() if k.endswith(".pgdl")}
    state = work / f"out/{STATE_FILE}"
    bad_id = state.read_bytes().replace(b'"ids": [', b'"ids": ["zz", ')
    for damage in (b"{not json", b'{"format": 1}', bad_id):
        state.write_bytes(damage)
        capsys.readouterr()
        assert run_pull(work, pretix.url) == 2
        err = capsys.readouterr().err
        assert "damaged" in err and "--full" in err and "[sync_state]" in err and "Traceback" not in err
    assert {k: v for k, v in snapshot_of(work).items() if k.endswith(".pgdl")} == lists_before
    state.unlink()
    assert run_pull(work, pretix.url) == 2  # lists but no state: not a first pull
    assert "no pretix-state.json" in capsys.readouterr().err
    assert run_pull(work, pretix.url, "--full") == 0
    out = capsys.readouterr().out
    assert "revoked list 'acme' version 1: 1 entry, unchanged" in out  # goes on from the signed list
    assert json.loads(state.read_text())["lists"]["revoked"]["ids"] == [pid(kept).hex()]
    assert run_pull(work, pretix.url) == 0  # and the next pull is incremental again


def test_full_never_drops_a_revocation_and_a_lost_directory_starts_a_new_epoch(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = ticket(event_key, "first")
    pretix.revoke(first)
    assert run_pull(work, pretix.url) == 0
    store = trust(work)
    gate = LiveDenyList(work / "gate.pgdl", kind="revoked", scope=SCOPE)
    gate.apply_signed(work / "out/lists/revoked-0000000001.snapshot.pgdl", store)
    pretix.state.revoked.clear()  # pretix no longer lists it: revocation stays permanent here
    assert run_pull(work, pretix.url, "--full") == 0
    assert newest(work, "revoked").version == 1 and pid(first) in newest(work, "revoked")

    for path in sorted((work / "out").rglob("*"), reverse=True):  # the whole directory lost
        path.unlink() if path.is_file() else path.rmdir()
    capsys.readouterr()
    assert run_pull(work, pretix.url, "--full") == 0
    assert "a new epoch began" in capsys.readouterr().out
    fresh = newest(work, "revoked")
    assert epoch_of(fresh.version) > 0 and fresh.version > gate.current.version
    (snapshot,) = (work / "out/lists").glob("revoked-*.snapshot.pgdl")
    gate.apply_signed(snapshot, store)  # the gate takes it as newer than its version 1
    assert gate.current.version == fresh.version


def test_rate_limits_are_waited_out_as_retry_after_says(pretix: FakePretix) -> None:
    waits: list[float] = []
    pretix.state.rate_limit, pretix.state.retry_after = 2, "3"
    source = PretixSource(pretix.url, ORGANIZER, EVENT)
    with PretixClient(source, TOKEN, sleep=waits.append, progress=False) as client:
        body, _ = client.get(source.event_path)
    assert body["slug"] == EVENT and waits == [3.0, 3.0]
    pretix.state.rate_limit, pretix.state.retry_after = 1, "3600"
    with PretixClient(source, TOKEN, sleep=waits.append, progress=False) as client, \
            pytest.raises(PretixRateLimitError, match="asks to wait 3600 s"):
        client.get(source.event_path)
    assert waits == [3.0, 3.0]  # a wait that long is refused, not slept
    pretix.state.rate_limit, pretix.state.retry_after = 10, "1"
    with PretixClient(source, TOKEN, sleep=waits.append, max_attempts=3, progress=False) as client, \
            pytest.raises(PretixRateLimitError, match="still answers 429"):
        client.get(source.event_path)


def test_a_next_link_to_another_host_is_not_followed(
    work: Path, pretix: FakePretix, event_key: ed25519.Ed25519PrivateKey,
) -> None:
    pretix.revoke(*(ticket(event_key, f"s{i}") for i in range(3)))
    pretix.state.next_base = "http://collector.example"
    key = load_private_key(work / "keys/lists.key.pem")
    with PretixClient(PretixSource(pretix.url, ORGANIZER, EVENT), TOKEN, progress=False) as client, \
            pytest.raises(PretixResponseError, match="on another host"):
        pull(client, work / "out", key, scope=SCOPE)
    assert all("collector" not in s.path for s in pretix.state.seen)
    assert not (work / "out/event.json").exists()


def test_without_x_page_generated_the_cursor_is_the_newest_time_less_a_margin(
    work: Path, event_key: ed25519.Ed25519PrivateKey,
) -> None:
    with FakePretix.running(page_generated=False) as pretix:
        pretix.revoke(ticket(event_key, "early"))
        assert run_pull(work, pretix.url) == 0
        since = json.loads((work / f"out/{STATE_FILE}").read_text())["lists"]["revoked"]["since"]
        assert since == "2024-05-01T09:50:01Z"  # created 10:00:01, less ten minutes
        late = ticket(event_key, "late")
        pretix.revoke(late)
        assert run_pull(work, pretix.url) == 0
        asked = [s.query for s in pretix.state.seen if s.path.endswith("/revokedsecrets/")]
        assert asked[-1]["created_since"] == since
        assert len(newest(work, "revoked")) == 2 and pid(late) in newest(work, "revoked")


@pytest.mark.parametrize(("organizer", "path", "message"), [
    ("other", "", "403"),
    (ORGANIZER, "/shop", "404"),
])
def test_wrong_organizer_or_address_names_what_failed(
    work: Path, pretix: FakePretix, capsys: pytest.CaptureFixture[str],
    organizer: str, path: str, message: str,
) -> None:
    code = main(["pretix", "pull", "--url", pretix.url + path, "--organizer", organizer, "--event", EVENT,
                 "--out", str(work / "out"), "--signing-key", str(work / "keys/lists.key.pem"),
                 "--token-file", str(work / "token")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and TOKEN not in err


def test_options_that_would_leak_or_cannot_work_are_refused(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_pull(work, "http://pretix.example") == 2  # the token in the clear
    assert "plain http" in capsys.readouterr().err
    with pytest.raises(PretixOptionError, match="not a pretix slug"):
        PretixSource("https://pretix.eu", "demo/../x", EVENT)
    with pytest.raises(PretixOptionError, match="spaces or control"):
        PretixClient(PretixSource("https://pretix.eu", ORGANIZER, EVENT), "two words")
    monkeypatch.delenv("PASSGATE_PRETIX_TOKEN", raising=False)
    code = main(["pretix", "pull", "--url", "https://pretix.eu", "--organizer", ORGANIZER, "--event", EVENT,
                 "--out", str(work / "out"), "--signing-key", str(work / "keys/lists.key.pem")])
    assert code == 2 and "no pretix token" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretix", "pull", "--token", TOKEN])  # there is no such option, by design
    capsys.readouterr()
    assert not (work / "out/lists").exists()


def test_the_token_may_come_from_the_environment_and_a_loose_file_is_flagged(
    work: Path, pretix: FakePretix, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PASSGATE_PRETIX_TOKEN", TOKEN)
    code = main(["pretix", "pull", "--url", pretix.url, "--organizer", ORGANIZER, "--event", EVENT,
                 "--out", str(work / "out"), "--signing-key", str(work / "keys/lists.key.pem"),
                 "--scope", SCOPE])
    assert code == 0 and pretix.state.seen[-1].authorization == f"Token {TOKEN}"
    (work / "token").chmod(0o644)
    capsys.readouterr()
    assert run_pull(work, pretix.url) == 0
    err = capsys.readouterr().err
    assert "can be read by other users" in err
    assert stat.S_IMODE((work / "token").stat().st_mode) == 0o644  # flagged, not changed


def test_one_pull_at_a_time(work: Path, pretix: FakePretix, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "out").mkdir()
    fd = os.open(work / "out" / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert run_pull(work, pretix.url) == 2
        assert "another pull is running" in capsys.readouterr().err
    finally:
        os.close(fd)
    assert run_pull(work, pretix.url) == 0


def test_a_secret_seen_twice_in_one_listing_takes_its_newest_record(
    event_key: ed25519.Ed25519PrivateKey,
) -> None:
    secret = ticket(event_key, "twice")
    older = {"id": 1, "secret": secret, "blocked": True, "updated": "2024-05-01T10:00:00Z"}
    newer = {"id": 1, "secret": secret, "blocked": False, "updated": "2024-05-01T10:00:05Z"}
    for records in ([older, newer], [newer, older]):
        after = _apply_blocked(ListState(ids={pid(secret)}), Listing(records, "2024-05-01T10:01:00Z"))
        assert after.ids == set() and after.since == "2024-05-01T10:01:00Z"


def test_an_event_with_a_key_that_cannot_be_used_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    event = event_resource(EVENT, [])
    event["valid_keys"]["pretix_sig1"] = ["bm90IGEga2V5"]  # base64 of "not a key"
    with FakePretix.running(event=event) as pretix:
        assert run_pull(work, pretix.url) == 2
    err = capsys.readouterr().err
    assert "signing key cannot be used" in err and "[pretix_bad_response]" in err
    assert not (work / "out/event.json").exists()
