/**
 * The HTTP plumbing every stand-in shares: JSON and text answers, the request's path and body,
 * a free port, and a close that drops every connection (as a stopped or crashed process would).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export { httpUrl, listen } from '../../lib/internal/listen.ts';

/** Answers `body` as JSON with its length; `headers` are added (or override the defaults). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Answers plain text (a PEM, a summary page) with its length. */
export function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** The request's path without its query. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * Calls `done` with the whole body as text once it has arrived, or `left` when the client went
 * away mid-upload (not an error of ours). No promise: the example model server's zero-latency
 * path calls this once per request.
 */
export function onBody(
  req: IncomingMessage,
  done: (text: string) => void,
  left: () => void = () => undefined,
): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const only = chunks.length === 1 ? chunks[0] : undefined;
    done((only ?? Buffer.concat(chunks)).toString('utf8'));
  });
  req.on('error', left);
}

/** The whole body as text; undefined when the client went away before it ended. */
export function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => onBody(req, resolve, () => resolve(undefined)));
}

/** A JSON object (not an array, not null): what a request body or a recorded field must be. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A port nobody listens on yet, so a URL is known before its server starts. */
export function reservePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const port = (probe.address() as { port: number }).port;
      probe.close(() => resolve(port));
    });
  });
}

/** Stops listening and destroys every open connection; resolves once closed (at once if not listening). */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
