/**
 * LabelledCounter and LabelledHistogram are exposed exactly as prom-client's Counter and Histogram
 * given the same updates: text and JSON, bounds hit exactly, values past the last bound, several
 * series, and a counter series created before it counts anything.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LabelledCounter, LabelledHistogram } from '../../../lib/metrics/series.ts';

const BOUNDS = [0.001, 0.01, 0.1, 1, 10];
const OBSERVED: readonly (readonly [string, number])[] = [
  ['/generate', 0.0004],
  ['/generate', 0.001],
  ['/generate', 0.05],
  ['/generate', 3],
  ['/generate', 42],
  ['/other', 0.01],
  ['/other', 0.0099],
  ['/generate', 0],
];

/** prom-client's JSON gives each bucket an empty `exemplar` (null); exemplars are not used here. */
function withoutExemplars(metrics: Awaited<ReturnType<Registry['getMetricsAsJSON']>>): unknown {
  return metrics.map((metric) => ({
    ...metric,
    values: metric.values.map((value) =>
      Object.fromEntries(Object.entries(value).filter(([key]) => key !== 'exemplar')),
    ),
  }));
}

describe('the labelled series', () => {
  it('expose a histogram exactly as prom-client does', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const histogram = new LabelledHistogram('h_seconds', 'help text', ['route'], BOUNDS, ours);
    const reference = new Histogram({
      name: 'h_seconds',
      help: 'help text',
      labelNames: ['route'],
      buckets: BOUNDS,
      registers: [theirs],
    });
    const handles = new Map([
      ['/generate', histogram.series({ route: '/generate' })],
      ['/other', histogram.series({ route: '/other' })],
    ]);
    // A handle nobody observes through exposes nothing, as an untouched prom-client child.
    histogram.series({ route: '/unused' });
    for (const [route, value] of OBSERVED) {
      handles.get(route)?.observe(value);
      reference.labels(route).observe(value);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.getMetricsAsJSON()).toEqual(
      withoutExemplars(await theirs.getMetricsAsJSON()),
    );
  });

  it('expose a counter exactly as prom-client does, series created at 0 included', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const counter = new LabelledCounter('c_total', 'help', ['route', 'status'], ours);
    const reference = new Counter({
      name: 'c_total',
      help: 'help',
      labelNames: ['route', 'status'],
      registers: [theirs],
    });
    // Labels given in another order than the names: exposed in the names' order.
    const ok = counter.series({ status: '200', route: '/generate' });
    const refused = counter.series({ route: '/generate', status: '503' });
    reference.labels('/generate', '200').inc(0);
    reference.labels('/generate', '503').inc(0);
    ok.inc();
    ok.inc(2.5);
    reference.labels('/generate', '200').inc();
    reference.labels('/generate', '200').inc(2.5);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
    // The same labels give the same series.
    counter.series({ route: '/generate', status: '503' }).inc(4);
    refused.inc(1);
    expect(await ours.metrics()).toContain('c_total{route="/generate",status="503"} 5');
  });

  it('ignore what prom-client would throw on: a negative or non-finite value', async () => {
    const registry = new Registry();
    const counter = new LabelledCounter('c_total', 'help', ['kind'], registry).series({
      kind: 'a',
    });
    const histogram = new LabelledHistogram('h', 'help', ['kind'], BOUNDS, registry);
    counter.inc(-1);
    counter.inc(Number.NaN);
    histogram.series({ kind: 'a' }).observe(Number.POSITIVE_INFINITY);
    const text = await registry.metrics();
    expect(text).toContain('c_total{kind="a"} 0');
    expect(text).not.toContain('h_count');
  });
});
