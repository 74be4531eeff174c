//! The fleet: routers that share one Redis, so that a client and the gateway it launches
//! through may be connected to different routers (docs/PROTOCOL.md section "Fleet").
//!
//! What lives in Redis (every key under the configured prefix `P`, `sallyport` by default):
//!
//! | key or channel | holds | expiry |
//! |---|---|---|
//! | `P:gw:{gateway}` | the router holding the gateway's socket: `{"router", "connection"}` | 15 s, refreshed every 5 s |
//! | `P:res:{gateway}` | the resources the gateway last announced (JSON list) | 7 days, refreshed with the above |
//! | `P:conv:{conversation}` | hash: `client` (owner), `gateway`, `router` (the subscriber's) | 600 s after the last use |
//! | `P:stream:{conversation}` | list: the gateway's streamed messages not yet delivered (at most 64) | 600 s |
//! | `P:reports` | stream: every launch report a router of the fleet received (about `max_reports` entries) | - |
//! | channel `P:router:{router}` | `forward`, `reply` and `wake` messages to one router | - |
//! | channel `P:fleet` | `gateway_online` and `gateway_lost`, to every router | - |
//!
//! Order: a gateway's streamed messages go through one writer task per router, in the order
//! the gateway sent them; each is appended to its conversation's list and the subscriber's
//! router is woken; that router drains the list in its one subscriber task. So messages
//! arrive in order, and those sent before the client subscribed wait in the list.
//!
//! Redis down: requests that need it fail with `fleet_unavailable` (503, transient: the
//! client's offer retry tries again), the router keeps serving what it holds itself, and
//! every connection to Redis is made again with a backoff, the presence keys rewritten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use sallyport_protocol::{AnnouncedResource, ClientWsEvent, Code, GatewayOutcome, RouterToGateway};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::{RouterError, Shared};

/// How long a gateway's presence key lives without a refresh: a router that dies takes its
/// gateways off the fleet's list within this.
const PRESENCE_TTL_SECS: u64 = 15;
const PRESENCE_REFRESH: Duration = Duration::from_secs(5);
const RESOURCES_TTL_SECS: u64 = 7 * 24 * 3600;
/// The conversation's records expire like the router's own idle sweep.
const CONVERSATION_TTL_SECS: u64 = 600;
const STREAM_CAP: usize = 64;
/// A Redis command that takes longer than this fails (a stuck Redis must not hold requests).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Writes waiting for Redis, at most: past it (Redis away or stuck) a write is dropped and
/// logged rather than held in memory.
const WRITE_QUEUE: usize = 4096;
/// How often a router reads the fleet's new launch reports, and how many at a time.
const REPORTS_POLL: Duration = Duration::from_secs(1);
const REPORTS_BATCH: usize = 256;
/// How often a router checks that its subscription still hears its own channel, and how long
/// the echo may take: a connection to Redis that went silent without closing (a host or a
/// firewall gone) is replaced within two of these.
const SUBSCRIPTION_CHECK: Duration = Duration::from_secs(10);

/// A message on a router's own channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToRouter {
    /// Send `forward` to `gateway` (connected here) and publish its reply to `origin`.
    Forward {
        origin: String,
        request_id: u64,
        gateway: String,
        timeout_ms: u64,
        forward: RouterToGateway,
    },
    Reply {
        request_id: u64,
        outcome: GatewayOutcome,
    },
    /// Messages wait in the conversation's list.
    Wake { conversation_id: String },
    /// A router's check of its own subscription: it publishes this to its own channel and
    /// expects to hear it back.
    Echo { nonce: u64 },
}

/// A message to every router.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToFleet {
    /// The gateway's socket is now on `router`, its connection `epoch` (its `hello`'s):
    /// another router holding an older one closes it.
    GatewayOnline {
        gateway: String,
        router: String,
        connection: u64,
        /// Absent when the gateway or the router is of an earlier version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// The gateway's socket dropped and no newer one took its place.
    GatewayLost { gateway: String, router: String },
}

/// The presence key's value.
#[derive(Debug, Serialize, Deserialize)]
struct Presence {
    router: String,
    connection: u64,
}

/// What the writer task does, in order.
pub(crate) enum Write {
    Present {
        gateway: String,
        connection: u64,
        epoch: Option<u64>,
        resources: Vec<AnnouncedResource>,
    },
    Gone {
        gateway: String,
        connection: u64,
    },
    Stream {
        gateway: String,
        conversation_id: String,
        event: String,
    },
    Detach {
        conversation_id: String,
    },
    Forget {
        conversation_id: String,
    },
    /// A launch report kept here, for the other routers (`P:reports`).
    Report {
        entry: String,
        max_len: u64,
    },
}

