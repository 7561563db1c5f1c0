"""The wallet page in Debian's chromium.

Its QR encoder (``qr.js``, written for the wallet) is checked against readers it did not write:
codes drawn by the page and screenshotted are read back with ``passgate.decode`` (zxing-cpp), which
also reports the version, level and mask it found and whether any codeword needed correcting;
the module matrices equal segno's for the same version and mask; and the mask the page picks
scores lowest under segno's penalty. Its Base45 and CBOR equal the SDK's and cbor2's, and a
presentation it signs has the contract's layout and a signature ``cryptography`` accepts.

End to end (issue 17): a real hub on loopback issues a holder-bound pass, the wallet claims it,
goes offline and still shows its rotating code after a reload; screenshots of two moments are
decoded and fed to a ``passgated simulate`` gate that trusts the venue's key: the fresh code is
admitted, the old screenshot refused as expired; a second browser cannot claim the same code.
"""

from __future__ import annotations

import base64
import io
import json
import queue
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import numpy
import pytest
import requests
import segno
import zxingcpp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from passgate import base45, generate_private_key, holder, issue_pass, passes
from passgate.decode import decode_image
from tests.helpers import THOROUGH
from tests.parts import require_part

from .server import HubServer
from .test_api import TIMEOUT, setup_venue
from .wallet_pages import WalletHarness, harness

ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
LEVEL_M = segno.consts.ERROR_LEVEL_M
ZXING_3 = "pip install 'zxing-cpp>=3'"
SHOTS = Path("/tmp")  # where the console's browser tests put their screenshots too
WAIT_S = 30.0  # bound on every wait for the hub, the page or the gate


@pytest.fixture(scope="module")
def page(chromium_browser: Browser) -> Iterator[WalletHarness]:
    yield from harness(chromium_browser)


def capacity_bits(version: int) -> int:
    """Data bits of a version at level M, from segno's tables (not the page's)."""
    return int(segno.consts.SYMBOL_CAPACITY[version][LEVEL_M])


def count_bits(version: int, mode: str) -> int:
    return {"alphanumeric": (9, 11, 13), "byte": (8, 16, 16)}[mode][(version >= 10) + (version >= 27)]


