import { register } from 'node:module';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Importing a worker's files (server.ts, test_load.ts) from wherever they are: a folder under
 * workers/, or a user's own folder anywhere on disk, and whether the CLI runs from its TypeScript
 * sources (through tsx) or compiled in dist/.
 *
 * A user's worker imports the framework by its package name, `import { defineWorker } from
 * 'tsworker'`. The CLI resolves that name to the very framework module it runs itself (lib/index.ts
 * from the sources, dist/lib/index.js when compiled), so the worker's handlers, errors and zod
 * schemas are the CLI's own: one copy of the framework, whether or not tsworker is installed next to
 * the worker.
 */

/** True when this module is compiled JavaScript (dist/), false when it runs as TypeScript. */
const compiled = !fileURLToPath(import.meta.url).endsWith('.ts');

/** The package's own workers (src/commands/ → ../../workers, also right in dist/). */
const ownWorkers = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'workers');

/** The framework entry this process runs, in the same form (source or compiled) as this file. */
export const FRAMEWORK_URL = new URL(`../../lib/index.${compiled ? 'js' : 'ts'}`, import.meta.url)
  .href;

const TYPESCRIPT = /\.[cm]?tsx?$/;

let tsxRegistered = false;
let frameworkAliasRegistered = false;

/**
 * The resolve hook for users' workers, run off-thread (module.register), so it is self-contained
 * source. It maps the bare specifier `tsworker` to FRAMEWORK_URL (and its subpaths `tsworker/server`,
 * `tsworker/load-test`, `tsworker/presets` to their entries beside it), and loads a worker's own
 * TypeScript files (imported by path, with their `.ts` extension) as ES modules, whatever
 * package.json their folder sits under: without `"type": "module"` tsx would compile them to
 * CommonJS, where `import ... from 'tsworker'` becomes a `require` this hook never sees.
 */
function frameworkHooks(frameworkUrl: string): string {
  return `import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const FRAMEWORK_URL = ${JSON.stringify(frameworkUrl)};
const PACKAGE_URL = new URL('../', FRAMEWORK_URL).href;
const EXTENSION = FRAMEWORK_URL.slice(FRAMEWORK_URL.lastIndexOf('.'));
const SUBPATHS = {
  'tsworker/server': 'entry-server',
  'tsworker/load-test': 'entry-load-test',
  'tsworker/presets': 'entry-presets',
};
const byPath = /^(\\.{1,2}\\/|\\/|file:)/;
export async function resolve(specifier, context, next) {
  if (specifier === 'tsworker') return { url: FRAMEWORK_URL, shortCircuit: true };
  if (Object.hasOwn(SUBPATHS, specifier)) {
    const url = new URL(SUBPATHS[specifier] + EXTENSION, FRAMEWORK_URL).href;
    return { url, format: 'module', shortCircuit: true };
  }
  if (/\\.tsx?$/.test(specifier) && byPath.test(specifier) && context.parentURL?.startsWith('file:')) {
    const url = new URL(specifier, context.parentURL);
    const own = url.href.includes('/node_modules/') || url.href.startsWith(PACKAGE_URL);
    if (!own && existsSync(fileURLToPath(url))) {
      return { url: url.href, format: 'module', shortCircuit: true };
    }
  }
  return next(specifier, context);
}
`;
}

/** Registers frameworkHooks once; later imports resolve through it. */
function registerFrameworkAlias(): void {
  if (frameworkAliasRegistered) return;
  frameworkAliasRegistered = true;
  register(`data:text/javascript,${encodeURIComponent(frameworkHooks(FRAMEWORK_URL))}`);
}

/** Compiled code cannot import .ts: tsx (a runtime dependency) loads it, registered on first need. */
async function registerTypeScript(): Promise<void> {
  if (tsxRegistered) return;
  tsxRegistered = true;
  const tsx = await import('tsx/esm/api');
  tsx.register();
}

function isInside(folder: string, file: string): boolean {
  const path = relative(folder, file);
  return path !== '' && !path.startsWith('..') && !isAbsolute(path);
}

/**
 * Imports a worker file and returns its module. A file outside the package's workers/ (a user's
 * own worker) gets the `tsworker` alias; a TypeScript file imported from compiled code gets tsx.
 */
export async function importWorkerFile(file: string): Promise<Record<string, unknown>> {
  const absolute = resolve(file);
  if (!isInside(ownWorkers, absolute)) registerFrameworkAlias();
  if (compiled && TYPESCRIPT.test(absolute)) await registerTypeScript();
  return (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
}
