/**
 * The HTML report: one file with inline CSS and inline SVG charts drawn here, no script and nothing
 * fetched, so it opens offline, from a CI artifact or an e-mail attachment alike.
 */
import type { LatencySummary } from './stats.ts';
import type { PhaseSpan, Point, Summary } from './summary.ts';

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char]!);
}

interface Series {
  name: string;
  color: string;
  values: Array<[number, number | null]>;
  dashed?: boolean;
}

const PHASE_COLORS: Record<string, string> = { connect: '#eef4ff', create: '#f3efff', load: '#ffffff', drain: '#fff6e8', grace: '#eefaf0', close: '#f4f4f4' };
const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7d8c', '#57606a'];

/** A "nice" upper bound for an axis: a round multiple of a power of ten, divisible in four ticks. */
export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function format(value: number): string {
  if (value === 0) return '0';
  if (Math.abs(value) >= 10_000) return `${Math.round(value / 1000)}k`;
  if (Math.abs(value) >= 100) return String(Math.round(value));
  return String(Math.round(value * 100) / 100);
}

/** A line chart over the run's seconds with the phases shaded behind it. Null values break the line. */
export function lineChart(title: string, unit: string, series: Series[], phases: PhaseSpan[], xMax: number): string {
  const width = 920;
  const height = 272;
  const left = 64;
  const right = 16;
  const top = 48;
  const bottom = 36;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const yMaxRaw = Math.max(0, ...series.flatMap((s) => s.values.map(([, y]) => y ?? 0)));
  // Headroom, so a flat line at the maximum stays visible below the frame.
  const yMax = niceMax(yMaxRaw * 1.05);
  const xSpan = Math.max(1, xMax);
  const x = (t: number) => left + (t / xSpan) * plotW;
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(title)}" class="chart">`);
  parts.push(`<text x="${left}" y="16" class="title">${escapeHtml(title)}</text>`);
  for (const phase of phases) {
    const x0 = x(Math.min(phase.startS, xSpan));
    const x1 = x(Math.min(phase.endS, xSpan));
    if (x1 - x0 < 0.5) continue;
    parts.push(
      `<rect x="${x0.toFixed(1)}" y="${top}" width="${(x1 - x0).toFixed(1)}" height="${plotH}" fill="${PHASE_COLORS[phase.name] ?? '#fff'}"><title>${escapeHtml(phase.name)} ${phase.startS}–${phase.endS} s</title></rect>`,
    );
    if (x1 - x0 > 36) parts.push(`<text x="${(x0 + 4).toFixed(1)}" y="${top + 12}" class="phase">${escapeHtml(phase.name)}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const value = (yMax * i) / 4;
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${y(value).toFixed(1)}" y2="${y(value).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${left - 6}" y="${(y(value) + 4).toFixed(1)}" class="tick" text-anchor="end">${format(value)}</text>`);
  }
  const xPower = 10 ** Math.floor(Math.log10(xSpan / 8));
  const xStep = [1, 2, 5, 10].map((step) => step * xPower).find((step) => step >= xSpan / 8) ?? 10 * xPower;
  for (let t = 0; t <= xSpan + 1e-9; t += xStep) {
    parts.push(`<text x="${x(t).toFixed(1)}" y="${height - bottom + 16}" class="tick" text-anchor="middle">${format(t)}</text>`);
  }
  parts.push(`<text x="${width - right}" y="${height - 6}" class="tick" text-anchor="end">seconds</text>`);
  parts.push(`<text x="14" y="${top + plotH / 2}" class="tick" text-anchor="middle" transform="rotate(-90 14 ${top + plotH / 2})">${escapeHtml(unit)}</text>`);
  parts.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" class="frame"/>`);
  for (const s of series) {
    let path = '';
    let pen = false;
    for (const [t, v] of s.values) {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      path += `${pen ? 'L' : 'M'}${x(t).toFixed(1)} ${y(v).toFixed(1)}`;
      pen = true;
    }
    if (path) parts.push(`<path d="${path}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5 3"' : ''}><title>${escapeHtml(s.name)}</title></path>`);
  }
  let legendX = left;
  for (const s of series) {
    parts.push(`<line x1="${legendX}" x2="${legendX + 18}" y1="32" y2="32" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    parts.push(`<text x="${legendX + 22}" y="36" class="legend">${escapeHtml(s.name)}</text>`);
    legendX += 30 + s.name.length * 6.6;
  }
  if (series.every((s) => s.values.every(([, v]) => v === null || v === 0))) {
    parts.push(`<text x="${left + plotW / 2}" y="${top + plotH / 2}" class="empty" text-anchor="middle">none</text>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

function perSecond(timeline: Point[], pick: (point: Point) => number): Array<[number, number | null]> {
  return timeline.map((point) => [point.t, point.dt > 0 ? pick(point) / point.dt : null]);
}

function latencyRow(name: string, summary: LatencySummary | null): string {
  if (summary === null) return `<tr><th>${escapeHtml(name)}</th><td colspan="8" class="muted">none</td></tr>`;
  const cells = [summary.count, summary.mean, summary.p50, summary.p90, summary.p95, summary.p99, summary.p999, summary.max];
  return `<tr><th>${escapeHtml(name)}</th>${cells.map((cell) => `<td>${escapeHtml(cell)}</td>`).join('')}</tr>`;
}

function table(rows: Array<[string, unknown]>): string {
  return `<table class="kv">${rows.map(([key, value]) => `<tr><th>${escapeHtml(key)}</th><td>${escapeHtml(value)}</td></tr>`).join('')}</table>`;
}

function countsTable(title: string, counts: Record<string, number>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return `<h3>${escapeHtml(title)}</h3><p class="muted">none</p>`;
  return `<h3>${escapeHtml(title)}</h3><table class="kv">${entries.map(([key, value]) => `<tr><th>${escapeHtml(key)}</th><td>${value}</td></tr>`).join('')}</table>`;
}

export function renderHtml(summary: Summary): string {
  const { timeline, phases, run, messages: m, connections: c, cpu } = summary;
  const xMax = Math.max(1, ...phases.map((phase) => phase.endS), ...timeline.map((point) => point.t));
  const latencySeries = (pick: (point: Point) => { p50: number; p95: number; p99: number } | null): Series[] => [
    { name: 'p50', color: PALETTE[0]!, values: timeline.map((point) => [point.t, pick(point)?.p50 ?? null]) },
    { name: 'p95', color: PALETTE[3]!, values: timeline.map((point) => [point.t, pick(point)?.p95 ?? null]) },
    { name: 'p99', color: PALETTE[1]!, values: timeline.map((point) => [point.t, pick(point)?.p99 ?? null]) },
  ];
  const workers = cpu.workers.map((worker) => worker.worker);
  const charts = [
    lineChart(
      'Throughput',
      'per second',
      [
        { name: 'sent', color: PALETTE[0]!, values: perSecond(timeline, (point) => point.sent) },
        { name: 'acked', color: PALETTE[2]!, values: perSecond(timeline, (point) => point.acked), dashed: true },
        { name: 'deliveries', color: PALETTE[4]!, values: perSecond(timeline, (point) => point.deliveries) },
      ],
      phases,
      xMax,
    ),
    lineChart(
      'Ack latency (send → committed ack), per second',
      'ms',
      latencySeries((point) => point.ack),
      phases,
      xMax,
    ),
    lineChart(
      'End-to-end latency (send → each recipient device, live), per second',
      'ms',
      latencySeries((point) => point.e2e),
      phases,
      xMax,
    ),
    lineChart(
      'Connections',
      'devices',
      [
        { name: 'connected', color: PALETTE[0]!, values: timeline.map((point) => [point.t, point.connected]) },
        { name: 'in the run', color: PALETTE[7]!, values: timeline.map((point) => [point.t, point.devices]), dashed: true },
      ],
      phases,
      xMax,
    ),
    lineChart(
      'Errors and churn',
      'per second',
      [
        { name: 'errors', color: PALETTE[1]!, values: perSecond(timeline, (point) => point.errors) },
        { name: 'failed acks (wire)', color: PALETTE[3]!, values: perSecond(timeline, (point) => point.nacks), dashed: true },
        { name: 'reconnects', color: PALETTE[2]!, values: perSecond(timeline, (point) => point.reconnects) },
        { name: 'unplanned disconnects', color: PALETTE[5]!, values: perSecond(timeline, (point) => point.unplannedDisconnects) },
        { name: 'duplicates', color: PALETTE[4]!, values: perSecond(timeline, (point) => point.duplicates) },
      ],
      phases,
      xMax,
    ),
    lineChart(
      'Load generator CPU (% of one core) — is the generator the bottleneck?',
      '%',
      [
        { name: 'coordinator', color: PALETTE[7]!, values: timeline.map((point) => [point.t, point.cpu.coordinator]), dashed: true },
        ...workers.map((worker, i) => ({
          name: `worker ${worker}`,
          color: PALETTE[i % PALETTE.length]!,
          values: timeline.map((point): [number, number | null] => [point.t, point.cpu.workers[i] ?? null]),
        })),
        ...workers.map((worker, i) => ({
          name: `elu ${worker} ×100`,
          color: PALETTE[(i + 4) % PALETTE.length]!,
          dashed: true,
          values: timeline.map((point): [number, number | null] => [point.t, point.elu.workers[i] === null || point.elu.workers[i] === undefined ? null : point.elu.workers[i]! * 100]),
        })),
      ],
      phases,
      xMax,
    ),
  ];

  const verdict = summary.verdict.ok
    ? `<div class="verdict ok">OK — every acked message reached every device of every member exactly once</div>`
    : `<div class="verdict fail">FAIL (exit ${summary.verdict.exitCode}) — ${summary.verdict.reasons.map(escapeHtml).join('; ')}</div>`;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>loadgen ${escapeHtml(run.id)} — ${escapeHtml(run.url)}</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 960px; color: #1f2328; padding: 0 12px; }
  h1 { font-size: 20px; margin-bottom: 4px; } h2 { font-size: 16px; margin-top: 28px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; } h3 { font-size: 14px; margin: 14px 0 4px; }
  .muted { color: #656d76; } .verdict { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 14px 0; }
  .ok { background: #dafbe1; color: #116329; } .fail { background: #ffebe9; color: #a40e26; }
  table { border-collapse: collapse; margin: 6px 0; } th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; } td { font-variant-numeric: tabular-nums; }
  table.lat td, table.lat th { padding-right: 14px; } table.lat thead th { color: #656d76; font-weight: 500; }
  .grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 0 24px; }
  svg.chart { width: 100%; height: auto; margin: 10px 0; } svg .title { font-weight: 600; font-size: 13px; } svg .tick, svg .legend { font-size: 11px; fill: #57606a; }
  svg .phase { font-size: 10px; fill: #8c959f; } svg .grid { stroke: #eaeef2; } svg .frame { fill: none; stroke: #d0d7de; } svg .empty { fill: #8c959f; font-size: 13px; }
  ul.warn li { color: #9a6700; } code { background: #f6f8fa; padding: 1px 4px; border-radius: 4px; }
</style>
</head>
<body>
<h1>Load test ${escapeHtml(run.id)}</h1>
<div class="muted">${escapeHtml(run.url)} · started ${escapeHtml(run.startedAt)} · ${escapeHtml(run.wallSeconds)} s · seed ${escapeHtml(run.seed)} · ${escapeHtml(run.workers)} worker thread(s) on ${escapeHtml(cpu.cores)} cores</div>
${verdict}
${summary.warnings.length ? `<ul class="warn">${summary.warnings.map((warning) => `<li>${escapeHtml(warning)}</li>`).join('')}</ul>` : ''}
<div class="grid2">
<div><h3>Plan</h3>${table([
    ['devices (connections)', run.plan.devices],
    ['users', run.plan.users],
    ['conversations created', `${run.plan.created} of ${run.plan.conversations} (${run.plan.direct} direct, ${run.plan.group} groups)`],
    ['memberships', run.plan.members],
    ['target rate', `${m.targetRate} msgs/s for ${Number(run.options['durationMs']) / 1000} s`],
  ])}</div>
<div><h3>Delivery accounting</h3>${table([
    ['expected (device × message)', m.expected],
    ['received', m.received],
    ['lost', m.lost],
    ['duplicates', m.duplicates],
    ['out of order', m.outOfOrder],
    ['sent / acked / failed', `${m.sent} / ${m.acked} / ${m.failed}`],
    ['unacked at end / SDK retries', `${m.unackedAtEnd} / ${m.retries}`],
  ])}</div>
<div><h3>Throughput (load phase)</h3>${table([
    ['sent', `${m.sentRate} msgs/s`],
    ['acked', `${m.ackedRate} msgs/s`],
    ['deliveries', `${m.deliveryRate} /s (${m.deliveries} in all, ${m.resyncDeliveries} through resync)`],
  ])}</div>
<div><h3>Connections</h3>${table([
    ['connected', `${c.connected} of ${c.devices}`],
    ['planned disconnects / reconnects', `${c.churnDisconnects} / ${c.reconnects}`],
    ['unplanned disconnects', c.unplannedDisconnects],
    ['receipts: read marks / updates seen', `${summary.receipts.readMarks} / ${summary.receipts.receiptsSeen}`],
    ['own messages → delivered / read', `${summary.receipts.statusDelivered} / ${summary.receipts.statusRead}`],
    ['typing bursts / seen; presence changes / seen', `${summary.typing.bursts} / ${summary.typing.seen}; ${summary.presence.sets} / ${summary.presence.seen}`],
  ])}</div>
</div>
<h2>Latency (ms)</h2>
<table class="lat"><thead><tr><th></th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead><tbody>
${latencyRow('connect', c.connectMs)}
${latencyRow('ack', m.ackMs)}
${latencyRow('end-to-end (live)', m.e2eMs)}
${latencyRow('end-to-end (via resync)', m.resyncMs)}
${latencyRow('reconnect', c.reconnectMs)}
</tbody></table>
<h2>Over time</h2>
${charts.join('\n')}
<h2>Errors</h2>
<div class="grid2"><div>${countsTable('Failed operations by code', summary.errors.byCode)}</div><div>${countsTable('Failed acks seen on the wire (retries included)', summary.errors.nacks)}</div></div>
${countsTable('By operation/code', summary.errors.byOperation)}
${m.lostSamples.length ? `<h3>Lost, examples</h3><table class="kv">${m.lostSamples.map((s) => `<tr><th>${escapeHtml(s.device)}</th><td>${escapeHtml(s.conversationId)}: ${s.lost} missing, seqs ${escapeHtml(s.missing.join(', '))}</td></tr>`).join('')}</table>` : ''}
${m.lateSamples.length ? `<h3>Out of order, examples</h3><table class="kv">${m.lateSamples.map((s) => `<tr><th>${escapeHtml(s.device)}</th><td>${escapeHtml(s.conversationId)}: seq ${s.seq} after ${s.after}${s.resync ? ' (during resync)' : ''}</td></tr>`).join('')}</table>` : ''}
${m.duplicateSamples.length ? `<h3>Duplicates, examples</h3><table class="kv">${m.duplicateSamples.map((s) => `<tr><th>${escapeHtml(s.device)}</th><td>${escapeHtml(s.conversationId)}: seq ${s.seq}</td></tr>`).join('')}</table>` : ''}
<h2>Load generator</h2>
<table class="lat"><thead><tr><th></th><th>CPU % of a core</th><th>ELU mean</th><th>ELU max</th><th>&gt;80% busy (s)</th><th>max lag (ms)</th></tr></thead><tbody>
<tr><th>coordinator</th><td>${cpu.coordinator.cpuPct}</td><td>${cpu.coordinator.eluMean}</td><td>${cpu.coordinator.eluMax}</td><td></td><td></td></tr>
${cpu.workers.map((w) => `<tr><th>worker ${w.worker}</th><td>${w.cpuPct}</td><td>${w.eluMean}</td><td>${w.eluMax}</td><td>${w.busySeconds}</td><td>${w.maxLagMs}</td></tr>`).join('\n')}
<tr><th>whole process</th><td>${cpu.processCpuPct}</td><td colspan="4"></td></tr>
</tbody></table>
<h2>Options</h2>
${table(Object.entries(run.options).map(([key, value]) => [key, typeof value === 'object' && value !== null ? JSON.stringify(value) : value]))}
<p class="muted">Phases: ${phases.map((phase) => `${escapeHtml(phase.name)} ${phase.startS}–${phase.endS} s`).join(' · ')}. The full timeline is in the JSON summary.</p>
</body>
</html>
`;
}
