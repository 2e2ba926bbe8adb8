/**
 * Hostile requests for the worker's public port, generated with fast-check from a fixed seed, so a
 * run is repeatable and a failing body can be regenerated from its index.
 *
 * Each request is the exact bytes to write on a fresh connection: framing (Content-Length,
 * chunked, broken chunked), headers (content-encoding) and body are all under the generator's
 * control. Kinds: invalid JSON, invalid UTF-8, deep nesting, huge numbers, `__proto__` keys, wrong
 * types in every field, bad chunking, gzip garbage, and well-formed bodies with forged signatures.
 */
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { requestHead } from './support/http.ts';
import type { Ticket } from './support/stack.ts';

export const HOSTILE_KINDS = [
  'invalid-json',
  'invalid-utf8',
  'deep-nesting',
  'huge-numbers',
  'proto-keys',
  'wrong-types',
  'bad-chunking',
  'gzip-garbage',
  'forged-signature',
] as const;
export type HostileKind = (typeof HOSTILE_KINDS)[number];

export interface HostileRequest {
  readonly kind: HostileKind;
  /** A short description of the variant, for failure messages. */
  readonly variant: string;
  readonly route: string;
  /** main: WORKER_PORT; plain: the /session/end listener. */
  readonly listener: 'main' | 'plain';
  /** The body, unframed. */
  readonly body: Buffer;
  /** The bytes of the request, one entry per write. */
  readonly wire: readonly Buffer[];
  /** The client ends its side after the last byte (a body cut short). */
  readonly halfClose: boolean;
  /** A forged signature on an otherwise valid body: the answer must be 401. */
  readonly mustBeUnauthorized: boolean;
}

/** What the generator assembles before framing. */
interface Draft {
  readonly kind: HostileKind;
  readonly variant: string;
  readonly route: string;
  readonly listener?: 'main' | 'plain';
  readonly body: Buffer;
  readonly headers?: readonly (readonly [string, string])[];
  readonly framing?: Framing;
  readonly mustBeUnauthorized?: boolean;
}

type Framing =
  | { readonly kind: 'length' }
  | { readonly kind: 'chunked'; readonly cuts: readonly number[] }
  | { readonly kind: 'broken'; readonly variant: BrokenFraming; readonly cut: number };

const BROKEN_FRAMINGS = [
  'bad-hex',
  'overflow-size',
  'negative-size',
  'size-too-big',
  'size-too-small',
  'no-last-chunk',
  'lf-only',
  'junk-extension',
  'length-and-chunked',
  'te-gzip-chunked',
  'te-chunked-twice',
  'te-unknown',
  'length-short',
  'length-long',
  'length-not-a-number',
  'length-negative',
  'two-lengths',
  'trailer-junk',
] as const;
type BrokenFraming = (typeof BROKEN_FRAMINGS)[number];

const HANDLER_ROUTES = ['/generate', '/generate_stream'] as const;
const SESSION_ROUTES = ['/session/get', '/session/health', '/session/end'] as const;

/** Hostile request_idx values start here, far from every other scenario's. */
const IDX_BASE = 50_000_000;

/** `on_close_route` values: paths only, so a callback can never leave the model server on loopback. */
const SAFE_CLOSE_ROUTES = ['/done', 'done', '', '/../x', '/%2e%2e/x', '?q=1', '#frag', ' /done'];

const INVALID_UTF8: readonly (readonly number[])[] = [
  [0x80],
  [0xbf, 0xbf],
  [0xc0, 0xaf],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xfe],
  [0xff],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
];

const HUGE_LITERALS = [
  '1e308',
  '1.7976931348623157e308',
  '1e309',
  '-1e309',
  '1.8e19',
  '18446744073709551616',
  '9007199254740993',
  '9007199254740992',
  '-9007199254740993',
  '-0',
  '-0.0',
  '1e-400',
  '4.9e-324',
  '0.1e-999999',
  '1' + '0'.repeat(400),
  '-1',
  '1.5',
  '4.0',
  '1E2',
  '10000001',
  '10000000.000001',
  '99999999999999999999999999999999999999e-30',
];

