/**
 * One attempt of one request: route it (through the target), send it to the worker, read the
 * answer (counting bytes, stream events and tokens; keeping the body only when a hook needs it)
 * and judge it. The outcome says whether the engine should re-route.
 */
import { StringDecoder } from 'node:string_decoder';
import type { Dispatcher } from 'undici';
import type { ErrorCause, PlannedRequest } from './load-types.ts';
import {
  errorCode,
  isRetryableStatus,
  RoutingError,
  type Destination,
  type RouteContext,
  type Target,
} from './targets.ts';
import { errorMessage } from '../internal/values.ts';
import { isEventStreamContentType } from '../proxy/headers.ts';

/** Requests in flight, by state, for the live view. */
export interface LiveCounts {
  routing: number;
  waiting: number;
  receiving: number;
  backoff: number;
}

/** What every attempt of a run shares. */
export interface AttemptEnvironment {
  readonly target: Target;
  readonly dispatcher: Dispatcher;
  readonly live: LiveCounts;
  readonly now: () => number;
  /** For the timeout's error detail. */
  readonly timeoutMs: number;
  /** A measured request reached this worker. */
  readonly onWorker: (workerUrl: string) => void;
}

/** One attempt's outcome; the fields of the request's record that an attempt decides. */
export interface Attempt {
  status: number;
  cause: ErrorCause | undefined;
  detail: string | undefined;
  sample: string | undefined;
  retryable: boolean;
  hintMs: number | undefined;
  ttfbMs: number | undefined;
  ttftMs: number | undefined;
  streamed: boolean;
  tokens: number;
  bytes: number;
  workerUrl: string | undefined;
}

/** The abort reason of `LoadRun.abort()`. */
export class Cancelled extends Error {}

const WORKER_HEADERS = { 'content-type': 'application/json', accept: '*/*' } as const;
const SAMPLE_CHARS = 300;

function parseMaybe(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The event text of one stream line: SSE `data:` lines and JSONL lines; null for anything else. */
function eventOf(rawLine: string): string | null {
  const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
  if (line === '') return null;
  if (line.startsWith('data:')) {
    const data = line.slice(5).trimStart();
    return data === '[DONE]' || data === '' ? null : data;
  }
  // Other SSE fields and comments are not events.
  if (line.startsWith(':') || /^(event|id|retry):/.test(line)) return null;
  return line;
}

function newAttempt(): Attempt {
  return {
    status: 0,
    cause: undefined,
    detail: undefined,
    sample: undefined,
    retryable: false,
    hintMs: undefined,
    ttfbMs: undefined,
    ttftMs: undefined,
    streamed: false,
    tokens: 0,
    bytes: 0,
    workerUrl: undefined,
  };
}

function fail(attempt: Attempt, cause: ErrorCause, detail: string, retryable = false): Attempt {
  attempt.cause = cause;
  attempt.detail = detail;
  attempt.retryable = retryable;
  return attempt;
}

/** Why an aborted attempt ended: the run's abort, the request's deadline, or another abort. */
export function abortedCause(signal: AbortSignal, timeoutMs: number): [ErrorCause, string] {
  const reason: unknown = signal.reason;
  if (reason instanceof Cancelled) return ['connection', 'cancelled'];
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return ['timeout', `no answer within ${timeoutMs / 1000} s`];
  }
  return ['connection', 'aborted'];
}

/** Routes and sends one attempt; never throws. `timing.routeMs` grows by the time spent routing. */
export async function attemptOnce(
  env: AttemptEnvironment,
  planned: PlannedRequest,
  context: RouteContext,
  t0: number,
  measured: boolean,
  timing: { routeMs: number },
): Promise<Attempt> {
  const attempt = newAttempt();
  const destination = await resolveDestination(env, context, attempt, timing);
  if (destination === undefined) return attempt;
  attempt.workerUrl = destination.workerUrl;
  return sendToWorker(env, planned, destination, context.signal, t0, measured, attempt);
}

async function resolveDestination(
  env: AttemptEnvironment,
  context: RouteContext,
  attempt: Attempt,
  timing: { routeMs: number },
): Promise<Destination | undefined> {
  env.live.routing++;
  const routeStart = env.now();
  try {
    return await env.target.resolve(context);
  } catch (error) {
    failRouting(attempt, error, context.signal, env.timeoutMs);
    return undefined;
  } finally {
    env.live.routing--;
    timing.routeMs += env.now() - routeStart;
  }
}

function failRouting(attempt: Attempt, error: unknown, signal: AbortSignal, timeoutMs: number) {
  if (error instanceof RoutingError && (error.reason === 'not-ready' || !signal.aborted)) {
    attempt.sample = error.message.slice(0, SAMPLE_CHARS);
    attempt.hintMs = error.retryAfterMs;
    fail(attempt, 'routing', error.detail, error.retryable);
  } else if (signal.aborted) {
    fail(attempt, ...abortedCause(signal, timeoutMs));
  } else {
    fail(attempt, 'routing', errorMessage(error));
  }
}

