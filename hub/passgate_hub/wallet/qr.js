// A QR code encoder (ISO/IEC 18004), written for the wallet page: no third-party code, no build.
//
// Only what the wallet needs: one segment in alphanumeric mode (PG2 texts are Base45 plus "PG2:",
// 5.5 bits a character) or byte mode (UTF-8, anything else), error correction level M (a phone
// screen under a gate's scanner glares; the SDK's printed passes use M too), versions 1 to 40, and
// the mask chosen by the standard's penalty rules. The result is a square of modules; `drawQR`
// paints it on a canvas with whole pixels per module, so no module is blurred across two pixels.

export const ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

export class QRError extends Error {}

// Level M for versions 1..40 (ISO/IEC 18004 table 9): error correction codewords per block, and
// the number of blocks. Index 0 is version 1.
const ECC_PER_BLOCK_M = [10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
  26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28];
const BLOCKS_M = [1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21,
  23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49];
const LEVEL_M_BITS = 0b00; // the format information's two level bits: L=01, M=00, Q=11, H=10

// --- Reed-Solomon over GF(256), the field QR uses (x^8 + x^4 + x^3 + x^2 + 1) -----------------
const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255]; // no modulo in multiply
}

function gfMul(a, b) {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
}

const generators = new Map(); // degree -> the generator polynomial, highest power first

/** (x - a^0)(x - a^1)...(x - a^(degree-1)): the code's generator, made once per degree. */
function generator(degree) {
  let poly = generators.get(degree);
  if (poly) return poly;
  poly = [1];
  for (let i = 0; i < degree; i++) {
    const next = new Array(poly.length + 1).fill(0);
    for (let j = 0; j < poly.length; j++) {
      next[j] ^= poly[j];
      next[j + 1] ^= gfMul(poly[j], EXP[i]);
    }
    poly = next;
  }
  generators.set(degree, poly);
  return poly;
}

/** The error correction codewords of one block: the remainder of data * x^degree / generator. */
export function reedSolomon(data, degree) {
  const gen = generator(degree);
  const rem = new Array(degree).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem.shift();
    rem.push(0);
    for (let j = 0; j < degree; j++) rem[j] ^= gfMul(gen[j + 1], factor);
  }
  return rem;
}

// --- Versions: sizes and capacities --------------------------------------------------------------

/** Modules that carry codewords (data and error correction) in a symbol of this version. */
function rawDataModules(version) {
  let modules = (16 * version + 128) * version + 64; // the whole square minus finders and timing
  if (version >= 2) {
    const align = Math.floor(version / 7) + 2;
    modules -= (25 * align - 10) * align - 55; // alignment patterns, less their overlap with timing
    if (version >= 7) modules -= 36; // two version information blocks
  }
  return modules;
}

/** How many data codewords a version holds at level M. */
export function dataCodewords(version) {
  const i = version - 1;
  return Math.floor(rawDataModules(version) / 8) - ECC_PER_BLOCK_M[i] * BLOCKS_M[i];
}

/** Centres of the alignment patterns along one axis: first at 6, last at size - 7, evenly spaced
 * (an even step) in between. */
function alignmentPositions(version) {
  if (version === 1) return [];
  const count = Math.floor(version / 7) + 2;
  const size = version * 4 + 17;
  const step = Math.floor((version * 8 + count * 3 + 5) / (count * 4 - 4)) * 2;
  const positions = [6];
  for (let pos = size - 7; positions.length < count; pos -= step) positions.splice(1, 0, pos);
  return positions;
}

// --- Data: one segment, mode and count, then pad ---------------------------------------------------

class BitBuffer {
  constructor() {
    this.bits = [];
  }

  put(value, length) {
    for (let i = length - 1; i >= 0; i--) this.bits.push((value >>> i) & 1);
  }
}