/** Paths into the envelope that the wrong-types generator overwrites. */
const ENVELOPE_PATHS: readonly (readonly string[])[] = [
  [],
  ['auth_data'],
  ['auth_data', 'cost'],
  ['auth_data', 'endpoint'],
  ['auth_data', 'reqnum'],
  ['auth_data', 'request_idx'],
  ['auth_data', 'signature'],
  ['auth_data', 'url'],
  ['auth_data', '__request_id'],
  ['payload'],
  ['payload', 'prompt'],
  ['payload', 'max_response_tokens'],
  ['session_id'],
];
const CREATE_PATHS: readonly (readonly string[])[] = [
  ['auth_data'],
  ['auth_data', 'cost'],
  ['auth_data', 'request_idx'],
  ['payload'],
  ['payload', 'lifetime'],
  ['payload', 'on_close_route'],
  ['payload', 'on_close_payload'],
];
const SESSION_PATHS: readonly (readonly string[])[] = [
  [],
  ['session_id'],
  ['session_auth'],
  ['session_auth', 'url'],
  ['session_auth', 'signature'],
];

type Json = fc.JsonValue;

/** The generators, bound to one signed ticket (the current mode signs only `url`). */
class Bodies {
  readonly #ticket: Ticket;

  constructor(ticket: Ticket) {
    this.#ticket = ticket;
  }

  authData(idx: number): { [key: string]: Json } {
    return {
      cost: 10,
      endpoint: this.#ticket.endpoint,
      reqnum: idx,
      request_idx: idx,
      signature: this.#ticket.signature,
      url: this.#ticket.url,
    };
  }

  envelope(idx: number): { [key: string]: Json } {
    return {
      auth_data: this.authData(idx),
      payload: { prompt: 'hostile but fine', max_response_tokens: 2 },
    };
  }

  createBody(idx: number): { [key: string]: Json } {
    return {
      auth_data: this.authData(idx),
      payload: { lifetime: 30, on_close_route: '/done', on_close_payload: { note: 'x' } },
    };
  }

  sessionBody(): { [key: string]: Json } {
    return { session_id: 'AAAAAAAAAAAAA', session_auth: this.authData(1) };
  }

  get arbitrary(): fc.Arbitrary<Draft> {
    const idx = fc.nat({ max: 1_000_000 }).map((n) => IDX_BASE + n);
    const handlerRoute = fc.constantFrom(...HANDLER_ROUTES);
    return fc.oneof(
      this.invalidJson(idx, handlerRoute),
      this.invalidUtf8(idx, handlerRoute),
      this.deepNesting(idx, handlerRoute),
      this.hugeNumbers(idx, handlerRoute),
      this.protoKeys(idx, handlerRoute),
      this.wrongTypes(idx, handlerRoute),
      this.badChunking(idx, handlerRoute),
      this.gzipGarbage(idx, handlerRoute),
      this.forgedSignature(idx, handlerRoute),
    );
  }

