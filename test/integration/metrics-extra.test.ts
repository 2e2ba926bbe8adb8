import { readFileSync } from 'node:fs';
import { request } from 'undici';
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

const { version } = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

describe('GET /metrics, more series', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack.close());

  it('exposes tsworker_build_info{version,worker} = 1', async () => {
    const series = parseMetrics((await get(`${stack.worker.url}/metrics`)).text);
    expect(
      series.get(`tsworker_build_info{version="${version}",worker="${stack.worker.worker.name}"}`),
    ).toBe(1);
    expect(stack.worker.worker.name).toBe('hello_world');
  });

  it('counts a request refused because the worker drains as rejected, not invalid', async () => {
    // The first step of a drain (lib/server/shutdown.ts): refuse new work, listeners still open.
    stack.worker.readiness.startDraining();
    const refused = await post(`${stack.worker.url}/generate`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      payload: { prompt: 'too late', max_response_tokens: 1 },
    });
    expect(refused.status).toBe(503);
    expect(refused.json()).toMatchObject({ code: 'TSW_ERR_DRAINING' });
    const series = parseMetrics((await get(`${stack.worker.url}/metrics`)).text);
    expect(
      series.get('tsworker_requests_total{route="/generate",status="503",outcome="rejected"}'),
    ).toBe(1);
    expect(
      series.has('tsworker_requests_total{route="/generate",status="503",outcome="invalid"}'),
    ).toBe(false);
  });
});

describe('METRICS_TOKEN', () => {
  const token = 'metrics-0123456789-secret';
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ env: { METRICS_TOKEN: token } });
  });
  afterAll(() => stack.close());

  async function metrics(authorization?: string) {
    const response = await request(`${stack.worker.url}/metrics`, {
      headers: authorization === undefined ? {} : { authorization },
    });
    return {
      status: response.statusCode,
      headers: response.headers,
      text: await response.body.text(),
    };
  }

  it('answers 401 JSON without the right Bearer token', async () => {
    for (const authorization of [
      undefined,
      'Bearer wrong-token',
      `Bearer ${token}x`,
      `Bearer ${token.slice(0, -1)}`,
      // The bare token is not a Bearer credential.
      token,
      `Basic ${Buffer.from(`user:${token}`).toString('base64')}`,
      'Bearer ',
    ]) {
      const response = await metrics(authorization);
      expect(response.status, String(authorization)).toBe(401);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(response.headers['www-authenticate']).toBe('Bearer realm="metrics"');
      expect(JSON.parse(response.text)).toMatchObject({
        code: 'TSW_ERR_UNAUTHORIZED',
        error: expect.stringContaining('METRICS_TOKEN'),
      });
      expect(response.text).not.toContain(token);
      expect(response.text).not.toContain('tsworker_requests_total');
    }
  });

  it('serves the metrics with "Authorization: Bearer <token>", the scheme in any case', async () => {
    for (const authorization of [`Bearer ${token}`, `bearer ${token}`]) {
      const response = await metrics(authorization);
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toMatch(/^text\/plain/);
      expect(response.text).toContain('tsworker_build_info');
    }
  });

  it('leaves the health endpoints open', async () => {
    expect((await get(`${stack.worker.url}/health/live`)).status).toBe(200);
  });
});
