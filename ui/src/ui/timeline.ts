// Timeline: the shown launch drawn live, one bar per checkpoint on a shared time axis, with
// retries, the catch-up wait, slow-phase hints, the failure, and the resource's earlier launches.
import { go, showRecord } from '../actions';
import { formatAgo, formatMs, formatStep, formatTotalMs } from '../logic/format';
import {
  CATCHUP_DONE,
  CATCHUP_START,
  axisTicks,
  earlierLaunches,
  layoutTimeline,
  phaseMedians,
  sharedAxisMs,
  type Bar,
  type TimelineLayout,
} from '../logic/timeline';
import { reportCheckpoints, reportKey } from '../logic/support';
import { shownLiveLaunch, state, subscribe } from '../store';
import { HINTS, type BundleView, type Checkpoint, type LaunchError, type LaunchRecord } from '../types';
import { h, replace, setText } from './dom';

interface Subject {
  resource: string;
  launchId: string | null;
  checkpoints: Checkpoint[];
  status: 'running' | 'ok' | 'failed';
  error: (LaunchError & { hint?: string }) | null;
  startedAt: number;
  profile: string | null;
  live: boolean;
  /** Where the launch comes from, when not this machine's own. */
  origin: { kind: 'history' } | { kind: 'imported'; bundle: BundleView; fileName: string } | { kind: 'report'; user: string; gateway: string | null } | null;
}

function currentSubject(): Subject | null {
  const t = state.timeline;
  if (!t) return null;
  if (t.kind === 'live') {
    const l = shownLiveLaunch();
    if (!l) return null;
    return {
      resource: l.resource,
      launchId: l.launchId,
      checkpoints: l.checkpoints,
      status: l.status,
      error: l.error,
      startedAt: l.checkpoints[0] ? l.checkpoints[0].at_unix_ms - l.checkpoints[0].total_ms : l.startedAt,
      profile: state.app?.profile ?? null,
      live: true,
      origin: null,
    };
  }
  if (t.kind === 'imported') {
    const i = state.imported;
    if (!i) return null;
    const r = i.bundle.launch;
    return { ...recordSubject(r), origin: { kind: 'imported', bundle: i.bundle, fileName: i.fileName } };
  }
  if (t.kind === 'report') {
    const l = state.support.launches.find((x) => reportKey(x) === t.key);
    if (!l) return null;
    return {
      resource: l.resource,
      launchId: l.launch_id,
      checkpoints: reportCheckpoints(l),
      status: l.outcome === 'ok' ? 'ok' : 'failed',
      error: l.code ? { code: l.code, message: 'as reported to the router', hint: HINTS[l.code] } : null,
      startedAt: l.started_unix_ms,
      profile: l.profile,
      live: false,
      origin: { kind: 'report', user: l.user, gateway: l.gateway },
    };
  }
  const r = state.history.find((x) => x.launch_id === t.launchId);
  return r ? recordSubject(r) : null;
}

function recordSubject(r: LaunchRecord): Subject {
  return {
    resource: r.resource,
    launchId: r.launch_id,
    checkpoints: r.checkpoints,
    status: r.outcome === 'ok' ? 'ok' : 'failed',
    error: r.error,
    startedAt: r.started_unix_ms,
    profile: r.profile,
    live: false,
    origin: { kind: 'history' },
  };
}

