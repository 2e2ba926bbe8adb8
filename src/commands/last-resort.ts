import type { Logger } from '../../lib/entry-server.ts';

/**
 * The last line of defence: an error that escapes every catch (a callback, a timer, a stream
 * handler) is logged and the worker keeps serving, instead of Node's default of exiting and
 * dropping every request in flight.
 */
export function keepServingOnStrayErrors(logger: Logger): void {
  const log = logger.child({ component: 'process' });
  process.on('uncaughtException', (error, origin) => {
    log.error({ err: error, origin }, 'uncaught exception: the worker keeps serving');
  });
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled rejection: the worker keeps serving');
  });
}
