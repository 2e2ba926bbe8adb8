/**
 * The depth guard before JSON.parse: a body that opens more than MAX_JSON_DEPTH brackets is scanned
 * for its nesting, brackets inside strings do not count, and a body with few brackets is passed on
 * without the scan. Bodies are decoded from UTF-8 exactly as `toString('utf8')` does.
 */
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, nestsDeeperThan, parseJson } from '../../../lib/pipeline/parse.ts';
import { decodeUtf8, encodeUtf8 } from '../../../lib/internal/utf8.ts';

const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

describe('nestsDeeperThan', () => {
  it('finds nesting one level past the limit, in arrays, objects and both', () => {
    expect(nestsDeeperThan(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(nestsDeeperThan(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
    const objects = '{"a":'.repeat(MAX_JSON_DEPTH + 1) + '1' + '}'.repeat(MAX_JSON_DEPTH + 1);
    expect(nestsDeeperThan(objects, MAX_JSON_DEPTH)).toBe(true);
    const mixed = '[{"a":'.repeat(65) + '1' + '}]'.repeat(65);
    expect(nestsDeeperThan(mixed, MAX_JSON_DEPTH)).toBe(true);
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    const code = JSON.stringify({ prompt: 'if (x) { y[0] = "{[" }\\'.repeat(500) });
    expect(nestsDeeperThan(code, MAX_JSON_DEPTH)).toBe(false);
    const deepAfterString = `["${'{['.repeat(200)}\\"",${nested(MAX_JSON_DEPTH)}]`;
    expect(nestsDeeperThan(deepAfterString, MAX_JSON_DEPTH)).toBe(true);
  });

  it('passes many shallow siblings: it is depth, not the number of brackets', () => {
    const wide = `[${new Array(10_000).fill('{"a":[1]}').join(',')}]`;
    expect(nestsDeeperThan(wide, MAX_JSON_DEPTH)).toBe(false);
  });

  it('answers a 16 MiB body of brackets without parsing it', () => {
    expect(() => parseJson('['.repeat(16 * 1024 * 1024))).toThrow(
      expect.objectContaining({
        status: 422,
        body: { error: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` },
      }),
    );
  });
});

describe('UTF-8 with an ASCII fast path', () => {
  const samples = [
    '',
    'plain ascii {"a":1}',
    'café',
    '日本語',
    '😀 emoji',
    'a\u0000b',
    '\u007f\u0080',
  ];

  it('decodes as toString("utf8") does, invalid sequences included', () => {
    for (const text of samples) {
      const bytes = Buffer.from(text, 'utf8');
      expect(decodeUtf8(bytes)).toBe(bytes.toString('utf8'));
    }
    const invalid = Buffer.from([0x61, 0xff, 0xc3, 0x28, 0x62]);
    expect(decodeUtf8(invalid)).toBe(invalid.toString('utf8'));
  });

  it('encodes as Buffer.from(text, "utf8") does, Latin-1 and lone surrogates included', () => {
    for (const text of [...samples, 'é', '\u00ff', '\ud800 lone', 'x\udfff']) {
      expect(encodeUtf8(text).equals(Buffer.from(text, 'utf8'))).toBe(true);
    }
  });
});
