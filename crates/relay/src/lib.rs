//! Wide-area paths on one machine, for the bench and the tests. The kernel here has no netem,
//! so latency and outages are made in user space:
//!
//! * [`UdpRelay`]: the data path. It stands for a 1:1 NAT on each side: a tube announces only
//!   its "front" address (`advertise_ip`, with ports from `udp_port_range`), the relay owns
//!   those front addresses, and forwards each datagram after a one-way delay, from the other
//!   side's front address, so both peers see exactly the candidates they were told about.
//!   It can also drop everything for a while (a blackholed path).
//! * [`TcpDelayProxy`]: the signalling path. Every byte is held for the one-way delay, and
//!   bytes a client sends in its first round trip are held one round trip longer, since the
//!   kernel completes the TCP handshake at the proxy at once.
//! * [`Coturn`]: a real TURN server (Debian's coturn) on loopback, for relayed paths.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One side of the relayed path: where its tube's sockets really are, the front address the
/// relay owns for it, and the ports its sockets use.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub real: IpAddr,
    pub front: IpAddr,
    pub ports: (u16, u16),
}

#[derive(Default)]
struct Control {
    one_way_nanos: AtomicU64,
    blackhole: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// A delaying, blackholing UDP relay between two [`Side`]s. Stops when dropped.
pub struct UdpRelay {
    control: Arc<Control>,
    _tasks: JoinSet<()>,
}

struct Datagram {
    due: Instant,
    from: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl UdpRelay {
    pub async fn start(a: Side, b: Side, one_way: Duration) -> std::io::Result<Self> {
        let control = Arc::new(Control::default());
        control
            .one_way_nanos
            .store(one_way.as_nanos() as u64, Ordering::Relaxed);
        let bind_all = |side: Side| async move {
            let mut sockets = Vec::new();
            for port in side.ports.0..=side.ports.1 {
                sockets.push(Arc::new(UdpSocket::bind((side.front, port)).await?));
            }
            Ok::<_, std::io::Error>(sockets)
        };
        let a_fronts = bind_all(a).await?;
        let b_fronts = bind_all(b).await?;
        let mut tasks = JoinSet::new();
        // A datagram arriving at B's front came from A; it leaves from A's front towards B.
        for (arrive_side, arrive_fronts, leave_side, leave_fronts) in
            [(b, &b_fronts, a, &a_fronts), (a, &a_fronts, b, &b_fronts)]
        {
            let (tx, rx) = mpsc::unbounded_channel::<Datagram>();
            tasks.spawn(send_in_order(rx));
            for (i, socket) in arrive_fronts.iter().enumerate() {
                let arrive_port = arrive_side.ports.0 + i as u16;
                let socket = socket.clone();
                let leave_fronts = leave_fronts.clone();
                let control = control.clone();
                let tx = tx.clone();
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, source)) = socket.recv_from(&mut buf).await {
                        let expected = source.ip() == leave_side.real
                            && (leave_side.ports.0..=leave_side.ports.1).contains(&source.port());
                        if !expected || control.blackhole.load(Ordering::Relaxed) {
                            control.dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let delay =
                            Duration::from_nanos(control.one_way_nanos.load(Ordering::Relaxed));
                        let from =
                            leave_fronts[(source.port() - leave_side.ports.0) as usize].clone();
                        control.forwarded.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Datagram {
                            due: Instant::now() + delay,
                            from,
                            to: SocketAddr::new(arrive_side.real, arrive_port),
                            bytes: buf[..n].to_vec(),
                        });
                    }
                });
            }
        }
        Ok(Self {
            control,
            _tasks: tasks,
        })
    }

    /// Drop every datagram while `on` (a path that goes silent), or carry them again.
    pub fn set_blackhole(&self, on: bool) {
        self.control.blackhole.store(on, Ordering::Relaxed);
    }

    pub fn set_one_way_delay(&self, one_way: Duration) {
        self.control
            .one_way_nanos
            .store(one_way.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Datagrams forwarded and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.control.forwarded.load(Ordering::Relaxed),
            self.control.dropped.load(Ordering::Relaxed),
        )
    }
}

/// The delay is the same for every datagram of a direction, so arrival order is due order.
async fn send_in_order(mut rx: mpsc::UnboundedReceiver<Datagram>) {
    while let Some(d) = rx.recv().await {
        until(d.due).await;
        let _ = d.from.send_to(&d.bytes, d.to).await;
    }
}

/// Wait until `due`, to within microseconds. Tokio's timer wakes on millisecond ticks and
/// rounds up, so a plain sleep held every hop of an emulated path up to a millisecond longer
/// than asked (about 1 ms per hop, some 15 ms over a launch's seven round trips): sleep to the
/// tick before, then yield until it is time.
async fn until(due: Instant) {
    if let Some(coarse) = due.checked_sub(Duration::from_millis(1)) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse).await;
        }
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// A TCP proxy in front of `upstream` that delays every byte by a one-way delay. Stops when
/// dropped.
pub struct TcpDelayProxy {
    addr: SocketAddr,
    /// Told to drop every connection open at the time (see `cut`).
    cut: tokio::sync::broadcast::Sender<()>,
    _task: tokio::task::JoinHandle<()>,
}

