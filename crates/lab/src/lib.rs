//! The embedded default: a router, a gateway and demo targets, all on loopback, with a client
//! profile for them. The CLI's `lab`, the app's first start and the tests use it.
//!
//! The router serves TLS with a certificate from a CA the lab makes at start. The lab writes
//! into its directory (`LabOptions::dir`, or a fresh temporary one it removes at shutdown):
//! `ca.pem` (what clients trust: the profile names it as `ca_file`), `router.crt`,
//! `router.key`, `audit.jsonl` (the router's audit trail) and `gateway-connections.jsonl` (the
//! gateway's log of connections to targets).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sallyport_core::ClientProfile;
use sallyport_gateway::{GatewayConfig, GatewayHandle, ResourceConfig};
use sallyport_protocol::GatewayKeyPair;
use sallyport_router::config::{ClientEntry, GatewayEntry, TlsFiles};
use sallyport_router::reports::ReportsConfig;
use sallyport_router::{RouterConfig, RouterHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const LAB_GATEWAY: &str = "lab";
pub const DEMO_ECHO: &str = "demo-echo";
pub const DEMO_WEB: &str = "demo-web";

/// What to put in a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Router address; port 0 picks a free one.
    pub router_listen: SocketAddr,
    /// Add the machine's own sshd and PostgreSQL when they listen on loopback.
    pub include_local_services: bool,
    /// Extra resources (name, protocol, target).
    pub extra_resources: Vec<(String, String, String)>,
    /// The gateway's session limit (default 64).
    pub max_sessions: Option<usize>,
    /// The gateway behind a 1:1 NAT: its tubes' ports and the address it announces (tests put
    /// a relay there to make the path slow or silent).
    pub gateway_nat: Option<((u16, u16), std::net::IpAddr)>,
    /// Where the lab writes its CA, certificate, key and logs (created if need be); `None`: a
    /// temporary directory, removed at shutdown.
    pub dir: Option<PathBuf>,
    /// The router also accepts this OpenID provider's tokens (`[sso]`; the SSO tests).
    pub sso: Option<sallyport_router::sso::SsoConfig>,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            router_listen: "127.0.0.1:0".parse().expect("valid address"),
            include_local_services: true,
            extra_resources: Vec::new(),
            max_sessions: None,
            gateway_nat: None,
            dir: None,
            sso: None,
        }
    }
}

/// A running lab.
pub struct Lab {
    pub router: RouterHandle,
    pub gateway: GatewayHandle,
    pub profile: ClientProfile,
    pub client_token: String,
    /// The lab gateway's router token (tests use it to play an impostor that has only it).
    pub gateway_token: String,
    pub resources: Vec<ResourceConfig>,
    /// The lab's directory (see the module's documentation).
    pub dir: PathBuf,
    /// The CA the router's certificate comes from (the profile's `ca_file`).
    pub ca_file: PathBuf,
    /// The router's audit trail.
    pub audit_log: PathBuf,
    /// The gateway's log of connections to targets.
    pub connection_log: PathBuf,
    /// The directory is the lab's own: removed at shutdown.
    temporary: bool,
    echo: tokio::task::JoinHandle<()>,
}

fn secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The names the lab's router certificate is valid for: loopback, and the listen address.
fn certificate_names(listen: SocketAddr) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    let ip = listen.ip().to_string();
    if !names.contains(&ip) {
        names.push(ip);
    }
    names
}

