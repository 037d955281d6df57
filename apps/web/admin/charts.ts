import { h } from '../page/dom.ts';
import type { AdminNodeSample, AdminNodesHistory } from '@chat/protocol';
import { sparkline } from './sparkline.ts';
import { summarize, type Series } from './summary.ts';

/** The history the API keeps, and so the span every chart's x axis covers. */
const SPAN_MS = 10 * 60_000;

interface Metric {
  key: string;
  caption: string;
  unit: string;
  series: Array<{ name: string; value: (point: AdminNodeSample) => number | null }>;
}

const METRICS: Metric[] = [
  {
    key: 'msgs',
    caption: 'Messages per second, in and out',
    unit: 'msgs/s',
    series: [
      { name: 'in', value: (point) => point.msgsInPerSecond },
      { name: 'out', value: (point) => point.msgsOutPerSecond },
    ],
  },
  { key: 'sockets', caption: 'Sockets', unit: 'sockets', series: [{ name: 'sockets', value: (point) => point.sockets }] },
  { key: 'ack', caption: 'Ack p99', unit: 'ms', series: [{ name: 'ack p99', value: (point) => point.ackP99Ms }] },
];

interface Group {
  element: HTMLElement;
  charts: Map<string, SVGSVGElement>;
  /** The visible min/max/last line under each chart (hidden from screen readers: the chart's name says it). */
  summaries: Map<string, HTMLElement>;
}

/**
 * Sparklines per node over the last 10 minutes: one group per node in the history, each with a
 * chart per metric, redrawn in place on every refresh. A node that left the history loses its group.
 */
export class Charts {
  readonly #container: HTMLElement;
  readonly #groups = new Map<string, Group>();

  constructor(container: HTMLElement) {
    this.#container = container;
  }

  update(history: AdminNodesHistory): void {
    const ids = Object.keys(history.nodes).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    for (const id of ids) {
      const points = [...(history.nodes[id] ?? [])].sort((a, b) => a.at - b.at);
      const group = this.#groups.get(id) ?? this.#add(id);
      const times = points.map((point) => point.at);
      for (const metric of METRICS) {
        const series: Series[] = metric.series.map((line) => ({ name: line.name, values: points.map(line.value) }));
        sparkline({ title: `${metric.caption} on ${id}, last 10 minutes`, unit: metric.unit, times, series, spanMs: SPAN_MS }, group.charts.get(metric.key));
        const summary = series.map((line) => (series.length > 1 ? `${line.name}: ` : '') + summarize(line.values, '')).join('; ');
        const element = group.summaries.get(metric.key)!;
        if (element.textContent !== summary) element.textContent = summary;
      }
      if (!group.element.isConnected) this.#container.append(group.element);
    }
    for (const [id, group] of this.#groups) {
      if (!ids.includes(id)) {
        group.element.remove();
        this.#groups.delete(id);
      }
    }
  }

  clear(): void {
    this.#container.replaceChildren();
    this.#groups.clear();
  }

  #add(nodeId: string): Group {
    const headingId = `charts-${nodeId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const charts = new Map<string, SVGSVGElement>();
    const summaries = new Map<string, HTMLElement>();
    const figures = METRICS.map((metric) => {
      const chart = sparkline({ title: metric.caption, unit: metric.unit, times: [], series: [], spanMs: SPAN_MS });
      chart.dataset['metric'] = metric.key;
      charts.set(metric.key, chart);
      const summary = h('span', { class: 'summary', 'aria-hidden': 'true' });
      summaries.set(metric.key, summary);
      const legend = metric.series.length > 1 ? metric.series.map((line, index) => h('span', { class: `legend series-${index}` }, line.name)) : [];
      return h('figure', { class: 'chart' }, chart, h('figcaption', {}, metric.caption, ...legend, h('br', {}), summary));
    });
    const element = h('section', { class: 'node-charts', 'data-node': nodeId, 'aria-labelledby': headingId }, h('h3', { id: headingId }, nodeId), h('div', { class: 'figures' }, ...figures));
    const group = { element, charts, summaries };
    this.#groups.set(nodeId, group);
    return group;
  }
}
