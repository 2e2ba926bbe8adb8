import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker, z } from '../../lib/index.ts';
import helloWorld from '../../workers/hello_world/server.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { get, post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

/** Sends raw bytes and collects the answer until the server closes the connection. */
function rawExchange(url: string, head: string, body: string) {
  const { hostname, port } = new URL(url);
  const socket: Socket = connect(Number(port), hostname);
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => undefined);
  const closed = once(socket, 'close').then(() => answer);
  socket.write(head + body);
  return { socket, closed, answer: () => answer };
}

/**
 * A client that writes its whole body before it reads anything, as Python's http.client does: the
 * socket is paused while it writes, so the 413 can reach it only if the server has not reset the
 * connection by then. Resolves with the write's outcome and the answer.
 */
async function writeFirstExchange(url: string, path: string, bodyBytes: number) {
  const { hostname, port } = new URL(url);
  const socket: Socket = connect(Number(port), hostname);
  socket.pause();
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (answer += chunk));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  const head = `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${bodyBytes}\r\n\r\n`;
  const written = await new Promise<Error | undefined>((resolve) => {
    socket.write(head);
    socket.write(Buffer.alloc(bodyBytes, 0x20), (error) => resolve(error ?? undefined));
  });
  socket.resume();
  await closed;
  return { written, answer };
}

/**
 * A client that sends a chunked body that never ends, one 8 KiB chunk after another, waiting
 * `pauseMs` after each, until the server closes. Half-open allowed: the client does not close when
 * the worker does.
 */
function sendEndlessBody(url: string, pauseMs: number) {
  const { hostname, port } = new URL(url);
  const socket: Socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => undefined);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  // Chunked, so the body has no end the worker could reach by reading it.
  const chunk = Buffer.from(`2000\r\n${'x'.repeat(8192)}\r\n`);
  const sendNext = (error?: Error | null): void => {
    if (error != null || socket.destroyed) return;
    const write = (): boolean => socket.write(chunk, sendNext);
    if (pauseMs === 0) write();
    else setTimeout(write, pauseMs);
  };
  socket.write('POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
  sendNext();
  return { closed, answer: () => answer };
}

function nested(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

describe('bounded request bodies', () => {
  let stack: TestStack;
  beforeAll(async () => {
    // A client that never finishes its body is closed after the linger.
    stack = await startStack({ env: { MAX_BODY_BYTES: '4096', REFUSED_BODY_LINGER_SECONDS: '1' } });
  });
  afterAll(() => stack.close());

  it('answers 413 from a declared Content-Length, without waiting for the body, and closes the connection', async () => {
    const exchange = rawExchange(
      stack.worker.url,
      'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n',
      '{"auth_data":',
    );
    const answer = await exchange.closed;
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('"code":"TSW_ERR_BODY_TOO_LARGE"');
    expect(answer.toLowerCase()).toContain('x-worker-error-source: worker');
  });

  it('answers 413 as soon as a chunked body passes MAX_BODY_BYTES, before the client has finished', async () => {
    const chunk = 'x'.repeat(5000);
    const exchange = rawExchange(
      stack.worker.url,
      'POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      `${chunk.length.toString(16)}\r\n${chunk}\r\n`,
    );
    // The body never ends: only a server that stops at the limit answers at all.
    const answer = await exchange.closed;
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('request body exceeds 4096 bytes');
  });

  it.each(['/generate', '/session/create'])(
    'delivers the 413 of %s to a client that writes its whole 32 MB body before reading',
    async (path) => {
      const { written, answer } = await writeFirstExchange(stack.worker.url, path, 32 << 20);
      expect(written).toBeUndefined();
      expect(answer).toMatch(/^HTTP\/1\.1 413 /);
      expect(answer).toContain('"code":"TSW_ERR_BODY_TOO_LARGE"');
      expect(answer.toLowerCase()).toContain('connection: close');
    },
  );

  it('closes a refused connection after REFUSED_BODY_LINGER_SECONDS when the body never ends', async () => {
    // A trickle, a few MB/s at most: far below REFUSED_BODY_LINGER_BYTES, so only the time can end it.
    const { closed, answer } = sendEndlessBody(stack.worker.url, 5);
    await closed;
    expect(answer()).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('bounds the session routes too', async () => {
    const response = await post(`${stack.worker.url}/session/create`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      payload: { on_close_payload: 'x'.repeat(5000) },
    });
    expect(response.status).toBe(413);
    expect(response.json()).toMatchObject({ code: 'TSW_ERR_BODY_TOO_LARGE' });
  });

  it('still serves bodies within the limit, and the process keeps serving after a refusal', async () => {
    const response = await post(`${stack.worker.url}/generate`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      payload: { prompt: 'hello', max_response_tokens: 3 },
    });
    expect(response.status).toBe(200);
  });
});

describe('a refused body that never ends, against a long linger', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({
      env: {
        MAX_BODY_BYTES: '4096',
        REFUSED_BODY_LINGER_SECONDS: '3600',
        REFUSED_BODY_LINGER_BYTES: String(1 << 20),
      },
    });
  });
  afterAll(() => stack.close());

  it('closes the connection after REFUSED_BODY_LINGER_BYTES discarded bytes', async () => {
    const { closed, answer } = sendEndlessBody(stack.worker.url, 0);
    await closed;
    expect(answer()).toMatch(/^HTTP\/1\.1 413 /);
  });
});

