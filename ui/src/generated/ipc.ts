// Generated from the Rust types by crates/service/src/typescript.rs: do not edit.
// Regenerate with `SALLYPORT_WRITE_TYPES=1 cargo test -p sallyport-service`.

/** Every code of the registry (`sallyport_protocol::Code`). */
export type Code = "unauthorized" | "forbidden" | "unknown_gateway" | "unknown_resource" | "malformed" | "not_found" | "too_large" | "controller_down" | "rrc_timeout" | "fleet_unavailable" | "bad_state" | "seal_rejected" | "invalid_key" | "header_timeout" | "request_timeout" | "too_many_connections" | "overloaded" | "unsupported_version" | "internal" | "reports_disabled" | "token_expired" | "wrong_issuer" | "wrong_audience" | "bad_signature" | "not_in_group" | "sso_unavailable" | "normal" | "target_refused" | "target_timeout" | "target_unreachable" | "target_error" | "session_limit" | "closed_by_admin" | "gateway_shutdown" | "client_closed" | "protocol_error" | "network_failed" | "gateway_lost" | "closed" | "config_invalid" | "router_refused" | "unknown_conversation" | "client_slow" | "idle_timeout" | "evicted" | "tls_handshake" | "webrtc_error" | "invalid_sdp" | "invalid_candidate" | "webrtc_timeout" | "tube_closed" | "webrtc_failed" | "invalid_config" | "io_error" | "invalid_tunable" | "invalid_profile" | "missing_token" | "lab_failed" | "unknown_session" | "unknown_launch" | "unpinned_gateway" | "gateway_key_changed" | "invalid_profile_import" | "sso_failed" | "router_unreachable" | "http_error" | "timeout" | "connection_error" | "router_tls" | "empty_reply" | "port_taken" | "invalid_port" | "client_missing" | "client_failed" | "keyring_error" | "bench_failed" | "not_in_app" | "bundle_unsupported" | "bundle_damaged" | "ipc_error" | "unrecognized";

export const CODES: readonly Code[] = [
  'unauthorized',
  'forbidden',
  'unknown_gateway',
  'unknown_resource',
  'malformed',
  'not_found',
  'too_large',
  'controller_down',
  'rrc_timeout',
  'fleet_unavailable',
  'bad_state',
  'seal_rejected',
  'invalid_key',
  'header_timeout',
  'request_timeout',
  'too_many_connections',
  'overloaded',
  'unsupported_version',
  'internal',
  'reports_disabled',
  'token_expired',
  'wrong_issuer',
  'wrong_audience',
  'bad_signature',
  'not_in_group',
  'sso_unavailable',
  'normal',
  'target_refused',
  'target_timeout',
  'target_unreachable',
  'target_error',
  'session_limit',
  'closed_by_admin',
  'gateway_shutdown',
  'client_closed',
  'protocol_error',
  'network_failed',
  'gateway_lost',
  'closed',
  'config_invalid',
  'router_refused',
  'unknown_conversation',
  'client_slow',
  'idle_timeout',
  'evicted',
  'tls_handshake',
  'webrtc_error',
  'invalid_sdp',
  'invalid_candidate',
  'webrtc_timeout',
  'tube_closed',
  'webrtc_failed',
  'invalid_config',
  'io_error',
  'invalid_tunable',
  'invalid_profile',
  'missing_token',
  'lab_failed',
  'unknown_session',
  'unknown_launch',
  'unpinned_gateway',
  'gateway_key_changed',
  'invalid_profile_import',
  'sso_failed',
  'router_unreachable',
  'http_error',
  'timeout',
  'connection_error',
  'router_tls',
  'empty_reply',
  'port_taken',
  'invalid_port',
  'client_missing',
  'client_failed',
  'keyring_error',
  'bench_failed',
  'not_in_app',
  'bundle_unsupported',
  'bundle_damaged',
  'ipc_error',
];

