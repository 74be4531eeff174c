// The frame: dark sidebar with the nav and the app's state, the banners, one section per panel.
import { dismissError, go } from '../actions';
import { NOT_IN_APP } from '../api';
import { visibleSessions } from '../logic/launch';
import { PANELS, emit, state, subscribe, type PanelName } from '../store';
import { h, replace, setText } from './dom';
import { icon } from './icons';

const LABELS: Record<PanelName, string> = {
  resources: 'Resources',
  timeline: 'Timeline',
  sessions: 'Sessions',
  history: 'History',
  support: 'Support',
  settings: 'Settings',
};

export function mountShell(root: HTMLElement): Record<PanelName, HTMLElement> {
  const counts = new Map<PanelName, HTMLElement>();
  const navButtons = PANELS.map((p) => {
    const count = h('span', { class: 'nav-count' });
    counts.set(p, count);
    return h(
      'button',
      { class: 'nav-item', type: 'button', 'data-testid': `nav-${p}`, 'data-panel': p, onclick: () => go(p) },
      icon(p, 18),
      h('span', { class: 'nav-label' }, LABELS[p]),
      count,
    );
  });

  const labBadge = h('span', { class: 'badge badge-lab', hidden: true }, 'lab');
  const foot = h('div', { class: 'sidebar-foot' });
  const sidebar = h(
    'aside',
    { class: 'sidebar' },
    h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, icon('gate', 18)), h('span', null, 'Sallyport'), labBadge),
    h('nav', { class: 'nav', 'aria-label': 'Panels' }, navButtons),
    foot,
  );

  const banners = h('div', { class: 'banners' });
  const sections = {} as Record<PanelName, HTMLElement>;
  for (const p of PANELS) {
    sections[p] = h('section', {
      class: `panel panel-${p}`,
      id: `panel-${p}`,
      'aria-label': LABELS[p],
      ...(p === 'timeline' ? { 'data-testid': 'timeline' } : {}),
    });
  }
  const main = h('main', { class: 'main' }, banners, h('div', { class: 'panels' }, PANELS.map((p) => sections[p])));
  replace(root, h('div', { class: 'layout' }, sidebar, main));

  const renderNav = () => {
    for (const b of navButtons) {
      const active = b.dataset.panel === state.panel;
      b.classList.toggle('active', active);
      if (active) b.setAttribute('aria-current', 'page');
      else b.removeAttribute('aria-current');
    }
    for (const p of PANELS) sections[p].hidden = p !== state.panel;
  };

  // Support shows only for a token with the support role (the router says, through the service).
  const renderSupportNav = () => {
    const item = navButtons.find((b) => b.dataset.panel === 'support');
    if (item) item.hidden = !state.app?.support;
  };

  const renderCounts = () => {
    setText(counts.get('resources')!, state.resourcesLoaded ? String(state.resources.length) : '');
    const active = visibleSessions(state.sessions).length;
    setText(counts.get('sessions')!, active > 0 ? String(active) : '');
    counts.get('sessions')!.classList.toggle('nav-count-live', active > 0);
  };

  const renderApp = () => {
    const app = state.app;
    labBadge.hidden = !app?.lab;
    if (!state.tauri) {
      replace(foot, h('div', { class: 'foot-line' }, 'Browser preview'));
      return;
    }
    if (!app) {
      replace(foot, h('div', { class: 'foot-line muted' }, 'Loading…'));
      return;
    }
    replace(
      foot,
      h('div', { class: 'foot-label' }, 'Router'),
      h('div', { class: 'foot-line mono', title: app.router_url }, hostOf(app.router_url)),
      h(
        'div',
        { class: 'foot-row' },
        h('span', { class: 'chip' }, `profile ${app.profile}`),
        h('span', { class: app.token_set ? 'chip' : 'chip chip-warn' }, app.token_set ? 'token set' : 'no token'),
      ),
      h('div', { class: 'foot-version' }, `v${app.version}`),
    );
  };

  const renderBanners = () => {
    const children: HTMLElement[] = [];
    if (!state.tauri) {
      children.push(
        h(
          'div',
          { class: 'banner banner-info', role: 'status', 'data-testid': 'not-in-app-banner' },
          icon('info', 18),
          h(
            'div',
            { class: 'banner-body' },
            h('strong', null, `This page is ${NOT_IN_APP.message}`),
            h('div', { class: 'banner-hint' }, `It is a browser preview: nothing can be launched or listed. ${NOT_IN_APP.hint}`),
          ),
        ),
      );
    }
    const err = state.error;
    if (err && !(err.code === NOT_IN_APP.code && !state.tauri)) {
      children.push(
        h(
          'div',
          { class: 'banner banner-error', role: 'alert', 'data-testid': 'error-banner' },
          icon('alert', 18),
          h(
            'div',
            { class: 'banner-body' },
            h('div', null, h('code', { class: 'error-code', 'data-testid': 'error-code' }, err.code), ' ', h('span', { class: 'error-message', 'data-testid': 'error-message' }, err.message)),
            err.hint ? h('div', { class: 'banner-hint', 'data-testid': 'error-hint' }, err.hint) : null,
          ),
          h('button', { class: 'icon-btn', type: 'button', title: 'Dismiss', 'aria-label': 'Dismiss error', onclick: () => dismissError() }, icon('close', 16)),
        ),
      );
    }
    replace(banners, children);
  };

  subscribe('nav', renderNav);
  subscribe('app', renderSupportNav);
  subscribe('app', renderApp);
  subscribe('app', renderCounts);
  subscribe('resources', renderCounts);
  subscribe('sessions', renderCounts);
  subscribe('banner', renderBanners);
  emit('nav', 'app', 'banner');
  return sections;
}

function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}
