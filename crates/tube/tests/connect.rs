//! A tube comes up whichever way the candidates travel, and carries bytes.

mod common;

use common::*;
use sallyport_tube::{Milestone, TubeConfig};
use tokio::net::TcpStream;

async fn comes_up_and_carries(signalling: Signalling) {
    let mut pair = pair_with(&TubeConfig::default(), signalling).await;
    pair.connected().await;
    let status = pair.client.status().borrow().clone();
    let (ice, dtls, sctp, open) = (
        status.ice_connected.unwrap(),
        status.dtls_connected.unwrap(),
        status.sctp_connected.unwrap(),
        status.channel_open.unwrap(),
    );
    assert!(
        ice <= dtls && dtls <= sctp && sctp <= open,
        "layers come up in order"
    );
    let target = echo_target().await;
    pair.serve(target);
    let port = pair.local_port().await;
    let stream = TcpStream::connect(port).await.unwrap();
    let (sent, echoed) = echo_round_trip(stream, 4 * 1024 * 1024, 3).await;
    assert_eq!(sent, echoed);
}

#[tokio::test]
async fn with_candidates_in_the_descriptions() {
    comes_up_and_carries(Signalling::InDescriptions).await;
}

#[tokio::test]
async fn with_every_candidate_trickled_late() {
    comes_up_and_carries(Signalling::TrickledOnly).await;
}

#[tokio::test]
async fn milestones_report_when_each_layer_came_up() {
    let pair = pair().await;
    let ice = pair
        .client
        .reached(Milestone::IceConnected, TIMEOUT)
        .await
        .unwrap();
    let open = pair
        .client
        .reached(Milestone::ChannelOpen, TIMEOUT)
        .await
        .unwrap();
    assert!(ice <= open);
}

#[tokio::test]
async fn a_standard_offer_makes_the_gateway_the_dtls_and_sctp_server() {
    let client = TubeConfig {
        offer_passive: false,
        ..TubeConfig::default()
    };
    let (_client, _ce, offer) = sallyport_tube::Tube::offer(&client).await.unwrap();
    assert!(offer.sdp.contains("a=setup:actpass"), "{}", offer.sdp);
    let (_gateway, _ge, answer) = sallyport_tube::Tube::answer(&TubeConfig::default(), &offer)
        .await
        .unwrap();
    assert!(answer.sdp.contains("a=setup:passive"), "{}", answer.sdp);
    assert!(answer.sdp.contains("a=sctp-port:5000"), "{}", answer.sdp);
    assert!(
        answer.sdp.contains("a=max-message-size:65536"),
        "{}",
        answer.sdp
    );
}

#[tokio::test]
async fn a_passive_offer_makes_the_gateway_the_dtls_client() {
    let config = TubeConfig::default();
    let (_client, _ce, offer) = sallyport_tube::Tube::offer(&config).await.unwrap();
    assert!(offer.sdp.contains("a=setup:passive"), "{}", offer.sdp);
    assert!(!offer.sdp.contains("a=setup:actpass"), "{}", offer.sdp);
    let (_gateway, _ge, answer) = sallyport_tube::Tube::answer(&config, &offer).await.unwrap();
    assert!(answer.sdp.contains("a=setup:active"), "{}", answer.sdp);
}

#[tokio::test]
async fn with_the_client_as_dtls_client() {
    let client = TubeConfig {
        offer_passive: false,
        ..TubeConfig::default()
    };
    let mut pair = pair_between(&client, &TubeConfig::default()).await;
    pair.connected().await;
    pair.serve(echo_target().await);
    let stream = TcpStream::connect(pair.local_port().await).await.unwrap();
    let (sent, echoed) = echo_round_trip(stream, 1024 * 1024, 5).await;
    assert_eq!(sent, echoed);
}

/// The client opens its first connection the moment its channel opens, as the launch does:
/// with the gateway as SCTP client that is before the gateway's own channel is open.
#[tokio::test]
async fn a_connection_opened_as_the_channel_opens_is_carried() {
    for _ in 0..20 {
        let mut pair = pair().await;
        pair.serve(echo_target().await);
        pair.client
            .reached(Milestone::ChannelOpen, TIMEOUT)
            .await
            .unwrap();
        let mut connection = pair.client.open().await.unwrap();
        connection
            .opened(std::time::Duration::from_secs(5))
            .await
            .expect("the gateway answers the first OPEN at once");
    }
}
