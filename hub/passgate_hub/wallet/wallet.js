// The passgate wallet: claims a holder-bound pass for this phone, then shows its rotating code.
//
// The phone makes a P-256 key that never leaves it (WebCrypto, non-extractable, kept in IndexedDB)
// and sends only the public half with the one-time claim code; the hub answers with a pass that
// names that key. At the gate the phone shows a presentation: the pass plus the key's signature
// over the pass id and the current time step, so the code changes every step and a screenshot or
// a copy of the pass is refused as old. Everything after the claim works offline (see sw.js).
//
// The presentation's format is the contract in the SDK's `passgate.holder` (its Python twin):
//   "PG2:" + Base45( CBOR [pass COSE_Sign1 bytes, step, signature] )
// with the signature ECDSA P-256/SHA-256 (raw r||s, as WebCrypto returns it) over
//   "passgate-presentation-v1\0" || pass id (16 bytes) || step (8 bytes, big-endian).

import { drawQR, encodeQR } from "./qr.js";

export const BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
export const PASS_PREFIX = "PG1:";
export const PRESENTATION_PREFIX = "PG2:";
export const QUIET_MODULES = 8; // the standard's minimum is 4; a phone held under a scanner needs room
const CONTEXT = new TextEncoder().encode("passgate-presentation-v1\0");
const PASS_ID_SIZE = 16;
const CLAIM_CODE = /^[a-z2-7]{26}$/; // 16 random bytes in base32, lower case, no padding
const CLAIM_URL = "/v1/wallet/claim";
const DB_NAME = "passgate-wallet";
const STORE = "passes";
const CLOCK_WARNING_S = 30; // the gate accepts a code one step either side: a wrong clock fails

export class WalletError extends Error {}

// --- Encodings ---------------------------------------------------------------------------------------

/** Base45 (RFC 9285): two bytes become three characters of the QR alphanumeric alphabet. */
export function base45Encode(bytes) {
  let out = "";
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const n = bytes[i] * 256 + bytes[i + 1];
    const digits = [n % 45, Math.floor(n / 45) % 45, Math.floor(n / 2025)]; // least significant first
    out += digits.map((d) => BASE45_ALPHABET[d]).join("");
  }
  if (bytes.length % 2) {
    const n = bytes[bytes.length - 1];
    out += BASE45_ALPHABET[n % 45] + BASE45_ALPHABET[Math.floor(n / 45)];
  }
  return out;
}

/** Base45 text back to bytes; a character outside the alphabet or a value too large is an error. */
export function base45Decode(text) {
  const values = [...text].map((c) => BASE45_ALPHABET.indexOf(c));
  if (values.includes(-1)) throw new WalletError("not Base45: a character outside the alphabet");
  if (values.length % 3 === 1) throw new WalletError("not Base45: a single character left over");
  const out = [];
  for (let i = 0; i < values.length; i += 3) {
    if (i + 2 < values.length) {
      const n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025;
      if (n > 0xffff) throw new WalletError("not Base45: a triplet above 65535");
      out.push(n >> 8, n & 0xff);
    } else {
      const n = values[i] + values[i + 1] * 45;
      if (n > 0xff) throw new WalletError("not Base45: a final pair above 255");
      out.push(n);
    }
  }
  return Uint8Array.from(out);
}

