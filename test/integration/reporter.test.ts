import { afterEach, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker } from '../../lib/index.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { startStack, testPrivateKey, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';
import {
  startLocalAutoscaler,
  type LocalAutoscaler,
} from '../../src/stand-ins/local-autoscaler.ts';

const FAST_TIMINGS = {
  REPORT_TICK_SECONDS: '0.05',
  REPORT_IDLE_SECONDS: '0.3',
  REPORT_RETRY_DELAY_SECONDS: '0',
  REPORT_TIMEOUT_SECONDS: '2',
};

/** Workload 100 per request (no workload function), parallel, so the numbers are easy to read. */
const worker = defineWorker({
  name: 'reporter-test',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [
    defineHandler({ route: '/generate', payload: InputData, allowParallel: true }),
    defineHandler({ route: '/generate_stream', payload: InputData, allowParallel: true }),
  ],
});

let stack: TestStack | undefined;
let extra: LocalAutoscaler | undefined;
afterEach(async () => {
  await stack?.close();
  await extra?.close();
  stack = undefined;
  extra = undefined;
});

function signedBody(target: TestStack, prompt = 'hello') {
  return {
    auth_data: target.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
    payload: { prompt, max_response_tokens: 3 },
  };
}

describe('the /worker_status/ reporter', () => {
  it('sends all 17 fields, with the misspelled num_requests_recieved', async () => {
    stack = await startStack({ worker, env: FAST_TIMINGS });
    const report = await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    expect(Object.keys(report)).toEqual([
      'id',
      'mtoken',
      'version',
      'loadtime',
      'cur_load',
      'rej_load',
      'new_load',
      'error_msg',
      'max_perf',
      'cur_perf',
      'cur_capacity',
      'max_capacity',
      'num_requests_working',
      'num_requests_recieved',
      'additional_disk_usage',
      'working_request_idxs',
      'url',
    ]);
    expect(report).toMatchObject({
      id: 7,
      mtoken: null,
      version: '1.1.0',
      cur_capacity: 0,
      max_capacity: 0,
    });
    const record = stack.autoscaler.records.workerStatus.find((r) => r.body === report);
    expect(record?.conforms).toBe(true);
  });

  it('reports served workload once, then resets the interval counters after a delivered report', async () => {
    stack = await startStack({ worker, env: FAST_TIMINGS });
    await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    const response = await post(`${stack.worker.url}/generate`, signedBody(stack));
    expect(response.status).toBe(200);
    // The request's arrival (new_load) and its end (cur_perf) may land in one report or in two.
    const reports = () => stack?.autoscaler.records.workerStatus.map((r) => r.body) ?? [];
    const total = (field: 'cur_perf' | 'new_load') =>
      reports().reduce((sum, report) => sum + report[field], 0);
    await waitFor(() => total('cur_perf') >= 100 && total('new_load') >= 100, {
      label: 'the served request reported',
    });
    const last = reports().findLastIndex((r) => r.cur_perf > 0 || r.new_load > 0);
    expect(reports()[last]?.num_requests_recieved).toBe(1);
    const next = await waitFor(() => reports()[last + 1], { label: 'the next report' });
    expect(next.cur_perf).toBe(0);
    expect(next.new_load).toBe(0);
    // Reported once each, never twice.
    expect(total('cur_perf')).toBe(100);
    expect(total('new_load')).toBe(100);
    // Cumulative, as in the reference.
    expect(next.num_requests_recieved).toBe(1);
  });

  it('keeps reporting at the idle cadence when nothing happens', async () => {
    stack = await startStack({ worker, env: FAST_TIMINGS });
    await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    const count = stack.autoscaler.records.workerStatus.length;
    await waitFor(() => (stack?.autoscaler.records.workerStatus.length ?? 0) >= count + 2, {
      label: 'two idle reports',
    });
  });

  it('shows in-flight work in cur_load, num_requests_working and working_request_idxs', async () => {
    stack = await startStack({ worker, env: FAST_TIMINGS });
    await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    stack.model.configure({ failure: { kind: 'hang-headers' } });
    const body = signedBody(stack);
    const call = postStreaming(`${stack.worker.url}/generate`, body);
    try {
      const report = await stack.autoscaler.waitForReport((r) => r.num_requests_working === 1);
      expect(report.cur_load).toBe(100);
      expect(report.working_request_idxs).toEqual([body.auth_data.request_idx]);
    } finally {
      call.disconnect();
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });

  it('fails over to the second REPORT_ADDR when the first keeps failing', async () => {
    extra = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    extra.configure({ failWorkerStatus: 1_000_000 });
    const second = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    try {
      stack = await startStack({
        worker,
        env: { ...FAST_TIMINGS, UNSECURED: 'true', REPORT_ADDR: `${extra.url},${second.url}` },
      });
      await second.waitForReport((r) => r.loadtime > 0);
      // Three attempts on the first address before moving on, as the reference does.
      expect(extra.records.workerStatus.length).toBeGreaterThanOrEqual(3);
    } finally {
      await stack?.close();
      stack = undefined;
      await second.close();
    }
  });

  it('keeps the counters when no address accepts the report, and delivers them later', async () => {
    stack = await startStack({ worker, env: FAST_TIMINGS });
    await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    stack.autoscaler.configure({ failWorkerStatus: 1000 });
    await post(`${stack.worker.url}/generate`, signedBody(stack));
    const failedBefore = stack.autoscaler.records.workerStatus.filter(
      (r) => r.status !== 200,
    ).length;
    await waitFor(
      () =>
        (stack?.autoscaler.records.workerStatus.filter((r) => r.status !== 200).length ?? 0) >
        failedBefore + 3,
      { label: 'failed reports' },
    );
    stack.autoscaler.configure({ failWorkerStatus: 0 });
    const delivered = await stack.autoscaler.waitForReport((r) => r.cur_perf === 100);
    expect(delivered.new_load).toBe(100);
  });
});

describe('the /delete_requests/ reporter', () => {
  it('reports success, error, cancel and reject in the newest per-request format', async () => {
    stack = await startStack({ worker, env: FAST_TIMINGS });
    await stack.autoscaler.waitForReport((r) => r.loadtime > 0);
    const target = stack;

    const ok = signedBody(target, 'ok');
    expect((await post(`${target.worker.url}/generate`, ok)).status).toBe(200);

    target.model.configure({ failure: { kind: 'reset' } });
    const failing = signedBody(target, 'error');
    expect((await post(`${target.worker.url}/generate`, failing)).status).toBe(502);

    target.model.configure({ failure: { kind: 'hang-headers' } });
    const cancelled = signedBody(target, 'cancel');
    const call = postStreaming(`${target.worker.url}/generate`, cancelled);
    await waitFor(() => target.model.stats.inFlight === 1, { label: 'request at the model' });
    call.disconnect();
    target.model.configure({ failure: { kind: 'none' } });

    const forged = signedBody(target, 'reject');
    forged.auth_data = {
      ...forged.auth_data,
      signature: ok.auth_data.signature.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')),
    };
    expect((await post(`${target.worker.url}/generate`, forged)).status).toBe(401);

    const byIdx = new Map<number, Record<string, unknown>>();
    await waitFor(
      () => {
        for (const record of target.autoscaler.records.deleteRequests) {
          for (const entry of record.body.requests)
            byIdx.set(entry.request_idx, entry as unknown as Record<string, unknown>);
        }
        return byIdx.size >= 4;
      },
      { label: 'four delete_requests entries' },
    );
    const body = target.autoscaler.records.deleteRequests[0]?.body;
    expect(body).toMatchObject({ worker_id: 7, mtoken: null });
    expect(target.autoscaler.records.deleteRequests.every((r) => r.conforms)).toBe(true);

    const success = byIdx.get(ok.auth_data.request_idx as number);
    expect(success).toMatchObject({ success: true, status: 'Success' });
    const times = success as {
      entered_queue_at: number;
      work_started_at: number;
      work_completed_at: number;
    };
    expect(times.entered_queue_at).toBeLessThanOrEqual(times.work_started_at);
    expect(times.work_started_at).toBeLessThanOrEqual(times.work_completed_at);
    expect(byIdx.get(failing.auth_data.request_idx as number)).toMatchObject({
      success: false,
      status: 'Error',
    });
    expect(byIdx.get(cancelled.auth_data.request_idx as number)).toMatchObject({
      success: true,
      status: 'Cancelled',
      work_completed_at: null,
    });
    expect(byIdx.get(forged.auth_data.request_idx as number)).toMatchObject({
      success: false,
      status: 'Rejected',
      work_started_at: null,
    });
  });
});
