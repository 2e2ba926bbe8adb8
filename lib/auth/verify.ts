import { constants, verify as rsaVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { canonicalMessage } from './canonical.ts';
import type { AuthMode } from './canonical.ts';
import { PyFloat, PyInt, parseJsonPreservingNumbers } from './python-json.ts';
import type { PyJsonValue } from './python-json.ts';

export type VerifyOutcome = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface SignatureVerifierOptions {
  mode: AuthMode;
  /** Legacy: reject a reqnum more than this far below the highest accepted one. @default 100 */
  replayWindow?: number;
  /** Legacy: how many accepted messages are remembered to reject repeats. @default 100 */
  historySize?: number;
  /** Current: how many verdicts are cached; 0 turns the cache off. @default 1024 */
  cacheSize?: number;
}

const ACCEPTED: VerifyOutcome = Object.freeze({ ok: true });
const MISMATCH: VerifyOutcome = Object.freeze({ ok: false, reason: 'signature does not match' });

// An RSA-16384 signature is 2,732 base64 characters; longer keys are not worth caching, and the cap
// keeps a flood of huge urls from pinning megabytes in the cache.
const MAX_CACHED_KEY_LENGTH = 8192;

function reject(reason: string): VerifyOutcome {
  return { ok: false, reason };
}

/**
 * Checks the signed `auth_data` ticket of a request (protocol §4, legacy §6.3).
 *
 * In `current` mode the signed message is only `{"url": ...}`, so every request to a worker carries
 * the same signature; verdicts are cached per (url, signature) and the RSA check runs once per
 * key. In `legacy` mode every field but `signature` is signed, reqnums outside the window and exact
 * repeats of recently accepted messages are rejected, and nothing is cached.
 *
 * @example
 * const verifier = new SignatureVerifier({ mode: 'current' });
 * verifier.setPublicKey(await fetchPublicKey({ reportAddrs }));
 * const outcome = verifier.verify(body.auth_data, rawBody);
 * if (!outcome.ok) throw unauthorized(outcome.reason);
 */
export class SignatureVerifier {
  readonly #mode: AuthMode;
  readonly #replayWindow: bigint;
  readonly #historySize: number;
  readonly #cacheSize: number;
  #key: KeyObject | undefined;
  #maxReqnum = -1n;
  /** Verdicts by url (length-prefixed) and signature; Map order makes it an O(1) LRU. */
  readonly #cache = new Map<string, boolean>();
  /** Accepted legacy messages, oldest first; duplicates never get in, so a Set is enough. */
  readonly #history = new Set<string>();

  constructor(options: SignatureVerifierOptions) {
    this.#mode = options.mode;
    this.#replayWindow = BigInt(nonNegativeInteger('replayWindow', options.replayWindow ?? 100));
    this.#historySize = nonNegativeInteger('historySize', options.historySize ?? 100);
    this.#cacheSize = nonNegativeInteger('cacheSize', options.cacheSize ?? 1024);
  }

  /** Installs the autoscaler's RSA public key and forgets verdicts made under the old one. */
  setPublicKey(key: KeyObject): void {
    if (key.asymmetricKeyType !== 'rsa') {
      throw new TypeError(`expected an RSA key, got ${key.asymmetricKeyType ?? key.type}`);
    }
    this.#key = key;
    this.#cache.clear();
  }

  get hasKey(): boolean {
    return this.#key !== undefined;
  }

  /** The highest reqnum of an accepted request, -1 before the first. Stored, as the reference does. */
  get maxReqnum(): number {
    return Number(this.#maxReqnum);
  }

  /**
   * @param authData the request's `auth_data` as the body parser produced it (current mode)
   * @param rawBody the request body text; legacy mode re-reads `auth_data` from it, because the
   *   signed message depends on how each number was written (`242.0` is not `242`)
   */
  verify(authData: { readonly [key: string]: unknown }, rawBody: string): VerifyOutcome {
    const key = this.#key;
    if (key === undefined) return reject('public key not loaded');
    return this.#mode === 'current'
      ? this.#verifyCurrent(key, authData)
      : this.#verifyLegacy(key, rawBody);
  }

  #verifyCurrent(key: KeyObject, authData: { readonly [key: string]: unknown }): VerifyOutcome {
    const signature = authData['signature'];
    const url = authData['url'];
    if (typeof signature !== 'string') return reject('auth_data.signature must be a string');
    if (typeof url !== 'string') return reject('auth_data.url must be a string');
    // The signed message is a function of the url alone, and one-to-one (canonicalMessage), so
    // (url, signature) names exactly what the RSA check saw: the cache is looked up before the
    // message is built. The url's length goes first, so no url or signature (either may hold a
    // NUL) can pass for another pair.
    const cacheKey = `${url.length}:${url}\0${signature}`;
    let outcome: VerifyOutcome;
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) {
      // Recency matters only once evictions are near; until then a hit is one lookup, no moves.
      if (this.#cache.size * 2 >= this.#cacheSize) {
        this.#cache.delete(cacheKey);
        this.#cache.set(cacheKey, cached);
      }
      outcome = cached ? ACCEPTED : MISMATCH;
    } else {
      outcome = checkRsa(key, canonicalMessage({ url }, 'current'), signature);
      // Malformed base64 is cheap to re-detect; only RSA verdicts are worth a slot.
      if (outcome === ACCEPTED || outcome === MISMATCH) this.#remember(cacheKey, outcome.ok);
    }

    if (outcome.ok) {
      const reqnum = integerValue(authData['reqnum']);
      if (reqnum !== undefined && reqnum > this.#maxReqnum) this.#maxReqnum = reqnum;
    }
    return outcome;
  }

  #remember(cacheKey: string, verdict: boolean): void {
    if (this.#cacheSize === 0 || cacheKey.length > MAX_CACHED_KEY_LENGTH) return;
    if (this.#cache.size >= this.#cacheSize) {
      const oldest = this.#cache.keys().next();
      if (oldest.done !== true) this.#cache.delete(oldest.value);
    }
    this.#cache.set(cacheKey, verdict);
  }

  #verifyLegacy(key: KeyObject, rawBody: string): VerifyOutcome {
    let body: PyJsonValue;
    try {
      body = parseJsonPreservingNumbers(rawBody);
    } catch {
      return reject('request body is not valid JSON');
    }
    if (!isDict(body)) return reject('request body is not a JSON object');
    const authData = body['auth_data'];
    if (authData === undefined || !isDict(authData)) return reject('auth_data must be an object');

    const signature = authData['signature'];
    if (typeof signature !== 'string') return reject('auth_data.signature must be a string');
    const reqnum = integerValue(authData['reqnum']);
    if (reqnum === undefined) return reject('auth_data.reqnum must be an integer');
    let message: string;
    try {
      message = canonicalMessage(authData, 'legacy');
    } catch (error) {
      // A missing field, or nesting too deep to serialise (Python's json.loads would refuse it too).
      return reject(error instanceof TypeError ? error.message : 'auth_data cannot be serialised');
    }

    // Same order as the reference: window, then history, then the RSA check.
    if (reqnum < this.#maxReqnum - this.#replayWindow) {
      return reject(
        `reqnum ${reqnum} is outside the replay window (more than ${this.#replayWindow} below ${this.#maxReqnum})`,
      );
    }
    if (this.#history.has(message)) return reject('duplicate auth_data: message already accepted');
    const outcome = checkRsa(key, message, signature);
    if (!outcome.ok) return outcome;

    if (reqnum > this.#maxReqnum) this.#maxReqnum = reqnum;
    if (this.#historySize > 0) {
      this.#history.add(message);
      if (this.#history.size > this.#historySize) {
        const oldest = this.#history.values().next();
        if (oldest.done !== true) this.#history.delete(oldest.value);
      }
    }
    return outcome;
  }
}

function checkRsa(key: KeyObject, message: string, signature: string): VerifyOutcome {
  let bytes: Buffer;
  try {
    bytes = pythonB64Decode(signature);
  } catch (error) {
    return reject(`malformed signature: ${(error as Error).message}`);
  }
  try {
    const data = Buffer.from(message, 'utf8');
    const ok = rsaVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PADDING }, bytes);
    return ok ? ACCEPTED : MISMATCH;
  } catch {
    // OpenSSL can throw instead of returning false for a signature of the wrong length.
    return MISMATCH;
  }
}

