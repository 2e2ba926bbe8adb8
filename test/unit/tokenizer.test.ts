import { describe, expect, it } from 'vitest';
import { countTokens, randomPrompt } from '../../lib/index.ts';
import { countTokensWithTiktoken } from '../../lib/entry-presets.ts';
import { countTokensWithTiktoken as reference } from '../../lib/tokenizer.ts';

/** A small deterministic PRNG, so a failure names a reproducible case. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABETS = [
  'abcdefghijklmnopqrstuvwxyz',
  'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
  '0123456789',
  ' \t\n\r\u00a0\u2028\u2029\u3000\u200b\ufeff\u180e\u0085\u000b\u000c',
  "'sStTlLdDmMvVrReEſ",
  '.,;:!?-_()[]{}<>/\\|@#$%^&*+=~`"',
  'éèêàçñöüßøåæœ',
  'абвгдеёжзийклмнопрстуфхцчшщъыьэюя',
  '漢字かなカナ한국어中文字符',
  '٠١٢٣٤٥٦٧٨٩ⅣⅫ½²³',
  '😀👍🏽🚀👨‍👩‍👧‍👦🇫🇷',
  '\ud800\udc00\udfff',
];

function randomText(random: () => number, length: number): string {
  let text = '';
  while (text.length < length) {
    const alphabet = ALPHABETS[Math.floor(random() * ALPHABETS.length)] as string;
    const run = 1 + Math.floor(random() * 8);
    const chars = [...alphabet];
    for (let i = 0; i < run; i++) text += chars[Math.floor(random() * chars.length)];
  }
  return text;
}

describe('countTokens', () => {
  it('matches tiktoken on prose, code and special-token text', () => {
    const samples = [
      '',
      'Hello, world',
      randomPrompt(250),
      "I'm sure they'll say it's fine, we've done it, you'd agree. I'M SURE THEY'LL SAY IT'S FINE.",
      'function f(x) {\n  return x ** 2; // square\n}\r\n\r\n\tconst y = [1, 22, 333, 4444, 55555];',
      'numbers 1234567890 3.14159 1e-05 -42',
      'trailing spaces    \n\n\n   leading',
      '<|endoftext|> is ordinary text here <|fim_prefix|>',
      'naïve café, Straße, добрый день, 你好世界, こんにちは, 안녕하세요 👋🏽',
    ];
    for (const text of samples)
      expect(countTokens(text), JSON.stringify(text)).toBe(reference(text));
  });

  it('matches tiktoken on 2,000 random mixed-script texts, counted twice (cold and cached)', () => {
    const random = mulberry32(20261123);
    for (let i = 0; i < 2000; i++) {
      const text = randomText(random, 1 + Math.floor(random() * 300));
      const expected = reference(text);
      expect(countTokens(text), JSON.stringify(text)).toBe(expected);
      expect(countTokens(text), JSON.stringify(text)).toBe(expected);
    }
  });

  it('is exported with the tiktoken reference for workers that want the uncached count', () => {
    expect(countTokensWithTiktoken('Hello, world')).toBe(countTokens('Hello, world'));
  });
});
