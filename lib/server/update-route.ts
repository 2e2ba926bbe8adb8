/**
 * POST /pyworker/update (protocol §3.6): with the right Bearer token, create or truncate the marker
 * file a supervisor watches to update and restart the worker.
 *
 * Fixes §12.3: an unset or empty MASTER_TOKEN refuses every call (the reference let a call without
 * a token through), and the token is compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { HttpBindings } from '@hono/node-server';
import type { Hono } from 'hono';
import { WorkerError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { errorMessage } from '../internal/values.ts';

type Env = { Bindings: HttpBindings };

export interface UpdateRouteDeps {
  readonly logger: Logger;
  /** `MASTER_TOKEN`; unset refuses every call. */
  readonly masterToken: string | undefined;
  /** `FORCE_UPDATE_FILE`: the marker the supervisor watches. */
  readonly markerFile: string;
}

export function mountUpdateRoute(app: Hono<Env>, deps: UpdateRouteDeps): void {
  const log = deps.logger.child({ component: 'update' });
  app.post('/pyworker/update', async (c) => {
    if (!tokenMatches(c.req.header('authorization'), deps.masterToken)) {
      throw new WorkerError({ status: 401, code: 'TSW_ERR_UNAUTHORIZED', message: 'unauthorized' });
    }
    const file = deps.markerFile;
    try {
      // Create or truncate, as the reference does; the body is ignored.
      await writeFile(file, '');
    } catch (error) {
      const detail = errorMessage(error);
      log.error({ file, error: detail }, 'could not write the update marker');
      throw new WorkerError({
        status: 500,
        code: 'TSW_ERR_UPDATE_FAILED',
        message: `failed to write file: ${detail}`,
        cause: error,
      });
    }
    log.info({ file }, 'update requested: marker written');
    return c.json({ ok: true });
  });
}

/**
 * The header's token (a leading "Bearer " removed, as the reference does) against MASTER_TOKEN.
 * Both sides are hashed first so the comparison takes the same time whatever their lengths.
 */
export function tokenMatches(header: string | undefined, masterToken: string | undefined): boolean {
  if (masterToken === undefined || masterToken === '' || header === undefined) return false;
  const token = header.replace(/^bearer /i, '');
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(token), digest(masterToken));
}