impl Lab {
    pub async fn start(options: LabOptions) -> Result<Self, String> {
        let temporary = options.dir.is_none();
        let dir = options.dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sallyport-lab-{}", uuid::Uuid::new_v4().simple()))
        });
        let started = Self::start_in(options, dir.clone(), temporary).await;
        if started.is_err() && temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    async fn start_in(options: LabOptions, dir: PathBuf, temporary: bool) -> Result<Self, String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the lab directory {}: {e}", dir.display()))?;
        let ca = sallyport_ops::pki::TestCa::new("Sallyport lab CA")
            .map_err(|e| format!("cannot make the lab's CA: {e}"))?;
        let names = certificate_names(options.router_listen);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let files = ca
            .write_server_files(&dir, &names, sallyport_ops::pki::Validity::Current)
            .map_err(|e| {
                format!(
                    "cannot write the lab's certificate in {}: {e}",
                    dir.display()
                )
            })?;
        let audit_log = dir.join("audit.jsonl");
        let connection_log = dir.join("gateway-connections.jsonl");

        let echo_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot start the demo echo target: {e}"))?;
        let echo_addr = echo_listener.local_addr().map_err(|e| e.to_string())?;
        let web_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot start the demo web target: {e}"))?;
        let web_addr = web_listener.local_addr().map_err(|e| e.to_string())?;
        let echo = tokio::spawn(async move {
            tokio::join!(serve_echo(echo_listener), serve_web(web_listener));
        });

        let mut resources = vec![
            ResourceConfig {
                name: DEMO_ECHO.into(),
                protocol: "tcp".into(),
                target: echo_addr.to_string(),
            },
            ResourceConfig {
                name: DEMO_WEB.into(),
                protocol: "http".into(),
                target: web_addr.to_string(),
            },
        ];
        if options.include_local_services {
            for (name, protocol, port) in [
                ("local-ssh", "ssh", 22),
                ("local-postgres", "postgres", 5432),
            ] {
                let target = format!("127.0.0.1:{port}");
                let up = tokio::time::timeout(
                    Duration::from_millis(300),
                    tokio::net::TcpStream::connect(&target),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                if up {
                    resources.push(ResourceConfig {
                        name: name.into(),
                        protocol: protocol.into(),
                        target,
                    });
                }
            }
        }
        for (name, protocol, target) in &options.extra_resources {
            resources.push(ResourceConfig {
                name: name.clone(),
                protocol: protocol.clone(),
                target: target.clone(),
            });
        }

        let gateway_token = secret();
        let client_token = secret();
        let key = GatewayKeyPair::generate();
        let public_key = key.public();
        let router_config = RouterConfig {
            listen: options.router_listen,
            tls: Some(TlsFiles {
                cert_file: files.cert_file.clone(),
                key_file: files.key_file.clone(),
            }),
            audit_log: Some(audit_log.clone()),
            gateways: vec![GatewayEntry {
                id: LAB_GATEWAY.into(),
                token: gateway_token.clone(),
                // The router checks that the lab gateway holds this key on every connection.
                public_key: public_key.to_base64(),
                resources: Vec::new(),
            }],
            clients: vec![ClientEntry {
                name: "lab-user".into(),
                token: client_token.clone(),
                resources: vec!["*".into()],
                // The lab's user is its own support desk: the Support panel shows in the lab.
                roles: vec![sallyport_protocol::report::SUPPORT_ROLE.into()],
            }],
            // Launch reports are on in the lab, kept in memory while it runs.
            reports: ReportsConfig {
                enabled: true,
                ..ReportsConfig::default()
            },
            sso: options.sso.clone(),
            ..RouterConfig::default()
        };
        let router = sallyport_router::spawn(router_config)
            .await
            .map_err(|e| e.to_string())?;

        let gateway_config = GatewayConfig {
            router_url: router.url(),
            router_urls: Vec::new(),
            ca_file: Some(files.ca_file.clone()),
            connection_log: Some(connection_log.clone()),
            gateway_id: LAB_GATEWAY.into(),
            token: gateway_token.clone(),
            key_file: "unused-in-the-lab".into(),
            max_sessions: options.max_sessions.unwrap_or(64),
            max_connections_per_session: 64,
            connect_timeout_ms: 5_000,
            webrtc_udp: vec!["127.0.0.1:0".into()],
            ice_servers: Vec::new(),
            webrtc_ports: options
                .gateway_nat
                .map(|((low, high), _)| format!("{low}-{high}")),
            webrtc_advertise: options.gateway_nat.map(|(_, ip)| ip),
            webrtc_max_datagram: None,
            resources: resources.clone(),
        };
        let gateway = sallyport_gateway::spawn(gateway_config, key).map_err(|e| e.to_string())?;
        if !gateway.wait_online(Duration::from_secs(10)).await {
            let why = gateway.last_error().unwrap_or_else(|| "no answer".into());
            gateway.shutdown().await;
            router.shutdown().await;
            return Err(format!(
                "the lab gateway did not connect to the lab router: {why}"
            ));
        }
        let profile = ClientProfile {
            router_url: router.url(),
            router_urls: Vec::new(),
            ca_file: Some(files.ca_file.clone()),
            token: Some(client_token.clone()),
            gateways: [(LAB_GATEWAY.to_owned(), public_key.to_base64())].into(),
            webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
            ice_servers: Vec::new(),
            relay_only: false,
            lab: true,
            launch_reports: true,
            sso: None,
        };
        Ok(Self {
            router,
            gateway,
            profile,
            client_token,
            gateway_token,
            resources,
            dir,
            ca_file: files.ca_file,
            audit_log,
            connection_log,
            temporary,
            echo,
        })
    }

    /// The profile an administrator of this lab would hand out (`sallyport profile import`):
    /// the router URL, its CA inline, the gateway's key to pin, and `[sso]` when given.
    pub fn distributed_profile(&self, sso: Option<&sallyport_core::SsoSettings>) -> String {
        let ca = std::fs::read_to_string(&self.ca_file).unwrap_or_default();
        let mut text = format!(
            "router_url = \"{}\"\nca = \"\"\"\n{ca}\"\"\"\n",
            self.router.url()
        );
        if let Some(sso) = sso {
            text.push_str(&format!(
                "[sso]\nissuer = \"{}\"\nclient_id = \"{}\"\n",
                sso.issuer, sso.client_id
            ));
        }
        text.push_str("[gateways]\n");
        for (gateway, key) in &self.profile.gateways {
            text.push_str(&format!("{gateway} = \"{key}\"\n"));
        }
        text
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.router.shutdown().await;
        self.echo.abort();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The demo target: echoes every byte back, needs nothing installed.
async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let (mut r, mut w) = stream.split();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = w.shutdown().await;
        });
    }
}

/// The second demo target: a tiny HTTP server, so a browser or curl has something to show.
async fn serve_web(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            // Read the request head (best effort), then answer and close.
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            let body = "hello from the Sallyport lab\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
