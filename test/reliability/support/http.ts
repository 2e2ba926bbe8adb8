/**
 * The harness's clients. Every call is bounded by a deadline: a request that passes it is counted
 * as hung, never awaited further. All traffic goes to 127.0.0.1.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { Pool, type Dispatcher } from 'undici';

export const LOOPBACK = '127.0.0.1';

export type CallOutcome =
  /** The whole answer arrived. */
  | { kind: 'answered'; status: number; body: string; ms: number }
  /** Headers arrived, then the body broke off. */
  | { kind: 'cut'; status: number; ms: number; error: string; bytes: number }
  /** No answer: refused, reset or closed before the headers. */
  | { kind: 'failed'; ms: number; error: string }
  /** The client's deadline passed first; the harness hung up. */
  | { kind: 'deadline'; status: number | undefined; ms: number };

export interface CallOptions {
  readonly deadlineMs: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Called once, when the first body chunk arrives. */
  readonly onFirstChunk?: () => void;
  /** An external hang-up (e.g. a simulated client leaving). */
  readonly signal?: AbortSignal;
}

/** Keep at most this much of an answer's body. */
const BODY_KEEP_BYTES = 1024 * 1024;

/** A pool of keep-alive connections to one origin, with no timeouts of its own. */
export function pool(origin: string, connections: number): Pool {
  return new Pool(origin, { connections, headersTimeout: 0, bodyTimeout: 0, pipelining: 1 });
}

/** POSTs `body` and reads the whole answer, within `deadlineMs`. Never throws. */
export async function call(
  dispatcher: Dispatcher,
  path: string,
  body: string | Buffer,
  options: CallOptions,
): Promise<CallOutcome> {
  const started = performance.now();
  const controller = new AbortController();
  let deadlineHit = false;
  const timer = setTimeout(() => {
    deadlineHit = true;
    controller.abort();
  }, options.deadlineMs);
  const onExternalAbort = (): void => controller.abort();
  options.signal?.addEventListener('abort', onExternalAbort, { once: true });
  let status: number | undefined;
  let bytes = 0;
  try {
    const response = await dispatcher.request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body,
      signal: controller.signal,
    });
    status = response.statusCode;
    const kept: Buffer[] = [];
    let first = true;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (first) {
        first = false;
        options.onFirstChunk?.();
      }
      if (bytes < BODY_KEEP_BYTES) kept.push(chunk);
      bytes += chunk.length;
    }
    return {
      kind: 'answered',
      status,
      body: Buffer.concat(kept).toString('utf8'),
      ms: performance.now() - started,
    };
  } catch (error) {
    const ms = performance.now() - started;
    if (deadlineHit) return { kind: 'deadline', status, ms };
    const text = describeError(error);
    if (status !== undefined) return { kind: 'cut', status, ms, error: text, bytes };
    return { kind: 'failed', ms, error: text };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onExternalAbort);
  }
}

export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const cause = error.cause instanceof Error ? ` (${describeError(error.cause)})` : '';
  return `${typeof code === 'string' ? `${code}: ` : ''}${error.message}${cause}`;
}

export interface RawOutcome {
  /** The status line's code, when an answer started. */
  readonly status: number | undefined;
  /** The start of the answer (status line and headers). */
  readonly head: string;
  /** The answer's body as received, up to 64 KiB (chunked framing left in). */
  readonly body: string;
  /** answered: a complete answer arrived; closed: the server closed first; deadline: hung. */
  readonly ended: 'answered' | 'closed' | 'deadline';
  readonly error: string | undefined;
  readonly bytesSent: number;
  readonly ms: number;
}

export interface RawOptions {
  readonly deadlineMs: number;
  /** Half-close after the last byte, as a client whose body ends early. */
  readonly halfClose?: boolean;
  /**
   * Send the whole request before reading anything, as Python's http.client does. By default the
   * answer is read while the body is written, as curl does.
   */
  readonly writeFirst?: boolean;
}