impl TcpDelayProxy {
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind((upstream.ip(), 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, _) = tokio::sync::broadcast::channel(1);
        let cuts = cut.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    // The handshake the client made with us took no time; the one it would
                    // have made across the path takes a round trip before data can flow.
                    let handshake_done = Instant::now() + one_way * 2;
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let both = async {
                        tokio::join!(
                            pump(cr, sw, one_way, Some(handshake_done)),
                            pump(sr, cw, one_way, None)
                        )
                    };
                    tokio::select! {
                        _ = both => {}
                        // Dropping the halves closes both sockets at once, mid-stream.
                        _ = cut.recv() => {}
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            cut,
            _task: task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every connection through the proxy now, as a network change would; new ones are
    /// still accepted.
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    one_way: Duration,
    not_before: Option<Instant>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut due = Instant::now() + one_way;
                    if let Some(floor) = not_before {
                        due = due.max(floor + one_way);
                    }
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A `turnserver` (coturn) on loopback with one long-term user, started for a test or a bench
/// and killed when dropped.
pub struct Coturn {
    _child: tokio::process::Child,
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl Coturn {
    /// Start it and wait until it answers a STUN binding request. The port is chosen free
    /// just before, so another process may take it first (the test suite opens many UDP
    /// sockets at once): a server that does not answer within 5 s is replaced on a new port,
    /// three times at most.
    pub async fn start() -> std::io::Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = {
                let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
                probe.local_addr()?.port()
            };
            ports.push(port.to_string());
            if let Some(coturn) = Self::start_on(port).await? {
                return Ok(coturn);
            }
        }
        Err(std::io::Error::other(format!(
            "turnserver did not answer on 127.0.0.1, ports {}",
            ports.join(", ")
        )))
    }

    /// `None` when it does not answer on `port` within 5 s (it is killed then).
    async fn start_on(port: u16) -> std::io::Result<Option<Self>> {
        let (username, password) = ("sallyport".to_owned(), "relay-secret".to_owned());
        let mut child = tokio::process::Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--realm=sallyport.test",
                "--lt-cred-mech",
                "--fingerprint",
                // Our peers are on loopback too, which coturn refuses by default.
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--log-file=stdout",
            ])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--user={username}:{password}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start turnserver (Debian's coturn package): {e}"),
                )
            })?;
        let probe = UdpSocket::bind("127.0.0.1:0").await?;
        let request = [
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let mut buf = [0u8; 512];
        for _ in 0..100 {
            if child.try_wait()?.is_some() {
                break;
            }
            probe.send_to(&request, ("127.0.0.1", port)).await?;
            if tokio::time::timeout(Duration::from_millis(50), probe.recv_from(&mut buf))
                .await
                .is_ok()
            {
                return Ok(Some(Self {
                    _child: child,
                    port,
                    username,
                    password,
                }));
            }
        }
        let _ = child.kill().await;
        Ok(None)
    }

    /// Its `turn:` URL.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
}

/// A `redis-server` (Debian's package) on loopback, without persistence (a restart loses every
/// key), for the fleet's tests and bench; killed when dropped.
pub struct RedisServer {
    child: tokio::process::Child,
    pub port: u16,
}

impl RedisServer {
    /// Start it on `port` and wait until it answers PING.
    pub async fn start(port: u16) -> std::io::Result<Self> {
        Self::start_with(port, &[]).await
    }

    /// Start it on `port` (plain, where it is checked with PING) and, with TLS, on
    /// `tls_port`, serving `cert` and `key` (PEM) to clients that need not show one.
    pub async fn start_tls(
        port: u16,
        tls_port: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> std::io::Result<Self> {
        let tls_port = tls_port.to_string();
        let args: Vec<&std::ffi::OsStr> = vec![
            "--tls-port".as_ref(),
            tls_port.as_ref(),
            "--tls-cert-file".as_ref(),
            cert.as_os_str(),
            "--tls-key-file".as_ref(),
            key.as_os_str(),
            "--tls-ca-cert-file".as_ref(),
            ca.as_os_str(),
            "--tls-auth-clients".as_ref(),
            "no".as_ref(),
        ];
        Self::start_with(port, &args).await
    }

    async fn start_with(port: u16, extra: &[&std::ffi::OsStr]) -> std::io::Result<Self> {
        let child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server (Debian's redis-server package): {e}"),
                )
            })?;
        for _ in 0..200 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let mut pong = [0u8; 7];
                if stream.write_all(b"PING\r\n").await.is_ok()
                    && stream.read_exact(&mut pong).await.is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return Ok(Self { child, port });
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(std::io::Error::other(format!(
            "redis-server did not answer on 127.0.0.1:{port}"
        )))
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it and wait until it is gone.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_is_relayed_from_the_front_addresses_and_delayed() {
        let a = Side {
            real: "127.0.0.1".parse().unwrap(),
            front: "127.0.0.21".parse().unwrap(),
            ports: (47100, 47101),
        };
        let b = Side {
            real: "127.0.0.1".parse().unwrap(),
            front: "127.0.0.22".parse().unwrap(),
            ports: (47200, 47201),
        };
        let relay = UdpRelay::start(a, b, Duration::from_millis(20))
            .await
            .unwrap();
        let sa = UdpSocket::bind("127.0.0.1:47100").await.unwrap();
        let sb = UdpSocket::bind("127.0.0.1:47201").await.unwrap();
        let started = std::time::Instant::now();
        sa.send_to(b"hello", "127.0.0.22:47201").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = sb.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(
            from,
            "127.0.0.21:47100".parse().unwrap(),
            "seen from A's front"
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
        sb.send_to(b"back", from).await.unwrap();
        let (n, from) = sa.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"back"[..], "127.0.0.22:47201".parse().unwrap())
        );

        relay.set_blackhole(true);
        sa.send_to(b"lost", "127.0.0.22:47201").await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), sb.recv_from(&mut buf))
                .await
                .is_err()
        );
        assert_eq!(relay.counts(), (2, 1));
    }

    #[tokio::test]
    async fn tcp_bytes_arrive_after_the_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let proxy = TcpDelayProxy::start(upstream, Duration::from_millis(10))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // Handshake round trip, then there and back.
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "{:?}",
            started.elapsed()
        );
    }
}
