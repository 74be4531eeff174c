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
async fn the_answer_makes_the_gateway_the_dtls_and_sctp_server() {
    let config = TubeConfig::default();
    let (_client, _ce, offer) = sallyport_tube::Tube::offer(&config).await.unwrap();
    let (_gateway, _ge, answer) = sallyport_tube::Tube::answer(&config, &offer).await.unwrap();
    assert!(answer.sdp.contains("a=setup:passive"), "{}", answer.sdp);
    assert!(answer.sdp.contains("a=sctp-port:5000"), "{}", answer.sdp);
    assert!(
        answer.sdp.contains("a=max-message-size:65536"),
        "{}",
        answer.sdp
    );
    assert!(offer.sdp.contains("a=setup:actpass"), "{}", offer.sdp);
}
