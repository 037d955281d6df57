/**
 * Sparklines as inline SVG built with DOM calls (no markup strings, no inline styles: the page's CSP
 * allows neither). Each one is a single `role="img"` whose accessible name states what it shows and
 * the minimum, maximum and last value of every series, so a screen reader gets the same summary the
 * picture gives.
 */

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 160;
const HEIGHT = 40;
const PAD = 2;

export interface Series {
  /** Named in the text alternative, e.g. "in"; the CSS class `series-<index>` colours it. */
  name: string;
  /** null: no value at that time (a gap in the line). */
  values: Array<number | null>;
}

export interface SparklineInput {
  /** What it shows, e.g. "Sockets on node-1, last 10 minutes". */
  title: string;
  unit: string;
  /** Epoch ms of each value, ascending; every series has one value per time. */
  times: number[];
  series: Series[];
  /** The time span the x axis covers, ending at the last time. */
  spanMs: number;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

const number = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

function format(value: number | null, unit: string): string {
  return value === null ? 'none' : `${number.format(value)}${unit ? ` ${unit}` : ''}`;
}

/** "min 0, max 12, last 3 msgs/s" for one series; "no data" when it has no value at all. */
export function summarize(values: ReadonlyArray<number | null>, unit: string): string {
  const present = values.filter((value): value is number => value !== null && Number.isFinite(value));
  if (present.length === 0) return 'no data';
  const last = [...values].reverse().find((value) => value !== null && Number.isFinite(value)) ?? null;
  return `min ${format(Math.min(...present), unit)}, max ${format(Math.max(...present), unit)}, last ${format(last, unit)}`;
}

/** The text alternative of a whole chart. */
export function describe(input: SparklineInput): string {
  const parts = input.series.map((series) => (input.series.length > 1 ? `${series.name}: ` : '') + summarize(series.values, input.unit));
  return `${input.title}: ${parts.join('; ')}`;
}

/**
 * A new chart, or `into` (a chart this function made) redrawn in place, so a chart keeps its element
 * (and any reader's position) across refreshes. The y axis runs from 0 to the largest value shown.
 */
export function sparkline(input: SparklineInput, into?: SVGSVGElement): SVGSVGElement {
  const chart = into ?? svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, width: WIDTH, height: HEIGHT, role: 'img', class: 'sparkline', focusable: 'false' });
  chart.replaceChildren();
  const label = describe(input);
  chart.setAttribute('aria-label', label);
  const title = svg('title', {});
  title.textContent = label;
  chart.append(title);
  chart.append(svg('line', { class: 'baseline', x1: 0, x2: WIDTH, y1: HEIGHT - PAD, y2: HEIGHT - PAD }));

  const end = input.times.at(-1) ?? 0;
  const start = end - input.spanMs;
  const max = Math.max(1, ...input.series.flatMap((series) => series.values.filter((value): value is number => value !== null && Number.isFinite(value))));
  const x = (at: number) => PAD + ((at - start) / input.spanMs) * (WIDTH - 2 * PAD);
  const y = (value: number) => HEIGHT - PAD - (value / max) * (HEIGHT - 2 * PAD);

  let points = 0;
  input.series.forEach((series, index) => {
    // One polyline per run of values without a gap.
    let run: string[] = [];
    const flush = () => {
      if (run.length === 1) run.push(run[0]!.replace(/^([\d.]+)/, (px) => String(Number(px) + 1)));
      if (run.length > 0) chart.append(svg('polyline', { class: `series series-${index}`, points: run.join(' ') }));
      run = [];
    };
    series.values.forEach((value, i) => {
      const at = input.times[i]!;
      if (value === null || !Number.isFinite(value) || at < start) return flush();
      run.push(`${x(at).toFixed(1)},${y(value).toFixed(1)}`);
      points++;
    });
    flush();
  });
  chart.dataset['points'] = String(points);
  return chart;
}
