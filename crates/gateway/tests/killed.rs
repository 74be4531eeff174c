//! A gateway process killed outright (SIGKILL: no goodbye on the tube, its router socket just
//! drops) is reported to its session promptly, as `gateway_lost`: the router tells the client,
//! the client pings over the tube, and nothing answers. Also when the client's own router
//! socket dropped earlier: it subscribes again and the router kept its conversation.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sallyport_core::{
    ClientChoice, ClientProfile, LaunchRequest, Launcher, Profile, SessionEnd, StickyPorts,
    Tunables,
};
use sallyport_relay::TcpDelayProxy;
use sallyport_router::RouterConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_is_reported_lost_within_seconds() {
    killed_gateway_is_reported(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_router_socket_dropped_still_hears_of_it() {
    killed_gateway_is_reported(true).await;
}

/// Launch through a real gateway process, optionally cut the client's connections to the
/// router (a network change), kill the gateway and wait for the session to say so.
async fn killed_gateway_is_reported(cut_client_socket: bool) {
    let dir = std::env::temp_dir().join(format!("sallyport-killed-{}", secret()));
    std::fs::create_dir_all(&dir).unwrap();
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });

    let key = sallyport_gateway::generate_key(&dir.join("gw.key")).unwrap();
    let (gateway_token, client_token) = (secret(), secret());
    let ca = sallyport_ops::pki::TestCa::new("test CA").unwrap();
    let tls = ca
        .write_server_files(&dir, &["127.0.0.1"], sallyport_ops::pki::Validity::Current)
        .unwrap();
    let router = sallyport_router::spawn(
        RouterConfig::parse(&format!(
            r#"listen = "127.0.0.1:0"
[tls]
cert_file = "{}"
key_file = "{}"
[[gateways]]
id = "gw"
token = "{gateway_token}"
public_key = "{}"
[[clients]]
name = "user"
token = "{client_token}"
resources = ["*"]
"#,
            tls.cert_file.display(),
            tls.key_file.display(),
            key.public().to_base64()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            r#"router_url = "{}"
ca_file = "ca.pem"
gateway_id = "gw"
token = "{gateway_token}"
key_file = "gw.key"
webrtc_udp = ["127.0.0.1:0"]
[[resources]]
name = "echo"
protocol = "tcp"
target = "{echo_addr}"
"#,
            router.url()
        ),
    )
    .unwrap();
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_sallyport-gateway"))
        .args(["run", "--config"])
        .arg(dir.join("gateway.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The client reaches the router through a proxy that can drop its connections.
    let router_addr: std::net::SocketAddr = router.addr;
    let proxy = TcpDelayProxy::start(router_addr, Duration::ZERO)
        .await
        .unwrap();
    let profile = ClientProfile {
        router_url: format!("https://{}", proxy.addr()),
        router_urls: Vec::new(),
        ca_file: Some(tls.ca_file.clone()),
        token: Some(client_token.clone()),
        gateways: [("gw".to_owned(), key.public().to_base64())].into(),
        webrtc_udp: Some(vec!["127.0.0.1:0".into()]),
        ice_servers: Vec::new(),
        relay_only: false,
        lab: true,
        launch_reports: true,
        sso: None,
    };
    let launcher = Launcher::new(
        profile,
        &client_token,
        StickyPorts::new(dir.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(dir.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !launcher
        .resources()
        .await
        .is_ok_and(|list| list.iter().any(|r| r.online))
    {
        assert!(Instant::now() < deadline, "the gateway never came online");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut request = LaunchRequest::new("echo", Tunables::for_profile(Profile::Fast));
    request.client = ClientChoice::None;
    let session = launcher.launch(request).await.unwrap();
    if cut_client_socket {
        proxy.cut();
        // Time to notice and subscribe again (the first retry waits 250 ms).
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    // SAFETY: killing the child process this test started.
    unsafe {
        libc::kill(gateway.id().unwrap() as libc::pid_t, libc::SIGKILL);
    }
    let killed = Instant::now();
    let _ = gateway.wait().await;
    // ICE alone would take 3 s to call the path broken and 30 more to give up on it.
    let end = tokio::time::timeout(Duration::from_secs(5), session.wait_tunnel())
        .await
        .expect("the session learns it lost its gateway, not after ICE gives up");
    eprintln!("reported {:?} after the kill", killed.elapsed());
    assert_eq!(
        end,
        SessionEnd::TubeEnded {
            reason: sallyport_protocol::Code::GatewayLost
        }
    );
    router.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