export function mountTimeline(section: HTMLElement): void {
  let elapsedEl: HTMLElement | null = null;
  let elapsedFrom = 0;

  const render = () => {
    elapsedEl = null;
    const s = currentSubject();
    if (!s) {
      replace(
        section,
        header(null),
        h(
          'div',
          { class: 'card empty-card' },
          h('div', { class: 'empty-title' }, 'No launch yet'),
          h('p', { class: 'muted' }, 'Connect to a resource and its checkpoints appear here as they happen; pick a past launch in History to see its timeline.'),
          h('div', { class: 'empty-actions' }, h('button', { class: 'btn', type: 'button', onclick: () => go('resources') }, 'Go to Resources'), h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => go('history') }, 'Open History')),
        ),
      );
      return;
    }

    // Slow-phase hints against this machine's launches of the resource, or, for a reported
    // launch, against the launches reported for it; an imported launch has nothing to compare.
    const kind = s.origin?.kind;
    const peers =
      kind === 'report'
        ? state.support.launches.filter((l) => l.resource === s.resource).map((l) => ({ launch_id: l.launch_id, checkpoints: reportCheckpoints(l) }))
        : kind === 'imported'
          ? []
          : state.history.filter((r) => r.resource === s.resource);
    const medians = phaseMedians(peers, s.launchId ?? undefined);
    const layout = layoutTimeline(s.checkpoints, { medians });
    const earlier = kind === 'report' || kind === 'imported' ? [] : earlierLaunches(state.history, s.resource, s.launchId ?? undefined, 8);
    const status = s.status === 'running' && layout.outcome !== 'running' ? layout.outcome : s.status;

    const elapsed = status === 'running' ? h('span', { class: 'elapsed mono' }) : null;
    if (elapsed) {
      elapsedEl = elapsed;
      elapsedFrom = s.startedAt;
      tickElapsed();
    }

    const failure: Subject['error'] = status === 'failed' ? s.error ?? layout.failure ?? { code: 'unrecognized', message: '' } : null;
    const slowBars = layout.bars.filter((b) => b.slow);

    replace(
      section,
      header(s),
      h(
        'div',
        { class: 'tl-layout' },
        h(
          'div',
          { class: 'card tl-main' },
          h(
            'div',
            { class: 'tl-summary' },
            h(
              'div',
              { class: 'tl-title' },
              h('span', { class: 'tl-resource' }, s.resource),
              statusPill(status),
              s.profile ? h('span', { class: 'chip' }, `profile ${s.profile}`) : null,
              originChip(s),
            ),
            h(
              'div',
              { class: 'tl-total' },
              h('span', { class: 'tl-total-label' }, status === 'running' ? 'so far' : 'total'),
              h('span', { class: 'tl-total-value mono', 'data-testid': 'timeline-total' }, formatTotalMs(layout.totalMs)),
              elapsed,
            ),
          ),
          h(
            'div',
            { class: 'tl-meta muted' },
            s.launchId
              ? h('span', { class: 'mono' }, s.launchId)
              : h('span', null, status === 'running' ? 'waiting for the first checkpoint…' : 'ended before its first checkpoint'),
            h('span', null, ` · started ${new Date(s.startedAt).toLocaleTimeString()}`),
          ),
          failure
            ? h(
                'div',
                { class: 'callout callout-error', 'data-testid': 'timeline-error' },
                h('div', null, h('code', { class: 'error-code' }, failure.code), ' ', failure.message),
                failure.hint ? h('div', { class: 'callout-hint' }, failure.hint) : null,
              )
            : null,
          layout.retries.retries > 0 || layout.retries.catchups > 0
            ? h(
                'div',
                { class: 'callout callout-warn', 'data-testid': 'timeline-retries' },
                h(
                  'div',
                  null,
                  layout.retries.retries > 0
                    ? [
                        h('strong', null, `Offer retried ${layout.retries.retries}×`),
                        layout.retries.waitMs > 0 ? ` after waiting ${formatMs(layout.retries.waitMs)} for the gateway to catch up` : '',
                      ]
                    : [h('strong', null, 'Offer failed transiently'), ' — waiting for the gateway to catch up before retrying'],
                ),
                layout.retries.reasons.map((r) => h('div', { class: 'callout-hint mono' }, r)),
              )
            : null,
          slowBars.length > 0
            ? h(
                'div',
                { class: 'callout callout-slow', 'data-testid': 'timeline-slow' },
                h('strong', null, `${slowBars.length === 1 ? 'One phase' : `${slowBars.length} phases`} much slower than usual for ${s.resource}: `),
                slowBars.map((b, i) => [i > 0 ? ', ' : '', h('span', { class: 'mono' }, b.phase), ` ${formatMs(b.stepMs)} vs ${formatMs(b.slow!.medianMs)}`]),
              )
            : null,
          layout.bars.length > 0 || status === 'running' ? chart(layout, status === 'running') : null,
        ),
        sidePanel(s, layout, status, earlier),
      ),
      s.origin?.kind === 'imported' ? bundleDetails(s.origin.bundle, s.origin.fileName) : null,
    );
  };

  const tickElapsed = () => {
    if (elapsedEl) setText(elapsedEl, `${formatMs(Math.max(0, Date.now() - elapsedFrom))} elapsed`);
  };
  setInterval(tickElapsed, 200);

  subscribe('timeline', render);
  render();
}

function originChip(s: Subject): HTMLElement | null {
  const o = s.origin;
  if (!o) return null;
  if (o.kind === 'history') return h('span', { class: 'chip chip-muted' }, 'from history');
  if (o.kind === 'imported') return h('span', { class: 'chip chip-import', 'data-testid': 'timeline-imported', title: o.fileName }, 'imported bundle');
  return h('span', { class: 'chip chip-import', 'data-testid': 'timeline-reported' }, `reported by ${o.user}${o.gateway ? ` via ${o.gateway}` : ''}`);
}

