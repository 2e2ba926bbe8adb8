import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartupError } from '../../lib/entry-server.ts';
import { loadConfig, startWorker } from '../../lib/entry-server.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

let dir: string;
let certFile: string;
let keyFile: string;

/** A self-signed pair for 127.0.0.1, made with openssl as an operator would. */
function makePair(name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tsworker-tls-'));
  ({ cert: certFile, key: keyFile } = makePair('instance'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('USE_SSL=true', () => {
  let stack: TestStack;
  let agent: Agent;
  beforeAll(async () => {
    stack = await startStack({
      env: { USE_SSL: 'true', SSL_CERT_FILE: certFile, SSL_KEY_FILE: keyFile },
    });
    // Trust exactly the generated certificate, as the vastai client trusts only Vast's CA.
    agent = new Agent({ connect: { ca: readFileSync(certFile) } });
  });
  afterAll(async () => {
    await agent.close();
    await stack.close();
  });

  it('serves the main listener over HTTPS with the configured pair', async () => {
    expect(stack.worker.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const response = await request(`${stack.worker.url}/health/live`, { dispatcher: agent });
    expect(response.statusCode).toBe(200);
    expect(await response.body.json()).toEqual({ status: 'alive' });
  });

  it('serves signed requests over HTTPS end to end', async () => {
    const response = await request(`${stack.worker.url}/generate`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
        payload: { prompt: 'over tls', max_response_tokens: 2 },
      }),
    });
    expect(response.statusCode).toBe(200);
    expect(await response.body.json()).toMatchObject({ tokens: 2 });
  });

  it('does not answer plain HTTP on the main port', async () => {
    await expect(
      post(`${stack.worker.url.replace('https:', 'http:')}/health/live`, ''),
    ).rejects.toThrow();
  });

  it('keeps the /session/end listener on plain HTTP', async () => {
    expect(stack.worker.httpUrl).toMatch(/^http:\/\//);
    const response = await post(`${stack.worker.httpUrl}/session/end`, { session_id: 'none' });
    expect(response.status).toBe(400);
  });

  it('reports an https:// URL to the autoscaler', async () => {
    expect(stack.worker.publicUrl()).toMatch(/^https:\/\//);
    const report = await stack.autoscaler.waitForReport((body) => body.url.startsWith('https://'));
    expect(report.url).toBe(stack.worker.publicUrl());
  });
});

describe('a TLS pair that cannot be loaded', () => {
  const start = (env: Record<string, string>) =>
    startWorker(
      helloWorld,
      loadConfig({
        UNSECURED: 'true',
        WORKER_PORT: '0',
        WORKER_HOST: '127.0.0.1',
        USE_SSL: 'true',
        ...env,
      }),
    );

  it('stops start-up with "Failed to get SSL Certificate" when the certificate file is missing', async () => {
    const failure = start({ SSL_CERT_FILE: join(dir, 'missing.crt'), SSL_KEY_FILE: keyFile });
    await expect(failure).rejects.toThrow(StartupError);
    await expect(failure).rejects.toThrow(/^Failed to get SSL Certificate: .*ENOENT/);
  });

  it('stops start-up when the certificate is not PEM (an error body saved as the cert)', async () => {
    const garbage = join(dir, 'garbage.crt');
    writeFileSync(garbage, '{"error": "instance not found"}');
    await expect(start({ SSL_CERT_FILE: garbage, SSL_KEY_FILE: keyFile })).rejects.toThrow(
      /SSL Certificate/,
    );
  });

  it('stops start-up when the key does not belong to the certificate', async () => {
    const other = makePair('other');
    await expect(start({ SSL_CERT_FILE: certFile, SSL_KEY_FILE: other.key })).rejects.toThrow(
      /SSL Certificate/,
    );
  });
});
