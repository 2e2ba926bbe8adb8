import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../lib/entry-server.ts';
import type { LogLevel } from '../../lib/config.ts';
import { requestLineLogger } from '../../lib/log.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

type Line = Record<string, unknown>;

/** A logger writing into memory, one string per line. */
function capture(level: LogLevel = 'info', pretty = false): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  let partial = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      partial += chunk.toString('utf8');
      let newline: number;
      while ((newline = partial.indexOf('\n')) !== -1) {
        lines.push(partial.slice(0, newline));
        partial = partial.slice(newline + 1);
      }
      done();
    },
  });
  return { logger: createLogger({ level, pretty, destination }), lines };
}

const parse = (lines: string[]): Line[] => lines.map((line) => JSON.parse(line) as Line);

describe('the log format', () => {
  it('writes one JSON object per line with time, level, component and message', () => {
    const { logger, lines } = capture();
    logger.child({ component: 'server' }).info({ url: 'http://x' }, 'worker listening');
    logger.warn('no component given');
    logger.child({ component: 'sessions' }).child({ sessionId: 'abc' }).error('nested child');
    expect(lines).toHaveLength(3);
    const [first, second, third] = parse(lines);
    expect(first).toEqual({
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      level: 'info',
      component: 'server',
      url: 'http://x',
      message: 'worker listening',
    });
    expect(second).toMatchObject({
      level: 'warn',
      component: 'worker',
      message: 'no component given',
    });
    expect(third).toMatchObject({ level: 'error', component: 'sessions', sessionId: 'abc' });
    // A component is named once per line, never twice.
    for (const line of lines) expect(line.match(/"component"/g)).toHaveLength(1);
  });

  it('follows LOG_LEVEL', () => {
    const warn = capture('warn');
    warn.logger.info('hidden');
    warn.logger.debug('hidden too');
    warn.logger.warn('shown');
    expect(parse(warn.lines).map((l) => l['message'])).toEqual(['shown']);
    const debug = capture('debug');
    debug.logger.debug('details');
    expect(parse(debug.lines)).toMatchObject([{ level: 'debug', message: 'details' }]);
    const silent = capture('silent');
    silent.logger.fatal('nothing');
    expect(silent.lines).toEqual([]);
  });

  it('masks mtoken like PyWorker and hides signatures, session_auth and Authorization headers', () => {
    const { logger, lines } = capture();
    const signature = 'c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw==';
    logger.info(
      {
        mtoken: 'mt-supersecret-0123456789',
        auth_data: { signature, url: 'http://1.2.3.4:5', reqnum: 3 },
        body: { auth_data: { signature }, session_auth: { signature } },
        req: { headers: { authorization: 'Bearer mt-supersecret-0123456789' } },
      },
      'report',
    );
    logger.info({ mtoken: 'short' }, 'short token');
    const text = lines.join('\n');
    expect(text).not.toContain('supersecret');
    expect(text).not.toContain(signature);
    const [line, short] = parse(lines);
    expect(line).toMatchObject({
      mtoken: 'mt-supe...',
      auth_data: { signature: '[masked]', url: 'http://1.2.3.4:5', reqnum: 3 },
      body: { auth_data: { signature: '[masked]' }, session_auth: '[masked]' },
      req: { headers: { authorization: '[masked]' } },
    });
    expect(short).toMatchObject({ mtoken: '*****' });
  });

  it('still masks top-level secrets on the per-request logger, which skips nested redaction for speed', () => {
    const { logger, lines } = capture();
    requestLineLogger(logger, 'request').info(
      { requestId: 'r-1', mtoken: 'mt-supersecret-0123456789', signature: 'c2ln' },
      'request',
    );
    expect(parse(lines)[0]).toMatchObject({
      component: 'request',
      requestId: 'r-1',
      mtoken: 'mt-supe...',
      signature: '[masked]',
    });
  });

  it('writes human-readable lines instead when asked (the default on a terminal)', () => {
    const { logger, lines } = capture('info', true);
    logger.child({ component: 'server' }).info({ url: 'http://x' }, 'worker listening');
    const text = lines.join('\n');
    expect(text).toContain('worker listening');
    expect(text).toContain('INFO');
    expect(() => JSON.parse(lines[0] ?? '')).toThrow();
  });
});

describe('request log lines', () => {
  let stack: TestStack;
  const { logger, lines } = capture();
  beforeAll(async () => {
    stack = await startStack({ logger });
  });
  afterAll(() => stack.close());

  it('carry the request id, route, status, workload and durations, and never the auth_data', async () => {
    const authData = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 });
    const response = await post(`${stack.worker.url}/generate`, {
      auth_data: authData,
      payload: { prompt: 'Hello log', max_response_tokens: 2 },
    });
    expect(response.status).toBe(200);
    const requestId = response.headers['x-request-id'];
    const line = await waitFor(
      () => parse(lines).find((l) => l['component'] === 'request' && l['requestId'] === requestId),
      { label: 'request log line' },
    );
    expect(line).toMatchObject({
      level: 'info',
      message: 'request',
      route: '/generate',
      status: 200,
      outcome: 'success',
      workload: expect.any(Number),
      queueMs: expect.any(Number),
      ttfbMs: expect.any(Number),
      totalMs: expect.any(Number),
      time: expect.any(String),
    });
    expect(lines.join('\n')).not.toContain(authData.signature);
  });

  it('log the worker listening line with its URLs', () => {
    const listening = parse(lines).find((l) => l['message'] === 'worker listening');
    expect(listening).toMatchObject({
      component: 'server',
      url: stack.worker.url,
      httpUrl: stack.worker.httpUrl,
    });
  });
});