/** An imported bundle's versions, tunables and log lines. */
function bundleDetails(b: BundleView, fileName: string): HTMLElement {
  return h(
    'div',
    { class: 'card bundle-details', 'data-testid': 'bundle-details' },
    h('h2', null, 'Imported bundle'),
    h(
      'dl',
      { class: 'kv' },
      h('dt', null, 'file'),
      h('dd', { class: 'mono' }, fileName),
      h('dt', null, 'integrity'),
      h('dd', { 'data-testid': 'bundle-integrity' }, b.verified ? 'digest verified: unchanged since export' : 'a v1 bundle: it has no digest to check'),
      h('dt', null, 'written by'),
      h('dd', { 'data-testid': 'bundle-version' }, `Sallyport ${b.sallyport_version} · protocol ${b.protocol_version} · ${b.os}/${b.arch}`),
      h('dt', null, 'router'),
      h('dd', { class: 'mono' }, b.router_url),
    ),
    h('h3', null, 'Tunables'),
    h('div', { class: 'tunables', 'data-testid': 'bundle-tunables' }, b.tunables.map((t) => h('span', { class: 'chip mono' }, `${t.name}=${t.value}`))),
    h('h3', null, `Log (${b.log.length} line${b.log.length === 1 ? '' : 's'})`),
    b.log.length > 0 ? h('pre', { class: 'bundle-log', 'data-testid': 'bundle-log' }, b.log.join('\n')) : h('p', { class: 'muted small' }, 'The bundle has no log lines.'),
  );
}

function header(s: Subject | null): HTMLElement {
  return h(
    'header',
    { class: 'panel-head' },
    h(
      'div',
      null,
      h('h1', null, 'Timeline'),
      h('p', { class: 'sub' }, s ? 'Each bar runs from the previous checkpoint to its own, on one time axis.' : 'Every launch explains itself, checkpoint by checkpoint.'),
    ),
  );
}

function statusPill(status: 'running' | 'ok' | 'failed'): HTMLElement {
  const text = status === 'running' ? 'launching' : status === 'ok' ? 'ready' : 'failed';
  return h('span', { class: `pill pill-${status}`, 'data-testid': 'timeline-status' }, text);
}

const pct = (x: number) => `${(x * 100).toFixed(3)}%`;

function chart(layout: TimelineLayout, running: boolean): HTMLElement {
  const ticks = axisTicks(layout.axisMs, 5);
  const axis = h(
    'div',
    { class: 'tl-row tl-axis', 'aria-hidden': 'true' },
    h('div', { class: 'tl-label' }, h('span', { class: 'muted' }, 'phase'), h('span', { class: 'tl-nums muted' }, h('span', null, 'step'), h('span', null, 'at'))),
    h(
      'div',
      { class: 'tl-track tl-track-axis' },
      ticks.map((t) => h('span', { class: 'tl-tick', style: `left:${pct(layout.axisMs > 0 ? t / layout.axisMs : 0)}` }, formatMs(t))),
    ),
  );
  const grid = ticks.map((t) => h('span', { class: 'tl-grid', style: `left:${pct(layout.axisMs > 0 ? t / layout.axisMs : 0)}` }));

  const rows = layout.bars.map((b) => barRow(b, layout.axisMs));
  const pending = running
    ? h('div', { class: 'tl-row tl-pending' }, h('div', { class: 'tl-label muted' }, h('span', { class: 'spinner' }), 'waiting for the next checkpoint'), h('div', { class: 'tl-track' }))
    : null;
  return h('div', { class: 'tl-chart' }, axis, h('div', { class: 'tl-rows' }, h('div', { class: 'tl-grid-layer' }, grid), rows, pending));
}

