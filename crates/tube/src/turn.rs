//! Relayed candidates: an allocation on a TURN server from each socket, and the datagrams of
//! the relayed path carried through it. The stack sends from a relayed candidate as from any
//! other (its local address is the relayed address); the driver hands those datagrams here,
//! and hands back to the stack what the server relays to us, as if it had arrived on the
//! relayed address. A small state machine over the sans-IO TURN client, like [`crate::gather`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc::crypto::RTCCryptoProvider;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::message::TransactionId;
use rtc::turn::client::{Client, ClientConfig, Event};

/// Datagrams held per peer while the server creates the permission to reach it.
const MAX_HELD: usize = 64;

/// A `turn:` server from the configuration, resolved.
#[derive(Debug, Clone)]
pub(crate) struct TurnServer {
    pub addr: SocketAddr,
    pub url: String,
    pub username: String,
    pub password: String,
}

struct Allocation {
    client: Client,
    socket: SocketAddr,
    server: SocketAddr,
    url: String,
    allocate: TransactionId,
    relayed: Option<SocketAddr>,
    /// Allocated, or given up on.
    settled: bool,
    /// Datagrams for peers whose permission is being created.
    held: HashMap<SocketAddr, VecDeque<BytesMut>>,
}

/// What the TURN side asks of the driver.
pub(crate) enum TurnOutput {
    /// Send from our socket `from` to `to`.
    Send {
        from: SocketAddr,
        to: SocketAddr,
        bytes: BytesMut,
    },
    /// A relayed address was allocated for socket `base` through the server at `url`.
    Allocated {
        base: SocketAddr,
        relayed: SocketAddr,
        url: String,
    },
    /// A datagram from `peer`, relayed to us on `relayed`.
    Received {
        relayed: SocketAddr,
        peer: SocketAddr,
        data: BytesMut,
    },
}

pub(crate) struct Turn {
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
    allocations: Vec<Allocation>,
    /// Servers still being resolved.
    resolving: usize,
}

impl Turn {
    pub fn new() -> Self {
        Self {
            crypto: rtc::crypto::default_provider().ok(),
            allocations: Vec::new(),
            resolving: 0,
        }
    }

    pub fn expect_resolutions(&mut self, n: usize) {
        self.resolving += n;
    }

