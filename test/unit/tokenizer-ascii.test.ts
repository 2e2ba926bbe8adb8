/**
 * The ASCII fast path of countTokens: a hand-written scanner in place of the Unicode regular
 * expression, and a piece cache probed without allocating. It must cut exactly the pieces the
 * pattern cuts, and count exactly what tiktoken counts, on any ASCII text (property-based, fixed
 * seed, over an alphabet dense in the pattern's edge cases: contractions, blank runs before CR/LF,
 * symbols before letters, digit runs).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { randomPrompt } from '../../lib/index.ts';
import {
  countTokens,
  countTokensWithTiktoken,
  splitAsciiPieces,
  splitPieces,
} from '../../lib/tokenizer.ts';

const FRAGMENTS = [
  ...'abcxyzABCXYZ0123456789',
  ...' \t\n\r\v\f',
  ...'\'".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`',
  '\u0000',
  '\u001f',
  '\u007f',
  "'s",
  "'S",
  "'t",
  "'re",
  "'Ve",
  "'m",
  "'ll",
  "'lL",
  "'d",
  "'x",
  '  ',
  ' \n',
  '\r\n',
  ' \n\n ',
  'the',
  ' word',
  '12345',
  '...',
];
const asciiText = fc
  .array(fc.constantFrom(...FRAGMENTS), { maxLength: 60 })
  .map((parts) => parts.join(''));
const SETTINGS = { seed: 20261203, numRuns: 3000 };

describe('countTokens on ASCII text', () => {
  it('cuts exactly the pieces of the cl100k pattern', () => {
    fc.assert(
      fc.property(asciiText, (text) => {
        expect(splitAsciiPieces(text)).toEqual(splitPieces(text));
      }),
      SETTINGS,
    );
  });

  it("counts exactly tiktoken's tokens", () => {
    fc.assert(
      fc.property(asciiText, (text) => {
        expect(countTokens(text)).toBe(countTokensWithTiktoken(text));
      }),
      SETTINGS,
    );
  });

  it("counts prompts of common words as tiktoken does, every time (the cache's hits)", () => {
    for (let i = 0; i < 200; i++) {
      const prompt = randomPrompt(30 + (i % 271));
      const exact = countTokensWithTiktoken(prompt);
      expect(countTokens(prompt)).toBe(exact);
      expect(countTokens(prompt)).toBe(exact);
    }
  });

  it('tells apart short pieces that differ in one code unit or only in length (packed keys)', () => {
    // Pieces of 1 to 9 characters made of the ends of the 7-bit range (NUL, DEL) and of symbols, alone,
    // after a space or after letters. The 8-character ones set the key's sign bit; the 9-character
    // ones take the other cache.
    const texts: string[] = [];
    for (const unit of ['\u0000', '\u007f', '!', '~']) {
      for (let length = 1; length <= 9; length++) {
        texts.push(
          unit.repeat(length),
          ` ${unit.repeat(length - 1)}`,
          `${'a'.repeat(length - 1)}${unit}`,
        );
      }
    }
    texts.push(' zzzzzzz', ' zzzzzzy', ' yzzzzzz', 'zzzz', 'zzzzz', ' abcdefg', ' abcdefgh');
    for (const round of [1, 2]) {
      for (const text of texts) {
        expect([round, text, countTokens(text)]).toEqual([
          round,
          text,
          countTokensWithTiktoken(text),
        ]);
      }
    }
  });

  it('leaves text with any non-ASCII character to the general path, with the same counts', () => {
    for (const text of ["café 'ſ x", 'a\u00a0b', "it'ſ", 'naïve  \n\n  x', 'abc 😀 def']) {
      expect(splitAsciiPieces(text)).toBeUndefined();
      expect(countTokens(text)).toBe(countTokensWithTiktoken(text));
    }
  });
});