/** A CBOR item head: major type and argument in the shortest form (canonical CBOR). */
function cborHead(major, n) {
  const type = major << 5;
  if (n < 24) return [type | n];
  if (n < 0x100) return [type | 24, n];
  if (n < 0x10000) return [type | 25, n >> 8, n & 0xff];
  if (n < 0x100000000) return [type | 26, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  const high = Math.floor(n / 0x100000000); // up to 2^53: bit operators work on 32 bits only
  const low = n >>> 0;
  return [type | 27, high >>> 24, (high >>> 16) & 0xff, (high >>> 8) & 0xff, high & 0xff,
    low >>> 24, (low >>> 16) & 0xff, (low >>> 8) & 0xff, low & 0xff];
}

/** The CBOR the presentation needs and nothing more: unsigned integers (up to 2^53), byte strings
 * and arrays, with definite lengths and shortest heads, as cbor2 writes them. */
export function cborEncode(value) {
  const out = [];
  const put = (item) => {
    if (item instanceof Uint8Array) {
      out.push(...cborHead(2, item.length));
      for (const b of item) out.push(b);
    } else if (Array.isArray(item)) {
      out.push(...cborHead(4, item.length));
      item.forEach(put);
    } else if (Number.isSafeInteger(item) && item >= 0) {
      out.push(...cborHead(0, item));
    } else {
      throw new WalletError(`CBOR: cannot encode ${typeof item}`);
    }
  };
  put(value);
  return Uint8Array.from(out);
}

export function hexToBytes(hex) {
  if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new WalletError("not hexadecimal");
  return Uint8Array.from(hex.match(/../g) || [], (pair) => parseInt(pair, 16));
}

// --- Passes and presentations -------------------------------------------------------------------------

/** The COSE_Sign1 bytes inside a PG1 text, inflated when the pass was zlib-compressed (its first
 * byte is then 0x78): the presentation carries the pass exactly as signed. */
export async function passCose(text) {
  const upper = String(text).trim().toUpperCase(); // Base45 has no lower case: upper-casing is lossless
  if (!upper.startsWith(PASS_PREFIX)) throw new WalletError("not a passgate pass");
  let data = base45Decode(upper.slice(PASS_PREFIX.length));
  if (data[0] === 0x78) {
    const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
    data = new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return data;
}

/** The bytes the holder signs: a fixed context (so the signature means nothing anywhere else), the
 * pass id and the time step as 8 bytes big-endian. */
export function presentationMessage(passId, step) {
  if (passId.length !== PASS_ID_SIZE) throw new WalletError("a pass id has 16 bytes");
  if (!Number.isSafeInteger(step) || step < 0) throw new WalletError("a step is a whole number >= 0");
  const out = new Uint8Array(CONTEXT.length + PASS_ID_SIZE + 8);
  out.set(CONTEXT);
  out.set(passId, CONTEXT.length);
  const view = new DataView(out.buffer, CONTEXT.length + PASS_ID_SIZE);
  view.setUint32(0, Math.floor(step / 0x100000000));
  view.setUint32(4, step >>> 0);
  return out;
}

/** The time step a moment falls in: floor(unix seconds / step seconds), as the gate computes it. */
export function stepAt(nowMs, stepSeconds) {
  return Math.floor(nowMs / 1000 / stepSeconds);
}

/** The PG2 text for one step: the pass's COSE bytes, the step, and the holder's signature. */
export async function makePresentation(cose, passId, step, privateKey) {
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey,
    presentationMessage(passId, step));
  return PRESENTATION_PREFIX + base45Encode(cborEncode([cose, step, new Uint8Array(signature)]));
}

// --- Storage: IndexedDB keeps the passes and their key pairs (a CryptoKey is stored as itself, so the
// non-extractable private key stays non-extractable and on this device) -------------------------------

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "pass_id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, act) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = act(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export const loadPasses = () => withStore("readonly", (store) => store.getAll());
const savePass = (record) => withStore("readwrite", (store) => store.put(record));

// --- Claiming ---------------------------------------------------------------------------------------

/** A claim code from what the holder typed or pasted (the code, or the whole claim link), or null. */
export function parseClaimCode(input) {
  let text = String(input).trim();
  const at = text.indexOf("#claim=");
  if (at >= 0) text = text.slice(at + "#claim=".length);
  text = text.replace(/[\s-]/g, "").toLowerCase();
  return CLAIM_CODE.test(text) ? text : null;
}

async function sha256Hex(text) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What the holder reads when the hub refuses a claim: what happened and what to do. */
function claimRefusal(status, body) {
  const code = body && typeof body.code === "string" ? body.code : "";
  const detail = body && typeof body.detail === "string" ? body.detail : "";
  const said = `(the server answered ${status}${code ? ": " + code : ""})`;
  if (status === 409 && (code === "claim_taken" || !code)) {
    return "This pass has already been added to another phone, and a pass can be added to one phone only. " +
      `If you changed phones, ask the box office to reset it. ${said}`;
  }
  if (status === 404) return `This claim code is not known. Check it, or ask the box office. ${said}`;
  if (status === 410 && code === "claim_revoked") return `This pass was cancelled by the venue. ${said}`;
  if (status === 410 && code === "claim_expired") return `This pass has expired. ${said}`;
  if (status === 422) return `The server did not accept this phone's key. Try another browser. ${said}`;
  if (status === 429) return `Too many tries from this network. Wait a minute, then try again. ${said}`;
  return `${detail || "The pass could not be added."} Ask the box office if this persists. ${said}`;
}

/** The hub's answer, checked before anything is stored: a pass that is not what the contract says
 * would only fail later, at the gate. */
async function checkedClaim(body) {
  const ok = body && typeof body.pass === "string" && typeof body.pass_id === "string"
    && /^[0-9a-f]{32}$/.test(body.pass_id) && Number.isInteger(body.step) && body.step >= 5 && body.step <= 300
    && Number.isFinite(body.valid_from) && Number.isFinite(body.valid_until);
  if (!ok) throw new WalletError("The server's answer was not a pass. Ask the box office.");
  const cose = await passCose(body.pass);
  const passId = hexToBytes(body.pass_id);
  // The pass id sits in the signed claims as a 16-byte CBOR byte string (0x50 then the bytes).
  const tagged = new Uint8Array([0x50, ...passId]);
  if (!cose.some((_, i) => tagged.every((b, k) => cose[i + k] === b))) {
    throw new WalletError("The server's pass does not carry its pass id. Ask the box office.");
  }
  return { cose, passId };
}

/** Claim a pass for this phone: a new key pair per pass (two passes on one phone are not linkable
 * by their key), only the public half sent. Returns the stored record and the clock's offset from
 * the server's (seconds, positive when this phone is ahead), or null when the server sent no date. */
export async function claim(code) {
  const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", keys.publicKey);
  let response;
  try {
    response = await fetch(CLAIM_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code, public_key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } }),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new WalletError("No connection to the server. Connect to the internet, then try again.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new WalletError(claimRefusal(response.status, body));
  const { cose } = await checkedClaim(body);
  const record = {
    pass_id: body.pass_id,
    pass: body.pass,
    cose,
    step: body.step,
    venue: typeof body.venue === "string" ? body.venue : "",
    valid_from: body.valid_from,
    valid_until: body.valid_until,
    keys,
    code_hash: await sha256Hex(code), // so opening the same link again on this phone just shows it
    claimed_at: Date.now() / 1000,
  };
  await savePass(record);
  const date = Date.parse(response.headers.get("Date") || "");
  const offset = Number.isNaN(date) ? null : (Date.now() - date) / 1000;
  return { record, offset };
}

// --- The page ----------------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function formatTime(epoch) {
  return new Date(epoch * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function passLabel(record) {
  return `${record.venue || "Pass"}: ${formatTime(record.valid_from)} to ${formatTime(record.valid_until)}`;
}

function showError(element, message) {
  element.textContent = message ? `Error: ${message}` : "";
  element.hidden = !message;
}

/** The pass view: redraws the code when the step turns and counts down to it. */
class CodeScreen {
  constructor() {
    this.record = null;
    this.step = null;
    this.qr = null;
    this.drawing = 0; // the newest redraw; an older one that finishes late is dropped
    this.wakeLock = null;
    setInterval(() => this.tick(), 250);
    window.addEventListener("resize", () => this.paint());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.record) {
        this.keepAwake();
        this.tick();
      }
    });
  }

  show(record) {
    this.record = record;
    this.step = null;
    $("screenshot-note").textContent =
      `This code changes every ${record.step} s; a screenshot will not work at the gate.`;
    const now = Date.now() / 1000;
    let info = passLabel(record);
    if (now > record.valid_until) info += ". This pass has expired.";
    else if (now < record.valid_from) info += ". Not valid yet.";
    $("pass-info").textContent = info;
    this.keepAwake();
    this.tick();
  }

  /** A screen wake lock where the browser has one: the code must stay lit while the holder queues. */
  async keepAwake() {
    if (!("wakeLock" in navigator) || this.wakeLock) return;
    try {
      this.wakeLock = await navigator.wakeLock.request("screen");
      this.wakeLock.addEventListener("release", () => {
        this.wakeLock = null;
      });
    } catch {
      this.wakeLock = null; // refused (battery saver, hidden page): the brightness hint remains
    }
  }

  tick() {
    const record = this.record;
    if (!record || $("pass-view").hidden) return;
    const now = Date.now();
    const step = stepAt(now, record.step);
    const left = Math.max(1, Math.ceil((step + 1) * record.step - now / 1000));
    $("countdown").textContent = `New code in ${left} s`;
    if (step !== this.step) this.redraw(record, step);
  }

  async redraw(record, step) {
    this.step = step;
    const drawing = ++this.drawing;
    try {
      const text = await makePresentation(record.cose, hexToBytes(record.pass_id), step, record.keys.privateKey);
      if (drawing !== this.drawing || record !== this.record) return;
      this.qr = encodeQR(text);
      this.paint();
      const canvas = $("code");
      canvas.dataset.step = String(step); // which code is on screen (tests wait for it to turn)
      canvas.dataset.pass = record.pass_id;
      const where = record.venue || "the gate";
      canvas.setAttribute("aria-label", `Your pass code for ${where}, changes every ${record.step} seconds`);
      showError($("pass-error"), "");
    } catch (error) {
      if (drawing === this.drawing) {
        this.step = null; // try again on the next tick
        showError($("pass-error"), `the code could not be made (${error.message || error}).`);
      }
    }
  }

  /** The code as large as the box allows, in whole device pixels per module, centred on whole pixels
   * (a blurred module edge costs the scanner). */
  paint() {
    if (!this.qr) return;
    const box = $("code-box");
    const canvas = $("code");
    const ratio = window.devicePixelRatio || 1;
    const modules = this.qr.size + 2 * QUIET_MODULES;
    const room = Math.min(box.clientWidth, box.clientHeight);
    const scale = Math.max(1, Math.floor((room * ratio) / modules));
    const side = drawQR(canvas, this.qr, { quiet: QUIET_MODULES, scale });
    const cssSide = side / ratio;
    canvas.style.width = canvas.style.height = `${cssSide}px`;
    canvas.style.left = `${Math.max(0, Math.floor((box.clientWidth - cssSide) / 2))}px`;
    canvas.style.top = `${Math.max(0, Math.floor((box.clientHeight - cssSide) / 2))}px`;
  }
}

