/**
 * Python's `json` module, as far as the signed auth message needs it (protocol §4, legacy §6.3).
 * The autoscaler signs the output of `json.dumps(..., indent=4, sort_keys=True)` over values that
 * Python parsed, so the bytes depend on Python's number and string formatting: `242.0` stays
 * `242.0`, `1e-05` stays `1e-05`, big ints keep every digit and non-ASCII becomes `\uXXXX`.
 * `JSON.parse` + `JSON.stringify` would turn these into `242`, `0.00001` and a rounded number.
 */

/**
 * A Python `int`, kept as its exact decimal digits so any size survives.
 * A class rather than a plain `{kind, digits}` object, so that a user dict that happens to have
 * those keys is never mistaken for a number (the encoder checks `instanceof`).
 */
export class PyInt {
  readonly kind = 'int';
  /** Normalised like Python's `str(int)`: no `+`, no leading zeros, no `-0`. */
  readonly digits: string;

  constructor(value: string | bigint) {
    this.digits = typeof value === 'bigint' ? value.toString() : normaliseIntDigits(value);
  }

  toBigInt(): bigint {
    return BigInt(this.digits);
  }
}

/** A Python `float`: printed as `repr(float)`, so `new PyFloat(242)` prints `242.0`. */
export class PyFloat {
  readonly kind = 'float';
  readonly value: number;

  constructor(value: number) {
    this.value = value;
  }
}

export type PyNumber = PyInt | PyFloat;

/**
 * A value Python's `json` can hold. A plain JS `number` is a Python int when `Number.isInteger`,
 * else a float; use `PyInt`/`PyFloat` to say which one explicitly.
 */
export type PyJsonValue =
  | string
  | boolean
  | null
  | number
  | PyNumber
  | readonly PyJsonValue[]
  | { readonly [key: string]: PyJsonValue };

export interface PythonJsonDumpsOptions {
  /** Python's `indent`: `undefined` is compact (`", "` and `": "`), a number pretty-prints. */
  indent?: number;
  /** Python's `sort_keys`: keys in code point order. @default false */
  sortKeys?: boolean;
}

/**
 * Byte-for-byte `json.dumps(value, indent=indent, sort_keys=sortKeys)` with Python's defaults
 * (`ensure_ascii=True`, `allow_nan=True`).
 *
 * Without `sortKeys`, keys come out in JS property order, which equals Python's insertion order
 * except that integer-like keys (`"1"`, `"42"`) come first in JS. The signed messages always sort.
 *
 * @example
 * pythonJsonDumps({ url: 'http://h', cost: new PyFloat(242) }, { indent: 4, sortKeys: true });
 * // '{\n    "cost": 242.0,\n    "url": "http://h"\n}'
 */
export function pythonJsonDumps(value: PyJsonValue, options?: PythonJsonDumpsOptions): string {
  const indent = options?.indent;
  if (indent !== undefined && !Number.isInteger(indent)) {
    throw new TypeError(`indent must be an integer, got ${indent}`);
  }
  // Python multiplies a string by the indent, so a negative indent behaves like 0.
  const unit = indent === undefined ? null : ' '.repeat(Math.max(0, indent));
  return encode(value, unit, '', options?.sortKeys ?? false);
}

function encode(value: PyJsonValue, unit: string | null, pad: string, sortKeys: boolean): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return encodeString(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return Number.isInteger(value) ? BigInt(value).toString() : formatPyFloat(value);
    case 'object':
      break;
    default:
      throw new TypeError(`Object of type ${typeof value} is not JSON serializable`);
  }
  if (value instanceof PyInt) return value.digits;
  if (value instanceof PyFloat) return formatPyFloat(value.value);

  const inner = unit === null ? null : pad + unit;
  // With an indent Python uses ',' + newline between items, without it ', '.
  const open = inner === null ? '' : '\n' + inner;
  const separator = inner === null ? ', ' : ',\n' + inner;
  const close = inner === null ? '' : '\n' + pad;
  const next = inner ?? '';

  if (isArray(value)) {
    if (value.length === 0) return '[]';
    const items = value.map((item) => encode(item, unit, next, sortKeys));
    return '[' + open + items.join(separator) + close + ']';
  }

  const keys = Object.keys(value);
  if (keys.length === 0) return '{}';
  if (sortKeys) keys.sort(compareCodePoints);
  const items = keys.map(
    (key) => encodeString(key) + ': ' + encode(value[key] as PyJsonValue, unit, next, sortKeys),
  );
  return '{' + open + items.join(separator) + close + '}';
}

