/**
 * Realistic traffic for the bench: a pool of distinct prompts of 30 to 300 common words, written
 * once to a file that wrk's Lua script (bench/wrk.ts poolScript) and the engine walk through, so
 * no two requests of a run carry the same body; and the pathological prompts of the stall test.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { randomPrompt } from '../lib/index.ts';

export interface PromptPool {
  /** One JSON string literal per line (the prompt, JSON-encoded). */
  readonly file: string;
  readonly prompts: readonly string[];
  readonly meanWords: number;
  readonly meanBytes: number;
}

export const MIN_WORDS = 30;
export const MAX_WORDS = 300;

/** `count` distinct prompts of MIN_WORDS..MAX_WORDS words (uniform), written to `file`. */
export async function writePromptPool(count: number, file: string): Promise<PromptPool> {
  const seen = new Set<string>();
  const prompts: string[] = [];
  let words = 0;
  let bytes = 0;
  // Bounded: a repeat among 30+ random words of a few hundred is all but impossible.
  for (let attempts = 0; prompts.length < count && attempts < count * 2; attempts++) {
    const n = MIN_WORDS + Math.floor(Math.random() * (MAX_WORDS - MIN_WORDS + 1));
    const prompt = randomPrompt(n);
    if (seen.has(prompt)) continue;
    seen.add(prompt);
    prompts.push(prompt);
    words += n;
    bytes += Buffer.byteLength(prompt);
  }
  const out = createWriteStream(file);
  for (const prompt of prompts) {
    if (!out.write(`${JSON.stringify(prompt)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return { file, prompts, meanWords: words / prompts.length, meanBytes: bytes / prompts.length };
}

/** A small deterministic PRNG (mulberry32), so a stall prompt is the same from run to run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/**
 * `count` distinct random lowercase words of 4 to 9 letters, joined by spaces: every piece is new
 * to the tokenizer's per-piece cache, the worst case for counting ordinary-looking text.
 */
export function distinctWordsPrompt(count: number, seed = 12): string {
  const random = prng(seed);
  const seen = new Set<string>();
  const words: string[] = [];
  for (let attempts = 0; words.length < count && attempts < count * 4; attempts++) {
    const length = 4 + Math.floor(random() * 6);
    let word = '';
    for (let i = 0; i < length; i++) word += LETTERS[Math.floor(random() * 26)];
    if (seen.has(word)) continue;
    seen.add(word);
    words.push(word);
  }
  return words.join(' ');
}

/** The stall test's prompt kinds: distinct words, common words, or one 100,000-character piece. */
export type StallPrompt = 'distinct' | 'common' | 'repeat';

export function stallPrompt(kind: StallPrompt, words: number): string {
  switch (kind) {
    case 'distinct':
      return distinctWordsPrompt(words);
    case 'common':
      return randomPrompt(words);
    case 'repeat':
      // One piece: tiktoken's byte-pair merge is quadratic in a piece's length.
      return 'a'.repeat(words);
  }
}
