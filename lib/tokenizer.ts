import { get_encoding, type Tiktoken } from 'tiktoken';

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

/** Builds the encoder now, so the first request does not pay for it (tens of milliseconds). */
export function warmTokenizer(): void {
  encoder ??= get_encoding('cl100k_base');
}

/** Number of cl100k_base tokens in `text`, as tiktoken's `encode_ordinary` counts them. */
export function countTokens(text: string): number {
  const tiktoken = (encoder ??= get_encoding('cl100k_base'));
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
  const tiktoken = (encoder ??= get_encoding('cl100k_base'));
  return tiktoken.encode_ordinary(text).length;
}
