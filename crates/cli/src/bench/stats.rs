//! Percentiles, and the bytes the throughput and idle measurements send.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

pub fn percentiles(values: &mut [f64]) -> Percentiles {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        let i = ((values.len() as f64 - 1.0) * q).round() as usize;
        values[i]
    };
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

/// 4 MiB of pseudo-random bytes (xorshift), the source every upload reads from.
pub fn random_block(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..4 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Send `len` bytes to a hashing sink at `addr`, half-close, and check the SHA-256 it answers
/// against our own. Returns false if they differ.
pub async fn upload(addr: std::net::SocketAddr, len: u64, block: &[u8]) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut hasher = Sha256::new();
    let mut sent: u64 = 0;
    let chunk = 256 * 1024;
    let mut offset = 0usize;
    while sent < len {
        let n = chunk.min((len - sent) as usize);
        if offset + n > block.len() {
            offset = 0;
        }
        let bytes = &block[offset..offset + n];
        hasher.update(bytes);
        stream.write_all(bytes).await?;
        sent += n as u64;
        // An odd stride, so consecutive chunks differ.
        offset += 4093;
    }
    stream.shutdown().await?;
    let mut digest = [0u8; 32];
    stream.read_exact(&mut digest).await?;
    Ok(digest[..] == hasher.finalize()[..])
}