describe('JSON nesting', () => {
  let stack: TestStack;
  let callbacks: CallbackServer;
  beforeAll(async () => {
    stack = await startStack();
    callbacks = await startCallbackServer();
  });
  afterAll(async () => {
    await stack.close();
    await callbacks.close();
  });

  it('refuses a handler body nested deeper than 128 levels with 422', async () => {
    const response = await post(
      `${stack.worker.url}/generate`,
      `{"auth_data":{},"payload":{"prompt":${nested(129)}}}`,
    );
    expect(response.status).toBe(422);
    expect(response.json()).toEqual({ error: 'JSON nested deeper than 128 levels' });
  });

  it('refuses a session whose on_close_payload is nested 20,000 levels deep, so closing it cannot crash the worker', async () => {
    const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 });
    const response = await post(
      `${stack.worker.url}/session/create`,
      `{"auth_data":${JSON.stringify(auth)},"payload":{"on_close_route":"${callbacks.url}/done","on_close_payload":${nested(20_000)}}}`,
    );
    expect(response.status).toBe(422);
  });

  it('keeps a session whose payload nests within the limit, and sends its close callback', async () => {
    const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 });
    const created = await post(
      `${stack.worker.url}/session/create`,
      `{"auth_data":${JSON.stringify(auth)},"payload":{"on_close_route":"${callbacks.url}/done","on_close_payload":{"deep":${nested(100)}}}}`,
    );
    expect(created.status).toBe(201);
    const { session_id: id } = created.json() as { session_id: string };
    const ended = await post(`${stack.worker.url}/session/end`, {
      session_id: id,
      session_auth: auth,
    });
    expect(ended.status).toBe(200);
    const callback = await waitFor(() => callbacks.received.find((c) => c.path === '/done'), {
      label: 'the close callback',
    });
    expect(callback.body).toMatchObject({ session_id: id });
  });
});

