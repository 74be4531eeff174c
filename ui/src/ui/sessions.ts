// Sessions: every open session from watch_sessions, with its port, live uptime, bytes and Close;
// then those that ended by themselves, saying why, until dismissed.
import { closeSession, go } from '../actions';
import { formatBytes, formatUptime } from '../logic/format';
import { endedText, visibleSessions } from '../logic/launch';
import { state, subscribe } from '../store';
import type { SessionInfo } from '../types';
import { copyText, h, replace, setText } from './dom';
import { icon } from './icons';

interface Row {
  el: HTMLTableRowElement;
  resource: HTMLElement;
  sub: HTMLElement;
  port: HTMLElement;
  client: HTMLElement;
  state: HTMLElement;
  uptime: HTMLElement;
  bytesIn: HTMLElement;
  bytesOut: HTMLElement;
  close: HTMLButtonElement;
  session: SessionInfo;
}

/** Pushes come every second; past this the list is called out as possibly stale. */
const STALE_AFTER_MS = 3500;

export function mountSessions(section: HTMLElement): void {
  const live = h('span', { class: 'live-note', 'data-testid': 'sessions-freshness' });
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'table sessions-table' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, 'Resource'),
        h('th', null, 'Local port'),
        h('th', null, 'Client'),
        h('th', null, 'State'),
        h('th', { class: 'num' }, 'Uptime'),
        h('th', { class: 'num' }, 'In'),
        h('th', { class: 'num' }, 'Out'),
        h('th', null, ''),
      ),
    ),
    body,
  );
  const empty = h(
    'div',
    { class: 'empty' },
    h('div', null, 'No open session.'),
    h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => go('resources') }, 'Launch one from Resources'),
  );

  replace(
    section,
    h(
      'header',
      { class: 'panel-head' },
      h('div', null, h('h1', null, 'Sessions'), h('p', { class: 'sub' }, 'Tunnels open on 127.0.0.1, live from the app.')),
      h('div', { class: 'panel-actions' }, live),
    ),
    h('div', { class: 'card' }, table, empty),
  );

  const rows = new Map<string, Row>();

  const makeRow = (s: SessionInfo): Row => {
    const resource = h('div', { class: 'strong' });
    const sub = h('div', { class: 'muted small' });
    const port = h('span', { class: 'mono port', 'data-testid': 'session-port' });
    const copyBtn = h('button', { class: 'icon-btn', type: 'button', title: 'Copy port', 'aria-label': `Copy the local port of ${s.resource}` }, icon('copy', 15));
    copyBtn.addEventListener('click', async () => {
      const ok = await copyText(port.textContent ?? '');
      if (!ok) return; // silently: the port is on screen anyway
      copyBtn.replaceChildren(icon('check', 15));
      copyBtn.classList.add('copied');
      setTimeout(() => {
        copyBtn.replaceChildren(icon('copy', 15));
        copyBtn.classList.remove('copied');
      }, 1200);
    });
    const client = h('span', { class: 'mono small client' });
    const stateEl = h('span', { class: 'pill' });
    const uptime = h('td', { class: 'num mono' });
    const bytesIn = h('td', { class: 'num mono' });
    const bytesOut = h('td', { class: 'num mono' });
    const close = h('button', { class: 'btn btn-danger btn-small', type: 'button', 'data-testid': `close-${s.launch_id}` }, 'Close');
    close.addEventListener('click', () => void closeSession(s.launch_id));
    const el = h(
      'tr',
      { 'data-testid': `session-${s.launch_id}` },
      h('td', null, resource, sub),
      h('td', null, h('span', { class: 'port-cell' }, h('span', { class: 'muted mono' }, '127.0.0.1:'), port, copyBtn)),
      h('td', null, client),
      h('td', null, stateEl),
      uptime,
      bytesIn,
      bytesOut,
      h('td', { class: 'actions' }, close),
    );
    return { el, resource, sub, port, client, state: stateEl, uptime, bytesIn, bytesOut, close, session: s };
  };

  const update = (row: Row, s: SessionInfo) => {
    row.session = s;
    setText(row.resource, s.resource);
    setText(row.sub, `${s.protocol} · ${s.gateway}`);
    setText(row.port, String(s.local_port));
    setText(row.client, s.client ?? 'no client');
    row.client.classList.toggle('muted', s.client === null);
    row.client.title = s.client ?? '';
    const ended = endedText(s);
    const closing = !ended && (s.state === 'closing' || state.closing.has(s.launch_id));
    const shown = ended ? 'ended' : closing ? 'closing' : s.state;
    setText(row.state, shown);
    row.state.className = `pill pill-${shown}`;
    row.state.title = ended ?? '';
    if (ended) setText(row.sub, ended);
    row.el.classList.toggle('session-ended', ended !== null);
    row.close.disabled = closing;
    setText(row.close, ended ? 'Dismiss' : closing ? 'Closing…' : 'Close');
    setText(row.bytesIn, formatBytes(s.bytes_in));
    setText(row.bytesOut, formatBytes(s.bytes_out));
    row.bytesIn.title = `${s.bytes_in} bytes in`;
    row.bytesOut.title = `${s.bytes_out} bytes out`;
    tickRow(row);
  };

  const tickRow = (row: Row) => {
    const until = row.session.ended?.at_unix_ms ?? Date.now();
    setText(row.uptime, formatUptime(until - row.session.started_unix_ms));
    row.uptime.title = `ready in ${Math.round(row.session.ready_ms)} ms; started ${new Date(row.session.started_unix_ms).toLocaleString()}`;
  };

  const renderFreshness = () => {
    if (!state.tauri) {
      setText(live, '');
      return;
    }
    const at = state.sessionsUpdatedAt;
    const stale = at === null || Date.now() - at > STALE_AFTER_MS;
    live.className = `live-note ${stale ? 'live-stale' : 'live-ok'}`;
    setText(live, at === null ? 'waiting for the first update…' : stale ? `no update for ${Math.round((Date.now() - at) / 1000)} s` : 'live');
  };

  const render = () => {
    const shown = visibleSessions(state.sessions);
    const ids = new Set(shown.map((s) => s.launch_id));
    for (const id of [...rows.keys()]) if (!ids.has(id)) rows.delete(id);
    const wanted: HTMLElement[] = [];
    for (const s of shown) {
      let row = rows.get(s.launch_id);
      if (!row) rows.set(s.launch_id, (row = makeRow(s)));
      update(row, s);
      wanted.push(row.el);
    }
    const current = Array.from(body.children);
    if (current.length !== wanted.length || current.some((c, i) => c !== wanted[i])) body.replaceChildren(...wanted);
    table.hidden = shown.length === 0;
    empty.hidden = shown.length > 0;
    renderFreshness();
  };

  subscribe('sessions', render);
  render();
  setInterval(() => {
    for (const row of rows.values()) tickRow(row);
    renderFreshness();
  }, 1000);
}
