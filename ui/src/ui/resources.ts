// Resources: search, one row per resource with its gateway dot, sticky port, client and Connect.
import { chooseClient, launch, refreshResources, saveStickyPort, setQuery } from '../actions';
import { parsePort } from '../logic/format';
import { filterResources } from '../logic/search';
import { isLaunching, state, subscribe } from '../store';
import type { ResourceView } from '../types';
import { h, replace, setText } from './dom';
import { icon } from './icons';

interface Row {
  el: HTMLDivElement;
  dot: HTMLSpanElement;
  protocol: HTMLSpanElement;
  gateway: HTMLSpanElement;
  port: HTMLInputElement;
  client: HTMLSelectElement;
  connect: HTMLButtonElement;
  choicesKey: string;
}

export function mountResources(section: HTMLElement): void {
  const search = h('input', {
    class: 'search-input',
    type: 'search',
    placeholder: 'Filter by name or protocol',
    'aria-label': 'Filter resources by name or protocol',
    'data-testid': 'resource-search',
    spellcheck: 'false',
    autocomplete: 'off',
    oninput: (e: Event) => setQuery((e.target as HTMLInputElement).value),
  });
  const refresh = h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => void refreshResources() }, 'Refresh');
  const list = h('div', { class: 'res-list', role: 'list', 'data-testid': 'resource-list' });
  const empty = h('div', { class: 'empty' });
  const head = h(
    'div',
    { class: 'res-row res-head', 'aria-hidden': 'true' },
    h('span', null, 'Resource'),
    h('span', null, 'Protocol'),
    h('span', null, 'Gateway'),
    h('span', null, 'Local port'),
    h('span', null, 'Connect with'),
    h('span', null, ''),
  );

  replace(
    section,
    h(
      'header',
      { class: 'panel-head' },
      h('div', null, h('h1', null, 'Resources'), h('p', { class: 'sub' }, 'What this token may launch. Enter on a row connects.')),
      h('div', { class: 'panel-actions' }, h('label', { class: 'search' }, icon('search', 16), search), refresh),
    ),
    h('div', { class: 'card' }, head, list, empty),
  );

  const rows = new Map<string, Row>();

  const makeRow = (r: ResourceView): Row => {
    const dot = h('span', { class: 'dot' });
    const protocol = h('span', { class: 'chip chip-proto' });
    const gateway = h('span', { class: 'gw' });
    const port = h('input', {
      class: 'port-input mono',
      type: 'number',
      min: 1,
      max: 65535,
      step: 1,
      placeholder: 'auto',
      inputmode: 'numeric',
      'aria-label': `Local port for ${r.name}`,
      'data-testid': `port-${r.name}`,
    });
    port.addEventListener('change', async () => {
      const ok = await saveStickyPort(r.name, port.value);
      port.classList.toggle('invalid', !ok && parsePort(port.value) === 'invalid');
    });
    port.addEventListener('input', () => port.classList.toggle('invalid', parsePort(port.value) === 'invalid'));
    const client = h('select', { class: 'select', 'aria-label': `Connect ${r.name} with`, 'data-testid': `client-${r.name}` });
    client.addEventListener('change', () => chooseClient(r.name, client.selectedIndex));
    const connect = h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': `connect-${r.name}` }, 'Connect');
    const go = () => {
      if (!connect.disabled) void launch(r.name, port.value);
    };
    connect.addEventListener('click', go);
    const el = h(
      'div',
      { class: 'res-row', role: 'listitem', tabindex: 0, 'data-testid': `resource-${r.name}` },
      h('span', { class: 'res-name' }, dot, h('span', { class: 'name' }, r.name)),
      h('span', null, protocol),
      gateway,
      h('span', null, port),
      h('span', null, client),
      h('span', { class: 'res-action' }, connect),
    );
    el.addEventListener('keydown', (e) => {
      // Enter on the row itself; Enter inside the port field or select keeps its own meaning.
      if (e.key === 'Enter' && e.target === el) {
        e.preventDefault();
        go();
      }
    });
    return { el, dot, protocol, gateway, port, client, connect, choicesKey: '' };
  };

  const update = (row: Row, r: ResourceView) => {
    row.dot.className = r.online ? 'dot dot-online' : 'dot dot-offline';
    row.dot.title = r.online ? 'gateway online' : 'gateway offline (launching still retries)';
    row.el.classList.toggle('offline', !r.online);
    setText(row.protocol, r.protocol);
    setText(row.gateway, r.online ? r.gateway : `${r.gateway} · offline`);
    if (document.activeElement !== row.port) {
      const want = r.sticky_port === null ? '' : String(r.sticky_port);
      if (row.port.value !== want) row.port.value = want;
      row.port.classList.remove('invalid');
    }
    const key = JSON.stringify(r.client_choices);
    if (key !== row.choicesKey) {
      row.choicesKey = key;
      replace(
        row.client,
        r.client_choices.map((c, i) => h('option', { value: String(i), title: c.template ?? 'open the tunnel only' }, c.label)),
      );
      if (r.client_choices.length === 0) replace(row.client, h('option', { value: '0' }, 'default'));
    }
    const idx = Math.min(state.clientIndex.get(r.name) ?? 0, Math.max(0, r.client_choices.length - 1));
    if (row.client.selectedIndex !== idx) row.client.selectedIndex = idx;
    const busy = isLaunching(r.name);
    row.connect.disabled = busy;
    setText(row.connect, busy ? 'Connecting…' : 'Connect');
  };

  const render = () => {
    const names = new Set(state.resources.map((r) => r.name));
    for (const name of [...rows.keys()]) if (!names.has(name)) rows.delete(name);

    const shown = filterResources(state.resources, state.query);
    const wanted: HTMLElement[] = [];
    for (const r of shown) {
      let row = rows.get(r.name);
      if (!row) rows.set(r.name, (row = makeRow(r)));
      update(row, r);
      wanted.push(row.el);
    }
    const current = Array.from(list.children);
    if (current.length !== wanted.length || current.some((c, i) => c !== wanted[i])) list.replaceChildren(...wanted);

    if (!state.tauri) setText(empty, 'Resources appear here inside the Sallyport app.');
    else if (!state.resourcesLoaded) setText(empty, 'Loading resources…');
    else if (state.resources.length === 0) setText(empty, 'This token may launch no resource.');
    else if (shown.length === 0) setText(empty, `No resource matches “${state.query.trim()}”.`);
    else setText(empty, '');
    empty.hidden = empty.textContent === '';
  };

  subscribe('resources', render);
  render();

  // "/" focuses the search box, as in most list UIs.
  document.addEventListener('keydown', (e) => {
    const t = e.target as HTMLElement | null;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA');
    if (e.key === '/' && !typing && state.panel === 'resources') {
      e.preventDefault();
      search.focus();
    }
  });
}
