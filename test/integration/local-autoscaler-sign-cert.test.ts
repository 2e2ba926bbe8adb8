import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { get, post } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const SCRIPT = fileURLToPath(new URL('../../start_server.sh', import.meta.url));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("the local autoscaler's /sign_cert/", () => {
  let autoscaler: LocalAutoscaler;
  let dir: string;
  const pids: number[] = [];
  beforeAll(async () => {
    autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    dir = mkdtempSync(join(tmpdir(), 'tsworker-sign-cert-'));
  });
  afterAll(async () => {
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await autoscaler.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('signs a CSR like the one start_server.sh makes with a local CA served at /ca.crt', async () => {
    // start_server.sh's request: an RSA key, CN pyworker.vast.ai.
    execFileSync(
      'openssl',
      [
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-sha256',
        '-subj',
        '/C=US/ST=CA/CN=pyworker.vast.ai/',
        '-keyout',
        join(dir, 'instance.key'),
        '-out',
        join(dir, 'instance.csr'),
      ],
      { stdio: 'ignore' },
    );
    const response = await request(`${autoscaler.url}/sign_cert/?instance_id=51`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: readFileSync(join(dir, 'instance.csr')),
    });
    expect(response.statusCode).toBe(200);
    const certificate = new X509Certificate(await response.body.text());

    const caPem = (await get(`${autoscaler.url}/ca.crt`)).text;
    expect(caPem).toBe(await autoscaler.caCertificate());
    const ca = new X509Certificate(caPem);
    expect(ca.ca).toBe(true);
    expect(certificate.ca).toBe(false);
    expect(certificate.checkIssued(ca)).toBe(true);
    expect(certificate.verify(ca.publicKey)).toBe(true);
    // The key is the CSR's; the names cover loopback, so a client that trusts the CA verifies them.
    expect(certificate.publicKey.export({ type: 'spki', format: 'der' }).toString('hex')).toBe(
      createPublicKey(readFileSync(join(dir, 'instance.key')))
        .export({ type: 'spki', format: 'der' })
        .toString('hex'),
    );
    expect(certificate.subject).toContain('CN=pyworker.vast.ai');
    expect(certificate.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(certificate.checkHost('localhost')).toBe('localhost');
    expect(autoscaler.records.certificates.at(-1)).toMatchObject({
      instanceId: '51',
      status: 200,
      detail: expect.stringContaining('CN = pyworker.vast.ai'),
    });
  });

  it('answers 400 to a body that is not a CSR, and records the refusal', async () => {
    const notPem = await post(`${autoscaler.url}/sign_cert/?instance_id=52`, 'hello');
    expect(notPem.status).toBe(400);
    expect(notPem.json()).toEqual({
      error: 'the body is not a PEM certificate signing request',
    });
    const broken = await post(
      `${autoscaler.url}/api/v0/sign_cert/?instance_id=53`,
      '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
    );
    expect(broken.status).toBe(400);
    expect(autoscaler.records.certificates.slice(-2)).toMatchObject([
      { instanceId: '52', status: 400 },
      { instanceId: '53', status: 400 },
    ]);
  });

  it('lets start_server.sh with USE_SSL=true be rehearsed on loopback: the worker serves HTTPS a client verifies with the CA', async () => {
    const workspace = mkdtempSync(join(dir, 'ws-'));
    const child = spawn('bash', [SCRIPT], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: workspace,
        WORKSPACE_DIR: workspace,
        BACKEND: 'hello_world',
        MODEL_LOG: join(workspace, 'model.log'),
        REPORT_ADDR: autoscaler.url,
        CONTAINER_ID: '54',
        PUBLIC_IPADDR: '127.0.0.1',
        UNSECURED: 'true',
        WORKER_PORT: '0',
        WORKER_HOST: '127.0.0.1',
        MODEL_SERVER_URL: 'http://127.0.0.1:9',
        BENCHMARK_CACHE: join(workspace, '.has_benchmark'),
        USE_SSL: 'true',
        SSL_CERT_URL: `${autoscaler.url}/sign_cert/?instance_id=54`,
        SSL_CERT_FILE: join(workspace, 'tls', 'instance.crt'),
        SSL_KEY_FILE: join(workspace, 'tls', 'instance.key'),
      },
      stdio: 'ignore',
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, readFileSync(join(workspace, 'debug.log'), 'utf8')).toBe(0);
    expect(autoscaler.records.certificates.at(-1)).toMatchObject({ instanceId: '54', status: 200 });

    const pid = Number(readFileSync(join(workspace, 'tsworker.pid'), 'utf8').trim());
    pids.push(pid);
    const logFile = join(workspace, 'tsworker.log');
    const url = await waitFor(
      () => {
        if (!existsSync(logFile)) return undefined;
        const line = readFileSync(logFile, 'utf8')
          .split('\n')
          .find((text) => text.includes('"worker listening"'));
        return line === undefined
          ? undefined
          : String((JSON.parse(line) as Record<string, unknown>)['url']);
      },
      { label: 'worker listening line in tsworker.log', timeoutMs: 30_000 },
    );
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    // Full verification, host name included: only the local CA is trusted.
    const agent = new Agent({ connect: { ca: await autoscaler.caCertificate() } });
    try {
      const response = await request(`${url}/health/live`, { dispatcher: agent });
      expect(response.statusCode).toBe(200);
      await response.body.dump();
    } finally {
      await agent.close();
    }
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), { label: 'worker exit', timeoutMs: 15_000 });
  }, 90_000);
});
