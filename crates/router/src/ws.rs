//! The two WebSockets: clients subscribe to conversations, gateways receive forwarded
//! messages and stream replies. A frame that does not parse closes that socket only.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use sallyport_protocol::{
    codes, AnnouncedResource, ClientWsEvent, ClientWsRequest, GatewayChallenge, GatewayToRouter,
    RouterToGateway, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, Notify};

use crate::audit::{events, AuditRecord};
use crate::{source_of, ClientAddr, GatewayLink, RouterError, Shared};

/// Close code for a frame that broke the protocol (RFC 6455 §7.4.1: 1008 policy violation).
const CLOSE_PROTOCOL: u16 = 1008;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// After its Close frame, how long the router waits for the peer's.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// One client socket follows at most this many conversations.
const MAX_SUBSCRIPTIONS_PER_SOCKET: usize = 64;

fn json_text<T: serde::Serialize>(value: &T) -> Message {
    Message::Text(
        serde_json::to_string(value)
            .expect("protocol types serialize")
            .into(),
    )
}

fn close_frame(reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CLOSE_PROTOCOL,
        reason: reason.to_owned().into(),
    }))
}

/// What one received frame means to both socket loops.
enum Incoming {
    Text(axum::extract::ws::Utf8Bytes),
    /// Ping or Pong: liveness only (axum answers Pings itself).
    Control,
    /// A binary frame: not part of the protocol.
    Binary,
    /// Closed, failed or gone.
    Ended,
}

fn incoming(frame: Option<Result<Message, axum::Error>>) -> Incoming {
    match frame {
        Some(Ok(Message::Text(text))) => Incoming::Text(text),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
        Some(Ok(Message::Binary(_))) => Incoming::Binary,
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Incoming::Ended,
    }
}

/// Send `frame` (a Close) and wait, briefly, for the peer's Close in reply (RFC 6455 §7.1.1:
/// the server closes the connection once the handshake is done). Closing at once would cut
/// the peer's reply off; over TLS, some clients take the close_notify that would follow right
/// behind the Close frame for an abnormal end (1006) and never read the code.
async fn close_with<S, R>(sink: &mut S, stream: &mut R, frame: Message)
where
    S: SinkExt<Message> + Unpin,
    R: StreamExt<Item = Result<Message, axum::Error>> + Unpin,
{
    if sink.send(frame).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Close frame for a router shutting down (RFC 6455 §7.4.1: 1001 going away).
fn going_away() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1001,
        reason: "router shutting down".into(),
    }))
}

fn upgrade(shared: &Shared, ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(shared.config.max_frame_bytes)
        .max_frame_size(shared.config.max_frame_bytes)
}

pub(crate) async fn client_socket(
    State(shared): State<Arc<Shared>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(client) = shared.client_for_token(&headers) else {
        return shared.unauthorized(source_of(addr)).into_response();
    };
    let name = client.name.clone();
    upgrade(&shared, ws)
        .on_upgrade(move |socket| run_client(shared, name, socket))
        .into_response()
}

