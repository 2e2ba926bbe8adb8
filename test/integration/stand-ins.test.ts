import { constants, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalMessage } from '../../lib/auth/index.ts';
import type { PyJsonValue } from '../../lib/auth/index.ts';
import { startExampleModelServer, startLocalAutoscaler } from '../../src/stand-ins/index.ts';
import type {
  ExampleModelServer,
  LocalAutoscaler,
  RouteReady,
  WorkerStatusBody,
} from '../../src/stand-ins/index.ts';
import { spawnStandIn } from '../helpers/spawn-stand-in.ts';
import { waitFor } from '../helpers/wait-for.ts';

const postJson = (url: string, body: unknown, signal?: AbortSignal) =>
  request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });

function sseEvents(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('data: '))
    .map((block) => JSON.parse(block.slice('data: '.length)) as unknown);
}

/** The events of `text` up to its last complete one (a chunk may end mid-event). */
function completeEvents(text: string): unknown[] {
  return sseEvents(text.slice(0, text.lastIndexOf('\n\n') + 2));
}

function verifies(publicKeyPem: string, message: string, signature: string): boolean {
  return verify(
    'sha256',
    Buffer.from(message, 'utf8'),
    { key: createPublicKey(publicKeyPem), padding: constants.RSA_PKCS1_PADDING },
    Buffer.from(signature, 'base64'),
  );
}

const fullStatus = (overrides: Partial<WorkerStatusBody> = {}): WorkerStatusBody => ({
  id: 42,
  mtoken: 'master-token',
  version: '1.1.0',
  loadtime: 0,
  cur_load: 0,
  rej_load: 0,
  new_load: 0,
  error_msg: '',
  max_perf: 0,
  cur_perf: 0,
  cur_capacity: 0,
  max_capacity: 0,
  num_requests_working: 0,
  num_requests_recieved: 0,
  additional_disk_usage: 0,
  working_request_idxs: [],
  url: 'http://127.0.0.1:3000',
  ...overrides,
});