    /// A server resolved (or not): allocate on it from every socket of its family.
    pub fn resolved(&mut self, now: Instant, server: Option<TurnServer>, sockets: &[SocketAddr]) {
        self.resolving = self.resolving.saturating_sub(1);
        let (Some(server), Some(crypto)) = (server, self.crypto.clone()) else {
            return;
        };
        for &socket in sockets {
            if socket.is_ipv4() != server.addr.is_ipv4() {
                continue;
            }
            let config = ClientConfig {
                stun_serv_addr: String::new(),
                turn_serv_addr: server.addr.to_string(),
                local_addr: socket,
                transport_protocol: TransportProtocol::UDP,
                username: server.username.clone(),
                password: server.password.clone(),
                realm: String::new(),
                software: String::new(),
                rto_in_ms: 0,
                allocation_refresh_interval_cap: None,
            };
            let allocated = Client::new(config, crypto.clone()).and_then(|mut client| {
                let allocate = client.allocate(now)?;
                Ok((client, allocate))
            });
            match allocated {
                Ok((client, allocate)) => self.allocations.push(Allocation {
                    client,
                    socket,
                    server: server.addr,
                    url: server.url.clone(),
                    allocate,
                    relayed: None,
                    settled: false,
                    held: HashMap::new(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, url = %server.url, "cannot start a TURN allocation")
                }
            }
        }
    }

    /// Allocations are done (or failed) and no server is left to resolve.
    pub fn done(&self) -> bool {
        self.resolving == 0 && self.allocations.iter().all(|a| a.settled)
    }

    /// Whether `local` is one of our relayed addresses (datagrams "from" it go through TURN).
    pub fn is_relayed(&self, local: SocketAddr) -> bool {
        self.allocations.iter().any(|a| a.relayed == Some(local))
    }

    /// A datagram from `from` on socket `socket`: consumed if it comes from one of our TURN
    /// servers, otherwise left for the WebRTC stack.
    pub fn handle(
        &mut self,
        now: Instant,
        socket: SocketAddr,
        from: SocketAddr,
        datagram: &BytesMut,
        out: &mut Vec<TurnOutput>,
    ) -> bool {
        let Some(allocation) = self
            .allocations
            .iter_mut()
            .find(|a| a.socket == socket && a.server == from)
        else {
            return false;
        };
        let _ = allocation.client.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: socket,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: datagram.clone(),
        });
        self.drain(now, out);
        true
    }

    /// Send `data` from our relayed address `relayed` to `peer`, creating the permission
    /// first if the server has none for it yet.
    pub fn send(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        peer: SocketAddr,
        data: BytesMut,
        out: &mut Vec<TurnOutput>,
    ) {
        let Some(allocation) = self
            .allocations
            .iter_mut()
            .find(|a| a.relayed == Some(relayed))
        else {
            return;
        };
        let Ok(mut relay) = allocation.client.relay(relayed) else {
            return;
        };
        match relay.send_to(now, &data, peer) {
            Ok(()) => {}
            Err(rtc::shared::error::Error::ErrNoPermission) => {
                let held = allocation.held.entry(peer).or_default();
                if held.is_empty() {
                    if let Err(e) = relay.create_permission(now, peer) {
                        tracing::debug!(error = %e, %peer, "cannot ask for a TURN permission");
                    }
                }
                if held.len() < MAX_HELD {
                    held.push_back(data);
                }
            }
            Err(e) => tracing::trace!(error = %e, %peer, "TURN send failed"),
        }
        self.drain(now, out);
    }

    /// Timers: retransmissions, refreshes, permission renewals.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<TurnOutput>) {
        for allocation in &mut self.allocations {
            if allocation.client.poll_timeout().is_some_and(|t| t <= now) {
                let _ = allocation.client.handle_timeout(now);
            }
        }
        self.drain(now, out);
    }

    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.allocations
            .iter_mut()
            .filter_map(|a| a.client.poll_timeout())
            .min()
    }

    /// Release every allocation (a Refresh with lifetime 0), for a clean goodbye.
    pub fn close(&mut self, now: Instant, out: &mut Vec<TurnOutput>) {
        for allocation in &mut self.allocations {
            if let Some(relayed) = allocation.relayed {
                if let Ok(mut relay) = allocation.client.relay(relayed) {
                    let _ = relay.close(now);
                }
            }
        }
        self.drain(now, out);
    }

    /// Events and transmits of every client, turned into outputs.
    fn drain(&mut self, now: Instant, out: &mut Vec<TurnOutput>) {
        for allocation in &mut self.allocations {
            while let Some(event) = allocation.client.poll_event() {
                match event {
                    Event::AllocateResponse(id, relayed) if id == allocation.allocate => {
                        allocation.relayed = Some(relayed);
                        allocation.settled = true;
                        out.push(TurnOutput::Allocated {
                            base: allocation.socket,
                            relayed,
                            url: allocation.url.clone(),
                        });
                    }
                    Event::AllocateError(id, e) if id == allocation.allocate => {
                        tracing::warn!(error = %e, url = %allocation.url, "TURN allocation refused");
                        allocation.settled = true;
                    }
                    Event::TransactionTimeout(id) if id == allocation.allocate => {
                        tracing::warn!(url = %allocation.url, "no answer from the TURN server");
                        allocation.settled = true;
                    }
                    Event::CreatePermissionResponse(_, peer) => {
                        if let (Some(relayed), Some(held)) =
                            (allocation.relayed, allocation.held.remove(&peer))
                        {
                            if let Ok(mut relay) = allocation.client.relay(relayed) {
                                for data in held {
                                    let _ = relay.send_to(now, &data, peer);
                                }
                            }
                        }
                    }
                    Event::CreatePermissionError(_, e) => {
                        tracing::debug!(error = %e, "TURN permission refused");
                    }
                    Event::DataIndicationOrChannelData(_, peer, data) => {
                        if let Some(relayed) = allocation.relayed {
                            out.push(TurnOutput::Received {
                                relayed,
                                peer,
                                data,
                            });
                        }
                    }
                    _ => {}
                }
            }
            while let Some(transmit) = allocation.client.poll_write() {
                out.push(TurnOutput::Send {
                    from: allocation.socket,
                    to: transmit.transport.peer_addr,
                    bytes: transmit.message,
                });
            }
        }
    }
}
