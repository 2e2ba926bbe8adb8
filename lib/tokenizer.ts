import { createRequire } from 'node:module';
import type { Tiktoken } from 'tiktoken/lite';
import { countOffThread } from './tokenizer-pool.ts';

/**
 * Token counting for workload estimates, exact to tiktoken's cl100k_base on ordinary text (the
 * encoder ships inside the package: nothing is downloaded).
 *
 * tiktoken splits text with a regular expression and byte-pair-encodes each piece on its own, so a
 * text's count is the sum of its pieces' counts. We split in JavaScript with the same pattern and
 * remember each piece's count: ordinary prose repeats its pieces (words with their leading space),
 * so most pieces cost a Map lookup instead of a call into WebAssembly. Pieces never seen before are
 * counted by tiktoken itself. Tests compare the result with tiktoken's on large, varied corpora.
 * Text of ASCII only (most prompts) takes a faster way to the same pieces: a hand-written scanner
 * instead of the Unicode regular expression, and piece caches probed in place, which allocate
 * nothing for a piece seen before (the regex path allocated a match and a string per piece): pieces
 * of up to 8 characters are keyed by their packed code units, longer ones by a hash.
 *
 * Linear in the input. tiktoken's byte-pair merge is quadratic in the length of one piece (100,000 ×
 * `a` is one piece and costs it 7 s of CPU), so a piece longer than MAX_ENCODED_PIECE_LENGTH is
 * counted as consecutive chunks of at most that length, and the counts are summed. This is the one
 * approximation: BPE never merges across a chunk's edge, so a pathological piece (a run of letters,
 * symbols or whitespace with no word break in 256 characters: `aaaa…`, `éééé…`, a long rule of `=`)
 * may count more tokens than tiktoken does: from 0 to +1 per chunk edge in our measurements (random
 * letters, symbols, blanks, CJK, emoji; test/unit/tokenizer-linear.test.ts holds the tolerance), and
 * none for runs of one ASCII letter or of spaces, whose tokens tile a 256-character chunk exactly.
 * Ordinary text has no such piece (words, numbers of up to three digits and punctuation runs are
 * short; CJK text breaks at its punctuation), so its count is tiktoken's exactly.
 *
 * Large texts can be counted off the main thread with `countTokensAsync` (lib/tokenizer-pool.ts).
 */

/**
 * cl100k_base's pattern, in JavaScript's dialect: `(?i:...)` spelled out (Unicode case folding maps
 * ſ to s), and `\s`/`\S` as the Unicode White_Space property, which is what the Rust regex crate
 * means by them (JavaScript's `\s` also matches U+FEFF).
 */
const CL100K_PIECE =
  /'(?:[sSſ]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\p{White_Space}\p{L}\p{N}]+[\r\n]*|\p{White_Space}*[\r\n]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/** Pieces remembered; the cache starts afresh when full, which keeps memory bounded and lookups O(1). */
const MAX_CACHED_PIECES = 100_000;
/** Longer pieces (rare: long digit-free runs of symbols or whitespace) are not worth remembering. */
const MAX_CACHED_PIECE_LENGTH = 64;
/**
 * The longest text handed to tiktoken at once, in UTF-16 code units: longer pieces are counted in
 * chunks of this length (see the top of this file). 256 bounds the quadratic merge to well under a
 * millisecond a chunk (CJK, 3 bytes a character, is the dearest), is a multiple of the lengths of
 * cl100k's tokens for runs of one letter (8) and of spaces (128), and is far above any piece of
 * ordinary text.
 */
export const MAX_ENCODED_PIECE_LENGTH = 256;

let encoder: Tiktoken | undefined;
const pieceCounts = new Map<string, number>();
const require = createRequire(import.meta.url);

interface Cl100kRanks {
  readonly bpe_ranks: string;
  readonly special_tokens: Record<string, number>;
  readonly pat_str: string;
}

