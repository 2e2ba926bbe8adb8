/**
 * "Did you mean": the closest known name to a misspelled one, for definition errors. Names are
 * compared without case, `_` and `-`, so `onload`, `on_load` and `ON-LOAD` all find `onLoad`, then
 * by edit distance (with transpositions), so `allowParrallel` finds `allowParallel`.
 */

/**
 * The option names of an interface, as a list. The record must name every key and no other, so
 * the list follows the interface: `optionKeys<Lifecycle>({ start: true, stop: true })`.
 */
export const optionKeys = <T>(all: Record<keyof T, true>): string[] => Object.keys(all);

const normalize = (name: string): string => name.toLowerCase().replace(/[_-]/g, '');

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, at(i - 2, j - 2) + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return at(rows - 1, cols - 1);
}

/**
 * The known name `name` most likely stands for, or `undefined` when none is close: the nearest by
 * edit distance, allowing one edit per three characters of the known name (at least one, at most
 * three); else the one that contains it or that it contains, with half its characters or more
 * (`modelHealthcheck` → `modelHealthcheckPath`), unless `partial` is false.
 */
export function closestName(
  name: string,
  known: readonly string[],
  { partial: allowPartial = true }: { partial?: boolean } = {},
): string | undefined {
  const wanted = normalize(name);
  let best: string | undefined;
  let bestDistance = Infinity;
  let partial: string | undefined;
  let partialRatio = 0;
  for (const candidate of known) {
    const normalized = normalize(candidate);
    const distance = editDistance(wanted, normalized);
    const allowed = Math.min(3, Math.max(1, Math.floor(candidate.length / 3)));
    if (distance <= allowed && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
    const [shorter, longer] =
      wanted.length <= normalized.length ? [wanted, normalized] : [normalized, wanted];
    const ratio = shorter.length / longer.length;
    if (shorter.length >= 4 && longer.includes(shorter) && ratio >= 0.5 && ratio > partialRatio) {
      partial = candidate;
      partialRatio = ratio;
    }
  }
  return best ?? (allowPartial ? partial : undefined);
}

/** `unknown option "benchmark.run" (did you mean "benchmark.runs"?)`, or the list of known options. */
export function unknownOptionMessage(name: string, known: readonly string[], prefix = ''): string {
  const suggestion = closestName(name, known);
  const hint =
    suggestion === undefined
      ? `known options: ${known.join(', ')}`
      : `did you mean "${prefix}${suggestion}"?`;
  return `unknown option "${prefix}${name}" (${hint})`;
}

/**
 * One message per own enumerable key of `value` that is not in `known`. `prefix` names the
 * enclosing option (`"benchmark."`).
 */
export function unknownOptions(value: object, known: readonly string[], prefix = ''): string[] {
  return Object.keys(value)
    .filter((key) => !known.includes(key))
    .map((key) => unknownOptionMessage(key, known, prefix));
}