describe('numbers from clients', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ env: { REPORT_TICK_SECONDS: '0.05' } });
  });
  afterAll(() => stack.close());

  const signedWith = (fields: Record<string, unknown>) => ({
    ...stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
    ...fields,
  });

  it.each([
    ['cost', 1.8e19, 'must be a number from 0 to 10000000'],
    ['cost', -1, 'must be a number from 0 to 10000000'],
    ['request_idx', 1e308, 'must be a non-negative safe integer'],
    ['request_idx', 1.2e29, 'must be a non-negative safe integer'],
    ['request_idx', -1, 'must be a non-negative safe integer'],
    ['reqnum', 2 ** 60, 'must be a non-negative safe integer'],
  ])('answers 422 for auth_data.%s = %d', async (field, value, message) => {
    for (const path of ['/generate', '/session/create']) {
      const response = await post(`${stack.worker.url}${path}`, {
        auth_data: signedWith({ [field]: value }),
        payload: path === '/generate' ? { prompt: 'hi', max_response_tokens: 2 } : {},
      });
      expect(response.status).toBe(422);
      expect(response.json()).toEqual({ auth_data: { [field]: message } });
    }
  });

  it('never lets a report carry a number the autoscaler could not have produced', async () => {
    const hostile = [1.8e19, 1e308, 1.2e29, -1, 2 ** 60, Number.MAX_VALUE];
    for (const value of hostile) {
      for (const field of ['cost', 'request_idx', 'reqnum']) {
        await post(`${stack.worker.url}/session/create`, {
          auth_data: signedWith({ [field]: value }),
          payload: {},
        });
        await post(`${stack.worker.url}/generate`, {
          auth_data: signedWith({ [field]: value }),
          payload: { prompt: 'hi', max_response_tokens: 2 },
        });
      }
    }
    // A legitimate request after them, so the reports below include the worker's latest state.
    const auth = signedWith({}) as { request_idx: number };
    const ok = await post(`${stack.worker.url}/generate`, {
      auth_data: auth,
      payload: { prompt: 'hi', max_response_tokens: 2 },
    });
    expect(ok.status).toBe(200);
    await stack.autoscaler.waitForDeleteRequests((body) =>
      body.requests.some((r) => r.request_idx === auth.request_idx),
    );
    const bounded = (n: number) => Number.isFinite(n) && n >= 0 && n <= 10_000_000;
    for (const { body } of stack.autoscaler.records.workerStatus) {
      for (const field of ['cur_load', 'rej_load', 'new_load', 'cur_perf', 'max_perf'] as const) {
        expect(bounded(body[field]), `${field} = ${body[field]}`).toBe(true);
      }
      for (const idx of body.working_request_idxs) expect(Number.isSafeInteger(idx)).toBe(true);
    }
    for (const { body } of stack.autoscaler.records.deleteRequests) {
      for (const entry of body.requests) {
        expect(Number.isSafeInteger(entry.request_idx) && entry.request_idx >= 0).toBe(true);
      }
    }
  });
});

describe('the signature before the workload', () => {
  let stack: TestStack;
  let workloadCalls = 0;
  beforeAll(async () => {
    const payload = z.object({ prompt: z.string(), max_response_tokens: z.number().int() });
    stack = await startStack({
      worker: defineWorker({
        name: 'counting',
        modelServerUrl: helloWorld.modelServerUrl,
        handlers: [
          defineHandler({
            route: '/generate',
            payload,
            allowParallel: true,
            workload: (p) => {
              workloadCalls++;
              return p.prompt.length;
            },
          }),
        ],
      }),
    });
  });
  afterAll(() => stack.close());

  it('never measures the workload of a request whose signature is forged', async () => {
    const before = workloadCalls;
    const forged = {
      ...stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      signature: Buffer.from('forged').toString('base64'),
    };
    const rejected = await post(`${stack.worker.url}/generate`, {
      auth_data: forged,
      payload: { prompt: 'x'.repeat(1000), max_response_tokens: 1 },
    });
    expect(rejected.status).toBe(401);
    expect(workloadCalls).toBe(before);
    const accepted = await post(`${stack.worker.url}/generate`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
      payload: { prompt: 'x'.repeat(1000), max_response_tokens: 1 },
    });
    expect(accepted.status).toBe(200);
    expect(workloadCalls).toBe(before + 1);
  });
});

