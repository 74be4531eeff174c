//! The two WebSockets: clients subscribe to conversations, gateways receive forwarded
//! messages and stream replies. A frame that does not parse closes that socket only.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use sallyport_protocol::{
    AnnouncedResource, ClientWsEvent, ClientWsRequest, Code, GatewayChallenge, GatewayToRouter,
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

fn incoming<E>(frame: Option<Result<Message, E>>) -> Incoming {
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
async fn close_with<S, R, E>(sink: &mut S, stream: &mut R, frame: Message)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
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
    let client = match shared.client_for_token(&headers).await {
        Ok(client) => client,
        Err(refusal) => {
            return shared
                .unauthorized(source_of(addr), refusal)
                .into_response()
        }
    };
    let name = client.name.clone();
    upgrade(&shared, ws)
        .on_upgrade(move |socket| run_client(shared, name, socket))
        .into_response()
}

async fn run_client(shared: Arc<Shared>, client: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    serve_client(&shared, &client, &mut sink, &mut stream).await;
}

/// A client socket: its subscriptions, served by the one socket loop.
pub(crate) async fn serve_client<Si, St, E>(
    shared: &Shared,
    client: &str,
    sink: &mut Si,
    stream: &mut St,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    let socket_id = shared.next_id();
    let (tx, mut rx) = mpsc::channel::<ClientWsEvent>(256);
    let mut subscriptions: HashSet<String> = HashSet::new();
    let on_text =
        |text: &str| client_frame(shared, client, socket_id, &tx, &mut subscriptions, text);
    socket_loop(
        shared,
        client,
        sink,
        stream,
        &mut rx,
        std::future::pending(),
        on_text,
    )
    .await;
    // A socket that drops is not an unsubscribe: the client reconnects and subscribes again,
    // and its conversation (owner, gateway, what arrives meanwhile) waits for it until the
    // idle sweep.
    for conversation_id in subscriptions {
        detach(shared, socket_id, &conversation_id);
    }
}

fn detach(shared: &Shared, socket_id: u64, conversation_id: &str) {
    let mut conversations = shared.conversations.lock().unwrap();
    if let Some(conversation) = conversations.get_mut(conversation_id) {
        if conversation
            .subscriber
            .as_ref()
            .is_some_and(|(id, _)| *id == socket_id)
        {
            conversation.subscriber = None;
            conversation.touched = std::time::Instant::now();
            if let Some(fleet) = &shared.fleet {
                fleet.detach(conversation_id);
            }
        }
    }
}

/// The one loop of both sockets: queued frames out, pings out (and a socket silent for three
/// pings closed), frames in handed to `on_text`, and the close when the router stops (1001),
/// when `displaced` resolves with a reason, or when a frame breaks the protocol (1008).
async fn socket_loop<'s, Si, St, E, T>(
    shared: &Shared,
    peer: &str,
    sink: &mut Si,
    stream: &mut St,
    outbound: &mut mpsc::Receiver<T>,
    displaced: impl std::future::Future<Output = &'static str>,
    mut on_text: impl FnMut(&str) -> Step<'s>,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
    T: serde::Serialize,
{
    let ping_every = Duration::from_secs(shared.config.ping_interval_secs.max(1));
    let mut ping = tokio::time::interval(ping_every);
    let mut last_seen = Instant::now();
    // Held for the loop's life: the router's stop waits for this socket to let go.
    let mut shutdown = shared.shutdown();
    let mut displaced = std::pin::pin!(displaced);
    loop {
        tokio::select! {
            Some(message) = outbound.recv() => {
                if sink.send(json_text(&message)).await.is_err() {
                    break;
                }
            }
            _ = shutdown.recv() => {
                close_with(sink, stream, going_away()).await;
                break;
            }
            reason = &mut displaced => {
                close_with(sink, stream, close_frame(reason)).await;
                break;
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > ping_every * 3 {
                    tracing::debug!(%peer, "websocket idle; closing");
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
                        shared.metrics.failure(Code::Malformed);
                        close_with(sink, stream, close_frame("binary frames are not part of the protocol")).await;
                        break;
                    }
                };
                let step = on_text(&text);
                let reply = match step.defer {
                    Some(work) => Some(work.await),
                    None => step.reply,
                };
                // Sent before anything queued on `outbound`, so an ack precedes the backlog.
                if let Some(reply) = reply {
                    if sink.send(reply).await.is_err() {
                        break;
                    }
                }
                if let Some(reason) = step.close {
                    close_with(sink, stream, close_frame(reason)).await;
                    break;
                }
            }
        }
    }
}

