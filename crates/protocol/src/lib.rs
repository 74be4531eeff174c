//! Sallyport's wire protocol: the messages between clients, the router and gateways, and the
//! end-to-end sealing of signalling payloads. No I/O lives here.
//!
//! See `docs/PROTOCOL.md` for the full description.

pub mod auth;
pub mod code;
pub mod frame;
pub mod report;
pub mod seal;

use serde::{Deserialize, Serialize};

pub use auth::GatewayChallenge;
pub use code::Code;
pub use seal::{
    ConversationKeys, Direction, GatewayKeyPair, GatewayPublicKey, SealedPayload, ToClient,
    ToGateway,
};

/// Version of the wire protocol; carried in the gateway's hello and in every HTTP message.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest HTTP body the router accepts by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest WebSocket frame/message the router accepts by default.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("sealed payload rejected: {0}")]
    Seal(&'static str),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ProtocolError {
    /// Stable code for the CLI and UI.
    pub fn code(&self) -> Code {
        match self {
            ProtocolError::Seal(_) => Code::SealRejected,
            ProtocolError::Key(_) => Code::InvalidKey,
            ProtocolError::Malformed(_) => Code::Malformed,
        }
    }
}

/// The JSON error body of every failed router request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: Code,
    pub message: String,
}

/// What a client asks of a gateway, in clear for the router (it authorizes on `resource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An offer that starts (or, repeated, re-asks for) a conversation.
    Start,
    /// Trickled ICE candidates of the client.
    Candidates,
    /// The client ends the conversation.
    Close,
    /// A new offer for a live conversation whose path broke: an ICE restart.
    Restart,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Start => "start",
            MessageKind::Candidates => "candidates",
            MessageKind::Close => "close",
            MessageKind::Restart => "restart",
        }
    }
}

/// Body of `POST /v1/gateways/{id}/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessage {
    pub v: u16,
    pub conversation_id: String,
    pub resource: String,
    pub kind: MessageKind,
    /// When true, the gateway streams its answer and candidates to the client's WebSocket and
    /// the HTTP reply only acknowledges; when false the HTTP reply carries the whole answer.
    #[serde(default)]
    pub stream_response: bool,
    /// How long the router waits for the gateway's reply (clamped by the router).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    pub payload: SealedPayload,
}

/// Reply of `POST /v1/gateways/{id}/messages` on success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientReply {
    pub conversation_id: String,
    /// The sealed gateway reply: the answer for a non-streamed start, else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<SealedPayload>,
}

/// One resource as `GET /v1/resources` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInfo {
    pub name: String,
    pub protocol: String,
    pub gateway: String,
    pub online: bool,
    /// The gateway's public key as the router's configuration has it (base64), for display
    /// only: a client shows its fingerprint before pinning it, and never trusts it unasked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    pub resources: Vec<ResourceInfo>,
}

/// A resource as a gateway announces it: never its target address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedResource {
    pub name: String,
    pub protocol: String,
}

/// Client → router, over the client WebSocket (`/v1/ws/client`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientWsRequest {
    Subscribe { conversation_id: String },
    Unsubscribe { conversation_id: String },
}

/// Router → client, over the client WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientWsEvent {
    /// The router has registered the subscription: gateway messages for it will be delivered.
    Subscribed { conversation_id: String },
    /// A sealed gateway message for a subscribed conversation.
    Message {
        conversation_id: String,
        kind: StreamKind,
        payload: SealedPayload,
    },
    /// A refused request, with the conversation it concerns when it answers a `subscribe` or
    /// `unsubscribe` (the id as the client sent it), so a client with several subscribes in
    /// flight knows which one failed.
    Error {
        code: Code,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
    },
    /// The gateway of a subscribed conversation lost its link to this router (it stopped, or
    /// its network did). The router cannot tell whether the tube itself still works: the
    /// client checks over the tube (a `PING`), and keeps the session if it does.
    GatewayLost {
        conversation_id: String,
        gateway: String,
    },
}

/// Kind of a message a gateway streams to a client (authenticated by the sealing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Answer,
    Candidates,
    Closed,
    Opened,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Answer => "answer",
            StreamKind::Candidates => "candidates",
            StreamKind::Closed => "closed",
            StreamKind::Opened => "opened",
        }
    }
}