/**
 * tiktoken's "lite" build with only cl100k_base's ranks: its WebAssembly is a fifth of the full
 * build's, which embeds every encoding. Loaded on first use, so a worker that never counts tokens
 * never pays the ~50 MB the encoder takes: nothing else in lib/ loads it.
 */
function loadEncoder(): Tiktoken {
  const { Tiktoken: Encoder } = require('tiktoken/lite') as {
    Tiktoken: new (ranks: string, special: Record<string, number>, pattern: string) => Tiktoken;
  };
  const ranksFile = require.resolve('tiktoken/encoders/cl100k_base.json');
  const ranks = require(ranksFile) as Cl100kRanks;
  const built = new Encoder(ranks.bpe_ranks, ranks.special_tokens, ranks.pat_str);
  // The encoder holds its own copy of the ranks; let the JSON go.
  Reflect.deleteProperty(require.cache, ranksFile);
  return built;
}

/** Builds the encoder now, so the first request does not pay for it (tens of milliseconds). */
export function warmTokenizer(): void {
  encoder ??= loadEncoder();
}

/** What reached tiktoken since the last reset: the test hook that proves counting is linear. */
export interface EncoderStats {
  /** Calls into tiktoken's `encode_ordinary`. */
  readonly calls: number;
  /** The longest text (UTF-16 code units) one call was given. */
  readonly longestInput: number;
}

let encoderCalls = 0;
let longestEncoderInput = 0;

/** For tests: the calls into tiktoken made by `countTokens` since `resetEncoderStats()`. */
export function readEncoderStats(): EncoderStats {
  return { calls: encoderCalls, longestInput: longestEncoderInput };
}

export function resetEncoderStats(): void {
  encoderCalls = 0;
  longestEncoderInput = 0;
}

function encode(tiktoken: Tiktoken, text: string): number {
  encoderCalls += 1;
  if (text.length > longestEncoderInput) longestEncoderInput = text.length;
  return tiktoken.encode_ordinary(text).length;
}

/**
 * A piece longer than MAX_ENCODED_PIECE_LENGTH, counted chunk by chunk: linear in its length. A chunk
 * never ends between the two halves of a surrogate pair (tiktoken would see two lone surrogates).
 * A chunk equal to the previous one (a run of one character) reuses its count.
 */
function countLongPiece(tiktoken: Tiktoken, piece: string): number {
  let total = 0;
  let previous = '';
  let previousCount = 0;
  for (let start = 0; start < piece.length;) {
    let end = Math.min(start + MAX_ENCODED_PIECE_LENGTH, piece.length);
    if (end < piece.length && isSurrogatePairAt(piece, end - 1)) end -= 1;
    const chunk = piece.slice(start, end);
    if (chunk !== previous) {
      previous = chunk;
      previousCount = encode(tiktoken, chunk);
    }
    total += previousCount;
    start = end;
  }
  return total;
}

function isSurrogatePairAt(text: string, index: number): boolean {
  const high = text.charCodeAt(index);
  const low = text.charCodeAt(index + 1);
  return high >= 0xd800 && high <= 0xdbff && low >= 0xdc00 && low <= 0xdfff;
}

/**
 * Number of cl100k_base tokens in `text`, as tiktoken's `encode_ordinary` counts them (see the top
 * of this file for the one approximation, on pieces longer than 256 characters). Linear in the
 * text's length; it runs on the calling thread: use `countTokensAsync` for large texts on a server.
 */
export function countTokens(text: string): number {
  const tiktoken = (encoder ??= loadEncoder());
  const asciiTotal = countAsciiTokens(tiktoken, text);
  if (asciiTotal >= 0) return asciiTotal;
  // One shared global regex: countTokens is synchronous, so no other call can move lastIndex meanwhile.
  const pattern = CL100K_PIECE;
  pattern.lastIndex = 0;
  let total = 0;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    total += countPiece(tiktoken, match[0]);
  }
  return total;
}

