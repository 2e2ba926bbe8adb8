/**
 * Large prompts are counted on a worker thread: the counts are countTokens', the event loop keeps
 * serving meanwhile (asserted by the order of events, never by durations), a failing count falls
 * back to the default workload, the pool starts only when a large text is counted, and it never
 * keeps the process alive.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { getPriority } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  countTokens,
  countTokensAsync,
  defineHandler,
  defineWorker,
  OFF_THREAD_MIN_LENGTH,
  randomPrompt,
  z,
} from '../../lib/index.ts';
import { closeTokenizerPool, type RequestSummary } from '../../lib/entry-server.ts';
import { TOKEN_THREAD_NICENESS, tokenizerPoolStats } from '../../lib/tokenizer-pool.ts';
import { countWorkload, InputData } from '../../workers/hello_world/data_types.ts';
import { post } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

/** `count` words of letters only, all different: no piece of one is in any cache. */
function distinctWords(count: number, salt: string): string {
  const words = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    let word = '';
    for (let n = i; ; n = Math.floor(n / 26) - 1) {
      word = String.fromCharCode(97 + (n % 26)) + word;
      if (n < 26) break;
    }
    words[i] = salt + word;
  }
  return words.join(' ');
}

/** The nice value of each of this process's threads (field 19 of /proc/self/task/<tid>/stat). */
function threadNiceness(): number[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields after it start after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** Every finished request's summary, as the request log sees it. */
function summaries(stack: TestStack): RequestSummary[] {
  const seen: RequestSummary[] = [];
  stack.worker.lifecycle.subscribe((event) => {
    if (event.kind === 'finished') seen.push(event.summary);
  });
  return seen;
}

afterAll(() => closeTokenizerPool());

describe('the tokenizer pool', () => {
  it('is not started by a worker that never counts a large text', async () => {
    const before = tokenizerPoolStats();
    const stack = await startStack();
    try {
      const prompt = randomPrompt(1_000).slice(0, OFF_THREAD_MIN_LENGTH - 1);
      const body = {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: { prompt, max_response_tokens: 2 },
      };
      expect((await post(`${stack.worker.url}/generate`, body)).status).toBe(200);
      // The benchmark and this request were measured: hello_world counted their prompts here.
      expect(stack.worker.inspect().totals.served).toBeGreaterThan(0);
      expect(tokenizerPoolStats()).toEqual(before);
      // First in its file (vitest gives each file its own process): importing starts nothing either.
      expect(before.started).toBe(0);
    } finally {
      await stack.close();
    }
  });

  it('counts a large text on a thread exactly as countTokens does', async () => {
    const text = [
      randomPrompt(10_000),
      distinctWords(5_000, 'pool'),
      '这是一个很长的中文句子，里面有标点符号。'.repeat(200),
      'a'.repeat(30_000),
      ` ${'😀🚀'.repeat(2_000)}`,
    ].join('\n');
    expect(text.length).toBeGreaterThan(OFF_THREAD_MIN_LENGTH);
    const counted = await countTokensAsync(text);
    expect(tokenizerPoolStats().started).toBe(1);
    expect(counted).toBe(countTokens(text));
    // A small text is counted on this thread, at once.
    expect(await countTokensAsync('Hello, world')).toBe(countTokens('Hello, world'));
    expect(tokenizerPoolStats().started).toBe(1);
  });

  it('counts at a lower priority than the event loop: its thread runs nicer on Linux', async () => {
    const text = randomPrompt(5_000);
    expect(await countTokensAsync(text)).toBe(countTokens(text));
    const niceness = threadNiceness();
    const main = getPriority();
    // Every thread but the pool's keeps the process's value; the pool's thread is the nicer one.
    expect(niceness.filter((nice) => nice !== main)).toEqual([
      Math.min(19, main + TOKEN_THREAD_NICENESS),
    ]);
  });

  it('leaves the event loop free: an immediate runs before a large count resolves', async () => {
    const events: string[] = [];
    const counting = countTokensAsync(distinctWords(50_000, 'loop')).then(() =>
      events.push('counted'),
    );
    setImmediate(() => events.push('immediate'));
    await counting;
    expect(events).toEqual(['immediate', 'counted']);
  });

  it('rejects pending counts when closed, and starts a thread again for the next', async () => {
    const started = tokenizerPoolStats().started;
    const pending = expect(countTokensAsync(distinctWords(100_000, 'closed'))).rejects.toThrow(
      /closed/,
    );
    await closeTokenizerPool();
    await pending;
    expect(tokenizerPoolStats().running).toBe(0);
    const text = randomPrompt(5_000);
    expect(await countTokensAsync(text)).toBe(countTokens(text));
    expect(tokenizerPoolStats()).toEqual({ running: 1, started: started + 1 });
  });
});

describe('a worker counting a 500,000-word prompt', () => {
  const events: string[] = [];
  let countStarted = deferred();
  const worker = defineWorker({
    name: 'large-prompts',
    modelServerUrl: 'http://127.0.0.1:5001',
    handlers: [
      defineHandler({
        route: '/generate',
        payload: InputData,
        allowParallel: true,
        // hello_world's own workload, with the moments it starts and ends recorded.
        workload: (payload) => {
          events.push('count started');
          countStarted.resolve();
          const measured = countWorkload(payload);
          if (typeof measured === 'number') {
            events.push('counted');
            return measured;
          }
          return measured.then((count) => {
            events.push('counted');
            return count;
          });
        },
      }),
      defineHandler({
        route: '/rejecting',
        modelPath: '/generate',
        payload: InputData,
        allowParallel: true,
        workload: () => Promise.reject(new Error('the counting thread died')),
      }),
      defineHandler({
        route: '/echo',
        payload: z.object({ text: z.string() }),
        allowParallel: true,
        predict: (p) => p.text,
      }),
    ],
  });
  let stack: TestStack;
  let seen: RequestSummary[];

  afterAll(() => stack.close());

  it('answers a small request while the prompt is being counted', async () => {
    stack = await startStack({ worker, env: { UNSECURED: 'true' } });
    seen = summaries(stack);
    events.length = 0;
    countStarted = deferred();
    const prompt = distinctWords(500_000, 'x');
    const big = post(`${stack.worker.url}/generate`, {
      payload: { prompt, max_response_tokens: 1 },
    });
    await countStarted.promise;
    const small = await post(`${stack.worker.url}/echo`, { payload: { text: 'still here' } });
    expect(small.json()).toEqual({ result: 'still here' });
    events.push('small answered');
    expect((await big).status).toBe(200);
    expect(events).toEqual(['count started', 'small answered', 'counted']);
    const measured = seen.find((summary) => summary.route === '/generate');
    // Every distinct word is at least one token.
    expect(measured?.workload).toBeGreaterThanOrEqual(500_000);
  }, 60_000);

  it('falls back to the default workload of 100 when the async workload rejects', async () => {
    const response = await post(`${stack.worker.url}/rejecting`, {
      payload: { prompt: 'hello', max_response_tokens: 1 },
    });
    expect(response.status).toBe(200);
    expect(seen.find((summary) => summary.route === '/rejecting')?.workload).toBe(100);
  });
});

describe('a process that counted a large text', () => {
  it('waits for a pending count, then exits on its own: an idle pool never keeps it alive', async () => {
    const require = createRequire(import.meta.url);
    const tsx = pathToFileURL(require.resolve('tsx')).href;
    const tokenizer = new URL('../../lib/tokenizer.ts', import.meta.url).href;
    // Top-level awaits: a thread is ref'd while it counts, so the process waits for each answer,
    // the second one too, given to a thread already started and idle (unref'd).
    const script = `
      const { countTokensAsync } = await import(${JSON.stringify(tokenizer)});
      const text = 'word '.repeat(20000) + 'end';
      const first = await countTokensAsync(text);
      console.log(JSON.stringify({ first, second: await countTokensAsync(text + ' more') }));
    `;
    const child = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const deadline = setTimeout(() => child.kill('SIGKILL'), 50_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.once('exit', (exitCode, exitSignal) => resolve([exitCode, exitSignal])),
    );
    clearTimeout(deadline);
    expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    const text = `${'word '.repeat(20000)}end`;
    expect(JSON.parse(stdout)).toEqual({
      first: countTokens(text),
      second: countTokens(`${text} more`),
    });
  }, 60_000);
});
