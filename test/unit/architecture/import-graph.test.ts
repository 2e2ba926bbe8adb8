/**
 * The folders of `lib/` form a layered graph: no folder imports, directly or through others, a
 * folder that imports it back, and the pipeline never reaches into metrics (it emits events that
 * metrics listen to). Read from the source with a small parser of `import … from '…'` lines, so
 * the rule holds for type-only imports too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const libRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../lib');

function typeScriptFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return typeScriptFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** `import`/`export … from '…'` specifiers, including multi-line import lists and `import('…')`. */
export function importSpecifiers(source: string): string[] {
  const pattern =
    /(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g;
  return [...source.matchAll(pattern)].map((match) => match[1] ?? match[2] ?? match[3] ?? '');
}

/** The unit of layering: a top-level folder of `lib/`, or a file directly in `lib/`. */
function unitOf(file: string): string {
  const [first, ...rest] = relative(libRoot, file).split(sep);
  return rest.length === 0 ? (first ?? '') : `${first}/`;
}

/** unit → the units it imports (relative imports inside `lib/` only; itself excluded). */
function folderGraph(): Map<string, Map<string, string[]>> {
  const graph = new Map<string, Map<string, string[]>>();
  for (const file of typeScriptFiles(libRoot)) {
    const from = unitOf(file);
    const edges = graph.get(from) ?? new Map<string, string[]>();
    graph.set(from, edges);
    for (const specifier of importSpecifiers(readFileSync(file, 'utf8'))) {
      if (!specifier.startsWith('.')) continue;
      const target = resolve(dirname(file), specifier);
      if (!target.startsWith(libRoot + sep)) continue;
      const to = unitOf(target);
      if (to === from) continue;
      edges.set(to, [...(edges.get(to) ?? []), relative(libRoot, file)]);
    }
  }
  return graph;
}

/** Every cycle as its units in order, each found once from its smallest unit. */
function cycles(graph: Map<string, Map<string, string[]>>): string[][] {
  const found: string[][] = [];
  const units = [...graph.keys()].sort();
  for (const start of units) {
    const walk = (unit: string, path: string[]): void => {
      for (const next of graph.get(unit)?.keys() ?? []) {
        if (next === start) found.push([...path, start]);
        else if (next > start && !path.includes(next)) walk(next, [...path, next]);
      }
    };
    walk(start, [start]);
  }
  return found;
}

describe('the import graph of lib/', () => {
  const graph = folderGraph();

  it('reads imports written on one line, across lines, type-only and dynamic', () => {
    const source = [
      "import { a } from '../x/a.ts';",
      'import {',
      '  b,',
      "  type C,\n} from './b.ts';",
      "import type { D } from '../y/d.ts';",
      "export { e } from '../z/e.ts';",
      "const f = await import('../w/f.ts');",
      "import 'node:fs';",
    ].join('\n');
    expect(importSpecifiers(source)).toEqual([
      '../x/a.ts',
      './b.ts',
      '../y/d.ts',
      '../z/e.ts',
      '../w/f.ts',
      'node:fs',
    ]);
  });

  it('sees the folders it checks', () => {
    expect(graph.get('pipeline/')?.size).toBeGreaterThan(0);
    expect(graph.get('server/')?.has('pipeline/')).toBe(true);
  });

  it('has no cycle between folders', () => {
    const described = cycles(graph).map((cycle) =>
      cycle
        .slice(0, -1)
        .map((unit, index) => {
          const next = cycle[index + 1] ?? '';
          return `${unit} → ${next} (${graph.get(unit)?.get(next)?.join(', ')})`;
        })
        .join('; '),
    );
    expect(described).toEqual([]);
  });

  it('keeps lib/pipeline/ free of imports from lib/metrics/', () => {
    expect(graph.get('pipeline/')?.get('metrics/') ?? []).toEqual([]);
  });
});
