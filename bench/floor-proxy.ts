/**
 * The floor: the least a Node proxy must do to serve the autoscaler's traffic, as its own process.
 * An undici Pool to the model server, JSON.parse of the `{auth_data, payload}` envelope, the RSA
 * signature over the canonical message checked once per distinct (url, signature) and cached, the
 * payload re-serialised and forwarded, and the answer piped back chunk by chunk (streams too).
 * Nothing else: no validation, no workload, no queue, no accounting, no log, no metrics. What
 * tsworker costs beyond this process is what the bench's ratios show.
 *
 * Environment: FLOOR_PORT, MODEL_SERVER_URL, REPORT_ADDR (its /pubkey/ gives the key).
 * Prints "listening <url>" on stdout once it accepts connections.
 */
import { constants, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { canonicalMessage } from '../lib/auth/canonical.ts';
import { fetchPublicKey } from '../lib/auth/pubkey.ts';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`floor proxy: ${name} is not set`);
  return value;
}

const port = Number(required('FLOOR_PORT'));
const modelUrl = new URL(required('MODEL_SERVER_URL'));
const key: KeyObject = await fetchPublicKey({ reportAddrs: [required('REPORT_ADDR')] });

// The same pool settings as tsworker's (lib/proxy/pool.ts).
const pool = new Pool(modelUrl.origin, {
  connections: 100,
  pipelining: 1,
  keepAliveTimeout: 30_000,
  keepAliveMaxTimeout: 600_000,
  headersTimeout: 0,
  bodyTimeout: 0,
});

const MAX_VERDICTS = 1024;
/** Verdicts by url + NUL + signature. In the current auth mode every request repeats one pair. */
const verdicts = new Map<string, boolean>();

function authorised(authData: unknown): boolean {
  if (typeof authData !== 'object' || authData === null) return false;
  const { signature, url } = authData as { signature?: unknown; url?: unknown };
  if (typeof signature !== 'string' || typeof url !== 'string') return false;
  const cacheKey = `${url}\u0000${signature}`;
  let ok = verdicts.get(cacheKey);
  if (ok === undefined) {
    try {
      ok = verify(
        'sha256',
        Buffer.from(canonicalMessage({ url }, 'current'), 'utf8'),
        { key, padding: constants.RSA_PKCS1_PADDING },
        Buffer.from(signature, 'base64'),
      );
    } catch {
      ok = false;
    }
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    verdicts.set(cacheKey, ok);
  }
  return ok;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

function fail(res: ServerResponse, status: number, error: string): void {
  const body = JSON.stringify({ error });
  res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Chunk by chunk with backpressure; a client that leaves destroys the upstream body. */
function pipe(source: Dispatcher.ResponseData['body'], res: ServerResponse): void {
  source.on('data', (chunk: Buffer) => {
    if (!res.write(chunk)) source.pause();
  });
  res.on('drain', () => source.resume());
  source.on('end', () => res.end());
  source.on('error', () => res.destroy());
  res.on('close', () => {
    if (!source.readableEnded) source.destroy();
  });
}

function forward(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
  let envelope: { auth_data?: unknown; payload?: unknown };
  try {
    envelope = JSON.parse(raw.toString('utf8')) as typeof envelope;
  } catch {
    fail(res, 400, 'invalid JSON');
    return;
  }
  if (typeof envelope !== 'object' || envelope === null) {
    fail(res, 400, 'expected a JSON object');
    return;
  }
  if (!authorised(envelope.auth_data)) {
    fail(res, 401, 'invalid signature');
    return;
  }
  pool
    .request({
      method: 'POST',
      path: req.url ?? '/',
      headers: JSON_HEADERS,
      body: JSON.stringify(envelope.payload),
    })
    .then(
      (upstream) => {
        const headers: Record<string, string> = {};
        const type = upstream.headers['content-type'];
        const length = upstream.headers['content-length'];
        if (typeof type === 'string') headers['content-type'] = type;
        if (typeof length === 'string') headers['content-length'] = length;
        res.writeHead(upstream.statusCode, headers);
        pipe(upstream.body, res);
      },
      (error: unknown) => fail(res, 502, String(error)),
    );
}

const server = createServer({ noDelay: true }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () =>
    forward(req, res, (chunks.length === 1 ? chunks[0] : undefined) ?? Buffer.concat(chunks)),
  );
  req.on('error', () => res.destroy());
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () =>
  process.stdout.write(`listening http://127.0.0.1:${port}\n`),
);

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  void pool.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