// `Array.isArray` does not narrow readonly arrays out of a union.
function isArray(value: object): value is readonly PyJsonValue[] {
  return Array.isArray(value);
}

/**
 * Python compares `str` by code point; JS `<` compares UTF-16 code units, which disagrees when an
 * astral character (a surrogate pair) meets U+E000–U+FFFF or a lone low surrogate.
 */
function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  let i = 0;
  while (i < length) {
    const ca = a.codePointAt(i) as number;
    const cb = b.codePointAt(i) as number;
    if (ca !== cb) return ca - cb;
    i += ca > 0xffff ? 2 : 1;
  }
  return a.length - b.length;
}

const SHORT_ESCAPES: Readonly<Record<number, string>> = {
  0x22: '\\"',
  0x5c: '\\\\',
  0x0a: '\\n',
  0x0d: '\\r',
  0x09: '\\t',
  0x08: '\\b',
  0x0c: '\\f',
};

/** `ensure_ascii`: everything outside 0x20–0x7E as lowercase `\uXXXX` per UTF-16 code unit. */
function encodeString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(start, i) + (SHORT_ESCAPES[c] ?? '\\u' + c.toString(16).padStart(4, '0'));
    start = i + 1;
  }
  return out + s.slice(start) + '"';
}

/**
 * Python's `repr(float)` (and json's NaN/Infinity spellings). The digits are JS's shortest
 * round-trip digits, which are also Python's; only the layout differs: fixed notation with a
 * mandatory `.0` for decimal exponents -4..15, otherwise `d.ddde±XX`.
 */
function formatPyFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';

  const sign = x < 0 ? '-' : '';
  // String(x) picks the closest of the shortest digit strings, like Python's repr.
  const [mantissa = '', exponentPart] = String(Math.abs(x)).split('e');
  const dot = mantissa.indexOf('.');
  const fraction = dot < 0 ? '' : mantissa.slice(dot + 1);
  const allDigits = (dot < 0 ? mantissa : mantissa.slice(0, dot)) + fraction;
  const leading = allDigits.length - allDigits.replace(/^0+/, '').length;
  const digits = allDigits.slice(leading).replace(/0+$/, '');
  // The value is 0.d1d2d3... × 10^(exponent + 1), i.e. d1.d2d3... × 10^exponent.
  const exponent = Number(exponentPart ?? '0') + (allDigits.length - fraction.length) - leading - 1;

  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return sign + '0.' + '0'.repeat(-exponent - 1) + digits;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
    return sign + whole + '.' + (digits.slice(exponent + 1) || '0');
  }
  const head = digits.length > 1 ? digits[0] + '.' + digits.slice(1) : digits;
  const expSign = exponent < 0 ? '-' : '+';
  return sign + head + 'e' + expSign + String(Math.abs(exponent)).padStart(2, '0');
}

function normaliseIntDigits(text: string): string {
  if (!/^-?[0-9]+$/.test(text)) throw new SyntaxError(`invalid integer digits: ${text}`);
  const negative = text.startsWith('-');
  const body = (negative ? text.slice(1) : text).replace(/^0+/, '');
  if (body === '') return '0';
  return negative ? '-' + body : body;
}

type ObjectContainer = { readonly object: Record<string, PyJsonValue>; key: string };
type Container = { readonly array: PyJsonValue[] } | ObjectContainer;

/**
 * Parses JSON text exactly as strictly as `JSON.parse` (RFC 8259), but keeps what Python's
 * `json.loads` would see in each number: no `.`/`e`/`E` gives a `PyInt` with every digit kept,
 * anything else a `PyFloat`. Duplicate keys: the last one wins. Iterative, so deeply nested input
 * cannot overflow the stack.
 *
 * @throws SyntaxError on invalid JSON.
 */
