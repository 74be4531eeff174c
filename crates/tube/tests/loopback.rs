//! Two peers in one process over loopback: offer, answer, a data channel, bytes both ways.

use std::time::{Duration, Instant};

use sallyport_tube::{ChannelEvent, Peer, PeerEvent, TubeConfig};
use tokio::sync::mpsc::UnboundedReceiver;

async fn until_gathered(events: &mut UnboundedReceiver<PeerEvent>) -> Vec<PeerEvent> {
    let mut others = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            PeerEvent::GatheringComplete => break,
            other => others.push(other),
        }
    }
    others
}

#[tokio::test]
async fn offer_answer_and_a_channel_carry_bytes() {
    let config = TubeConfig::default();
    let started = Instant::now();
    let (client, mut client_events) = Peer::new(&config).await.unwrap();
    let (gateway, mut gateway_events) = Peer::new(&config).await.unwrap();

    let control = client.create_channel("control").await.unwrap();
    client.create_offer().await.unwrap();
    until_gathered(&mut client_events).await;
    let offer = client.local_description().await.unwrap();
    assert!(
        offer.sdp.contains("a=candidate"),
        "offer carries its candidates"
    );

    gateway.accept_offer(&offer).await.unwrap();
    until_gathered(&mut gateway_events).await;
    let answer = gateway.local_description().await.unwrap();
    client.apply_answer(&answer).await.unwrap();

    control.wait_open(Duration::from_secs(20)).await.unwrap();
    let setup = started.elapsed();
    client.wait_connected(Duration::from_secs(5)).await.unwrap();

    let incoming = loop {
        match gateway_events.recv().await.unwrap() {
            PeerEvent::IncomingChannel(channel) => break channel,
            _ => continue,
        }
    };
    assert_eq!(incoming.label(), "control");
    control.send(b"ping").await.unwrap();
    let got = loop {
        match incoming.next_event().await {
            ChannelEvent::Message(data) => break data,
            ChannelEvent::Open => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(&got[..], b"ping");
    eprintln!("tube setup (offer to channel open) over loopback: {setup:?}");
    client.close().await;
    gateway.close().await;
}
