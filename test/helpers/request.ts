import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';

export interface JsonResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  json(): unknown;
}

/** POSTs a body (an object is sent as JSON, a string as it is) and reads the whole answer. */
export function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResponse> {
  return send(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export function get(url: string): Promise<JsonResponse> {
  return send(url, { method: 'GET' });
}

async function send(url: string, options: Parameters<typeof request>[1]): Promise<JsonResponse> {
  const response = await request(url, options);
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers as IncomingHttpHeaders,
    text,
    json: () => JSON.parse(text) as unknown,
  };
}

export interface StreamingCall {
  /** Resolves with status and headers as soon as they arrive. */
  readonly headers: Promise<{ status: number; headers: IncomingHttpHeaders }>;
  /** Every chunk so far, in arrival order. */
  readonly chunks: string[];
  /** Resolves when the body has ended (or rejects when the connection breaks). */
  readonly done: Promise<string>;
  /** Drops the connection, as a client that goes away does. */
  disconnect(): void;
}

/**
 * A POST over a plain node:http request, exposing each chunk as it arrives and a way to hang up
 * at any point: before headers, while queued, or mid-stream.
 */
export function postStreaming(url: string, body: unknown): StreamingCall {
  const chunks: string[] = [];
  const req = httpRequest(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    agent: false,
  });
  let resolveHeaders!: (value: { status: number; headers: IncomingHttpHeaders }) => void;
  let rejectHeaders!: (error: unknown) => void;
  const headers = new Promise<{ status: number; headers: IncomingHttpHeaders }>(
    (resolve, reject) => {
      resolveHeaders = resolve;
      rejectHeaders = reject;
    },
  );
  const done = new Promise<string>((resolve, reject) => {
    req.on('response', (res) => {
      resolveHeaders({ status: res.statusCode ?? 0, headers: res.headers });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => chunks.push(chunk));
      res.on('end', () => resolve(chunks.join('')));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.on('error', (error) => {
      rejectHeaders(error);
      reject(error);
    });
  });
  // Callers that only disconnect do not care about these rejections.
  headers.catch(() => undefined);
  done.catch(() => undefined);
  req.end(typeof body === 'string' ? body : JSON.stringify(body));
  return { headers, chunks, done, disconnect: () => req.destroy() };
}
