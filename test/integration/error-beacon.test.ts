import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { testPrivateKey } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

let autoscaler: LocalAutoscaler;
let child: ChildProcess | undefined;
let blocker: Server | undefined;
beforeEach(async () => {
  autoscaler = await startLocalAutoscaler({ privateKey: testPrivateKey() });
});
afterEach(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
  blocker?.close();
  await autoscaler.close();
});

function startCli(worker: string, env: Record<string, string>): ChildProcess {
  const process_ = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', worker], {
    env: {
      PATH: process.env['PATH'] ?? '',
      REPORT_ADDR: autoscaler.url,
      CONTAINER_ID: '99',
      PUBLIC_IPADDR: '127.0.0.1',
      UNSECURED: 'true',
      WORKER_HOST: '127.0.0.1',
      WORKER_PORT: '0',
      ERROR_BEACON_INTERVAL_SECONDS: '0.1',
      LOG_LEVEL: 'silent',
      ...env,
    },
    stdio: 'ignore',
  });
  return process_;
}

describe('the error beacon', () => {
  it('reports an invalid worker to the autoscaler, repeatedly, until stopped', async () => {
    child = startCli('no_such_worker', {});
    const report = await autoscaler.waitForReport((r) => r.error_msg !== '', 20_000);
    expect(report.error_msg).toMatch(/^Worker Server failed to launch: no worker "no_such_worker"/);
    expect(report).toMatchObject({ id: 99, loadtime: 0, max_perf: 0, version: '1.1.0' });
    await waitFor(
      () => autoscaler.records.workerStatus.filter((r) => r.body.error_msg !== '').length >= 2,
      {
        label: 'a second beacon report',
        timeoutMs: 20_000,
      },
    );
    expect(child.exitCode).toBeNull();
  });

  it('reports a port already in use', async () => {
    blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as AddressInfo).port;
    child = startCli('hello_world', { WORKER_PORT: String(port) });
    const report = await autoscaler.waitForReport((r) => r.error_msg !== '', 20_000);
    expect(report.error_msg).toMatch(/^Worker Server failed to launch: .*EADDRINUSE/);
  });

  it('reports TLS files that cannot be loaded', async () => {
    child = startCli('hello_world', {
      USE_SSL: 'true',
      SSL_CERT_FILE: '/nonexistent/instance.crt',
      SSL_KEY_FILE: '/nonexistent/instance.key',
    });
    const report = await autoscaler.waitForReport((r) => r.error_msg !== '', 20_000);
    expect(report.error_msg).toMatch(
      /^Worker Server failed to launch: Failed to get SSL Certificate/,
    );
    expect(report.url).toMatch(/^https:\/\//);
  });
});