def alnum_bits(length: int, version: int) -> int:
    return 4 + count_bits(version, "alphanumeric") + 11 * (length // 2) + 6 * (length % 2)


def most_alnum(version: int) -> int:
    """The longest alphanumeric text that fits ``version`` at level M."""
    length = 0
    while alnum_bits(length + 1, version) <= capacity_bits(version):
        length += 1
    return length


def pg2_like(length: int, seed: int) -> str:
    """A text like a presentation: ``PG2:`` then Base45 characters (space and ``$%*+-./:`` too)."""
    body = "".join(ALNUM[(seed * 7 + i * 31 + i * i) % 45] for i in range(max(0, length - 4)))
    return ("PG2:" + body)[:length]


def zxing_reading(image: object) -> dict[str, object]:
    """What zxing-cpp found beyond the payload: version, level, mask, and the share of error
    correction left unused (1.0: no codeword needed correcting, so the page's Reed-Solomon is right)."""
    require_part(hasattr(zxingcpp.Barcode, "extra"), "zxing-cpp 3 (its reading details)", ZXING_3)
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1 and found[0].format == zxingcpp.BarcodeFormat.QRCode
    return dict(found[0].extra)


def read_back(image: object) -> bytes:
    codes = decode_image(image)
    assert len(codes) == 1, f"{len(codes)} codes found"
    assert codes[0].format == "qr"
    return codes[0].bytes


# --- The QR encoder against real readers ----------------------------------------------------------

def test_the_pages_capacities_are_the_standards(page: WalletHarness) -> None:
    """Level M data codewords of versions 1..40 as the page computes them, against segno's table."""
    theirs = page.call("() => Array.from({length: 40}, (_, i) => qr.dataCodewords(i + 1))")
    assert [8 * c for c in theirs] == [capacity_bits(v) for v in range(1, 41)]


@pytest.mark.parametrize("version", range(1, 21))
def test_pg2_like_texts_filling_each_version_read_back_exactly(page: WalletHarness, version: int) -> None:
    """The longest alphanumeric text of each version 1..20 (so the page must choose exactly that
    version) and a short one forced into it, drawn, screenshotted and decoded."""
    cases = [(pg2_like(most_alnum(version), version), None), (pg2_like(9 + version, version), version)]
    for text, forced in cases:
        made, image = page.shoot(text, version=forced)
        assert (made["version"], made["mode"]) == (version, "alphanumeric")
        assert read_back(image) == text.encode()
        extra = zxing_reading(image)
        assert (extra["Version"], extra["ECLevel"], extra["DataMask"]) == (str(version), "M", made["mask"])
        assert extra.get("UEC", 1.0) == 1.0


BYTE_TEXTS = [
    "hello",
    "https://hub.example/wallet#claim=abcdefghijklmnopqrstuvwxyz",
    "pg2:lower case is not alphanumeric",
    "Grüße aus Köln – Eintritt 12 €",
    json.dumps({"pass": "PG1:ABC", "step": 15, "venue": "Stadion"}),
    "a" * 150,
    "x" * 321,
    "".join(chr(0x20 + (i * 13) % 95) for i in range(600)),
]


@pytest.mark.parametrize("text", BYTE_TEXTS, ids=lambda t: f"{len(t.encode())}-bytes")
def test_byte_mode_texts_read_back_as_their_utf8(page: WalletHarness, text: str) -> None:
    made, image = page.shoot(text, scale=2)
    assert made["mode"] == "byte"
    assert read_back(image) == text.encode()
    extra = zxing_reading(image)
    found = [extra["Version"], extra["ECLevel"], extra["DataMask"]]
    assert found == [str(made["version"]), "M", made["mask"]]
    assert extra.get("UEC", 1.0) == 1.0
    # the smallest version that holds it (mode 4 bits, count, 8 bits a byte)
    need = 4 + count_bits(made["version"], "byte") + 8 * len(text.encode())
    assert need <= capacity_bits(made["version"])
    if made["version"] > 1:
        smaller = made["version"] - 1
        assert 4 + count_bits(smaller, "byte") + 8 * len(text.encode()) > capacity_bits(smaller)


@pytest.mark.parametrize("version", [21, 25, 27, 32, 40])
def test_large_versions_read_back(page: WalletHarness, version: int) -> None:
    text = pg2_like(most_alnum(version), version)
    made, image = page.shoot(text, scale=2)
    assert made["version"] == version
    assert read_back(image) == text.encode()
    assert zxing_reading(image)["Version"] == str(version)


def segno_pads_as_the_standard(length: int, version: int) -> bool:
    """segno 1.6 writes eight zero bits (a 0x00 codeword) instead of none when the data and its
    terminator end on a byte boundary; such symbols are valid but differ from the standard's
    padding, so the module-by-module comparison leaves them out (decoding covers them)."""
    bits = alnum_bits(length, version)
    return (bits + min(4, capacity_bits(version) - bits)) % 8 != 0


def matrices(page: WalletHarness, cases: list[tuple[str, int | None, int | None]]) -> list[dict[str, object]]:
    return list(page.call(
        """(cases) => cases.map(([text, version, mask]) => {
            const code = qr.encodeQR(text, {version, mask});
            const rows = [];
            for (let y = 0; y < code.size; y++) {
                rows.push(Array.from(code.modules.subarray(y * code.size, (y + 1) * code.size)).join(""));
            }
            return {mask: code.mask, rows};
        })""",
        cases,
    ))


def segno_rows(text: str, version: int, mask: int) -> list[str]:
    code = segno.make_qr(text, version=version, error="m", mode="alphanumeric", mask=mask, boost_error=False)
    return ["".join(str(bit) for bit in row) for row in code.matrix]


def test_every_version_and_mask_equals_segnos_matrix(page: WalletHarness) -> None:
    """Function patterns, format and version information, data placement, Reed-Solomon and the
    eight masks, module by module, for versions 1..40: every version with each mask under
    HYPOTHESIS_PROFILE=thorough (320 symbols, 9 s), every version with one of the masks in turn (each
    mask five times) in the default run, which has to keep within its time."""
    cases: list[tuple[str, int | None, int | None]] = []
    for version in range(1, 41):
        lengths = [n for n in range(7, most_alnum(version) + 1) if segno_pads_as_the_standard(n, version)]
        for mask in range(8) if THOROUGH else (version % 8,):
            length = lengths[(mask * 37 + version * 11) % len(lengths)]
            cases.append((pg2_like(length, version + mask), version, mask))
    compared = 0
    for (text, version, mask), made in zip(cases, matrices(page, cases), strict=True):
        assert made["mask"] == mask
        assert made["rows"] == segno_rows(text, version, mask), f"version {version} mask {mask}"
        compared += 1
    assert compared == (320 if THOROUGH else 40)


def zxing_symbol(text: str) -> list[str]:
    """The symbol zxing-cpp's writer makes for ``text`` at level M, row by row ("1" dark): its own
    choice of version and mask (by the standard's penalty rules), with no quiet zone."""
    require_part(hasattr(zxingcpp, "create_barcode"), "zxing-cpp 3 (its QR writer)", ZXING_3)
    made = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    pixels = numpy.asarray(made.to_image(scale=1, add_quiet_zones=False))
    return ["".join("1" if p < 128 else "0" for p in row) for row in pixels]


def test_left_to_choose_the_page_makes_the_symbol_zxing_makes(page: WalletHarness) -> None:
    """Version and mask left to the page: the mask it picks by the standard's penalty (and so the
    whole symbol) is the one zxing-cpp's writer picks, an independent implementation of the same
    rules; alphanumeric texts of every version 1..20 and ASCII byte texts."""
    texts = [pg2_like(most_alnum(v) - k, v * 3 + k) for v in range(1, 21) for k in (0, 5, 11)]
    texts += [t for t in BYTE_TEXTS if t.isascii()]
    made = matrices(page, [(text, None, None) for text in texts])
    masks = set()
    for text, mine in zip(texts, made, strict=True):
        assert mine["rows"] == zxing_symbol(text), text
        masks.add(mine["mask"])
    assert len(masks) >= 6  # the choice varies: not one mask that happens to match


def test_texts_that_fit_no_code_and_bad_options_are_refused(page: WalletHarness) -> None:
    refused = page.call(
        """() => [
            () => qr.encodeQR("A".repeat(3392)),
            () => qr.encodeQR("a".repeat(2332)),
            () => qr.encodeQR("PG2:" + "A".repeat(30), {version: 1}),
            () => qr.encodeQR("A", {version: 41}),
            () => qr.encodeQR("A", {mask: 8}),
            () => qr.encodeQR(42),
        ].map((make) => {
            try { make(); return "made"; } catch (e) { return e instanceof qr.QRError ? e.message : "other"; }
        })"""
    )
    assert refused == [
        "the text is too long for a QR code at level M",
        "the text is too long for a QR code at level M",
        "the text does not fit in version 1 at level M",
        "version 41 is not 1..40",
        "mask 8 is not 0..7",
        "a QR code's text must be a string",
    ]
    # the largest that fit (version 40, level M): 3391 alphanumeric characters, 2331 bytes
    fits = page.call('() => [qr.encodeQR("A".repeat(3391)).version, qr.encodeQR("a".repeat(2331)).version]')
    assert fits == [40, 40]


# --- Base45, CBOR and the presentation ---------------------------------------------------------------

def test_base45_equals_the_sdks_both_ways(page: WalletHarness) -> None:
    samples = [b"", b"\x00", b"\xff", b"\xff\xff", b"AB", b"hello world", bytes(range(256)), b"\x00" * 7,
               bytes((i * 151 + 7) % 256 for i in range(301))]
    encoded = page.call("(all) => all.map((hex) => wallet.base45Encode(wallet.hexToBytes(hex)))",
                        [s.hex() for s in samples])
    assert encoded == [base45.encode(s) for s in samples]
    decoded = page.call(
        """(all) => all.map((t) => Array.from(wallet.base45Decode(t), (b) => b.toString(16).padStart(2, "0"))
                                  .join(""))""",
        encoded)
    assert decoded == [s.hex() for s in samples]
    refused = page.call("""(all) => all.map((t) => { try { wallet.base45Decode(t); return "decoded"; }
                                                      catch (e) { return e.message; } })""",
                        ["GGW", "A", "ab", ":::", "::"])
    assert refused == ["not Base45: a triplet above 65535", "not Base45: a single character left over",
                       "not Base45: a character outside the alphabet", "not Base45: a triplet above 65535",
                       "not Base45: a final pair above 255"]


def test_cbor_equals_cbor2_at_every_head_size(page: WalletHarness) -> None:
    """Unsigned integers and byte strings on each side of every head-size boundary, in arrays."""
    numbers = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40 + 5, 2**53 - 1]
    lengths = [0, 1, 23, 24, 255, 256, 1000, 65536]
    items: list[object] = [*numbers, *(bytes((i * 7) % 256 for i in range(n)) for n in lengths)]
    values = [[n for n in numbers], [b.hex() for b in items if isinstance(b, bytes)]]
    made = page.call(
        """([numbers, strings]) => {
            const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
            const items = [...numbers, ...strings.map(wallet.hexToBytes)];
            return [hex(wallet.cborEncode(items)), ...items.map((item) => hex(wallet.cborEncode([item])))];
        }""",
        values,
    )
    assert made[0] == cbor2.dumps(items).hex()
    assert made[1:] == [cbor2.dumps([item]).hex() for item in items]
    refused = page.call("""() => [-1, 1.5, "text", 2 ** 53, null].map((v) => {
        try { wallet.cborEncode([v]); return "encoded"; }
        catch (e) { return e instanceof wallet.WalletError; }
    })""")
    assert refused == [True] * 5


