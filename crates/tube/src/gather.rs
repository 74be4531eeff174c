//! Server-reflexive candidates: a STUN binding request from each IPv4 socket to each STUN
//! server, answered with the address the server saw. The driver owns the sockets, so this is
//! a small state machine it feeds: requests out, responses in, timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc::stun::message::Getter;
use rtc::stun::message::{Message, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc::stun::xoraddr::XorMappedAddress;

use crate::{IceServer, Result, TubeError};

/// First retransmission after this; it doubles each time.
const FIRST_RETRANSMIT: Duration = Duration::from_millis(100);
/// Give up on a server after this long: gathering must not hold a launch.
const GIVE_UP: Duration = Duration::from_millis(1500);

/// A `stun:` URL from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StunServer {
    pub host: String,
    pub port: u16,
}

/// A `turn:` URL from the configuration, with its credentials; resolved later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurnUrl {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

/// Split the configured servers into STUN and TURN, refusing what the tube cannot use.
pub(crate) fn parse_ice_servers(servers: &[IceServer]) -> Result<(Vec<StunServer>, Vec<TurnUrl>)> {
    let mut stun = Vec::new();
    let mut turn = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        server
            .check()
            .map_err(|e| TubeError::Config(format!("ice_servers[{i}]: {e}")))?;
        for url in &server.urls {
            let bad = |why: &str| TubeError::Config(format!("ice_servers[{i}]: {url:?} {why}"));
            let parsed = rtc::ice::url::Url::parse_url(url).map_err(|e| bad(&e.to_string()))?;
            if parsed.is_secure() {
                return Err(bad("uses TLS (stuns:/turns:), which is not supported yet"));
            }
            if parsed.proto.to_string() != "udp" {
                return Err(bad("is not over UDP (only transport=udp is supported)"));
            }
            match parsed.scheme {
                rtc::ice::url::SchemeType::Stun => stun.push(StunServer {
                    host: parsed.host,
                    port: parsed.port,
                }),
                _ => turn.push(TurnUrl {
                    url: url.clone(),
                    host: parsed.host,
                    port: parsed.port,
                    username: server.username.clone().unwrap_or_default(),
                    password: server.credential.clone().unwrap_or_default(),
                }),
            }
        }
    }
    Ok((stun, turn))
}

struct Transaction {
    id: TransactionId,
    socket: SocketAddr,
    server: SocketAddr,
    started: Instant,
    next_send: Instant,
    interval: Duration,
}

/// What the gatherer asks of the driver.
pub(crate) enum GatherOutput {
    /// Send `bytes` from the socket bound to `from` to `to`.
    Send {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The server saw socket `base` as `mapped`.
    Reflexive {
        base: SocketAddr,
        mapped: SocketAddr,
    },
}

#[derive(Default)]
pub(crate) struct Gatherer {
    transactions: Vec<Transaction>,
    /// Server names still being resolved.
    resolving: usize,
}

impl Gatherer {
    pub(crate) fn expect_resolutions(&mut self, n: usize) {
        self.resolving += n;
    }

    /// A server resolved (or failed to): start asking it from every socket of its family.
    pub(crate) fn resolved(
        &mut self,
        now: Instant,
        server: Option<SocketAddr>,
        sockets: &[SocketAddr],
    ) {
        self.resolving = self.resolving.saturating_sub(1);
        let Some(server) = server else { return };
        for &socket in sockets {
            if socket.is_ipv4() == server.is_ipv4() && !socket.ip().is_loopback() {
                self.transactions.push(Transaction {
                    id: TransactionId::new(),
                    socket,
                    server,
                    started: now,
                    next_send: now,
                    interval: FIRST_RETRANSMIT,
                });
            }
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.resolving == 0 && self.transactions.is_empty()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.transactions.iter().map(|t| t.next_send).min()
    }

    /// Requests due at `now`, and servers given up on.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<GatherOutput>) {
        self.transactions
            .retain(|t| now.duration_since(t.started) < GIVE_UP);
        for t in &mut self.transactions {
            if t.next_send <= now {
                let mut request = Message::new();
                if request
                    .build(&[Box::new(BINDING_REQUEST), Box::new(t.id)])
                    .is_ok()
                {
                    out.push(GatherOutput::Send {
                        from: t.socket,
                        to: t.server,
                        bytes: request.raw.clone(),
                    });
                }
                t.next_send = now + t.interval;
                t.interval *= 2;
            }
        }
    }