function countPiece(tiktoken: Tiktoken, piece: string): number {
  let count = pieceCounts.get(piece);
  if (count !== undefined) return count;
  if (piece.length <= MAX_CACHED_PIECE_LENGTH) {
    count = encode(tiktoken, piece);
    if (pieceCounts.size >= MAX_CACHED_PIECES) pieceCounts.clear();
    pieceCounts.set(piece, count);
    return count;
  }
  return piece.length <= MAX_ENCODED_PIECE_LENGTH
    ? encode(tiktoken, piece)
    : countLongPiece(tiktoken, piece);
}

// Character classes of ASCII code units, as CL100K_PIECE sees them.
const OTHER = 0;
const LETTER = 1;
const DIGIT = 2;
/** White_Space other than CR and LF: tab, VT, FF, space. */
const BLANK = 3;
const NEWLINE = 4;
const ASCII_CLASS = new Uint8Array(128);
for (let code = 0; code < 128; code++) {
  const char = String.fromCharCode(code);
  if (/[A-Za-z]/.test(char)) ASCII_CLASS[code] = LETTER;
  else if (/[0-9]/.test(char)) ASCII_CLASS[code] = DIGIT;
  else if (char === '\r' || char === '\n') ASCII_CLASS[code] = NEWLINE;
  else if (/[\t\v\f ]/.test(char)) ASCII_CLASS[code] = BLANK;
}

/**
 * The class of the code unit at `index`: -1 past the end or for non-ASCII. The end is tested rather
 * than left to charCodeAt's NaN, which sent every scan through floating-point code (~25% slower).
 */
function classAt(text: string, index: number): number {
  if (index >= text.length) return -1;
  const code = text.charCodeAt(index);
  return code < 128 ? (ASCII_CLASS[code] as number) : -1;
}

/**
 * `countTokens` for a text of ASCII only, without the Unicode regular expression: a hand-written
 * scanner that cuts exactly the pieces CL100K_PIECE cuts (test/unit/tokenizer-ascii.test.ts
 * compares the two), several times faster. Returns -1 at the first non-ASCII code unit, for the
 * caller to count the text the general way.
 */
function countAsciiTokens(tiktoken: Tiktoken, text: string): number {
  const length = text.length;
  let total = 0;
  for (let start = 0; start < length;) {
    const end = asciiPieceEnd(text, start);
    if (end < 0) return -1;
    total += countAsciiPiece(tiktoken, text, start, end);
    start = end;
  }
  return total;
}

