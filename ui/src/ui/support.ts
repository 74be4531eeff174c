// Support: every user's launches as reported to the router, filtered by user, resource,
// gateway, outcome and time; each opens on the Timeline. Above them, where the time goes per
// gateway (or resource): each row a stack of phase medians, the fleet's on top, and the phases
// slower than the fleet's median marked.
import { refreshSupport, showReport } from '../actions';
import { formatAgo, formatMs } from '../logic/format';
import { TIME_WINDOWS, distinct, reportKey, statsChart, type ChartRow, type TimeWindow } from '../logic/support';
import { state, subscribe } from '../store';
import type { LaunchSummary } from '../types';
import { h, replace } from './dom';

const MAX_ROWS = 200;

/** One colour per phase, by its position in the pipeline. */
function hue(index: number, count: number): string {
  return `hsl(${Math.round((index / Math.max(1, count)) * 300 + 200) % 360} 55% 55%)`;
}

export function mountSupport(section: HTMLElement): void {
  const f = state.support.filter;
  const lists = { user: h('datalist', { id: 'support-users' }), resource: h('datalist', { id: 'support-resources' }), gateway: h('datalist', { id: 'support-gateways' }) };
  const text = (key: 'user' | 'resource' | 'gateway', label: string) => {
    const input = h('input', { class: 'input', type: 'text', value: f[key], placeholder: 'any', list: `support-${key}s`, 'data-testid': `support-filter-${key}`, 'aria-label': `Filter by ${label}` });
    input.addEventListener('change', () => {
      f[key] = input.value;
      void refreshSupport();
    });
    return h('label', { class: 'filter' }, h('span', null, label), input);
  };
  const outcome = h(
    'select',
    { class: 'select', 'data-testid': 'support-filter-outcome', 'aria-label': 'Filter by outcome' },
    h('option', { value: '' }, 'any'),
    h('option', { value: 'ok' }, 'ok'),
    h('option', { value: 'failed' }, 'failed'),
  );
  outcome.addEventListener('change', () => {
    f.outcome = outcome.value as typeof f.outcome;
    void refreshSupport();
  });
  const when = h(
    'select',
    { class: 'select', 'data-testid': 'support-filter-window', 'aria-label': 'Launches from' },
    TIME_WINDOWS.map((w) => h('option', { value: w.value, selected: w.value === f.window }, w.label)),
  );
  when.addEventListener('change', () => {
    f.window = when.value as TimeWindow;
    void refreshSupport();
  });
  const groupBy = h('select', { class: 'select', 'data-testid': 'support-group-by', 'aria-label': 'Chart per' }, h('option', { value: 'gateway' }, 'per gateway'), h('option', { value: 'resource' }, 'per resource'));
  groupBy.addEventListener('change', () => {
    state.support.groupBy = groupBy.value as 'gateway' | 'resource';
    void refreshSupport();
  });

  const chart = h('div', { class: 'card sp-chart', 'data-testid': 'support-chart' });
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'table support-table', 'data-testid': 'support-launches' },
    h('thead', null, h('tr', null, h('th', null, 'When'), h('th', null, 'User'), h('th', null, 'Resource'), h('th', null, 'Gateway'), h('th', null, 'Outcome'), h('th', { class: 'num' }, 'Total'), h('th', { class: 'num' }, 'Attempts'))),
    body,
  );
  const empty = h('div', { class: 'empty' });

  replace(
    section,
    h(
      'header',
      { class: 'panel-head' },
      h('div', null, h('h1', null, 'Support'), h('p', { class: 'sub' }, 'Every user’s launches as reported to the router. Click one to see its timeline.')),
      h('div', { class: 'panel-actions' }, h('button', { class: 'btn btn-ghost', type: 'button', 'data-testid': 'support-refresh', onclick: () => void refreshSupport() }, 'Refresh')),
    ),
    h('div', { class: 'card sp-filters' }, text('user', 'User'), text('resource', 'Resource'), text('gateway', 'Gateway'), h('label', { class: 'filter' }, h('span', null, 'Outcome'), outcome), h('label', { class: 'filter' }, h('span', null, 'From'), when), lists.user, lists.resource, lists.gateway),
    h('div', { class: 'sp-chart-head' }, h('h2', null, 'Where the time goes'), groupBy),
    chart,
    h('h2', { class: 'sp-list-head' }, 'Launches'),
    h('div', { class: 'card' }, table, empty),
  );

  const row = (l: LaunchSummary, now: number): HTMLElement => {
    const key = reportKey(l);
    const selected = state.timeline?.kind === 'report' && state.timeline.key === key;
    const tr = h(
      'tr',
      { class: `clickable${selected ? ' selected' : ''}`, tabindex: 0, 'data-testid': `support-launch-${l.launch_id}`, title: `Show the timeline of ${l.launch_id}` },
      h('td', { class: 'nowrap', title: new Date(l.started_unix_ms).toLocaleString() }, formatAgo(now, l.started_unix_ms)),
      h('td', null, h('span', { class: 'strong' }, l.user)),
      h('td', null, h('div', null, l.resource), h('div', { class: 'muted small mono launch-id' }, l.launch_id)),
      h('td', null, l.gateway ?? h('span', { class: 'muted' }, '–')),
      h('td', null, h('span', { class: `pill pill-${l.outcome === 'ok' ? 'ok' : 'failed'}` }, l.outcome), l.code ? h('code', { class: 'error-code sp-code' }, l.code) : null),
      h('td', { class: 'num mono' }, formatMs(l.total_ms)),
      h('td', { class: 'num mono' }, String(l.attempts)),
    );
    tr.addEventListener('click', () => showReport(key));
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target === tr) showReport(key);
    });
    return tr;
  };

  const render = () => {
    const s = state.support;
    const now = Date.now();
    outcome.value = s.filter.outcome;
    for (const [field, list] of Object.entries(lists) as ['user' | 'resource' | 'gateway', HTMLDataListElement][]) {
      replace(list, distinct(s.launches, field).map((v) => h('option', { value: v })));
    }
    const rows = s.launches.slice(0, MAX_ROWS);
    body.replaceChildren(...rows.map((l) => row(l, now)));
    table.hidden = rows.length === 0;
    empty.hidden = rows.length > 0;
    empty.textContent = s.loading && !s.loaded ? 'Loading launches…' : 'No launch matches these filters.';
    renderChart(chart, s.stats ? statsChart(s.stats) : null, s.groupBy);
  };

  subscribe('support', render);
  let selected: string | null = null;
  subscribe('timeline', () => {
    const now = state.timeline?.kind === 'report' ? state.timeline.key : null;
    if (now !== selected) {
      selected = now;
      render();
    }
  });
  render();
}

