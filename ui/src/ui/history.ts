// History: past launches, newest first; a click shows one on the Timeline; Export writes a bundle.
import { exportBundle, openBundleFile, refreshHistory, showRecord } from '../actions';
import { formatAgo, formatMs } from '../logic/format';
import { summarizeRetries } from '../logic/timeline';
import { state, subscribe } from '../store';
import type { LaunchRecord } from '../types';
import { copyText, h, replace } from './dom';
import { icon } from './icons';

const MAX_ROWS = 300;

export function mountHistory(section: HTMLElement): void {
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'table history-table' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, 'When'),
        h('th', null, 'Resource'),
        h('th', null, 'Profile'),
        h('th', null, 'Outcome'),
        h('th', { class: 'num' }, 'Total'),
        h('th', null, ''),
      ),
    ),
    body,
  );
  const empty = h('div', { class: 'empty' });
  const more = h('p', { class: 'muted small more' });

  // Open a bundle someone sent: the file picker here, or a drop anywhere on the window.
  const picker = h('input', { type: 'file', accept: '.json,application/json', hidden: true, 'data-testid': 'bundle-input' });
  picker.addEventListener('change', () => {
    const file = picker.files?.[0];
    picker.value = '';
    if (file) void openBundleFile(file);
  });
  const open = h('button', { class: 'btn', type: 'button', 'data-testid': 'open-bundle', title: 'Open a diagnostic bundle (or drop it on the window)', onclick: () => picker.click() }, icon('open', 16), 'Open bundle…');

  replace(
    section,
    h(
      'header',
      { class: 'panel-head' },
      h('div', null, h('h1', null, 'History'), h('p', { class: 'sub' }, 'Past launches, newest first. Click one to see its timeline; open a bundle someone sent, or drop it on the window.')),
      h('div', { class: 'panel-actions' }, open, picker, h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => void refreshHistory() }, 'Refresh')),
    ),
    h('div', { class: 'card' }, table, empty, more),
  );

  const row = (r: LaunchRecord, now: number): HTMLElement[] => {
    const retries = summarizeRetries(r.checkpoints).retries;
    const exported = state.exported.get(r.launch_id);
    const selected = state.timeline?.kind === 'record' && state.timeline.launchId === r.launch_id;
    const exportBtn = h('button', { class: 'btn btn-small', type: 'button', 'data-testid': `export-${r.launch_id}` }, 'Export');
    exportBtn.addEventListener('click', async (e) => {
      e.stopPropagation();
      exportBtn.disabled = true;
      await exportBundle(r.launch_id);
      exportBtn.disabled = false;
    });
    const tr = h(
      'tr',
      {
        class: `clickable${selected ? ' selected' : ''}`,
        tabindex: 0,
        'data-testid': `history-${r.launch_id}`,
        title: `Show the timeline of ${r.launch_id}`,
      },
      h('td', { class: 'nowrap', title: new Date(r.started_unix_ms).toLocaleString() }, h('div', null, formatAgo(now, r.started_unix_ms)), h('div', { class: 'muted small' }, new Date(r.started_unix_ms).toLocaleTimeString())),
      h('td', null, h('div', { class: 'strong' }, r.resource), h('div', { class: 'muted small mono launch-id', title: r.launch_id }, r.launch_id)),
      h('td', null, h('span', { class: 'chip' }, r.profile)),
      h(
        'td',
        { class: 'outcome' },
        h('span', { class: `pill pill-${r.outcome === 'ok' ? 'ok' : 'failed'}` }, r.outcome === 'ok' ? 'ok' : 'failed'),
        retries > 0 ? h('span', { class: 'chip chip-warn', title: 'offer attempts after the first' }, `${retries} retr${retries === 1 ? 'y' : 'ies'}`) : null,
        r.error ? h('div', { class: 'small error-line' }, h('code', { class: 'error-code' }, r.error.code), ' ', r.error.message) : null,
      ),
      h('td', { class: 'num mono' }, formatMs(r.total_ms)),
      h('td', { class: 'actions' }, exportBtn),
    );
    const open = () => showRecord(r.launch_id);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target === tr) open();
    });
    if (!exported) return [tr];
    const copyBtn = h('button', { class: 'icon-btn', type: 'button', title: 'Copy path', 'aria-label': 'Copy the bundle path' }, icon('copy', 14));
    copyBtn.addEventListener('click', () => void copyText(exported));
    return [
      tr,
      h(
        'tr',
        { class: 'export-row' },
        h('td', { colspan: 6 }, h('span', { class: 'muted' }, 'Bundle written to '), h('span', { class: 'mono', 'data-testid': `export-path-${r.launch_id}` }, exported), copyBtn),
      ),
    ];
  };

  const render = () => {
    const now = Date.now();
    const list = state.history.slice(0, MAX_ROWS);
    body.replaceChildren(...list.flatMap((r) => row(r, now)));
    table.hidden = list.length === 0;
    empty.hidden = list.length > 0;
    empty.textContent = !state.tauri ? 'Launch history appears here inside the Sallyport app.' : state.historyLoaded ? 'No launch yet.' : 'Loading history…';
    more.hidden = state.history.length <= MAX_ROWS;
    more.textContent = `Showing the newest ${MAX_ROWS} of ${state.history.length} launches.`;
  };

  subscribe('history', render);
  // The highlighted row follows the Timeline, but live checkpoints need no redraw here.
  let selected: string | null = null;
  subscribe('timeline', () => {
    const now = state.timeline?.kind === 'record' ? state.timeline.launchId : null;
    if (now !== selected) {
      selected = now;
      render();
    }
  });
  render();
  // Keep "5 min ago" honest while the panel is open.
  setInterval(() => {
    if (state.panel === 'history' && !document.hidden && !section.contains(document.activeElement)) render();
  }, 30_000);
}