  invalidJson(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const valid = idx.map((n) => JSON.stringify(this.envelope(n)));
    const text = fc.oneof(
      fc.string({ maxLength: 300 }).map((s) => ({ variant: 'random text', text: s })),
      fc.tuple(valid, fc.nat()).map(([v, cut]) => ({
        variant: 'truncated',
        text: v.slice(0, cut % v.length),
      })),
      fc
        .tuple(valid, fc.constantFrom('}', ',', 'x', '\u0000', ']]', '{}', ' "'))
        .map(([v, junk]) => ({ variant: 'trailing junk', text: v + junk })),
      valid.map((v) => ({ variant: 'single quotes', text: v.replaceAll('"', "'") })),
      valid.map((v) => ({ variant: 'trailing comma', text: v.replace(/}$/, ',}') })),
      valid.map((v) => ({ variant: 'comment', text: `/* hi */${v}` })),
      valid.map((v) => ({ variant: 'BOM', text: `\uFEFF${v}` })),
      valid.map((v) => ({ variant: 'NaN', text: v.replace(/"cost":\d+/, '"cost":NaN') })),
      fc
        .constantFrom('', ' ', 'null', '[]', 'true', '"s"', '1e999', '{', '}', '{"a"}', '\u0000')
        .map((t) => ({ variant: 'scalar or empty', text: t })),
    );
    return fc.record({ route, text }).map(({ route: r, text: t }) => ({
      kind: 'invalid-json',
      variant: t.variant,
      route: r,
      body: Buffer.from(t.text, 'utf8'),
    }));
  }

  invalidUtf8(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const bytes = fc.oneof(
      fc.constantFrom(...INVALID_UTF8).map((b) => Buffer.from(b)),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b)),
    );
    const where = fc.constantFrom('prompt', 'endpoint', 'url', 'signature', 'key', 'whole');
    return fc
      .record({ route, idx, bytes, where })
      .map(({ route: r, idx: n, bytes: b, where: w }) => {
        if (w === 'whole') {
          return { kind: 'invalid-utf8', variant: 'random bytes', route: r, body: b };
        }
        const MARK = '\u0001MARK\u0001';
        const envelope = this.envelope(n);
        const auth = envelope['auth_data'] as { [key: string]: Json };
        const payload = envelope['payload'] as { [key: string]: Json };
        if (w === 'prompt') payload['prompt'] = `a${MARK}b`;
        else if (w === 'key') payload[`k${MARK}`] = 1;
        else auth[w] = `${String(auth[w])}${MARK}`;
        const [before = '', after = ''] = JSON.stringify(envelope).split(
          JSON.stringify(MARK).slice(1, -1),
        );
        return {
          kind: 'invalid-utf8',
          variant: `in ${w}`,
          route: r,
          body: Buffer.concat([Buffer.from(before), b, Buffer.from(after)]),
        };
      });
  }

  deepNesting(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const depth = fc.oneof(
      fc.integer({ min: 120, max: 140 }),
      fc.integer({ min: 1, max: 2_000 }),
      fc.integer({ min: 2_000, max: 100_000 }),
    );
    const open = fc.constantFrom('[', '{"a":');
    const where = fc.constantFrom(
      'top',
      'payload',
      'prompt',
      'extra payload field',
      'auth_data',
      'cost',
      'session_id',
      'on_close_payload',
      'session_auth',
    );
    return fc
      .record({ route, idx, depth, open, where, closed: fc.boolean() })
      .map(({ route: r, idx: n, depth: d, open: o, where: w, closed }) => {
        const close = o === '[' ? ']' : '}';
        const nested = o.repeat(d) + '1' + (closed ? close.repeat(d) : '');
        const HOLE = '"\u0001HOLE\u0001"';
        let template: { [key: string]: Json };
        let target = r;
        if (w === 'on_close_payload') {
          template = this.createBody(n);
          (template['payload'] as { [key: string]: Json })['on_close_payload'] = HOLE;
          target = '/session/create';
        } else if (w === 'session_auth') {
          template = this.sessionBody();
          template['session_auth'] = HOLE;
          target = SESSION_ROUTES[n % SESSION_ROUTES.length] ?? '/session/get';
        } else {
          template = this.envelope(n);
          const auth = template['auth_data'] as { [key: string]: Json };
          const payload = template['payload'] as { [key: string]: Json };
          if (w === 'payload') template['payload'] = HOLE;
          else if (w === 'prompt') payload['prompt'] = HOLE;
          else if (w === 'extra payload field') payload['extra'] = HOLE;
          else if (w === 'auth_data') template['auth_data'] = HOLE;
          else if (w === 'cost') auth['cost'] = HOLE;
          else if (w === 'session_id') template['session_id'] = HOLE;
        }
        const text =
          w === 'top' ? nested : JSON.stringify(template).replace(JSON.stringify(HOLE), nested);
        return {
          kind: 'deep-nesting',
          variant: `${d} levels of ${o} in ${w}${closed ? '' : ', unclosed'}`,
          route: target,
          body: Buffer.from(text),
        };
      });
  }

  hugeNumbers(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const literal = fc.oneof(
      fc.constantFrom(...HUGE_LITERALS),
      fc.double().map((d) => (Object.is(d, -0) ? '-0' : String(d))),
      fc.bigInt({ min: -(2n ** 256n), max: 2n ** 256n }).map(String),
      fc.stringMatching(/^-?[1-9]\d{0,400}(\.\d{1,40})?([eE][+-]?\d{1,6})?$/),
    );
    const field = fc.constantFrom(
      'cost',
      'reqnum',
      'request_idx',
      'max_response_tokens',
      'lifetime',
    );
    return fc
      .record({ route, idx, literal, field })
      .map(({ route: r, idx: n, literal: l, field: f }) => {
        const HOLE = '"\u0001HOLE\u0001"';
        let template: { [key: string]: Json };
        let target = r;
        if (f === 'lifetime') {
          template = this.createBody(n);
          (template['payload'] as { [key: string]: Json })['lifetime'] = HOLE;
          target = '/session/create';
        } else {
          template = this.envelope(n);
          const holder = f === 'max_response_tokens' ? template['payload'] : template['auth_data'];
          (holder as { [key: string]: Json })[f] = HOLE;
        }
        return {
          kind: 'huge-numbers',
          variant: `${f}=${l.length > 40 ? `${l.slice(0, 40)}…` : l}`,
          route: target,
          body: Buffer.from(JSON.stringify(template).replace(JSON.stringify(HOLE), l)),
        };
      });
  }

  protoKeys(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const key = fc.constantFrom(
      '__proto__',
      'constructor',
      'prototype',
      'toString',
      'hasOwnProperty',
    );
    const place = fc.constantFrom(
      'top wrapper',
      'top extra',
      'auth_data',
      'payload',
      'payload wrapper',
      'on_close_payload',
      'session_auth',
    );
    const value = fc.jsonValue({ maxDepth: 3 });
    return fc
      .record({ route, idx, key, place, value })
      .map(({ route: r, idx: n, key: k, place: p, value: v }) => {
        const valueText = JSON.stringify(v) ?? 'null';
        const member = `${JSON.stringify(k)}:${valueText}`;
        const envelope = JSON.stringify(this.envelope(n));
        let text: string;
        let target = r;
        switch (p) {
          case 'top wrapper':
            text = `{${JSON.stringify(k)}:${envelope}}`;
            break;
          case 'top extra':
            text = `{${member},${envelope.slice(1)}`;
            break;
          case 'auth_data':
            text = envelope.replace('"auth_data":{', `"auth_data":{${member},`);
            break;
          case 'payload':
            text = envelope.replace('"payload":{', `"payload":{${member},`);
            break;
          case 'payload wrapper':
            text = envelope.replace(
              /"payload":(\{[^}]*\})/,
              (_m, inner: string) => `"payload":{${JSON.stringify(k)}:${inner}}`,
            );
            break;
          case 'on_close_payload':
            text = JSON.stringify(this.createBody(n)).replace(
              '"on_close_payload":{',
              `"on_close_payload":{${member},`,
            );
            target = '/session/create';
            break;
          default:
            text = JSON.stringify(this.sessionBody()).replace(
              '"session_auth":{',
              `"session_auth":{${member},`,
            );
            target = '/session/get';
        }
        return {
          kind: 'proto-keys',
          variant: `${k} in ${p}`,
          route: target,
          body: Buffer.from(text),
        };
      });
  }

  wrongTypes(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const value = fc.oneof(
      { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
      { weight: 1, arbitrary: fc.constant(undefined) },
    );
    const shape = fc.constantFrom('handler', 'create', 'session');
    return fc
      .record({
        route,
        idx,
        shape,
        picks: fc.array(fc.tuple(fc.nat(), value), { minLength: 1, maxLength: 4 }),
        sessionRoute: fc.constantFrom(...SESSION_ROUTES),
        plain: fc.boolean(),
      })
      .map(({ route: r, idx: n, shape: s, picks, sessionRoute, plain }) => {
        const [template, paths, target] =
          s === 'handler'
            ? [this.envelope(n) as Json, ENVELOPE_PATHS, r]
            : s === 'create'
              ? [this.createBody(n) as Json, CREATE_PATHS, '/session/create']
              : [this.sessionBody() as Json, SESSION_PATHS, sessionRoute];
        let body: Json | undefined = template;
        const changed: string[] = [];
        for (const [which, v] of picks) {
          const path = paths[which % paths.length] ?? [];
          // A close route may only be a path: a URL would send the callback off this machine.
          const safe =
            path.at(-1) === 'on_close_route' && typeof v === 'string'
              ? SAFE_CLOSE_ROUTES[which % SAFE_CLOSE_ROUTES.length]
              : v;
          body = setPath(body, path, safe);
          changed.push(path.join('.') || '(body)');
        }
        return {
          kind: 'wrong-types',
          variant: `${target}: ${changed.join(', ')}`,
          route: target,
          listener: target === '/session/end' && plain ? 'plain' : 'main',
          body: Buffer.from(body === undefined ? '' : JSON.stringify(body)),
        };
      });
  }

  badChunking(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const framing: fc.Arbitrary<Framing> = fc.oneof(
      fc
        .array(fc.nat(), { minLength: 1, maxLength: 20 })
        .map((cuts) => ({ kind: 'chunked' as const, cuts })),
      fc
        .record({ variant: fc.constantFrom(...BROKEN_FRAMINGS), cut: fc.nat() })
        .map((b) => ({ kind: 'broken' as const, ...b })),
    );
    return fc.record({ route, idx, framing }).map(({ route: r, idx: n, framing: f }) => ({
      kind: 'bad-chunking',
      variant:
        f.kind === 'chunked'
          ? `valid chunks (${f.cuts.length + 1})`
          : f.kind === 'broken'
            ? f.variant
            : 'length',
      route: r,
      body: Buffer.from(JSON.stringify(this.envelope(n))),
      framing: f,
    }));
  }

  gzipGarbage(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const encoding = fc.constantFrom(
      'gzip',
      'deflate',
      'br',
      'x-gzip',
      'gzip, gzip',
      'compress',
      'zstd',
      'identity',
    );
    const body = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 4096 }).map((b) => ({
        variant: 'random bytes',
        bytes: Buffer.from(b),
      })),
      fc.uint8Array({ maxLength: 512 }).map((b) => ({
        variant: 'gzip magic, junk',
        bytes: Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), b]),
      })),
      idx.map((n) => ({
        variant: 'real gzip of a valid body',
        bytes: gzipSync(JSON.stringify(this.envelope(n))),
      })),
      fc.tuple(idx, fc.nat()).map(([n, cut]) => {
        const zipped = gzipSync(JSON.stringify(this.envelope(n)));
        return { variant: 'truncated gzip', bytes: zipped.subarray(0, cut % zipped.length) };
      }),
      fc.constant({ variant: 'gzip of 16 MiB of zeros', bytes: zeroBomb() }),
    );
    return fc.record({ route, encoding, body }).map(({ route: r, encoding: e, body: b }) => ({
      kind: 'gzip-garbage',
      variant: `${e}: ${b.variant}`,
      route: r,
      body: b.bytes,
      headers: [['content-encoding', e]],
    }));
  }

  forgedSignature(idx: fc.Arbitrary<number>, route: fc.Arbitrary<string>): fc.Arbitrary<Draft> {
    const real = Buffer.from(this.#ticket.signature, 'base64');
    const forged = fc.oneof(
      fc
        .uint8Array({ minLength: real.length, maxLength: real.length })
        .map((b) => ({ variant: 'random bytes', signature: Buffer.from(b).toString('base64') })),
      fc.nat({ max: real.length * 8 - 1 }).map((bit) => {
        const flipped = Buffer.from(real);
        flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ (1 << (bit & 7));
        return { variant: 'one bit flipped', signature: flipped.toString('base64') };
      }),
      fc.nat({ max: real.length - 1 }).map((n) => ({
        variant: 'truncated',
        signature: real.subarray(0, n).toString('base64'),
      })),
      fc.string({ maxLength: 50 }).map((s) => ({ variant: 'not base64', signature: `!${s}` })),
      fc.integer({ min: 1_000, max: 200_000 }).map((n) => ({
        variant: 'huge',
        signature: 'A'.repeat(n),
      })),
      fc.constant({ variant: 'empty', signature: '' }),
    );
    const otherUrl = fc
      .string({ minLength: 1, maxLength: 80 })
      .map((s) => ({ variant: 'signature for another url', url: `${this.#ticket.url}${s}` }));
    return fc
      .record({ route, idx, change: fc.oneof(forged, otherUrl) })
      .map(({ route: r, idx: n, change }) => {
        const envelope = this.envelope(n);
        const auth = envelope['auth_data'] as { [key: string]: Json };
        if ('signature' in change) auth['signature'] = change.signature;
        else auth['url'] = change.url;
        return {
          kind: 'forged-signature',
          variant: change.variant,
          route: r,
          body: Buffer.from(JSON.stringify(envelope)),
          mustBeUnauthorized: true,
        };
      });
  }
}