async function sendToWorker(
  env: AttemptEnvironment,
  planned: PlannedRequest,
  destination: Destination,
  signal: AbortSignal,
  t0: number,
  measured: boolean,
  attempt: Attempt,
): Promise<Attempt> {
  let state: 'waiting' | 'receiving' = 'waiting';
  env.live.waiting++;
  try {
    const response = await env.dispatcher.request({
      origin: destination.origin,
      path: destination.path,
      method: 'POST',
      headers: WORKER_HEADERS,
      body: destination.body,
      signal,
    });
    attempt.ttfbMs = env.now() - t0;
    attempt.status = response.statusCode;
    if (measured) env.onWorker(destination.workerUrl);
    env.live.waiting--;
    env.live.receiving++;
    state = 'receiving';
    return await judgeAnswer(planned, response, () => env.now() - t0, attempt);
  } catch (error) {
    if (signal.aborted) return fail(attempt, ...abortedCause(signal, env.timeoutMs));
    return fail(attempt, 'connection', errorCode(error) ?? errorMessage(error), true);
  } finally {
    env.live[state]--;
  }
}

/** Reads the answer's body and decides the attempt: a worker error, a verify failure, or a success. */
async function judgeAnswer(
  planned: PlannedRequest,
  response: Dispatcher.ResponseData,
  sinceStart: () => number,
  attempt: Attempt,
): Promise<Attempt> {
  const ok = attempt.status >= 200 && attempt.status < 300;
  const streamed = ok && isEventStreamContentType(response.headers['content-type']);
  attempt.streamed = streamed;
  const keepBody = planned.verify !== undefined || planned.tokens !== undefined;
  const body = response.body as AsyncIterable<Buffer>;
  const { text, events } = streamed
    ? await readStream(body, planned, keepBody, sinceStart, attempt)
    : { text: await readWhole(body, keepBody || !ok, attempt), events: undefined };
  if (!ok) {
    attempt.sample = text.slice(0, SAMPLE_CHARS);
    const after = Number(response.headers['retry-after']);
    if (Number.isFinite(after) && after >= 0) attempt.hintMs = after * 1000;
    return fail(attempt, 'worker', String(attempt.status), isRetryableStatus(attempt.status));
  }
  let json: unknown;
  if (!streamed && keepBody) {
    const parsed = parseMaybe(text);
    json = parsed === text ? undefined : parsed;
    if (planned.tokens !== undefined && json !== undefined) {
      attempt.tokens = planned.tokens(json, 'body');
    }
  }
  const problem = verifyAnswer(planned, response.headers, attempt.status, text, json, events);
  if (problem === undefined) return attempt;
  attempt.sample = text.slice(0, SAMPLE_CHARS);
  return fail(attempt, 'verify', problem);
}

function verifyAnswer(
  planned: PlannedRequest,
  headers: Dispatcher.ResponseData['headers'],
  status: number,
  text: string,
  json: unknown,
  events: readonly unknown[] | undefined,
): string | undefined {
  if (planned.verify === undefined) return undefined;
  try {
    const { route, payload } = planned;
    const problem = planned.verify({ route, payload, status, headers, text, json, events });
    return typeof problem === 'string' ? problem : undefined;
  } catch (error) {
    return errorMessage(error);
  }
}

/** A non-stream body: kept as text when `collect`, else only counted. */
async function readWhole(
  body: AsyncIterable<Buffer>,
  collect: boolean,
  attempt: Attempt,
): Promise<string> {
  if (!collect) {
    for await (const chunk of body) attempt.bytes += chunk.length;
    return '';
  }
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    attempt.bytes += chunk.length;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Splits decoded text into lines across chunk boundaries. */
class LineSplitter {
  #carry = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(part: string): void {
    this.#carry += part;
    let from = 0;
    let newline: number;
    while ((newline = this.#carry.indexOf('\n', from)) !== -1) {
      this.onLine(this.#carry.slice(from, newline));
      from = newline + 1;
    }
    if (from > 0) this.#carry = this.#carry.slice(from);
  }

  /** The last line, when the body does not end with a newline. */
  end(rest: string): void {
    this.#carry += rest;
    if (this.#carry !== '') this.onLine(this.#carry);
  }
}

/** A stream: times the first event and counts tokens per event; keeps text and events for hooks. */
async function readStream(
  body: AsyncIterable<Buffer>,
  planned: PlannedRequest,
  keepBody: boolean,
  sinceStart: () => number,
  attempt: Attempt,
): Promise<{ text: string; events: unknown[] | undefined }> {
  const events: unknown[] | undefined = planned.verify === undefined ? undefined : [];
  const lines = new LineSplitter((line) => {
    const event = eventOf(line);
    if (event === null) return;
    attempt.ttftMs ??= sinceStart();
    if (!keepBody) {
      attempt.tokens++;
      return;
    }
    const value = parseMaybe(event);
    events?.push(value);
    attempt.tokens += planned.tokens === undefined ? 1 : planned.tokens(value, 'event');
  });
  const decoder = new StringDecoder('utf8');
  let text = '';
  for await (const chunk of body) {
    attempt.bytes += chunk.length;
    const part = decoder.write(chunk);
    if (keepBody) text += part;
    lines.push(part);
  }
  const rest = decoder.end();
  if (keepBody) text += rest;
  lines.end(rest);
  return { text, events };
}
