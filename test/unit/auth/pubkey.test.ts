import { generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fetchPublicKey } from '../../../lib/auth/index.ts';

const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const SPKI_PEM = publicKey.export({ type: 'spki', format: 'pem' }) as string;
const PKCS1_PEM = publicKey.export({ type: 'pkcs1', format: 'pem' }) as string;
const FAILED = 'Failed to get Serverless public key after all retry attempts';

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(async (server) => {
      server.closeAllConnections();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    }),
  );
});

interface KeyServer {
  readonly url: string;
  /** `METHOD path` of every request received. */
  readonly requests: string[];
}

async function startServer(
  handle: (request: IncomingMessage, response: ServerResponse, index: number) => void,
): Promise<KeyServer> {
  const requests: string[] = [];
  const server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    handle(request, response, requests.length);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests };
}

/** Answers `status` with a short body `failures` times, then serves `body`. */
function keyServer(body: string, failures = 0, status = 500): Promise<KeyServer> {
  return startServer((_request, response, index) => {
    if (index <= failures) {
      response.writeHead(status).end('try again later');
    } else {
      response.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    }
  });
}

/** An address nothing listens on: a server's port, closed again. */
async function deadAddress(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

function samePublicKey(key: KeyObject): boolean {
  return key.equals(publicKey);
}

type Failure = { addr: string; attempt: number; error: string };

describe('fetchPublicKey', () => {
  it('fetches a PEM SubjectPublicKeyInfo key from GET <addr>/pubkey/', async () => {
    const server = await keyServer(SPKI_PEM);
    const key = await fetchPublicKey({ reportAddrs: [server.url] });
    expect(samePublicKey(key)).toBe(true);
    expect(server.requests).toEqual(['GET /pubkey/']);
  });

  it('accepts a PKCS#1 "RSA PUBLIC KEY" PEM', async () => {
    expect(PKCS1_PEM).toContain('BEGIN RSA PUBLIC KEY');
    const server = await keyServer(PKCS1_PEM);
    expect(samePublicKey(await fetchPublicKey({ reportAddrs: [server.url] }))).toBe(true);
  });

  it('trims trailing slashes from the report address', async () => {
    const server = await keyServer(SPKI_PEM);
    await fetchPublicKey({ reportAddrs: [`${server.url}///`] });
    expect(server.requests).toEqual(['GET /pubkey/']);
  });

  it('retries after non-2xx answers, backing off between rounds', async () => {
    const server = await keyServer(SPKI_PEM, 2, 503);
    const failures: Failure[] = [];
    const backoffs: number[] = [];
    const key = await fetchPublicKey({
      reportAddrs: [server.url],
      backoffMs: (attempt) => {
        backoffs.push(attempt);
        return 0;
      },
      onAttemptFailed: (info) => failures.push(info),
    });
    expect(samePublicKey(key)).toBe(true);
    expect(server.requests).toHaveLength(3);
    expect(backoffs).toEqual([1, 2]);
    expect(failures.map(({ addr, attempt }) => ({ addr, attempt }))).toEqual([
      { addr: server.url, attempt: 1 },
      { addr: server.url, attempt: 2 },
    ]);
    expect(failures[0]?.error).toContain('HTTP 503');
  });

  it('falls through a comma-separated list when the first address is dead', async () => {
    const dead = await deadAddress();
    const server = await keyServer(SPKI_PEM);
    const failures: Failure[] = [];
    const key = await fetchPublicKey({
      reportAddrs: `${dead},${server.url}`.split(','),
      backoffMs: () => 0,
      onAttemptFailed: (info) => failures.push(info),
    });
    expect(samePublicKey(key)).toBe(true);
    expect(failures.map(({ addr, attempt }) => ({ addr, attempt }))).toEqual([
      { addr: dead, attempt: 1 },
    ]);
  });

  it('skips the cloud API address, which serves no key', async () => {
    const server = await keyServer(SPKI_PEM);
    const failures: Failure[] = [];
    await fetchPublicKey({
      reportAddrs: ['https://cloud.vast.ai/api/v0', server.url],
      onAttemptFailed: (info) => failures.push(info),
    });
    expect(failures).toEqual([]);
  });

  it('throws the reference’s message with the last error as cause after all attempts', async () => {
    const server = await keyServer(SPKI_PEM, Infinity, 500);
    const failures: Failure[] = [];
    const error: unknown = await fetchPublicKey({
      reportAddrs: [server.url],
      attempts: 3,
      backoffMs: () => 0,
      onAttemptFailed: (info) => failures.push(info),
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(FAILED);
    expect(((error as Error).cause as Error).message).toContain('HTTP 500');
    expect(server.requests).toHaveLength(3);
    expect(failures.map(({ attempt }) => attempt)).toEqual([1, 2, 3]);
  });

  it('counts a body that is not a key as a failed attempt', async () => {
    const server = await keyServer('<html>not a key</html>');
    await expect(
      fetchPublicKey({ reportAddrs: [server.url], attempts: 2, backoffMs: () => 0 }),
    ).rejects.toThrow(FAILED);
    expect(server.requests).toHaveLength(2);
  });

  it('gives up on an address that does not answer within timeoutMs', async () => {
    // Never answers; afterEach closes the connection.
    const server = await startServer(() => undefined);
    const error: unknown = await fetchPublicKey({
      reportAddrs: [server.url],
      attempts: 1,
      timeoutMs: 50,
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe(FAILED);
    expect(((error as Error).cause as Error).name).toBe('TimeoutError');
  });

  it('fails without a request when no usable address is left', async () => {
    const error: unknown = await fetchPublicKey({
      reportAddrs: ['https://cloud.vast.ai/api/v0/'],
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe(FAILED);
  });

  it('stops during the backoff when the signal aborts', async () => {
    const server = await keyServer(SPKI_PEM, Infinity);
    const controller = new AbortController();
    const reason = new Error('shutting down');
    await expect(
      fetchPublicKey({
        reportAddrs: [server.url],
        backoffMs: () => 3_600_000,
        signal: controller.signal,
        onAttemptFailed: () => controller.abort(reason),
      }),
    ).rejects.toBe(reason);
    expect(server.requests).toHaveLength(1);
  });

  it('does not start when the signal is already aborted', async () => {
    const server = await keyServer(SPKI_PEM);
    const reason = new Error('already stopped');
    await expect(
      fetchPublicKey({ reportAddrs: [server.url], signal: AbortSignal.abort(reason) }),
    ).rejects.toBe(reason);
    expect(server.requests).toEqual([]);
  });
});