/** Each code's hint, as the CLI and the app show it (`Code::hint`). */
export const HINTS: Readonly<Record<Code, string>> = {
  unauthorized: "The router refused the token: paste a valid one in Settings, or run `sallyport login`.",
  forbidden: "Your token may not do this (launch this resource, or read launch reports without the support role); ask an administrator.",
  unknown_gateway: "Refresh the resource list; it may have been removed.",
  unknown_resource: "Refresh the resource list; it may have been removed.",
  malformed: "Open the launch's timeline and export a diagnostic bundle for support.",
  not_found: "Open the launch's timeline and export a diagnostic bundle for support.",
  too_large: "Open the launch's timeline and export a diagnostic bundle for support.",
  controller_down: "The resource's gateway is offline; try again when its dot is green.",
  rrc_timeout: "The gateway or the router did not answer in time; try again.",
  fleet_unavailable: "The gateway or the router did not answer in time; try again.",
  bad_state: "The gateway or the router did not answer in time; try again.",
  seal_rejected: "The gateway's key does not match the key pinned in your profile.",
  invalid_key: "The gateway's key does not match the key pinned in your profile.",
  header_timeout: "Open the launch's timeline and export a diagnostic bundle for support.",
  request_timeout: "Open the launch's timeline and export a diagnostic bundle for support.",
  too_many_connections: "The gateway or the router did not answer in time; try again.",
  overloaded: "The gateway or the router did not answer in time; try again.",
  unsupported_version: "Open the launch's timeline and export a diagnostic bundle for support.",
  internal: "Open the launch's timeline and export a diagnostic bundle for support.",
  reports_disabled: "This router keeps no launch reports; its administrator can turn them on ([reports] enabled = true).",
  token_expired: "Your sign-in has expired: run `sallyport login --sso` (or sign in again in Settings).",
  wrong_issuer: "The token is from another identity provider or application: check the profile's [sso] issuer and client_id against the router's.",
  wrong_audience: "The token is from another identity provider or application: check the profile's [sso] issuer and client_id against the router's.",
  bad_signature: "The token's signature does not verify: sign in again; if it persists, tell an administrator.",
  not_in_group: "Your account is in no group this router admits; ask an administrator to add you.",
  sso_unavailable: "The router cannot reach the identity provider; try again shortly.",
  normal: "The session was closed.",
  target_refused: "The gateway cannot reach this resource's target; tell its administrator.",
  target_timeout: "The gateway cannot reach this resource's target; tell its administrator.",
  target_unreachable: "The gateway cannot reach this resource's target; tell its administrator.",
  target_error: "The gateway cannot reach this resource's target; tell its administrator.",
  session_limit: "The gateway has too many sessions; close one and try again.",
  closed_by_admin: "The gateway ended the session; launch again when it is back.",
  gateway_shutdown: "The gateway ended the session; launch again when it is back.",
  client_closed: "The session was closed.",
  protocol_error: "Open the launch's timeline and export a diagnostic bundle for support.",
  network_failed: "The network path to the gateway failed; check UDP reachability and try again.",
  gateway_lost: "The resource's gateway is offline; try again when its dot is green.",
  closed: "The session was closed.",
  config_invalid: "Open the launch's timeline and export a diagnostic bundle for support.",
  router_refused: "Open the launch's timeline and export a diagnostic bundle for support.",
  unknown_conversation: "Open the launch's timeline and export a diagnostic bundle for support.",
  client_slow: "Open the launch's timeline and export a diagnostic bundle for support.",
  idle_timeout: "Open the launch's timeline and export a diagnostic bundle for support.",
  evicted: "Open the launch's timeline and export a diagnostic bundle for support.",
  tls_handshake: "Open the launch's timeline and export a diagnostic bundle for support.",
  webrtc_error: "Open the launch's timeline and export a diagnostic bundle for support.",
  invalid_sdp: "Open the launch's timeline and export a diagnostic bundle for support.",
  invalid_candidate: "Open the launch's timeline and export a diagnostic bundle for support.",
  webrtc_timeout: "The gateway or the router did not answer in time; try again.",
  tube_closed: "Open the launch's timeline and export a diagnostic bundle for support.",
  webrtc_failed: "The network path to the gateway failed; check UDP reachability and try again.",
  invalid_config: "Open the launch's timeline and export a diagnostic bundle for support.",
  io_error: "Open the launch's timeline and export a diagnostic bundle for support.",
  invalid_tunable: "Fix the environment variable named in the message.",
  invalid_profile: "Fix the profile (router URL, pinned keys) in Settings or profile.toml.",
  missing_token: "Sign in (Settings, or `sallyport login --sso`), or give a router token: in Settings, with `sallyport login`, or in SALLYPORT_TOKEN.",
  lab_failed: "The embedded lab could not start; see the message, free its port, and restart.",
  unknown_session: "That session has already ended; refresh the session list.",
  unknown_launch: "That launch is no longer in the history.",
  unpinned_gateway: "Compare the fingerprint with the one your administrator gave you, then accept it (or `sallyport profile pin GATEWAY KEY`).",
  gateway_key_changed: "The gateway's key differs from the pinned one: do not accept it until your administrator confirms the new fingerprint; then remove the old pin in Settings (or `sallyport profile unpin GATEWAY`).",
  invalid_profile_import: "Fix the field named in the message, or ask your administrator for a corrected profile.",
  sso_failed: "Sign-in with the identity provider failed; see the message, then try again.",
  router_unreachable: "Check the router URL in Settings (or the profile) and that the router is running.",
  http_error: "Open the launch's timeline and export a diagnostic bundle for support.",
  timeout: "The gateway or the router did not answer in time; try again.",
  connection_error: "Check the router URL in Settings (or the profile) and that the router is running.",
  router_tls: "The router's certificate was refused: set the profile's ca_file to the CA that signed it, or check the router URL's host name.",
  empty_reply: "Open the launch's timeline and export a diagnostic bundle for support.",
  port_taken: "Choose another local port for this resource.",
  invalid_port: "Choose a local port from 1024 to 65535, or leave it empty for a free one.",
  client_missing: "Install that client, or pick another \"connect with\" option.",
  client_failed: "Check the client command; it could not be started.",
  keyring_error: "The OS keyring is not available; unlock it and try again.",
  bench_failed: "Open the launch's timeline and export a diagnostic bundle for support.",
  not_in_app: "Open it through the Sallyport desktop app, where the UI can reach the launcher.",
  bundle_unsupported: "Open the bundle with the Sallyport version that wrote it (named in the message), or ask for a bundle from this version.",
  bundle_damaged: "The file was cut short or changed after export; ask for the bundle again, sent as an attachment.",
  ipc_error: "Open the launch's timeline and export a diagnostic bundle for support.",
  unrecognized: "Open the launch's timeline and export a diagnostic bundle for support.",
};

