"""The atheris harnesses in ``fuzz/``, run without atheris so they cannot rot.

Each harness's ``test_one_input`` gets its seed corpus, random bytes and mutated seeds from
hypothesis (200 inputs a harness; 600 under ``HYPOTHESIS_PROFILE=thorough``); the forgery oracles
are shown to fire, so a harness that silently checked nothing would fail here. The long run is
``pytest -m soak`` (atheris, ``fuzz/run_all.py``), or ``python -m fuzz.run_all --inputs N`` directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz import (
    fuzz_cose,
    fuzz_denylist,
    fuzz_freshness,
    fuzz_presentation,
    fuzz_pretix,
    fuzz_rules,
    fuzz_verify_pass,
)
from fuzz.common import TARGETS, Forgery
from fuzz.make_corpus import make_corpus
from passgate import PassRefused, base45, verify_pass
from passgate.passes import PREFIX
from passgate.pretix import verify_sig1
from passgate.rules import RuleError, check_rules, json_logic
from tests.helpers import examples
from tests.parts import require_part

ROOT = Path(__file__).resolve().parent.parent
HARNESSES = {target: importlib.import_module(f"fuzz.fuzz_{target}") for target in TARGETS}
SOAK_INPUTS = int(os.environ.get("PASSGATE_FUZZ_INPUTS", "200000"))  # per target


@st.composite
def mutants(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte overwrites, insertions, deletions or bit flips (libFuzzer-like)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["set", "insert", "delete", "flip"]))
        if edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif at < len(data):
            if edit == "set":
                data[at] = draw(st.integers(0, 255))
            elif edit == "delete":
                del data[at]
            else:
                data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


def _fuzz_with_hypothesis(harness: ModuleType) -> None:
    seeds = list(harness.seeds().values())

    @settings(max_examples=examples(200, 600), deadline=None, database=None)
    @given(st.binary(max_size=512) | mutants(seeds))
    def run(data: bytes) -> None:
        harness.test_one_input(data)

    run()


@pytest.mark.parametrize("target", TARGETS)
def test_harness_accepts_its_seed_corpus(target: str) -> None:
    seeds = HARNESSES[target].seeds()
    assert len(seeds) >= 5
    for data in seeds.values():
        HARNESSES[target].test_one_input(data)


@pytest.mark.parametrize("target", TARGETS)
def test_harness_on_random_and_mutated_inputs(target: str) -> None:
    _fuzz_with_hypothesis(HARNESSES[target])


def test_make_corpus_writes_every_seed(tmp_path: Path) -> None:
    dirs = make_corpus(tmp_path)
    assert set(dirs) == set(TARGETS)
    for target, directory in dirs.items():
        assert {path.name for path in directory.iterdir()} == set(HARNESSES[target].seeds())
        for path in directory.iterdir():  # ES256 signatures differ per run: check they still pass
            HARNESSES[target].test_one_input(path.read_bytes())


def test_valid_pass_seeds_verify_so_the_oracle_is_exercised() -> None:
    """Four signed seeds, each in several encodings, verify; near-miss seeds are refused."""
    assert len(fuzz_verify_pass.SEED_PASSES) == 4
    seeds = fuzz_verify_pass.seeds()
    verified = [name for name, data in seeds.items()
                if data[0] != fuzz_verify_pass.SIGN and _verifies(data)]
    assert set(verified) == {f"{kind}-{i}" for kind in ("text", "body") for i in range(4)} | {
        "text-lower", "body-untagged", "body-zlib"}


def test_valid_pretix_seeds_verify_so_the_oracle_is_exercised() -> None:
    """Four signed tickets (both of the event's keys), as texts and as bytes, verify; the attacker's,
    the expired one and a PG1 text are refused."""
    assert len(fuzz_pretix.SEED_TICKETS) == 4
    verified = set()
    for name, data in fuzz_pretix.seeds().items():
        mode, rest = data[0], data[1:]
        if mode == fuzz_pretix.SIGN:
            continue
        text = rest if mode == fuzz_pretix.TEXT else fuzz_pretix._text(rest)
        try:
            verify_sig1(text, fuzz_pretix.KEYS, now=fuzz_pretix.NOW)
        except PassRefused:
            continue
        verified.add(name)
    assert verified == {f"{kind}-{i}" for kind in ("text", "raw") for i in range(4)} | {"text-newline"}


def test_valid_presentation_seeds_verify_so_the_oracle_is_exercised() -> None:
    """Four presentations (both issuer keys, a 30-s step), as texts and as CBOR, verify with the holder
    proven, and the bound pass alone verifies unproven; the near-misses are refused."""
    assert len(fuzz_presentation.SEED_PRESENTATIONS) == 4
    proven, unproven = set(), set()
    for name, data in fuzz_presentation.seeds().items():
        mode, rest = data[0], data[1:]
        if mode == fuzz_presentation.SIGN:
            continue
        text = rest if mode == fuzz_presentation.TEXT else f"PG2:{base45.encode(rest)}".encode()
        try:
            result = verify_pass(text, fuzz_presentation.TRUST, now=fuzz_presentation.NOW)
        except PassRefused:
            continue
        (proven if result.holder_verified else unproven).add(name)
    assert proven == {f"{kind}-{i}" for kind in ("text", "body") for i in range(4)} | {"text-lower"}
    assert unproven == {"text-pass"}


def test_rules_seeds_are_evaluated_so_the_oracles_are_exercised() -> None:
    """Every rules seed gets a result (not only RuleError) from json_logic or check_rules, so the
    harness's checks on results run from the first input on."""
    evaluated = set()
    for name, data in fuzz_rules.seeds().items():
        document = json.loads(data)
        rule, sample = document if isinstance(document, list) else (document, fuzz_rules.SAMPLE)
        for evaluate, against in ((json_logic, sample), (check_rules, fuzz_rules.FACTS)):
            try:
                evaluate(rule, against)
            except RuleError:
                continue
            evaluated.add(name)
    assert evaluated == set(fuzz_rules.seeds())


def _verifies(data: bytes) -> bool:
    """Whether a mode-0/1 pass seed verifies (the harness's own decoding, no oracle)."""
    rest = data[1:]
    text = rest if data[0] == fuzz_verify_pass.TEXT else (PREFIX + base45.encode(rest)).encode()
    try:
        verify_pass(text, fuzz_verify_pass.TRUST, now=fuzz_verify_pass.NOW)
    except PassRefused:
        return False
    return True


@pytest.mark.parametrize(
    ("harness", "known", "seed"),
    [
        (fuzz_verify_pass, "SEED_PASSES", "body-zlib"),
        (fuzz_cose, "SIGNED", "es256-aad"),
        (fuzz_denylist, "SEED_LISTS", "2-delta-blocked"),
        (fuzz_freshness, "SIGNED", "revoked-acme"),
        (fuzz_pretix, "SEED_TICKETS", "raw-2"),
        (fuzz_presentation, "SEED_PRESENTATIONS", "body-3"),
        (fuzz_presentation, "SEED_PASSES", "text-pass"),
    ],
)
def test_forgery_oracle_fires_for_content_it_did_not_sign(
    harness: ModuleType, known: str, seed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its record of signed content emptied, a harness must call a valid seed a forgery."""
    monkeypatch.setattr(harness, known, type(getattr(harness, known))())
    with pytest.raises(Forgery, match="without a valid signature"):
        harness.test_one_input(harness.seeds()[seed])


@pytest.mark.soak
def test_soak_fuzz_every_parser_with_atheris(capsys: pytest.CaptureFixture[str]) -> None:
    """``fuzz/run_all.py`` for PASSGATE_FUZZ_INPUTS inputs per target (default 200,000): no crash,
    no forgery. Prints the driver's table."""
    require_part(importlib.util.find_spec("atheris") is not None, "atheris", "pip install -e '.[fuzz]'")
    proc = subprocess.run([sys.executable, "-m", "fuzz.run_all", "--inputs", str(SOAK_INPUTS)],
                          cwd=ROOT, capture_output=True, text=True)
    with capsys.disabled():
        print("\n" + proc.stdout + proc.stderr)
    assert proc.returncode == 0
    total = re.search(r"^total\s+([\d,]+)\s+(\d+)\s+(\d+)", proc.stdout, re.MULTILINE)
    assert total is not None
    inputs, crashes, forgeries = int(total[1].replace(",", "")), int(total[2]), int(total[3])
    assert (crashes, forgeries) == (0, 0)
    assert inputs >= SOAK_INPUTS * len(TARGETS)
