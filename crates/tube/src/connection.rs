//! One TCP connection through the tube: the local socket on one side, the mux on the other.
//!
//! Both directions run concurrently. Socket → tube reads only while the peer has granted
//! credit, so a peer whose reader stops holds back this socket alone; tube → socket reports
//! every write back to the mux, which grants the peer more. A half-close travels as `EOF`
//! and the connection keeps carrying bytes the other way; an abort on either side resets the
//! other side's socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sallyport_protocol::frame::{FRAME_HEADER_BYTES, INITIAL_WINDOW, MAX_DATA_BYTES};
use sallyport_protocol::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::driver::Command;
use crate::{Commands, Result, Side, TubeError};

/// Byte counters shared with whoever reports on connections (a session, the gateway).
#[derive(Debug, Default)]
pub struct ByteCounters {
    /// Bytes that came through the tube and were written to the local socket.
    pub from_tube: AtomicU64,
    /// Bytes read from the local socket and sent through the tube.
    pub to_tube: AtomicU64,
}

/// How a bridged connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// Both directions ended with a half-close.
    Closed,
    /// The peer (or the tube ending) aborted it; the local socket was reset.
    Reset(CloseReason),
    /// The local socket failed; the peer was told.
    LocalFailed,
}

/// Send credit granted by the peer: the reader waits on it.
#[derive(Debug)]
pub(crate) struct Credit {
    available: AtomicU64,
    notify: Notify,
}

impl Credit {
    pub(crate) fn new() -> Self {
        Self {
            available: AtomicU64::new(INITIAL_WINDOW as u64),
            notify: Notify::new(),
        }
    }

    pub(crate) fn grant(&self, n: u32) {
        self.available.fetch_add(n as u64, Ordering::AcqRel);
        // One waiter (the reader); a permit is stored if it is not waiting yet.
        self.notify.notify_one();
    }

    async fn wait(&self) -> u64 {
        loop {
            let available = self.available.load(Ordering::Acquire);
            if available > 0 {
                return available;
            }
            self.notify.notified().await;
        }
    }

    fn take(&self, n: usize) {
        self.available.fetch_sub(n as u64, Ordering::AcqRel);
    }
}

/// What the driver hands a connection from the tube.
#[derive(Debug)]
pub(crate) enum Inbound {
    Data(Bytes),
    Eof,
}

/// The driver's side of a connection.
pub(crate) struct Local {
    pub inbound: mpsc::UnboundedSender<Inbound>,
    pub credit: Arc<Credit>,
    pub abort: watch::Sender<Option<CloseReason>>,
    /// Client: resolved by `OPENED` or a reset.
    pub opened: Option<oneshot::Sender<std::result::Result<(), CloseReason>>>,
}

/// One connection of a tube. Dropping it unbridged resets it.
pub struct Connection {
    id: u32,
    side: Side,
    commands: Commands,
    inbound: Option<mpsc::UnboundedReceiver<Inbound>>,
    credit: Arc<Credit>,
    abort: watch::Receiver<Option<CloseReason>>,
    opened: Option<oneshot::Receiver<std::result::Result<(), CloseReason>>>,
    /// Bridged or refused: nothing left to do on drop.
    settled: bool,
}

impl Connection {
    /// A connection and the driver's side of it.
    pub(crate) fn new(id: u32, side: Side, commands: Commands) -> (Self, Local) {
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (abort_tx, abort_rx) = watch::channel(None);
        let credit = Arc::new(Credit::new());
        let (opened_tx, opened_rx) = match side {
            Side::Client => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            Side::Gateway => (None, None),
        };
        (
            Self {
                id,
                side,
                commands,
                inbound: Some(inbound_rx),
                credit: credit.clone(),
                abort: abort_rx,
                opened: opened_rx,
                settled: false,
            },
            Local {
                inbound: inbound_tx,
                credit,
                abort: abort_tx,
                opened: opened_tx,
            },
        )
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Client: wait until the gateway has reached the target, or says why it could not.
    pub async fn opened(&mut self, timeout: Duration) -> Result<()> {
        let Some(opened) = self.opened.as_mut() else {
            return Ok(());
        };
        let outcome = tokio::time::timeout(timeout, opened)
            .await
            .map_err(|_| TubeError::Timeout(timeout, "the gateway to reach the target"))?;
        self.opened = None;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(TubeError::Refused(reason)),
            Err(_) => Err(TubeError::Closed),
        }
    }

    /// Gateway: the target answered; tell the client.
    pub fn accept(&self) {
        let _ = self.commands.send(Command::Accept { conn: self.id });
    }

