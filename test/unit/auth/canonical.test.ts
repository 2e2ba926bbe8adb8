import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  PyFloat,
  PyInt,
  canonicalMessage,
  parseJsonPreservingNumbers,
  pythonJsonDumps,
} from '../../../lib/auth/index.ts';
import type { PyJsonValue } from '../../../lib/auth/index.ts';

// Both files come from test/fixtures/auth/make-vectors.py, i.e. from CPython's own json module.
function fixture<T>(name: string, schema: z.ZodType<T>): T {
  const url = new URL(`../../fixtures/auth/${name}`, import.meta.url);
  return schema.parse(JSON.parse(readFileSync(url, 'utf8')));
}

const authVectors = fixture(
  'vectors.json',
  z.array(
    z.object({
      name: z.string(),
      authDataJson: z.string(),
      current: z.string(),
      legacy: z.string(),
    }),
  ),
);

const dumpsVectors = fixture(
  'dumps-vectors.json',
  z.object({
    dumps: z.array(
      z.object({
        name: z.string(),
        valueJson: z.string(),
        indent: z.number().int().nullable(),
        sortKeys: z.boolean(),
        expected: z.string(),
      }),
    ),
    floats: z.array(z.object({ bits: z.string(), expected: z.string() })),
    ints: z.array(z.object({ lexeme: z.string(), expected: z.string() })),
  }),
);

function asDict(value: PyJsonValue): { readonly [key: string]: PyJsonValue } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('expected a JSON object');
  }
  return value as { readonly [key: string]: PyJsonValue };
}

// What JSON.parse would have produced: Python numbers become JS numbers.
function toPlain(value: PyJsonValue): unknown {
  if (value instanceof PyInt) return Number(value.digits);
  if (value instanceof PyFloat) return value.value;
  if (Array.isArray(value)) return value.map((item: PyJsonValue) => toPlain(item));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]));
  }
  return value;
}

describe('canonicalMessage', () => {
  it.each(authVectors)('builds Python’s current message for $name', ({ authDataJson, current }) => {
    const authData = asDict(parseJsonPreservingNumbers(authDataJson));
    expect(canonicalMessage(authData, 'current')).toBe(current);
  });

  it.each(authVectors)('builds Python’s legacy message for $name', ({ authDataJson, legacy }) => {
    const authData = asDict(parseJsonPreservingNumbers(authDataJson));
    expect(canonicalMessage(authData, 'legacy')).toBe(legacy);
  });

  it('lays the current message out as the protocol describes', () => {
    expect(canonicalMessage({ url: 'http://1.2.3.4:5000', signature: 'x' }, 'current')).toBe(
      '{\n    "url": "http://1.2.3.4:5000"\n}',
    );
  });

  it('formats a JS number cost like Python would only when it is declared a float', () => {
    const fields = { endpoint: 'e', reqnum: 1, url: 'u' };
    expect(canonicalMessage({ ...fields, cost: 242 }, 'legacy')).toContain('"cost": 242,');
    expect(canonicalMessage({ ...fields, cost: new PyFloat(242) }, 'legacy')).toContain(
      '"cost": 242.0,',
    );
  });

  it('throws a TypeError naming a missing required field', () => {
    expect(() => canonicalMessage({ signature: 's' }, 'current')).toThrow(
      'auth_data.url is missing',
    );
    expect(() => canonicalMessage({ cost: 1, reqnum: 1, url: 'u' }, 'legacy')).toThrow(
      'auth_data.endpoint is missing',
    );
  });
});

