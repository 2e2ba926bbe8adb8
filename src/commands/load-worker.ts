import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefinitionError, type WorkerEnv } from '../../lib/index.ts';
import { resolveWorker, type ResolvedWorker } from '../../lib/entry-server.ts';
import { importWorkerFile } from './import-worker-file.ts';

/** The package root: src/commands/ → ../.. (also right for dist/src/commands/ → dist). */
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The worker folder names shipped under workers/. */
export const WORKERS_DIR = join(packageRoot, 'workers');

function candidateFiles(nameOrPath: string): string[] {
  const asPath = resolve(nameOrPath);
  if (existsSync(asPath) && statSync(asPath).isFile()) return [asPath];
  const folder = existsSync(asPath) ? asPath : join(WORKERS_DIR, nameOrPath);
  return [join(folder, 'server.ts'), join(folder, 'server.js')];
}

/**
 * Loads a worker by folder name under workers/ (`hello_world`) or by path (a folder holding
 * server.ts, or the file itself). Its default export must be a worker definition or a factory,
 * which is given `env`.
 */
export async function loadWorker(
  nameOrPath: string,
  env: WorkerEnv = process.env,
): Promise<ResolvedWorker> {
  const file = candidateFiles(nameOrPath).find((candidate) => existsSync(candidate));
  if (file === undefined) {
    throw new DefinitionError(
      `no worker "${nameOrPath}": expected a folder under ${WORKERS_DIR} or a path to a folder with server.ts`,
    );
  }
  const module = (await importWorkerFile(file)) as { default?: unknown };
  if (
    module.default === undefined ||
    typeof module.default !== 'object' ||
    module.default === null
  ) {
    throw new DefinitionError(`${file} must export a worker definition as its default export`);
  }
  return resolveWorker(module.default as Parameters<typeof resolveWorker>[0], env);
}