/// Gateway → router, over the gateway WebSocket (`/v1/ws/gateway`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayToRouter {
    /// The gateway's first frame, answering the router's `challenge`; a later hello only
    /// updates the announced resources and needs no proof.
    Hello {
        v: u16,
        gateway_id: String,
        resources: Vec<AnnouncedResource>,
        /// Proof of the gateway's key for this connection (see [`auth`]), base64 of 32 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<String>,
        /// Larger for every new connection of this gateway (its own count, so routers need
        /// not agree on the time): of two sockets of it on two routers, the one with the larger
        /// epoch is the newer. Absent from gateways of an earlier version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// The answer to one forwarded client message.
    Reply {
        request_id: u64,
        #[serde(flatten)]
        outcome: GatewayOutcome,
    },
    /// A message for the client subscribed to `conversation_id`.
    Stream {
        conversation_id: String,
        kind: StreamKind,
        payload: SealedPayload,
    },
    /// Unsealed facts about a conversation for the router's audit trail; sent only to a router
    /// whose `welcome` said `reports: true`.
    Report(ConversationReport),
}

/// What a gateway tells the router about one of its conversations (never a target address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationReport {
    pub conversation_id: String,
    pub event: ReportEvent,
    /// The resource's name.
    pub resource: String,
    /// `session_closed`: why the tube ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CloseReason>,
    /// `session_closed`: payload bytes the gateway received from the client and wrote to
    /// targets, over all the tube's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_from_client: Option<u64>,
    /// `session_closed`: payload bytes the gateway read from targets and sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_to_client: Option<u64>,
    /// `session_closed`: milliseconds from the gateway accepting the offer to the tube's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportEvent {
    /// The tube's data channel opened.
    TubeConnected,
    /// The tube ended.
    SessionClosed,
}

impl ReportEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportEvent::TubeConnected => "tube_connected",
            ReportEvent::SessionClosed => "session_closed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GatewayOutcome {
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<SealedPayload>,
    },
    Error {
        code: Code,
        message: String,
    },
}

/// Router → gateway, over the gateway WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RouterToGateway {
    /// The router's first frame on a gateway socket: prove the gateway key (see [`auth`]).
    Challenge {
        v: u16,
        /// 32 random bytes, base64.
        nonce: String,
        /// The router's ephemeral X25519 public key for this connection, base64 of 32 bytes.
        epk: String,
    },
    Welcome {
        v: u16,
        /// The router takes `report` frames (a router that does not say so closes the socket
        /// on one).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reports: bool,
        /// The router forwards `opened` streams (a router that does not say so closes the
        /// socket on one), so the gateway may honour a start's `open_first`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        opened: bool,
    },
    /// A client message to answer with a `Reply` carrying the same `request_id`.
    Forward {
        request_id: u64,
        conversation_id: String,
        resource: String,
        kind: MessageKind,
        stream_response: bool,
        payload: SealedPayload,
    },
    Error {
        code: Code,
        message: String,
    },
}

/// Session description exchanged inside sealed payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// "offer" or "answer".
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
}

/// An ICE candidate as in the W3C `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, rename = "sdpMid")]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
}

/// Sealed body of a `start` message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartBody {
    pub offer: SessionDescription,
    /// Bound inside the seal too, so the router cannot redirect an offer to another resource.
    pub resource: String,
    /// The largest UDP payload the client accepts. Without it the gateway sends at most
    /// [`DEFAULT_PEER_DATAGRAM`] bytes, what every WebRTC stack takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_datagram: Option<u32>,
    /// Ask the gateway to open connection 1 at once, as if an `OPEN 1` came with the offer,
    /// and to stream its outcome as an `opened` message: the target's round trip then runs
    /// beside the WebRTC handshake instead of after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_first: bool,
}

/// Sealed body of a `restart` message (client → gateway): an offer with new ICE credentials
/// for the conversation's tube. The answer comes back inline, sealed as an `answer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartBody {
    pub offer: SessionDescription,
}

/// The largest datagram a gateway sends to a client that did not say what it accepts.
pub const DEFAULT_PEER_DATAGRAM: u32 = 1200;

/// Sealed body of a `candidates` message in either direction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CandidatesBody {
    pub candidates: Vec<IceCandidate>,
    /// True once the sender has gathered all its candidates.
    #[serde(default)]
    pub done: bool,
}

/// Sealed body of an `answer` (streamed, or inline in a non-streamed start reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerBody {
    pub answer: SessionDescription,
    /// The gateway is opening connection 1, as the start asked ([`StartBody::open_first`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_first: bool,
}

/// The connection the gateway opens at `start` when the client asks ([`StartBody::open_first`]).
pub const FIRST_CONNECTION: u32 = 1;