/// What the socket loop does after one text frame: send `reply`, then close if `close`.
pub(crate) struct Step<'a> {
    pub reply: Option<Message>,
    pub close: Option<&'static str>,
    /// Work that needs the fleet's Redis: awaited in the loop (this socket's frames stay in
    /// order), and what it returns is the reply.
    pub defer: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Message> + Send + 'a>>>,
}

impl Step<'_> {
    fn reply(reply: Message) -> Self {
        Step {
            reply: Some(reply),
            close: None,
            defer: None,
        }
    }
}

fn client_error(code: Code, message: String, conversation_id: Option<&str>) -> Message {
    json_text(&ClientWsEvent::Error {
        code,
        message,
        conversation_id: conversation_id.map(str::to_owned),
    })
}

/// Handle one text frame from a client socket.
pub(crate) fn client_frame<'a>(
    shared: &'a Shared,
    client: &'a str,
    socket_id: u64,
    tx: &mpsc::Sender<ClientWsEvent>,
    subscriptions: &mut HashSet<String>,
    text: &str,
) -> Step<'a> {
    let request = match serde_json::from_str::<ClientWsRequest>(text) {
        Ok(request) => request,
        Err(e) => {
            shared.metrics.failure(Code::Malformed);
            return Step {
                reply: Some(client_error(
                    Code::Malformed,
                    format!("unreadable frame: {e}"),
                    None,
                )),
                close: Some("malformed frame"),
                defer: None,
            };
        }
    };
    let reply = match request {
        ClientWsRequest::Subscribe { conversation_id }
            if subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_SOCKET
                && !subscriptions.contains(&conversation_id) =>
        {
            shared.metrics.failure(Code::TooLarge);
            client_error(
                Code::TooLarge,
                format!("at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket"),
                Some(&conversation_id),
            )
        }
        ClientWsRequest::Subscribe { conversation_id } if shared.fleet.is_some() => {
            subscriptions.insert(conversation_id.clone());
            let tx = tx.clone();
            return Step {
                reply: None,
                close: None,
                defer: Some(Box::pin(subscribe_in_fleet(
                    shared,
                    client,
                    socket_id,
                    tx,
                    conversation_id,
                ))),
            };
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
                defer: None,
            };
        }
    };
    Step::reply(reply)
}

