//! The tube's UDP sockets: one per local address, with receive and send buffers sized for the
//! SCTP window, and the largest datagram the path they sit on carries.

use std::net::{IpAddr, SocketAddr};

use rtc::shared::ifaces::ifaces;

use crate::{Result, TubeError};

/// IPv6 minimum MTU (RFC 8200): the one size every IP path must carry.
const MINIMUM_PATH_MTU: usize = 1280;
/// DTLS 1.2 record overhead with AES-GCM: 13 bytes of header, 8 of explicit nonce, 16 of tag.
pub(crate) const DTLS_OVERHEAD: usize = 37;
/// TURN ChannelData framing, when a datagram may be relayed.
pub(crate) const TURN_OVERHEAD: usize = 4;
/// Largest DTLS record plaintext (2^14), hence the largest SCTP packet one record carries.
pub(crate) const MAX_SCTP_PACKET: usize = 16 * 1024;

/// One bound socket and what was learned about it.
pub(crate) struct BoundSocket {
    pub udp: crate::udp::Udp,
    pub local: SocketAddr,
    /// Largest UDP payload this socket's path carries (see [`datagram_limit`]).
    pub datagram_limit: usize,
    /// Receive buffer the kernel granted, in bytes of payload it holds at least.
    pub receive_buffer: usize,
}

/// Bind one socket per address. A wildcard address (`0.0.0.0:0`, `[::]:0`) becomes one socket
/// per usable interface address of its family, since every host candidate needs a real
/// address; loopback and link-local addresses are skipped there (no peer can use them).
pub(crate) fn bind_all(
    addrs: &[String],
    ports: Option<(u16, u16)>,
    buffer_bytes: usize,
) -> Result<Vec<BoundSocket>> {
    let interfaces = ifaces().unwrap_or_default();
    let mut targets: Vec<SocketAddr> = Vec::new();
    for text in addrs {
        let addr: SocketAddr = text.parse().map_err(|_| {
            TubeError::Config(format!(
                "webrtc_udp: {text:?} is not an address such as 127.0.0.1:0 or 0.0.0.0:0"
            ))
        })?;
        if addr.ip().is_unspecified() {
            let before = targets.len();
            for interface in &interfaces {
                let Some(ip) = interface.addr.map(|a| a.ip()) else {
                    continue;
                };
                if ip.is_ipv4() == addr.is_ipv4() && usable_for_peers(ip) {
                    push_unique(&mut targets, SocketAddr::new(ip, addr.port()));
                }
            }
            if targets.len() == before {
                tracing::warn!(%addr, "no usable interface to expand into; binding it as given");
                push_unique(&mut targets, addr);
            }
        } else {
            push_unique(&mut targets, addr);
        }
    }
    if targets.is_empty() {
        return Err(TubeError::Config(
            "webrtc_udp: no address to bind the tube's UDP sockets on".into(),
        ));
    }
    targets
        .into_iter()
        .map(|addr| match ports {
            Some((low, high)) if addr.port() == 0 => (low..=high)
                .find_map(|port| {
                    bind_one(SocketAddr::new(addr.ip(), port), buffer_bytes, &interfaces).ok()
                })
                .ok_or_else(|| {
                    TubeError::Io(format!(
                        "no free UDP port on {} in webrtc_ports {low}-{high}",
                        addr.ip()
                    ))
                }),
            _ => bind_one(addr, buffer_bytes, &interfaces),
        })
        .collect()
}

fn usable_for_peers(ip: IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !ip.is_loopback() && !ip.is_unspecified() && !link_local
}

fn push_unique(list: &mut Vec<SocketAddr>, addr: SocketAddr) {
    if !list.contains(&addr) {
        list.push(addr);
    }
}

fn bind_one(
    addr: SocketAddr,
    buffer_bytes: usize,
    interfaces: &[rtc::shared::ifaces::Interface],
) -> Result<BoundSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |e: std::io::Error| TubeError::Io(format!("UDP socket on {addr}: {e}"));
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(io)?;
    }
    size_buffers(&socket, buffer_bytes);
    socket.bind(&addr.into()).map_err(io)?;
    socket.set_nonblocking(true).map_err(io)?;
    // The kernel reports twice what it grants as payload room (it counts its bookkeeping too).
    let receive_buffer = socket.recv_buffer_size().unwrap_or(0) / 2;
    let std_socket: std::net::UdpSocket = socket.into();
    let local = std_socket.local_addr().map_err(io)?;
    let socket = tokio::net::UdpSocket::from_std(std_socket).map_err(io)?;
    Ok(BoundSocket {
        udp: crate::udp::Udp::new(socket).map_err(io)?,
        local,
        datagram_limit: datagram_limit(local.ip(), interfaces),
        receive_buffer,
    })
}

/// Ask for `bytes` of receive and send buffer. Above the system's `rmem_max`/`wmem_max` the
/// plain options are silently capped; a process allowed to (CAP_NET_ADMIN) forces them.
fn size_buffers(socket: &socket2::Socket, bytes: usize) {
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
        if granted < bytes {
            let value = bytes as libc::c_int;
            for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
                // SAFETY: a valid socket descriptor and a c_int option value of the right size.
                unsafe {
                    libc::setsockopt(
                        socket.as_raw_fd(),
                        libc::SOL_SOCKET,
                        option,
                        &value as *const libc::c_int as *const libc::c_void,
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
        }
    }
}

/// The largest UDP payload the path from `ip` carries, from the interface that owns `ip`: on
/// a loopback interface the whole path is that interface, so its MTU is the path MTU; on any
/// other interface the path goes on beyond this host and is not known here, so it is the IPv6
/// minimum that every path carries (administrators who know their paths can raise it in the
/// tube's configuration).
pub(crate) fn datagram_limit(ip: IpAddr, interfaces: &[rtc::shared::ifaces::Interface]) -> usize {
    let headers = if ip.is_ipv4() { 20 + 8 } else { 40 + 8 };
    let owner = interfaces
        .iter()
        .find(|i| i.addr.map(|a| a.ip()) == Some(ip))
        .map(|i| i.name.as_str());
    let mtu = match owner {
        Some(name) if ip.is_loopback() => interface_mtu(name).unwrap_or(MINIMUM_PATH_MTU),
        _ => MINIMUM_PATH_MTU,
    };
    mtu.max(MINIMUM_PATH_MTU) - headers
}

/// An interface's MTU as the kernel reports it.
fn interface_mtu(name: &str) -> Option<usize> {
    if name.contains('/') || name.contains("..") {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_carries_its_interface_mtu_and_other_paths_the_minimum() {
        let interfaces = ifaces().unwrap();
        let lo = datagram_limit("127.0.0.1".parse().unwrap(), &interfaces);
        let expected = interface_mtu("lo").map_or(1280 - 28, |m| m - 28);
        assert_eq!(lo, expected);
        assert_eq!(
            datagram_limit("192.0.2.77".parse().unwrap(), &interfaces),
            1252
        );
        assert_eq!(datagram_limit("2001:db8::1".parse().unwrap(), &[]), 1232);
    }

    #[test]
    fn a_bad_address_names_the_field() {
        let err = bind_all(&["not-an-address".into()], None, 1 << 16)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("webrtc_udp") && err.contains("not-an-address"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_loopback_socket_binds_with_big_buffers() {
        let sockets = bind_all(&["127.0.0.1:0".into()], None, 4 << 20).unwrap();
        assert_eq!(sockets.len(), 1);
        assert!(sockets[0].local.port() != 0);
        assert!(sockets[0].receive_buffer > 0);
    }
}
