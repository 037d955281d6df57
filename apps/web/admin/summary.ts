/**
 * What a sparkline says in words: its title and the minimum, maximum and last value of each series.
 * The chart's accessible name, and the line under it. No DOM, so it also runs outside a browser.
 */

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

const number = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

function format(value: number | null, unit: string): string {
  return value === null ? 'none' : `${number.format(value)}${unit ? ` ${unit}` : ''}`;
}

/** "min 0 msgs/s, max 12 msgs/s, last 3 msgs/s" for one series; "no data" when it has no value at all. */
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