def jwk_key(jwk: dict[str, str]) -> ec.EllipticCurvePublicKey:
    """The public key the page exported (its own reading of the JWK, not the SDK's)."""
    def number(b64: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)), "big")
    return ec.EllipticCurvePublicNumbers(number(jwk["x"]), number(jwk["y"]), ec.SECP256R1()).public_key()


PRESENT = """async ([texts, passId, step]) => {
    const keys = await crypto.subtle.generateKey({name: "ECDSA", namedCurve: "P-256"}, false, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", keys.publicKey);
    let extractable = true;
    try { await crypto.subtle.exportKey("pkcs8", keys.privateKey); } catch { extractable = false; }
    const made = [];
    for (const text of texts) {
        const cose = await wallet.passCose(text);
        made.push(await wallet.makePresentation(cose, wallet.hexToBytes(passId), step, keys.privateKey));
    }
    return {jwk, extractable, made};
}"""


@pytest.mark.parametrize("step", [0, 23, 24, 255, 65536, 118_000_000, 2**32 + 7, 2**53 - 1])
def test_a_presentation_made_in_the_page_has_the_contracts_layout_and_signature(
    page: WalletHarness, step: int
) -> None:
    """Whatever the step's size: ``PG2:`` + Base45 of canonical CBOR ``[pass COSE, step, r||s]``,
    the COSE exactly the pass's (also from a zlib-compressed or lower-cased PG1 text), the signature
    valid over the contract's bytes and over nothing else; the private key cannot be exported."""
    issuer = generate_private_key()
    pass_id = bytes(range(16))
    pg1 = issue_pass(issuer, valid_from=0, valid_until=2**31, zones=["A"], pass_id=pass_id)
    cose = passes.decode_text(pg1)
    texts = [pg1, "PG1:" + base45.encode(zlib.compress(cose)), pg1.lower()]
    out = page.call(PRESENT, [texts, pass_id.hex(), step])
    assert out["extractable"] is False
    public = jwk_key(out["jwk"])
    for text in out["made"]:
        assert text.startswith("PG2:") and set(text[4:]) <= set(ALNUM)
        data = base45.decode(text[4:])
        items = cbor2.loads(data)
        assert cbor2.dumps(items) == data  # canonical: shortest heads, definite lengths
        assert items[:2] == [cose, step] and type(items[2]) is bytes and len(items[2]) == 64
        r, s = int.from_bytes(items[2][:32], "big"), int.from_bytes(items[2][32:], "big")
        signature = encode_dss_signature(r, s)
        message = b"passgate-presentation-v1\x00" + pass_id + step.to_bytes(8, "big")
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            public.verify(signature, message[:-1] + bytes([message[-1] ^ 1]), ec.ECDSA(hashes.SHA256()))


