//! A fleet of three router processes on one real Redis (Debian's `redis-server`, started here
//! on loopback): a client on router A launches through a gateway connected to router C; C is
//! killed, the tube already up keeps carrying bytes, and a launch started right then succeeds
//! once the gateway is on router B; ownership of a conversation holds across routers; Redis
//! restarted, the routers reconnect and the fleet launches again without a router restarted.
//! A launch report sent to one router is listed by every router, one started later included.
//! A router whose connections to Redis go silent without closing subscribes again by itself;
//! a late `gateway_online` about an older socket does not close the gateway's newer one.
//! Routers reach Redis over TLS (`rediss://`), checking its certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sallyport_core::{Launcher, Profile, StickyPorts};
use sallyport_protocol::GatewayPublicKey;
use sallyport_relay::RedisServer;
use sallyport_tests::{echo_target, echo_through, pki, request, scratch, websocket, Pki};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const ALICE: &str = "alice-fleet-token";
const BOB: &str = "bob-fleet-token";
const GATEWAY_TOKEN: &str = "fleet-gateway-token";
const DESK: &str = "desk-fleet-token";

/// A `sallyport-router` process of the fleet, killed when dropped.
struct Router {
    child: tokio::process::Child,
    url: String,
}

fn router_binary() -> PathBuf {
    // target/debug/deps/fleet-HASH → target/debug/sallyport-router, built with the workspace.
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("sallyport-router");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p sallyport-router`",
        binary.display()
    );
    binary
}

impl Router {
    async fn start(
        name: &str,
        dir: &Path,
        pki: &Pki,
        redis: &str,
        key: &GatewayPublicKey,
    ) -> Router {
        Self::start_with(name, dir, pki, redis, key, "").await
    }

    /// With `extra` lines at the top of its configuration.
    async fn start_with(
        name: &str,
        dir: &Path,
        pki: &Pki,
        redis: &str,
        key: &GatewayPublicKey,
        extra: &str,
    ) -> Router {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:0"
redis_url = "{redis}"
router_id = "{name}"
{extra}
[tls]
cert_file = "{}"
key_file = "{}"
[[gateways]]
id = "gw"
token = "{GATEWAY_TOKEN}"
public_key = "{}"
[[clients]]
name = "alice"
token = "{ALICE}"
resources = ["*"]
[[clients]]
name = "bob"
token = "{BOB}"
resources = ["*"]
[[clients]]
name = "desk"
token = "{DESK}"
resources = []
roles = ["support"]
[reports]
enabled = true
"#,
                pki.files.cert_file.display(),
                pki.files.key_file.display(),
                key.to_base64()
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new(router_binary())
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .await
            .unwrap();
        let url = banner
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("no URL in {banner:?}"))
            .to_owned();
        Router { child, url }
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// Wait until `router_url` lists the launch `launch_id` to support staff; its summary.
async fn listed(
    router_url: &str,
    ca: &Path,
    launch_id: &str,
) -> sallyport_protocol::report::LaunchSummary {
    let desk =
        sallyport_core::router_api::RouterApi::with_ca_file(router_url, DESK, Some(ca)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = desk
            .launches(&Default::default(), None)
            .await
            .expect("support staff list launches");
        if let Some(found) = list.launches.into_iter().find(|l| l.launch_id == launch_id) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{router_url} never listed launch {launch_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_json(socket: &mut sallyport_tests::WebSocket) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the router at `url` lists the gateway's resource as online.
async fn online_at(url: &str, ca: &Path) -> bool {
    let list = sallyport_tests::http(ca)
        .get(format!("{url}/v1/resources"))
        .bearer_auth(ALICE)
        .send()
        .await;
    match list {
        Ok(response) => response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["resources"].as_array().cloned())
            .is_some_and(|r| r.iter().any(|r| r["name"] == "echo" && r["online"] == true)),
        Err(_) => false,
    }
}

async fn wait_online(url: &str, ca: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !online_at(url, ca).await {
        assert!(
            Instant::now() < deadline,
            "{url} never listed the gateway online"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_routers_launches_across_routers_and_survives_a_router_and_redis() {
    let dir = scratch("fleet");
    let pki = pki("fleet");
    let ca = pki.ca_file().to_owned();
    let redis_port = free_port();
    let redis = RedisServer::start(redis_port).await.unwrap();
    let key = sallyport_gateway::generate_key(&dir.join("gw.key")).unwrap();
    let public = key.public();
    let a = Router::start("router-a", &dir, &pki, &redis.url(), &public).await;
    let b = Router::start("router-b", &dir, &pki, &redis.url(), &public).await;
    let c = Router::start("router-c", &dir, &pki, &redis.url(), &public).await;

    // The gateway prefers C, then B.
    let gateway = gateway_on(&[&c, &b], &ca, &dir, key).await;
    // Every router knows where it is, A and B through Redis.
    for url in [&a.url, &b.url, &c.url] {
        wait_online(url, &ca, Duration::from_secs(10)).await;
    }
    let metrics = sallyport_tests::metrics(&a.url, Some(&ca)).await;
    assert!(
        metrics.contains("sallyport_gateways_connected 1"),
        "{metrics}"
    );

    // Alice, on A, launches through the gateway on C.
    let profile = sallyport_core::ClientProfile {
        ca_file: Some(ca.clone()),
        gateways: [("gw".to_owned(), public.to_base64())].into(),
        webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
        ..sallyport_core::ClientProfile::new(&a.url)
    };
    // One launcher per launch: each remembers its own local port.
    let launcher = || {
        let state = scratch("fleet-client");
        Launcher::new(
            profile.clone(),
            ALICE,
            StickyPorts::new(state.join("ports.json")),
        )
        .unwrap()
        .with_state_dir(state)
    };
    let first = launcher()
        .launch(request("echo", Profile::Fast))
        .await
        .expect("a launch on A through the gateway on C");
    let (sent, received) = echo_through(first.local_port(), 1 << 20, 1).await;
    assert_eq!(sent, received);

    // Alice's report of that launch, sent to A, is listed by B and C to support staff.
    let record = sallyport_core::history::LaunchRecord {
        launch_id: first.launch_id().to_owned(),
        resource: "echo".into(),
        profile: Profile::Fast,
        started_unix_ms: first.checkpoints()[0].at_unix_ms,
        outcome: sallyport_protocol::report::Outcome::Ok,
        error: None,
        total_ms: first.checkpoints().last().unwrap().total_ms,
        checkpoints: first.checkpoints(),
    };
    sallyport_core::router_api::RouterApi::with_ca_file(&a.url, ALICE, Some(&ca))
        .unwrap()
        .report_launch(&record.report(), Duration::from_secs(5))
        .await
        .expect("A keeps the report");
    for url in [&b.url, &c.url] {
        let summary = listed(url, &ca, first.launch_id()).await;
        assert_eq!(
            (summary.user.as_str(), summary.gateway.as_deref()),
            ("alice", Some("gw"))
        );
        assert_eq!(summary.checkpoints.len(), record.checkpoints.len());
    }

    // A conversation Alice holds on A is not Bob's on B.
    let subscribe = serde_json::json!({"type": "subscribe", "conversation_id": "fleet-owned-1"});
    let mut alice = websocket(&a.url, sallyport_protocol::CLIENT_WS_PATH, Some(ALICE), &ca)
        .await
        .unwrap();
    alice
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut alice).await["type"], "subscribed");
    let mut bob = websocket(&b.url, sallyport_protocol::CLIENT_WS_PATH, Some(BOB), &ca)
        .await
        .unwrap();
    bob.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let refused = next_json(&mut bob).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // C dies. A launch started at once (the fleet still believes the gateway is on C)
    // succeeds through the gateway's next router, B; the tube already up does not notice.
    let c_url = c.url.clone();
    c.kill().await;
    let second = launcher()
        .launch(request("echo", Profile::Fast))
        .await
        .expect("a launch while the gateway moves from C to B");
    let attempts: Vec<String> = second
        .checkpoints()
        .into_iter()
        .map(|c| format!("{} +{:.0} ms", c.phase, c.step_ms))
        .filter(|n| n.starts_with("gateway_offer_http"))
        .collect();
    eprintln!("the launch across C's death: {attempts:?}");
    let (sent, received) = echo_through(second.local_port(), 1 << 20, 2).await;
    assert_eq!(sent, received);
    let (sent, received) = echo_through(first.local_port(), 1 << 20, 3).await;
    assert_eq!(
        sent, received,
        "the first tube, peer to peer, outlives router C"
    );

    // A user whose profile names C first fails over to B, within the same launch.
    let state = scratch("fleet-failover");
    let failing_over = Launcher::new(
        sallyport_core::ClientProfile {
            router_url: c_url.clone(),
            router_urls: vec![b.url.clone()],
            ..profile.clone()
        },
        ALICE,
        StickyPorts::new(state.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(state);
    let fourth = failing_over
        .launch(request("echo", Profile::Fast))
        .await
        .expect("a launch whose first router is down");
    let (sent, received) = echo_through(fourth.local_port(), 1 << 20, 5).await;
    assert_eq!(sent, received);

    // Redis restarts empty: the routers reconnect, rewrite the gateway's presence, and a
    // new launch works without restarting any router.
    redis.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis = RedisServer::start(redis_port).await.unwrap();
    wait_online(&a.url, &ca, Duration::from_secs(20)).await;
    let third = launcher()
        .launch(request("echo", Profile::Fast))
        .await
        .expect("a launch after Redis restarted");
    let (sent, received) = echo_through(third.local_port(), 1 << 20, 4).await;
    assert_eq!(sent, received);

    // After Redis's restart, a report sent to B reaches A, and a router that joins later
    // catches up on what the fleet's stream holds.
    let late = sallyport_core::history::LaunchRecord {
        launch_id: third.launch_id().to_owned(),
        started_unix_ms: third.checkpoints()[0].at_unix_ms,
        total_ms: third.checkpoints().last().unwrap().total_ms,
        checkpoints: third.checkpoints(),
        ..record
    };
    sallyport_core::router_api::RouterApi::with_ca_file(&b.url, ALICE, Some(&ca))
        .unwrap()
        .report_launch(&late.report(), Duration::from_secs(5))
        .await
        .expect("B keeps the report");
    let d = Router::start("router-d", &dir, &pki, &redis.url(), &public).await;
    listed(&d.url, &ca, third.launch_id()).await;
    listed(&a.url, &ca, third.launch_id()).await;
    d.kill().await;

    for session in [first, second, third, fourth] {
        session.close().await;
    }
    gateway.shutdown().await;
    a.kill().await;
    b.kill().await;
    redis.stop().await;
}

/// The gateway `gw` (key in `dir/gw.key`), serving `echo` from an echo target, connected to
/// the first of `routers` and failing over to the others in turn; online when this returns.
async fn gateway_on(
    routers: &[&Router],
    ca: &Path,
    dir: &Path,
    key: sallyport_protocol::GatewayKeyPair,
) -> sallyport_gateway::GatewayHandle {
    let echo = echo_target().await;
    let others: Vec<String> = routers[1..]
        .iter()
        .map(|r| format!("{:?}", r.url))
        .collect();
    let gateway = sallyport_gateway::spawn(
        sallyport_gateway::GatewayConfig::parse(&format!(
            r#"router_url = "{}"
router_urls = [{}]
ca_file = "{}"
gateway_id = "gw"
token = "{GATEWAY_TOKEN}"
key_file = "{}"
webrtc_udp = ["127.0.0.1:0"]
[[resources]]
name = "echo"
protocol = "tcp"
target = "{echo}"
"#,
            routers[0].url,
            others.join(", "),
            ca.display(),
            dir.join("gw.key").display()
        ))
        .unwrap(),
        key,
    )
    .unwrap();
    assert!(gateway.wait_online(Duration::from_secs(10)).await);
    gateway
}

/// Alice's `fast` launch of `echo` through `router_url`, with a launcher of its own.
async fn launch_echo(
    router_url: &str,
    ca: &Path,
    key: &GatewayPublicKey,
) -> sallyport_core::Result<sallyport_core::Session> {
    let state = scratch("fleet-client");
    Launcher::new(
        sallyport_core::ClientProfile {
            ca_file: Some(ca.to_owned()),
            gateways: [("gw".to_owned(), key.to_base64())].into(),
            webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
            ..sallyport_core::ClientProfile::new(router_url)
        },
        ALICE,
        StickyPorts::new(state.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(state)
    .launch(request("echo", Profile::Fast))
    .await
}

/// A TCP proxy in front of Redis whose connections can be frozen: they stay open and carry
/// nothing more, as when a host or a firewall on the way goes silent. Connections made
/// after a freeze are carried.
struct FreezingProxy {
    addr: SocketAddr,
    generation: Arc<AtomicU64>,
}

impl FreezingProxy {
    async fn start(upstream: SocketAddr) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = Arc::new(AtomicU64::new(0));
        let current = generation.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let born = current.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)]
                {
                    let current = current.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if current.load(Ordering::SeqCst) != born {
                                // Frozen: hold both ends open, carry nothing.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        FreezingProxy { addr, generation }
    }

    fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_whose_redis_connections_go_silent_subscribes_again() {
    let dir = scratch("fleet-silent");
    let pki = pki("fleet-silent");
    let ca = pki.ca_file().to_owned();
    let redis_port = free_port();
    let redis = RedisServer::start(redis_port).await.unwrap();
    let proxy = FreezingProxy::start(([127, 0, 0, 1], redis_port).into()).await;
    let key = sallyport_gateway::generate_key(&dir.join("gw.key")).unwrap();
    let public = key.public();
    // A reaches Redis through the proxy; B directly. The gateway is on A only, so B's
    // launches are forwarded to A on A's channel.
    let a = Router::start(
        "router-a",
        &dir,
        &pki,
        &format!("redis://{}", proxy.addr),
        &public,
    )
    .await;
    let b = Router::start("router-b", &dir, &pki, &redis.url(), &public).await;
    let gateway = gateway_on(&[&a], &ca, &dir, key).await;
    wait_online(&b.url, &ca, Duration::from_secs(10)).await;
    let launch = || launch_echo(&b.url, &ca, &public);
    let before = launch()
        .await
        .expect("a launch on B through the gateway on A");
    before.close().await;

    // The late word of an older connection of the gateway elsewhere (a smaller epoch: the
    // gateway numbers its own connections) does not close its newer socket on A; the word
    // of a newer one does.
    let publish = |epoch: u64| {
        let message = serde_json::json!({"type": "gateway_online", "gateway": "gw",
            "router": "router-b", "connection": 1, "epoch": epoch});
        tokio::process::Command::new("redis-cli")
            .args(["-p", &redis_port.to_string(), "PUBLISH", "sallyport:fleet"])
            .arg(message.to_string())
            .output()
    };
    let mut online = gateway.online();
    online.mark_unchanged();
    assert!(publish(1).await.unwrap().status.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !online.has_changed().unwrap(),
        "a late gateway_online closed the newer socket"
    );
    assert!(publish(u64::MAX).await.unwrap().status.success());
    tokio::time::timeout(Duration::from_secs(5), online.changed())
        .await
        .expect("a newer gateway_online closes the socket here")
        .unwrap();
    assert!(gateway.wait_online(Duration::from_secs(10)).await);

    // Every connection A has to Redis goes silent. A finds its subscription deaf (its echo
    // does not come back), subscribes again on a new connection, and B's launches reach the
    // gateway again.
    proxy.freeze();
    let frozen = Instant::now();
    let deadline = frozen + Duration::from_secs(90);
    let session = loop {
        match launch().await {
            Ok(session) => break session,
            Err(e) => {
                eprintln!(
                    "{:.1} s after the freeze: {e}",
                    frozen.elapsed().as_secs_f64()
                );
                assert!(
                    Instant::now() < deadline,
                    "A never heard its channel again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    eprintln!(
        "launching through A again {:.1} s after its Redis connections went silent",
        frozen.elapsed().as_secs_f64()
    );
    let (sent, received) = echo_through(session.local_port(), 1 << 16, 7).await;
    assert_eq!(sent, received);
    session.close().await;
    gateway.shutdown().await;
    a.kill().await;
    b.kill().await;
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_reach_redis_over_tls_and_check_its_certificate() {
    let dir = scratch("fleet-tls");
    let pki = pki("fleet-tls");
    let ca = pki.ca_file().to_owned();
    let (plain_port, tls_port) = (free_port(), free_port());
    let redis = RedisServer::start_tls(
        plain_port,
        tls_port,
        &pki.files.cert_file,
        &pki.files.key_file,
        &ca,
    )
    .await
    .unwrap();
    let rediss = format!("rediss://127.0.0.1:{tls_port}");
    let trusting = format!("redis_ca_file = \"{}\"", ca.display());
    let key = sallyport_gateway::generate_key(&dir.join("gw.key")).unwrap();
    let public = key.public();
    let a = Router::start_with("router-a", &dir, &pki, &rediss, &public, &trusting).await;
    let b = Router::start_with("router-b", &dir, &pki, &rediss, &public, &trusting).await;
    // Without the CA, the system's roots do not vouch for this Redis: the router never joins.
    let c = Router::start("router-c", &dir, &pki, &rediss, &public).await;
    // Nor does a router join a Redis whose certificate, from the same CA, names another host.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = pki
        .ca
        .write_server_files(
            &other_dir,
            &["redis.other.example"],
            sallyport_ops::pki::Validity::Current,
        )
        .unwrap();
    let (other_plain, other_tls) = (free_port(), free_port());
    let misnamed = RedisServer::start_tls(
        other_plain,
        other_tls,
        &other.cert_file,
        &other.key_file,
        &ca,
    )
    .await
    .unwrap();
    let d = Router::start_with(
        "router-d",
        &dir,
        &pki,
        &format!("rediss://127.0.0.1:{other_tls}"),
        &public,
        &trusting,
    )
    .await;
    let gateway = gateway_on(&[&a], &ca, &dir, key).await;
    wait_online(&b.url, &ca, Duration::from_secs(10)).await;
    let session = launch_echo(&b.url, &ca, &public)
        .await
        .expect("a launch on B through the gateway on A, the fleet over TLS");
    let (sent, received) = echo_through(session.local_port(), 1 << 16, 11).await;
    assert_eq!(sent, received);

    // A and B joined within a fraction of a second; C and D, given more, still have not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for outside in [&c, &d] {
        let refused = sallyport_tests::http(&ca)
            .get(format!("{}/v1/resources", outside.url))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        let status = refused.status().as_u16();
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("fleet_unavailable")),
            "{}: {body}",
            outside.url
        );
    }
    session.close().await;
    gateway.shutdown().await;
    for router in [a, b, c, d] {
        router.kill().await;
    }
    redis.stop().await;
    misnamed.stop().await;
}
