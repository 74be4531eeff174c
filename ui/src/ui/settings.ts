// Settings: router URL, token (write-only), profile.
import { saveSettings } from '../actions';
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

  replace(
    section,
    h('header', { class: 'panel-head' }, h('div', null, h('h1', null, 'Settings'), h('p', { class: 'sub' }, 'Where to launch from, and how.'))),
    labNote,
    form,
  );

  const render = () => {
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
