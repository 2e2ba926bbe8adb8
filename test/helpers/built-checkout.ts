/**
 * Copies of the checkout for tests of what a user installs: the bin, the compiled CLI, the npm
 * package. Never the checkout's own dist/: the bin runs dist/ whenever it exists, which would change
 * every other test that spawns it.
 */
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { waitFor } from './wait-for.ts';

const execFileAsync = promisify(execFile);

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** What a checkout holds that the bin, the build, `npm pack` and start_server.sh use. */
const CHECKOUT_ENTRIES = [
  'bin',
  'lib',
  'src',
  'workers',
  'docs',
  'README.md',
  'package.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'start_server.sh',
];

/** The build on a loaded 2-core machine; measured at 6–20 s. */
const BUILD_TIMEOUT_MS = 240_000;

/** Copies the checkout's sources into `target` (created), its node_modules linked, without dist/. */
export function copyCheckout(target: string): string {
  mkdirSync(target, { recursive: true });
  for (const entry of CHECKOUT_ENTRIES) {
    cpSync(join(REPO_ROOT, entry), join(target, entry), { recursive: true });
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(target, 'node_modules'), 'dir');
  return target;
}

/**
 * A copy of the checkout with dist/ built by `npm run build`, shared by every test file of the run:
 * the first caller builds it, the others wait for it. The copy is read-only for its users.
 */
export async function builtCheckout(): Promise<string> {
  // Undefined when run without test/global-setup.ts (another config): then this file's own copy.
  const provided: string | undefined = inject('builtCheckoutRoot');
  const root = provided ?? mkdtempSync(join(tmpdir(), 'tsworker-built-'));
  const checkout = join(root, 'tsworker');
  const ready = join(root, 'ready');
  const failed = join(root, 'failed');
  let builder = false;
  try {
    mkdirSync(join(root, 'lock'));
    builder = true;
  } catch {
    // Another test file is building it.
  }
  if (builder) {
    try {
      copyCheckout(checkout);
      // The build users run; type checking is `npm run typecheck`'s job, and slow.
      await execFileAsync('npm', ['run', 'build', '--silent', '--', '--noCheck'], {
        cwd: checkout,
      });
      writeFileSync(ready, '');
    } catch (error) {
      writeFileSync(failed, String(error));
      throw error;
    }
  }
  await waitFor(() => existsSync(ready) || existsSync(failed), {
    label: 'the built checkout',
    timeoutMs: BUILD_TIMEOUT_MS,
    intervalMs: 100,
  });
  if (existsSync(failed)) throw new Error(`building dist/ failed: ${readFileSync(failed, 'utf8')}`);
  return checkout;
}
