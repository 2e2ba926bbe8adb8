import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One POST the callback server received. */
export interface ReceivedCallback {
  readonly path: string;
  readonly body: unknown;
  /** The connection closed before the test answered (the sender gave up). */
  readonly aborted: () => boolean;
  /** Answers the request (by default at once with 200 `{}`). */
  respond(status?: number): void;
}

export interface CallbackServer {
  readonly url: string;
  readonly received: ReceivedCallback[];
  /** Resolves with the next request (or one already received and not yet taken). */
  next(): Promise<ReceivedCallback>;
  close(): Promise<void>;
}

/**
 * A small HTTP server that records the POSTs it gets, such as session on_close callbacks. With
 * `hold: true` it answers only when the test calls `respond()`.
 */
export async function startCallbackServer(
  options: { hold?: boolean; status?: number } = {},
): Promise<CallbackServer> {
  const received: ReceivedCallback[] = [];
  const waiting: ((callback: ReceivedCallback) => void)[] = [];
  let taken = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      let aborted = false;
      res.on('close', () => {
        if (!res.writableFinished) aborted = true;
      });
      const callback: ReceivedCallback = {
        path: req.url ?? '/',
        body,
        aborted: () => aborted,
        respond(status = options.status ?? 200) {
          if (res.writableEnded || res.destroyed) return;
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end('{}');
        },
      };
      received.push(callback);
      const waiter = waiting.shift();
      if (waiter !== undefined) {
        taken += 1;
        waiter(callback);
      }
      if (options.hold !== true) callback.respond();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    next() {
      const ready = received[taken];
      if (ready !== undefined) {
        taken += 1;
        return Promise.resolve(ready);
      }
      return new Promise((resolve) => waiting.push(resolve));
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