class WalletPage {
  constructor() {
    this.passes = [];
    this.screen = new CodeScreen();
    $("claim-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.claimTyped();
    });
    $("add-button").addEventListener("click", () => this.showClaim(""));
    $("back-button").addEventListener("click", () => this.showPass(this.current()));
    $("pass-select").addEventListener("change", () => this.showPass(this.current()));
  }

  current() {
    return this.passes.find((p) => p.pass_id === $("pass-select").value) || this.passes[0];
  }

  async start() {
    registerServiceWorker();
    // A claim link opened while the page is open already (same document: no reload) is a claim too.
    window.addEventListener("hashchange", () => {
      if (location.hash.startsWith("#claim=")) this.open(takeClaimFromUrl());
    });
    await this.open(takeClaimFromUrl());
  }

  /** Show what the page was opened for: the claim in the link (`raw`, or null), else the passes. */
  async open(raw) {
    const linked = raw === null ? null : parseClaimCode(raw);
    if (raw !== null && !linked) {
      this.showClaim(raw);
      showError($("claim-error"), "the link's claim code is damaged: type the code from your ticket.");
      return;
    }
    if (!window.isSecureContext || !crypto.subtle) {
      this.showClaim(linked || "");
      showError($("claim-error"), "this page must be opened over https (the phone's key needs it).");
      return;
    }
    try {
      this.passes = await loadPasses();
    } catch {
      this.showClaim(linked || "");
      showError($("claim-error"), "this browser keeps no data for this page (a private window?). " +
        "Open the link in a normal window.");
      return;
    }
    this.passes.sort((a, b) => b.claimed_at - a.claimed_at);
    if (linked) {
      const hash = await sha256Hex(linked);
      const known = this.passes.find((p) => p.code_hash === hash);
      if (known) {
        this.showPass(known); // the same link opened again on the phone that has the pass
        return;
      }
      this.showClaim(linked);
      await this.claim(linked);
    } else if (this.passes.length) {
      this.showPass(this.passes[0]);
    } else {
      this.showClaim("");
    }
  }

  showClaim(code) {
    $("pass-view").hidden = true;
    $("claim-view").hidden = false;
    $("claim-code").value = code;
    $("back-button").hidden = this.passes.length === 0;
    $("claim-status").textContent = "";
    showError($("claim-error"), "");
  }

  showPass(record) {
    const picker = $("pass-picker");
    const select = $("pass-select");
    // short enough for a phone's width; the pass id's end tells two alike passes apart
    const label = (p) => `${p.venue || "Pass"}, until ${formatTime(p.valid_until)} (…${p.pass_id.slice(-4)})`;
    select.replaceChildren(...this.passes.map((p) => new Option(label(p), p.pass_id)));
    select.value = record.pass_id;
    picker.hidden = this.passes.length < 2;
    $("claim-view").hidden = true;
    $("pass-view").hidden = false;
    this.screen.show(record);
  }

  async claimTyped() {
    const code = parseClaimCode($("claim-code").value);
    if (!code) {
      showError($("claim-error"), "that is not a claim code: it has 26 letters and digits.");
      return;
    }
    await this.claim(code);
  }

  async claim(code) {
    const button = $("claim-button");
    button.disabled = true;
    showError($("claim-error"), "");
    $("claim-status").textContent = "Adding the pass to this phone…";
    try {
      const { record, offset } = await claim(code);
      this.passes = [record, ...this.passes.filter((p) => p.pass_id !== record.pass_id)];
      this.showPass(record);
      if (offset !== null && Math.abs(offset) > CLOCK_WARNING_S) {
        showError($("clock-warning"), `this phone's clock is ${Math.round(Math.abs(offset))} s ` +
          `${offset > 0 ? "ahead" : "behind"}: the gate will refuse the code. Set the clock to automatic.`);
      }
    } catch (error) {
      $("claim-status").textContent = "";
      showError($("claim-error"), error instanceof WalletError ? error.message : `${error.message || error}`);
    } finally {
      button.disabled = false;
    }
  }
}

/** The claim code from the link (/wallet#claim=CODE), taken out of the address at once: it is a
 * one-time secret and should not stay in the history or in a bookmark. */
function takeClaimFromUrl() {
  const match = /^#claim=(.*)$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  // Scope "/wallet" (not the default "/wallet/") so it also answers for the page at /wallet itself;
  // the hub allows it with the Service-Worker-Allowed header on sw.js.
  navigator.serviceWorker.register("/wallet/sw.js", { scope: "/wallet" }).catch((error) => {
    console.warn("passgate wallet: offline use is not available:", error);
  });
}

if (document.getElementById("wallet-app")) new WalletPage().start();