/** For tests: the pieces the ASCII scanner cuts `text` into; undefined if it holds non-ASCII. */
export function splitAsciiPieces(text: string): string[] | undefined {
  const pieces: string[] = [];
  for (let start = 0; start < text.length;) {
    const end = asciiPieceEnd(text, start);
    if (end < 0) return undefined;
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}

/** For tests: the pieces CL100K_PIECE cuts `text` into (the reference for the ASCII scanner). */
export function splitPieces(text: string): string[] {
  return Array.from(text.matchAll(CL100K_PIECE), (match) => match[0]);
}

/**
 * The ASCII path's own piece cache: an open-addressing table probed with a hash of the piece's code
 * units, compared in place with `startsWith`, so a piece seen before costs no string allocation and
 * no string hashing (which is most of what the Map costs).
 */
const ASCII_TABLE_SIZE = 1 << 18; // twice MAX_CACHED_PIECES: probes stay short
const asciiPieces: (string | undefined)[] = new Array<string | undefined>(ASCII_TABLE_SIZE);
const asciiCounts = new Int32Array(ASCII_TABLE_SIZE);
let asciiPiecesHeld = 0;

/**
 * Pieces of up to 8 characters (most words with their leading space) are keyed by their code units
 * packed 7 bits each into two int32s, the length in the first's top bits: the key is the piece, so a
 * hit is two integer compares in one cache line, with no string to reach.
 */
/** 8 code units of 7 bits fill two int32s, less the 4 bits of the length. */
const MAX_SHORT_PIECE_LENGTH = 8;
const SHORT_TABLE_BITS = 17;
const SHORT_TABLE_SIZE = 1 << SHORT_TABLE_BITS;
const MAX_SHORT_PIECES = SHORT_TABLE_SIZE >>> 1;
/** Per slot: low key, high key, count + 1 (0: empty), padding to 16 bytes. */
const shortTable = new Int32Array(SHORT_TABLE_SIZE * 4);
let shortPiecesHeld = 0;

function countShortPiece(tiktoken: Tiktoken, text: string, start: number, end: number): number {
  const length = end - start;
  let low = length << 28;
  let high = 0;
  const middle = start + (length < 4 ? length : 4);
  for (let index = start, shift = 0; index < middle; index++, shift += 7) {
    low |= text.charCodeAt(index) << shift;
  }
  for (let index = middle, shift = 0; index < end; index++, shift += 7) {
    high |= text.charCodeAt(index) << shift;
  }
  let slot = Math.imul(low ^ Math.imul(high, 0x9e3779b1), 0x85ebca6b) >>> (32 - SHORT_TABLE_BITS);
  for (;;) {
    const base = slot << 2;
    const held = shortTable[base + 2] as number;
    if (held === 0) break;
    if (shortTable[base] === low && shortTable[base + 1] === high) return held - 1;
    slot = (slot + 1) & (SHORT_TABLE_SIZE - 1);
  }
  const count = countPiece(tiktoken, text.slice(start, end));
  if (shortPiecesHeld >= MAX_SHORT_PIECES) {
    shortTable.fill(0);
    shortPiecesHeld = 0;
    return count;
  }
  const base = slot << 2;
  shortTable[base] = low;
  shortTable[base + 1] = high;
  shortTable[base + 2] = count + 1;
  shortPiecesHeld += 1;
  return count;
}

function countAsciiPiece(tiktoken: Tiktoken, text: string, start: number, end: number): number {
  const length = end - start;
  if (length <= MAX_SHORT_PIECE_LENGTH) return countShortPiece(tiktoken, text, start, end);
  if (length > MAX_CACHED_PIECE_LENGTH) return countPiece(tiktoken, text.slice(start, end));
  let hash = 0x811c9dc5;
  for (let index = start; index < end; index++) {
    hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193);
  }
  let slot = (hash >>> 0) & (ASCII_TABLE_SIZE - 1);
  for (let held = asciiPieces[slot]; held !== undefined; held = asciiPieces[slot]) {
    if (held.length === length && text.startsWith(held, start)) return asciiCounts[slot] as number;
    slot = (slot + 1) & (ASCII_TABLE_SIZE - 1);
  }
  const piece = text.slice(start, end);
  const count = countPiece(tiktoken, piece);
  if (asciiPiecesHeld >= MAX_CACHED_PIECES) {
    asciiPieces.fill(undefined);
    asciiPiecesHeld = 0;
    return count;
  }
  asciiPieces[slot] = piece;
  asciiCounts[slot] = count;
  asciiPiecesHeld += 1;
  return count;
}

/**
 * Where the piece of CL100K_PIECE starting at `start` ends, taking its alternatives in order; -1 if
 * the decision depends on a non-ASCII code unit.
 */