describe('the last-resort handler', () => {
  it('logs an error that escapes every catch and keeps serving', async () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', 'start', 'test/fixtures/workers/stray-error'],
      {
        cwd: root,
        env: {
          ...process.env,
          UNSECURED: 'true',
          WORKER_PORT: '0',
          WORKER_HOST: '127.0.0.1',
          REPORT_ADDR: '',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    try {
      const url = await waitFor(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(output)?.[1], {
        label: 'the worker listening',
        timeoutMs: 20_000,
      });
      expect((await get(`${url}/boom`)).status).toBe(200);
      await waitFor(() => output.includes('uncaught exception: the worker keeps serving'), {
        label: 'the stray error logged',
      });
      expect(child.exitCode).toBeNull();
      expect((await get(`${url}/health/live`)).status).toBe(200);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('undelivered /delete_requests/ entries', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({
      env: {
        MAX_PENDING_DELETE_REQUESTS: '5',
        REPORT_TICK_SECONDS: '0.05',
        REPORT_RETRY_DELAY_SECONDS: '0',
      },
    });
  });
  afterAll(() => stack.close());

  it('keeps at most MAX_PENDING_DELETE_REQUESTS while the autoscaler is down, and counts the dropped ones', async () => {
    stack.autoscaler.configure({ failDeleteRequests: 1_000_000 });
    const idxs: number[] = [];
    for (let i = 0; i < 8; i++) {
      const auth = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 });
      idxs.push(auth.request_idx as number);
      const response = await post(`${stack.worker.url}/generate`, {
        auth_data: auth,
        payload: { prompt: 'hi', max_response_tokens: 1 },
      });
      expect(response.status).toBe(200);
    }
    const metric = /^tsworker_delete_requests_dropped_total (\d+)$/m;
    const dropped = await waitFor(
      async () => {
        const text = (await get(`${stack.worker.url}/metrics`)).text;
        const value = Number(metric.exec(text)?.[1]);
        return value === 3 ? value : undefined;
      },
      { label: 'three dropped entries counted' },
    );
    expect(dropped).toBe(3);
    stack.autoscaler.configure({ failDeleteRequests: 0 });
    const delivered = await waitFor(
      () => {
        const ok = stack.autoscaler.records.deleteRequests.filter((r) => r.status === 200);
        const seen = ok.flatMap((r) => r.body.requests.map((e) => e.request_idx));
        return seen.length >= 5 ? seen : undefined;
      },
      { label: 'the kept entries delivered' },
    );
    expect(delivered.sort((a, b) => a - b)).toEqual(idxs.slice(3));
  });
});

describe('slow and numerous clients', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({
      env: {
        HEADERS_TIMEOUT_SECONDS: '0.5',
        REQUEST_TIMEOUT_SECONDS: '1',
        MAX_CONNECTIONS_PER_LISTENER: '3',
      },
    });
  });
  afterAll(() => stack.close());

  it('disconnects a client that never finishes its headers (slowloris)', async () => {
    const exchange = rawExchange(stack.worker.url, 'POST /generate HTTP/1.1\r\nHost: x\r\n', '');
    const answer = await exchange.closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('disconnects a client that never finishes its body', async () => {
    const exchange = rawExchange(
      stack.worker.url,
      'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n',
      '{"auth_data"',
    );
    const answer = await exchange.closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('never cuts an answer that takes longer than REQUEST_TIMEOUT_SECONDS', async () => {
    // The model holds the answer until the request timeout (1 s) has long passed.
    stack.model.configure({ hold: { at: 'headers' } });
    try {
      const aborted = stack.model.stats.aborted;
      const pending = post(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
        payload: { prompt: 'slow', max_response_tokens: 5 },
      });
      await stack.model.waitForHeld(1);
      // Not a synchronisation: the time past the timeout is what this test is about.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      expect(stack.model.stats).toMatchObject({ held: 1, aborted });
      stack.model.release();
      const response = await pending;
      expect(response.status).toBe(200);
      expect(response.json()).toMatchObject({ tokens: 5 });
    } finally {
      stack.model.release();
    }
  });

  it('drops connections past MAX_CONNECTIONS_PER_LISTENER at once', async () => {
    const { hostname, port } = new URL(stack.worker.url);
    const open = await Promise.all(
      [1, 2, 3].map(async () => {
        const socket = connect(Number(port), hostname);
        await once(socket, 'connect');
        return socket;
      }),
    );
    try {
      const extra = connect(Number(port), hostname);
      extra.on('error', () => undefined);
      await once(extra, 'close');
      // The three held connections are untouched: one of them is still served.
      const first = open[0] as Socket;
      let answer = '';
      first.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
      first.write('GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await once(first, 'close');
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const socket of open) socket.destroy();
    }
  });
});