/** The single segment a text becomes: alphanumeric when every character allows it, else bytes. */
function makeSegment(text) {
  if ([...text].every((c) => ALPHANUMERIC.includes(c))) {
    return {
      mode: "alphanumeric",
      indicator: 0b0010,
      count: text.length,
      countBits: (v) => (v < 10 ? 9 : v < 27 ? 11 : 13),
      dataBits: 11 * Math.floor(text.length / 2) + 6 * (text.length % 2),
      write(buffer) {
        // Two characters make one 11-bit number (45 * first + second); an odd last one takes 6 bits.
        for (let i = 0; i + 1 < text.length; i += 2) {
          buffer.put(ALPHANUMERIC.indexOf(text[i]) * 45 + ALPHANUMERIC.indexOf(text[i + 1]), 11);
        }
        if (text.length % 2) buffer.put(ALPHANUMERIC.indexOf(text[text.length - 1]), 6);
      },
    };
  }
  const bytes = new TextEncoder().encode(text);
  return {
    mode: "byte",
    indicator: 0b0100,
    count: bytes.length,
    countBits: (v) => (v < 10 ? 8 : 16),
    dataBits: 8 * bytes.length,
    write(buffer) {
      for (const b of bytes) buffer.put(b, 8);
    },
  };
}

function segmentBits(segment, version) {
  return 4 + segment.countBits(version) + segment.dataBits;
}

/** The data codewords: mode, count, data, a terminator of up to 4 zero bits, zero bits to a byte
 * boundary, then the pad bytes 0xEC and 0x11 in turn up to the version's capacity. */
function dataCodewordsFor(segment, version) {
  const capacity = dataCodewords(version) * 8;
  const buffer = new BitBuffer();
  buffer.put(segment.indicator, 4);
  buffer.put(segment.count, segment.countBits(version));
  segment.write(buffer);
  buffer.put(0, Math.min(4, capacity - buffer.bits.length));
  buffer.put(0, (8 - (buffer.bits.length % 8)) % 8);
  for (let pad = 0xec; buffer.bits.length < capacity; pad ^= 0xec ^ 0x11) buffer.put(pad, 8);
  const bytes = new Uint8Array(buffer.bits.length / 8);
  buffer.bits.forEach((bit, i) => {
    bytes[i >>> 3] |= bit << (7 - (i & 7));
  });
  return bytes;
}

/** Split the data into the version's blocks, add each block's error correction, and interleave:
 * the first codeword of every block, then the second, ...; then the same for error correction. The
 * last blocks are one data codeword longer when the codewords do not divide evenly. */
function interleave(data, version) {
  const i = version - 1;
  const blocks = BLOCKS_M[i];
  const eccLength = ECC_PER_BLOCK_M[i];
  const total = Math.floor(rawDataModules(version) / 8);
  const shortBlocks = blocks - (total % blocks);
  const shortData = Math.floor(total / blocks) - eccLength;
  const dataBlocks = [];
  const eccBlocks = [];
  for (let b = 0, at = 0; b < blocks; b++) {
    const length = shortData + (b < shortBlocks ? 0 : 1);
    const block = data.subarray(at, at + length);
    at += length;
    dataBlocks.push(block);
    eccBlocks.push(reedSolomon(block, eccLength));
  }
  const result = [];
  for (let k = 0; k <= shortData; k++) {
    for (const block of dataBlocks) if (k < block.length) result.push(block[k]);
  }
  for (let k = 0; k < eccLength; k++) {
    for (const block of eccBlocks) result.push(block[k]);
  }
  return result;
}

// --- The matrix ------------------------------------------------------------------------------------

class Matrix {
  constructor(version) {
    this.version = version;
    this.size = version * 4 + 17;
    this.dark = new Uint8Array(this.size * this.size);
    this.reserved = new Uint8Array(this.size * this.size); // function patterns: never data or mask
  }

  get(x, y) {
    return this.dark[y * this.size + x];
  }

  setFunction(x, y, dark) {
    this.dark[y * this.size + x] = dark ? 1 : 0;
    this.reserved[y * this.size + x] = 1;
  }

  drawFunctionPatterns() {
    const size = this.size;
    for (let i = 0; i < size; i++) {
      this.setFunction(6, i, i % 2 === 0); // timing patterns; finders and alignment overwrite the ends
      this.setFunction(i, 6, i % 2 === 0);
    }
    this.drawFinder(3, 3);
    this.drawFinder(size - 4, 3);
    this.drawFinder(3, size - 4);
    const centres = alignmentPositions(this.version);
    const last = centres.length - 1;
    centres.forEach((cx, i) => {
      centres.forEach((cy, j) => {
        // none where a finder sits (three corners)
        if ((i === 0 && j === 0) || (i === 0 && j === last) || (i === last && j === 0)) return;
        this.drawAlignment(cx, cy);
      });
    });
    this.drawFormat(0); // reserve the format areas now; the real bits come once the mask is chosen
    this.drawVersion();
  }

