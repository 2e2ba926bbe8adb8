/**
 * tsx bench/micro-tokenizer.ts [reference.ts]: CPU per `countTokens` call over bench-like prompts
 * (30–300 common words), after a warm-up that fills the piece cache. Given another tokenizer module
 * (a path relative to bench/, e.g. an older lib/tokenizer.ts copied into bench/ with its
 * `./tokenizer-pool.ts` import pointed at `../lib/`), alternates the two in one process. Under load
 * from other processes its figures move by ±20%: compare in one run, several rounds.
 */
import { randomPrompt } from '../lib/index.ts';
import { countTokens } from '../lib/tokenizer.ts';

type Counter = (text: string) => number;
const variants: [string, Counter][] = [['lib/tokenizer.ts', countTokens]];
const reference = process.argv[2];
if (reference !== undefined) {
  const module = (await import(reference)) as { countTokens: Counter };
  variants.push([reference, module.countTokens]);
}
const prompts = Array.from({ length: 2000 }, () =>
  randomPrompt(30 + Math.floor(Math.random() * 271)),
);
for (const [, count] of variants) for (const prompt of prompts) count(prompt);
for (let round = 0; round < 5; round++) {
  for (const [name, count] of variants) {
    const start = process.cpuUsage();
    let tokens = 0;
    for (let i = 0; i < 10; i++) for (const prompt of prompts) tokens += count(prompt);
    const used = process.cpuUsage(start);
    const perCall = (used.user + used.system) / (10 * prompts.length);
    console.log(`${name}: ${perCall.toFixed(2)} µs CPU per prompt (${tokens} tokens)`);
  }
}