/// Sealed body of an `opened` (gateway → client): how the connection the gateway opened at
/// `start` ([`StartBody::open_first`]) went. The same outcome also reaches the client on the
/// channel, as `OPENED` or `RESET`, once the channel is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedBody {
    /// Always [`FIRST_CONNECTION`].
    pub conn: u32,
    /// Why the target could not be reached; absent when the connection is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<CloseReason>,
}

/// Sealed body of a `close` from the client or a `closed` from the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloseBody {
    pub reason: CloseReason,
}

impl ToGateway for StartBody {
    const KIND: MessageKind = MessageKind::Start;
}

impl ToGateway for CandidatesBody {
    const KIND: MessageKind = MessageKind::Candidates;
}

impl ToClient for CandidatesBody {
    const KIND: StreamKind = StreamKind::Candidates;
}

impl ToClient for AnswerBody {
    const KIND: StreamKind = StreamKind::Answer;
}

impl ToClient for OpenedBody {
    const KIND: StreamKind = StreamKind::Opened;
}

impl ToGateway for RestartBody {
    const KIND: MessageKind = MessageKind::Restart;
}

/// The client's `close`.
impl ToGateway for CloseBody {
    const KIND: MessageKind = MessageKind::Close;
}

/// The gateway's `closed`.
impl ToClient for CloseBody {
    const KIND: StreamKind = StreamKind::Closed;
}

/// Why a connection or a tube was closed; carried in the tube's close frames and in `closed`.
/// The close reasons are the subset of [`Code`] a close may carry; their strings are the codes'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Code", try_from = "Code")]
pub enum CloseReason {
    /// Orderly end: one side closed its connection.
    Normal,
    /// The target actively refused the connection.
    TargetRefused,
    /// The target did not answer within the gateway's connect timeout.
    TargetTimeout,
    /// The target's address could not be resolved or reached.
    TargetUnreachable,
    /// The target reset or broke the connection.
    TargetError,
    /// The gateway's session or connection limit was reached.
    SessionLimit,
    /// An administrator closed the session at the gateway.
    ClosedByAdmin,
    /// The gateway is shutting down.
    GatewayShutdown,
    /// The client ended the session.
    ClientClosed,
    /// A protocol violation (unknown message, bad label, ...).
    ProtocolError,
}

impl CloseReason {
    /// The reason's code in the registry.
    pub const fn code(self) -> Code {
        match self {
            CloseReason::Normal => Code::Normal,
            CloseReason::TargetRefused => Code::TargetRefused,
            CloseReason::TargetTimeout => Code::TargetTimeout,
            CloseReason::TargetUnreachable => Code::TargetUnreachable,
            CloseReason::TargetError => Code::TargetError,
            CloseReason::SessionLimit => Code::SessionLimit,
            CloseReason::ClosedByAdmin => Code::ClosedByAdmin,
            CloseReason::GatewayShutdown => Code::GatewayShutdown,
            CloseReason::ClientClosed => Code::ClientClosed,
            CloseReason::ProtocolError => Code::ProtocolError,
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.code().as_str()
    }
}

impl From<CloseReason> for Code {
    fn from(reason: CloseReason) -> Code {
        reason.code()
    }
}

impl TryFrom<Code> for CloseReason {
    type Error = String;
    fn try_from(code: Code) -> Result<Self, Self::Error> {
        CloseReason::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .ok_or_else(|| format!("{code:?} is not a close reason"))
    }
}

impl CloseReason {
    /// Every reason, for parsing and for tests.
    pub const ALL: [CloseReason; 10] = [
        CloseReason::Normal,
        CloseReason::TargetRefused,
        CloseReason::TargetTimeout,
        CloseReason::TargetUnreachable,
        CloseReason::TargetError,
        CloseReason::SessionLimit,
        CloseReason::ClosedByAdmin,
        CloseReason::GatewayShutdown,
        CloseReason::ClientClosed,
        CloseReason::ProtocolError,
    ];