function barRow(b: Bar, axisMs: number): HTMLElement {
  const note = barNote(b);
  const bar = h('div', {
    class: `tl-bar bar-${b.kind}${b.slow ? ' bar-slow' : ''}`,
    'data-testid': `phase-${b.phase}`,
    'data-phase': b.phase,
    'data-step-ms': String(b.stepMs),
    'data-total-ms': String(b.totalMs),
    style: `left:${pct(b.start)};width:${pct(b.width)}`,
    title: `${b.phase}\n${formatStep(b.stepMs)} (from ${formatMs(b.fromMs)} to ${formatMs(b.toMs)})${b.reason ? `\n${b.reason}` : ''}${b.detail && b.detail !== b.reason ? `\n${b.detail}` : ''}`,
  });
  const marker =
    b.slow && axisMs > 0
      ? h('span', {
          class: 'tl-median',
          style: `left:${pct(Math.min(1, (b.fromMs + b.slow.medianMs) / axisMs))}`,
          title: `usual end of this phase: median ${formatMs(b.slow.medianMs)} over ${b.slow.samples} earlier step${b.slow.samples === 1 ? '' : 's'}`,
        })
      : null;
  return h(
    'div',
    { class: `tl-row row-${b.kind}${b.slow ? ' row-slow' : ''}` },
    h(
      'div',
      { class: 'tl-label' },
      h('span', { class: 'phase mono', title: b.phase }, breakable(b.phase)),
      h(
        'span',
        { class: 'tl-nums mono' },
        h('span', { class: 'step' }, formatStep(b.stepMs)),
        h('span', { class: 'total' }, formatMs(b.totalMs)),
      ),
      b.slow
        ? h('span', { class: 'slow-badge', title: `median ${formatMs(b.slow.medianMs)} over ${b.slow.samples} earlier step${b.slow.samples === 1 ? '' : 's'}` }, `▲ ${Number.isFinite(b.slow.ratio) ? `${b.slow.ratio.toFixed(1)}×` : 'new'} usual`)
        : null,
      note ? h('span', { class: `tl-note note-${b.kind}` }, note) : null,
    ),
    h('div', { class: 'tl-track' }, bar, marker),
  );
}

/** A phase name that may wrap after its underscores rather than be cut. */
function breakable(phase: string): (string | HTMLElement)[] {
  return phase.split('_').flatMap((part, i) => (i === 0 ? [part] : [h('wbr'), `_${part}`]));
}

function barNote(b: Bar): string | null {
  if (b.kind === 'retry') return `retry${b.reason ? ` after ${b.reason}` : ''}`;
  if (b.kind === 'catchup' && b.phase === CATCHUP_START) return b.reason ? `why: ${b.reason}` : 'catch-up wait begins';
  if (b.kind === 'catchup' && b.phase === CATCHUP_DONE) return `catch-up wait ${formatMs(b.stepMs)}`;
  if (b.kind === 'failed') return b.reason ?? 'failed';
  if (b.detail && b.kind === 'step') return b.detail;
  if (b.detail && b.kind === 'ready') return b.detail;
  return null;
}

function sidePanel(s: Subject, layout: TimelineLayout, status: Subject['status'], earlier: LaunchRecord[]): HTMLElement {
  const axis = sharedAxisMs([layout.totalMs, ...earlier.map((r) => r.total_ms)]);
  const now = Date.now();
  const current = h(
    'div',
    { class: 'cmp-row cmp-current' },
    h('span', { class: 'cmp-top' }, h('span', { class: `dot ${status === 'failed' ? 'dot-failed' : status === 'ok' ? 'dot-ok' : 'dot-running'}` }), h('span', { class: 'cmp-when' }, 'this launch'), h('span', { class: 'mono' }, formatMs(layout.totalMs))),
    miniBar(s.checkpoints, axis),
  );
  const rows = earlier.map((r) =>
    h(
      'button',
      { class: 'cmp-row', type: 'button', title: `Show launch ${r.launch_id}`, onclick: () => showRecord(r.launch_id) },
      h(
        'span',
        { class: 'cmp-top' },
        h('span', { class: `dot ${r.outcome === 'ok' ? 'dot-ok' : 'dot-failed'}` }),
        h('span', { class: 'cmp-when', title: new Date(r.started_unix_ms).toLocaleString() }, formatAgo(now, r.started_unix_ms)),
        h('span', { class: 'chip chip-small' }, r.profile),
        h('span', { class: 'mono' }, formatMs(r.total_ms)),
      ),
      miniBar(r.checkpoints, axis),
    ),
  );
  return h(
    'aside',
    { class: 'card tl-side', 'data-testid': 'timeline-earlier' },
    h('h2', null, 'Earlier launches'),
    h('p', { class: 'sub' }, `of ${s.resource}, on one axis`),
    current,
    rows.length > 0 ? rows : h('p', { class: 'muted small' }, 'No earlier launch of this resource yet.'),
  );
}

function miniBar(cps: readonly Checkpoint[], axisMs: number): HTMLElement {
  const layout = layoutTimeline(cps, { axisMs });
  return h(
    'span',
    { class: 'mini-track' },
    layout.bars.map((b) => h('span', { class: `mini-seg bar-${b.kind}`, style: `left:${pct(b.start)};width:${pct(b.width)}` })),
  );
}

