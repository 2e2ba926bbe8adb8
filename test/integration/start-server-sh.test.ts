import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  appendFileSync,
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
import { dirname, join } from 'node:path';
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
async function runScript(
  env: Record<string, string>,
  outputFile: string,
  { fromCheckout = false }: { fromCheckout?: boolean } = {},
): Promise<ScriptRun> {
  const out = openSync(outputFile, 'a');
  try {
    // `./start_server.sh` in the checkout, as README shows it, or the script's absolute path.
    const child = spawn('bash', fromCheckout ? ['./start_server.sh'] : [SCRIPT], {
      cwd: fromCheckout ? dirname(SCRIPT) : tmpdir(),
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
    // The worker a failed test left behind too.
    const pidFile = join(workspace, 'tsworker.pid');
    if (existsSync(pidFile)) pids.push(Number(readFileSync(pidFile, 'utf8').trim()));
    for (const pid of pids) if (pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL');
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

  it('run as ./start_server.sh in the checkout: rotates the model log, launches the worker in the background and reports no error', async () => {
    const modelLog = join(workspace, 'model.log');
    writeFileSync(join(workspace, 'model.log.old'), 'first boot\n');
    writeFileSync(modelLog, 'second boot\nserver has started\n');
    const startedAt = Date.now();

    const run = await runScript(baseEnv(), join(workspace, 'script.out'), { fromCheckout: true });
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

  it('reports a BACKEND that names no worker, with the available workers', async () => {
    const run = await runScript(
      { ...baseEnv(), BACKEND: 'no_such_worker' },
      join(workspace, 'script.out'),
    );
    expect(run.code).toBe(1);
    const report = await autoscaler.waitForReport((body) =>
      body.error_msg.includes('no_such_worker'),
    );
    expect(report.error_msg).toContain('BACKEND=no_such_worker: no such worker');
    expect(report.error_msg).not.toContain('Did you mean');
    expect(report.error_msg).toMatch(
      /\. Available workers: comfyui, hello_world, llama, null, ollama, openai, sglang, tgi, vllm$/,
    );
  });

  it('names the closest worker when BACKEND is a typo', async () => {
    const cases = {
      hello_wrold: 'hello_world',
      VLLM: 'vllm',
      olama: 'ollama',
      hello: 'hello_world',
    };
    for (const [typo, meant] of Object.entries(cases)) {
      const run = await runScript({ ...baseEnv(), BACKEND: typo }, join(workspace, 'script.out'));
      expect(run.code).toBe(1);
      const report = await autoscaler.waitForReport((body) =>
        body.error_msg.includes(`BACKEND=${typo}:`),
      );
      expect(report.error_msg).toContain(`Did you mean "${meant}"? Available workers: comfyui,`);
    }
  });

  it("keeps the worker's output out of debug.log, in a TSWORKER_LOG bounded by TSWORKER_LOG_MAX_BYTES", async () => {
    const modelLog = join(workspace, 'model.log');
    const maxBytes = 4096;
    const run = await runScript(
      { ...baseEnv(), TSWORKER_LOG_MAX_BYTES: String(maxBytes) },
      join(workspace, 'script.out'),
    );
    expect(run.code, run.output).toBe(0);
    const { pid } = await expectWorkerRunning();
    // hello_world logs every "Download" line of the model's log: 60 lines of ~330 bytes, ~5 files' worth.
    const lines = Array.from(
      { length: 60 },
      (_, i) => `{"message":"Download part ${i}: ${'x'.repeat(120)}"}`,
    );
    appendFileSync(modelLog, `${lines.join('\n')}\n`);
    const logFile = join(workspace, 'tsworker.log');
    await waitFor(() => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('part 59:'), {
      label: 'the last model log line in tsworker.log',
      timeoutMs: 20_000,
    });
    await stopWorker(pid);

    for (const file of [logFile, `${logFile}.1`]) {
      const text = readFileSync(file, 'utf8');
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(maxBytes);
      // Rotation happens between lines: every line is whole JSON.
      for (const line of text.split('\n').filter(Boolean))
        expect(() => JSON.parse(line)).not.toThrow();
    }
    expect(readFileSync(`${logFile}.1`, 'utf8')).toMatch(/part \d+:/);
    const debugLog = readFileSync(join(workspace, 'debug.log'), 'utf8');
    expect(debugLog).toContain('BACKEND=hello_world');
    expect(debugLog).toContain('launching tsworker done');
    expect(debugLog).not.toContain('Download part');
    expect(debugLog).not.toContain('worker listening');
    // The script's own lines are all there is: none of them is one of the worker's JSON lines.
    expect(debugLog.split('\n').filter((line) => line.startsWith('{'))).toEqual([]);
  });

  it("leaves the error beacon's report standing when the worker exits after it", async () => {
    // The worker cannot listen: its error beacon reports that, until SIGTERM stops it (exit 1).
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as AddressInfo).port;
    try {
      const run = await runScript(
        { ...baseEnv(), CONTAINER_ID: '12', WORKER_PORT: String(port) },
        join(workspace, 'script.out'),
      );
      expect(run.code, run.output).toBe(0);
      const beacon = await autoscaler.waitForReport(
        (body) => body.id === 12 && body.error_msg.startsWith('Worker Server failed to launch'),
        20_000,
      );
      expect(beacon.error_msg).toContain(String(port));
      const pid = Number(readFileSync(join(workspace, 'tsworker.pid'), 'utf8').trim());
      pids.push(pid);
      await stopWorker(pid);
      const debugLog = join(workspace, 'debug.log');
      await waitFor(() => readFileSync(debugLog, 'utf8').includes('that report stands'), {
        label: 'the watcher deciding not to report',
        timeoutMs: 15_000,
      }).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${readFileSync(debugLog, 'utf8')}`);
      });
      expect(readFileSync(debugLog, 'utf8')).toContain('tsworker exited with code 1');
      const overwritten = autoscaler.records.workerStatus.filter(
        (record) => record.body.id === 12 && /exited with code/.test(String(record.body.error_msg)),
      );
      expect(overwritten).toEqual([]);
    } finally {
      taken.close();
    }
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
