// Settings: router URL, token (write-only), profile; a distributed profile's import; the
// pinned gateways with their key fingerprints.
import { importProfile, pinGateway, saveSettings, ssoSignIn, unpinGateway } from '../actions';
import { state, subscribe } from '../store';
import { PROFILES, type Profile } from '../types';
import { h, replace, setText } from './dom';

const PROFILE_NOTES: Record<Profile, string> = {
  legacy: 'the old fixed sleeps, for comparison',
  tuned: 'shorter fixed delays',
  fast: 'waits for the router’s registration ack; no fixed sleep on the happy path',
};

export function mountSettings(section: HTMLElement): void {
  const url = h('input', { class: 'input mono', type: 'url', id: 'set-router', placeholder: 'https://router.example.com', spellcheck: 'false', autocomplete: 'off', 'data-testid': 'settings-router' });
  const token = h('input', { class: 'input mono', type: 'password', id: 'set-token', autocomplete: 'new-password', spellcheck: 'false', 'data-testid': 'settings-token' });
  const tokenState = h('span', { class: 'chip', 'data-testid': 'token-state' });
  const profile = h(
    'select',
    { class: 'select', id: 'set-profile', 'data-testid': 'settings-profile' },
    PROFILES.map((p) => h('option', { value: p }, p)),
  );
  const profileNote = h('p', { class: 'field-note' });
  const save = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'settings-save' }, 'Save');
  const status = h('span', { class: 'save-status', role: 'status' });
  const labNote = h('p', { class: 'callout callout-info', hidden: true }, 'This is the embedded lab: its router, gateway and demo target run inside the app on loopback.');

  let dirty = false;
  for (const el of [url, token, profile]) el.addEventListener('input', () => {
    dirty = true;
    setText(status, '');
  });
  profile.addEventListener('change', () => setText(profileNote, PROFILE_NOTES[profile.value as Profile] ?? ''));

  const form = h(
    'form',
    { class: 'card form', autocomplete: 'off', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'set-router' }, 'Router URL'), url, h('p', { class: 'field-note' }, 'The router carries only signalling, sealed end to end with the gateway.')),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'set-token' }, 'Token ', tokenState),
      token,
      h('p', { class: 'field-note' }, 'Kept in the OS keyring and never shown again. Leave empty to keep the stored token.'),
    ),
    h('div', { class: 'field' }, h('label', { for: 'set-profile' }, 'Profile'), profile, profileNote),
    h('div', { class: 'form-actions' }, save, status),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    save.disabled = true;
    setText(status, 'Saving…');
    const ok = await saveSettings(url.value, profile.value as Profile, token.value);
    save.disabled = false;
    if (ok) {
      token.value = '';
      dirty = false;
      setText(status, 'Saved');
      render();
    } else {
      setText(status, '');
    }
  });

  // A profile an administrator distributed: router, CA, sign-in provider, pinned keys.
  const importInput = h('input', { class: 'input', type: 'file', id: 'set-import', accept: '.toml,text/plain', 'data-testid': 'settings-import' });
  const importStatus = h('span', { class: 'save-status', role: 'status', 'data-testid': 'import-status' });
  importInput.addEventListener('change', async () => {
    const file = importInput.files?.[0];
    if (!file) return;
    setText(importStatus, 'Importing…');
    const view = await importProfile(file);
    importInput.value = '';
    setText(importStatus, view ? `Imported: ${view.router_url}, ${view.gateways.length} pinned gateway(s)` : '');
  });
  const importCard = h(
    'div',
    { class: 'card form' },
    h('div', { class: 'field' }, h('label', { for: 'set-import' }, 'Import a profile'), importInput, h('p', { class: 'field-note' }, 'A profile file from your administrator: router URL, its CA, the sign-in provider and the gateways’ keys.'), importStatus),
  );

  // Single sign-on with the profile's OpenID provider, in the system browser.
  const ssoState = h('span', { class: 'chip', 'data-testid': 'sso-state' });
  const ssoNote = h('p', { class: 'field-note' });
  const ssoButton = h('button', { class: 'btn', type: 'button', 'data-testid': 'sso-sign-in' }, 'Sign in');
  const ssoStatus = h('span', { class: 'save-status', role: 'status' });
  ssoButton.addEventListener('click', async () => {
    ssoButton.disabled = true;
    setText(ssoStatus, 'Finish signing in in your browser…');
    const ok = await ssoSignIn();
    ssoButton.disabled = false;
    setText(ssoStatus, ok ? 'Signed in' : '');
  });
  const ssoCard = h('div', { class: 'card form', hidden: true }, h('div', { class: 'field' }, h('label', null, 'Single sign-on ', ssoState), ssoNote), h('div', { class: 'form-actions' }, ssoButton, ssoStatus));

  // Pinned gateways: the keys offers are sealed to. Listed by fingerprint, as SSH shows them.
  const pinList = h('ul', { class: 'pin-list', 'data-testid': 'pin-list' });
  const pinId = h('input', { class: 'input mono', id: 'pin-gateway', placeholder: 'gateway id', spellcheck: 'false', autocomplete: 'off', 'data-testid': 'pin-gateway' });
  const pinKey = h('input', { class: 'input mono', id: 'pin-key', placeholder: 'public key (base64)', spellcheck: 'false', autocomplete: 'off', 'data-testid': 'pin-key' });
  const pinAdd = h('button', { class: 'btn', type: 'submit', 'data-testid': 'pin-add' }, 'Pin');
  const pinForm = h(
    'form',
    { class: 'card form', autocomplete: 'off', novalidate: true },
    h('div', { class: 'field' }, h('label', null, 'Pinned gateways'), pinList, h('p', { class: 'field-note' }, 'Offers are sealed to these keys only. A gateway not listed asks before its first launch; a changed key is refused.')),
    h('div', { class: 'field' }, h('label', { for: 'pin-gateway' }, 'Pin a gateway'), pinId, pinKey),
    h('div', { class: 'form-actions' }, pinAdd),
  );
  pinForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (await pinGateway(pinId.value, pinKey.value)) {
      pinId.value = '';
      pinKey.value = '';
    }
  });

  replace(
    section,
    h('header', { class: 'panel-head' }, h('div', null, h('h1', null, 'Settings'), h('p', { class: 'sub' }, 'Where to launch from, and how.'))),
    labNote,
    form,
    ssoCard,
    importCard,
    pinForm,
  );

  const renderPins = () => {
    const items = state.pins.map((p) =>
      h(
        'li',
        { class: 'pin', 'data-testid': 'pin' },
        h('span', { class: 'mono pin-gateway' }, p.gateway),
        h('span', { class: 'mono pin-fingerprint', title: p.key }, p.fingerprint),
        h('button', { class: 'btn btn-small', type: 'button', 'data-testid': 'pin-remove', disabled: !state.tauri, onclick: () => void unpinGateway(p.gateway) }, 'Remove'),
      ),
    );
    if (items.length === 0) items.push(h('li', { class: 'pin pin-none' }, 'none'));
    replace(pinList, ...items);
    // In the embedded lab these change the lab's own pins.
    for (const el of [importInput, pinId, pinKey, pinAdd]) el.disabled = !state.tauri;
  };

  const renderSso = () => {
    const s = state.settings;
    ssoCard.hidden = !s?.sso_issuer;
    if (!s?.sso_issuer) return;
    setText(ssoNote, `With ${s.sso_issuer}: the browser opens its sign-in page. Your session renews itself; its refresh token stays in the OS keyring.`);
    setText(ssoState, s.signed_in ? 'signed in' : 'not signed in');
    ssoState.className = s.signed_in ? 'chip chip-ok' : 'chip chip-warn';
    ssoButton.disabled = !state.tauri;
  };

  const render = () => {
    renderPins();
    renderSso();
    const s = state.settings;
    labNote.hidden = !state.app?.lab;
    const tokenSet = s?.token_set ?? state.app?.token_set ?? false;
    setText(tokenState, tokenSet ? 'token stored' : 'no token');
    tokenState.className = tokenSet ? 'chip chip-ok' : 'chip chip-warn';
    token.placeholder = tokenSet ? '•••••••• (stored; type to replace)' : 'paste the router token';
    const disabled = !state.tauri;
    for (const el of [url, token, profile, save]) el.disabled = disabled;
    if (!s || dirty) return;
    url.value = s.router_url;
    profile.value = s.profile;
    setText(profileNote, PROFILE_NOTES[s.profile] ?? '');
  };

  subscribe('settings', render);
  subscribe('app', render);
  render();
}