async fn run_client(shared: Arc<Shared>, client: String, socket: WebSocket) {
    let socket_id = shared.next_id();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<ClientWsEvent>(256);
    let ping_every = Duration::from_secs(shared.config.ping_interval_secs.max(1));
    let mut ping = tokio::time::interval(ping_every);
    let mut last_seen = Instant::now();
    let mut subscriptions: HashSet<String> = HashSet::new();

    loop {
        tokio::select! {
            Some(event) = rx.recv() => {
                if sink.send(json_text(&event)).await.is_err() {
                    break;
                }
            }
            _ = shared.closing() => {
                close_with(&mut sink, &mut stream, going_away()).await;
                break;
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > ping_every * 3 {
                    tracing::debug!(%client, "client websocket idle; closing");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            frame = stream.next() => {
                last_seen = Instant::now();
                let text = match incoming(frame) {
                    Incoming::Text(text) => text,
                    Incoming::Control => continue,
                    Incoming::Ended => break,
                    Incoming::Binary => {
                        shared.metrics.failure(codes::MALFORMED);
                        close_with(&mut sink, &mut stream, close_frame("binary frames are not part of the protocol")).await;
                        break;
                    }
                };
                let step = client_frame(&shared, &client, socket_id, &tx, &mut subscriptions, &text);
                // Sent before anything queued on `tx`, so the ack precedes the backlog.
                if let Some(reply) = step.reply {
                    if sink.send(reply).await.is_err() {
                        break;
                    }
                }
                if let Some(reason) = step.close {
                    close_with(&mut sink, &mut stream, close_frame(reason)).await;
                    break;
                }
            }
        }
    }
    for conversation_id in subscriptions {
        unsubscribe(&shared, socket_id, &conversation_id);
    }
}

/// What the socket loop does after one text frame: send `reply`, then close if `close`.
pub(crate) struct Step {
    pub reply: Option<Message>,
    pub close: Option<&'static str>,
}

fn client_error(code: &str, message: String, conversation_id: Option<&str>) -> Message {
    json_text(&ClientWsEvent::Error {
        code: code.into(),
        message,
        conversation_id: conversation_id.map(str::to_owned),
    })
}

/// Handle one text frame from a client socket.
pub(crate) fn client_frame(
    shared: &Shared,
    client: &str,
    socket_id: u64,
    tx: &mpsc::Sender<ClientWsEvent>,
    subscriptions: &mut HashSet<String>,
    text: &str,
) -> Step {
    let request = match serde_json::from_str::<ClientWsRequest>(text) {
        Ok(request) => request,
        Err(e) => {
            shared.metrics.failure(codes::MALFORMED);
            return Step {
                reply: Some(client_error(
                    codes::MALFORMED,
                    format!("unreadable frame: {e}"),
                    None,
                )),
                close: Some("malformed frame"),
            };
        }
    };
    let reply = match request {
        ClientWsRequest::Subscribe { conversation_id }
            if subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_SOCKET
                && !subscriptions.contains(&conversation_id) =>
        {
            shared.metrics.failure(codes::TOO_LARGE);
            client_error(
                codes::TOO_LARGE,
                format!("at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket"),
                Some(&conversation_id),
            )
        }
        ClientWsRequest::Subscribe { conversation_id } => {
            match subscribe(shared, client, socket_id, tx, &conversation_id) {
                Ok(()) => {
                    subscriptions.insert(conversation_id.clone());
                    json_text(&ClientWsEvent::Subscribed { conversation_id })
                }
                Err(e) => {
                    shared.metrics.failure(e.code());
                    client_error(e.code(), e.to_string(), Some(&conversation_id))
                }
            }
        }
        ClientWsRequest::Unsubscribe { conversation_id } => {
            unsubscribe(shared, socket_id, &conversation_id);
            subscriptions.remove(&conversation_id);
            return Step {
                reply: None,
                close: None,
            };
        }
    };
    Step {
        reply: Some(reply),
        close: None,
    }
}

fn subscribe(
    shared: &Shared,
    client: &str,
    socket_id: u64,
    tx: &mpsc::Sender<ClientWsEvent>,
    conversation_id: &str,
) -> Result<(), RouterError> {
    if !sallyport_protocol::valid_conversation_id(conversation_id) {
        return Err(RouterError::Malformed(format!(
            "conversation_id {}",
            sallyport_protocol::CONVERSATION_ID_RULE
        )));
    }
    shared.claim(conversation_id, client)?;
    let mut conversations = shared.conversations.lock().unwrap();
    if let Some(c) = conversations.get_mut(conversation_id) {
        c.subscriber = Some((socket_id, tx.clone()));
        // Under the same lock as the subscription, so newer messages queue behind these.
        for event in std::mem::take(&mut c.backlog) {
            if tx.try_send(event).is_ok() {
                shared.metrics.streamed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// The subscriber is gone: forget the conversation if this socket still held it.
fn unsubscribe(shared: &Shared, socket_id: u64, conversation_id: &str) {
    let mut conversations = shared.conversations.lock().unwrap();
    let held = conversations
        .get(conversation_id)
        .and_then(|c| c.subscriber.as_ref())
        .is_some_and(|(id, _)| *id == socket_id);
    if held {
        conversations.remove(conversation_id);
    }
}

pub(crate) async fn gateway_socket(
    State(shared): State<Arc<Shared>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let source = source_of(addr);
    let Some(gateway) = shared.gateway_for_token(&headers) else {
        return shared.unauthorized(source).into_response();
    };
    let id = gateway.id.clone();
    upgrade(&shared, ws)
        .on_upgrade(move |socket| run_gateway(shared, id, socket, source))
        .into_response()
}

fn gateway_record(event: &str, gateway_id: &str, source: Option<std::net::IpAddr>) -> AuditRecord {
    AuditRecord {
        gateway: Some(gateway_id.to_owned()),
        ..AuditRecord::new(event).source(source)
    }
}

/// A gateway link plus the signal that a newer connection of the same gateway replaced it.
pub(crate) struct Registered {
    pub link: Arc<GatewayLink>,
    replaced: Arc<Notify>,
}

/// Why a gateway's hello was refused: the error frame's code and message.
pub(crate) type Refused = (&'static str, String);

/// Check the first frame of a gateway socket against this connection's challenge: a hello of
/// this protocol version, naming the token's gateway, proving its configured key, announcing
/// valid resource names.
pub(crate) fn check_hello(
    shared: &Shared,
    gateway_id: &str,
    challenge: &GatewayChallenge,
    text: &str,
) -> Result<Vec<AnnouncedResource>, Refused> {
    let Ok(GatewayToRouter::Hello {
        v,
        gateway_id: claimed,
        resources,
        proof,
    }) = serde_json::from_str::<GatewayToRouter>(text)
    else {
        return Err((codes::MALFORMED, "first frame must be a hello".into()));
    };
    if v != PROTOCOL_VERSION {
        return Err((
            codes::UNSUPPORTED_VERSION,
            format!(
                "protocol version {v} is not supported (this router speaks {PROTOCOL_VERSION})"
            ),
        ));
    }
    if claimed != gateway_id {
        return Err((
            codes::FORBIDDEN,
            "hello names another gateway than the token".into(),
        ));
    }
    let Some(key) = shared.config.gateway_key(gateway_id) else {
        return Err((
            codes::UNAUTHORIZED,
            "no public key is configured for this gateway".into(),
        ));
    };
    let Some(proof) = proof else {
        return Err((
            codes::UNAUTHORIZED,
            "hello carries no proof of the gateway key (answer the challenge)".into(),
        ));
    };
    if let Err(e) = challenge.verify(&key, gateway_id, &proof) {
        return Err((codes::UNAUTHORIZED, e.to_string()));
    }
    if let Some(bad) = resources
        .iter()
        .find(|r| !sallyport_protocol::valid_resource_name(&r.name))
    {
        return Err((
            codes::MALFORMED,
            format!("invalid resource name {:?}", bad.name),
        ));
    }
    Ok(resources)
}

async fn run_gateway(
    shared: Arc<Shared>,
    gateway_id: String,
    socket: WebSocket,
    source: Option<std::net::IpAddr>,
) {
    let (mut sink, mut stream) = socket.split();

    // The router speaks first: a challenge that only the holder of the gateway's configured
    // key can answer. A token alone therefore never registers a gateway, nor displaces one.
    let challenge = GatewayChallenge::new();
    let frame = RouterToGateway::Challenge {
        v: PROTOCOL_VERSION,
        nonce: challenge.nonce_base64(),
        epk: challenge.epk_base64(),
    };
    if sink.send(json_text(&frame)).await.is_err() {
        return;
    }
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => check_hello(&shared, &gateway_id, &challenge, &text),
        _ => Err((codes::MALFORMED, "no hello received".into())),
    };
    let resources = match hello {
        Ok(resources) => resources,
        Err((code, message)) => {
            tracing::warn!(gateway = %gateway_id, %code, %message, "gateway refused");
            shared.audit.record(&AuditRecord {
                code: Some(code.to_owned()),
                ..gateway_record(events::GATEWAY_REFUSED, &gateway_id, source)
            });
            reject_gateway(&shared, &mut sink, &mut stream, code, &message).await;
            return;
        }
    };

    let (tx, mut rx) = mpsc::channel::<RouterToGateway>(1024);
    let registered = register(&shared, &gateway_id, tx, resources);
    tracing::info!(gateway = %gateway_id, "gateway connected");
    shared.audit.record(&gateway_record(
        events::GATEWAY_CONNECTED,
        &gateway_id,
        source,
    ));
    if sink
        .send(json_text(&RouterToGateway::Welcome {
            v: PROTOCOL_VERSION,
            reports: true,
        }))
        .await
        .is_err()
    {
        unregister(&shared, &gateway_id, &registered.link);
        shared.audit.record(&gateway_record(
            events::GATEWAY_DISCONNECTED,
            &gateway_id,
            source,
        ));
        return;
    }

    let ping_every = Duration::from_secs(shared.config.ping_interval_secs.max(1));
    let mut ping = tokio::time::interval(ping_every);
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            Some(message) = rx.recv() => {
                if sink.send(json_text(&message)).await.is_err() {
                    break;
                }
            }
            _ = shared.closing() => {
                close_with(&mut sink, &mut stream, going_away()).await;
                break;
            }
            _ = registered.replaced.notified() => {
                close_with(&mut sink, &mut stream, close_frame("replaced by a newer connection")).await;
                break;
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > ping_every * 3 {
                    tracing::warn!(gateway = %gateway_id, "gateway websocket idle; closing");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            frame = stream.next() => {
                last_seen = Instant::now();
                let text = match incoming(frame) {
                    Incoming::Text(text) => text,
                    Incoming::Control => continue,
                    Incoming::Ended => break,
                    Incoming::Binary => {
                        shared.metrics.failure(codes::MALFORMED);
                        close_with(&mut sink, &mut stream, close_frame("binary frames are not part of the protocol")).await;
                        break;
                    }
                };
                if let Err(e) = gateway_frame(&shared, &gateway_id, &registered.link, &text) {
                    shared.metrics.failure(codes::MALFORMED);
                    tracing::warn!(gateway = %gateway_id, error = %e, "malformed frame from gateway");
                    let error = RouterToGateway::Error { code: codes::MALFORMED.into(), message: format!("unreadable frame: {e}") };
                    let _ = sink.send(json_text(&error)).await;
                    close_with(&mut sink, &mut stream, close_frame("malformed frame")).await;
                    break;
                }
            }
        }
    }
    unregister(&shared, &gateway_id, &registered.link);
    shared.audit.record(&gateway_record(
        events::GATEWAY_DISCONNECTED,
        &gateway_id,
        source,
    ));
    tracing::info!(gateway = %gateway_id, "gateway disconnected");
}

/// Handle one text frame from a welcomed gateway; an unreadable frame is an error.
pub(crate) fn gateway_frame(
    shared: &Shared,
    gateway_id: &str,
    link: &GatewayLink,
    text: &str,
) -> Result<(), serde_json::Error> {
    match serde_json::from_str::<GatewayToRouter>(text)? {
        GatewayToRouter::Reply {
            request_id,
            outcome,
        } => {
            let waiter = link.pending.lock().unwrap().remove(&request_id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(outcome);
            }
        }
        GatewayToRouter::Stream {
            conversation_id,
            kind,
            payload,
        } => {
            let event = ClientWsEvent::Message {
                conversation_id: conversation_id.clone(),
                kind,
                payload,
            };
            shared.route_stream(gateway_id, event, &conversation_id);
        }
        GatewayToRouter::Report(report) => {
            if let Err(code) = shared.audit.report(gateway_id, report) {
                shared.metrics.failure(code);
            }
        }
        GatewayToRouter::Hello { resources, .. } => {
            if resources
                .iter()
                .all(|r| sallyport_protocol::valid_resource_name(&r.name))
            {
                shared
                    .announced
                    .lock()
                    .unwrap()
                    .insert(gateway_id.to_owned(), resources);
            }
        }
    }
    Ok(())
}

async fn reject_gateway<S, R>(
    shared: &Shared,
    sink: &mut S,
    stream: &mut R,
    code: &str,
    message: &str,
) where
    S: SinkExt<Message> + Unpin,
    R: StreamExt<Item = Result<Message, axum::Error>> + Unpin,
{
    shared.metrics.failure(code);
    let error = RouterToGateway::Error {
        code: code.into(),
        message: message.into(),
    };
    let _ = sink.send(json_text(&error)).await;
    close_with(sink, stream, close_frame(message)).await;
}

/// Register a gateway whose key is proven. A live connection of the same gateway is replaced:
/// only the key holder gets here, so this is the gateway itself reconnecting (its old
/// connection may not have noticed yet that it is gone).
pub(crate) fn register(
    shared: &Shared,
    gateway_id: &str,
    outbound: mpsc::Sender<RouterToGateway>,
    resources: Vec<AnnouncedResource>,
) -> Registered {
    let replaced = Arc::new(Notify::new());
    let link = Arc::new(GatewayLink {
        connection: shared.next_id(),
        outbound,
        pending: Default::default(),
        replaced: replaced.clone(),
    });
    shared
        .announced
        .lock()
        .unwrap()
        .insert(gateway_id.to_owned(), resources);
    let previous = shared
        .gateways
        .lock()
        .unwrap()
        .insert(gateway_id.to_owned(), link.clone());
    if let Some(previous) = previous {
        previous.replaced.notify_one();
    }
    Registered { link, replaced }
}

fn unregister(shared: &Shared, gateway_id: &str, link: &Arc<GatewayLink>) {
    let mut gateways = shared.gateways.lock().unwrap();
    let gone = gateways
        .get(gateway_id)
        .is_some_and(|current| current.connection == link.connection);
    if gone {
        gateways.remove(gateway_id);
    }
    drop(gateways);
    // Dropping the waiters answers their requests with controller_down.
    link.pending.lock().unwrap().clear();
    // Not replaced by a newer connection of its own: tell the clients of its conversations
    // now, rather than leave them to find out from a silent tube.
    if gone {
        shared.gateway_lost(gateway_id);
    }
}
