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
  // One shared global regex: countTokens is synchronous, so no other call can move lastIndex meanwhile.
  const pattern = CL100K_PIECE;
  pattern.lastIndex = 0;
  let total = 0;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    const piece = match[0];
    let count = pieceCounts.get(piece);
    if (count === undefined) {
      if (piece.length <= MAX_CACHED_PIECE_LENGTH) {
        count = encode(tiktoken, piece);
        if (pieceCounts.size >= MAX_CACHED_PIECES) pieceCounts.clear();
        pieceCounts.set(piece, count);
      } else if (piece.length <= MAX_ENCODED_PIECE_LENGTH) {
        count = encode(tiktoken, piece);
      } else {
        count = countLongPiece(tiktoken, piece);
      }
    }
    total += count;
  }
  return total;
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