function isDict(value: PyJsonValue): value is { readonly [key: string]: PyJsonValue } {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof PyInt) &&
    !(value instanceof PyFloat)
  );
}

function integerValue(value: unknown): bigint | undefined {
  if (value instanceof PyInt) return value.toBigInt();
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  return undefined;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

// Standard alphabet → 6-bit value; everything else is 255 (discarded, as Python does).
const B64 = new Uint8Array(128).fill(255);
for (const [index, char] of [
  ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/',
].entries()) {
  B64[char.charCodeAt(0)] = index;
}

/**
 * Python's `base64.b64decode(s)` (binascii non-strict mode), which the reference uses: characters
 * outside the alphabet are skipped, decoding stops at the first complete padding, and a partial
 * final quantum is an error. Node's `Buffer.from(s, 'base64')` never fails, so it cannot be used.
 */
function pythonB64Decode(s: string): Buffer {
  // Python encodes the whole str to ASCII first, so this holds even past the padding.
  if (/[\u0080-\uffff]/.test(s)) {
    throw new Error('string argument should contain only ASCII characters');
  }
  const out = Buffer.allocUnsafe(Math.floor((s.length * 3) / 4) + 3);
  let length = 0;
  let quadPos = 0;
  let leftChar = 0;
  let pads = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x3d /* = */) {
      // Padding counts only once two data characters of the quantum are in.
      if (quadPos >= 2 && quadPos + ++pads >= 4) return out.subarray(0, length);
      continue;
    }
    const v = B64[c] as number;
    if (v === 255) continue;
    pads = 0;
    switch (quadPos) {
      case 0:
        leftChar = v;
        quadPos = 1;
        break;
      case 1:
        out[length++] = ((leftChar << 2) | (v >> 4)) & 0xff;
        leftChar = v & 0x0f;
        quadPos = 2;
        break;
      case 2:
        out[length++] = ((leftChar << 4) | (v >> 2)) & 0xff;
        leftChar = v & 0x03;
        quadPos = 3;
        break;
      default:
        out[length++] = ((leftChar << 6) | v) & 0xff;
        quadPos = 0;
    }
  }
  if (quadPos === 1) {
    throw new Error(
      `Invalid base64-encoded string: number of data characters (${Math.floor(length / 3) * 4 + 1}) cannot be 1 more than a multiple of 4`,
    );
  }
  if (quadPos !== 0) throw new Error('Incorrect padding');
  return out.subarray(0, length);
}
