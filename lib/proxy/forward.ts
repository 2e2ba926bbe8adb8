import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { Dispatcher } from 'undici';
import { upstreamTimeout, upstreamUnavailable } from '../errors.ts';
import { clientResponseHeaders } from './headers.ts';

export interface ModelCall {
  readonly path: string;
  readonly body: string;
  readonly signal: AbortSignal;
  /** 0 means no limit. */
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/**
 * POSTs a JSON body to the model server through the pool. Connection failures become 502 and
 * timeouts 504, both marked as the model's fault; an abort is rethrown as it is.
 */
export async function callModel(
  dispatcher: Dispatcher,
  call: ModelCall,
): Promise<Dispatcher.ResponseData> {
  try {
    return await dispatcher.request({
      method: 'POST',
      path: call.path,
      headers: JSON_HEADERS,
      body: call.body,
      signal: call.signal,
      headersTimeout: call.headersTimeoutMs,
      bodyTimeout: call.bodyTimeoutMs,
    });
  } catch (error) {
    throw describeUpstreamError(error, call.signal);
  }
}

/** Maps an undici failure to the error the client sees; aborts pass through untouched. */
export function describeUpstreamError(error: unknown, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return upstreamTimeout(message, error);
  }
  return upstreamUnavailable(typeof code === 'string' ? `${code}: ${message}` : message, error);
}

/**
 * Streams the model's answer to the client as it arrives: same status, headers minus hop-by-hop,
 * the body piped chunk by chunk and never buffered. Rejects when either side breaks the stream.
 */
export async function pipeModelResponse(
  response: ServerResponse,
  upstream: Dispatcher.ResponseData,
  extraHeaders: Record<string, string>,
): Promise<void> {
  const headers = clientResponseHeaders(upstream.headers);
  Object.assign(headers, extraHeaders);
  response.writeHead(upstream.statusCode, headers);
  await pipeBody(upstream.body, response);
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