let zeroBombCache: Buffer | undefined;
function zeroBomb(): Buffer {
  zeroBombCache ??= gzipSync(Buffer.alloc(16 * 1024 * 1024));
  return zeroBombCache;
}

/** A copy of `value` with `path` set to `replacement` (`undefined` deletes it). */
function setPath(
  value: Json | undefined,
  path: readonly string[],
  replacement: Json | undefined,
): Json | undefined {
  if (path.length === 0) return replacement;
  const [head = '', ...rest] = path;
  const object: { [key: string]: Json | undefined } =
    typeof value === 'object' && value !== null && !Array.isArray(value) ? { ...value } : {};
  const next = setPath(object[head], rest, replacement);
  if (next === undefined) delete object[head];
  else object[head] = next;
  return object;
}

/** Splits `body` at the cut points (taken modulo its length), in order, without empty pieces. */
function split(body: Buffer, cuts: readonly number[]): Buffer[] {
  if (body.length === 0) return [body];
  const points = [...new Set(cuts.map((c) => c % body.length))].filter((p) => p > 0);
  points.sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of points) {
    pieces.push(body.subarray(from, point));
    from = point;
  }
  pieces.push(body.subarray(from));
  return pieces;
}

const chunk = (piece: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);

/** The request's bytes: head and framed body, one entry per write. */
function frame(draft: Draft): { wire: Buffer[]; halfClose: boolean } {
  const base: [string, string][] = [
    ['content-type', 'application/json'],
    ['connection', 'close'],
    ...(draft.headers ?? []).map(([n, v]): [string, string] => [n, v]),
  ];
  const body = draft.body;
  const framing = draft.framing ?? { kind: 'length' };
  const head = (extra: [string, string][]): Buffer =>
    requestHead('POST', draft.route, [...base, ...extra]);
  const chunked: [string, string] = ['transfer-encoding', 'chunked'];
  if (framing.kind === 'length') {
    return { wire: [head([['content-length', String(body.length)]]), body], halfClose: false };
  }
  if (framing.kind === 'chunked') {
    return {
      wire: [head([chunked]), ...split(body, framing.cuts).map(chunk), Buffer.from('0\r\n\r\n')],
      halfClose: false,
    };
  }
  // Where a lying length or chunk size says the body ends.
  const cutAt = framing.cut % (body.length + 1);
  const last = Buffer.from('0\r\n\r\n');
  const raw = (text: string): Buffer => Buffer.from(text, 'latin1');
  switch (framing.variant) {
    case 'bad-hex':
      return { wire: [head([chunked]), raw('zz\r\n'), body, raw('\r\n'), last], halfClose: false };
    case 'overflow-size':
      return {
        wire: [head([chunked]), raw('fffffffffffffffffffff\r\n'), body, raw('\r\n'), last],
        halfClose: true,
      };
    case 'negative-size':
      return { wire: [head([chunked]), raw('-5\r\n'), body, raw('\r\n'), last], halfClose: false };
    case 'size-too-big':
      return {
        wire: [
          head([chunked]),
          raw(`${(body.length + 10).toString(16)}\r\n`),
          body,
          raw('\r\n'),
          last,
        ],
        halfClose: true,
      };
    case 'size-too-small':
      return {
        wire: [
          head([chunked]),
          raw(`${Math.max(0, cutAt - 1).toString(16)}\r\n`),
          body,
          raw('\r\n'),
          last,
        ],
        halfClose: true,
      };
    case 'no-last-chunk':
      return { wire: [head([chunked]), chunk(body)], halfClose: true };
    case 'lf-only':
      return {
        wire: [head([chunked]), raw(`${body.length.toString(16)}\n`), body, raw('\n0\n\n')],
        halfClose: true,
      };
    case 'junk-extension':
      return {
        wire: [
          head([chunked]),
          raw(`${body.length.toString(16)};ext="\u0001junk\r\n`),
          body,
          raw('\r\n'),
          last,
        ],
        halfClose: true,
      };
    case 'length-and-chunked':
      return {
        wire: [head([['content-length', String(body.length)], chunked]), chunk(body), last],
        halfClose: true,
      };
    case 'te-gzip-chunked':
      return {
        wire: [head([['transfer-encoding', 'gzip, chunked']]), chunk(body), last],
        halfClose: true,
      };
    case 'te-chunked-twice':
      return {
        wire: [head([['transfer-encoding', 'chunked, chunked']]), chunk(body), last],
        halfClose: true,
      };
    case 'te-unknown':
      return { wire: [head([['transfer-encoding', 'sideways']]), body], halfClose: true };
    case 'length-short':
      // The rest of the body becomes a second, garbage request on the same connection.
      return {
        wire: [head([['content-length', String(cutAt)]]), body],
        halfClose: true,
      };
    case 'length-long':
      return {
        wire: [head([['content-length', String(body.length + 100)]]), body],
        halfClose: true,
      };
    case 'length-not-a-number':
      return { wire: [head([['content-length', 'abc']]), body], halfClose: true };
    case 'length-negative':
      return { wire: [head([['content-length', '-1']]), body], halfClose: true };
    case 'two-lengths':
      return {
        wire: [
          head([
            ['content-length', String(body.length)],
            ['content-length', String(body.length + 1)],
          ]),
          body,
        ],
        halfClose: true,
      };
    case 'trailer-junk':
      return {
        wire: [
          head([chunked]),
          chunk(body),
          raw('0\r\nx-junk: \u0001\u0002\r\nbad trailer\r\n\r\n'),
        ],
        halfClose: true,
      };
  }
}

/**
 * `count` hostile requests from `seed`, generated in batches (so a run never holds them all) and
 * always the same for the same seed, ticket url and count.
 */
export function* hostileRequests(
  ticket: Ticket,
  count: number,
  seed: number,
): Generator<HostileRequest> {
  const arbitrary = new Bodies(ticket).arbitrary;
  const BATCH = 250;
  for (let done = 0, batch = 0; done < count; batch++) {
    const size = Math.min(BATCH, count - done);
    for (const draft of fc.sample(arbitrary, { seed: seed + batch, numRuns: size })) {
      const { wire, halfClose } = frame(draft);
      yield {
        kind: draft.kind,
        variant: draft.variant,
        route: draft.route,
        listener: draft.listener ?? 'main',
        body: draft.body,
        wire,
        halfClose,
        mustBeUnauthorized: draft.mustBeUnauthorized ?? false,
      };
    }
    done += size;
  }
}