/// Subscribe in a fleet: the claim holds across every router (and names this one as the
/// subscriber's), then what the gateway streamed before, through any router, follows the ack.
async fn subscribe_in_fleet(
    shared: &Shared,
    client: &str,
    socket_id: u64,
    tx: mpsc::Sender<ClientWsEvent>,
    conversation_id: String,
) -> Message {
    let fleet = shared.fleet.clone().expect("only called in a fleet");
    let subscribed = async {
        if !sallyport_protocol::valid_conversation_id(&conversation_id) {
            return Err(RouterError::Malformed(format!(
                "conversation_id {}",
                sallyport_protocol::CONVERSATION_ID_RULE
            )));
        }
        fleet.claim(&conversation_id, client, None, true).await?;
        subscribe(shared, client, socket_id, &tx, &conversation_id)
    };
    match subscribed.await {
        Ok(()) => {
            fleet.drain_to(shared, &conversation_id).await;
            json_text(&ClientWsEvent::Subscribed { conversation_id })
        }
        Err(e) => {
            shared.metrics.failure(e.code());
            client_error(e.code(), e.to_string(), Some(&conversation_id))
        }
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
        if let Some(fleet) = &shared.fleet {
            fleet.forget(conversation_id);
        }
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
        return shared
            .unauthorized(source, RouterError::Unauthorized)
            .into_response();
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
pub(crate) type Refused = (Code, String);

/// Check the first frame of a gateway socket against this connection's challenge: a hello of
/// this protocol version, naming the token's gateway, proving its configured key, announcing
/// valid resource names.
pub(crate) fn check_hello(
    shared: &Shared,
    gateway_id: &str,
    challenge: &GatewayChallenge,
    text: &str,
) -> Result<(Vec<AnnouncedResource>, Option<u64>), Refused> {
    let Ok(GatewayToRouter::Hello {
        v,
        gateway_id: claimed,
        resources,
        proof,
        epoch,
    }) = serde_json::from_str::<GatewayToRouter>(text)
    else {
        return Err((Code::Malformed, "first frame must be a hello".into()));
    };
    if v != PROTOCOL_VERSION {
        return Err((
            Code::UnsupportedVersion,
            format!(
                "protocol version {v} is not supported (this router speaks {PROTOCOL_VERSION})"
            ),
        ));
    }
    if claimed != gateway_id {
        return Err((
            Code::Forbidden,
            "hello names another gateway than the token".into(),
        ));
    }
    let Some(key) = shared.config.gateway_key(gateway_id) else {
        return Err((
            Code::Unauthorized,
            "no public key is configured for this gateway".into(),
        ));
    };
    let Some(proof) = proof else {
        return Err((
            Code::Unauthorized,
            "hello carries no proof of the gateway key (answer the challenge)".into(),
        ));
    };
    if let Err(e) = challenge.verify(&key, gateway_id, &proof) {
        return Err((Code::Unauthorized, e.to_string()));
    }
    if let Some(bad) = resources
        .iter()
        .find(|r| !sallyport_protocol::valid_resource_name(&r.name))
    {
        return Err((
            Code::Malformed,
            format!("invalid resource name {:?}", bad.name),
        ));
    }
    Ok((resources, epoch))
}

async fn run_gateway(
    shared: Arc<Shared>,
    gateway_id: String,
    socket: WebSocket,
    source: Option<std::net::IpAddr>,
) {
    let (mut sink, mut stream) = socket.split();
    serve_gateway(&shared, &gateway_id, source, &mut sink, &mut stream).await;
}

/// A gateway socket: the challenge and hello, then the one socket loop.
pub(crate) async fn serve_gateway<Si, St, E>(
    shared: &Shared,
    gateway_id: &str,
    source: Option<std::net::IpAddr>,
    sink: &mut Si,
    stream: &mut St,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
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
        Ok(Some(Ok(Message::Text(text)))) => check_hello(shared, gateway_id, &challenge, &text),
        _ => Err((Code::Malformed, "no hello received".into())),
    };
    let (resources, epoch) = match hello {
        Ok(hello) => hello,
        Err((code, message)) => {
            tracing::warn!(gateway = %gateway_id, %code, %message, "gateway refused");
            shared.audit.record(&AuditRecord {
                code: Some(code.to_string()),
                ..gateway_record(events::GATEWAY_REFUSED, gateway_id, source)
            });
            reject_gateway(shared, sink, stream, code, &message).await;
            return;
        }
    };

    let (tx, mut rx) = mpsc::channel::<RouterToGateway>(1024);
    let registered = register(shared, gateway_id, tx, resources, epoch);
    tracing::info!(gateway = %gateway_id, "gateway connected");
    shared.audit.record(&gateway_record(
        events::GATEWAY_CONNECTED,
        gateway_id,
        source,
    ));
    if sink
        .send(json_text(&RouterToGateway::Welcome {
            v: PROTOCOL_VERSION,
            reports: true,
            opened: true,
        }))
        .await
        .is_err()
    {
        unregister(shared, gateway_id, &registered.link);
        shared.audit.record(&gateway_record(
            events::GATEWAY_DISCONNECTED,
            gateway_id,
            source,
        ));
        return;
    }

    let link = registered.link.clone();
    let replaced = async {
        registered.replaced.notified().await;
        "replaced by a newer connection"
    };
    let on_text = |text: &str| match gateway_frame(shared, gateway_id, &link, text) {
        Ok(()) => Step {
            reply: None,
            close: None,
            defer: None,
        },
        Err(e) => {
            shared.metrics.failure(Code::Malformed);
            tracing::warn!(gateway = %gateway_id, error = %e, "malformed frame from gateway");
            let error = RouterToGateway::Error {
                code: Code::Malformed,
                message: format!("unreadable frame: {e}"),
            };
            Step {
                reply: Some(json_text(&error)),
                close: Some("malformed frame"),
                defer: None,
            }
        }
    };
    socket_loop(shared, gateway_id, sink, stream, &mut rx, replaced, on_text).await;
    unregister(shared, gateway_id, &registered.link);
    shared.audit.record(&gateway_record(
        events::GATEWAY_DISCONNECTED,
        gateway_id,
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
                if let Some(fleet) = &shared.fleet {
                    fleet.gateway_present(
                        gateway_id,
                        link.connection,
                        link.epoch,
                        resources.clone(),
                    );
                }
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

async fn reject_gateway<S, R, E>(
    shared: &Shared,
    sink: &mut S,
    stream: &mut R,
    code: Code,
    message: &str,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    shared.metrics.failure(code);
    let error = RouterToGateway::Error {
        code,
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
    epoch: Option<u64>,
) -> Registered {
    let replaced = Arc::new(Notify::new());
    let link = Arc::new(GatewayLink {
        connection: shared.next_id(),
        epoch,
        outbound,
        pending: Default::default(),
        replaced: replaced.clone(),
    });
    if let Some(fleet) = &shared.fleet {
        fleet.gateway_present(gateway_id, link.connection, link.epoch, resources.clone());
    }
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
    match (&shared.fleet, gone) {
        // The fleet tells every router's subscribers, this one's too.
        (Some(fleet), true) => fleet.gateway_gone(gateway_id, link.connection),
        // Replaced (here, or on another router): only stop refreshing its presence.
        (Some(fleet), false) => fleet.gateway_closed(gateway_id, link.connection),
        (None, true) => shared.gateway_lost(gateway_id),
        (None, false) => {}
    }
}

/// The sockets in memory: the real loop and handlers, a channel where the WebSocket would be,
/// and tokio's paused clock for the pings.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientEntry, GatewayEntry};
    use crate::RouterConfig;
    use sallyport_protocol::{GatewayKeyPair, SealedPayload, StreamKind};
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    /// The far end of an in-memory socket: what the peer sends, and what the router sent.
    struct Far {
        send: UnboundedSender<Message>,
        received: UnboundedReceiver<Message>,
    }

    impl Far {
        fn text(&self, value: serde_json::Value) {
            self.send
                .send(Message::Text(value.to_string().into()))
                .unwrap();
        }

        /// The router's next text frame (pings skipped).
        async fn next_json(&mut self) -> serde_json::Value {
            loop {
                match self.received.recv().await.expect("the socket is open") {
                    Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        }

        /// The close frame's code and reason, skipping what comes before it.
        async fn close(&mut self) -> (u16, String) {
            loop {
                match self.received.recv().await.expect("a close frame") {
                    Message::Close(Some(frame)) => return (frame.code, frame.reason.to_string()),
                    Message::Close(None) => panic!("a close frame without a code"),
                    _ => continue,
                }
            }
        }
    }

    type Near = (
        std::pin::Pin<Box<dyn Sink<Message, Error = ()> + Send>>,
        std::pin::Pin<Box<dyn Stream<Item = Result<Message, ()>> + Send>>,
    );

    fn socket() -> (Near, Far) {
        let (to_router, from_peer) = unbounded_channel::<Message>();
        let (to_peer, received) = unbounded_channel::<Message>();
        let sink = futures_util::sink::unfold(to_peer, |tx, message: Message| async move {
            tx.send(message).map_err(|_| ())?;
            Ok::<_, ()>(tx)
        });
        let stream = futures_util::stream::unfold(from_peer, |mut rx| async move {
            rx.recv().await.map(|m| (Ok::<_, ()>(m), rx))
        });
        (
            (Box::pin(sink), Box::pin(stream)),
            Far {
                send: to_router,
                received,
            },
        )
    }

    fn gateway_key() -> GatewayKeyPair {
        GatewayKeyPair::from_base64("AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=").unwrap()
    }

    fn shared() -> (Arc<Shared>, sallyport_kit::Stopper) {
        let config = RouterConfig {
            gateways: vec![GatewayEntry {
                id: "g".into(),
                token: "gateway-token".into(),
                public_key: gateway_key().public().to_base64(),
                resources: vec![],
            }],
            clients: vec![ClientEntry {
                name: "alice".into(),
                token: "alice-token".into(),
                resources: vec!["*".into()],
                roles: vec![],
            }],
            ..RouterConfig::parse("plain_http = true").unwrap()
        };
        let stopper = sallyport_kit::Stopper::new();
        (Arc::new(Shared::new(config, stopper.shutdown())), stopper)
    }

    fn client(shared: &Arc<Shared>) -> (Far, tokio::task::JoinHandle<()>) {
        let ((mut sink, mut stream), far) = socket();
        let shared = shared.clone();
        let task = tokio::spawn(async move {
            serve_client(&shared, "alice", &mut sink, &mut stream).await;
        });
        (far, task)
    }

    /// A gateway socket through its challenge and hello, welcomed.
    async fn gateway(shared: &Arc<Shared>) -> (Far, tokio::task::JoinHandle<()>) {
        let ((mut sink, mut stream), mut far) = socket();
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                serve_gateway(&shared, "g", None, &mut sink, &mut stream).await;
            })
        };
        let challenge = far.next_json().await;
        let proof = gateway_key()
            .prove(
                "g",
                challenge["nonce"].as_str().unwrap(),
                challenge["epk"].as_str().unwrap(),
            )
            .unwrap();
        far.text(serde_json::json!({"type": "hello", "v": PROTOCOL_VERSION, "gateway_id": "g", "proof": proof, "resources": []}));
        assert_eq!(far.next_json().await["type"], "welcome");
        (far, task)
    }

    fn subscribe(id: &str) -> serde_json::Value {
        serde_json::json!({"type": "subscribe", "conversation_id": id})
    }

    /// A conversation `alice` sent to gateway `g`, as a forwarded start leaves it.
    fn sent_to_gateway(shared: &Shared, id: &str) {
        shared.claim(id, "alice").unwrap();
        shared
            .conversations
            .lock()
            .unwrap()
            .get_mut(id)
            .unwrap()
            .gateway = Some("g".into());
    }

    fn streamed(id: &str) -> ClientWsEvent {
        ClientWsEvent::Message {
            conversation_id: id.into(),
            kind: StreamKind::Answer,
            payload: SealedPayload {
                epk: None,
                nonce: "n".into(),
                ct: "c".into(),
            },
        }
    }

    #[tokio::test]
    async fn the_ack_goes_before_the_backlog() {
        let (shared, _stopper) = shared();
        sent_to_gateway(&shared, "conversation-1");
        // The gateway answers before the client subscribed: the router keeps it.
        shared.route_stream("g", streamed("conversation-1"), "conversation-1");
        let (mut far, _task) = client(&shared);
        far.text(subscribe("conversation-1"));
        assert_eq!(far.next_json().await["type"], "subscribed");
        let backlog = far.next_json().await;
        assert_eq!(
            (backlog["type"].as_str(), backlog["kind"].as_str()),
            (Some("message"), Some("answer"))
        );
    }

    #[tokio::test]
    async fn a_socket_follows_at_most_64_conversations() {
        let (shared, _stopper) = shared();
        let (mut far, _task) = client(&shared);
        for i in 0..MAX_SUBSCRIPTIONS_PER_SOCKET {
            far.text(subscribe(&format!("conversation-{i:03}")));
            assert_eq!(far.next_json().await["type"], "subscribed");
        }
        far.text(subscribe("one-too-many"));
        let refused = far.next_json().await;
        assert_eq!(refused["code"], Code::TooLarge.as_str());
        assert_eq!(refused["conversation_id"], "one-too-many");
        // One it already follows is still fine, and the socket stays open.
        far.text(subscribe("conversation-000"));
        assert_eq!(far.next_json().await["type"], "subscribed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_socket_is_closed_after_three_pings() {
        let (shared, _stopper) = shared();
        let ping_every = Duration::from_secs(shared.config.ping_interval_secs);
        let (mut far, task) = client(&shared);
        let started = Instant::now();
        tokio::time::timeout(ping_every * 10, task)
            .await
            .expect("the idle socket is closed")
            .unwrap();
        // Closed at the first tick more than three intervals after the last frame.
        assert_eq!(started.elapsed(), ping_every * 4);
        let mut pings = 0;
        while let Ok(frame) = far.received.try_recv() {
            assert!(matches!(frame, Message::Ping(_)), "{frame:?}");
            pings += 1;
        }
        assert_eq!(pings, 4);
    }

    #[tokio::test]
    async fn a_gateway_replaced_by_a_newer_connection_is_closed_and_not_reported_lost() {
        let (shared, _stopper) = shared();
        sent_to_gateway(&shared, "conversation-1");
        let (mut client_far, _client) = client(&shared);
        client_far.text(subscribe("conversation-1"));
        assert_eq!(client_far.next_json().await["type"], "subscribed");

        let (mut old, old_task) = gateway(&shared).await;
        let (new, new_task) = gateway(&shared).await;
        assert_eq!(
            old.close().await,
            (CLOSE_PROTOCOL, "replaced by a newer connection".into())
        );
        old_task.await.unwrap();
        // The newer connection is the gateway now; its clients were told nothing.
        assert!(shared.gateways.lock().unwrap().contains_key("g"));
        while let Ok(frame) = client_far.received.try_recv() {
            assert!(
                matches!(frame, Message::Ping(_)),
                "no gateway_lost for a replacement: {frame:?}"
            );
        }

        // When the newer one goes, its clients hear it at once.
        drop(new);
        new_task.await.unwrap();
        let lost = client_far.next_json().await;
        assert_eq!(lost["type"], "gateway_lost");
        assert_eq!(lost["conversation_id"], "conversation-1");
        assert!(!shared.gateways.lock().unwrap().contains_key("g"));
    }

    #[tokio::test]
    async fn the_router_s_stop_closes_sockets_as_going_away_and_waits_for_them() {
        let (shared, stopper) = shared();
        let (mut far, task) = client(&shared);
        drop(shared);
        stopper.stop().await;
        assert_eq!(far.close().await.0, 1001);
        assert!(
            task.is_finished(),
            "stop returned only once the socket let go"
        );
    }
}
