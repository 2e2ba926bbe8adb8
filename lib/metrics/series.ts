import type { Metric, Registry } from 'prom-client';

/**
 * A counter and a histogram whose labelled series are updated through a handle that touches only
 * numbers. prom-client's labelled `inc` and `observe` build, validate and hash a label object on
 * every call, ~2.5% of a busy worker's CPU at three histograms and a counter per request. These
 * register in a prom-client Registry and are exposed exactly as its Counter and Histogram are.
 */

type Labels<L extends string> = Readonly<Record<L, string>>;

interface ExposedValue {
  readonly value: number;
  readonly labels: Record<string, string | number>;
  readonly sharedLabels?: Record<string, string>;
  readonly metricName?: string;
}

interface Exposed {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: ExposedValue[];
}

/** Labels in the order of the metric's label names, as prom-client's `labels(...)` orders them. */
function ordered<L extends string>(names: readonly L[], labels: Labels<L>): Record<L, string> {
  const result = {} as Record<L, string>;
  for (const name of names) result[name] = labels[name];
  return result;
}

function keyOf<L extends string>(names: readonly L[], labels: Labels<L>): string {
  return names.map((name) => labels[name]).join('\u0000');
}

/** What a Registry reads of a metric: name, type, get() (or getForPromString()) and reset(). */
abstract class ExposedMetric<L extends string> {
  readonly aggregator = 'sum' as const;
  abstract readonly type: Exposed['type'];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    // Nothing else of prom-client's Metric class is read.
    registry.registerMetric(this as unknown as Metric);
  }

  abstract get(): Promise<Exposed>;
  abstract reset(): void;

  protected exposed(values: ExposedValue[]): Exposed {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    };
  }
}

export interface CounterSeries {
  inc(by?: number): void;
}

interface CounterState {
  readonly labels: Record<string, string>;
  value: number;
}

export class LabelledCounter<L extends string> extends ExposedMetric<L> {
  readonly type = 'counter' as const;
  readonly #series = new Map<string, CounterState>();

  /** The series for `labels`, created at 0 (and exposed) on first use. */
  series(labels: Labels<L>): CounterSeries {
    const key = keyOf(this.labelNames, labels);
    let state = this.#series.get(key);
    if (state === undefined) {
      state = { labels: ordered(this.labelNames, labels), value: 0 };
      this.#series.set(key, state);
    }
    const counted = state;
    return {
      inc(by = 1) {
        // prom-client refuses a negative or non-finite increment; nothing here should send one.
        if (by >= 0 && Number.isFinite(by)) counted.value += by;
      },
    };
  }

  get(): Promise<Exposed> {
    const values = [...this.#series.values()].map((state) => ({
      value: state.value,
      labels: state.labels,
    }));
    return Promise.resolve(this.exposed(values));
  }

  reset(): void {
    for (const state of this.#series.values()) state.value = 0;
  }
}

export interface HistogramSeries {
  observe(value: number): void;
}

interface HistogramState {
  readonly labels: Record<string, string>;
  /** Observations per bucket, not cumulative; beyond the last bound only `count` moves. */
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

export class LabelledHistogram<L extends string> extends ExposedMetric<L> {
  readonly type = 'histogram' as const;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, HistogramState>();

  constructor(
    name: string,
    help: string,
    labelNames: readonly L[],
    bounds: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry);
    this.#bounds = [...bounds].sort((a, b) => a - b);
  }

  /** The series for `labels`, exposed from its first observation on (as prom-client does). */
  series(labels: Labels<L>): HistogramSeries {
    const key = keyOf(this.labelNames, labels);
    const bounds = this.#bounds;
    const states = this.#series;
    const seriesLabels = ordered(this.labelNames, labels);
    let state: HistogramState | undefined;
    return {
      observe(value) {
        if (!Number.isFinite(value)) return;
        if (state === undefined) {
          state = states.get(key) ?? {
            labels: seriesLabels,
            buckets: new Float64Array(bounds.length),
            sum: 0,
            count: 0,
          };
          states.set(key, state);
        }
        for (let i = 0; i < bounds.length; i++) {
          if (value <= (bounds[i] as number)) {
            (state.buckets[i] as number) += 1;
            break;
          }
        }
        state.sum += value;
        state.count += 1;
      },
    };
  }

  /** prom-client's text form: `le` as the value's label, the series' labels shared. */
  getForPromString(): Promise<Exposed> {
    const values: ExposedValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const state of this.#series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += state.buckets[i] as number;
        values.push({
          labels: { le: this.#bounds[i] as number },
          sharedLabels: state.labels,
          value: cumulative,
          metricName: bucketName,
        });
      }
      values.push(
        {
          labels: { le: '+Inf' },
          sharedLabels: state.labels,
          value: state.count,
          metricName: bucketName,
        },
        {
          labels: {},
          sharedLabels: state.labels,
          value: state.sum,
          metricName: `${this.name}_sum`,
        },
        {
          labels: {},
          sharedLabels: state.labels,
          value: state.count,
          metricName: `${this.name}_count`,
        },
      );
    }
    return Promise.resolve(this.exposed(values));
  }

  /** The JSON form (`getMetricsAsJSON`): shared labels merged into each value's. */
  async get(): Promise<Exposed> {
    const exposed = await this.getForPromString();
    return {
      ...exposed,
      values: exposed.values.map(({ sharedLabels, labels, ...rest }) => ({
        ...rest,
        labels: { ...labels, ...sharedLabels },
      })),
    };
  }

  /** Zeroes every series in place (handles keep working); the series stay exposed. */
  reset(): void {
    for (const state of this.#series.values()) {
      state.buckets.fill(0);
      state.sum = 0;
      state.count = 0;
    }
  }
}
