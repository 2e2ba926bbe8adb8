/**
 * A TCP proxy on 127.0.0.1 between the worker and the model server. In `pass` mode it pipes bytes
 * both ways (a model that dies mid-stream is seen by the worker as a cut connection); in `garbage`
 * mode it answers every connection with broken HTTP of its own, in turn from a fixed list.
 */
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { LOOPBACK } from './http.ts';

export type ProxyMode = 'pass' | 'garbage';

/** Answers a model server should never give. Each is written, then the connection is closed. */
const GARBAGE: readonly { readonly name: string; readonly bytes: Buffer }[] = [
  { name: 'not HTTP', bytes: Buffer.from('NOT HTTP AT ALL\r\n\r\n') },
  { name: 'binary', bytes: Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]) },
  { name: 'status 999', bytes: Buffer.from('HTTP/1.1 999 Weird\r\ncontent-length: 0\r\n\r\n') },
  { name: 'bad header', bytes: Buffer.from('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n') },
  {
    name: 'short body',
    bytes: Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"generated_te'),
  },
  {
    name: 'bad chunk',
    bytes: Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n'),
  },
  {
    name: 'SSE then junk',
    bytes: Buffer.from(
      'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n' +
        '7\r\ndata: {\r\n\r\nqq\r\n',
    ),
  },
  { name: 'HTTP/0.9', bytes: Buffer.from('hello there\n') },
  {
    name: 'length and chunked',
    bytes: Buffer.from(
      'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ),
  },
];

export interface FaultProxy {
  readonly url: string;
  mode: ProxyMode;
  /** Garbage answers sent, by name. */
  readonly garbageSent: Map<string, number>;
  /** Sets the mode and cuts every open connection, so pooled ones do not keep the old mode. */
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  let next = 0;
  const garbageSent = new Map<string, number>();
  const proxy: FaultProxy = {
    url: '',
    mode: 'pass',
    garbageSent,
    setMode(mode) {
      proxy.mode = mode;
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((downstream) => {
    track(downstream);
    if (proxy.mode === 'garbage') {
      const garbage = GARBAGE[next++ % GARBAGE.length];
      if (garbage === undefined) return;
      garbageSent.set(garbage.name, (garbageSent.get(garbage.name) ?? 0) + 1);
      // Answer once the request has started to arrive, as a server would.
      downstream.once('data', () => {
        downstream.end(garbage.bytes);
      });
      return;
    }
    const upstream = connect({ port: targetPort, host: LOOPBACK });
    track(upstream);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    // A model that dies resets its connections; pass that on as a reset, not a clean end.
    upstream.once('error', () => downstream.resetAndDestroy());
    upstream.once('close', () => downstream.destroy());
    downstream.once('close', () => upstream.destroy());
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault proxy: no address');
  (proxy as { url: string }).url = `http://${LOOPBACK}:${address.port}`;
  return proxy;
}
