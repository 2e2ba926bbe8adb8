import type { HttpBindings } from '@hono/node-server';
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import type { ResolvedConfig } from '../config.ts';
import { WorkerError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { lingerOnRefusedBody, type RefusedBodyLinger } from '../pipeline/parse.ts';

type Env = { Bindings: HttpBindings };

/** `REFUSED_BODY_LINGER_SECONDS` and `REFUSED_BODY_LINGER_BYTES`, as `lingerOnRefusedBody` takes them. */
export function refusedBodyLinger(config: ResolvedConfig): RefusedBodyLinger {
  return { ms: config.refusedBodyLingerSeconds * 1000, bytes: config.refusedBodyLingerBytes };
}

/**
 * The error handler of the Hono apps (the main routes and the plain `/session/end` listener): a
 * `WorkerError` becomes its JSON body, status and headers; anything else a masked 500, logged.
 */
export function routeErrorHandler(
  logger: Logger,
  refusedBodyLinger: RefusedBodyLinger,
): ErrorHandler<Env> {
  const log = logger.child({ component: 'server' });
  return (error: Error, c: Context<Env>) => {
    const failure =
      error instanceof WorkerError
        ? error
        : new WorkerError({
            status: 500,
            code: 'TSW_ERR_INTERNAL',
            message: 'internal worker error',
            cause: error,
          });
    if (failure.code === 'TSW_ERR_INTERNAL')
      log.error({ err: error, path: c.req.path }, 'route failed');
    if (failure.status === 413) lingerOnRefusedBody(c.env.incoming, refusedBodyLinger);
    return c.json(failure.body, failure.status as 500, {
      ...failure.headers,
      'x-worker-error-source': failure.origin,
    });
  };
}

export const notFoundHandler: NotFoundHandler<Env> = (c) =>
  c.json({ error: `no route ${c.req.method} ${c.req.path}`, code: 'TSW_ERR_NOT_FOUND' }, 404);
