//! A launch whose client may use relayed candidates only: through a real TURN server (coturn,
//! started on loopback), bytes verified, and the timeline names the relayed pair it used.

use sallyport_core::checkpoint::names;
use sallyport_core::{Launcher, Profile, StickyPorts};
use sallyport_protocol::IceServer;
use sallyport_tests::{echo_through, lab, request, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_launch_goes_through_turn_and_says_so() {
    let turn = sallyport_relay::Coturn::start().await.unwrap();
    let lab = lab(vec![]).await;
    let mut profile = lab.profile.clone();
    profile.ice_servers = vec![IceServer {
        urls: vec![turn.url()],
        username: Some(turn.username.clone()),
        credential: Some(turn.password.clone()),
    }];
    profile.relay_only = true;
    let dir = scratch("relayed");
    let launcher = Launcher::new(
        profile,
        &lab.client_token,
        StickyPorts::new(dir.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(dir);
    let session = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .expect("the launch succeeds through the relay");
    let data_plane = session
        .checkpoints()
        .into_iter()
        .find(|c| c.phase == names::WEBRTC_DATA_PLANE_CONNECTED)
        .unwrap();
    let path = data_plane.detail.unwrap_or_default();
    assert!(
        path.starts_with("relay "),
        "the timeline names the relayed pair: {path}"
    );
    eprintln!("ready in {:.1} ms via {path}", session.info().ready_ms);
    let started = std::time::Instant::now();
    let (sent, received) = echo_through(session.local_port(), 4 << 20, 31).await;
    eprintln!("4 MiB echoed in {:?}", started.elapsed());
    assert_eq!(sent, received, "4 MiB through the relay, SHA-256 equal");
    session.close().await;
    lab.shutdown().await;
}
