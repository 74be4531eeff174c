//! A session whose path goes silent mid-transfer: it says `reconnecting`, restarts ICE through
//! the router, says `reconnected` with how long it was down, and not a byte is lost.

use std::net::IpAddr;
use std::time::Duration;

use sallyport_core::checkpoint::names;
use sallyport_core::{Launcher, Profile, SessionState, StickyPorts, TubeConfig};
use sallyport_lab::{Lab, LabOptions};
use sallyport_relay::{Side, UdpRelay};
use sallyport_tests::{echo_through, request, scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_five_silent_seconds_and_says_so() {
    let localhost: IpAddr = [127, 0, 0, 1].into();
    let gateway = Side {
        real: localhost,
        front: [127, 0, 0, 61].into(),
        ports: (47900, 47919),
    };
    let client = Side {
        real: localhost,
        front: [127, 0, 0, 62].into(),
        ports: (48000, 48019),
    };
    let relay = std::sync::Arc::new(
        UdpRelay::start(client, gateway, Duration::from_millis(1))
            .await
            .unwrap(),
    );
    let lab = Lab::start(LabOptions {
        include_local_services: false,
        gateway_nat: Some((gateway.ports, gateway.front)),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let dir = scratch("reconnect");
    let tube = TubeConfig {
        udp_port_range: Some(client.ports),
        advertise_ip: Some(client.front),
        ..lab.profile.tube_config()
    };
    let launcher = Launcher::new(
        lab.profile.clone(),
        &lab.client_token,
        StickyPorts::new(dir.join("ports.json")),
    )
    .unwrap()
    .with_tube_config(tube)
    .with_state_dir(dir);
    let session = launcher
        .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
        .await
        .unwrap();

    let mut states = session.state_changes();
    let seen_reconnecting = tokio::spawn(async move {
        states
            .wait_for(|s| *s == SessionState::Reconnecting)
            .await
            .is_ok()
    });
    let outage = {
        let relay = relay.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            relay.set_blackhole(true);
            tokio::time::sleep(Duration::from_secs(5)).await;
            relay.set_blackhole(false);
        })
    };
    let (sent, received) = echo_through(session.local_port(), 16 << 20, 41).await;
    outage.await.unwrap();
    assert_eq!(sent, received, "16 MiB across the outage, SHA-256 equal");
    assert!(
        seen_reconnecting.await.unwrap(),
        "the session said reconnecting"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let reconnected = loop {
        let found = session
            .checkpoints()
            .into_iter()
            .find(|c| c.phase == names::RECONNECTED);
        if found.is_some() || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reconnected = reconnected.expect("a reconnected checkpoint after ready");
    assert!(
        reconnected.step_ms >= 1000.0,
        "it lasted as long as the outage was noticed: {} ms",
        reconnected.step_ms
    );
    assert_eq!(session.info().state, SessionState::Active);
    session.close().await;
    lab.shutdown().await;
}
