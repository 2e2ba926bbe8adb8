import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';
import { post } from '../helpers/request.ts';
import { testPrivateKey } from '../helpers/stack.ts';

const SCRIPT = fileURLToPath(new URL('../../start_server.sh', import.meta.url));

/** The body start_server.sh and the Python launcher post when a launch step fails. */
const launcherError = {
  id: 41,
  mtoken: 'mt-launcher-token',
  version: '1.1.0',
  error_msg: 'start_server.sh: BACKEND is not set',
  url: 'https://203.0.113.7:40123',
};

/** A worker's full report (protocol §8.2). */
const workerReport = {
  id: 41,
  mtoken: null,
  version: '1.1.0',
  loadtime: 12.5,
  cur_load: 0,
  rej_load: 0,
  new_load: 0,
  error_msg: '',
  max_perf: 800,
  cur_perf: 0,
  cur_capacity: 0,
  max_capacity: 800,
  num_requests_working: 0,
  num_requests_recieved: 0,
  additional_disk_usage: 0,
  working_request_idxs: [],
  url: 'https://203.0.113.7:40123',
};

describe("the local autoscaler's /worker_status/", () => {
  let autoscaler: LocalAutoscaler;
  const lines: string[] = [];
  beforeAll(async () => {
    autoscaler = await startLocalAutoscaler({
      privateKey: testPrivateKey(),
      log: (line) => lines.push(line),
    });
  });
  afterAll(() => autoscaler.close());

  async function postStatus(body: unknown) {
    const response = await post(`${autoscaler.url}/worker_status/`, body);
    expect(response.status).toBe(200);
    const record = autoscaler.records.workerStatus.at(-1);
    if (record === undefined) throw new Error('nothing recorded');
    return record;
  }

  it("accepts the launcher's five-field error report as conforming, recorded as a launcher error", async () => {
    const record = await postStatus(launcherError);
    expect(record).toMatchObject({ conforms: true, problems: [], kind: 'launcher_error' });
    expect(lines.at(-1)).toBe(
      'worker_status 200 launcher error id=41 error_msg="start_server.sh: BACKEND is not set"',
    );
    expect(autoscaler.summary()).toContain("the launcher's error report");
    // A worker's own report is still a report, and still checked against its 17 fields.
    expect(await postStatus(workerReport)).toMatchObject({ conforms: true, kind: 'report' });
    const short: Record<string, unknown> = { ...workerReport };
    delete short['max_perf'];
    expect(await postStatus(short)).toMatchObject({
      conforms: false,
      kind: 'report',
      problems: ['max_perf: Invalid input: expected number, received undefined'],
    });
  });

  it('still calls a launcher report with a wrong or extra field nonconforming', async () => {
    expect(await postStatus({ ...launcherError, id: '41' })).toMatchObject({
      conforms: false,
      kind: 'launcher_error',
      problems: ['id: Invalid input: expected number, received string'],
    });
    expect(await postStatus({ ...launcherError, error_msg: '' })).toMatchObject({
      conforms: false,
      kind: 'launcher_error',
    });
    const extra = await postStatus({ ...launcherError, cur_load: 0 });
    expect(extra.conforms).toBe(false);
    expect(extra.problems.join()).toContain('cur_load');
    expect(lines.at(-1)).toMatch(/^worker_status 200 launcher error id=41 .*\(nonconforming: /);
  });

  it("records start_server.sh's own failure report as a conforming launcher error", async () => {
    const workspace = mkdtempSync(join(tmpdir(), 'tsworker-launcher-'));
    try {
      const child = spawn('bash', [SCRIPT], {
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          WORKSPACE_DIR: workspace,
          REPORT_ADDR: autoscaler.url,
          CONTAINER_ID: '42',
          PUBLIC_IPADDR: '127.0.0.1',
          USE_SSL: 'false',
        },
        stdio: 'ignore',
      });
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(1);
      const body = await autoscaler.waitForReport((report) => report.id === 42);
      const record = autoscaler.records.workerStatus.find((r) => r.body === body);
      expect(record).toMatchObject({ conforms: true, problems: [], kind: 'launcher_error' });
      expect(Object.keys(body)).toEqual(['id', 'mtoken', 'version', 'error_msg', 'url']);
    } finally {
      rmSync(workspace, { recursive: true, force: true });
    }
  });
});
