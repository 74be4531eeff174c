// A fake Sallyport backend for `npm run dev` at /?mock, so the UI can be worked on (and looked
// at) without the Rust side. Only loaded in dev; never part of `vite build`.
import type { Channel } from '@tauri-apps/api/core';
import { mockIPC } from '@tauri-apps/api/mocks';
import { HAPPY_PATH, type AppState, type Checkpoint, type LaunchRecord, type ResourceView, type SessionInfo, type Settings } from '../types';

type Args = Record<string, unknown>;

const resources: ResourceView[] = [
  {
    name: 'bastion',
    protocol: 'ssh',
    gateway: 'gw-east',
    online: true,
    sticky_port: 2222,
    client_choices: [
      { label: 'ssh', template: 'ssh -p {port} 127.0.0.1' },
      { label: 'no client', template: null },
    ],
  },
  {
    name: 'orders-db',
    protocol: 'postgresql',
    gateway: 'gw-east',
    online: true,
    sticky_port: 15432,
    client_choices: [
      { label: 'psql', template: 'psql -h {host} -p {port}' },
      { label: 'pgcli', template: 'pgcli -h {host} -p {port}' },
      { label: 'no client', template: null },
    ],
  },
  {
    name: 'billing-db',
    protocol: 'mysql',
    gateway: 'gw-west',
    online: false,
    sticky_port: null,
    client_choices: [
      { label: 'mysql', template: 'mysql -h {host} -P {port}' },
      { label: 'no client', template: null },
    ],
  },
  {
    name: 'k8s-prod',
    protocol: 'kubernetes',
    gateway: 'gw-west',
    online: true,
    sticky_port: null,
    client_choices: [
      { label: 'kubectl', template: 'kubectl --kubeconfig {kubeconfig} get pods' },
      { label: 'no client', template: null },
    ],
  },
  { name: 'demo-echo', protocol: 'tcp', gateway: 'lab', online: true, sticky_port: null, client_choices: [{ label: 'no client', template: null }] },
];

const settings: Settings & { profile: AppState['profile'] } = {
  router_url: 'http://127.0.0.1:38211',
  profile: 'fast',
  token_set: true,
  sso_issuer: null,
  signed_in: false,
};

// Typical steps (ms) of the pipeline's own happy path.
const TYPICAL: Record<string, number> = {
  resource_resolved: 1.2,
  websocket_listener_started_early: 2.1,
  create_tube_ok: 14,
  pre_offer_sleep_done: 0.1,
  gateway_offer_http_attempt_1: 3,
  gateway_offer_http_done: 48,
  answer_received: 0.4,
  websocket_registered: 2,
  ice_connected: 31,
  dtls_connected: 28,
  sctp_connected: 17,
  channel_open: 9,
  webrtc_data_plane_connected: 1,
  local_listener_ready: 0.6,
  target_connected: 9,
  ready: 0.3,
};
const HAPPY: [string, number][] = HAPPY_PATH.map((phase) => [phase, TYPICAL[phase] ?? 1]);

const RETRY: [string, number, number?, string?][] = [
  ['resource_resolved', 1.1],
  ['websocket_listener_started_early', 2.3],
  ['create_tube_ok', 15],
  ['pre_offer_sleep_done', 0.1],
  ['gateway_offer_http_attempt_1', 3, 1],
  ['gateway_offer_backend_catchup_delay_start', 31, 1, 'controller_down: gateway gw-west is not connected to the router'],
  ['gateway_offer_backend_catchup_delay_done', 1250, 1],
  ['gateway_offer_http_attempt_2', 0.5, 2],
];

let seq = 0;
const newId = () => `L-${Date.now().toString(36)}-${(seq++).toString(36)}`;

function materialize(launchId: string, resource: string, steps: [string, number, number?, string?][], start: number): Checkpoint[] {
  let total = 0;
  return steps.map(([phase, step, attempt, detail]) => {
    total += step;
    const cp: Checkpoint = { launch_id: launchId, resource, phase, step_ms: step, total_ms: total, at_unix_ms: Math.round(start + total) };
    if (attempt !== undefined) cp.attempt = attempt;
    if (detail !== undefined) cp.detail = detail;
    return cp;
  });
}

const jitter = (steps: [string, number][], f = 0.25) =>
  steps.map(([p, s]) => [p, Math.max(0.1, s * (1 + (Math.random() * 2 - 1) * f))] as [string, number]);

const history: LaunchRecord[] = [];
function record(resource: string, cps: Checkpoint[], start: number, error: LaunchRecord['error'] = null): LaunchRecord {
  const r: LaunchRecord = {
    launch_id: cps[0]?.launch_id ?? newId(),
    resource,
    profile: settings.profile,
    started_unix_ms: start,
    outcome: error ? 'failed' : 'ok',
    error,
    checkpoints: cps,
    total_ms: cps.reduce((m, c) => Math.max(m, c.total_ms), 0),
  };
  history.unshift(r);
  return r;
}
for (let i = 6; i >= 1; i--) {
  const start = Date.now() - i * 47 * 60_000;
  record('bastion', materialize(newId(), 'bastion', jitter(HAPPY), start), start);
}
for (let i = 3; i >= 1; i--) {
  const start = Date.now() - i * 95 * 60_000;
  record('orders-db', materialize(newId(), 'orders-db', jitter(HAPPY), start), start);
}

