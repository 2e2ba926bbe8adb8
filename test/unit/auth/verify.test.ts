import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  SignatureVerifier,
  canonicalMessage,
  parseJsonPreservingNumbers,
  signMessage,
} from '../../../lib/auth/index.ts';
import type { PyJsonValue } from '../../../lib/auth/index.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });

const WORKER_URL = 'http://203.0.113.7:40123';

function currentVerifier(): SignatureVerifier {
  const verifier = new SignatureVerifier({ mode: 'current' });
  verifier.setPublicKey(publicKey);
  return verifier;
}

function signUrl(url: string, key = privateKey): string {
  return signMessage(key, canonicalMessage({ url }, 'current'));
}

function currentAuth(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cost: 242.0,
    endpoint: 'my-endpoint',
    reqnum: 7,
    request_idx: 3,
    signature: signUrl(WORKER_URL),
    url: WORKER_URL,
    ...overrides,
  };
}

describe('SignatureVerifier in current mode', () => {
  it('accepts a signature over {"url": ...} and records the reqnum', () => {
    const verifier = currentVerifier();
    expect(verifier.maxReqnum).toBe(-1);
    expect(verifier.verify(currentAuth(), '')).toEqual({ ok: true });
    expect(verifier.maxReqnum).toBe(7);
  });

  it('signs exactly the bytes Python’s json.dumps produces', () => {
    const python = `{\n    "url": "${WORKER_URL}"\n}`;
    const verifier = currentVerifier();
    expect(
      verifier.verify(currentAuth({ signature: signMessage(privateKey, python) }), ''),
    ).toEqual({
      ok: true,
    });
  });

  it('rejects a signature made for another worker url', () => {
    const verifier = currentVerifier();
    const outcome = verifier.verify(
      currentAuth({ signature: signUrl('http://198.51.100.1:1') }),
      '',
    );
    expect(outcome).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifier.maxReqnum).toBe(-1);
  });

  it('rejects a signature made with another key', () => {
    const outcome = currentVerifier().verify(
      currentAuth({ signature: signUrl(WORKER_URL, other.privateKey) }),
      '',
    );
    expect(outcome.ok).toBe(false);
  });

  it('rejects malformed base64 with the decoder’s reason', () => {
    const verifier = currentVerifier();
    expect(verifier.verify(currentAuth({ signature: 'QUI' }), '')).toEqual({
      ok: false,
      reason: 'malformed signature: Incorrect padding',
    });
    expect(verifier.verify(currentAuth({ signature: 'QUJDR' }), '')).toMatchObject({
      ok: false,
      reason: expect.stringContaining('cannot be 1 more than a multiple of 4') as unknown,
    });
    expect(verifier.verify(currentAuth({ signature: `${signUrl(WORKER_URL)}é` }), '')).toEqual({
      ok: false,
      reason: 'malformed signature: string argument should contain only ASCII characters',
    });
  });

  it('decodes base64 as leniently as Python’s b64decode', () => {
    const verifier = currentVerifier();
    const signature = signUrl(WORKER_URL);
    // Line breaks and other non-alphabet characters are skipped; input after the padding is ignored.
    const wrapped = signature.replace(/(.{64})/g, '$1\n') + 'trailing!';
    expect(signature.endsWith('==')).toBe(true);
    expect(verifier.verify(currentAuth({ signature: wrapped }), '')).toEqual({ ok: true });
    expect(verifier.verify(currentAuth({ signature: ` *${signature}` }), '')).toEqual({ ok: true });
  });

  it('rejects a signature that is not a string', () => {
    const verifier = currentVerifier();
    expect(verifier.verify(currentAuth({ signature: 12345 }), '')).toEqual({
      ok: false,
      reason: 'auth_data.signature must be a string',
    });
    expect(verifier.verify(currentAuth({ signature: undefined }), '').ok).toBe(false);
  });

  it('rejects a url that is not a string', () => {
    const outcome = currentVerifier().verify(currentAuth({ url: ['http://x'] }), '');
    expect(outcome).toEqual({ ok: false, reason: 'auth_data.url must be a string' });
  });

  it('rejects everything until a public key is loaded', () => {
    const verifier = new SignatureVerifier({ mode: 'current' });
    expect(verifier.hasKey).toBe(false);
    expect(verifier.verify(currentAuth(), '')).toEqual({
      ok: false,
      reason: 'public key not loaded',
    });
    verifier.setPublicKey(publicKey);
    expect(verifier.hasKey).toBe(true);
    expect(verifier.verify(currentAuth(), '')).toEqual({ ok: true });
  });

  it('refuses a key that is not RSA', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => new SignatureVerifier({ mode: 'current' }).setPublicKey(ec.publicKey)).toThrow(
      TypeError,
    );
  });

  it('gives the same verdict again from the cache, good or bad', () => {
    const verifier = currentVerifier();
    const bad = currentAuth({ signature: signUrl(WORKER_URL, other.privateKey) });
    for (let round = 0; round < 3; round++) {
      expect(verifier.verify(currentAuth({ reqnum: round }), '')).toEqual({ ok: true });
      expect(verifier.verify(bad, '').ok).toBe(false);
    }
    expect(verifier.maxReqnum).toBe(2);
  });

  it('does not confuse two signatures for the same url', () => {
    const verifier = currentVerifier();
    const bad = currentAuth({ signature: signUrl(WORKER_URL, other.privateKey) });
    expect(verifier.verify(bad, '').ok).toBe(false);
    expect(verifier.verify(currentAuth(), '')).toEqual({ ok: true });
    expect(verifier.verify(bad, '').ok).toBe(false);
  });

  it('does not confuse one signature over two urls', () => {
    const verifier = currentVerifier();
    const signature = signUrl(WORKER_URL);
    expect(verifier.verify(currentAuth({ signature }), '')).toEqual({ ok: true });
    expect(verifier.verify(currentAuth({ signature, url: `${WORKER_URL}/` }), '').ok).toBe(false);
  });

  it('does not let a url with a NUL pass for a cached (url, signature) pair', () => {
    // The cache is keyed by url and signature, not by the message: a key joined only by a NUL
    // would let this pair reuse the verdict of (WORKER_URL, signature).
    // A NUL inside the signature is skipped by the lenient base64 decoder, so it still verifies.
    const verifier = currentVerifier();
    const valid = signUrl(WORKER_URL);
    const signature = `${valid.slice(0, 8)}\0${valid.slice(8)}`;
    expect(verifier.verify(currentAuth({ signature }), '')).toEqual({ ok: true });
    const forged = currentAuth({
      url: `${WORKER_URL}\0${valid.slice(0, 8)}`,
      signature: valid.slice(8),
    });
    expect(verifier.verify(forged, '').ok).toBe(false);
  });

  it('forgets cached verdicts when the key changes', () => {
    const verifier = currentVerifier();
    expect(verifier.verify(currentAuth(), '')).toEqual({ ok: true });
    verifier.setPublicKey(other.publicKey);
    expect(verifier.verify(currentAuth(), '').ok).toBe(false);
  });

  it('keeps giving correct verdicts once the cache is full', () => {
    const verifier = new SignatureVerifier({ mode: 'current', cacheSize: 2 });
    verifier.setPublicKey(publicKey);
    const urls = ['http://a', 'http://b', 'http://c', 'http://a', 'http://c'];
    for (const url of urls) {
      expect(verifier.verify(currentAuth({ url, signature: signUrl(url) }), '')).toEqual({
        ok: true,
      });
      expect(verifier.verify(currentAuth({ url, signature: signUrl('http://z') }), '').ok).toBe(
        false,
      );
    }
  });

  it('rejects invalid options', () => {
    expect(() => new SignatureVerifier({ mode: 'current', cacheSize: -1 })).toThrow(RangeError);
    expect(() => new SignatureVerifier({ mode: 'legacy', replayWindow: 1.5 })).toThrow(RangeError);
  });
});