    /// A datagram from `from` to `socket`: consumed (and maybe a candidate) if it answers one
    /// of our requests, otherwise left for the WebRTC stack.
    pub(crate) fn handle(
        &mut self,
        socket: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<GatherOutput>,
    ) -> bool {
        if self.transactions.is_empty() || datagram.len() < 20 || datagram[0] > 1 {
            return false;
        }
        let Some(index) = self
            .transactions
            .iter()
            .position(|t| t.socket == socket && t.server == from && datagram[8..20] == t.id.0)
        else {
            return false;
        };
        let mut response = Message::new();
        if response.unmarshal_binary(datagram).is_err() || response.typ != BINDING_SUCCESS {
            return true;
        }
        let mut mapped = XorMappedAddress::default();
        if mapped.get_from(&response).is_ok() {
            out.push(GatherOutput::Reflexive {
                base: socket,
                mapped: SocketAddr::new(mapped.ip, mapped.port),
            });
        }
        self.transactions.remove(index);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_parse_or_say_why() {
        let (stun, turn) = parse_ice_servers(&[
            IceServer::url("stun:stun.example.org:19302"),
            IceServer {
                urls: vec!["turn:10.0.0.1?transport=udp".into()],
                username: Some("u".into()),
                credential: Some("p".into()),
            },
        ])
        .unwrap();
        assert_eq!(
            stun,
            vec![StunServer {
                host: "stun.example.org".into(),
                port: 19302
            }]
        );
        assert_eq!((turn[0].host.as_str(), turn[0].port), ("10.0.0.1", 3478));
        assert_eq!(turn[0].username, "u");
        let err = parse_ice_servers(&[IceServer::url("turn:relay.example.org")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ice_servers[0]") && err.contains("username"),
            "{err}"
        );
        let err = parse_ice_servers(&[IceServer::url("stuns:stun.example.org")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TLS"), "{err}");
        assert!(parse_ice_servers(&[IceServer::url("stun:host:port")]).is_err());
    }

    #[test]
    fn a_binding_success_becomes_a_reflexive_candidate() {
        let socket: SocketAddr = "192.0.2.2:5000".parse().unwrap();
        let server: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let now = Instant::now();
        let mut gatherer = Gatherer::default();
        gatherer.expect_resolutions(1);
        gatherer.resolved(now, Some(server), &[socket]);
        let mut out = Vec::new();
        gatherer.poll(now, &mut out);
        let GatherOutput::Send { bytes, .. } = &out[0] else {
            panic!("a request first")
        };
        let mut request = Message::new();
        request.unmarshal_binary(bytes).unwrap();

        let mut response = Message::new();
        let mapped = XorMappedAddress {
            ip: "203.0.113.9".parse().unwrap(),
            port: 61000,
        };
        response
            .build(&[
                Box::new(BINDING_SUCCESS),
                Box::new(request.transaction_id),
                Box::new(mapped),
            ])
            .unwrap();
        out.clear();
        assert!(gatherer.handle(socket, server, &response.raw, &mut out));
        assert!(matches!(
            out[..],
            [GatherOutput::Reflexive { mapped, .. }] if mapped == "203.0.113.9:61000".parse::<SocketAddr>().unwrap()
        ));
        assert!(gatherer.done());
    }

    #[test]
    fn an_unanswered_server_is_given_up() {
        let now = Instant::now();
        let mut gatherer = Gatherer::default();
        gatherer.expect_resolutions(1);
        gatherer.resolved(
            now,
            Some("198.51.100.1:3478".parse().unwrap()),
            &["192.0.2.2:5000".parse().unwrap()],
        );
        let mut out = Vec::new();
        gatherer.poll(now + GIVE_UP, &mut out);
        assert!(out.is_empty() && gatherer.done());
    }
}
