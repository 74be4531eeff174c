//! The bench's lab: a real `sallyport-router` and `sallyport-gateway`, each its own process
//! (so their CPU time and memory can be read), and targets in the bench's own process.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sallyport_core::router_api::RouterApi;
use sallyport_core::ClientProfile;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

pub const GATEWAY: &str = "bench";
pub const ECHO: &str = "echo";
pub const SINK: &str = "sink";

/// What the gateway should look like.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    pub max_sessions: usize,
    /// `webrtc_ports` and `webrtc_advertise` of the gateway (a relayed path).
    pub nat: Option<((u16, u16), IpAddr)>,
    pub max_datagram: Option<usize>,
    /// More than one: that many routers in a fleet on a `redis-server` the lab starts, the
    /// gateway connected to the first (and failing over along the others).
    pub routers: usize,
}

pub struct ProcessLab {
    dir: PathBuf,
    router: Child,
    /// The fleet's other routers, and its Redis.
    more_routers: Vec<Child>,
    redis: Option<sallyport_relay::RedisServer>,
    gateway: Child,
    pub router_addr: SocketAddr,
    pub router_addrs: Vec<SocketAddr>,
    pub client_token: String,
    /// The sink target, for plain-TCP comparisons.
    pub sink: SocketAddr,
    gateway_key: String,
    _targets: tokio::task::JoinHandle<()>,
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

fn secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn binary(name: &str) -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = here
        .parent()
        .map(|d| d.join(name))
        .ok_or("cannot locate the bench's directory")?;
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found; build the servers beside the bench: cargo build --release -p sallyport-router -p sallyport-gateway",
            path.display()
        ))
    }
}