/** A request body whose auth_data is written exactly as `fields` says, lexemes included. */
function legacyBody(fields: Record<string, string>, signature: string): string {
  const entries = Object.entries({ ...fields, signature: JSON.stringify(signature) });
  const authData = entries.map(([key, raw]) => `${JSON.stringify(key)}: ${raw}`).join(', ');
  return `{"auth_data": {${authData}}, "payload": {"prompt": "hi"}}`;
}

/** Signs the legacy message the way Python would build it from the raw JSON lexemes. */
function signLegacy(fields: Record<string, string>, key = privateKey): string {
  const text = `{${Object.entries(fields)
    .map(([k, raw]) => `${JSON.stringify(k)}: ${raw}`)
    .join(', ')}}`;
  const parsed = parseJsonPreservingNumbers(text) as { readonly [key: string]: PyJsonValue };
  return signMessage(key, canonicalMessage(parsed, 'legacy'));
}

function legacyRequest(reqnum: number, extra: Record<string, string> = {}): string {
  const fields = {
    cost: '242.0',
    endpoint: '"my-endpoint"',
    reqnum: String(reqnum),
    request_idx: '1',
    url: JSON.stringify(WORKER_URL),
    ...extra,
  };
  return legacyBody(fields, signLegacy(fields));
}

function legacyVerifier(options: { historySize?: number } = {}): SignatureVerifier {
  const verifier = new SignatureVerifier({ mode: 'legacy', ...options });
  verifier.setPublicKey(publicKey);
  return verifier;
}