function renderChart(el: HTMLElement, model: ReturnType<typeof statsChart> | null, per: string): void {
  if (!model || model.rows.length <= 1) {
    replace(el, h('p', { class: 'muted sp-empty' }, model ? 'No launch reported in this window yet.' : 'Loading…'));
    return;
  }
  const legend = h(
    'div',
    { class: 'sp-legend' },
    model.phases.map((p, i) => h('span', { class: 'sp-key' }, h('span', { class: 'sp-swatch', style: `background:${hue(i, model.phases.length)}` }), p)),
  );
  const findings = model.rows.flatMap((r) => r.slow.map((s) => ({ group: r.group!, s })));
  replace(
    el,
    h('p', { class: 'sub' }, `Median of each phase per ${per}, stacked in pipeline order; the top row is the whole fleet. Phases slower than the fleet's median are outlined.`),
    h('div', { class: 'sp-rows' }, model.rows.map((r) => chartRow(r, model))),
    findings.length > 0
      ? h(
          'div',
          { class: 'callout callout-slow', 'data-testid': 'support-slow' },
          h('strong', null, 'Slower than the fleet: '),
          findings.map((x, i) => [i > 0 ? '; ' : '', h('span', { class: 'mono' }, `${x.group} ${x.s.phase}`), ` ${formatMs(x.s.p50)} vs ${formatMs(x.s.fleetP50)} (${Number.isFinite(x.s.ratio) ? `${x.s.ratio.toFixed(1)}×` : 'new'})`]),
        )
      : h('p', { class: 'muted small' }, `No ${per.replace('per ', '')} is much slower than the fleet in any phase.`),
    legend,
  );
}

function chartRow(r: ChartRow, model: ReturnType<typeof statsChart>): HTMLElement {
  const pct = (x: number) => `${(x * 100).toFixed(3)}%`;
  return h(
    'div',
    { class: `sp-row${r.group === null ? ' sp-fleet' : ''}${r.slow.length > 0 ? ' sp-row-slow' : ''}`, 'data-testid': r.group === null ? 'support-fleet' : `support-group-${r.group}` },
    h('div', { class: 'sp-label' }, h('span', { class: 'strong' }, r.group ?? 'fleet'), h('span', { class: 'muted small' }, ` ${r.launches} launch${r.launches === 1 ? '' : 'es'} · ${formatMs(r.sumMs)}`)),
    h(
      'div',
      { class: 'sp-track' },
      r.segments.map((s) =>
        h('span', {
          class: `sp-seg${s.slow ? ' sp-seg-slow' : ''}`,
          'data-phase': s.phase,
          style: `left:${pct(s.start)};width:${pct(s.width)};background:${hue(model.phases.indexOf(s.phase), model.phases.length)}`,
          title: `${s.phase}: median ${formatMs(s.p50)} (fleet ${formatMs(s.fleetP50)})`,
        }),
      ),
    ),
  );
}