def test_the_sdk_verifies_a_presentation_made_in_the_page(page: WalletHarness) -> None:
    """A pass bound to the page's key, presented by the page: the SDK (and so the gate) proves the
    holder, and the page's text has the same layout as the SDK's twin ``passgate.holder.present``."""
    from passgate import TrustStore, verify_pass

    issuer = generate_private_key()
    trust = TrustStore()
    trust.add(issuer.public_key())
    keys = page.call("""async () => {
        const keys = await crypto.subtle.generateKey({name: "ECDSA", namedCurve: "P-256"}, false, ["sign"]);
        window.heldKeys = keys;
        return crypto.subtle.exportKey("jwk", keys.publicKey);
    }""")
    pass_id = bytes.fromhex("00112233445566778899aabbccddeeff")
    now = 1_750_000_000.0
    pg1 = issue_pass(issuer, valid_from=now - 60, valid_until=now + 3600, pass_id=pass_id,
                     holder_key=holder.public_key_from_jwk(keys), holder_step=5)
    step = int(now // 5)
    mine = page.call("""async ([text, passId, step]) => wallet.makePresentation(
        await wallet.passCose(text), wallet.hexToBytes(passId), step, window.heldKeys.privateKey)""",
                     [pg1, pass_id.hex(), step])
    proven = verify_pass(mine, trust, now=now)
    assert (proven.pass_id, proven.holder_verified, proven.presentation_step) == (pass_id, True, step)
    assert holder.decode_presentation(mine)[:2] == (passes.decode_text(pg1), step)


def test_claim_codes_are_read_from_what_a_holder_types_or_pastes(page: WalletHarness) -> None:
    code = "abcdefghijklmnopqrstuvwxyz"[:20] + "234567"
    inputs = [code, code.upper(), f"  {code[:13]} {code[13:]} ", f"{code[:13]}-{code[13:]}",
              f"https://hub.example/wallet#claim={code}",
              code[:-1], code + "a", code[:-1] + "1", "", "#claim="]
    read = page.call("(all) => all.map(wallet.parseClaimCode)", inputs)
    assert read == [code, code, code, code, code, None, None, None, None, None]


# --- End to end: a real hub, the wallet page, a simulated gate ---------------------------------------

STEP_S = 5  # the pass's presentation step: short, so "one window later" comes within seconds
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[HubServer]:
    """A hub on SQLite over loopback with the arena (zones floor and vip, a hub-held issuer key)."""
    hub = HubServer(f"sqlite:///{tmp_path / 'hub.db'}").start()
    try:
        setup_venue(hub, hub.admin())
        yield hub
    finally:
        hub.close()


def bound_pass(hub: HubServer, admin: requests.Session) -> dict[str, str]:
    body = {"count": 1, "valid_from": time.time() - 60, "valid_until": time.time() + 3600, "zones": ["floor"],
            "holder_bound": True, "holder_step": STEP_S}
    r = admin.post(f"{hub.url}/v1/admin/venues/arena/passes", json=body, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    issued: dict[str, str] = r.json()["passes"][0]
    assert issued.get("text") is None
    assert issued["claim_url"] == f"{hub.url}/wallet#claim={issued['claim_code']}"
    return issued


def venue_trust(hub: HubServer, admin: requests.Session, folder: Path) -> Path:
    """A gate's trust directory holding the arena's issuer public key, as exported by the hub."""
    folder.mkdir()
    keys = admin.get(f"{hub.url}/v1/admin/venues/arena/keys", timeout=TIMEOUT).json()
    for key in keys:
        pem = admin.get(f"{hub.url}/v1/admin/venues/arena/keys/{key['kid']}.pem", timeout=TIMEOUT)
        assert pem.status_code == 200
        (folder / f"{key['kid']}.pem").write_text(pem.text)
    return folder


class Gate:
    """``passgated simulate`` in a child process: one scan a line on stdin, one JSON line a decision
    on stdout (read by a thread, so a wait is bounded)."""

    def __init__(self, trust: Path, journal: Path) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "passgated.cli", "simulate", "--trust", str(trust), "--zone", "floor",
             "--journal", str(journal), "--walk-ms", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.decisions: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.child.stderr or ()), daemon=True).start()

    def _read(self) -> None:
        for line in self.child.stdout or ():
            record = json.loads(line)
            if "decision" in record:
                self.decisions.put(record)

    def scan(self, text: str) -> dict[str, Any]:
        assert self.child.stdin is not None
        self.child.stdin.write(text + "\n")
        self.child.stdin.flush()
        try:
            return self.decisions.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError(f"the gate did not decide: {''.join(self.stderr)[-2000:]}") from None

    def close(self) -> None:
        if self.child.stdin is not None:
            self.child.stdin.close()
        try:
            self.child.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()