const sessions: SessionInfo[] = [];
const sessionWatchers: Channel<SessionInfo[]>[] = [];
const push = () => {
  for (const s of sessions) {
    if (s.state === 'active') {
      s.bytes_in += Math.floor(Math.random() * 40_000);
      s.bytes_out += Math.floor(Math.random() * 4_000);
    }
  }
  for (const w of sessionWatchers) w.onmessage(sessions.map((s) => ({ ...s })));
};
setInterval(push, 1000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function launch(args: Args): Promise<SessionInfo> {
  const name = String(args.resource);
  const channel = args.on_checkpoint as Channel<Checkpoint>;
  const res = resources.find((r) => r.name === name);
  if (!res) throw { code: 'unknown_resource', message: `no resource named ${name}`, hint: 'Refresh the resource list.' };
  const port = (args.port as number | null) ?? res.sticky_port ?? 40000 + Math.floor(Math.random() * 20000);
  if (sessions.some((s) => s.local_port === port && s.state === 'active')) {
    throw { code: 'port_taken', message: `127.0.0.1:${port} is in use`, hint: 'Close the session on that port, or type another port for this resource.' };
  }
  const id = newId();
  const start = Date.now();
  let steps: [string, number, number?, string?][];
  let fail: string | null = null; // the message of a failed launch (code controller_down)
  if (!res.online) {
    steps = [...RETRY];
    fail = 'offer to gateway "gw-west" for resource "billing-db" failed after 2 attempt(s): gateway "gw-west" is not connected';
  } else if (name === 'orders-db' && Math.random() < 0.5) {
    steps = [...RETRY, ...HAPPY.slice(HAPPY_PATH.indexOf('gateway_offer_http_done'))];
  } else {
    steps = jitter(HAPPY).map(([p, s]) => (p === 'webrtc_data_plane_connected' && name === 'bastion' && Math.random() < 0.5 ? [p, s * 5] : [p, s]));
  }
  const cps = materialize(id, name, steps, start);
  if (fail) {
    const last = cps[cps.length - 1]!;
    cps.push({ ...last, phase: 'failed', step_ms: 4, total_ms: last.total_ms + 4, at_unix_ms: last.at_unix_ms + 4, error: { code: 'controller_down', message: fail } });
  }
  let prev = 0;
  for (const cp of cps) {
    await sleep(Math.min(900, (cp.total_ms - prev) * 1.5) + 60);
    prev = cp.total_ms;
    channel.onmessage(cp);
  }
  if (fail) {
    record(name, cps, start, { code: 'controller_down', message: fail });
    throw { code: 'controller_down', message: fail, hint: "The resource's gateway is offline; try again when its dot is green." };
  }
  record(name, cps, start);
  res.sticky_port = port;
  const choice = args.client as string | null;
  const session: SessionInfo = {
    launch_id: id,
    resource: name,
    protocol: res.protocol,
    gateway: res.gateway,
    local_port: port,
    state: 'active',
    client: choice === 'none' ? null : choice ?? res.client_choices[0]?.template ?? null,
    bytes_in: 0,
    bytes_out: 0,
    started_unix_ms: start,
    ready_ms: cps[cps.length - 1]!.total_ms,
    ended: null,
  };
  sessions.push(session);
  push();
  return session;
}

export function installMockBackend(): void {
  mockIPC(async (cmd, payload) => {
    const args = (payload ?? {}) as Args;
    switch (cmd) {
      case 'app_state':
        return { router_url: settings.router_url, profile: settings.profile, lab: true, token_set: settings.token_set, version: '0.1.0-mock', roles: [], support: false } satisfies AppState;
      case 'list_resources':
        return resources.map((r) => ({ ...r }));
      case 'set_sticky_port': {
        const r = resources.find((x) => x.name === args.resource);
        if (r) r.sticky_port = args.port as number | null;
        return null;
      }
      case 'launch':
        return launch(args);
      case 'watch_sessions':
        sessionWatchers.push(args.on_update as Channel<SessionInfo[]>);
        push();
        return null;
      case 'close_session': {
        const s = sessions.find((x) => x.launch_id === args.launch_id);
        if (!s) throw { code: 'unknown_session', message: `no session ${String(args.launch_id)}`, hint: '' };
        s.state = 'closing';
        push();
        setTimeout(() => {
          sessions.splice(sessions.indexOf(s), 1);
          push();
        }, 800);
        return null;
      }
      case 'history':
        return history.map((r) => ({ ...r })).sort((a, b) => b.started_unix_ms - a.started_unix_ms);
      case 'get_settings':
        return { ...settings };
      case 'save_settings': {
        const url = String(args.router_url);
        if (!/^https?:\/\//.test(url)) throw { code: 'invalid_router_url', message: `"${url}" is not an http(s) URL`, hint: 'Use the full URL, e.g. https://router.example.com' };
        settings.router_url = url;
        settings.profile = args.profile as AppState['profile'];
        if (typeof args.token === 'string') settings.token_set = args.token.length > 0;
        return null;
      }
      case 'pinned_gateways':
        return [{ gateway: 'lab', key: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', fingerprint: 'SHA256:Yw3NKWbEM2aRElRIu7JbT/QSpJxzLbLIq8G4WBvXEN0' }];
      case 'sso_sign_in':
        throw { code: 'invalid_profile', message: 'no sign-in provider: import your administrator’s profile first', hint: '' };
      case 'pin_gateway':
      case 'unpin_gateway':
      case 'import_profile':
        throw { code: 'invalid_profile', message: 'the mock backend is the embedded lab: it pins its own gateway', hint: '' };
      case 'export_bundle':
        return `/home/me/.local/share/sallyport/bundles/${String(args.launch_id)}.tar.gz`;
      default:
        throw `command ${cmd} not found`;
    }
  });
}
