import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { EventEmitter } from 'node:events';
import type { Dispatcher } from 'undici';
import { upstreamTimeout, upstreamUnavailable } from '../errors.ts';
import { clientResponseHeaders } from './headers.ts';
import { encodeUtf8 } from '../internal/utf8.ts';
import { errorMessage } from '../internal/values.ts';

/** An abort that undici can listen to (an AbortSignal, or an EventEmitter with `aborted`/`reason`). */
export type UpstreamSignal = (AbortSignal | EventEmitter) & AbortState;

/** What the proxy reads of an abort. */
export interface AbortState {
  readonly aborted: boolean;
  readonly reason: unknown;
}

export interface ModelCall {
  readonly path: string;
  readonly body: string;
  readonly signal: UpstreamSignal;
  /** 0 means no limit. */
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/**
 * POSTs a JSON body to the model server through the pool. Connection failures and statuses
 * outside 200-599 become 502, timeouts 504, all marked as the model's fault; an abort is rethrown
 * as it is.
 */
export async function callModel(
  dispatcher: Dispatcher,
  call: ModelCall,
): Promise<Dispatcher.ResponseData> {
  let upstream: Dispatcher.ResponseData;
  try {
    upstream = await dispatcher.request({
      method: 'POST',
      path: call.path,
      headers: JSON_HEADERS,
      // undici would encode a string with Node's UTF-8 codec; most bodies are ASCII (lib/internal/utf8.ts).
      body: encodeUtf8(call.body),
      signal: call.signal,
      headersTimeout: call.headersTimeoutMs,
      bodyTimeout: call.bodyTimeoutMs,
    });
  } catch (error) {
    throw describeUpstreamError(error, call.signal);
  }
  // Not a status a client could act on (undici passes 600-999 through): the model is broken.
  if (upstream.statusCode < 200 || upstream.statusCode > 599) {
    // undici turns a bare destroy() into an 'error' nobody would listen to: dump it instead.
    upstream.body.dump().catch(() => undefined);
    throw upstreamUnavailable(`the model answered with HTTP status ${upstream.statusCode}`);
  }
  return upstream;
}

/** Maps an undici failure to the error the client sees; aborts pass through untouched. */
export function describeUpstreamError(error: unknown, signal: AbortState): unknown {
  if (signal.aborted) return signal.reason;
  const code = (error as { code?: unknown } | null)?.code;
  const message = errorMessage(error);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return upstreamTimeout(message, error);
  }
  return upstreamUnavailable(typeof code === 'string' ? `${code}: ${message}` : message, error);
}

/**
 * Streams the model's answer to the client as it arrives: same status, headers minus hop-by-hop,
 * the body piped chunk by chunk and never buffered. The status and headers go out with the first
 * body chunk, so a model that breaks before its first byte still gets the client a JSON 502 (or
 * 504), not a cut connection. Rejects when either side breaks the stream; a model failure is
 * described as the model's (see `describeUpstreamError`).
 */
export function pipeModelResponse(
  response: ServerResponse,
  upstream: Dispatcher.ResponseData,
  extraHeaders: Record<string, string>,
  signal: AbortState,
): Promise<void> {
  const source = upstream.body;
  return new Promise((resolve, reject) => {
    const modelFailed = (error: unknown): void =>
      reject(error instanceof ResponseClosedError ? error : describeUpstreamError(error, signal));
    const begin = (first: Buffer | null): void => {
      stopWaiting();
      const headers = clientResponseHeaders(upstream.headers);
      Object.assign(headers, extraHeaders);
      response.writeHead(upstream.statusCode, headers);
      if (first === null) {
        response.end();
        resolve();
        return;
      }
      response.write(first);
      // Attached in the same tick as the first chunk: nothing can be emitted in between.
      pipeBody(source, response).then(resolve, modelFailed);
    };
    const onData = (chunk: Buffer): void => begin(chunk);
    const onEnd = (): void => begin(null);
    const onError = (error: Error): void => {
      stopWaiting();
      modelFailed(error);
    };
    const onClose = (): void => onError(new Error('the model closed its answer before its body'));
    const stopWaiting = (): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      source.off('close', onClose);
    };
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    source.on('close', onClose);
  });
}

/** Converts the undici response into a Web Response for a handler's `transformResponse`. */
export function toWebResponse(upstream: Dispatcher.ResponseData): Response {
  const headers = new Headers();
  for (const [key, value] of Object.entries(clientResponseHeaders(upstream.headers))) {
    if (Array.isArray(value)) for (const item of value) headers.append(key, item);
    else if (value !== undefined) headers.set(key, String(value));
  }
  const status = upstream.statusCode;
  const hasBody = status !== 204 && status !== 304;
  return new Response(
    hasBody ? (Readable.toWeb(upstream.body) as ReadableStream<Uint8Array>) : null,
    { status, headers },
  );
}

/** Sends a Web Response (from a transform or an in-process handler) to the Node response. */
export async function sendWebResponse(
  response: ServerResponse,
  web: Response,
  extraHeaders: Record<string, string>,
): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  web.headers.forEach((value, key) => {
    if (key === 'set-cookie') return;
    headers[key] = value;
  });
  const cookies = web.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  Object.assign(headers, extraHeaders);
  response.writeHead(web.status, headers);
  if (web.body === null) {
    response.end();
    return;
  }
  await pipeBody(Readable.fromWeb(web.body as NodeReadableStream), response);
}

/** The reason `pipeBody` rejects when the client leaves before the response is complete. */
export class ResponseClosedError extends Error {
  constructor() {
    super('the client closed the connection before the response was complete');
    this.name = 'ResponseClosedError';
  }
}

/**
 * Pipes a body to the client chunk by chunk, with backpressure. Resolves when the response has
 * finished; rejects when the source fails (the response is then destroyed, so the client sees a
 * broken stream, not a clean end) or the client leaves (the source is then destroyed, which
 * aborts the model request). stream/promises' pipeline does the same but allocates an
 * AbortController and a DOMException per response, which showed up in profiles.
 */
export function pipeBody(source: Readable, response: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      source.off('error', onSourceError);
      response.off('finish', onFinish);
      response.off('close', onClose);
    };
    const onFinish = () => {
      cleanup();
      resolve();
    };
    const onSourceError = (error: Error) => {
      cleanup();
      response.destroy(error);
      reject(error);
    };
    const onClose = () => {
      if (response.writableFinished) return;
      cleanup();
      source.unpipe(response);
      source.destroy();
      reject(new ResponseClosedError());
    };
    source.on('error', onSourceError);
    response.on('finish', onFinish);
    response.on('close', onClose);
    source.pipe(response);
  });
}
