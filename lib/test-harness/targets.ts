/**
 * Where each request goes. Through the autoscaler: POST `<autoscaler>/route/` for a signed
 * `auth_data`, then POST `{auth_data, payload}` to the worker it names (protocol §3.4). Directly:
 * one fixed URL, with the body wrapped as a worker expects it, sent raw (a model server), or built
 * by the caller (the bench's pre-signed bodies).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';

/** Why routing failed; the engine turns it into a `routing` error or a re-route. */
export class RoutingError extends Error {
  readonly reason: 'status' | 'connection' | 'not-ready' | 'invalid';
  readonly status: number | undefined;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    options: {
      reason: RoutingError['reason'];
      status?: number;
      retryable: boolean;
      retryAfterMs?: number;
      cause?: unknown;
    },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RoutingError';
    this.reason = options.reason;
    this.status = options.status;
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The error group shown in the summary, e.g. "status 401", "ECONNREFUSED", "no worker ready". */
  get detail(): string {
    if (this.reason === 'status') return `status ${String(this.status)}`;
    if (this.reason === 'not-ready') return 'no worker ready';
    if (this.reason === 'invalid') return 'invalid /route/ answer';
    return errorCode(this.cause) ?? 'connection failed';
  }
}

/** One attempt's request to the worker (or model server). */
export interface Destination {
  readonly origin: string;
  /** Path and query. */
  readonly path: string;
  readonly body: string;
  /** The worker that answers, for the distinct-workers count. */
  readonly workerUrl: string;
}

/** What a target sees of the request it routes; state persists across one request's attempts. */
export interface RouteContext {
  readonly route: string;
  readonly payloadJson: string;
  readonly cost: number;
  readonly index: number;
  /** 0 for the first attempt. */
  readonly attempt: number;
  readonly dispatcher: Dispatcher;
  readonly signal: AbortSignal;
  /** The request_idx the autoscaler assigned on the first route, resent on re-routes. */
  requestIdx: number | undefined;
}

export interface Target {
  readonly kind: 'route' | 'direct';
  /** For the live view and the summary, e.g. "http://127.0.0.1:8081/route/ (endpoint hello)". */
  readonly description: string;
  /** Where this attempt goes. Throws `RoutingError` when routing fails. */
  resolve(context: RouteContext): Promise<Destination> | Destination;
}

export interface RouteTargetOptions {
  /** e.g. https://run.vast.ai or http://127.0.0.1:8081 */
  readonly autoscalerUrl: string;
  /** The endpoint (group) name. */
  readonly endpoint: string;
  readonly apiKey: string;
  /** @default 60 */
  readonly replayTimeoutSeconds?: number;
  /** Cap of the randomised wait between polls while no worker is ready (protocol §3.4). @default 5000 */
  readonly maxPollIntervalMs?: number;
  /** Headers and body timeout of one /route/ call. @default 10000 */
  readonly routeTimeoutMs?: number;
  /** @default Math.random */
  readonly random?: () => number;
}

const JSON_HEADERS = { 'content-type': 'application/json' } as const;

export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const cause = (error as { cause?: unknown }).cause;
  return cause === undefined || cause === error ? undefined : errorCode(cause);
}

function trimSlash(url: string): string {
  return url.endsWith('/') ? url.slice(0, -1) : url;
}

/** Splits a worker URL plus route into undici's origin and path. */
export function destinationOf(workerUrl: string, route: string): { origin: string; path: string } {
  const url = new URL(workerUrl);
  const base = trimSlash(url.pathname);
  return { origin: url.origin, path: `${base}${route.startsWith('/') ? route : `/${route}`}` };
}

function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Routes every attempt through `<autoscaler>/route/`, as the vastai client does. */
export function routeTarget(options: RouteTargetOptions): Target {
  return new RouteTarget(options);
}

/** What one /route/ call answered. */
interface RouteAnswer {
  readonly status: number;
  readonly text: string;
  readonly retryAfter: number | undefined;
}

class RouteTarget implements Target {
  readonly kind = 'route';
  readonly description: string;
  readonly #options: RouteTargetOptions;
  readonly #origin: string;
  readonly #path: string;
  readonly #headers: Readonly<Record<string, string>>;
  // The worker URL of each answer is parsed once, not per request.
  readonly #destinations = new Map<string, { origin: string; path: string }>();

  constructor(options: RouteTargetOptions) {
    const autoscaler = new URL(trimSlash(options.autoscalerUrl) + '/route/');
    this.#options = options;
    this.#origin = autoscaler.origin;
    this.#path = autoscaler.pathname;
    this.#headers = { ...JSON_HEADERS, authorization: `Bearer ${options.apiKey}` };
    this.description = `${autoscaler.href} (endpoint ${options.endpoint})`;
  }

