//! A tube survives its users: many connections, bursts, aborts in either direction, a reader
//! that stops. Every connection is carried or refused with a reason, none is reset by another's
//! trouble, and the tube takes the next connection at once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sallyport_protocol::CloseReason;
use sallyport_tube::{Milestone, TubeConfig, TubeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serving(targets: Vec<std::net::SocketAddr>) -> (Pair, std::net::SocketAddr) {
    let mut pair = pair().await;
    pair.connected().await;
    pair.serve_each(targets);
    let port = pair.local_port().await;
    (pair, port)
}

#[tokio::test]
async fn two_hundred_short_connections_in_a_row() {
    let (pair, port) = serving(vec![echo_target().await]).await;
    for i in 0..200u32 {
        ping(port, format!("short {i}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
    pair.settle().await;
}

async fn burst(n: usize) {
    let (pair, port) = serving(vec![echo_target().await]).await;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(port).await.unwrap();
                echo_round_trip(stream, 256 * 1024, i as u64 + 1).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (sent, echoed) = task.await.unwrap();
        assert_eq!(sent, echoed, "connection {i} of the burst");
    }
    pair.settle().await;
    ping(port, b"after the burst").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_32_simultaneous_connections() {
    burst(32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_64_simultaneous_connections() {
    burst(64).await;
}

#[tokio::test]
async fn more_connections_than_the_gateway_allows_are_refused_with_a_reason() {
    let config = TubeConfig {
        max_connections: 2,
        ..TubeConfig::default()
    };
    let mut pair = pair_with(&config, Signalling::InDescriptions).await;
    pair.connected().await;
    pair.serve_each(vec![echo_target().await]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = pair.client.open().await.unwrap();
        c.opened(TIMEOUT).await.unwrap();
        held.push(c);
    }
    let mut third = pair.client.open().await.unwrap();
    match third.opened(TIMEOUT).await {
        Err(TubeError::Refused(CloseReason::SessionLimit)) => {}
        other => panic!("expected session_limit, got {other:?}"),
    }
    drop(held);
    pair.settle().await;
    let mut fourth = pair.client.open().await.unwrap();
    fourth.opened(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn a_client_that_sends_without_reading_and_closes() {
    let (pair, port) = serving(vec![echo_target().await]).await;
    let mut stream = TcpStream::connect(port).await.unwrap();
    // 16 MiB at an echo without reading it back: both directions fill up.
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..256 {
            if tokio::time::timeout(Duration::from_secs(2), stream.write_all(&chunk))
                .await
                .is_err()
            {
                break; // blocked: the windows are full, as they should be
            }
        }
        stream
    });
    let stream = writer.await.unwrap();
    // Meanwhile the tube takes other connections at once.
    ping(port, b"while one is stuffed").await.unwrap();
    drop(stream);
    ping(port, b"after it closed").await.unwrap();
    pair.settle().await;
}

#[tokio::test]
async fn a_client_aborting_a_download() {
    let (pair, port) = serving(vec![source_target().await, echo_target().await]).await;
    let mut download = TcpStream::connect(port).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 1024 * 1024 {
        got += download.read(&mut buf).await.unwrap();
    }
    reset(download);
    ping(port, b"right after the abort").await.unwrap();
    pair.settle().await;
}

#[tokio::test]
async fn a_target_resetting_an_upload_freezes_nothing_else() {
    let (pair, port) = serving(vec![
        resetting_target(1024 * 1024).await,
        echo_target().await,
    ])
    .await;
    let mut upload = TcpStream::connect(port).await.unwrap();
    // The second connection pings throughout the upload and its reset.
    let pinger = tokio::spawn(async move {
        for i in 0..50u32 {
            ping(port, format!("ping {i}").as_bytes()).await.unwrap();
        }
    });
    let chunk = vec![1u8; 64 * 1024];
    let mut outcome = Ok(());
    for _ in 0..64 {
        outcome = upload.write_all(&chunk).await;
        if outcome.is_err() {
            break;
        }
    }
    let reset_seen = match outcome {
        Err(e) => e.kind(),
        Ok(()) => {
            let mut byte = [0u8; 1];
            match upload.read(&mut byte).await {
                Err(e) => e.kind(),
                Ok(n) => panic!("expected the target's reset, read {n} bytes"),
            }
        }
    };
    assert!(
        matches!(
            reset_seen,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "the local client sees the target's reset, not an orderly close: {reset_seen:?}"
    );
    pinger.await.unwrap();
    pair.settle().await;
}

#[tokio::test]
async fn a_client_resetting_an_upload_with_data_in_flight() {
    let (pair, port) = serving(vec![echo_target().await]).await;
    let mut upload = TcpStream::connect(port).await.unwrap();
    let chunk = vec![2u8; 64 * 1024];
    for _ in 0..32 {
        upload.write_all(&chunk).await.unwrap();
    }
    reset(upload);
    ping(port, b"after the client's reset").await.unwrap();
    pair.settle().await;
}

#[tokio::test]
async fn a_paused_reader_stalls_only_its_own_connection() {
    let (pair, port) = serving(vec![source_target().await, echo_target().await]).await;
    // The download is never read while the pings run: its window fills and stops there.
    let download = TcpStream::connect(port).await.unwrap();
    let paused = Arc::new(AtomicBool::new(true));
    let pings = {
        let paused = paused.clone();
        tokio::spawn(async move {
            for i in 0..50u32 {
                ping(port, format!("ping {i}").as_bytes()).await.unwrap();
            }
            assert!(
                paused.load(Ordering::SeqCst),
                "pings finished while the reader was paused"
            );
        })
    };
    tokio::time::timeout(Duration::from_secs(30), pings)
        .await
        .expect("pings do not wait for the paused reader")
        .unwrap();
    paused.store(false, Ordering::SeqCst);
    // The paused connection resumes where it stopped.
    let mut download = download;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 4 * 1024 * 1024 {
        let n = download.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got += n;
    }
    drop(download);
    pair.settle().await;
}

#[tokio::test]
async fn a_connection_whose_target_is_down_is_refused_at_once() {
    let (pair, port) = serving(vec![closed_port().await]).await;
    let mut connection = pair.client.open().await.unwrap();
    match connection.opened(TIMEOUT).await {
        Err(TubeError::Refused(CloseReason::TargetRefused)) => {}
        other => panic!("expected target_refused, got {other:?}"),
    }
    // Through the local port the client sees its connection reset, not a hang.
    let mut stream = TcpStream::connect(port).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(TIMEOUT, stream.read(&mut byte))
        .await
        .expect("an answer, not a hang");
    assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
    pair.settle().await;
}

#[tokio::test]
async fn half_close_works_in_both_orders() {
    let (pair, port) = serving(vec![echo_target().await]).await;
    // Client first: it half-closes, the echo drains, answers and closes its side.
    let mut stream = TcpStream::connect(port).await.unwrap();
    stream.write_all(b"client closes first").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"client closes first");
    pair.settle().await;

    // Target first: it says goodbye and half-closes; the client still sends afterwards, then
    // closes too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"late words");
    });
    let mut pair2 = pair_with(&TubeConfig::default(), Signalling::InDescriptions).await;
    pair2.connected().await;
    pair2.serve_each(vec![target]);
    let port2 = pair2.local_port().await;
    let mut stream = TcpStream::connect(port2).await.unwrap();
    let mut bye = [0u8; 3];
    stream.read_exact(&mut bye).await.unwrap();
    let mut eof = [0u8; 1];
    assert_eq!(
        stream.read(&mut eof).await.unwrap(),
        0,
        "the target's half-close arrives"
    );
    stream.write_all(b"late words").await.unwrap();
    stream.shutdown().await.unwrap();
    pair2.settle().await;
    drop(pair);
}

#[tokio::test]
async fn the_peer_learns_why_a_tube_was_shut_down() {
    let pair = pair().await;
    pair.connected().await;
    pair.gateway.shutdown(CloseReason::GatewayShutdown).await;
    assert_eq!(
        pair.client.ended().await,
        sallyport_tube::TubeEnd::Peer(CloseReason::GatewayShutdown)
    );
    assert!(pair
        .client
        .reached(Milestone::ChannelOpen, TIMEOUT)
        .await
        .is_ok());
}
