//! sallyport-kit: what every end of the signalling shares.
//!
//! * [`Stopper`] and [`Shutdown`]: one way to stop, for the router and the gateway (mini-redis's
//!   pattern: a broadcast tells every task to stop; each task holds a [`Shutdown`], and dropping
//!   the last one is how the stopper knows all have stopped);
//! * [`connect`]: one authenticated WebSocket connect (bearer token, no Nagle, a deadline) for
//!   the client, the gateway and the tests.

use std::sync::Arc;
use std::time::Duration;

use sallyport_ops::rustls;

use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Owns the stop signal. [`stop`](Self::stop) tells every [`Shutdown`] and returns once all
/// of them are dropped.
pub struct Stopper {
    signal: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    /// Handed (cloned) to each `Shutdown`; the channel closes when the last clone is dropped.
    done_tx: mpsc::Sender<()>,
}

impl Default for Stopper {
    fn default() -> Self {
        Self::new()
    }
}

impl Stopper {
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
        let (done_tx, done) = mpsc::channel(1);
        Self {
            signal,
            done,
            done_tx,
        }
    }

    /// A handle for one task: it learns of the stop through it, and holds the stop open
    /// until it drops it.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            signal: self.signal.subscribe(),
            _done: self.done_tx.clone(),
        }
    }

    /// Tell every task to stop, and wait until each has dropped its `Shutdown`.
    pub async fn stop(self) {
        let Stopper {
            signal,
            mut done,
            done_tx,
        } = self;
        signal.send_replace(true);
        drop(done_tx);
        // Every sender gone: `recv` returns None.
        let _ = done.recv().await;
    }
}

/// One task's view of the stop: [`recv`](Self::recv) resolves once stopping was asked for
/// (at once if it already was: the signal is a value, not a message one can miss).
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl Clone for Shutdown {
    fn clone(&self) -> Self {
        Self {
            signal: self.signal.clone(),
            _done: self._done.clone(),
        }
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once the stop is asked for. A stopper dropped without stopping never resolves
    /// this: nobody asked.
    pub async fn recv(&mut self) {
        if self.signal.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A client WebSocket to the router (or anything on the router's paths).
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the TCP connect and the WebSocket handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The token cannot go in an HTTP header.
    Token,
    /// The URL is not a WebSocket URL of a router.
    Url(String),
    /// The connection or the handshake failed; the router's refusal carries its status.
    Handshake(tokio_tungstenite::tungstenite::Error),
    TimedOut,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Token => f.write_str("the token contains characters a header cannot"),
            ConnectError::Url(e) => write!(f, "not a router URL: {e}"),
            ConnectError::Handshake(e) => write!(
                f,
                "cannot open the router websocket: {}",
                sallyport_ops::tls::explain(e)
            ),
            ConnectError::TimedOut => write!(
                f,
                "the router websocket did not open within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Open the WebSocket at `path` of the router at `http_base` (`http://` or `https://`),
/// authenticated with `token`, checking an `https` router's certificate with `tls` (the
/// system's roots when `None`). No Nagle: small signalling frames must not wait for an ACK.
pub async fn connect(
    http_base: &str,
    path: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WebSocket, ConnectError> {
    let url = sallyport_protocol::websocket_url(http_base, path);
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Url(e.to_string()))?;
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| ConnectError::Token)?;
    request.headers_mut().insert("authorization", bearer);
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let handshake =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| ConnectError::TimedOut)?
        .map_err(ConnectError::Handshake)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_tells_every_task_and_waits_for_all_of_them() {
        let stopper = Stopper::new();
        let mut early = stopper.shutdown();
        let late = early.clone();
        let (ended_tx, mut ended) = mpsc::unbounded_channel();
        let tx = ended_tx.clone();
        tokio::spawn(async move {
            early.recv().await;
            tx.send("early").unwrap();
        });
        // This one takes a while to wind down after the signal.
        tokio::spawn(async move {
            let mut late = late;
            late.recv().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            ended_tx.send("late").unwrap();
        });
        let started = tokio::time::Instant::now();
        stopper.stop().await;
        // stop() returned only once both had dropped their Shutdown.
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(ended.recv().await, Some("early"));
        assert_eq!(ended.recv().await, Some("late"));
    }

    #[tokio::test]
    async fn a_shutdown_taken_after_the_stop_sees_it() {
        let stopper = Stopper::new();
        let first = stopper.shutdown();
        stopper.signal.send_replace(true);
        let mut later = first.clone();
        assert!(later.is_shutdown());
        later.recv().await;
    }
}