def shown_step(page: Page) -> int:
    step = page.locator("#code").get_attribute("data-step")
    assert step is not None
    return int(step)


def screenshot_code(page: Page, name: str) -> tuple[str, int]:
    """The whole phone screen as a screenshot (what a holder would send a friend), decoded: the
    PG2 text and the step the page showed. Taken again if the code turned meanwhile."""
    for _ in range(3):
        step = shown_step(page)
        png = page.screenshot(path=SHOTS / f"passgate-wallet-{name}.png")
        if shown_step(page) == step:
            texts = [code.text for code in decode_image(Image.open(io.BytesIO(png)).convert("L"))]
            assert len(texts) == 1 and texts[0] is not None
            return texts[0], step
    raise AssertionError("the code turned during every screenshot")


def quiet_modules(page: Page) -> float:
    """The light margin around the drawn code, in modules (the canvas's own pixels)."""
    shot = Image.open(io.BytesIO(page.locator("#code").screenshot())).convert("L")
    left, top, right, _ = shot.point(lambda v: 255 if v < 128 else 0).getbbox() or (0, 0, 0, 0)
    extra = zxing_reading(shot)
    size = 17 + 4 * int(str(extra["Version"]))
    module = (right - left) / size
    return min(left, top, shot.width - right) / module


def wait_for_wallet(page: Page) -> None:
    expect(page.locator("#pass-view")).to_be_visible(timeout=WAIT_S * 1000)
    expect(page.locator("#code")).to_have_attribute("data-step", re.compile(r"^\d+$"), timeout=WAIT_S * 1000)


