import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DefinitionError, testLoadMain, type LoadTestDefinition } from '../../lib/index.ts';
import { isLoadTestDefinition, UsageError, type TestLoadIo } from '../../lib/test-harness/index.ts';
import { importWorkerFile } from './import-worker-file.ts';
import { WORKERS_DIR } from './load-worker.ts';

/**
 * Loads `workers/<name>/test_load.ts` (or a folder path's), whose default export says how to make
 * payloads. A worker without one can still be load-tested with --route and --payload-file.
 */
export async function loadTestDefinition(
  nameOrPath: string,
): Promise<LoadTestDefinition | undefined> {
  const folder = existsSync(nameOrPath) ? nameOrPath : join(WORKERS_DIR, nameOrPath);
  if (!existsSync(folder)) {
    throw new DefinitionError(
      `no worker "${nameOrPath}": expected a folder under ${WORKERS_DIR} or a path`,
    );
  }
  const file = ['test_load.ts', 'test_load.js']
    .map((name) => join(folder, name))
    .find((f) => existsSync(f));
  if (file === undefined) return undefined;
  const module = (await importWorkerFile(file)) as { default?: unknown };
  if (!isLoadTestDefinition(module.default)) {
    throw new DefinitionError(`${file} must export defineLoadTest({...}) as its default export`);
  }
  return module.default;
}

/**
 * `tsworker test_load`: PyWorker's load test for the worker named by --worker (default hello_world).
 * Returns the exit code: 0, 1 (run failed or --max-error-rate passed), 2 (bad flags).
 */
export async function testLoadCommand(argv: string[], io?: TestLoadIo): Promise<number> {
  return testLoadMain(
    argv,
    async (options) => {
      try {
        return await loadTestDefinition(options.worker);
      } catch (error) {
        if (error instanceof DefinitionError) {
          throw new UsageError(`--worker: ${error.message}`);
        }
        throw error;
      }
    },
    io,
  );
}
