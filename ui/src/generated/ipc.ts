// Generated from the Rust types by crates/service/src/typescript.rs: do not edit.
// Regenerate with `SALLYPORT_WRITE_TYPES=1 cargo test -p sallyport-service`.

/** Every code of the registry (`sallyport_protocol::Code`). */
export type Code = "unauthorized" | "forbidden" | "unknown_gateway" | "unknown_resource" | "malformed" | "not_found" | "too_large" | "controller_down" | "rrc_timeout" | "bad_state" | "seal_rejected" | "invalid_key" | "header_timeout" | "request_timeout" | "too_many_connections" | "overloaded" | "unsupported_version" | "internal" | "normal" | "target_refused" | "target_timeout" | "target_unreachable" | "target_error" | "session_limit" | "closed_by_admin" | "gateway_shutdown" | "client_closed" | "protocol_error" | "network_failed" | "gateway_lost" | "closed" | "config_invalid" | "router_refused" | "unknown_conversation" | "client_slow" | "idle_timeout" | "evicted" | "webrtc_error" | "invalid_sdp" | "invalid_candidate" | "webrtc_timeout" | "tube_closed" | "webrtc_failed" | "invalid_config" | "io_error" | "invalid_tunable" | "invalid_profile" | "missing_token" | "lab_failed" | "unknown_session" | "unknown_launch" | "unpinned_gateway" | "router_unreachable" | "http_error" | "timeout" | "connection_error" | "empty_reply" | "port_taken" | "invalid_port" | "client_missing" | "client_failed" | "keyring_error" | "bench_failed" | "not_in_app" | "ipc_error" | "unrecognized";

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
  'bad_state',
  'seal_rejected',
  'invalid_key',
  'header_timeout',
  'request_timeout',
  'too_many_connections',
  'overloaded',
  'unsupported_version',
  'internal',
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
  'router_unreachable',
  'http_error',
  'timeout',
  'connection_error',
  'empty_reply',
  'port_taken',
  'invalid_port',
  'client_missing',
  'client_failed',
  'keyring_error',
  'bench_failed',
  'not_in_app',
  'ipc_error',
];

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
  'websocket_registered',
  'pre_offer_sleep_done',
  'gateway_offer_http_attempt_1',
  'gateway_offer_http_done',
  'answer_received',
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

export type SessionState = "active" | "closing" | "closed";

export type SessionInfo = { launch_id: string, resource: string, protocol: string, gateway: string, local_port: number, state: SessionState, client: string | null, 
/**
 * Bytes from the target to the local client.
 */
bytes_in: number, 
/**
 * Bytes from the local client to the target.
 */
bytes_out: number, started_unix_ms: number, ready_ms: number, };

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
lab: boolean, token_set: boolean, version: string, };

export type SettingsView = { router_url: string, profile: Profile, token_set: boolean, };

export type CommandError = { code: Code, message: string, hint: string, };