impl ProcessLab {
    pub async fn start(options: &LabOptions) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("sallyport-bench-lab-{}", secret()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (echo, sink, targets) = start_targets().await?;

        let free_port = || -> Result<u16, String> {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            Ok(probe.local_addr().map_err(|e| e.to_string())?.port())
        };
        let router_count = options.routers.max(1);
        let router_addrs = (0..router_count)
            .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?))))
            .collect::<Result<Vec<_>, String>>()?;
        let router_addr = router_addrs[0];
        let redis = if router_count > 1 {
            let port = free_port()?;
            let redis = sallyport_relay::RedisServer::start(port)
                .await
                .map_err(|e| e.to_string())?;
            Some((redis, port))
        } else {
            None
        };
        let gateway_token = secret();
        let client_token = secret();
        let key =
            sallyport_gateway::generate_key(&dir.join("gateway.key")).map_err(|e| e.to_string())?;
        let gateway_key = key.public().to_base64();
        for (i, addr) in router_addrs.iter().enumerate() {
            let fleet = match &redis {
                Some((_, port)) => {
                    format!("redis_url = \"redis://127.0.0.1:{port}\"\nrouter_id = \"bench-{i}\"\n")
                }
                None => String::new(),
            };
            write(
                &dir.join(format!("router-{i}.toml")),
                &format!(
                    r#"listen = "{addr}"
{fleet}# Loopback only, and the figures in docs/PERFORMANCE.md were taken without TLS.
plain_http = true
# Every launch of the bench comes from this one address.
max_connections_per_source = 4096
[[gateways]]
id = "{GATEWAY}"
token = "{gateway_token}"
public_key = "{gateway_key}"
[[clients]]
name = "bench"
token = "{client_token}"
resources = ["*"]
"#
                ),
            )?;
        }
        let more_urls = router_addrs[1..]
            .iter()
            .map(|a| format!("\"http://{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut gateway_toml = format!(
            r#"router_url = "http://{router_addr}"
router_urls = [{more_urls}]
gateway_id = "{GATEWAY}"
token = "{gateway_token}"
key_file = "gateway.key"
max_sessions = {}
webrtc_udp = ["127.0.0.1:0"]
"#,
            options.max_sessions.max(1)
        );
        if let Some(((low, high), advertise)) = options.nat {
            gateway_toml.push_str(&format!(
                "webrtc_ports = \"{low}-{high}\"\nwebrtc_advertise = \"{advertise}\"\n"
            ));
        }
        if let Some(n) = options.max_datagram {
            gateway_toml.push_str(&format!("webrtc_max_datagram = {n}\n"));
        }
        gateway_toml.push_str(&format!(
            "[[resources]]\nname = \"{ECHO}\"\nprotocol = \"tcp\"\ntarget = \"{echo}\"\n\
             [[resources]]\nname = \"{SINK}\"\nprotocol = \"tcp\"\ntarget = \"{sink}\"\n"
        ));
        write(&dir.join("gateway.toml"), &gateway_toml)?;

        let spawn = |program: PathBuf, args: Vec<String>, log: &str| -> Result<Child, String> {
            let log = std::fs::File::create(dir.join(log)).map_err(|e| e.to_string())?;
            Command::new(&program)
                .args(args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", program.display()))
        };
        let mut routers = (0..router_count)
            .map(|i| {
                spawn(
                    binary("sallyport-router")?,
                    vec![
                        "--config".into(),
                        dir.join(format!("router-{i}.toml")).display().to_string(),
                    ],
                    &format!("router-{i}.log"),
                )
            })
            .collect::<Result<Vec<_>, String>>()?;
        let router = routers.remove(0);
        let gateway = spawn(
            binary("sallyport-gateway")?,
            vec![
                "run".into(),
                "--config".into(),
                dir.join("gateway.toml").display().to_string(),
            ],
            "gateway.log",
        )?;
        let lab = Self {
            dir,
            router,
            more_routers: routers,
            redis: redis.map(|(redis, _)| redis),
            gateway,
            router_addr,
            router_addrs,
            client_token,
            sink,
            gateway_key,
            _targets: targets,
        };
        lab.wait_ready().await?;
        Ok(lab)
    }

    /// Until every router lists the gateway's resources as online (it is connected, and the
    /// fleet knows where).
    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        for addr in &self.router_addrs {
            let api = RouterApi::new(&format!("http://{addr}"), &self.client_token)
                .map_err(|e| e.to_string())?;
            loop {
                if let Ok(list) = api.resources().await {
                    if list.iter().any(|r| r.name == SINK && r.online) {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the bench's routers and gateway did not come up; see the logs in {}",
                        self.dir.display()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// A client profile for this lab, reaching the router at `router_url`.
    pub fn profile(&self, router_url: &str) -> ClientProfile {
        ClientProfile {
            router_url: router_url.to_owned(),
            router_urls: Vec::new(),
            ca_file: None,
            token: Some(self.client_token.clone()),
            gateways: [(GATEWAY.to_owned(), self.gateway_key.clone())].into(),
            webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
            ice_servers: Vec::new(),
            relay_only: false,
            lab: true,
            launch_reports: true,
            sso: None,
        }
    }

    pub fn router_url(&self) -> String {
        format!("http://{}", self.router_addr)
    }

    /// Every router's URL, the first one's first.
    pub fn router_urls(&self) -> Vec<String> {
        self.router_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect()
    }

    pub fn router_pid(&self) -> Option<u32> {
        self.router.id()
    }

    pub fn gateway_pid(&self) -> Option<u32> {
        self.gateway.id()
    }

    /// The routers' together (one router's without a fleet).
    pub fn router_usage(&self) -> Usage {
        std::iter::once(&self.router)
            .chain(&self.more_routers)
            .filter_map(|r| r.id().map(usage))
            .fold(Usage::default(), |total, u| Usage {
                cpu_seconds: total.cpu_seconds + u.cpu_seconds,
                rss_kib: total.rss_kib + u.rss_kib,
                peak_rss_kib: total.peak_rss_kib + u.peak_rss_kib,
            })
    }

    pub fn gateway_usage(&self) -> Usage {
        self.gateway.id().map(usage).unwrap_or_default()
    }

    /// Stop both servers the way an operator would (SIGINT: they close their tubes and
    /// sockets), and remove the scratch directory.
    pub async fn stop(mut self) {
        let children = std::iter::once(&mut self.gateway)
            .chain(std::iter::once(&mut self.router))
            .chain(self.more_routers.iter_mut());
        for child in children {
            if let Some(pid) = child.id() {
                // SAFETY: signalling a child process we started and still own.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGINT);
                }
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        if let Some(redis) = self.redis.take() {
            redis.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// CPU seconds (user + system) and resident memory of process `pid`.
pub fn usage(pid: u32) -> Usage {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_seconds = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu_seconds,
        rss_kib: field("VmRSS:"),
        peak_rss_kib: field("VmHWM:"),
    }
}

/// The bench's own process.
pub fn own_usage() -> Usage {
    usage(std::process::id())
}

/// An echo target and a sink that hashes everything it receives and answers with the 32-byte
/// SHA-256 once the sender half-closes.
async fn start_targets() -> Result<(SocketAddr, SocketAddr, tokio::task::JoinHandle<()>), String> {
    let echo = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let sink = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addrs = (
        echo.local_addr().map_err(|e| e.to_string())?,
        sink.local_addr().map_err(|e| e.to_string())?,
    );
    let task = tokio::spawn(async move {
        let echo_loop = async {
            while let Ok((mut stream, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        };
        let sink_loop = async {
            while let Ok((mut stream, _)) = sink.accept().await {
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let mut hasher = Sha256::new();
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(n) => hasher.update(&buf[..n]),
                            Err(_) => return,
                        }
                    }
                    let _ = stream.write_all(&hasher.finalize()).await;
                    let _ = stream.shutdown().await;
                });
            }
        };
        tokio::join!(echo_loop, sink_loop);
    });
    Ok((addrs.0, addrs.1, task))
}
