//! The gateway answers what a standard peer sends: candidates inside the offer, candidates
//! trickled only after the client's checks have already reached the gateway, and both. The
//! client here is a bare tube driven through the router by hand, as an independent client
//! would be, not the launch pipeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sallyport_protocol::{
    AnswerBody, CandidatesBody, ClientMessage, ConversationKeys, GatewayPublicKey, IceCandidate,
    MessageKind, StartBody, PROTOCOL_VERSION,
};
use sallyport_tests::lab;
use sallyport_tube::{ByteCounters, Milestone, Tube, TubeConfig, TubeEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Candidates {
    InOffer,
    TrickledLate,
    Both,
}

fn without_candidates(sdp: &str) -> String {
    sdp.lines()
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

async fn launch(mode: Candidates) {
    let lab = lab(vec![]).await;
    let api = sallyport_tests::lab_api(&lab);
    let key = GatewayPublicKey::from_base64(&lab.profile.gateways["lab"]).unwrap();
    let conversation = uuid::Uuid::new_v4().simple().to_string();
    let keys = ConversationKeys::for_client(&key, &conversation);
    let message = |kind: MessageKind, stream: bool, payload| ClientMessage {
        v: PROTOCOL_VERSION,
        conversation_id: conversation.clone(),
        resource: sallyport_lab::DEMO_ECHO.into(),
        kind,
        stream_response: stream,
        timeout_ms: Some(5_000),
        payload,
    };

    let started = Instant::now();
    let (tube, mut events, mut offer) = Tube::offer(&TubeConfig::default()).await.unwrap();
    let mut candidates: Vec<IceCandidate> = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            TubeEvent::LocalCandidate(c) => candidates.push(c),
            TubeEvent::GatheringComplete => break,
            TubeEvent::Incoming(_) => unreachable!("a client gets no connections"),
        }
    }
    if mode == Candidates::TrickledLate {
        offer.sdp = without_candidates(&offer.sdp);
    }
    let start = keys.seal_to_gateway(&StartBody {
        offer,
        resource: sallyport_lab::DEMO_ECHO.into(),
        max_datagram: None,
        open_first: false,
    });
    let reply = api
        .send("lab", &message(MessageKind::Start, false, start), TIMEOUT)
        .await
        .unwrap();
    let answer = keys
        .open_from_gateway::<AnswerBody>(&reply.payload.unwrap())
        .unwrap()
        .answer;
    tube.apply_answer(&answer).await.unwrap();

    // Our checks now reach the gateway; in the late mode it knows none of our candidates yet
    // and must answer them as peer-reflexive.
    if mode == Candidates::TrickledLate {
        tube.reached(Milestone::ChannelOpen, TIMEOUT)
            .await
            .expect("the gateway answered checks from addresses it was never told");
    }
    if mode != Candidates::InOffer {
        let body = CandidatesBody {
            candidates: candidates.clone(),
            done: true,
        };
        let sealed = keys.seal_to_gateway(&body);
        api.send(
            "lab",
            &message(MessageKind::Candidates, false, sealed),
            TIMEOUT,
        )
        .await
        .expect("late candidates are accepted");
    }
    tube.reached(Milestone::ChannelOpen, TIMEOUT).await.unwrap();
    let mut connection = tube.open().await.unwrap();
    connection.opened(TIMEOUT).await.unwrap();
    eprintln!(
        "{mode:?}: channel open and target connected after {:?}",
        started.elapsed()
    );

    // Bytes through it, to the echo target and back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        connection
            .bridge(stream, Arc::new(ByteCounters::default()))
            .await;
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"through a standard peer's tube")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"through a standard peer's tube");
    tube.shutdown(sallyport_protocol::CloseReason::ClientClosed)
        .await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_inside_the_offer() {
    launch(Candidates::InOffer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_trickled_after_the_first_checks() {
    launch(Candidates::TrickledLate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_in_the_offer_and_trickled_again() {
    launch(Candidates::Both).await;
}
