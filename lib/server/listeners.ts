/**
 * The worker's two listeners (protocol §1.2 step 4, §10):
 * - main (`WORKER_PORT`): every route; HTTPS with `SSL_CERT_FILE`/`SSL_KEY_FILE` when `USE_SSL=true`;
 *   bodies up to `MAX_BODY_BYTES`;
 * - plain HTTP (`WORKER_HTTP_PORT`, default `WORKER_PORT + 1`): POST /session/end only, 1 MiB bodies.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { bodyTooLarge, StartupError } from '../errors.ts';
import { sessionEndHandler } from './session-routes.ts';
import type { ResolvedConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { SessionManager } from '../sessions/manager.ts';
import { listen } from '../internal/listen.ts';
import { notFoundHandler, refusedBodyLinger, routeErrorHandler } from './on-error.ts';
import { errorMessage } from '../internal/values.ts';

/** aiohttp's default client_max_size, which the reference's plain listener keeps (§3.1). */
export const PLAIN_BODY_LIMIT_BYTES = 1024 * 1024;

type NodeListener = (request: IncomingMessage, response: ServerResponse) => void;
type AnyServer = Server | HttpsServer;

export interface Listeners {
  /** Base URL of the main listener, `https://` when USE_SSL. */
  readonly url: string;
  readonly port: number;
  /** Base URL of the plain-HTTP `/session/end` listener. */
  readonly httpUrl: string;
  readonly httpPort: number;
  /**
   * Stops accepting connections on both listeners and closes idle keep-alive ones; requests in
   * progress go on to the end.
   */
  stopAccepting(): void;
  /** Closes both listeners and every connection that is left. */
  close(): Promise<void>;
}

/**
 * Keep-alive beyond common load balancers' 60 s. `requestTimeout` bounds receiving a request (headers
 * and body), never the answer: generation can take as long as it takes. Node checks both timeouts
 * every `connectionsCheckingInterval`, so it follows the shorter of them.
 */
function serverOptions(config: ResolvedConfig) {
  const headersTimeout = config.headersTimeoutSeconds * 1000;
  const requestTimeout = config.requestTimeoutSeconds * 1000;
  return {
    keepAliveTimeout: 65_000,
    headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: Math.max(
      100,
      Math.min(30_000, headersTimeout / 2, requestTimeout / 2),
    ),
  } as const;
}

/** What the plain listener's `/session/end` needs. */
export interface PlainListenerDeps {
  readonly sessions: SessionManager;
  readonly logger: Logger;
}

/** Creates and binds both listeners. A bad TLS pair or a busy port is a `StartupError`. */
export async function startListeners(
  config: ResolvedConfig,
  plainDeps: PlainListenerDeps,
  mainListener: NodeListener,
): Promise<Listeners> {
  const options = serverOptions(config);
  const main: AnyServer = config.useSsl
    ? createHttpsServer(
        { ...loadTlsPair(config.sslCertFile, config.sslKeyFile), ...options },
        mainListener,
      )
    : createServer(options, mainListener);
  const plain = createServer(options, plainListener(config, plainDeps));
  if (config.maxConnectionsPerListener !== undefined) {
    // Past it Node drops new connections at once; those in progress are untouched.
    main.maxConnections = config.maxConnectionsPerListener;
    plain.maxConnections = config.maxConnectionsPerListener;
  }
  const mainCloser = closer(main);
  const plainCloser = closer(plain);

  const host = config.workerHost;
  const shownHost =
    host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '[::1]' : host;
  let port: number;
  let httpPort: number;
  try {
    port = await bind(main, config.workerPort, host, 'WORKER_PORT');
    httpPort = await bind(plain, config.workerHttpPort, host, 'WORKER_HTTP_PORT');
  } catch (error) {
    await Promise.all([mainCloser.close(), plainCloser.close()]);
    throw error;
  }
  return {
    url: `${config.useSsl ? 'https' : 'http'}://${shownHost}:${port}`,
    port,
    httpUrl: `http://${shownHost}:${httpPort}`,
    httpPort,
    stopAccepting() {
      mainCloser.stopAccepting();
      plainCloser.stopAccepting();
    },
    async close() {
      await Promise.all([mainCloser.close(), plainCloser.close()]);
    },
  };
}

/**
 * Reads and checks the certificate and key now, so a missing or broken pair stops start-up with
 * the reference's message (§10) instead of failing every TLS handshake later.
 */
export function loadTlsPair(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  try {
    const pair = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
    createSecureContext(pair);
    return pair;
  } catch (error) {
    const detail = errorMessage(error);
    throw new StartupError(
      `Failed to get SSL Certificate: ${detail} (cert ${certFile}, key ${keyFile})`,
      {
        cause: error,
      },
    );
  }
}

/** The plain listener's app: POST /session/end (bodies up to 1 MiB), 404 for everything else. */
function plainListener(config: ResolvedConfig, deps: PlainListenerDeps): NodeListener {
  const app = new Hono<{ Bindings: HttpBindings }>();
  app.post(
    '/session/end',
    bodyLimit({
      maxSize: PLAIN_BODY_LIMIT_BYTES,
      onError: () => {
        throw bodyTooLarge(PLAIN_BODY_LIMIT_BYTES);
      },
    }),
    sessionEndHandler(deps.sessions),
  );
  app.notFound(notFoundHandler);
  app.onError(routeErrorHandler(deps.logger, refusedBodyLinger(config)));
  return getRequestListener(app.fetch, { overrideGlobalObjects: false });
}

/**
 * Binds one listener. A failure is one line naming the variable to change, e.g. "port 3000 on
 * 0.0.0.0 is in use (EADDRINUSE): set WORKER_PORT to a free port".
 */
async function bind(
  server: AnyServer,
  port: number,
  host: string,
  variable: 'WORKER_PORT' | 'WORKER_HTTP_PORT',
): Promise<number> {
  try {
    return (await listen(server, port, host)).port;
  } catch (error) {
    throw new StartupError(bindFailure(error, port, host, variable), { cause: error });
  }
}

function bindFailure(error: unknown, port: number, host: string, variable: string): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const fallback = variable === 'WORKER_HTTP_PORT' ? ' (default WORKER_PORT + 1)' : '';
  switch (code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is in use (EADDRINUSE): set ${variable}${fallback} to a free port`;
    case 'EACCES':
      return `no permission to listen on port ${port} (EACCES): set ${variable}${fallback} to a port above 1023`;
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return `${host} is not an address of this machine (${code}): set WORKER_HOST, e.g. 0.0.0.0`;
    default: {
      const detail = errorMessage(error);
      return `cannot listen on ${host}:${port}: ${detail}`;
    }
  }
}

function closer(server: AnyServer): { stopAccepting(): void; close(): Promise<void> } {
  let closed: Promise<void> | undefined;
  const stop = () =>
    (closed ??= new Promise<void>((resolve) => {
      // The callback gets an error when the server never listened; closed is closed either way.
      server.close(() => resolve());
    }));
  return {
    stopAccepting() {
      void stop();
      server.closeIdleConnections();
    },
    async close() {
      const done = stop();
      server.closeAllConnections();
      await done;
    },
  };
}