  async resolve(context: RouteContext): Promise<Destination> {
    for (let poll = 0; ; poll++) {
      const answer = await this.#post(context);
      const text = answer.text;
      const fields = this.#fieldsOf(answer);
      const url = fields['url'];
      if (typeof url !== 'string' || url === '') {
        await this.#waitForWorker(poll, fields['status'], context.signal);
        continue;
      }
      const requestIdx = fields['request_idx'];
      if (typeof requestIdx === 'number' && Number.isInteger(requestIdx)) {
        context.requestIdx = requestIdx;
      }
      const where = this.#destinationOf(url, context.route);
      // auth_data is the route answer's own text, so its numbers reach the worker exactly as
      // the autoscaler wrote them (a JSON round trip would turn 242.0 into 242, §6.3).
      return {
        origin: where.origin,
        path: where.path,
        body: `{"auth_data":${text},"payload":${context.payloadJson}}`,
        workerUrl: url,
      };
    }
  }

  async #post(context: RouteContext): Promise<RouteAnswer> {
    const options = this.#options;
    const timeoutMs = options.routeTimeoutMs ?? 10_000;
    const body = JSON.stringify({
      endpoint: options.endpoint,
      api_key: options.apiKey,
      cost: context.cost,
      ...(context.requestIdx === undefined ? {} : { request_idx: context.requestIdx }),
      replay_timeout: options.replayTimeoutSeconds ?? 60,
    });
    try {
      const response = await context.dispatcher.request({
        origin: this.#origin,
        path: this.#path,
        method: 'POST',
        headers: this.#headers,
        body,
        signal: context.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const retryAfter = retryAfterMs(response.headers['retry-after']);
      return { status: response.statusCode, retryAfter, text: await response.body.text() };
    } catch (error) {
      if (context.signal.aborted) throw context.signal.reason;
      throw new RoutingError(`cannot reach the autoscaler at ${this.#origin}`, {
        reason: 'connection',
        retryable: true,
        cause: error,
      });
    }
  }

  /** The answer's fields; throws unless it is a 200 with a JSON object. */
  #fieldsOf({ status, text, retryAfter }: RouteAnswer): Record<string, unknown> {
    if (status !== 200) {
      throw new RoutingError(`/route/ answered ${status}: ${text.slice(0, 200)}`, {
        reason: 'status',
        status,
        retryable: isRetryableStatus(status),
        ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }),
      });
    }
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      answer = undefined;
    }
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
      throw new RoutingError(
        `/route/ answered something that is not a JSON object: ${text.slice(0, 200)}`,
        { reason: 'invalid', retryable: false },
      );
    }
    return answer as Record<string, unknown>;
  }

  /** No worker ready: waits a randomised, growing time, or fails once the request's deadline passes. */
  async #waitForWorker(poll: number, status: unknown, signal: AbortSignal): Promise<void> {
    const maxPollMs = this.#options.maxPollIntervalMs ?? 5000;
    const random = this.#options.random ?? Math.random;
    const wait = Math.min(maxPollMs, 250 * 2 ** Math.min(poll, 8)) * (0.5 + random() / 2);
    try {
      await sleep(wait, undefined, { signal });
    } catch {
      throw new RoutingError(`no worker ready${typeof status === 'string' ? `: ${status}` : ''}`, {
        reason: 'not-ready',
        retryable: false,
      });
    }
  }

  #destinationOf(url: string, route: string): { origin: string; path: string } {
    let where = this.#destinations.get(url);
    if (where !== undefined) return where;
    try {
      where = destinationOf(url, route);
    } catch {
      throw new RoutingError(`/route/ answered an invalid worker url ${JSON.stringify(url)}`, {
        reason: 'invalid',
        retryable: false,
      });
    }
    if (this.#destinations.size < 10_000) this.#destinations.set(url, where);
    return where;
  }
}

export type DirectEnvelope =
  /** `{auth_data: {request_idx, url}, payload}`, as the vastai client's VAST_DEBUG_WORKER_URL mode. */
  | 'worker'
  /** The payload alone: for calling a model server. */
  | 'raw'
  /** The caller builds the body. */
  | ((context: RouteContext) => string);

export interface DirectTargetOptions {
  /** The worker's (or model server's) base URL. */
  readonly url: string;
  /** @default 'worker' */
  readonly envelope?: DirectEnvelope;
}

/** Sends every request to one URL, with no autoscaler (an UNSECURED worker, or a model server). */
export function directTarget(options: DirectTargetOptions): Target {
  const workerUrl = trimSlash(options.url);
  // Validates the URL at once, so a typo is a flag error and not a thousand connection errors.
  const { origin } = destinationOf(workerUrl, '/');
  const envelope = options.envelope ?? 'worker';
  const paths = new Map<string, string>();
  return {
    kind: 'direct',
    description: workerUrl,
    resolve(context) {
      let path = paths.get(context.route);
      if (path === undefined) {
        path = destinationOf(workerUrl, context.route).path;
        paths.set(context.route, path);
      }
      const body =
        envelope === 'raw'
          ? context.payloadJson
          : envelope === 'worker'
            ? `{"auth_data":{"request_idx":${context.index},"url":${JSON.stringify(workerUrl)}},"payload":${context.payloadJson}}`
            : envelope(context);
      return { origin, path, body, workerUrl };
    },
  };
}