describe('example model server', () => {
  let server: ExampleModelServer;
  let logDir: string;

  beforeAll(async () => {
    logDir = mkdtempSync(join(tmpdir(), 'tsw-stand-ins-'));
    server = await startExampleModelServer({ logFile: join(logDir, 'model.log') });
  });

  afterAll(async () => {
    await server.close();
    rmSync(logDir, { recursive: true, force: true });
  });

  const reset = (): void =>
    server.configure({ tokenDelayMs: 0, failure: { kind: 'none' }, hold: null });

  it('answers /generate with the requested number of tokens as JSON', async () => {
    reset();
    const res = await postJson(`${server.url}/generate`, {
      prompt: 'tell me about cats',
      max_response_tokens: 5,
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(body['tokens']).toBe(5);
    expect(String(body['generated_text']).split(' ')).toHaveLength(5);
    expect(body['prompt_tokens']).toBeGreaterThan(0);
  });

  it('defaults to 16 tokens when max_response_tokens is null and is deterministic', async () => {
    reset();
    const first = (await (
      await postJson(`${server.url}/generate`, { prompt: 'x', max_response_tokens: null })
    ).body.json()) as Record<string, unknown>;
    const second = (await (
      await postJson(`${server.url}/generate`, { prompt: 'y', max_response_tokens: 16 })
    ).body.json()) as Record<string, unknown>;
    expect(first['tokens']).toBe(16);
    expect(first['generated_text']).toBe(second['generated_text']);
  });

  it('streams /generate_stream one SSE event per token, the first before the response ends', async () => {
    // Held after two tokens: the first events have arrived while the response is still open.
    server.configure({
      tokenDelayMs: 0,
      failure: { kind: 'none' },
      hold: { at: 'tokens', afterTokens: 2 },
    });
    const order: string[] = [];
    const onCompleted = (): void => {
      order.push('completed');
    };
    server.on('completed', onCompleted);
    try {
      const res = await postJson(`${server.url}/generate_stream`, {
        prompt: 'stream please',
        max_response_tokens: 5,
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/event-stream');
      let text = '';
      for await (const chunk of res.body) {
        order.push('chunk');
        text += (chunk as Buffer).toString('utf8');
        if (completeEvents(text).length === 2 && server.stats.held === 1) server.release();
      }
      expect(order.indexOf('chunk')).toBeLessThan(order.indexOf('completed'));
      expect(order.filter((entry) => entry === 'chunk').length).toBeGreaterThan(1);
      const events = sseEvents(text);
      expect(events).toHaveLength(6);
      expect(events.at(-1)).toEqual({ done: true, tokens: 5 });
      const tokens = events.slice(0, 5) as { token: string; index: number }[];
      expect(tokens.map((event) => event.index)).toEqual([0, 1, 2, 3, 4]);
      // The streamed tokens add up to exactly what /generate answers.
      server.configure({ tokenDelayMs: 0 });
      const whole = (await (
        await postJson(`${server.url}/generate`, { prompt: 'p', max_response_tokens: 5 })
      ).body.json()) as Record<string, unknown>;
      expect(tokens.map((event) => event.token).join('')).toBe(whole['generated_text']);
    } finally {
      server.off('completed', onCompleted);
    }
  });

  it('counts a client that goes away mid-stream as aborted', async () => {
    server.configure({ failure: { kind: 'none' }, hold: { at: 'tokens', afterTokens: 1 } });
    const before = server.stats;
    const controller = new AbortController();
    const aborted = once(server, 'aborted');
    const res = await postJson(
      `${server.url}/generate_stream`,
      { prompt: 'long', max_response_tokens: 1000 },
      controller.signal,
    );
    let received = '';
    const reading = (async () => {
      for await (const chunk of res.body) {
        received += (chunk as Buffer).toString('utf8');
        controller.abort();
      }
    })();
    await expect(reading).rejects.toThrow();
    expect(received).toMatch(/^data: \{"token"/);
    const [event] = (await aborted) as [{ path: string }];
    expect(event.path).toBe('/generate_stream');
    const after = server.stats;
    expect(after.aborted).toBe(before.aborted + 1);
    expect(after.completed).toBe(before.completed);
    expect(after.inFlight).toBe(0);
    expect(after.held).toBe(0);
    reset();
  });

  it('holds streams after N tokens until released, and waitForHeld counts the held ones', async () => {
    server.configure({ hold: { at: 'tokens', afterTokens: 2 } });
    const completed = server.stats.completed;
    const open = async (): Promise<{ firstTwo: string; rest: Promise<string> }> => {
      const res = await postJson(`${server.url}/generate_stream`, {
        prompt: 'a',
        max_response_tokens: 4,
      });
      const iterator = res.body[Symbol.asyncIterator]();
      let firstTwo = '';
      while (completeEvents(firstTwo).length < 2) {
        firstTwo += ((await iterator.next()).value as Buffer).toString('utf8');
      }
      const rest = (async () => {
        let text = '';
        for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
          text += (next.value as Buffer).toString('utf8');
        }
        return text;
      })();
      return { firstTwo, rest };
    };
    const streams = await Promise.all([open(), open()]);
    await server.waitForHeld(2);
    expect(server.stats).toMatchObject({ held: 2, inFlight: 2, completed });
    server.release();
    for (const stream of streams) {
      expect(sseEvents(stream.firstTwo)).toHaveLength(2);
      const events = sseEvents(stream.firstTwo + (await stream.rest));
      expect(events.at(-1)).toEqual({ done: true, tokens: 4 });
      expect(events).toHaveLength(5);
    }
    expect(server.stats).toMatchObject({ held: 0, completed: completed + 2 });
    expect(server.settings.hold).toBeNull();
  });

  it('holds before the headers, lets a new request through once released, and forgets a client that left', async () => {
    server.configure({ hold: { at: 'headers' } });
    const controller = new AbortController();
    const leaving = postJson(`${server.url}/generate`, { prompt: 'a' }, controller.signal);
    leaving.catch(() => undefined);
    let answered = false;
    const staying = postJson(`${server.url}/generate_stream`, {
      prompt: 'a',
      max_response_tokens: 1,
    });
    void staying.then(() => {
      answered = true;
    });
    await server.waitForHeld(2);
    expect(answered).toBe(false);
    const aborted = once(server, 'aborted');
    controller.abort();
    await aborted;
    expect(server.stats.held).toBe(1);
    server.release();
    const res = await staying;
    expect(res.statusCode).toBe(200);
    expect(sseEvents(await res.body.text()).at(-1)).toEqual({ done: true, tokens: 1 });
    const after = await postJson(`${server.url}/generate`, { prompt: 'a', max_response_tokens: 1 });
    expect(after.statusCode).toBe(200);
    await after.body.dump();
    expect(server.stats.held).toBe(0);
  });

  it('waitForHeld fails with a clear message when too few requests arrive', async () => {
    await expect(server.waitForHeld(1, 50)).rejects.toThrow(/0 of 1 requests held after 50 ms/);
  });

  it('holds and releases through /_control, and /_stats counts the held requests', async () => {
    const hold = await postJson(`${server.url}/_control`, { hold: { at: 'headers' } });
    expect(await hold.body.json()).toMatchObject({ hold: { at: 'headers' } });
    const pending = postJson(`${server.url}/generate`, { prompt: 'a', max_response_tokens: 1 });
    await waitFor(async () => {
      const stats = (await (await request(`${server.url}/_stats`)).body.json()) as { held: number };
      return stats.held === 1;
    });
    const bad = await postJson(`${server.url}/_control`, { hold: { at: 'tokens' } });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    await (await postJson(`${server.url}/_control`, { hold: null })).body.dump();
    const res = await pending;
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });

  it('answers an injected status with its body', async () => {
    server.configure({ failure: { kind: 'status', status: 503, body: '{"error":"overloaded"}' } });
    const res = await postJson(`${server.url}/generate`, { prompt: 'a', max_response_tokens: 1 });
    expect(res.statusCode).toBe(503);
    expect(await res.body.json()).toEqual({ error: 'overloaded' });
    server.configure({ failure: { kind: 'status', status: 500 } });
    const plain = await postJson(`${server.url}/generate_stream`, { prompt: 'a' });
    expect(plain.statusCode).toBe(500);
    expect(await plain.body.json()).toEqual({ error: 'injected failure (500)' });
    reset();
  });

  it('hangs before the headers until the client gives up', async () => {
    server.configure({ failure: { kind: 'hang-headers' } });
    const before = server.stats;
    const controller = new AbortController();
    const arrived = once(server, 'request');
    const aborted = once(server, 'aborted');
    const pending = postJson(`${server.url}/generate`, { prompt: 'a' }, controller.signal);
    pending.catch(() => undefined);
    await arrived;
    expect(server.stats.inFlight).toBe(before.inFlight + 1);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await aborted;
    expect(server.stats.aborted).toBe(before.aborted + 1);
    expect(server.stats.inFlight).toBe(before.inFlight);
    reset();
  });

  it('drops the connection mid-stream after the given number of tokens', async () => {
    server.configure({ failure: { kind: 'drop-mid-stream', afterTokens: 2 } });
    const before = server.stats;
    const dropped = once(server, 'dropped');
    const res = await postJson(`${server.url}/generate_stream`, {
      prompt: 'a',
      max_response_tokens: 10,
    });
    expect(res.statusCode).toBe(200);
    let text = '';
    const reading = (async () => {
      for await (const chunk of res.body) text += (chunk as Buffer).toString('utf8');
    })();
    await expect(reading).rejects.toThrow();
    await dropped;
    expect(sseEvents(text)).toHaveLength(2);
    expect(server.stats.dropped).toBe(before.dropped + 1);
    expect(server.stats.aborted).toBe(before.aborted);
    reset();
  });

  it('drops a /generate response half way through its JSON body', async () => {
    server.configure({ failure: { kind: 'drop-mid-stream', afterTokens: 0 } });
    const dropped = once(server, 'dropped');
    const reading = (async () => {
      const res = await postJson(`${server.url}/generate`, { prompt: 'a' });
      return res.body.text();
    })();
    await expect(reading).rejects.toThrow();
    await dropped;
    reset();
  });

  it('resets the connection at once', async () => {
    server.configure({ failure: { kind: 'reset' } });
    const dropped = once(server, 'dropped');
    await expect(postJson(`${server.url}/generate`, { prompt: 'a' })).rejects.toThrow();
    await dropped;
    reset();
  });

  it('fails exactly the given fraction of requests', async () => {
    server.configure({ failure: { kind: 'fail-rate', rate: 0.5, status: 500 } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await postJson(`${server.url}/generate`, { prompt: 'a', max_response_tokens: 1 });
      await res.body.dump();
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([200, 500, 200, 500]);
    reset();
  });

  it('answers bad requests like a real server: 400 for bad bodies, 404 for unknown paths', async () => {
    reset();
    const invalid = await postJson(`${server.url}/generate`, '{not json');
    expect(invalid.statusCode).toBe(400);
    expect(await invalid.body.json()).toEqual({ error: 'invalid JSON' });
    const noPrompt = await postJson(`${server.url}/generate`, { max_response_tokens: 3 });
    expect(noPrompt.statusCode).toBe(400);
    expect(((await noPrompt.body.json()) as Record<string, unknown>)['error']).toMatch(/prompt/);
    const unknown = await postJson(`${server.url}/nope`, {});
    expect(unknown.statusCode).toBe(404);
    await unknown.body.dump();
  });

  it('reports health on /healthcheck and 503 when told it is unhealthy', async () => {
    const ok = await request(`${server.url}/healthcheck`);
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toEqual({ status: 'ok' });
    server.configure({ healthy: false });
    const sick = await request(`${server.url}/healthcheck`);
    expect(sick.statusCode).toBe(503);
    await sick.body.dump();
    server.configure({ healthy: true });
  });

  it('can be steered and inspected over HTTP through /_control and /_stats', async () => {
    const control = await postJson(`${server.url}/_control`, {
      failure: { kind: 'status', status: 429 },
    });
    expect(control.statusCode).toBe(200);
    await control.body.dump();
    const res = await postJson(`${server.url}/generate`, { prompt: 'a' });
    expect(res.statusCode).toBe(429);
    await res.body.dump();
    const bad = await postJson(`${server.url}/_control`, { failure: { kind: 'explode' } });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    await (await postJson(`${server.url}/_control`, { failure: { kind: 'none' } })).body.dump();
    const stats = (await (await request(`${server.url}/_stats`)).body.json()) as Record<
      string,
      unknown
    >;
    expect(stats).toMatchObject({ received: server.stats.received, inFlight: 0, loaded: true });
  });

  it('writes a realistic log ending in "server has started", and appends what writeLog is given', () => {
    const log = readFileSync(join(logDir, 'model.log'), 'utf8');
    expect(log).toContain('Loading model weights');
    expect(log).toContain('"message":"Download');
    expect(log).toContain(`server has started on port ${server.port}`);
    server.writeLog('Exception: corrupted model file');
    expect(
      readFileSync(join(logDir, 'model.log'), 'utf8').endsWith('Exception: corrupted model file\n'),
    ).toBe(true);
  });

  it('answers 503 and has not logged "server has started" while the model loads', async () => {
    const logFile = join(logDir, 'loading.log');
    const loading = await startExampleModelServer({ logFile, loadDelayMs: 600_000 });
    try {
      expect(loading.loaded).toBe(false);
      expect(readFileSync(logFile, 'utf8')).toContain('"message":"Download');
      expect(readFileSync(logFile, 'utf8')).not.toContain('server has started');
      const health = await request(`${loading.url}/healthcheck`);
      expect(health.statusCode).toBe(503);
      expect(await health.body.json()).toEqual({ status: 'loading' });
      const res = await postJson(`${loading.url}/generate`, { prompt: 'a' });
      expect(res.statusCode).toBe(503);
      await res.body.dump();
    } finally {
      await loading.close();
    }
  });

  it('logs "server has started" once loadDelayMs has passed, then serves', async () => {
    const logFile = join(logDir, 'slow.log');
    const slow = await startExampleModelServer({ logFile, loadDelayMs: 50 });
    try {
      if (!slow.loaded) await once(slow, 'loaded');
      expect(readFileSync(logFile, 'utf8')).toContain(`server has started on port ${slow.port}`);
      const res = await postJson(`${slow.url}/generate`, { prompt: 'a' });
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    } finally {
      await slow.close();
    }
  });
});

describe('local autoscaler', () => {
  let autoscaler: LocalAutoscaler;
  const workerUrl = 'http://127.0.0.1:3000';

  beforeAll(async () => {
    autoscaler = await startLocalAutoscaler({ workerUrl });
  });

  afterAll(async () => {
    await autoscaler.close();
  });

  it('serves its public key as PEM on /pubkey/', async () => {
    const res = await request(`${autoscaler.url}/pubkey/`);
    expect(res.statusCode).toBe(200);
    const pem = await res.body.text();
    expect(pem).toBe(autoscaler.publicKeyPem);
    const key = createPublicKey(pem);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  it('routes to the worker with auth_data whose signature covers {url}', async () => {
    const res = await postJson(`${autoscaler.url}/route/`, {
      endpoint: 'my-endpoint',
      api_key: 'key',
      cost: 256,
      request_idx: 77,
      replay_timeout: 60,
    });
    expect(res.statusCode).toBe(200);
    const auth = (await res.body.json()) as RouteReady;
    expect(auth).toMatchObject({ endpoint: 'my-endpoint', url: workerUrl, cost: 256 });
    expect(auth.request_idx).toBe(77);
    expect(typeof auth.__request_id).toBe('string');
    expect(Number.isInteger(auth.reqnum)).toBe(true);
    const message = canonicalMessage({ url: auth.url }, 'current');
    expect(verifies(autoscaler.publicKeyPem, message, auth.signature)).toBe(true);
    // The same bytes Python's json.dumps({"url": ...}, indent=4, sort_keys=True) gives.
    const python = `{\n    "url": "${workerUrl}"\n}`;
    expect(verifies(autoscaler.publicKeyPem, python, auth.signature)).toBe(true);
    expect(autoscaler.records.routes.at(-1)?.response).toEqual(auth);
  });

  it('numbers routes: reqnum grows per worker and request_idx is assigned when absent', async () => {
    const first = autoscaler.issueAuthData({ endpoint: 'e', cost: 1 });
    const second = autoscaler.issueAuthData({ endpoint: 'e', cost: 1 });
    expect(second.reqnum).toBeGreaterThan(first.reqnum);
    expect(second.request_idx).toBeGreaterThan(first.request_idx ?? Infinity);
    expect(second.signature).toBe(autoscaler.sign({ url: workerUrl }));
  });

  it('rejects a /route/ request without endpoint or api_key with 400', async () => {
    const res = await postJson(`${autoscaler.url}/route/`, { endpoint: 'e', cost: 1 });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as Record<string, unknown>)['error']).toBeTypeOf('string');
  });

  it('says no workers are ready when none is registered', async () => {
    const empty = await startLocalAutoscaler({ privateKey: autoscaler.privateKey });
    try {
      const res = await postJson(`${empty.url}/route/`, { endpoint: 'e', api_key: 'k', cost: 1 });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({
        endpoint: 'e',
        status:
          'no workers ready: total workers: 0, loading workers: 0, standby workers: 0, error workers: 0',
      });
      expect(() => empty.issueAuthData({ endpoint: 'e', cost: 1 })).toThrow(/no worker/);
    } finally {
      await empty.close();
    }
  });

  it('records /worker_status/ and /delete_requests/ bodies and checks them against the contract', async () => {
    const status = fullStatus({ cur_load: 12.5 });
    const res = await postJson(`${autoscaler.url}/worker_status/`, status);
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({});
    const recorded = autoscaler.records.workerStatus.at(-1);
    expect(recorded).toMatchObject({ body: status, conforms: true, problems: [], status: 200 });
    expect(recorded?.at).toBeTypeOf('number');

    const deletion = {
      worker_id: 42,
      mtoken: 'master-token',
      requests: [
        {
          request_idx: 7,
          success: true,
          status: 'Success',
          entered_queue_at: 1.5,
          work_started_at: 1.6,
          work_completed_at: 2.5,
        },
      ],
    };
    const del = await postJson(`${autoscaler.url}/delete_requests/`, deletion);
    expect(del.statusCode).toBe(200);
    await del.body.dump();
    expect(autoscaler.records.deleteRequests.at(-1)).toMatchObject({
      body: deletion,
      conforms: true,
    });

    // The old two-batch format is still recorded, flagged as not matching the newest contract.
    const old = await postJson(`${autoscaler.url}/delete_requests/`, {
      worker_id: 42,
      mtoken: '',
      request_idxs: [1, 2],
      success: true,
    });
    expect(old.statusCode).toBe(200);
    await old.body.dump();
    const oldRecord = autoscaler.records.deleteRequests.at(-1);
    expect(oldRecord?.conforms).toBe(false);
    expect(oldRecord?.problems.join('\n')).toMatch(/requests/);

    const invalid = await postJson(`${autoscaler.url}/worker_status/`, '{oops');
    expect(invalid.statusCode).toBe(400);
    await invalid.body.dump();

    const records = (await (await request(`${autoscaler.url}/_records`)).body.json()) as {
      workerStatus: unknown[];
      deleteRequests: unknown[];
    };
    expect(records.workerStatus).toHaveLength(autoscaler.records.workerStatus.length);
    expect(records.deleteRequests).toHaveLength(2);

    const summary = await (await request(`${autoscaler.url}/`)).body.text();
    expect(summary).toContain(`/worker_status/ posts: ${autoscaler.records.workerStatus.length}`);
    expect(summary).toContain('"cur_load": 12.5');
  });

  it('records bodies of any shape without tripping over them', async () => {
    const fresh = await startLocalAutoscaler({ privateKey: autoscaler.privateKey });
    try {
      for (const body of ['null', '[1,2]', '{"id":"x"}']) {
        const res = await postJson(`${fresh.url}/worker_status/`, body);
        expect(res.statusCode).toBe(200);
        await res.body.dump();
        const del = await postJson(`${fresh.url}/delete_requests/`, body);
        expect(del.statusCode).toBe(200);
        await del.body.dump();
      }
      expect(fresh.records.workerStatus.map((record) => record.body)).toEqual([
        null,
        [1, 2],
        { id: 'x' },
      ]);
      expect(fresh.records.workerStatus.every((record) => !record.conforms)).toBe(true);
      expect(fresh.records.workerStatus[2]?.problems.join('\n')).toMatch(/^id: /m);
      const summary = await request(`${fresh.url}/`);
      expect(summary.statusCode).toBe(200);
      expect(await summary.body.text()).toContain('/worker_status/ posts: 3');
      await expect(
        fresh.waitForReport((body) => body.working_request_idxs.includes(1), 20),
      ).rejects.toThrow(/3 received.*the predicate threw/);
    } finally {
      await fresh.close();
    }
  });

  it('routes to the worker a loaded, healthy report announces', async () => {
    const fresh = await startLocalAutoscaler({ privateKey: autoscaler.privateKey });
    try {
      const loading = await postJson(`${fresh.url}/worker_status/`, fullStatus());
      await loading.body.dump();
      expect(fresh.workerUrl).toBeUndefined();
      const loaded = await postJson(
        `${fresh.url}/worker_status/`,
        fullStatus({ loadtime: 3.2, max_perf: 100, url: 'http://127.0.0.1:4444' }),
      );
      await loaded.body.dump();
      expect(fresh.workerUrl).toBe('http://127.0.0.1:4444');
      expect(fresh.issueAuthData({ endpoint: 'e', cost: 1 }).url).toBe('http://127.0.0.1:4444');
    } finally {
      await fresh.close();
    }
  });

  it('fails the next N /worker_status/ posts with 500 when told to', async () => {
    autoscaler.configure({ failWorkerStatus: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${autoscaler.url}/worker_status/`, fullStatus({ id: 100 + i }));
      await res.body.dump();
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([500, 500, 200]);
    expect(autoscaler.records.workerStatus.slice(-3).map((record) => record.status)).toEqual([
      500, 500, 200,
    ]);
  });

  it('answers 503 to everything while down, but still shows what it received', async () => {
    autoscaler.configure({ down: true });
    try {
      const pubkey = await request(`${autoscaler.url}/pubkey/`);
      expect(pubkey.statusCode).toBe(503);
      await pubkey.body.dump();
      const route = await postJson(`${autoscaler.url}/route/`, { endpoint: 'e', api_key: 'k' });
      expect(route.statusCode).toBe(503);
      await route.body.dump();
      const records = await request(`${autoscaler.url}/_records`);
      expect(records.statusCode).toBe(200);
      await records.body.dump();
    } finally {
      autoscaler.configure({ down: false });
    }
  });

  it('waitForReport resolves with past or future matching reports and fails with a clear message', async () => {
    const earlier = await postJson(
      `${autoscaler.url}/worker_status/`,
      fullStatus({ cur_load: 33 }),
    );
    await earlier.body.dump();
    const past = await autoscaler.waitForReport((body) => body.cur_load === 33, 1_000);
    expect(past.cur_load).toBe(33);

    const future = autoscaler.waitForReport((body) => body.error_msg === 'boom', 10_000);
    const res = await postJson(
      `${autoscaler.url}/worker_status/`,
      fullStatus({ error_msg: 'boom' }),
    );
    await res.body.dump();
    expect((await future).error_msg).toBe('boom');

    await expect(autoscaler.waitForReport((body) => body.id === -1, 20)).rejects.toThrow(
      /no matching \/worker_status\/ post within 20 ms/,
    );
  });

  it('in legacy mode issues five-field auth_data signed over all fields but the signature', async () => {
    const legacy = await startLocalAutoscaler({
      workerUrl,
      authMode: 'legacy',
      privateKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
    });
    expect(legacy.publicKeyPem).not.toBe(autoscaler.publicKeyPem);
    try {
      const res = await postJson(`${legacy.url}/route/`, { endpoint: 'e', api_key: 'k', cost: 5 });
      const auth = (await res.body.json()) as Record<string, PyJsonValue>;
      expect(Object.keys(auth).sort()).toEqual(['cost', 'endpoint', 'reqnum', 'signature', 'url']);
      const signature = String(auth['signature']);
      expect(verifies(legacy.publicKeyPem, canonicalMessage(auth, 'legacy'), signature)).toBe(true);
      const python =
        `{\n    "cost": 5,\n    "endpoint": "e",\n    "reqnum": ${String(auth['reqnum'])},\n` +
        `    "url": "${workerUrl}"\n}`;
      expect(verifies(legacy.publicKeyPem, python, signature)).toBe(true);
    } finally {
      await legacy.close();
    }
  });
});

describe('stand-ins as separate processes', () => {
  it('spawns the example model server, which answers and stops cleanly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsw-spawn-'));
    const logFile = join(dir, 'model.log');
    const spawned = await spawnStandIn('example-model-server', { MODEL_LOG: logFile });
    try {
      const res = await postJson(`${spawned.url}/generate`, {
        prompt: 'hi',
        max_response_tokens: 3,
      });
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as Record<string, unknown>)['tokens']).toBe(3);
      await waitFor(() => readFileSync(logFile, 'utf8').includes('server has started'), {
        label: 'spawned model server logged "server has started"',
      });
      const stats = (await (await request(`${spawned.url}/_stats`)).body.json()) as Record<
        string,
        unknown
      >;
      expect(stats['completed']).toBe(1);
    } finally {
      const exit = await spawned.stop();
      rmSync(dir, { recursive: true, force: true });
      expect(exit).toEqual({ code: 0, signal: null });
    }
  });

  it('spawns the local autoscaler, which records reports and stops cleanly', async () => {
    const spawned = await spawnStandIn('local-autoscaler', { WORKER_URL: 'http://127.0.0.1:9' });
    try {
      const pem = await (await request(`${spawned.url}/pubkey/`)).body.text();
      expect(createPublicKey(pem).asymmetricKeyType).toBe('rsa');
      const route = (await (
        await postJson(`${spawned.url}/route/`, { endpoint: 'e', api_key: 'k', cost: 1 })
      ).body.json()) as RouteReady;
      expect(route.url).toBe('http://127.0.0.1:9');
      expect(verifies(pem, canonicalMessage({ url: route.url }, 'current'), route.signature)).toBe(
        true,
      );
      await (await postJson(`${spawned.url}/worker_status/`, fullStatus())).body.dump();
      const records = (await (await request(`${spawned.url}/_records`)).body.json()) as {
        workerStatus: { body: WorkerStatusBody }[];
      };
      expect(records.workerStatus.map((record) => record.body.id)).toEqual([42]);
      await waitFor(() => spawned.stderr().includes('worker_status 200'), {
        label: 'autoscaler logged the report to stderr',
      });
    } finally {
      expect(await spawned.stop()).toEqual({ code: 0, signal: null });
    }
  });
});
