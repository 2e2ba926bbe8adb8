/**
 * Counting is linear in the input: tiktoken's byte-pair merge is quadratic in the length of one
 * piece, so no piece longer than MAX_ENCODED_PIECE_LENGTH ever reaches it. Proved by what reaches
 * the encoder (the test hook `readEncoderStats`), never by timing. The counts stay tiktoken's on
 * ordinary text, and within the documented tolerance on pathological pieces.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { randomPrompt } from '../../lib/index.ts';
import {
  countTokens,
  countTokensWithTiktoken as tiktoken,
  MAX_ENCODED_PIECE_LENGTH,
  readEncoderStats,
  resetEncoderStats,
} from '../../lib/tokenizer.ts';

/** The documented tolerance: a chunked piece counts 0 to +1 token per chunk edge over tiktoken. */
function expectWithinTolerance(count: number, exact: number, length: number): void {
  const edges = Math.ceil(length / MAX_ENCODED_PIECE_LENGTH) - 1;
  expect(count).toBeGreaterThanOrEqual(exact);
  expect(count).toBeLessThanOrEqual(exact + edges);
}

/** Letters only (a digit would end the piece), none repeated in a row of 256. */
function randomLetters(length: number, seed: number): string {
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  let state = seed;
  let text = '';
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    text += letters[(state >>> 16) % letters.length];
  }
  return text;
}

describe('countTokens on over-long pieces', () => {
  beforeEach(() => resetEncoderStats());

  it('counts a 100,000 × "a" prompt without giving tiktoken more than 256 characters at once', () => {
    const count = countTokens('a'.repeat(100_000));
    expect(readEncoderStats().longestInput).toBeLessThanOrEqual(MAX_ENCODED_PIECE_LENGTH);
    // tiktoken's own count of 100,000 × "a" costs it 7 s; 4,000 × "a" is its 25th part, and
    // cl100k tiles a run of "a" in tokens of 8, so the whole run counts exactly 25 times as much.
    const exactSmaller = tiktoken('a'.repeat(4_000));
    expect(exactSmaller).toBe(500);
    expectWithinTolerance(count, 25 * exactSmaller, 100_000);
    expect(count).toBe(12_500);
  });

  it('counts 50,000 × "é" in chunks, matching 25 times tiktoken\'s count of 2,000', () => {
    const count = countTokens('é'.repeat(50_000));
    expect(readEncoderStats().longestInput).toBeLessThanOrEqual(MAX_ENCODED_PIECE_LENGTH);
    expectWithinTolerance(count, 25 * tiktoken('é'.repeat(2_000)), 50_000);
  });

  it('gives tiktoken a 100,000-letter word as chunks of at most 256 letters, each once', () => {
    const word = randomLetters(100_000, 7);
    countTokens(` ${word}`);
    const stats = readEncoderStats();
    expect(stats.longestInput).toBe(MAX_ENCODED_PIECE_LENGTH);
    // Linear: the work is chunks × the cost of one bounded chunk.
    expect(stats.calls).toBe(Math.ceil(100_001 / MAX_ENCODED_PIECE_LENGTH));
  });

  it('stays within one token per chunk edge of tiktoken on long random words, symbols and blanks', () => {
    const symbols = '.,;:!?-_()[]{}<>/\\|@#$%^&*+=~`"';
    const samples = [
      randomLetters(4_000, 1),
      ` ${randomLetters(3_001, 2)}`,
      Array.from({ length: 3_000 }, (_, i) => symbols[(i * 7919) % symbols.length]).join(''),
      `${Array.from({ length: 2_000 }, (_, i) => ' \t\u00a0\u3000'[(i * 31) % 4]).join('')}x`,
      '='.repeat(1_000),
      '-'.repeat(300),
    ];
    for (const text of samples) {
      expectWithinTolerance(countTokens(text), tiktoken(text), text.length);
    }
  });

  it('never splits a surrogate pair: a long run of emoji counts exactly as tiktoken counts it', () => {
    // The leading space shifts every pair by one, so a naive cut at 256 lands between two halves.
    const text = ` ${'😀🚀'.repeat(1_500)}`;
    expect(countTokens(text)).toBe(tiktoken(text));
    expect(readEncoderStats().longestInput).toBeLessThanOrEqual(MAX_ENCODED_PIECE_LENGTH);
  });

  it('matches tiktoken exactly on a long ordinary text, with no piece cut', () => {
    const text = [
      randomPrompt(5_000),
      'function f(x) {\n  return x ** 2; // square\n}\r\n'.repeat(50),
      '这是一个很长的中文句子，里面有标点符号。它应该被正确地分成片段！'.repeat(40),
      'https://example.com/a/very/long/path?with=query&and=parameters#fragment '.repeat(30),
    ].join('\n\n');
    expect(countTokens(text)).toBe(tiktoken(text));
    expect(readEncoderStats().longestInput).toBeLessThan(MAX_ENCODED_PIECE_LENGTH);
  });
});
