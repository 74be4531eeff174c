//! Across a relayed, delayed path: each side announces only its 1:1 NAT front address, the
//! relay owns those, so every datagram takes the long way.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sallyport_protocol::CloseReason;
use sallyport_relay::{Side, UdpRelay};
use sallyport_tube::{Milestone, TubeConfig};
use tokio::net::TcpStream;

fn side(front: &str, ports: (u16, u16)) -> (Side, TubeConfig) {
    let side = Side {
        real: "127.0.0.1".parse().unwrap(),
        front: front.parse().unwrap(),
        ports,
    };
    let config = TubeConfig {
        udp_port_range: Some(ports),
        advertise_ip: Some(side.front),
        ..TubeConfig::default()
    };
    (side, config)
}

#[tokio::test]
async fn a_tube_comes_up_through_a_delayed_relay_and_carries_bytes() {
    let (client_side, client_config) = side("127.0.0.31", (47300, 47309));
    let (gateway_side, gateway_config) = side("127.0.0.32", (47400, 47409));
    let one_way = Duration::from_millis(10);
    let relay = UdpRelay::start(client_side, gateway_side, one_way)
        .await
        .unwrap();
    let started = Instant::now();
    let mut pair = pair_between(&client_config, &gateway_config).await;
    pair.client
        .reached(Milestone::ChannelOpen, TIMEOUT)
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("channel open after {took:?}");
    assert!(
        took >= one_way * 4,
        "the data plane took the relayed path ({took:?})"
    );
    let path = pair.client.status().borrow().path.clone().unwrap();
    assert!(path.contains("127.0.0.32"), "{path}");

    let target = echo_target().await;
    pair.serve(target);
    let port = pair.local_port().await;
    let (sent, echoed) = echo_round_trip(TcpStream::connect(port).await.unwrap(), 1 << 20, 9).await;
    assert_eq!(sent, echoed);
    let (forwarded, dropped) = relay.counts();
    assert!(
        forwarded > 100 && dropped == 0,
        "{forwarded} forwarded, {dropped} dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_goes_silent_for_five_seconds_loses_nothing() {
    let (client_side, client_config) = side("127.0.0.41", (47500, 47509));
    let (gateway_side, gateway_config) = side("127.0.0.42", (47600, 47609));
    let relay = std::sync::Arc::new(
        UdpRelay::start(client_side, gateway_side, Duration::from_millis(1))
            .await
            .unwrap(),
    );
    let mut pair = pair_between(&client_config, &gateway_config).await;
    pair.connected().await;
    let target = echo_target().await;
    pair.serve(target);
    let port = pair.local_port().await;
    let outage = {
        let relay = relay.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            relay.set_blackhole(true);
            tokio::time::sleep(Duration::from_secs(5)).await;
            relay.set_blackhole(false);
        })
    };
    let started = Instant::now();
    let (sent, echoed) =
        echo_round_trip(TcpStream::connect(port).await.unwrap(), 64 << 20, 5).await;
    outage.await.unwrap();
    eprintln!(
        "64 MiB echoed across a 5 s outage in {:?}",
        started.elapsed()
    );
    assert_eq!(sent, echoed);
    assert!(relay.counts().1 > 0, "the outage dropped datagrams");
    assert!(pair.client.end().is_none() && pair.gateway.end().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_moves_a_live_tube_to_a_new_path() {
    let (client_side, client_config) = side("127.0.0.51", (47700, 47709));
    let (gateway_side, gateway_config) = side("127.0.0.52", (47800, 47809));
    let relay = UdpRelay::start(client_side, gateway_side, Duration::from_millis(1))
        .await
        .unwrap();
    let mut pair = pair_between(&client_config, &gateway_config).await;
    pair.connected().await;
    let target = echo_target().await;
    pair.serve(target);
    let port = pair.local_port().await;
    // A transfer in flight across the restart.
    let transfer = tokio::spawn(async move {
        echo_round_trip(TcpStream::connect(port).await.unwrap(), 16 << 20, 8).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.set_blackhole(true);
    let mut status = pair.client.status();
    tokio::time::timeout(
        Duration::from_secs(15),
        status.wait_for(|s| s.disconnected_since.is_some()),
    )
    .await
    .expect("consent loss is noticed")
    .unwrap();
    relay.set_blackhole(false);
    let offer = pair.client.restart().await.unwrap();
    let answer = pair.gateway.accept_restart(&offer).await.unwrap();
    assert!(ice_ufrag(&offer.sdp).is_some() && ice_ufrag(&answer.sdp).is_some());
    pair.client.apply_answer(&answer).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        status.wait_for(|s| s.disconnected_since.is_none()),
    )
    .await
    .expect("the restarted path comes up")
    .unwrap();
    let (sent, echoed) = transfer.await.unwrap();
    assert_eq!(sent, echoed, "16 MiB across the restart, nothing lost");
    assert!(pair.client.end().is_none() && pair.gateway.end().is_none());
}

fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:"))
}

/// Across a delay, each end's handshake packets arrive right behind what lets the stack take
/// them (the check response that selects the pair, the COOKIE-ACK that opens the channel):
/// whichever side is the DTLS client, the first connection, opened the moment the client's
/// channel opens, is carried, launch after launch.
#[tokio::test]
async fn the_first_connection_opens_across_a_delay_whichever_side_starts_dtls() {
    let (client_side, client_config) = side("127.0.0.61", (48100, 48109));
    let (gateway_side, gateway_config) = side("127.0.0.62", (48200, 48209));
    let _relay = UdpRelay::start(client_side, gateway_side, Duration::from_millis(15))
        .await
        .unwrap();
    for offer_passive in [true, false, true, false, true, false] {
        let client_config = TubeConfig {
            offer_passive,
            ..client_config.clone()
        };
        let mut pair = pair_between(&client_config, &gateway_config).await;
        pair.serve(echo_target().await);
        pair.client
            .reached(Milestone::ChannelOpen, TIMEOUT)
            .await
            .unwrap();
        let mut first = pair.client.open().await.unwrap();
        first
            .opened(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("offer_passive={offer_passive}: {e}"));
        pair.client.shutdown(CloseReason::ClientClosed).await;
    }
}

/// The gateway opens the first connection when the offer arrives; what the client hears of it
/// through the router settles it before the channel is even open, and the bytes then flow
/// through it like through any other. A target that refuses is refused the same way.
#[tokio::test]
async fn a_first_connection_opened_at_start_is_settled_by_what_the_router_says() {
    let (client_side, client_config) = side("127.0.0.71", (48300, 48309));
    let (gateway_side, gateway_config) = side("127.0.0.72", (48400, 48409));
    let _relay = UdpRelay::start(client_side, gateway_side, Duration::from_millis(15))
        .await
        .unwrap();

    let (mut pair, mut first) = pair_opening_first(&client_config, &gateway_config).await;
    pair.serve(echo_target().await);
    pair.client.first_heard(None);
    first.opened(TIMEOUT).await.unwrap();
    assert!(
        pair.client.status().borrow().channel_open.is_none(),
        "settled before the channel opened"
    );
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = local.local_addr().unwrap();
    let bridge = tokio::spawn(async move {
        let (stream, _) = local.accept().await.unwrap();
        first
            .bridge(stream, std::sync::Arc::new(Default::default()))
            .await
    });
    let (sent, echoed) = echo_round_trip(TcpStream::connect(addr).await.unwrap(), 1 << 20, 3).await;
    assert_eq!(sent, echoed);
    // The gateway's own OPENED for it came on the channel too, and changed nothing.
    let mut second = pair.client.open().await.unwrap();
    second.opened(TIMEOUT).await.unwrap();
    drop(bridge);

    // Refused: what the router says and the gateway's RESET agree.
    let (mut pair, mut first) = pair_opening_first(&client_config, &gateway_config).await;
    pair.serve(closed_port().await);
    match first.opened(TIMEOUT).await {
        Err(sallyport_tube::TubeError::Refused(reason)) => {
            assert_eq!(reason, CloseReason::TargetRefused)
        }
        other => panic!("expected target_refused, got {other:?}"),
    }
    pair.client.first_heard(Some(CloseReason::TargetRefused));
    let mut next = pair.client.open().await.unwrap();
    assert!(
        next.opened(TIMEOUT).await.is_err(),
        "the target is still down"
    );
}
