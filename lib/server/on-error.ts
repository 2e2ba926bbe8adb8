import type { HttpBindings } from '@hono/node-server';
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import type { ResolvedConfig } from '../config.ts';
import { errorHeaders, notFound, WorkerError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { lingerOnRefusedBody, type RefusedBodyLinger } from '../pipeline/parse.ts';
import { requestIdFor } from '../pipeline/request-id.ts';

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
    return errorResponse(c, failure);
  };
}

/**
 * The one way a hono route answers with an error, as the pipeline's `sendError` does: the
 * catalogue's JSON body and status, with `errorHeaders` (request id, error source).
 */
export function errorResponse(c: Context<Env>, failure: WorkerError): Response {
  return c.json(
    failure.body,
    failure.status as 500,
    errorHeaders(failure, requestIdFor(c.env.incoming)),
  );
}

export const notFoundHandler: NotFoundHandler<Env> = (c) =>
  errorResponse(c, notFound(c.req.method, c.req.path));
