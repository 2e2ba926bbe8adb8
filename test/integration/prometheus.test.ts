import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { get, post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

/** Parses the text exposition format into `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    series.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return series;
}

describe('GET /metrics', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack.close());

  it('exposes requests, latencies, workload, queue, capacity, readiness and process series', async () => {
    const ok = await post(`${stack.worker.url}/generate`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      payload: { prompt: 'count me', max_response_tokens: 2 },
    });
    expect(ok.status).toBe(200);
    expect((await post(`${stack.worker.url}/generate`, '{')).status).toBe(422);

    const response = await get(`${stack.worker.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain/);
    const series = parseMetrics(response.text);

    expect(
      series.get('tsworker_requests_total{route="/generate",status="200",outcome="success"}'),
    ).toBe(1);
    expect(
      series.get('tsworker_requests_total{route="/generate",status="422",outcome="invalid"}'),
    ).toBe(1);
    expect(series.get('tsworker_request_duration_seconds_count{route="/generate"}')).toBe(2);
    expect(series.get('tsworker_request_first_byte_seconds_count{route="/generate"}')).toBe(1);
    expect(series.get('tsworker_request_queue_seconds_count{route="/generate"}')).toBe(1);
    const workload = series.get('tsworker_workload_total{kind="served"}') ?? 0;
    expect(workload).toBeGreaterThan(0);
    expect(series.get('tsworker_workload_total{kind="received"}')).toBe(workload);
    expect(series.get('tsworker_workload_total{kind="cancelled"}')).toBe(0);
    expect(series.get('tsworker_inflight_requests')).toBe(0);
    expect(series.get('tsworker_queued_requests')).toBe(0);
    expect(series.get('tsworker_inflight_workload')).toBe(0);
    expect(series.get('tsworker_estimated_wait_seconds')).toBe(0);
    expect(series.get('tsworker_max_perf')).toBe(stack.worker.readiness.maxPerf);
    expect(series.get('tsworker_readiness_state{phase="ready"}')).toBe(1);
    expect(series.get('tsworker_readiness_state{phase="errored"}')).toBe(0);
    expect(series.get('tsworker_draining')).toBe(0);
    expect(series.get('tsworker_model_errors_total')).toBe(0);
    expect(series.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(series.has('process_cpu_seconds_total')).toBe(true);
    expect(series.has('process_resident_memory_bytes')).toBe(true);
  });

  it('counts model errors as they are reported', async () => {
    stack.worker.readiness.errored('Exception: corrupted model file');
    const series = parseMetrics((await get(`${stack.worker.url}/metrics`)).text);
    expect(series.get('tsworker_model_errors_total')).toBe(1);
    expect(series.get('tsworker_readiness_state{phase="errored"}')).toBe(1);
  });
});
