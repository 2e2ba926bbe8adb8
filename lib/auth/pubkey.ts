import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { trimTrailingSlashes, errorMessage } from '../internal/values.ts';

// Metrics never reports to the cloud API address either (protocol §8.3); it serves no /pubkey/.
const CLOUD_API_ADDR = 'https://cloud.vast.ai/api/v0';

export interface FetchPublicKeyOptions {
  /** Autoscaler base URLs, already split from `REPORT_ADDR`; tried in order each round. */
  reportAddrs: readonly string[];
  /** Rounds over all addresses. @default 5 */
  attempts?: number;
  /** Pause after failed round `attempt` (1-based). @default 1000 · 2^(attempt-1): 1, 2, 4, 8 s */
  backoffMs?: (attempt: number) => number;
  /** Whole-request timeout per address, body included. @default 10000 */
  timeoutMs?: number;
  /** Stops the fetch, including a pending backoff; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called for every address that fails, e.g. to log it. */
  onAttemptFailed?: (info: { addr: string; attempt: number; error: string }) => void;
}

/**
 * Fetches the autoscaler's RSA public key from `GET <addr>/pubkey/` (protocol §4), trying every
 * report address in order instead of the reference's whole comma-joined string (§12.4).
 *
 * @throws Error "Failed to get Serverless public key after all retry attempts" (the reference's
 *   text), with the last failure as `cause`.
 * @example
 * const key = await fetchPublicKey({ reportAddrs: process.env.REPORT_ADDR.split(',') });
 */
export async function fetchPublicKey(options: FetchPublicKeyOptions): Promise<KeyObject> {
  const attempts = options.attempts ?? 5;
  const backoffMs = options.backoffMs ?? ((attempt: number) => 1000 * 2 ** (attempt - 1));
  const timeoutMs = options.timeoutMs ?? 10_000;
  const { signal } = options;
  const addrs = options.reportAddrs
    .map((addr) => trimTrailingSlashes(addr))
    .filter((addr) => addr !== CLOUD_API_ADDR);

  let lastError: unknown = new Error('no report address to fetch the public key from');
  for (let attempt = 1; addrs.length > 0 && attempt <= attempts; attempt++) {
    for (const addr of addrs) {
      signal?.throwIfAborted();
      try {
        return await fetchOnce(addr, timeoutMs, signal);
      } catch (error) {
        signal?.throwIfAborted();
        lastError = error;
        options.onAttemptFailed?.({ addr, attempt, error: errorMessage(error) });
      }
    }
    if (attempt < attempts) {
      await sleep(backoffMs(attempt), undefined, signal === undefined ? {} : { signal }).catch(
        (error: unknown) => {
          signal?.throwIfAborted();
          throw error;
        },
      );
    }
  }
  throw new Error('Failed to get Serverless public key after all retry attempts', {
    cause: lastError,
  });
}

async function fetchOnce(
  addr: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<KeyObject> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const { statusCode, body } = await request(`${addr}/pubkey/`, {
    method: 'GET',
    signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
    // A one-off fetch: do not leave a keep-alive socket to the autoscaler in the pool.
    reset: true,
  });
  if (statusCode < 200 || statusCode > 299) {
    await body.dump();
    throw new Error(`GET ${addr}/pubkey/ answered HTTP ${statusCode}`);
  }
  const key = createPublicKey(await body.text());
  if (key.asymmetricKeyType !== 'rsa') {
    throw new Error(`GET ${addr}/pubkey/ returned a ${key.asymmetricKeyType ?? 'non-RSA'} key`);
  }
  return key;
}