/// A forward sent to a gateway on another router, waiting for its reply.
struct RemoteWait {
    gateway: String,
    via: String,
    reply: oneshot::Sender<GatewayOutcome>,
}

pub(crate) struct Fleet {
    pub(crate) router_id: String,
    prefix: String,
    client: redis::Client,
    /// Made once Redis first answers (the router starts without it), then reconnecting by
    /// itself after a connection closes; replaced when a command times out (a connection that
    /// went silent without closing is never given up by the manager itself).
    conn: Mutex<Option<ConnectionManager>>,
    /// Held while a silent connection is being replaced, so that only one caller does it.
    replacing: tokio::sync::Mutex<()>,
    writes: mpsc::Sender<Write>,
    /// Forwards this router sent to other routers, by request id.
    remote: Mutex<HashMap<u64, RemoteWait>>,
    /// The connection number of each gateway connected here (for the presence refresh).
    local: Mutex<HashMap<String, (u64, Vec<AnnouncedResource>)>>,
    /// Held while a conversation's list is drained and delivered (see `drain_to`).
    draining: tokio::sync::Mutex<()>,
}

impl Fleet {
    /// Check the URL (and read the CA file of a `rediss://` one); connections are made in the
    /// background by [`Fleet::run`].
    pub(crate) fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        router_id: String,
        prefix: String,
    ) -> Result<(Arc<Fleet>, mpsc::Receiver<Write>), RouterError> {
        let client = match ca_file {
            None => redis::Client::open(url),
            Some(ca_file) => {
                let root_cert = std::fs::read(ca_file).map_err(|e| {
                    RouterError::Config(format!(
                        "redis_ca_file: cannot read {}: {e}",
                        ca_file.display()
                    ))
                })?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
        }
        .map_err(|e| {
            RouterError::Config(format!(
                "redis_url {:?}: {e}",
                crate::config::redacted_redis_url(url)
            ))
        })?;
        if url.starts_with("rediss://") {
            // The Redis client builds its TLS settings with the process's default crypto
            // provider; the router's own TLS names its provider each time.
            sallyport_ops::tls::install_default_provider();
        }
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let fleet = Arc::new(Fleet {
            router_id,
            prefix,
            client,
            conn: Mutex::new(None),
            replacing: tokio::sync::Mutex::new(()),
            writes,
            remote: Mutex::new(HashMap::new()),
            local: Mutex::new(HashMap::new()),
            draining: tokio::sync::Mutex::new(()),
        });
        Ok((fleet, rx))
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    fn router_channel(&self, router: &str) -> String {
        format!("{}:router:{router}", self.prefix)
    }

    fn fleet_channel(&self) -> String {
        format!("{}:fleet", self.prefix)
    }

    fn reports_stream(&self) -> String {
        format!("{}:reports", self.prefix)
    }

    /// Queue a launch report this router kept for the fleet's stream, which keeps about
    /// `max_len` of them (as many as a router's store). In the order of the writes, without
    /// holding the request that brought it.
    pub(crate) fn publish_report(&self, report: &crate::reports::SharedReport, max_len: u64) {
        let entry = serde_json::to_string(report).expect("a report serializes");
        self.queue(Write::Report { entry, max_len });
    }

    /// Drop the fleet's reports of launches that started before `cutoff_ms` (the retention),
    /// by entry id, which is the time the entry was added.
    async fn trim_reports(&self, cutoff_ms: u64) -> Result<(), RouterError> {
        let stream = self.reports_stream();
        self.call(|mut c| async move {
            redis::cmd("XTRIM")
                .arg(stream)
                .arg("MINID")
                .arg("~")
                .arg(cutoff_ms)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// The fleet's launch reports after `position`, at most [`REPORTS_BATCH`]: each entry's
    /// id and its report (`None` for an entry that does not read as one: whatever is in
    /// Redis, nothing in it stops the copy).
    async fn read_reports(
        &self,
        position: &str,
    ) -> Result<Vec<(String, Option<crate::reports::SharedReport>)>, RouterError> {
        let stream = self.reports_stream();
        let position = position.to_owned();
        let reply: redis::Value = self
            .call(|mut c| async move {
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(REPORTS_BATCH)
                    .arg("STREAMS")
                    .arg(stream)
                    .arg(position)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(stream_entries(reply)
            .into_iter()
            .map(|(id, fields)| {
                let report = fields
                    .chunks_exact(2)
                    .find(|pair| pair[0] == b"report")
                    .and_then(|pair| serde_json::from_slice(&pair[1]).ok());
                (id, report)
            })
            .collect())
    }

    async fn conn(&self) -> Result<ConnectionManager, RouterError> {
        self.conn
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| RouterError::FleetUnavailable("not connected to Redis yet".into()))
    }

    /// A connection manager with the fleet's deadlines.
    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_max_delay(RECONNECT_MAX);
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    /// Run a command with the deadline; any failure reads as `fleet_unavailable`. A command
    /// that timed out replaces the connection.
    async fn call<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> Result<T, RouterError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        let error = match tokio::time::timeout(REDIS_TIMEOUT, f(conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if !e.is_timeout() => {
                return Err(RouterError::FleetUnavailable(e.to_string()))
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("Redis did not answer within {} s", REDIS_TIMEOUT.as_secs()),
        };
        self.replace_silent_connection().await;
        Err(RouterError::FleetUnavailable(error))
    }

    /// Make a new connection in place of one that went silent (one caller at a time; the
    /// others fail meanwhile as they would have anyway).
    async fn replace_silent_connection(&self) {
        let Ok(_replacing) = self.replacing.try_lock() else {
            return;
        };
        match tokio::time::timeout(REDIS_TIMEOUT, self.connect()).await {
            Ok(Ok(conn)) => {
                *self.conn.lock().unwrap() = Some(conn);
                tracing::warn!("fleet: a Redis command timed out; connected to Redis again");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "fleet: Redis unreachable"),
            Err(_) => tracing::warn!("fleet: Redis did not accept a new connection in time"),
        }
    }

    /// For each of `gateways`, in one read: the router holding its socket (`None`: connected
    /// nowhere), and what it last announced.
    pub(crate) async fn gateways(
        &self,
        gateways: &[String],
    ) -> Result<Vec<(Option<String>, Option<Vec<AnnouncedResource>>)>, RouterError> {
        if gateways.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = gateways
            .iter()
            .flat_map(|g| [self.key("gw", g), self.key("res", g)])
            .collect();
        let values: Vec<Option<String>> =
            self.call(|mut c| async move { c.mget(keys).await }).await?;
        Ok(values
            .chunks(2)
            .map(|pair| {
                let router = pair[0]
                    .as_deref()
                    .and_then(|p| serde_json::from_str::<Presence>(p).ok())
                    .map(|p| p.router);
                let resources = pair[1]
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok());
                (router, resources)
            })
            .collect())
    }

    /// Claim `conversation_id` for `client` across the fleet, binding it to `gateway` and/or
    /// to this router as the subscriber's when given. Another client's id is `forbidden`.
    pub(crate) async fn claim(
        &self,
        conversation_id: &str,
        client: &str,
        gateway: Option<&str>,
        subscriber_here: bool,
    ) -> Result<(), RouterError> {
        let script = redis::Script::new(
            r"
            local owner = redis.call('HGET', KEYS[1], 'client')
            if owner and owner ~= ARGV[1] then return 0 end
            redis.call('HSET', KEYS[1], 'client', ARGV[1])
            if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'gateway', ARGV[3]) end
            if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'router', ARGV[4]) end
            redis.call('EXPIRE', KEYS[1], ARGV[2])
            return 1",
        );
        let key = self.key("conv", conversation_id);
        let router = if subscriber_here {
            self.router_id.clone()
        } else {
            String::new()
        };
        let gateway = gateway.unwrap_or_default().to_owned();
        let client = client.to_owned();
        let claimed: i64 = self
            .call(|mut c| async move {
                script
                    .key(key)
                    .arg(client)
                    .arg(CONVERSATION_TTL_SECS)
                    .arg(gateway)
                    .arg(router)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if claimed == 0 {
            return Err(RouterError::Forbidden(
                "conversation belongs to another client".into(),
            ));
        }
        Ok(())
    }

    /// The gateway a conversation is bound to, fleet-wide.
    async fn conversation_gateway(&self, conversation_id: &str) -> Option<String> {
        let key = self.key("conv", conversation_id);
        self.call(|mut c| async move { c.hget(key, "gateway").await })
            .await
            .ok()
            .flatten()
    }

    /// Deliver what waits in a conversation's list to its subscriber here. One drain at a
    /// time: two (a wake and a subscribe) must not hand the socket their halves out of order.
    pub(crate) async fn drain_to(&self, shared: &Shared, conversation_id: &str) {
        let _one = self.draining.lock().await;
        let events = self.drain(conversation_id).await;
        shared.deliver(conversation_id, events);
    }

    /// The messages waiting for a conversation, taken off its list in order.
    async fn drain(&self, conversation_id: &str) -> Vec<ClientWsEvent> {
        let script = redis::Script::new(
            r"
            local items = redis.call('LRANGE', KEYS[1], 0, -1)
            redis.call('DEL', KEYS[1])
            return items",
        );
        let key = self.key("stream", conversation_id);
        let items: Vec<String> = self
            .call(|mut c| async move { script.key(key).invoke_async(&mut c).await })
            .await
            .unwrap_or_default();
        items
            .iter()
            .filter_map(|item| serde_json::from_str(item).ok())
            .collect()
    }

    /// Send a forward to the router holding `gateway`; the reply comes back on this router's
    /// channel. `controller_down` when nobody holds it (or its router is gone).
    pub(crate) async fn forward_remote(
        &self,
        router: &str,
        gateway: &str,
        request_id: u64,
        timeout_ms: u64,
        forward: RouterToGateway,
    ) -> Result<oneshot::Receiver<GatewayOutcome>, RouterError> {
        let (tx, rx) = oneshot::channel();
        self.remote.lock().unwrap().insert(
            request_id,
            RemoteWait {
                gateway: gateway.to_owned(),
                via: router.to_owned(),
                reply: tx,
            },
        );
        let message = ToRouter::Forward {
            origin: self.router_id.clone(),
            request_id,
            gateway: gateway.to_owned(),
            timeout_ms,
            forward,
        };
        let receivers = self.publish(&self.router_channel(router), &message).await;
        match receivers {
            Ok(n) if n > 0 => Ok(rx),
            // Nobody listens on that router's channel: it is gone.
            Ok(_) => {
                self.remote.lock().unwrap().remove(&request_id);
                Err(RouterError::ControllerDown(gateway.to_owned()))
            }
            Err(e) => {
                self.remote.lock().unwrap().remove(&request_id);
                Err(e)
            }
        }
    }

    /// Forget a remote forward whose handler ended (answered, timed out, or hung up).
    pub(crate) fn forget_remote(&self, request_id: u64) {
        self.remote.lock().unwrap().remove(&request_id);
    }

    async fn publish<T: Serialize>(&self, channel: &str, message: &T) -> Result<i64, RouterError> {
        let text = serde_json::to_string(message).expect("fleet messages serialize");
        let channel = channel.to_owned();
        self.call(|mut c| async move { c.publish(channel, text).await })
            .await
    }

    fn queue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            tracing::warn!("fleet: the write queue to Redis is full; a write is dropped");
        }
    }

    /// A gateway connected here on its connection `epoch` (or announced again).
    pub(crate) fn gateway_present(
        &self,
        gateway: &str,
        connection: u64,
        epoch: Option<u64>,
        resources: Vec<AnnouncedResource>,
    ) {
        self.local
            .lock()
            .unwrap()
            .insert(gateway.to_owned(), (connection, resources.clone()));
        self.queue(Write::Present {
            gateway: gateway.to_owned(),
            connection,
            epoch,
            resources,
        });
    }

    /// A gateway's socket here closed, whatever the reason: its presence is no longer this
    /// router's to refresh.
    pub(crate) fn gateway_closed(&self, gateway: &str, connection: u64) {
        let mut local = self.local.lock().unwrap();
        if local.get(gateway).is_some_and(|(c, _)| *c == connection) {
            local.remove(gateway);
        }
    }

    /// A gateway's socket here dropped and no newer one of it took its place here.
    pub(crate) fn gateway_gone(&self, gateway: &str, connection: u64) {
        self.gateway_closed(gateway, connection);
        self.queue(Write::Gone {
            gateway: gateway.to_owned(),
            connection,
        });
    }

    /// A gateway's streamed message for a conversation whose subscriber is not here.
    pub(crate) fn stream(&self, gateway: &str, conversation_id: &str, event: &ClientWsEvent) {
        self.queue(Write::Stream {
            gateway: gateway.to_owned(),
            conversation_id: conversation_id.to_owned(),
            event: serde_json::to_string(event).expect("events serialize"),
        });
    }

    /// The subscriber's socket here dropped: the conversation waits for it elsewhere.
    pub(crate) fn detach(&self, conversation_id: &str) {
        self.queue(Write::Detach {
            conversation_id: conversation_id.to_owned(),
        });
    }

    /// The conversation is over (closed or unsubscribed).
    pub(crate) fn forget(&self, conversation_id: &str) {
        self.queue(Write::Forget {
            conversation_id: conversation_id.to_owned(),
        });
    }

    async fn write(&self, write: Write) -> Result<(), RouterError> {
        match write {
            Write::Report { entry, max_len } => {
                let stream = self.reports_stream();
                let router = self.router_id.clone();
                self.call(|mut c| async move {
                    redis::cmd("XADD")
                        .arg(stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(max_len)
                        .arg("*")
                        .arg("router")
                        .arg(router)
                        .arg("report")
                        .arg(entry)
                        .query_async::<String>(&mut c)
                        .await
                })
                .await?;
            }
            Write::Present {
                gateway,
                connection,
                epoch,
                resources,
            } => {
                self.write_presence(&gateway, connection, &resources)
                    .await?;
                let online = ToFleet::GatewayOnline {
                    gateway,
                    router: self.router_id.clone(),
                    connection,
                    epoch,
                };
                self.publish(&self.fleet_channel(), &online).await?;
            }
            Write::Gone {
                gateway,
                connection,
            } => {
                // Only if the key still names this connection: a newer one elsewhere stays.
                let script = redis::Script::new(
                    r"
                    if redis.call('GET', KEYS[1]) == ARGV[1] then
                        redis.call('DEL', KEYS[1])
                        return 1
                    end
                    return 0",
                );
                let key = self.key("gw", &gateway);
                let mine = self.presence(connection);
                let removed: i64 = self
                    .call(
                        |mut c| async move { script.key(key).arg(mine).invoke_async(&mut c).await },
                    )
                    .await?;
                if removed == 1 {
                    let lost = ToFleet::GatewayLost {
                        gateway,
                        router: self.router_id.clone(),
                    };
                    self.publish(&self.fleet_channel(), &lost).await?;
                }
            }
            Write::Stream {
                gateway,
                conversation_id,
                event,
            } => {
                let script = redis::Script::new(
                    r"
                    local gw = redis.call('HGET', KEYS[1], 'gateway')
                    if not gw then return -1 end
                    if gw ~= ARGV[1] then return -2 end
                    redis.call('RPUSH', KEYS[2], ARGV[2])
                    redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
                    redis.call('EXPIRE', KEYS[2], ARGV[4])
                    redis.call('EXPIRE', KEYS[1], ARGV[4])
                    local router = redis.call('HGET', KEYS[1], 'router')
                    if router then redis.call('PUBLISH', ARGV[5] .. router, ARGV[6]) end
                    return 1",
                );
                let wake = serde_json::to_string(&ToRouter::Wake {
                    conversation_id: conversation_id.clone(),
                })
                .expect("fleet messages serialize");
                let keys = (
                    self.key("conv", &conversation_id),
                    self.key("stream", &conversation_id),
                );
                let channel_prefix = format!("{}:router:", self.prefix);
                let outcome: i64 = self
                    .call(|mut c| async move {
                        script
                            .key(keys.0)
                            .key(keys.1)
                            .arg(gateway)
                            .arg(event)
                            .arg(STREAM_CAP)
                            .arg(CONVERSATION_TTL_SECS)
                            .arg(channel_prefix)
                            .arg(wake)
                            .invoke_async(&mut c)
                            .await
                    })
                    .await?;
                if outcome == -1 {
                    return Err(RouterError::Gateway {
                        code: Code::UnknownConversation,
                        message: conversation_id,
                    });
                }
                if outcome == -2 {
                    return Err(RouterError::Forbidden(conversation_id));
                }
            }
            Write::Detach { conversation_id } => {
                let script = redis::Script::new(
                    r"
                    if redis.call('HGET', KEYS[1], 'router') == ARGV[1] then
                        redis.call('HDEL', KEYS[1], 'router')
                    end
                    return 1",
                );
                let key = self.key("conv", &conversation_id);
                let me = self.router_id.clone();
                let _: i64 = self
                    .call(|mut c| async move { script.key(key).arg(me).invoke_async(&mut c).await })
                    .await?;
            }
            Write::Forget { conversation_id } => {
                let keys = [
                    self.key("conv", &conversation_id),
                    self.key("stream", &conversation_id),
                ];
                let _: i64 = self.call(|mut c| async move { c.del(&keys).await }).await?;
            }
        }
        Ok(())
    }

    fn presence(&self, connection: u64) -> String {
        serde_json::to_string(&Presence {
            router: self.router_id.clone(),
            connection,
        })
        .expect("presence serializes")
    }

    async fn write_presence(
        &self,
        gateway: &str,
        connection: u64,
        resources: &[AnnouncedResource],
    ) -> Result<(), RouterError> {
        let presence = (self.key("gw", gateway), self.presence(connection));
        let announced = (
            self.key("res", gateway),
            serde_json::to_string(resources).expect("resources serialize"),
        );
        self.call(|mut c| async move {
            redis::pipe()
                .set_ex(presence.0, presence.1, PRESENCE_TTL_SECS)
                .ignore()
                .set_ex(announced.0, announced.1, RESOURCES_TTL_SECS)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }
}

/// The entries of an `XREAD` reply for one stream: each entry's id and its fields and values
/// in order. Anything else in the reply (a shape this does not expect, ids that are not text)
/// is left out; a RESP3 map reply reads like the RESP2 array.
fn stream_entries(reply: redis::Value) -> Vec<(String, Vec<Vec<u8>>)> {
    use redis::Value;
    fn items(value: Value) -> Vec<Value> {
        match value {
            Value::Array(items) | Value::Set(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        }
    }
    fn bytes(value: Value) -> Option<Vec<u8>> {
        match value {
            Value::BulkString(b) => Some(b),
            Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.into_bytes()),
            _ => None,
        }
    }
    let mut out = Vec::new();
    // RESP2: [[stream, [entry...]]]; RESP3: {stream: [entry...]}.
    let streams = match reply {
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        other => items(other)
            .into_iter()
            .filter_map(|stream| items(stream).into_iter().nth(1))
            .collect::<Vec<_>>(),
    };
    for entries in streams {
        for entry in items(entries) {
            let mut parts = items(entry).into_iter();
            let (Some(id), Some(fields)) = (parts.next().and_then(bytes), parts.next()) else {
                continue;
            };
            let Ok(id) = String::from_utf8(id) else {
                continue;
            };
            let fields = items(fields).into_iter().filter_map(bytes).collect();
            out.push((id, fields));
        }
    }
    out
}

/// The fleet's background work, for the router's life: connect (again and again), keep the
/// presence keys fresh, write in order, and hear this router's and the fleet's channels.
pub(crate) async fn run(
    shared: Weak<Shared>,
    fleet: Arc<Fleet>,
    writes: mpsc::Receiver<Write>,
    mut shutdown: sallyport_kit::Shutdown,
) {
    let connect = async {
        let mut backoff = Duration::from_millis(100);
        loop {
            match fleet.connect().await {
                Ok(conn) => {
                    *fleet.conn.lock().unwrap() = Some(conn);
                    tracing::info!(router = %fleet.router_id, "fleet: connected to Redis");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "fleet: Redis unreachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
    };
    tokio::select! {
        _ = connect => {}
        _ = shutdown.recv() => return,
    }
    tokio::select! {
        _ = writer(&fleet, writes) => {}
        _ = refresh(&shared, &fleet) => {}
        _ = listen(&shared, &fleet) => {}
        _ = copy_reports(&shared, &fleet) => {}
        _ = shutdown.recv() => {}
    }
}

/// Copy the fleet's launch reports into this router's store, so that support staff see every
/// router's launches from any router: every second, from where the store says it got to
/// (a router that was away catches up on what the stream still holds). Nothing to do when
/// this router keeps no reports.
async fn copy_reports(shared: &Weak<Shared>, fleet: &Fleet) {
    let stream = fleet.reports_stream();
    let mut position = None;
    let mut tick = tokio::time::interval(REPORTS_POLL);
    let mut ticks: u64 = 0;
    // The last failure, logged once (Redis away fails every second until it is back).
    let mut failing: Option<String> = None;
    loop {
        tick.tick().await;
        ticks += 1;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.reports.enabled() {
            drop(shared);
            return std::future::pending().await;
        }
        // Once a minute, what is past the retention leaves Redis too.
        if ticks % 60 == 1 {
            if let Err(e) = fleet.trim_reports(shared.reports.retention_cutoff()).await {
                tracing::debug!(error = %e, "fleet: launch reports not trimmed");
            }
        }
        loop {
            let from = match &position {
                Some(from) => from,
                None => match shared.reports.fleet_position(&stream).await {
                    Ok(from) => position.insert(from),
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet: cannot read the reports' position");
                        break;
                    }
                },
            };
            let entries = match fleet.read_reports(from).await {
                Ok(entries) => {
                    failing = None;
                    entries
                }
                Err(e) => {
                    let error = e.to_string();
                    if failing.as_ref() != Some(&error) {
                        tracing::warn!(%error, "fleet: launch reports not read");
                        failing = Some(error);
                    }
                    break;
                }
            };
            let Some((last, _)) = entries.last() else {
                break;
            };
            let last = last.clone();
            let full = entries.len() >= REPORTS_BATCH;
            let reports = entries
                .into_iter()
                .filter_map(|(id, report)| {
                    if report.is_none() {
                        tracing::warn!(%id, "fleet: skipped an entry that is not a launch report");
                    }
                    report
                })
                .collect();
            if let Err(e) = shared
                .reports
                .copy_from_fleet(&stream, reports, last.clone())
                .await
            {
                tracing::warn!(error = %e, "fleet: launch reports not kept");
                break;
            }
            position = Some(last);
            if !full {
                break;
            }
        }
    }
}

async fn writer(fleet: &Fleet, mut writes: mpsc::Receiver<Write>) {
    while let Some(write) = writes.recv().await {
        if let Err(e) = fleet.write(write).await {
            tracing::warn!(error = %e, "fleet: a write to Redis failed");
        }
    }
}

/// Rewrite the presence of every gateway connected here, well within its expiry (and after
/// a Redis restart that lost them).
async fn refresh(shared: &Weak<Shared>, fleet: &Fleet) {
    let mut tick = tokio::time::interval(PRESENCE_REFRESH);
    loop {
        tick.tick().await;
        // A conversation with a subscriber here lives as long as its socket, as on a single
        // router, however quiet its signalling.
        let subscribed = shared
            .upgrade()
            .map(|s| s.subscribed_conversations())
            .unwrap_or_default();
        if !subscribed.is_empty() {
            let keys: Vec<String> = subscribed.iter().map(|c| fleet.key("conv", c)).collect();
            let renewed = fleet
                .call(|mut c| async move {
                    let mut pipe = redis::pipe();
                    for key in keys {
                        pipe.expire(key, CONVERSATION_TTL_SECS as i64).ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
            if let Err(e) = renewed {
                tracing::warn!(error = %e, "fleet: conversations not renewed");
            }
        }
        let local: Vec<_> = fleet
            .local
            .lock()
            .unwrap()
            .iter()
            .map(|(g, (c, r))| (g.clone(), *c, r.clone()))
            .collect();
        for (gateway, connection, resources) in local {
            if let Err(e) = fleet.write_presence(&gateway, connection, &resources).await {
                tracing::warn!(error = %e, %gateway, "fleet: presence not refreshed");
                break;
            }
        }
    }
}

/// Hear this router's channel and the fleet's, subscribing again whenever the connection
/// drops.
async fn listen(shared: &Weak<Shared>, fleet: &Arc<Fleet>) {
    let mut backoff = Duration::from_millis(100);
    // Numbers this router's echoes (for its log and Redis's MONITOR; any message heard
    // proves the subscription alive).
    let mut echoes: u64 = 0;
    loop {
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT, fleet.client.get_async_pubsub()).await;
        let mut pubsub = match pubsub {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "fleet: cannot subscribe");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        let channels = [
            fleet.router_channel(&fleet.router_id),
            fleet.fleet_channel(),
        ];
        // Bounded like every command: a connection that went silent at once is let go.
        let subscribed = tokio::time::timeout(REDIS_TIMEOUT, pubsub.subscribe(&channels)).await;
        if !matches!(subscribed, Ok(Ok(()))) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RECONNECT_MAX);
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::info!(router = %fleet.router_id, "fleet: subscribed");
        // Wakes published while this router was not listening are lost: look at the lists of
        // its subscribers' conversations once now.
        if let Some(shared) = shared.upgrade() {
            for conversation_id in shared.subscribed_conversations() {
                fleet.drain_to(&shared, &conversation_id).await;
            }
        }
        let mut messages = pubsub.into_on_message();
        let mut check = tokio::time::interval(SUBSCRIPTION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        // The echo published and not heard back yet; anything heard since clears it.
        let mut awaiting: Option<u64> = None;
        loop {
            let message = tokio::select! {
                // Messages first: a check never overtakes what already arrived.
                biased;
                message = messages.next() => message,
                _ = check.tick() => {
                    if awaiting.is_some() {
                        tracing::warn!("fleet: the subscription did not hear its own echo");
                        break;
                    }
                    echoes += 1;
                    let nonce = echoes;
                    match fleet.publish(&channels[0], &ToRouter::Echo { nonce }).await {
                        Ok(0) => {
                            tracing::warn!("fleet: Redis has no subscription of this router");
                            break;
                        }
                        Ok(_) => awaiting = Some(nonce),
                        // Redis away: nothing learnt about the subscription; asked again later.
                        Err(e) => tracing::debug!(error = %e, "fleet: echo not published"),
                    }
                    continue;
                }
            };
            let Some(message) = message else {
                break;
            };
            awaiting = None;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == channels[1] {
                match serde_json::from_slice::<ToFleet>(payload) {
                    Ok(event) => on_fleet_event(&shared, fleet, event).await,
                    Err(e) => tracing::warn!(error = %e, "fleet: unreadable fleet message"),
                }
            } else {
                match serde_json::from_slice::<ToRouter>(payload) {
                    Ok(ToRouter::Echo { .. }) => {}
                    Ok(message) => on_router_message(&shared, fleet, message).await,
                    Err(e) => tracing::warn!(error = %e, "fleet: unreadable router message"),
                }
            }
        }
        tracing::warn!("fleet: subscription lost; subscribing again");
    }
}

async fn on_router_message(shared: &Arc<Shared>, fleet: &Arc<Fleet>, message: ToRouter) {
    match message {
        ToRouter::Forward {
            origin,
            request_id,
            gateway,
            timeout_ms,
            forward,
        } => {
            // Answered in its own task: a slow gateway must not hold this channel.
            let shared = shared.clone();
            let fleet = fleet.clone();
            tokio::spawn(async move {
                let outcome = shared
                    .forward_local(&gateway, timeout_ms, forward)
                    .await
                    .unwrap_or_else(|e| GatewayOutcome::Error {
                        code: e.code(),
                        message: e.to_string(),
                    });
                let reply = ToRouter::Reply {
                    request_id,
                    outcome,
                };
                if let Err(e) = fleet.publish(&fleet.router_channel(&origin), &reply).await {
                    tracing::warn!(error = %e, %origin, "fleet: reply not sent");
                }
            });
        }
        ToRouter::Reply {
            request_id,
            outcome,
        } => {
            if let Some(wait) = fleet.remote.lock().unwrap().remove(&request_id) {
                let _ = wait.reply.send(outcome);
            }
        }
        ToRouter::Wake { conversation_id } => {
            // A subscriber that left meanwhile leaves the list for its next socket.
            if shared.subscribed_here(&conversation_id) {
                fleet.drain_to(shared, &conversation_id).await;
            }
        }
        // Another router's echo, or one of ours from an earlier subscription: nothing to do.
        ToRouter::Echo { .. } => {}
    }
}

async fn on_fleet_event(shared: &Arc<Shared>, fleet: &Arc<Fleet>, event: ToFleet) {
    match event {
        ToFleet::GatewayOnline {
            gateway,
            router,
            connection,
            epoch,
        } => {
            if router == fleet.router_id {
                return;
            }
            // A newer socket elsewhere: an older one here is a connection that did not notice
            // it is gone. A gateway that moved twice quickly: the word of its first move may
            // come last, and the socket here is then the newer one.
            if !shared.replace_gateway(&gateway, epoch) {
                tracing::debug!(%gateway, %router, "fleet: a late gateway_online ignored");
                return;
            }
            fleet.fail_remote(&gateway, |via| via != router);
            tracing::debug!(%gateway, %router, connection, "fleet: gateway online elsewhere");
        }
        ToFleet::GatewayLost { gateway, router } => {
            fleet.fail_remote(&gateway, |via| via == router);
            // Tell this router's subscribers of that gateway's conversations; in a task of its
            // own, so replies and wakes do not wait for these lookups.
            let (shared, fleet) = (shared.clone(), fleet.clone());
            tokio::spawn(async move {
                for conversation_id in shared.subscribed_conversations() {
                    let bound = fleet.conversation_gateway(&conversation_id).await;
                    if bound.as_deref() == Some(gateway.as_str()) {
                        shared.notify_gateway_lost(&conversation_id, &gateway);
                    }
                }
            });
        }
    }
}

impl Fleet {
    /// Answer the waiting forwards to `gateway` sent through a router that no longer holds
    /// it: `controller_down` at once (transient), rather than a timeout.
    fn fail_remote(&self, gateway: &str, stale: impl Fn(&str) -> bool) {
        let mut remote = self.remote.lock().unwrap();
        let ids: Vec<u64> = remote
            .iter()
            .filter(|(_, w)| w.gateway == gateway && stale(&w.via))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(wait) = remote.remove(&id) {
                let _ = wait.reply.send(GatewayOutcome::Error {
                    code: Code::ControllerDown,
                    message: format!("gateway {gateway:?} moved to another router"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn text(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&[u8]]) -> Value {
        Value::Array(vec![
            text(id),
            Value::Array(
                fields
                    .iter()
                    .map(|f| Value::BulkString(f.to_vec()))
                    .collect(),
            ),
        ])
    }

    #[test]
    fn stream_entries_read_resp2_and_resp3_and_skip_what_is_not_an_entry() {
        let entries = vec![
            entry("1-0", &[b"router", b"a", b"report", b"{}"]),
            // Not text, not an entry: left out, the rest read.
            Value::Int(7),
            entry("2-0", &[b"report", &[0xff, 0xfe]]),
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![
            text("sallyport:reports"),
            Value::Array(entries.clone()),
        ])]);
        let resp3 = Value::Map(vec![(text("sallyport:reports"), Value::Array(entries))]);
        for reply in [resp2, resp3] {
            let read = stream_entries(reply);
            let ids: Vec<&str> = read.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids, ["1-0", "2-0"]);
            assert_eq!(read[1].1[1], vec![0xff, 0xfe]);
        }
        assert!(stream_entries(Value::Nil).is_empty());
    }
}