    /// The reason named by its wire string.
    pub fn parse(text: &str) -> Option<CloseReason> {
        Code::parse(text).and_then(|c| c.try_into().ok())
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Router WebSocket paths.
pub const CLIENT_WS_PATH: &str = "/v1/ws/client";
pub const GATEWAY_WS_PATH: &str = "/v1/ws/gateway";

/// The `ws://`/`wss://` URL of `path` on the router at `http_base` (`http://`/`https://`).
pub fn websocket_url(http_base: &str, path: &str) -> String {
    let base = http_base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{ws}{path}")
}

/// Conversation ids are client-chosen; keep them short and printable so they are safe in
/// logs, metrics and maps.
pub fn valid_conversation_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Resource names and gateway ids: 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with
/// `.` (so never `.` or `..`, which a URL path or a file name would read as a directory).
pub fn valid_resource_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What [`valid_resource_name`] requires, for error messages.
pub const RESOURCE_NAME_RULE: &str =
    "must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'";

/// What [`valid_conversation_id`] requires, for error messages.
pub const CONVERSATION_ID_RULE: &str = "must be 8-64 characters of [A-Za-z0-9_-]";

/// The protocols a resource may name; they tell the client which native client to start.
pub const RESOURCE_PROTOCOLS: &[&str] = &[
    "ssh",
    "postgres",
    "mysql",
    "kubernetes",
    "rdp",
    "http",
    "tcp",
];

/// Check one local UDP address for WebRTC host candidates (`webrtc_udp` in the gateway's
/// configuration and the client profile): an `IP:port` or `localhost:port`.
pub fn check_udp_bind(addr: &str) -> Result<(), String> {
    let ok = addr.parse::<std::net::SocketAddr>().is_ok()
        || addr
            .strip_prefix("localhost:")
            .is_some_and(|port| port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{addr:?} is not a local UDP address (IP:port or localhost:port, e.g. \"0.0.0.0:0\")"
        ))
    }
}

/// One line for a configuration error found at byte `span` of `text`: `line N (`that line`):
/// message`, so a multi-line parser report still names where and what.
pub fn config_error_at(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    let message = message.trim().replace('\n', " ");
    let Some(span) = span.filter(|s| s.start <= text.len()) else {
        return message;
    };
    let line = text[..span.start].matches('\n').count() + 1;
    let content = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line} (`{content}`): {message}")
}

/// A STUN or TURN server in a configuration (`ice_servers`): a bare URL (`"stun:host:port"`),
/// or a table with URLs and the TURN credentials (`{ urls = ["turn:host:3478"], username =
/// "...", credential = "..." }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "IceServerForm", into = "IceServerForm")]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServer {
    pub fn url(url: &str) -> Self {
        Self {
            urls: vec![url.to_owned()],
            username: None,
            credential: None,
        }
    }