def test_a_claimed_pass_rotates_offline_and_a_screenshot_of_it_expires_at_the_gate(
    chromium_browser: Browser, site: HubServer, tmp_path: Path
) -> None:
    hub = site
    admin = hub.admin()
    issued = bound_pass(hub, admin)
    trust = venue_trust(hub, admin, tmp_path / "trust")
    phone = chromium_browser.new_context(**PHONE)  # type: ignore[arg-type]
    other = chromium_browser.new_context(**PHONE)  # type: ignore[arg-type]
    gate = Gate(trust, tmp_path / "journal.db")
    try:
        # Claim: the link opens the wallet, which keeps a key and the pass, and drops the code from the URL.
        page = phone.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(issued["claim_url"])
        wait_for_wallet(page)
        assert page.url == f"{hub.url}/wallet"
        expect(page.locator("#screenshot-note")).to_have_text(
            f"This code changes every {STEP_S} s; a screenshot will not work at the gate.")
        expect(page.locator("#brightness")).to_contain_text("brightness")
        expect(page.locator("#countdown")).to_have_text(re.compile(rf"^New code in [1-{STEP_S}] s$"))
        expect(page.locator("#pass-info")).to_contain_text("arena")
        expect(page.locator("#clock-warning")).to_be_hidden()  # this phone's clock is the hub's
        stored = page.evaluate("""async () => {
            const wallet = await import("/wallet/wallet.js");
            const [held] = await wallet.loadPasses();
            let exported = true;
            try { await crypto.subtle.exportKey("jwk", held.keys.privateKey); } catch { exported = false; }
            return {id: held.pass_id, extractable: held.keys.privateKey.extractable, exported,
                    usages: held.keys.privateKey.usages, pass: held.pass};
        }""")
        assert stored["id"] == issued["pass_id"]
        assert (stored["extractable"], stored["exported"], stored["usages"]) == (False, False, ["sign"])
        bare = gate.scan(stored["pass"])  # the pass itself, copied out of the phone's storage
        assert (bare["decision"], bare["reason"]) == ("refuse", "holder_proof_required")
        assert quiet_modules(page) >= 8

        # Another phone with the same link: refused, and told why.
        second = other.new_page()
        second.goto(issued["claim_url"])
        expect(second.locator("#claim-error")).to_contain_text("already been added to another phone")
        expect(second.locator("#claim-error")).to_contain_text("409: claim_taken")
        expect(second.locator("#pass-view")).to_be_hidden()
        second.screenshot(path=SHOTS / "passgate-wallet-claim-taken.png")

        # Offline: the service worker controls the page; no network and no hub, and it still works.
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=WAIT_S * 1000)
        cached = page.evaluate("""async () => {
            const found = [];
            for (const name of await caches.keys()) {
                for (const request of await (await caches.open(name)).keys()) found.push(request.url);
            }
            return found;
        }""")  # the page's own files and nothing else: never the claim's answer
        assert sorted(cached) == sorted(f"{hub.url}/wallet{name}" for name in (
            "", "/wallet.js", "/qr.js", "/manifest.webmanifest", "/icon.svg"))
        hub.stop()
        phone.set_offline(True)
        page.reload()
        wait_for_wallet(page)
        again = phone.new_page()  # the claim link once more, on the phone that has the pass: shown
        again.goto(issued["claim_url"])
        wait_for_wallet(again)
        expect(again.locator("#claim-error")).to_be_hidden()
        again.close()

        # Two moments of the rotating code, as screenshots.
        first, step = screenshot_code(page, "first")
        admitted = gate.scan(first)  # a moment later, at the gate: the live code
        assert (admitted["decision"], admitted["reason"]) == ("admit", "admit"), admitted
        expect(page.locator("#code")).not_to_have_attribute("data-step", str(step), timeout=WAIT_S * 1000)
        later, later_step = screenshot_code(page, "later")
        assert later != first and later_step == step + 1
        assert holder.decode_presentation(later)[1] == later_step
        replayed = gate.scan(later)  # the next code, but the pass entered within its window already
        assert (replayed["decision"], replayed["reason"]) == ("refuse", "presentation_replayed")

        # One window later the first screenshot is old: refused, a screenshot does not work.
        while time.time() // STEP_S < step + 2:
            time.sleep(0.2)
        expired = gate.scan(first)
        assert (expired["decision"], expired["reason"]) == ("refuse", "presentation_expired"), expired
        assert errors == []
    finally:
        gate.close()
        other.close()
        phone.close()


