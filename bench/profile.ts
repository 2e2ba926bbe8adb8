/**
 * Reads a `node --cpu-prof` profile and ranks where the time went: by function (self time) and by
 * owner (our lib/ folders, each npm package, node internals, GC). Idle time is left out.
 */
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from './processes.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly where: string;
  readonly owner: string;
  readonly selfMs: number;
  readonly share: number;
  /** The call path (callers, innermost first) that accounts for most of this function's self time. */
  readonly caller: string;
}

export interface ProfileReport {
  /** Milliseconds of the profile counted (from `fromMs` on). */
  readonly windowMs: number;
  readonly busyMs: number;
  readonly functions: readonly ProfileEntry[];
  readonly owners: readonly { owner: string; selfMs: number; share: number }[];
}

const repoUrl = `file://${REPO_ROOT}`;
/** The compiled tree the bench runs, reported as the sources it came from. */
const buildUrl = `${repoUrl}bench/results/build/`;

function ownerOf(url: string, name: string): string {
  // writev is the kernel's loopback TCP send, which every proxy pays: it is its own row.
  if (url === '') return name.startsWith('(') || name === 'writev' ? name : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules !== -1) {
    const rest = url.slice(modules + '/node_modules/'.length).split('/');
    return `npm ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '?')}`;
  }
  if (url.startsWith(repoUrl)) {
    const parts = url.slice(url.startsWith(buildUrl) ? buildUrl.length : repoUrl.length).split('/');
    if (parts[0] !== 'lib') return parts[0] ?? '?';
    // A folder of lib/, or a top-level file of it by name: lib/tokenizer is hello_world's token count.
    const name = parts[1] ?? '';
    return `lib/${parts.length > 2 ? name : name.replace(/\.[jt]s$/, '')}`;
  }
  return url;
}

function shortUrl(url: string): string {
  if (url.startsWith(buildUrl)) return url.slice(buildUrl.length);
  if (url.startsWith(repoUrl)) return url.slice(repoUrl.length);
  const modules = url.lastIndexOf('/node_modules/');
  return modules === -1 ? url : url.slice(modules + '/node_modules/'.length);
}

/**
 * @param fromMs leave out the samples of the profile's first `fromMs` milliseconds (the process's
 *   start-up, its model benchmark and the warm-up), so only the load is ranked.
 * @param toMs and those after `toMs` (the shutdown).
 */
export function analyseProfile(file: string, top = 15, fromMs = 0, toMs = Infinity): ProfileReport {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parentOf.set(child, node.id);
  const label = (id: number | undefined): string => {
    const parts: string[] = [];
    // Three callers say more than one: "abort" alone does not tell who aborts.
    for (
      let cur = id, depth = 0;
      cur !== undefined && depth < 3;
      cur = parentOf.get(cur), depth++
    ) {
      const frame = byId.get(cur)?.callFrame;
      if (frame === undefined || frame.functionName === '(root)') break;
      const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
      const file =
        shortUrl(frame.url)
          .replace(/^node:internal\//, '')
          .split('/')
          .at(-1) ?? '';
      parts.push(frame.url === '' ? name : `${name} (${file}:${frame.lineNumber + 1})`);
    }
    return parts.join(' < ');
  };
  const selfUs = new Map<number, number>();
  let elapsedUs = 0;
  let windowUs = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    elapsedUs += delta;
    if (elapsedUs < fromMs * 1000 || elapsedUs > toMs * 1000) return;
    windowUs += delta;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const functions = new Map<
    string,
    { name: string; where: string; owner: string; us: number; callers: Map<string, number> }
  >();
  const owners = new Map<string, number>();
  let busyUs = 0;
  // A wasm module's URL says nothing; the JavaScript that called into it does (tiktoken, undici's llhttp).
  const wasmOwner = (id: number): string => {
    for (let cur = parentOf.get(id); cur !== undefined; cur = parentOf.get(cur)) {
      const frame = byId.get(cur)?.callFrame;
      if (frame !== undefined && frame.url !== '' && !frame.url.startsWith('wasm://')) {
        return `${ownerOf(frame.url, frame.functionName)} (wasm)`;
      }
    }
    return 'wasm';
  };
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined || frame.functionName === '(idle)') continue;
    busyUs += us;
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
    const where = frame.url === '' ? '' : `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
    const owner = frame.url.startsWith('wasm://') ? wasmOwner(id) : ownerOf(frame.url, name);
    const key = `${name}\u0000${where}`;
    const entry = functions.get(key) ?? {
      name,
      where,
      owner,
      us: 0,
      callers: new Map<string, number>(),
    };
    entry.us += us;
    const caller = label(parentOf.get(id));
    entry.callers.set(caller, (entry.callers.get(caller) ?? 0) + us);
    functions.set(key, entry);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
  }
  const busyMs = busyUs / 1000;
  return {
    windowMs: windowUs / 1000,
    busyMs,
    functions: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({
        name: f.name,
        where: f.where,
        owner: f.owner,
        selfMs: f.us / 1000,
        share: f.us / busyUs,
        caller: [...f.callers.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '',
      })),
    owners: [...owners.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([owner, us]) => ({ owner, selfMs: us / 1000, share: us / busyUs })),
  };
}
