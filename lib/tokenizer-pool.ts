import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * The worker threads `countTokensAsync` counts large texts on, so a 500,000-word prompt never stalls
 * the event loop (and every stream it serves) for seconds.
 *
 * - Small: at most MAX_THREADS threads. The first starts on the first large text, a second only
 *   when a large text arrives while every thread is busy. A worker that never counts a large text
 *   starts none. Each thread loads its own tiktoken (~50 MB) on start.
 * - Yields: on Linux a thread runs TOKEN_THREAD_NICENESS nicer than the process.
 * - Never keeps the process alive: a thread is unref'd while it has nothing to count, and ref'd
 *   only while a count is pending (so `await countTokensAsync(text)` in a script still resolves).
 * - `closeTokenizerPool()` terminates the threads; pending counts reject. The next large text
 *   starts a thread again.
 * - A thread that fails (an error, or an exit) rejects its pending counts and leaves the pool; the
 *   caller's workload then falls back to the default with a warning.
 */

/** Most threads the pool runs at once. */
export const MAX_THREADS = 2;

/**
 * How much nicer than the process a counting thread runs, on Linux (where a thread has its own nice
 * value): the event loop, the model server and the streams they serve come first.
 */
export const TOKEN_THREAD_NICENESS = 10;

interface PendingCount {
  readonly resolve: (count: number) => void;
  readonly reject: (error: Error) => void;
}

/** What a thread answers: `{id, count}` or `{id, error}`. The job is `{id, text}`. */
export type TokenWorkerReply =
  { readonly id: number; readonly count: number } | { readonly id: number; readonly error: string };

export interface TokenWorkerJob {
  readonly id: number;
  readonly text: string;
}

interface Thread {
  readonly worker: Worker;
  readonly pending: Map<number, PendingCount>;
}

const threads: Thread[] = [];
let nextJobId = 0;
let threadsStarted = 0;

/** Counts `text` with `countTokens` on a pool thread. */
export function countOffThread(text: string): Promise<number> {
  let thread: Thread;
  try {
    thread = pickThread();
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
  const id = ++nextJobId;
  return new Promise<number>((resolve, reject) => {
    if (thread.pending.size === 0) thread.worker.ref();
    thread.pending.set(id, { resolve, reject });
    thread.worker.postMessage({ id, text } satisfies TokenWorkerJob);
  });
}

/** The idle thread, else a new one while there is room, else the least busy. */
function pickThread(): Thread {
  let best: Thread | undefined;
  for (const thread of threads) {
    if (best === undefined || thread.pending.size < best.pending.size) best = thread;
  }
  if (best !== undefined && (best.pending.size === 0 || threads.length >= MAX_THREADS)) return best;
  return startThread();
}

function startThread(): Thread {
  const worker = createWorker();
  worker.unref();
  const thread: Thread = { worker, pending: new Map() };
  const fail = (error: Error) => {
    const index = threads.indexOf(thread);
    if (index !== -1) threads.splice(index, 1);
    for (const job of thread.pending.values()) job.reject(error);
    thread.pending.clear();
  };
  worker.on('message', (reply: TokenWorkerReply) => {
    const job = thread.pending.get(reply.id);
    if (job === undefined) return;
    thread.pending.delete(reply.id);
    if (thread.pending.size === 0) worker.unref();
    if ('count' in reply) job.resolve(reply.count);
    else job.reject(new Error(`counting tokens failed: ${reply.error}`));
  });
  worker.on('error', (error) => fail(error));
  worker.on('exit', (code) => fail(new Error(`the token-counting thread exited (code ${code})`)));
  threads.push(thread);
  threadsStarted += 1;
  return thread;
}

/**
 * lib/internal/token-worker: its compiled `.js` next to this file's when running from dist/, else
 * the TypeScript source (tsx, vitest). tsx registers its loader on the main thread only, so a
 * thread running the source registers tsx itself, then imports the entry.
 */
function createWorker(): Worker {
  const compiled = new URL('./internal/token-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(compiled))) return new Worker(compiled);
  const source = new URL('./internal/token-worker.ts', import.meta.url);
  // Evaluated as a script or as a module (the thread inherits `--input-type`): import() only.
  const bootstrap = `
    import('node:worker_threads').then(async ({ workerData }) => {
      const { register } = await import(workerData.tsx);
      register();
      await import(workerData.entry);
    });`;
  return new Worker(bootstrap, {
    eval: true,
    workerData: { tsx: import.meta.resolve('tsx/esm/api'), entry: source.href },
  });
}

/** Terminates the pool's threads (pending counts reject). Safe to call at any time, and again. */
export async function closeTokenizerPool(): Promise<void> {
  const closing = threads.splice(0);
  const error = new Error('the tokenizer pool was closed');
  await Promise.all(
    closing.map(async (thread) => {
      for (const job of thread.pending.values()) job.reject(error);
      thread.pending.clear();
      await thread.worker.terminate();
    }),
  );
}

/** For tests: threads running now, and started since the process began. */
export function tokenizerPoolStats(): { readonly running: number; readonly started: number } {
  return { running: threads.length, started: threadsStarted };
}