def test_the_claim_form_explains_bad_codes_and_a_phone_keeps_several_passes(
    chromium_browser: Browser, site: HubServer
) -> None:
    hub = site
    admin = hub.admin()
    passes_issued = [bound_pass(hub, admin), bound_pass(hub, admin)]
    phone = chromium_browser.new_context(**PHONE)  # type: ignore[arg-type]
    try:
        page = phone.new_page()
        page.goto(f"{hub.url}/wallet#claim=not-a-code")  # a link cut short in an e-mail
        expect(page.locator("#claim-error")).to_have_text(
            "Error: the link's claim code is damaged: type the code from your ticket.")
        assert page.url == f"{hub.url}/wallet"
        error = page.locator("#claim-error")
        for typed, says in (("12345", "Error: that is not a claim code: it has 26 letters and digits."),
                            ("a" * 26, "This claim code is not known")):
            page.fill("#claim-code", typed)
            page.click("#claim-button")
            expect(error).to_contain_text(says)
        expect(error).to_contain_text("404: claim_unknown")
        page.screenshot(path=SHOTS / "passgate-wallet-claim-unknown.png")

        page.fill("#claim-code", passes_issued[0]["claim_url"])  # the whole link pasted
        page.click("#claim-button")
        wait_for_wallet(page)
        expect(page.locator("#pass-picker")).to_be_hidden()  # one pass: nothing to pick
        page.click("#add-button")
        page.fill("#claim-code", passes_issued[1]["claim_code"].upper())
        page.click("#claim-button")
        wait_for_wallet(page)
        picker = page.locator("#pass-select")
        expect(page.locator("#pass-picker")).to_be_visible()
        expect(picker.locator("option")).to_have_count(2)
        expect(picker).to_have_value(passes_issued[1]["pass_id"])  # the one just added is shown

        page.reload()  # both kept; each shows its own pass
        wait_for_wallet(page)
        shown = {}
        for issued in passes_issued:
            picker.select_option(issued["pass_id"])
            expect(page.locator("#code")).to_have_attribute("data-pass", issued["pass_id"])
            text, _ = screenshot_code(page, "picked")
            shown[issued["pass_id"]] = holder.decode_presentation(text)[0]
        assert len(set(shown.values())) == 2
    finally:
        phone.close()


def test_a_phone_whose_clock_is_wrong_is_told_at_once(chromium_browser: Browser, site: HubServer) -> None:
    """The gate takes a code one step either side of its own clock: a phone two minutes ahead
    would show codes from the future, so the claim compares its clock with the hub's."""
    issued = bound_pass(site, site.admin())
    phone = chromium_browser.new_context(**PHONE)  # type: ignore[arg-type]
    try:
        page = phone.new_page()
        page.clock.install(time=time.time() + 120)
        page.goto(issued["claim_url"])
        wait_for_wallet(page)
        warning = page.locator("#clock-warning")
        expect(warning).to_contain_text(re.compile(r"clock is \d+ s ahead: the gate will refuse the code"))
        # 120 s, plus the time the answer took and the Date header's whole seconds
        ahead = int(re.findall(r"clock is (\d+) s", warning.text_content() or "")[0])
        assert 119 <= ahead <= 120 + WAIT_S
    finally:
        phone.close()
