//! Datagrams in batches: consecutive datagrams of one size to one peer leave in one system
//! call (generic segmentation offload), and one receive takes several (generic receive offload
//! and `recvmmsg`) where the kernel offers it. Per-datagram system calls, not crypto, were the
//! largest cost of a busy tube.

use std::cell::RefCell;
use std::io::IoSliceMut;
use std::net::SocketAddr;

use bytes::BytesMut;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Largest batch one send carries (a UDP datagram's length field bounds a GSO send).
const MAX_BATCH_BYTES: usize = 64 * 1024 - 1024;
/// Receive buffers per call, each room for a GRO batch.
const RECV_BUFFERS: usize = if BATCH_SIZE < 8 { BATCH_SIZE } else { 8 };
const RECV_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    /// Receive buffers, shared by every tube whose driver runs on this thread: a read is done
    /// with them before the driver yields, so one set per thread is enough, and an idle tube
    /// holds none.
    static RECEIVE: RefCell<Vec<Vec<u8>>> = RefCell::new(
        (0..RECV_BUFFERS).map(|_| vec![0u8; RECV_BUFFER_BYTES]).collect()
    );
}

/// Datagrams waiting to go out together: same socket, same destination, same size (the last
/// may be shorter).
pub(crate) struct Batch {
    pub socket: usize,
    pub to: SocketAddr,
    segment: usize,
    count: usize,
    bytes: Vec<u8>,
}

impl Batch {
    pub fn new(socket: usize, to: SocketAddr, first: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(MAX_BATCH_BYTES);
        bytes.extend_from_slice(first);
        Self {
            socket,
            to,
            segment: first.len(),
            count: 1,
            bytes,
        }
    }

    /// Add `datagram` if it can go in the same send.
    pub fn push(
        &mut self,
        socket: usize,
        to: SocketAddr,
        datagram: &[u8],
        max_segments: usize,
    ) -> bool {
        let fits = socket == self.socket
            && to == self.to
            && self.count < max_segments
            // Only the last datagram may be shorter than the segment size.
            && self.bytes.len() == self.count * self.segment
            && datagram.len() <= self.segment
            && self.bytes.len() + datagram.len() <= MAX_BATCH_BYTES;
        if fits {
            self.bytes.extend_from_slice(datagram);
            self.count += 1;
        }
        fits
    }

    pub fn datagrams(&self) -> usize {
        self.count
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// A bound socket with its offload state.
pub(crate) struct Udp {
    pub socket: UdpSocket,
    state: UdpSocketState,
}

impl Udp {
    pub fn new(socket: UdpSocket) -> std::io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self { socket, state })
    }

    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Send a batch; `WouldBlock` when the socket buffer is full (try again once writable).
    /// Other errors are for ICE to notice (a path that stopped working), not fatal here.
    pub fn send(&self, batch: &Batch) -> std::io::Result<()> {
        let transmit = Transmit {
            destination: batch.to,
            ecn: None,
            contents: &batch.bytes,
            segment_size: (batch.count > 1).then_some(batch.segment),
            src_ip: None,
        };
        self.socket.try_io(Interest::WRITABLE, || {
            self.state.send((&self.socket).into(), &transmit)
        })
    }

    /// Receive what is queued, up to `rounds` calls, handing each datagram to `each` with its
    /// source address.
    pub fn receive(&self, rounds: usize, mut each: impl FnMut(SocketAddr, BytesMut)) {
        RECEIVE.with(|buffers| {
            let mut buffers = buffers.borrow_mut();
            let mut meta = [RecvMeta::default(); RECV_BUFFERS];
            for _ in 0..rounds {
                let received = {
                    let mut slices: Vec<IoSliceMut<'_>> =
                        buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                    self.socket.try_io(Interest::READABLE, || {
                        self.state
                            .recv((&self.socket).into(), &mut slices, &mut meta)
                    })
                };
                let Ok(n) = received else {
                    return;
                };
                for (m, buffer) in meta.iter().zip(buffers.iter()).take(n) {
                    let stride = m.stride.max(1);
                    for datagram in buffer[..m.len].chunks(stride) {
                        each(m.addr, BytesMut::from(datagram));
                    }
                }
            }
        });
    }
}
