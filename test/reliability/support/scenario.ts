/** What a scenario is, and how it states its figures and its verdict. */

export interface ScenarioContext {
  /** CI's quick mode: smaller counts and shorter phases. */
  readonly quick: boolean;
  /** `--soak-requests`: the soak's count instead of a million (for trying the harness out). */
  readonly soakRequests: number | undefined;
  /** A progress note for a human, on stderr; never part of the result line. */
  progress(message: string): void;
}

export interface Scenario {
  /** Short and stable: `--only` selects by it. */
  readonly name: string;
  /** Runs in full mode only. */
  readonly fullOnly?: boolean;
  /** A bound on the scenario's duration, start-up included; past it the scenario fails. */
  timeLimitMs(quick: boolean): number;
  run(context: ScenarioContext): Promise<Verdict>;
}

/** Figures in print order, and the checks that failed (none: PASS). */
export class Verdict {
  readonly figures: string[] = [];
  readonly failures: string[] = [];
  /** Machine-readable figures, for the JSON results file. */
  readonly data: Record<string, unknown> = {};

  figure(text: string, key?: string, value?: unknown): this {
    this.figures.push(text);
    if (key !== undefined) this.data[key] = value;
    return this;
  }

  /** Records `failure` unless `ok`. */
  check(ok: boolean, failure: string): this {
    if (!ok) this.failures.push(failure);
    return this;
  }

  get passed(): boolean {
    return this.failures.length === 0;
  }
}

export const fmt = {
  /** 12,345 */
  int: (n: number): string => Math.round(n).toLocaleString('en-US'),
  /** 1.2 s */
  s: (ms: number): string => `${(ms / 1000).toFixed(1)} s`,
  /** 123 ms */
  ms: (ms: number): string => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`,
  /** 12.3 MB (MiB) */
  mb: (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MB`,
  /** +12.3 MB */
  dmb: (bytes: number): string =>
    `${bytes >= 0 ? '+' : '−'}${(Math.abs(bytes) / (1024 * 1024)).toFixed(1)} MB`,
};