    /// Check every URL, and that a TURN URL comes with credentials.
    pub fn check(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("no urls".into());
        }
        for url in &self.urls {
            check_ice_server(url)?;
            if url.starts_with("turn") && (self.username.is_none() || self.credential.is_none()) {
                return Err(format!("{url:?} needs a username and a credential"));
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum IceServerForm {
    Url(String),
    Table {
        urls: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
}

impl From<IceServerForm> for IceServer {
    fn from(form: IceServerForm) -> Self {
        match form {
            IceServerForm::Url(url) => IceServer::url(&url),
            IceServerForm::Table {
                urls,
                username,
                credential,
            } => IceServer {
                urls,
                username,
                credential,
            },
        }
    }
}

impl From<IceServer> for IceServerForm {
    fn from(server: IceServer) -> Self {
        match server {
            IceServer {
                mut urls,
                username: None,
                credential: None,
            } if urls.len() == 1 => IceServerForm::Url(urls.remove(0)),
            IceServer {
                urls,
                username,
                credential,
            } => IceServerForm::Table {
                urls,
                username,
                credential,
            },
        }
    }
}

/// Check one STUN/TURN server URL (`ice_servers`): `stun:`, `stuns:`, `turn:` or `turns:`
/// followed by a host.
pub fn check_ice_server(url: &str) -> Result<(), String> {
    let host = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    match host {
        Some(rest) if !rest.is_empty() && !rest.starts_with(':') && !rest.contains(' ') => Ok(()),
        _ => Err(format!(
            "{url:?} is not a STUN/TURN URL (stun:, stuns:, turn: or turns: and a host)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_message_round_trips_and_rejects_unknown_fields() {
        let msg = ClientMessage {
            v: PROTOCOL_VERSION,
            conversation_id: "abcdefgh".into(),
            resource: "demo".into(),
            kind: MessageKind::Start,
            stream_response: true,
            timeout_ms: Some(1000),
            payload: SealedPayload {
                epk: None,
                nonce: "n".into(),
                ct: "c".into(),
            },
        };
        let text = serde_json::to_string(&msg).unwrap();
        let back: ClientMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back.kind, MessageKind::Start);
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<ClientMessage>(value).is_err());
    }

    #[test]
    fn gateway_reply_shape() {
        let reply = GatewayToRouter::Reply {
            request_id: 7,
            outcome: GatewayOutcome::Error {
                code: Code::BadState,
                message: "x".into(),
            },
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.contains(r#""type":"reply""#));
        assert!(text.contains(r#""status":"error""#));
        let back: GatewayToRouter = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, GatewayToRouter::Reply { request_id: 7, .. }));
    }

    #[test]
    fn report_shape() {
        let report = GatewayToRouter::Report(ConversationReport {
            conversation_id: "c0ffee00-launch-1".into(),
            event: ReportEvent::SessionClosed,
            resource: "db".into(),
            reason: Some(CloseReason::ClientClosed),
            bytes_from_client: Some(5),
            bytes_to_client: Some(7),
            duration_ms: Some(1200),
        });
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(
            text,
            r#"{"type":"report","conversation_id":"c0ffee00-launch-1","event":"session_closed","resource":"db","reason":"client_closed","bytes_from_client":5,"bytes_to_client":7,"duration_ms":1200}"#
        );
        let back: GatewayToRouter = serde_json::from_str(
            r#"{"type":"report","conversation_id":"c0ffee00-launch-1","event":"tube_connected","resource":"db"}"#,
        )
        .unwrap();
        assert!(
            matches!(back, GatewayToRouter::Report(r) if r.event == ReportEvent::TubeConnected && r.reason.is_none())
        );
        let welcome: RouterToGateway = serde_json::from_str(r#"{"type":"welcome","v":1}"#).unwrap();
        assert!(matches!(
            welcome,
            RouterToGateway::Welcome { reports: false, .. }
        ));
    }

    #[test]
    fn websocket_urls() {
        assert_eq!(
            websocket_url("http://h:1/", CLIENT_WS_PATH),
            "ws://h:1/v1/ws/client"
        );
        assert_eq!(
            websocket_url("https://h", GATEWAY_WS_PATH),
            "wss://h/v1/ws/gateway"
        );
    }

    #[test]
    fn labels_and_ids() {
        assert!(valid_conversation_id("0123456789abcdef"));
        assert!(!valid_conversation_id("short"));
        assert!(!valid_conversation_id("has space in it"));
        assert!(valid_resource_name("pg.local"));
        assert!(!valid_resource_name(""));
        assert!(!valid_resource_name("../etc"));
        assert!(!valid_resource_name(".."));
        assert!(!valid_resource_name(".hidden"));
        assert!(check_udp_bind("0.0.0.0:0").is_ok());
        assert!(check_udp_bind("[::1]:5000").is_ok());
        assert!(check_udp_bind("localhost:0").is_ok());
        assert!(check_udp_bind("not-an-address").is_err());
        assert!(check_ice_server("stun:stun.example.org:3478").is_ok());
        assert!(check_ice_server("http://x").is_err());
        assert!(check_ice_server("stun:").is_err());
    }

    #[test]
    fn config_errors_point_at_their_line() {
        let text = "a = 1\n[[gateways]]\nid = \"x\"\n";
        assert_eq!(
            config_error_at(text, Some(6..18), "missing field `public_key`\n"),
            "line 2 (`[[gateways]]`): missing field `public_key`"
        );
        assert_eq!(config_error_at(text, None, "bad"), "bad");
    }

    #[test]
    fn error_frames_name_their_conversation() {
        let frame = ClientWsEvent::Error {
            code: Code::Forbidden,
            message: "x".into(),
            conversation_id: Some("conv-0001".into()),
        };
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            text,
            r#"{"type":"error","code":"forbidden","message":"x","conversation_id":"conv-0001"}"#
        );
        let back: ClientWsEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, frame);
        // Without a conversation the field is left out.
        let plain: ClientWsEvent =
            serde_json::from_str(r#"{"type":"error","code":"malformed","message":"y"}"#).unwrap();
        assert!(matches!(
            plain,
            ClientWsEvent::Error {
                conversation_id: None,
                ..
            }
        ));
        let lost = ClientWsEvent::GatewayLost {
            conversation_id: "conv-0001".into(),
            gateway: "lab".into(),
        };
        assert_eq!(
            serde_json::to_string(&lost).unwrap(),
            r#"{"type":"gateway_lost","conversation_id":"conv-0001","gateway":"lab"}"#
        );
    }
}