/** Checkpoint names (`sallyport_core::checkpoint::names`). */
export const PHASES = {
  RESOURCE_RESOLVED: 'resource_resolved',
  LAUNCH_CACHE_HIT: 'launch_cache_hit',
  WEBSOCKET_LISTENER_STARTED_EARLY: 'websocket_listener_started_early',
  WEBSOCKET_LISTENER_STARTED: 'websocket_listener_started',
  CREATE_TUBE_OK: 'create_tube_ok',
  WEBSOCKET_REGISTERED: 'websocket_registered',
  WEBSOCKET_READY_BACKEND_DELAY_DONE: 'websocket_ready_backend_delay_done',
  PRE_OFFER_SLEEP_DONE: 'pre_offer_sleep_done',
  GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START: 'gateway_offer_backend_catchup_delay_start',
  GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE: 'gateway_offer_backend_catchup_delay_done',
  GATEWAY_OFFER_HTTP_DONE: 'gateway_offer_http_done',
  ANSWER_RECEIVED: 'answer_received',
  ICE_CONNECTED: 'ice_connected',
  DTLS_CONNECTED: 'dtls_connected',
  SCTP_CONNECTED: 'sctp_connected',
  CHANNEL_OPEN: 'channel_open',
  WEBRTC_DATA_PLANE_CONNECTED: 'webrtc_data_plane_connected',
  LOCAL_LISTENER_READY: 'local_listener_ready',
  TARGET_CONNECTED: 'target_connected',
  CLIENT_SPAWNED: 'client_spawned',
  READY: 'ready',
  RECONNECTED: 'reconnected',
  FAILED: 'failed',
} as const;
export type Phase = (typeof PHASES)[keyof typeof PHASES];

