/**
 * Once per `vitest run`: a folder for the compiled copy of the checkout that test/helpers/built-checkout.ts
 * builds on first need (and only then), so the compiled CLI and the npm package are built once per run
 * however many files use them. Removed when the run ends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where test/helpers/built-checkout.ts builds its copy of the checkout for this run. */
    builtCheckoutRoot: string;
  }
}

export default function setup(project: TestProject): () => void {
  const root = mkdtempSync(join(tmpdir(), 'tsworker-built-'));
  project.provide('builtCheckoutRoot', root);
  return () => rmSync(root, { recursive: true, force: true });
}