function asciiPieceEnd(text: string, start: number): number {
  const first = classAt(text, start);
  if (first < 0) return -1;
  // '(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]) — the contractions.
  if (text.charCodeAt(start) === 0x27) {
    const contraction = contractionLength(text, start + 1);
    if (contraction > 0) return start + 1 + contraction;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (first === LETTER) return runEnd(text, start + 1, LETTER);
  if (first !== DIGIT && first !== NEWLINE) {
    const next = classAt(text, start + 1);
    if (next === LETTER) return runEnd(text, start + 2, LETTER);
  }
  // \p{N}{1,3}
  if (first === DIGIT) {
    if (classAt(text, start + 1) !== DIGIT) return start + 1;
    return classAt(text, start + 2) === DIGIT ? start + 3 : start + 2;
  }
  // ' ?[^\p{White_Space}\p{L}\p{N}]+[\r\n]*'
  const symbolsFrom = text.charCodeAt(start) === 0x20 ? start + 1 : start;
  if (classAt(text, symbolsFrom) === OTHER) {
    return runEnd(text, runEnd(text, symbolsFrom + 1, OTHER), NEWLINE);
  }
  return whitespacePieceEnd(text, start, first);
}

/**
 * The three whitespace alternatives, for a piece starting with White_Space: up to the last CR or LF
 * of the run; else the run less its last character when something other than White_Space follows
 * it; else the whole run.
 */
function whitespacePieceEnd(text: string, start: number, first: number): number {
  if (first === OTHER) return -1; // unreachable: OTHER always matches the symbols alternative
  let end = start;
  let afterLastNewline = -1;
  for (;;) {
    const kind = classAt(text, end);
    if (kind === NEWLINE) afterLastNewline = end + 1;
    else if (kind !== BLANK) {
      if (kind < 0 && end < text.length) return -1;
      break;
    }
    end += 1;
  }
  if (afterLastNewline > 0) return afterLastNewline; // \p{White_Space}*[\r\n]+
  // \p{White_Space}+(?!\P{White_Space}), then \p{White_Space}+
  return end < text.length && end - start > 1 ? end - 1 : end;
}

/** The first index at or after `from` whose class is not `kind`. */
function runEnd(text: string, from: number, kind: number): number {
  let end = from;
  while (classAt(text, end) === kind) end += 1;
  return end;
}

/** Length of the contraction suffix at `index` (after an apostrophe), 0 if none. */
function contractionLength(text: string, index: number): number {
  const one = text.charCodeAt(index) | 0x20; // lower case for letters
  const two = text.charCodeAt(index + 1) | 0x20;
  if (one === 0x73 || one === 0x74 || one === 0x6d || one === 0x64) return 1; // s t m d
  if ((one === 0x72 || one === 0x76) && two === 0x65) return 2; // re ve
  if (one === 0x6c && two === 0x6c) return 2; // ll
  return 0;
}

/**
 * Texts at least this long (UTF-16 code units: 8 KiB of ASCII, about 1,300 words) are counted by
 * `countTokensAsync` on a worker thread. Shorter ones are counted on the calling thread, where they
 * cost under half a millisecond of CPU when their words are common, and about 5 ms at worst, when
 * no piece is cached (distinct made-up words, a run of CJK with no punctuation; measured on 2 cores).
 * Handing a text to a thread costs about 0.2 ms of latency, so the short, common case stays here.
 */
export const OFF_THREAD_MIN_LENGTH = 8_192;

/**
 * `countTokens`, without blocking the event loop on large texts: a text of OFF_THREAD_MIN_LENGTH
 * characters or more is counted on a worker thread (lib/tokenizer-pool.ts: at most two threads,
 * started on first use, never keeping the process alive); a shorter one is counted at once on this
 * thread. Same counts as `countTokens`. Rejects if the worker thread fails.
 */
export function countTokensAsync(text: string): Promise<number> {
  if (text.length < OFF_THREAD_MIN_LENGTH) {
    try {
      return Promise.resolve(countTokens(text));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }
  return countOffThread(text);
}

/**
 * tiktoken's own count of the whole text, without the piece cache or the chunking: the reference for
 * tests. Quadratic in the length of a piece: never give it a client's text.
 */
export function countTokensWithTiktoken(text: string): number {
  const tiktoken = (encoder ??= loadEncoder());
  return tiktoken.encode_ordinary(text).length;
}