/** Followed by the attempt number: `gateway_offer_http_attempt_1`, `gateway_offer_http_attempt_2`, ... */
export const ATTEMPT_PREFIX = 'gateway_offer_http_attempt_';

/** The checkpoints of a `fast` launch that succeeds at once without a client. */
export const HAPPY_PATH: readonly string[] = [
  'resource_resolved',
  'websocket_listener_started_early',
  'create_tube_ok',
  'pre_offer_sleep_done',
  'gateway_offer_http_attempt_1',
  'gateway_offer_http_done',
  'answer_received',
  'websocket_registered',
  'ice_connected',
  'dtls_connected',
  'sctp_connected',
  'channel_open',
  'webrtc_data_plane_connected',
  'local_listener_ready',
  'target_connected',
  'ready',
];

export type Profile = "legacy" | "tuned" | "fast";

export const PROFILES: readonly Profile[] = [
  'legacy',
  'tuned',
  'fast',
];

export type LaunchError = { code: Code, message: string, };

export type Checkpoint = { launch_id: string, resource: string, 
/**
 * The checkpoint's name (see [`names`]).
 */
phase: string, 
/**
 * Milliseconds since the previous checkpoint of this launch.
 */
step_ms: number, 
/**
 * Milliseconds since the launch began.
 */
total_ms: number, 
/**
 * The offer attempt this checkpoint belongs to, where there is one.
 */
attempt?: number, 
/**
 * Why (a retry's reason) or what (the resource's gateway, the local port, the client).
 */
detail?: string, 
/**
 * On `failed` only: the launch's error.
 */
error?: LaunchError, 
/**
 * Wall-clock time, milliseconds since the Unix epoch.
 */
at_unix_ms: number, };

export type SessionState = "active" | "reconnecting" | "closing" | "closed";

export type SessionEnded = { 
/**
 * The close reason (`gateway_lost`, `gateway_shutdown`, `network_failed`, ...): the UI
 * shows its hint from the registry.
 */
code: Code, at_unix_ms: number, };

export type SessionInfo = { launch_id: string, resource: string, protocol: string, gateway: string, local_port: number, state: SessionState, client: string | null, 
/**
 * Bytes from the target to the local client.
 */
bytes_in: number, 
/**
 * Bytes from the local client to the target.
 */
bytes_out: number, started_unix_ms: number, ready_ms: number, 
/**
 * Set once the session has ended by itself (not closed by the user): why, and when. The
 * app keeps such a session in its list until the user dismisses it, so an end is seen.
 */
ended: SessionEnded | null, };

export type Outcome = "ok" | "failed";

export type LaunchRecord = { launch_id: string, resource: string, profile: Profile, started_unix_ms: number, outcome: Outcome, error: LaunchError | null, checkpoints: Array<Checkpoint>, total_ms: number, };

export type ClientOption = { label: string, 
/**
 * A command template; `None` opens the tunnel only.
 */
template: string | null, };

