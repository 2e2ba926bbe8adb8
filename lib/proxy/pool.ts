import { Pool, type Dispatcher } from 'undici';
import { trimTrailingSlashes } from '../internal/values.ts';

export interface ModelClientOptions {
  /** Connections kept to the model server; requests beyond it wait for a free one. @default 100 */
  connections?: number;
}

/**
 * One keep-alive undici Pool per model server. Pool-wide timeouts are off: generation can take
 * as long as it takes, and handlers that want limits set them per request.
 */
export function createModelPool(baseUrl: string, options: ModelClientOptions = {}): Dispatcher {
  return new Pool(new URL(baseUrl).origin, {
    connections: options.connections ?? 100,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  });
}

/** The path prefix of a model-server base URL such as `http://host:5001/v1`, without a trailing slash. */
export function basePath(baseUrl: string): string {
  return trimTrailingSlashes(new URL(baseUrl).pathname);
}
