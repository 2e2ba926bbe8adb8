import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { get } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const SCRIPT = fileURLToPath(new URL('../../start_server.sh', import.meta.url));
/** What start_server.sh runs, node excepted; a stock image has them all. */
const TOOLS = [
  'bash',
  'cat',
  'cut',
  'date',
  'dirname',
  'grep',
  'gzip',
  'mkdir',
  'mktemp',
  'mv',
  'rm',
  'seq',
  'sha256sum',
  'sleep',
  'tar',
  'tee',
  'uname',
  'curl',
];
const VERSION = process.versions.node;
const ARCH = process.arch === 'arm64' ? 'arm64' : 'x64';
const TARBALL = `node-v${VERSION}-linux-${ARCH}.tar.gz`;

function findTool(name: string): string {
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  throw new Error(`${name} is not installed`);
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
    if (!text.includes('"worker listening"')) continue;
    return String((JSON.parse(text) as Record<string, unknown>)['url']);
  }
  return undefined;
}

describe.concurrent('start_server.sh on a machine without a recent Node', () => {
  let root: string;
  /** A directory holding the script's tools, and no node. */
  let tools: string;
  let tarballSha: string;
  let dist: Server;
  let distUrl: string;
  const downloads: string[] = [];
  let autoscaler: LocalAutoscaler;
  const pids: number[] = [];
  const workspaces: string[] = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tsworker-node-'));
    tools = join(root, 'tools');
    mkdirSync(tools);
    for (const tool of TOOLS) symlinkSync(findTool(tool), join(tools, tool));

    // An official release's layout, node-vX-linux-<arch>/bin/node, with this machine's node in it.
    const release = join(root, 'release', `node-v${VERSION}-linux-${ARCH}`);
    mkdirSync(join(release, 'bin'), { recursive: true });
    execFileSync('cp', [process.execPath, join(release, 'bin', 'node')]);
    execFileSync('tar', [
      '-C',
      join(root, 'release'),
      '-I',
      'gzip -1',
      '-cf',
      join(root, TARBALL),
      `node-v${VERSION}-linux-${ARCH}`,
    ]);
    rmSync(join(root, 'release'), { recursive: true });
    tarballSha = createHash('sha256')
      .update(readFileSync(join(root, TARBALL)))
      .digest('hex');

    // A mirror of nodejs.org/dist on loopback, at /dist/<test>/ so each test counts its own downloads.
    dist = createServer((req, res) => {
      downloads.push(req.url ?? '');
      const url = req.url ?? '';
      if (!/^\/dist\/\d+\//.test(url) || !url.endsWith(`/v${VERSION}/${TARBALL}`)) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/gzip' });
      createReadStream(join(root, TARBALL)).pipe(res);
    });
    dist.listen(0, '127.0.0.1');
    await once(dist, 'listening');
    distUrl = `http://127.0.0.1:${(dist.address() as AddressInfo).port}/dist/`;
    autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
  }, 120_000);

  afterAll(async () => {
    // Every worker a script started, a failed test's included.
    for (const workspace of workspaces) {
      const pidFile = join(workspace, 'tsworker.pid');
      if (existsSync(pidFile)) pids.push(Number(readFileSync(pidFile, 'utf8').trim()));
    }
    for (const pid of pids) if (pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL');
    dist.close();
    await autoscaler.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** A fresh WORKSPACE_DIR and what a Vast instance would set, TLS off, PATH without node. */
  function setUp(containerId: number): {
    workspace: string;
    env: Record<string, string>;
    mirror: string;
    downloaded: () => string[];
  } {
    const workspace = mkdtempSync(join(root, 'ws-'));
    workspaces.push(workspace);
    const mirror = `${distUrl}${containerId}/`;
    return {
      workspace,
      mirror,
      downloaded: () => downloads.filter((url) => url.startsWith(`/dist/${containerId}/`)),
      env: {
        PATH: tools,
        HOME: workspace,
        WORKSPACE_DIR: workspace,
        BACKEND: 'hello_world',
        MODEL_LOG: join(workspace, 'model.log'),
        REPORT_ADDR: autoscaler.url,
        CONTAINER_ID: String(containerId),
        PUBLIC_IPADDR: '127.0.0.1',
        USE_SSL: 'false',
        UNSECURED: 'true',
        WORKER_PORT: '0',
        WORKER_HOST: '127.0.0.1',
        MODEL_SERVER_URL: 'http://127.0.0.1:9',
        BENCHMARK_CACHE: join(workspace, '.has_benchmark'),
        NODE_DIST_URL: mirror,
        NODE_DIST_VERSION: VERSION,
        NODE_DIST_SHA256: tarballSha,
      },
    };
  }

  async function runScript(workspace: string, env: Record<string, string>): Promise<number | null> {
    const out = openSync(join(workspace, 'script.out'), 'a');
    try {
      const child = spawn(join(tools, 'bash'), [SCRIPT], { env, stdio: ['ignore', out, out] });
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    } finally {
      closeSync(out);
    }
  }

  /** The worker the script left running: serving, and run by `node` as found in the workspace. */
  async function expectWorker(workspace: string): Promise<number> {
    const pid = Number(readFileSync(join(workspace, 'tsworker.pid'), 'utf8').trim());
    pids.push(pid);
    const url = await waitFor(() => listeningUrl(join(workspace, 'tsworker.log')), {
      label: 'worker listening line in tsworker.log',
      timeoutMs: 30_000,
    });
    expect((await get(`${url}/health/live`)).status).toBe(200);
    expect(readlinkSync(`/proc/${pid}/exe`)).toBe(join(workspace, 'node', 'bin', 'node'));
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), { label: 'worker exit', timeoutMs: 15_000 });
    return pid;
  }

  it('downloads the pinned tarball, checks its SHA-256, unpacks it under WORKSPACE_DIR and runs the worker with it', async () => {
    const { workspace, env, mirror, downloaded } = setUp(21);
    const code = await runScript(workspace, env);
    const debugLog = readFileSync(join(workspace, 'debug.log'), 'utf8');
    expect(code, debugLog).toBe(0);
    expect(debugLog).toContain('node is not installed');
    expect(debugLog).toContain(`installing Node ${VERSION} from ${mirror}v${VERSION}/${TARBALL}`);
    expect(downloaded()).toEqual([`/dist/21/v${VERSION}/${TARBALL}`]);
    await expectWorker(workspace);
    // Nothing of the download is left beside the install.
    expect(readdirSync(workspace).filter((name) => name.startsWith('.node-install'))).toEqual([]);
  }, 120_000);

  it('replaces a node older than 20.19 with the release a previous boot unpacked, without downloading again', async () => {
    const { workspace, env, downloaded } = setUp(22);
    // An old node, as Ubuntu's nodejs package is: it fails the version check.
    const oldTools = join(workspace, 'old-tools');
    mkdirSync(oldTools);
    writeFileSync(
      join(oldTools, 'node'),
      '#!/bin/sh\n[ "$1" = --version ] && { echo v12.22.9; exit 0; }\nexit 1\n',
    );
    chmodSync(join(oldTools, 'node'), 0o755);
    // What the first boot left: the release unpacked in WORKSPACE_DIR/node.
    mkdirSync(join(workspace, 'node'));
    execFileSync('tar', [
      '-xzf',
      join(root, TARBALL),
      '-C',
      join(workspace, 'node'),
      '--strip-components=1',
    ]);

    const code = await runScript(workspace, { ...env, PATH: `${oldTools}:${tools}` });
    const debugLog = readFileSync(join(workspace, 'debug.log'), 'utf8');
    expect(code, debugLog).toBe(0);
    expect(downloaded()).toEqual([]);
    expect(debugLog).toContain(
      `using node v${VERSION} at ${join(workspace, 'node', 'bin', 'node')}`,
    );
    await expectWorker(workspace);
  }, 120_000);

  it('reports a tarball whose SHA-256 is not the pinned one to REPORT_ADDR, exits 1 and installs nothing', async () => {
    const { workspace, env, mirror } = setUp(23);
    const code = await runScript(workspace, { ...env, NODE_DIST_SHA256: '0'.repeat(64) });
    expect(code).toBe(1);
    const report = await autoscaler.waitForReport((body) => body.id === 23);
    expect(report.error_msg).toBe(
      `start_server.sh: the Node tarball ${mirror}v${VERSION}/${TARBALL} has SHA-256 ${tarballSha}, ` +
        `not the pinned ${'0'.repeat(64)}: not installed`,
    );
    expect(existsSync(join(workspace, 'node'))).toBe(false);
    expect(existsSync(join(workspace, 'tsworker.pid'))).toBe(false);
    expect(readdirSync(workspace).filter((name) => name.startsWith('.node-install'))).toEqual([]);
  }, 60_000);

  it('reports a download that fails, naming NODE_DIST_URL', async () => {
    const { workspace, env } = setUp(24);
    const code = await runScript(workspace, { ...env, NODE_DIST_URL: `${distUrl}missing` });
    expect(code).toBe(1);
    const report = await autoscaler.waitForReport((body) => body.id === 24);
    expect(report.error_msg).toContain(
      `downloading ${distUrl}missing/v${VERSION}/${TARBALL} failed`,
    );
    expect(report.error_msg).toContain('NODE_DIST_URL');
  }, 60_000);

  it('refuses another NODE_DIST_VERSION without its NODE_DIST_SHA256', async () => {
    const { workspace, env } = setUp(25);
    const withoutSha: Record<string, string> = { ...env, NODE_DIST_VERSION: '20.19.0' };
    delete withoutSha['NODE_DIST_SHA256'];
    const code = await runScript(workspace, withoutSha);
    expect(code).toBe(1);
    const report = await autoscaler.waitForReport((body) => body.id === 25);
    expect(report.error_msg).toContain('NODE_DIST_VERSION=20.19.0 needs NODE_DIST_SHA256');
  }, 60_000);
});
