import { createRequire } from 'node:module';
import type { Tiktoken } from 'tiktoken/lite';

/**
 * Token counting for workload estimates, exact to tiktoken's cl100k_base (the encoder ships inside
 * the package: nothing is downloaded).
 *
 * tiktoken splits text with a regular expression and byte-pair-encodes each piece on its own, so a
 * text's count is the sum of its pieces' counts. We split in JavaScript with the same pattern and
 * remember each piece's count: ordinary prose repeats its pieces (words with their leading space),
 * so most pieces cost a Map lookup instead of a call into WebAssembly. Pieces never seen before are
 * counted by tiktoken itself. Tests compare the result with tiktoken's on large, varied corpora.
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
 * never pays the ~50 MB the encoder takes.
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

/** Number of cl100k_base tokens in `text`, as tiktoken's `encode_ordinary` counts them. */
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
      count = tiktoken.encode_ordinary(piece).length;
      if (piece.length <= MAX_CACHED_PIECE_LENGTH) {
        if (pieceCounts.size >= MAX_CACHED_PIECES) pieceCounts.clear();
        pieceCounts.set(piece, count);
      }
    }
    total += count;
  }
  return total;
}

/** tiktoken's own count of the whole text, without the piece cache: the reference for tests. */
export function countTokensWithTiktoken(text: string): number {
  const tiktoken = (encoder ??= loadEncoder());
  return tiktoken.encode_ordinary(text).length;
}
