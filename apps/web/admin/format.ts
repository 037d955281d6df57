/** How the admin page writes numbers, sizes, durations and times: short, in English, locale digits. */

const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
const time = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTime = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'medium' });

export function count(value: number): string {
  return decimal.format(value);
}

export function milliseconds(value: number | null): string {
  return value === null || !Number.isFinite(value) ? '–' : `${decimal.format(value)} ms`;
}

export function bytes(value: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${decimal.format(value)} ${units[unit]}`;
}

/** 42 s, 5 min 03 s, 2 h 07 min, 3 d 4 h. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** A clock time for today's instants, with the date otherwise; "never" for null. */
export function instant(value: string | number | null): string {
  if (value === null) return 'never';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return new Date().toDateString() === date.toDateString() ? time.format(date) : dateTime.format(date);
}