describe('SignatureVerifier in legacy mode', () => {
  it('accepts a float cost written as 242.0, which JS number formatting would lose', () => {
    // What Python's json.dumps(message, indent=4, sort_keys=True) gives for this auth_data.
    const python = [
      '{',
      '    "cost": 242.0,',
      '    "endpoint": "my-endpoint",',
      '    "reqnum": 5,',
      '    "request_idx": 1,',
      `    "url": "${WORKER_URL}"`,
      '}',
    ].join('\n');
    const fields = {
      cost: '242.0',
      endpoint: '"my-endpoint"',
      reqnum: '5',
      request_idx: '1',
      url: JSON.stringify(WORKER_URL),
    };
    const rawBody = legacyBody(fields, signMessage(privateKey, python));
    expect(legacyVerifier().verify({}, rawBody)).toEqual({ ok: true });

    // The JS route (JSON.parse, then format) signs "242", so its signature does not verify.
    const parsed = JSON.parse(rawBody) as { auth_data: { [key: string]: PyJsonValue } };
    const jsMessage = canonicalMessage(parsed.auth_data, 'legacy');
    expect(jsMessage).toContain('"cost": 242,');
    expect(python).toContain('"cost": 242.0,');
    const jsSigned = legacyBody({ ...fields, reqnum: '6' }, signMessage(privateKey, jsMessage));
    expect(legacyVerifier().verify({}, jsSigned).ok).toBe(false);
  });

  it('accepts huge integers and drops unsigned extra keys', () => {
    const fields = {
      cost: '12345678901234567890123',
      endpoint: '"e"',
      reqnum: '3',
      url: JSON.stringify(WORKER_URL),
    };
    const rawBody = legacyBody(fields, signLegacy(fields)).replace(
      '"auth_data": {',
      '"auth_data": {"__request_id": "abc", ',
    );
    const verifier = legacyVerifier();
    expect(verifier.verify({}, rawBody)).toEqual({ ok: true });
    expect(verifier.maxReqnum).toBe(3);
  });

  it('rejects a replay of an accepted message', () => {
    const verifier = legacyVerifier();
    const rawBody = legacyRequest(10);
    expect(verifier.verify({}, rawBody)).toEqual({ ok: true });
    expect(verifier.verify({}, rawBody)).toEqual({
      ok: false,
      reason: 'duplicate auth_data: message already accepted',
    });
  });

  it('rejects a reqnum more than 100 below the highest seen and accepts one within', () => {
    const verifier = legacyVerifier();
    expect(verifier.verify({}, legacyRequest(200))).toEqual({ ok: true });
    expect(verifier.maxReqnum).toBe(200);
    const outcome = verifier.verify({}, legacyRequest(99));
    expect(outcome.ok).toBe(false);
    expect(outcome.ok ? '' : outcome.reason).toContain('replay window');
    expect(verifier.verify({}, legacyRequest(100))).toEqual({ ok: true });
    expect(verifier.verify({}, legacyRequest(150))).toEqual({ ok: true });
    expect(verifier.maxReqnum).toBe(200);
  });

  it('remembers only the last historySize accepted messages', () => {
    const verifier = legacyVerifier({ historySize: 2 });
    for (const reqnum of [1, 2, 3])
      expect(verifier.verify({}, legacyRequest(reqnum)).ok).toBe(true);
    expect(verifier.verify({}, legacyRequest(3)).ok).toBe(false);
    expect(verifier.verify({}, legacyRequest(1))).toEqual({ ok: true });
  });

  it('does not record a rejected signature as seen', () => {
    const verifier = legacyVerifier();
    const fields = { cost: '1', endpoint: '"e"', reqnum: '500', url: '"u"' };
    const forged = legacyBody(fields, signLegacy(fields, other.privateKey));
    expect(verifier.verify({}, forged)).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifier.maxReqnum).toBe(-1);
    expect(verifier.verify({}, legacyRequest(1))).toEqual({ ok: true });
  });

  it('accepts the older format without request_idx', () => {
    const fields = { cost: '0.5', endpoint: '"e"', reqnum: '1', url: '"u"' };
    expect(legacyVerifier().verify({}, legacyBody(fields, signLegacy(fields)))).toEqual({
      ok: true,
    });
  });

  it('rejects a reqnum that is not an integer', () => {
    const verifier = legacyVerifier();
    expect(verifier.verify({}, legacyRequest(1, { reqnum: '1.0' }))).toEqual({
      ok: false,
      reason: 'auth_data.reqnum must be an integer',
    });
    expect(verifier.verify({}, legacyRequest(1, { reqnum: '"1"' })).ok).toBe(false);
  });

  it('rejects a missing field, a missing auth_data and a body that is not JSON', () => {
    const verifier = legacyVerifier();
    const fields = { cost: '1', reqnum: '1', url: '"u"' };
    expect(
      verifier.verify({}, legacyBody(fields, signLegacy({ ...fields, endpoint: '"e"' }))),
    ).toEqual({ ok: false, reason: 'auth_data.endpoint is missing' });
    expect(verifier.verify({}, '{"payload": {}}')).toEqual({
      ok: false,
      reason: 'auth_data must be an object',
    });
    expect(verifier.verify({}, '{"auth_data": ')).toEqual({
      ok: false,
      reason: 'request body is not valid JSON',
    });
  });

  it('rejects everything until a public key is loaded', () => {
    const verifier = new SignatureVerifier({ mode: 'legacy' });
    expect(verifier.verify({}, legacyRequest(1))).toEqual({
      ok: false,
      reason: 'public key not loaded',
    });
  });
});