    /// Gateway: the target could not be reached; tell the client why.
    pub fn refuse(mut self, reason: CloseReason) {
        self.settled = true;
        let _ = self.commands.send(Command::Reset {
            conn: self.id,
            reason,
        });
    }

    /// The reason this side gives when its own socket fails.
    fn local_failure(&self) -> CloseReason {
        match self.side {
            Side::Client => CloseReason::ClientClosed,
            Side::Gateway => CloseReason::TargetError,
        }
    }

    /// Carry bytes between `stream` and the tube until both directions are done or either
    /// side aborts.
    pub async fn bridge(mut self, stream: TcpStream, counters: Arc<ByteCounters>) -> ConnectionEnd {
        self.settled = true;
        let _ = stream.set_nodelay(true);
        let conn = self.id;
        let failure = self.local_failure();
        let mut inbound = self.inbound.take().expect("a connection is bridged once");
        let (mut reader, mut writer) = stream.into_split();

        let end = {
            let upstream =
                socket_to_tube(conn, &mut reader, &self.credit, &self.commands, &counters);
            let downstream =
                tube_to_socket(conn, &mut writer, &mut inbound, &self.commands, &counters);
            tokio::pin!(upstream);
            tokio::pin!(downstream);
            let (mut sent_all, mut received_all, mut abortable) = (false, false, true);
            loop {
                tokio::select! {
                    done = &mut upstream, if !sent_all => match done {
                        Ok(()) => sent_all = true,
                        Err(()) => break ConnectionEnd::LocalFailed,
                    },
                    done = &mut downstream, if !received_all => match done {
                        Ok(()) => received_all = true,
                        Err(()) => break ConnectionEnd::LocalFailed,
                    },
                    changed = self.abort.changed(), if abortable => match changed {
                        Ok(()) => {
                            if let Some(reason) = *self.abort.borrow() {
                                break ConnectionEnd::Reset(reason);
                            }
                        }
                        // The driver forgot the connection after a clean end: nothing left
                        // that could abort it.
                        Err(_) => abortable = false,
                    },
                }
                if sent_all && received_all {
                    break ConnectionEnd::Closed;
                }
            }
        };
        match end {
            ConnectionEnd::Reset(_) => {
                // Mirror the abort: a reset, not an orderly close, so the local peer knows.
                if let Ok(stream) = reader.reunite(writer) {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
            }
            ConnectionEnd::LocalFailed => {
                let _ = self.commands.send(Command::Reset {
                    conn,
                    reason: failure,
                });
            }
            ConnectionEnd::Closed => {}
        }
        end
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.commands.send(Command::Reset {
                conn: self.id,
                reason: self.local_failure(),
            });
        }
    }
}

/// Socket → tube, within the peer's credit, then `EOF`.
async fn socket_to_tube(
    conn: u32,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    credit: &Credit,
    commands: &Commands,
    counters: &ByteCounters,
) -> std::result::Result<(), ()> {
    let mut scratch = BytesMut::new();
    loop {
        let room = credit.wait().await.min(MAX_DATA_BYTES as u64) as usize;
        scratch.resize(FRAME_HEADER_BYTES + room, 0);
        let n = reader
            .read(&mut scratch[FRAME_HEADER_BYTES..])
            .await
            .map_err(|_| ())?;
        if n == 0 {
            let _ = commands.send(Command::Eof { conn });
            return Ok(());
        }
        // A small read gets a buffer of its own size (it may sit in SCTP's queue for a
        // while); a big one takes the scratch buffer's allocation.
        let frame = if n < 4096 {
            BytesMut::from(&scratch[..FRAME_HEADER_BYTES + n])
        } else {
            scratch.truncate(FRAME_HEADER_BYTES + n);
            std::mem::take(&mut scratch)
        };
        credit.take(n);
        counters.to_tube.fetch_add(n as u64, Ordering::Relaxed);
        if commands.send(Command::Data { conn, frame }).is_err() {
            return Err(());
        }
    }
}

/// Tube → socket, until `EOF` (then half-close the socket).
async fn tube_to_socket(
    conn: u32,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    inbound: &mut mpsc::UnboundedReceiver<Inbound>,
    commands: &Commands,
    counters: &ByteCounters,
) -> std::result::Result<(), ()> {
    while let Some(message) = inbound.recv().await {
        match message {
            Inbound::Data(data) => {
                writer.write_all(&data).await.map_err(|_| ())?;
                counters
                    .from_tube
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                let _ = commands.send(Command::Consumed {
                    conn,
                    n: data.len(),
                });
            }
            Inbound::Eof => {
                let _ = writer.shutdown().await;
                return Ok(());
            }
        }
    }
    // The driver let go without an EOF: the tube or the connection was aborted, which the
    // abort signal reports; wait for it.
    std::future::pending().await
}
