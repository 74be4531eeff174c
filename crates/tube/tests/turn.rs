//! Through a real TURN server (coturn, started here on loopback): the client uses relayed
//! candidates only, so every datagram goes through the relay, and the tube says so.

mod common;

use common::*;
use sallyport_protocol::IceServer;
use sallyport_tube::{Milestone, TubeConfig};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_client_reaches_the_gateway_through_turn() {
    let turn = sallyport_relay::Coturn::start().await.unwrap();
    let client = TubeConfig {
        ice_servers: vec![IceServer {
            urls: vec![turn.url()],
            username: Some(turn.username.clone()),
            credential: Some(turn.password.clone()),
        }],
        relay_only: true,
        ..TubeConfig::default()
    };
    // What the client says in its offer: a relay may drop big datagrams.
    let gateway = TubeConfig {
        peer_max_datagram: Some(client.receive_limit()),
        ..TubeConfig::default()
    };
    let mut pair = pair_between(&client, &gateway).await;
    pair.client
        .reached(Milestone::ChannelOpen, TIMEOUT)
        .await
        .expect("the tube comes up through the relay");
    let path = pair.client.status().borrow().path.clone().unwrap();
    assert!(
        path.starts_with("relay "),
        "the client's side of the path is relayed: {path}"
    );

    let target = echo_target().await;
    pair.serve(target);
    let port = pair.local_port().await;
    let (sent, echoed) =
        echo_round_trip(TcpStream::connect(port).await.unwrap(), 2 << 20, 21).await;
    assert_eq!(sent, echoed, "2 MiB through the relay, SHA-256 equal");
}
