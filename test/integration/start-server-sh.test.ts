import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { get } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const SCRIPT = fileURLToPath(new URL('../../start_server.sh', import.meta.url));

interface ScriptRun {
  readonly code: number | null;
  readonly output: string;
}

/**
 * Runs start_server.sh with exactly this environment (plus PATH and HOME); resolves when bash
 * exits. Its output goes to a file, as on an instance: the worker it leaves running keeps writing.
 */
async function runScript(env: Record<string, string>, outputFile: string): Promise<ScriptRun> {
  const out = openSync(outputFile, 'a');
  try {
    const child = spawn('bash', [SCRIPT], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: process.env['HOME'] ?? tmpdir(),
        ...env,
      },
      stdio: ['ignore', out, out],
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    return { code, output: readFileSync(outputFile, 'utf8') };
  } finally {
    closeSync(out);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The URL from the worker's 'worker listening' JSON line in its log. */
function listeningUrl(logFile: string): string | undefined {
  if (!existsSync(logFile)) return undefined;
  for (const text of readFileSync(logFile, 'utf8').split('\n')) {
    try {
      const line = JSON.parse(text) as Record<string, unknown>;
      if (line['message'] === 'worker listening') return String(line['url']);
    } catch {
      // Not a JSON line.
    }
  }
  return undefined;
}

describe('start_server.sh', () => {
  let autoscaler: LocalAutoscaler;
  let second: LocalAutoscaler;
  let workspace: string;
  let pids: number[] = [];
  beforeAll(async () => {
    autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    second = await startLocalAutoscaler({ privateKey: testPrivateKey() });
  });
  afterAll(() => Promise.all([autoscaler.close(), second.close()]));
  beforeEach(() => {
    workspace = mkdtempSync(join(tmpdir(), 'tsworker-ws-'));
  });
  afterEach(async () => {
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    pids = [];
    rmSync(workspace, { recursive: true, force: true });
  });

  /** What a Vast instance would set, with TLS off and an unsecured worker. */
  const baseEnv = (): Record<string, string> => ({
    WORKSPACE_DIR: workspace,
    BACKEND: 'hello_world',
    MODEL_LOG: join(workspace, 'model.log'),
    REPORT_ADDR: autoscaler.url,
    CONTAINER_ID: '11',
    PUBLIC_IPADDR: '127.0.0.1',
    MASTER_TOKEN: 'mt-launcher-token',
    USE_SSL: 'false',
    UNSECURED: 'true',
    WORKER_PORT: '0',
    WORKER_HOST: '127.0.0.1',
    // Nothing listens here: the worker stays "starting", which is all the launcher needs.
    MODEL_SERVER_URL: 'http://127.0.0.1:9',
    BENCHMARK_CACHE: join(workspace, '.has_benchmark'),
  });

  async function expectWorkerRunning(): Promise<{ pid: number; url: string }> {
    const pid = Number(readFileSync(join(workspace, 'tsworker.pid'), 'utf8').trim());
    pids.push(pid);
    expect(isAlive(pid)).toBe(true);
    const url = await waitFor(() => listeningUrl(join(workspace, 'tsworker.log')), {
      label: 'worker listening line in tsworker.log',
      timeoutMs: 20_000,
    });
    return { pid, url };
  }

  async function stopWorker(pid: number): Promise<void> {
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), { label: 'worker exit', timeoutMs: 15_000 });
  }

  it('rotates the model log, launches the worker in the background and reports no error', async () => {
    const modelLog = join(workspace, 'model.log');
    writeFileSync(join(workspace, 'model.log.old'), 'first boot\n');
    writeFileSync(modelLog, 'second boot\nserver has started\n');
    const startedAt = Date.now();

    const run = await runScript(baseEnv(), join(workspace, 'script.out'));
    expect(run.code, run.output).toBe(0);
    // The script's output passes through its tee, which may write the last line after bash exits.
    await waitFor(
      () => readFileSync(join(workspace, 'script.out'), 'utf8').includes('launching tsworker done'),
      {
        label: 'launch message',
      },
    );

    expect(readFileSync(`${modelLog}.old`, 'utf8')).toBe(
      'first boot\nsecond boot\nserver has started\n',
    );
    expect(readFileSync(modelLog, 'utf8')).toBe('');

    const { pid, url } = await expectWorkerRunning();
    expect((await get(`${url}/health/live`)).status).toBe(200);
    expect(readFileSync(join(workspace, 'debug.log'), 'utf8')).toContain('BACKEND=hello_world');

    await stopWorker(pid);
    // A drained worker exits 0, so the launcher's watcher has nothing to report.
    const errors = autoscaler.records.workerStatus.filter(
      (record) =>
        record.at >= startedAt &&
        /start_server|exited with code/.test(String(record.body.error_msg)),
    );
    expect(errors).toEqual([]);
  });

  it('reports a worker that dies after the launch with its exit code', async () => {
    const run = await runScript(baseEnv(), join(workspace, 'script.out'));
    expect(run.code, run.output).toBe(0);
    const { pid } = await expectWorkerRunning();
    process.kill(pid, 'SIGKILL');
    const report = await autoscaler.waitForReport((body) =>
      body.error_msg.includes('tsworker exited with code 137'),
    );
    expect(report).toMatchObject({ id: 11, url: 'http://127.0.0.1:0' });
  });

  it('reports every missing variable to every REPORT_ADDR and exits 1', async () => {
    const env = baseEnv();
    delete env['BACKEND'];
    delete env['MODEL_LOG'];
    env['REPORT_ADDR'] = `${autoscaler.url}, ${second.url}/`;

    const run = await runScript(env, join(workspace, 'script.out'));
    expect(run.code).toBe(1);
    for (const target of [autoscaler, second]) {
      const report = await target.waitForReport((body) =>
        body.error_msg.includes('BACKEND is not set'),
      );
      expect(report.error_msg).toContain('MODEL_LOG is not set');
      expect(report).toEqual({
        id: 11,
        mtoken: 'mt-launcher-token',
        version: '1.1.0',
        error_msg: expect.stringMatching(/^start_server\.sh: /),
        url: 'http://127.0.0.1:0',
      });
    }
    expect(existsSync(join(workspace, 'tsworker.pid'))).toBe(false);
  });

  it('reports a BACKEND that names no worker', async () => {
    const run = await runScript(
      { ...baseEnv(), BACKEND: 'no_such_worker' },
      join(workspace, 'script.out'),
    );
    expect(run.code).toBe(1);
    const report = await autoscaler.waitForReport((body) =>
      body.error_msg.includes('no_such_worker'),
    );
    expect(report.error_msg).toContain('BACKEND=no_such_worker: no such worker');
  });

  describe('with USE_SSL=true', () => {
    let caDir: string;
    let signer: Server;
    let signerUrl: string;
    let signerStatus = 200;
    beforeAll(async () => {
      caDir = mkdtempSync(join(tmpdir(), 'tsworker-ca-'));
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-subj',
          '/CN=test-ca',
          '-days',
          '1',
          '-keyout',
          join(caDir, 'ca.key'),
          '-out',
          join(caDir, 'ca.crt'),
        ],
        { stdio: 'ignore' },
      );
      // Stands in for console.vast.ai's sign_cert: signs the posted CSR with the test CA.
      signer = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          if (signerStatus !== 200) {
            res.writeHead(signerStatus).end('{"error": "no such instance"}');
            return;
          }
          writeFileSync(join(caDir, 'req.csr'), Buffer.concat(chunks));
          execFileSync(
            'openssl',
            [
              'x509',
              '-req',
              '-in',
              join(caDir, 'req.csr'),
              '-CA',
              join(caDir, 'ca.crt'),
              '-CAkey',
              join(caDir, 'ca.key'),
              '-set_serial',
              '1',
              '-days',
              '1',
              '-out',
              join(caDir, 'signed.crt'),
            ],
            { stdio: 'ignore' },
          );
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(readFileSync(join(caDir, 'signed.crt')));
        });
      });
      signer.listen(0, '127.0.0.1');
      await once(signer, 'listening');
      signerUrl = `http://127.0.0.1:${(signer.address() as AddressInfo).port}/sign_cert/?instance_id=11`;
    });
    afterAll(async () => {
      signer.close();
      rmSync(caDir, { recursive: true, force: true });
    });

    const tlsEnv = () => ({
      ...baseEnv(),
      USE_SSL: 'true',
      SSL_CERT_URL: signerUrl,
      SSL_CERT_FILE: join(workspace, 'tls', 'instance.crt'),
      SSL_KEY_FILE: join(workspace, 'tls', 'instance.key'),
    });

    it('requests the certificate with a CSR and the worker serves HTTPS with it', async () => {
      signerStatus = 200;
      const run = await runScript(tlsEnv(), join(workspace, 'script.out'));
      expect(run.code, run.output).toBe(0);
      expect(readFileSync(join(workspace, 'tls', 'instance.crt'), 'utf8')).toContain(
        'BEGIN CERTIFICATE',
      );
      const { pid, url } = await expectWorkerRunning();
      expect(url).toMatch(/^https:\/\//);
      const agent = new Agent({
        connect: { ca: readFileSync(join(caDir, 'ca.crt')), checkServerIdentity: () => undefined },
      });
      try {
        const response = await request(`${url}/health/live`, { dispatcher: agent });
        expect(response.statusCode).toBe(200);
        await response.body.dump();
      } finally {
        await agent.close();
      }
      await stopWorker(pid);
    });

    it('reports "Failed to get SSL Certificate" when the signer refuses, and keeps the error body out of the cert file', async () => {
      signerStatus = 500;
      const run = await runScript(tlsEnv(), join(workspace, 'script.out'));
      expect(run.code).toBe(1);
      const report = await autoscaler.waitForReport((body) =>
        body.error_msg.includes('Failed to get SSL Certificate'),
      );
      expect(report.url).toBe('https://127.0.0.1:0');
      expect(existsSync(join(workspace, 'tls', 'instance.crt'))).toBe(false);
    });
  });
});
