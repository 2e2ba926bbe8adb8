/**
 * A thread of lib/tokenizer-pool.ts: counts each text it is sent with `countTokens`, in order, and
 * answers `{id, count}` (or `{id, error}`). It has its own tiktoken and piece cache.
 */
import { getPriority, setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import {
  TOKEN_THREAD_NICENESS,
  type TokenWorkerJob,
  type TokenWorkerReply,
} from '../tokenizer-pool.ts';
import { countTokens, warmTokenizer } from '../tokenizer.ts';
import { errorMessage } from './values.ts';

const port = parentPort;
if (port === null) throw new Error('token-worker runs as a worker thread of lib/tokenizer-pool.ts');

// A count of seconds would otherwise take a core at the same weight as the event loop, the model
// server and its clients; lower, it runs on what they leave. Elsewhere setpriority(0) would renice
// the whole process, so only Linux.
if (process.platform === 'linux') {
  try {
    setPriority(Math.min(19, getPriority() + TOKEN_THREAD_NICENESS));
  } catch {
    // A sandbox that forbids it: the thread runs at the process's priority.
  }
}

warmTokenizer();
port.on('message', (job: TokenWorkerJob) => {
  let reply: TokenWorkerReply;
  try {
    reply = { id: job.id, count: countTokens(job.text) };
  } catch (error) {
    reply = { id: job.id, error: errorMessage(error) };
  }
  port.postMessage(reply);
});