/**
 * Writes `wire` (the exact bytes of a request, in these writes) to a fresh TCP connection and reads
 * the answer. Stops writing as soon as the server answers or closes; a generator is never consumed
 * further than that, so a gigabyte body is never built.
 */
export async function rawExchange(
  port: number,
  wire: Iterable<Buffer> | AsyncIterable<Buffer>,
  options: RawOptions,
): Promise<RawOutcome> {
  const started = performance.now();
  const socket = connect({ port, host: LOOPBACK, noDelay: true });
  let received = Buffer.alloc(0);
  let status: number | undefined;
  let answered = false;
  let error: string | undefined;
  let bytesSent = 0;
  let finished = false;
  let startReading = (): void => undefined;

  const done = new Promise<'answered' | 'closed' | 'deadline'>((resolve) => {
    const timer = setTimeout(() => finish('deadline'), options.deadlineMs);
    const finish = (how: 'answered' | 'closed' | 'deadline'): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(how);
    };
    const onData = (chunk: Buffer): void => {
      if (received.length < 64 * 1024) received = Buffer.concat([received, chunk]);
      if (status === undefined) {
        const match = /^HTTP\/1\.[01] (\d{3})/.exec(received.subarray(0, 16).toString('latin1'));
        if (match !== null) status = Number(match[1]);
      }
      if (!answered && isCompleteAnswer(received)) {
        answered = true;
        finish('answered');
      }
    };
    // Without a 'data' listener the socket does not read: what arrives waits in the kernel.
    if (options.writeFirst !== true) socket.on('data', onData);
    else startReading = () => socket.on('data', onData);
    socket.on('error', (err) => {
      error ??= describeError(err);
    });
    socket.on('close', () => finish(answered ? 'answered' : 'closed'));
  });

  const writing = (async () => {
    try {
      await once(socket, 'connect');
      for await (const part of wire) {
        // Let pending input in first, as curl does: a server that answers early (413) and closes
        // resets the connection, and a write that fails first throws its answer away.
        if (options.writeFirst !== true) await new Promise((resolve) => setImmediate(resolve));
        if (finished || status !== undefined || socket.destroyed) break;
        bytesSent += part.length;
        if (!socket.write(part)) {
          await Promise.race([once(socket, 'drain'), done]);
        }
      }
      if (options.halfClose === true && !socket.destroyed) socket.end();
      startReading();
    } catch (err) {
      error ??= describeError(err);
    }
  })();

  const ended = await done;
  await writing;
  const headEnd = received.indexOf('\r\n\r\n');
  return {
    status,
    head: received.subarray(0, headEnd === -1 ? 512 : headEnd).toString('latin1'),
    body: headEnd === -1 ? '' : received.subarray(headEnd + 4).toString('utf8'),
    ended,
    error,
    bytesSent,
    ms: performance.now() - started,
  };
}

/** True once `data` holds a whole HTTP answer (Content-Length or chunked framing). */
function isCompleteAnswer(data: Buffer): boolean {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd === -1) return false;
  const head = data.subarray(0, headEnd).toString('latin1').toLowerCase();
  const bodyBytes = data.length - headEnd - 4;
  const length = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (length !== null) return bodyBytes >= Number(length[1]);
  if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) {
    return data.subarray(data.length - 5).toString('latin1') === '0\r\n\r\n';
  }
  return false;
}

/** The head of a request, ending with the blank line. */
export function requestHead(
  method: string,
  path: string,
  headers: readonly (readonly [string, string])[],
): Buffer {
  let text = `${method} ${path} HTTP/1.1\r\nhost: ${LOOPBACK}\r\n`;
  for (const [name, value] of headers) text += `${name}: ${value}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** GETs a path and returns status and text; throws on a connection failure or after 10 s. */
export async function getText(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, text: await response.text() };
}

/** POSTs JSON and returns status and parsed body; throws on a connection failure or after 10 s. */
export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; json: unknown; text: string }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text };
}