export type ResourceView = { name: string, protocol: string, gateway: string, online: boolean, sticky_port: number | null, 
/**
 * The first is the protocol's default, the last opens the tunnel only.
 */
client_choices: Array<ClientOption>, };

export type AppStateView = { router_url: string, profile: Profile, 
/**
 * Launches go to the embedded lab.
 */
lab: boolean, token_set: boolean, version: string, 
/**
 * The token's roles at the router (`GET /v1/me`); empty when it could not say.
 */
roles: Array<string>, 
/**
 * The token has the `support` role: the Support panel shows.
 */
support: boolean, };

export type SettingsView = { router_url: string, profile: Profile, token_set: boolean, 
/**
 * The profile's OpenID provider, when it has one (Settings offers to sign in).
 */
sso_issuer: string | null, 
/**
 * Launches carry a single sign-on token (kept fresh in the background).
 */
signed_in: boolean, };

export type PinnedGateway = { gateway: string, 
/**
 * The public key, base64.
 */
key: string, 
/**
 * `SHA256:` and the unpadded base64 of the key's SHA-256, as SSH prints fingerprints.
 */
fingerprint: string, };

export type SsoSettings = { 
/**
 * The issuer URL (`https://...`; its `/.well-known/openid-configuration` is read).
 */
issuer: string, 
/**
 * The client id registered at the provider for Sallyport (a public client).
 */
client_id: string, 
/**
 * Scopes asked for (default `openid profile offline_access`).
 */
scope?: string, };

export type ImportView = { router_url: string, ca_file: string | null, sso: SsoSettings | null, gateways: Array<PinnedGateway>, };

export type CommandError = { code: Code, message: string, hint: string, 
/**
 * With `unpinned_gateway`: the key the router lists, to show and pin once the user
 * accepts its fingerprint (never pinned without asking).
 */
unpinned?: PinnedGateway, };

export type Tunable = { name: string, value: string, };

export type BundleView = { kind: string, 
/**
 * Whether a digest vouched for the content (v2); a v1 bundle has none to check.
 */
verified: boolean, sallyport_version: string, protocol_version: number, os: string, arch: string, router_url: string, launch: LaunchRecord, tunables: Array<Tunable>, log: Array<string>, };

export type ReportCheckpoint = { phase: string, step_ms: number, total_ms: number, attempt?: number, };

export type LaunchSummary = { 
/**
 * The client name of the token that sent the report.
 */
user: string, launch_id: string, resource: string, gateway: string | null, profile: string, outcome: Outcome, code: Code | null, started_unix_ms: number, received_unix_ms: number, total_ms: number, 
/**
 * The highest offer attempt.
 */
attempts: number, checkpoints: Array<ReportCheckpoint>, client_version: string | null, };

export type LaunchList = { launches: Array<LaunchSummary>, };

export type LaunchQuery = { 
/**
 * The client name that sent the report.
 */
user: string | null, resource: string | null, gateway: string | null, outcome: Outcome | null, 
/**
 * Launches started at or after this time (milliseconds since the Unix epoch).
 */
since: number | null, };

export type GroupBy = "phase" | "gateway" | "resource";

export const GROUP_BYS: readonly GroupBy[] = [
  'phase',
  'gateway',
  'resource',
];

export type PhaseStats = { 
/**
 * The gateway or resource (absent when grouped by phase).
 */
group?: string, phase: string, count: number, p50: number, p90: number, p99: number, 
/**
 * The median of this phase over every matching launch (the fleet), to compare with.
 */
fleet_p50: number, };

export type TotalStats = { group?: string, count: number, p50: number, p90: number, p99: number, };

export type LaunchStats = { group_by: GroupBy, 
/**
 * How many launches the figures are over.
 */
launches: number, 
/**
 * Per phase (and per group), in pipeline order of first appearance.
 */
phases: Array<PhaseStats>, 
/**
 * The launches' totals: the fleet's first (no group), then each group's.
 */
totals: Array<TotalStats>, };
