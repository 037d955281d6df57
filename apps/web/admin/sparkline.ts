/**
 * Sparklines as inline SVG built with DOM calls (no markup strings, no inline styles: the page's CSP
 * allows neither). Each one is a single `role="img"` whose accessible name states what it shows and
 * the minimum, maximum and last value of every series, so a screen reader gets the same summary the
 * picture gives.
 */

import { describe, type SparklineInput } from './summary.ts';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 160;
const HEIGHT = 40;
const PAD = 2;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

/**
 * A new chart, or `into` (a chart this function made) redrawn in place, so a chart keeps its element
 * (and any reader's position) across refreshes. The y axis runs from 0 to the largest value shown.
 * `data-points` on the chart counts the values drawn, over all its series.
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
      // A lone value is drawn as a 1-unit dash, so it is visible.
      if (run.length === 1) run.push(run[0]!.replace(/^([\d.]+)/, (px) => String(Number(px) + 1)));
      if (run.length > 0) chart.append(svg('polyline', { class: `series series-${index}`, points: run.join(' ') }));
      run = [];
    };
    series.values.forEach((value, i) => {
      const at = input.times[i]!;
      if (value === null || !Number.isFinite(value) || at < start) {
        flush();
        return;
      }
      run.push(`${x(at).toFixed(1)},${y(value).toFixed(1)}`);
      points++;
    });
    flush();
  });
  chart.dataset['points'] = String(points);
  return chart;
}