describe('pythonJsonDumps', () => {
  it.each(dumpsVectors.dumps)(
    'matches json.dumps for $name with indent=$indent sort_keys=$sortKeys',
    ({ valueJson, indent, sortKeys, expected }) => {
      const value = parseJsonPreservingNumbers(valueJson);
      const options = indent === null ? { sortKeys } : { indent, sortKeys };
      expect(pythonJsonDumps(value, options)).toBe(expected);
    },
  );

  it(`matches repr(float) for ${dumpsVectors.floats.length} doubles`, () => {
    const mismatches = dumpsVectors.floats
      .map(({ bits, expected }) => {
        const actual = pythonJsonDumps(new PyFloat(Buffer.from(bits, 'hex').readDoubleBE(0)));
        return { bits, expected, actual };
      })
      .filter(({ expected, actual }) => expected !== actual);
    expect(mismatches).toEqual([]);
  });

  it.each(dumpsVectors.ints)('prints int $lexeme like Python', ({ lexeme, expected }) => {
    expect(pythonJsonDumps(parseJsonPreservingNumbers(lexeme))).toBe(expected);
  });

  it('prints the float layouts the protocol names', () => {
    const cases: [number, string][] = [
      [242, '242.0'],
      [0.0001, '0.0001'],
      [1e15, '1000000000000000.0'],
      [1e-5, '1e-05'],
      [1e16, '1e+16'],
      [2.5e-7, '2.5e-07'],
      [1.2345e20, '1.2345e+20'],
      [-0, '-0.0'],
      [Infinity, 'Infinity'],
      [-Infinity, '-Infinity'],
      [NaN, 'NaN'],
    ];
    for (const [value, expected] of cases) {
      expect(pythonJsonDumps(new PyFloat(value))).toBe(expected);
    }
  });

  it('treats plain JS numbers as ints when integral and floats otherwise', () => {
    expect(pythonJsonDumps([3, -0, 1e21, 0.5, 1e-7])).toBe(
      '[3, 0, 1000000000000000000000, 0.5, 1e-07]',
    );
  });

  it('normalises PyInt digits like Python int', () => {
    expect(new PyInt('-0').digits).toBe('0');
    expect(new PyInt('-007').digits).toBe('-7');
    expect(new PyInt(10n ** 30n).digits).toBe('1' + '0'.repeat(30));
    expect(() => new PyInt('1.5')).toThrow(SyntaxError);
  });

  it('serialises a dict shaped like a PyInt as a dict', () => {
    expect(pythonJsonDumps({ kind: 'int', digits: '5' }, { sortKeys: true })).toBe(
      '{"digits": "5", "kind": "int"}',
    );
  });

  it('sorts keys by code point, not by UTF-16 code unit', () => {
    const astral = '\u{1F600}';
    expect(pythonJsonDumps({ [astral]: 1, '\uffff': 2 }, { sortKeys: true })).toBe(
      '{"\\uffff": 2, "\\ud83d\\ude00": 1}',
    );
  });

  it('rejects a fractional indent as Python does', () => {
    expect(() => pythonJsonDumps([1], { indent: 2.5 })).toThrow(TypeError);
  });
});

describe('parseJsonPreservingNumbers', () => {
  it('keeps int and float lexemes apart', () => {
    const value = parseJsonPreservingNumbers(
      '[242, 242.0, 1E2, -0, 123456789012345678901234567890]',
    );
    expect(value).toEqual([
      new PyInt('242'),
      new PyFloat(242),
      new PyFloat(100),
      new PyInt('0'),
      new PyInt('123456789012345678901234567890'),
    ]);
  });

  it('lets the last duplicate key win', () => {
    expect(parseJsonPreservingNumbers('{"a": 1, "a": "two"}')).toEqual({ a: 'two' });
  });

  it('keeps __proto__ as an own key instead of a prototype', () => {
    const value = asDict(parseJsonPreservingNumbers('{"__proto__": {"polluted": true}}'));
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(pythonJsonDumps(value)).toBe('{"__proto__": {"polluted": true}}');
  });

  it('parses deep nesting without overflowing the stack', () => {
    const depth = 100_000;
    const value = parseJsonPreservingNumbers('['.repeat(depth) + ']'.repeat(depth));
    expect(Array.isArray(value)).toBe(true);
  });

  it('accepts the same strings as JSON.parse', () => {
    const texts = [
      '{"s": "a\\u00e9\\ud800\\/\\b\\f\\n\\r\\t\\"\\\\"}',
      ' \t\r\n[1 , {"a" : [ ] } ]\n',
      '"\u{1F600}"',
      'true',
      '-1.5e+3',
    ];
    for (const text of texts) {
      expect(toPlain(parseJsonPreservingNumbers(text))).toEqual(JSON.parse(text));
    }
  });

  it.each([
    '',
    ' ',
    '01',
    '1.',
    '.5',
    '+1',
    '1e',
    '-',
    '--1',
    'NaN',
    'Infinity',
    '[1,]',
    '{"a":1,}',
    '{a:1}',
    "{'a':1}",
    '"\u0001"',
    '"\\x41"',
    '"\\u12"',
    '"abc',
    '[1 2]',
    '{"a" 1}',
    'tru',
    'true false',
    '\ufeff{}',
    '[',
    '{"a":',
  ])('throws SyntaxError on %j, like JSON.parse', (text) => {
    expect(() => JSON.parse(text)).toThrow(SyntaxError);
    expect(() => parseJsonPreservingNumbers(text)).toThrow(SyntaxError);
  });
});