  /** A 7x7 finder with its light separator ring (clipped at the symbol's edge). */
  drawFinder(cx, cy) {
    for (let dy = -4; dy <= 4; dy++) {
      for (let dx = -4; dx <= 4; dx++) {
        const x = cx + dx;
        const y = cy + dy;
        if (x < 0 || y < 0 || x >= this.size || y >= this.size) continue;
        const ring = Math.max(Math.abs(dx), Math.abs(dy));
        this.setFunction(x, y, ring !== 2 && ring !== 4);
      }
    }
  }

  drawAlignment(cx, cy) {
    for (let dy = -2; dy <= 2; dy++) {
      for (let dx = -2; dx <= 2; dx++) {
        this.setFunction(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
      }
    }
  }

  /** The 15 format bits (level and mask, BCH(15,5) protected, XOR 0x5412 so they are never all
   * light), twice: around the top-left finder, and split between the other two. */
  drawFormat(mask) {
    const data = (LEVEL_M_BITS << 3) | mask;
    let rem = data;
    for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
    const bits = ((data << 10) | rem) ^ 0x5412;
    const bit = (i) => (bits >>> i) & 1;
    const size = this.size;
    for (let i = 0; i <= 5; i++) this.setFunction(8, i, bit(i));
    this.setFunction(8, 7, bit(6));
    this.setFunction(8, 8, bit(7));
    this.setFunction(7, 8, bit(8));
    for (let i = 9; i < 15; i++) this.setFunction(14 - i, 8, bit(i));
    for (let i = 0; i < 8; i++) this.setFunction(size - 1 - i, 8, bit(i));
    for (let i = 8; i < 15; i++) this.setFunction(8, size - 15 + i, bit(i));
    this.setFunction(8, size - 8, 1); // the dark module, always dark
  }

  /** Versions 7 and up: 6 version bits with a BCH(18,6) remainder, beside two finders. */
  drawVersion() {
    if (this.version < 7) return;
    let rem = this.version;
    for (let i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
    const bits = (this.version << 12) | rem;
    for (let i = 0; i < 18; i++) {
      const dark = (bits >>> i) & 1;
      const a = this.size - 11 + (i % 3);
      const b = Math.floor(i / 3);
      this.setFunction(a, b, dark);
      this.setFunction(b, a, dark);
    }
  }

  /** Codeword bits in the standard's zigzag: two-module columns from the right, up then down,
   * skipping the vertical timing column and every function module. */
  drawCodewords(codewords) {
    const size = this.size;
    const total = codewords.length * 8;
    let i = 0;
    for (let right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      const upward = ((right + 1) & 2) === 0;
      for (let vert = 0; vert < size; vert++) {
        const y = upward ? size - 1 - vert : vert;
        for (let j = 0; j < 2; j++) {
          const x = right - j;
          if (this.reserved[y * size + x]) continue;
          // Remainder bits past the last codeword stay light (0).
          if (i < total) this.dark[y * size + x] = (codewords[i >>> 3] >>> (7 - (i & 7))) & 1;
          i++;
        }
      }
    }
  }

  /** XOR a mask pattern over the data modules (applying it twice removes it). */
  applyMask(mask) {
    const test = MASKS[mask];
    for (let y = 0; y < this.size; y++) {
      for (let x = 0; x < this.size; x++) {
        if (!this.reserved[y * this.size + x] && test(x, y)) this.dark[y * this.size + x] ^= 1;
      }
    }
  }
}

// The eight mask patterns: a data module is flipped where its pattern is true (x column, y row).
const MASKS = [
  (x, y) => (x + y) % 2 === 0,
  (x, y) => y % 2 === 0,
  (x) => x % 3 === 0,
  (x, y) => (x + y) % 3 === 0,
  (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
  (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
  (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
  (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
];

/** The standard's penalty (ISO/IEC 18004 7.8.3): runs of 5+ alike in a row or column (3 + the
 * excess), 2x2 blocks alike (3 each), finder-like 1:1:3:1:1 patterns with 4 light modules on
 * either side, the outside counting as light (40 each), and 10 per full 5% the dark share is off
 * 50%. The mask with the lowest total is used: it keeps the code easy to find and to read. */
export function penalty(dark, size) {
  let score = 0;
  const at = (x, y) => dark[y * size + x];
  for (let pass = 0; pass < 2; pass++) {
    // pass 0 reads rows, pass 1 reads columns
    const line = pass === 0 ? (i, j) => at(j, i) : (i, j) => at(i, j);
    for (let i = 0; i < size; i++) {
      let run = 1;
      for (let j = 1; j <= size; j++) {
        if (j < size && line(i, j) === line(i, j - 1)) {
          run++;
        } else {
          if (run >= 5) score += run - 2;
          run = 1;
        }
      }
      for (let j = 0; j + 7 <= size; j++) {
        if (!FINDER_LIKE.every((v, k) => line(i, j + k) === v)) continue;
        const light = (from, to) => {
          for (let k = Math.max(from, 0); k < Math.min(to, size); k++) if (line(i, k)) return false;
          return true;
        };
        if (light(j - 4, j) || light(j + 7, j + 11)) score += 40;
      }
    }
  }
  let darkCount = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      darkCount += at(x, y);
      if (x && y && at(x, y) === at(x - 1, y) && at(x, y) === at(x, y - 1) && at(x, y) === at(x - 1, y - 1)) {
        score += 3;
      }
    }
  }
  score += 10 * Math.floor(Math.abs((darkCount * 100) / (size * size) - 50) / 5);
  return score;
}

const FINDER_LIKE = [1, 0, 1, 1, 1, 0, 1];

/**
 * Encode `text` as a QR code at level M.
 *
 * Options: `version` (exactly this one; else the smallest that holds the text, from `minVersion`),
 * `mask` (0..7; else the one with the lowest penalty). Returns `{version, size, mask, mode,
 * modules}` where `modules` is a Uint8Array of size*size, row by row, 1 = dark.
 */
export function encodeQR(text, { version = null, minVersion = 1, mask = null } = {}) {
  if (typeof text !== "string") throw new QRError("a QR code's text must be a string");
  if (mask !== null && !(Number.isInteger(mask) && mask >= 0 && mask <= 7)) {
    throw new QRError(`mask ${mask} is not 0..7`);
  }
  const segment = makeSegment(text);
  const fits = (v) => segmentBits(segment, v) <= dataCodewords(v) * 8;
  let chosen = null;
  if (version !== null) {
    if (!(Number.isInteger(version) && version >= 1 && version <= 40)) {
      throw new QRError(`version ${version} is not 1..40`);
    }
    if (!fits(version)) throw new QRError(`the text does not fit in version ${version} at level M`);
    chosen = version;
  } else {
    for (let v = Math.max(1, minVersion); v <= 40 && chosen === null; v++) if (fits(v)) chosen = v;
    if (chosen === null) throw new QRError("the text is too long for a QR code at level M");
  }
  const matrix = new Matrix(chosen);
  matrix.drawFunctionPatterns();
  matrix.drawCodewords(interleave(dataCodewordsFor(segment, chosen), chosen));
  let best = mask;
  if (best === null) {
    let lowest = Infinity;
    for (let m = 0; m < 8; m++) {
      matrix.applyMask(m);
      matrix.drawFormat(m);
      const score = penalty(matrix.dark, matrix.size);
      if (score < lowest) {
        lowest = score;
        best = m;
      }
      matrix.applyMask(m); // undo
    }
  }
  matrix.applyMask(best);
  matrix.drawFormat(best);
  return { version: chosen, size: matrix.size, mask: best, mode: segment.mode, modules: matrix.dark };
}

/**
 * Paint a code on a canvas: black modules on white, `quiet` light modules around it (the standard
 * asks for 4; phones under a scanner's glare read better with more), `scale` device pixels a
 * module. Whole pixels only, and no smoothing, so every module edge is sharp.
 */
export function drawQR(canvas, qr, { quiet = 8, scale = 4 } = {}) {
  const side = (qr.size + 2 * quiet) * scale;
  canvas.width = side;
  canvas.height = side;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, side, side);
  ctx.fillStyle = "#000";
  for (let y = 0; y < qr.size; y++) {
    for (let x = 0; x < qr.size; x++) {
      if (qr.modules[y * qr.size + x]) ctx.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
    }
  }
  return side;
}