export function parseJsonPreservingNumbers(text: string): PyJsonValue {
  // One loop with the index in a local: this runs on every legacy-mode request body.
  const stack: Container[] = [];
  let i = skipWhitespace(text, 0);

  for (;;) {
    // Parse one value, or open a container and go round again for its first element.
    let value: PyJsonValue;
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      i = skipWhitespace(text, i + 1);
      if (text.charCodeAt(i) !== 0x7d /* } */) {
        const container: ObjectContainer = { object: {}, key: '' };
        i = readKey(text, i, container);
        stack.push(container);
        continue;
      }
      i++;
      value = {};
    } else if (c === 0x5b /* [ */) {
      i = skipWhitespace(text, i + 1);
      if (text.charCodeAt(i) !== 0x5d /* ] */) {
        stack.push({ array: [] });
        continue;
      }
      i++;
      value = [];
    } else if (c === 0x22 /* " */) {
      [value, i] = parseString(text, i);
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      [value, i] = parseNumber(text, i);
    } else {
      value = parseLiteral(text, i);
      i += value === false ? 5 : 4;
    }

    // Attach the finished value to its parent; closing a container finishes another value.
    for (;;) {
      const top = stack.at(-1);
      i = skipWhitespace(text, i);
      if (top === undefined) return endOfText(text, i, value);
      const c2 = text.charCodeAt(i);
      if ('array' in top) {
        top.array.push(value);
        if (c2 === 0x2c /* , */) {
          i = skipWhitespace(text, i + 1);
          break;
        }
        if (c2 !== 0x5d /* ] */) throw unexpected(text, i);
        value = top.array;
      } else {
        setOwn(top.object, top.key, value);
        if (c2 === 0x2c /* , */) {
          i = readKey(text, skipWhitespace(text, i + 1), top);
          break;
        }
        if (c2 !== 0x7d /* } */) throw unexpected(text, i);
        value = top.object;
      }
      stack.pop();
      i++;
    }
  }
}

/** `true`, `false` or `null` at `i` (4, 5 and 4 characters long). */
function parseLiteral(text: string, i: number): boolean | null {
  if (text.startsWith('true', i)) return true;
  if (text.startsWith('false', i)) return false;
  if (text.startsWith('null', i)) return null;
  throw unexpected(text, i);
}

/** The parsed document, once only whitespace follows it. */
function endOfText(text: string, i: number, value: PyJsonValue): PyJsonValue {
  if (i !== text.length) throw unexpected(text, i);
  return value;
}

function setOwn(object: Record<string, PyJsonValue>, key: string, value: PyJsonValue): void {
  // Plain assignment to "__proto__" would replace the prototype instead of adding a key.
  if (key === '__proto__') {
    Object.defineProperty(object, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  } else {
    object[key] = value;
  }
}

/** Reads `"key"` `:` into `container.key`; returns the index of the value that follows. */
function readKey(text: string, i: number, container: ObjectContainer): number {
  if (text.charCodeAt(i) !== 0x22) throw unexpected(text, i);
  const [key, end] = parseString(text, i);
  container.key = key;
  const colon = skipWhitespace(text, end);
  if (text.charCodeAt(colon) !== 0x3a /* : */) throw unexpected(text, colon);
  return skipWhitespace(text, colon + 1);
}

function skipWhitespace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

function parseString(text: string, i: number): [string, number] {
  let out = '';
  let start = i + 1;
  for (let j = start; ; j++) {
    const c = text.charCodeAt(j);
    if (c === 0x22) return [out + text.slice(start, j), j + 1];
    if (Number.isNaN(c)) throw new SyntaxError(`Unterminated string in JSON at position ${j}`);
    if (c < 0x20) throw new SyntaxError(`Bad control character in string literal at position ${j}`);
    if (c !== 0x5c) continue;
    out += text.slice(start, j);
    const e = text.charAt(j + 1);
    if (e === 'u') {
      const hex = text.slice(j + 2, j + 6);
      if (!/^[0-9a-fA-F]{4}$/.test(hex))
        throw new SyntaxError(`Bad Unicode escape at position ${j}`);
      // fromCharCode keeps lone surrogates, as both JSON.parse and Python do.
      out += String.fromCharCode(parseInt(hex, 16));
      j += 5;
    } else {
      const decoded = ESCAPES[e];
      if (decoded === undefined) throw new SyntaxError(`Bad escaped character at position ${j}`);
      out += decoded;
      j += 1;
    }
    start = j + 1;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

function parseNumber(text: string, i: number): [PyNumber, number] {
  NUMBER.lastIndex = i;
  const match = NUMBER.exec(text);
  if (match === null) throw unexpected(text, i);
  const lexeme = match[0];
  const end = i + lexeme.length;
  // JSON.parse rejects "01" and "1." rather than stopping early, so must we.
  if (/[0-9.eE+-]/.test(text.charAt(end))) throw unexpected(text, end);
  const isInt = match[1] === undefined && match[2] === undefined;
  return [isInt ? new PyInt(lexeme) : new PyFloat(Number(lexeme)), end];
}

function unexpected(text: string, i: number): SyntaxError {
  if (i >= text.length) return new SyntaxError('Unexpected end of JSON input');
  return new SyntaxError(`Unexpected token '${text.charAt(i)}' in JSON at position ${i}`);
}
