//! Bytes through a tunnel beside plain TCP over loopback, in the same run: one stream and eight
//! at once, SHA-256 checked at both ends (the sink answers with the digest of what it got).
//! Also with datagrams held to 1,200 bytes, what a real wide-area path carries.

use std::sync::Arc;
use std::time::Instant;

use sallyport_core::{
    ClientChoice, LaunchRequest, Launcher, Profile, StickyPorts, TubeConfig, Tunables,
};
use serde::Serialize;

use super::procs::{own_usage, LabOptions, ProcessLab, Usage, SINK};
use super::stats::{random_block, upload};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

#[derive(Serialize)]
struct Row {
    path: String,
    streams: usize,
    bytes: u64,
    seconds: f64,
    mib_per_s: f64,
    /// CPU seconds the gateway process spent per GiB carried (tunnels only).
    gateway_cpu_s_per_gib: Option<f64>,
    /// CPU seconds this process spent per GiB: the client's tube, the data source and the
    /// sink, both hashing.
    bench_cpu_s_per_gib: f64,
}

pub async fn run(megabytes: u64) -> Result<(String, serde_json::Value), String> {
    let total = megabytes * 1024 * 1024;
    let lab = ProcessLab::start(&LabOptions {
        max_sessions: 8,
        ..LabOptions::default()
    })
    .await?;
    let block = Arc::new(random_block(7));
    let scratch = std::env::temp_dir().join(format!("sallyport-bench-{}", std::process::id()));
    let launcher_with = |tube: Option<TubeConfig>| -> Result<Launcher, String> {
        let profile = lab.profile(&lab.router_url());
        let base = profile.tube_config();
        let launcher = Launcher::new(
            profile,
            &lab.client_token,
            StickyPorts::new(scratch.join("ports.json")),
        )
        .map_err(|e| e.to_string())?
        .with_state_dir(scratch.clone());
        Ok(launcher.with_tube_config(tube.unwrap_or(base)))
    };
    let base = lab.profile(&lab.router_url()).tube_config();
    let path_mtu = launcher_with(None)?;
    let small = launcher_with(Some(TubeConfig {
        max_datagram: Some(1200),
        ..base.clone()
    }))?;
    // One stream also runs with the client as DTLS (and SCTP) client, as before the client
    // offered `a=setup:passive`, so that the roles compare within the run.
    let path_mtu_client_dtls = launcher_with(Some(TubeConfig {
        offer_passive: false,
        ..base.clone()
    }))?;
    let small_client_dtls = launcher_with(Some(TubeConfig {
        max_datagram: Some(1200),
        offer_passive: false,
        ..base
    }))?;

    let mut rows = Vec::new();
    for streams in [1usize, 8] {
        // Plain TCP straight to the sink, for the ratio.
        rows.push(measure("plain TCP", streams, total, &block, lab.sink, None).await?);
        rows.push(through_tube(&path_mtu, None, streams, total, &block, &lab).await?);
        if streams == 1 {
            for (label, launcher) in [
                ("tube (datagrams ≤ 1,200 bytes)", &small),
                (
                    "tube, client as DTLS client (SCTP packets from the path)",
                    &path_mtu_client_dtls,
                ),
                (
                    "tube, client as DTLS client (datagrams ≤ 1,200 bytes)",
                    &small_client_dtls,
                ),
            ] {
                rows.push(through_tube(launcher, Some(label), streams, total, &block, &lab).await?);
            }
        }
    }
    lab.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);

    let mut md = String::from(
        "## Throughput\n\nOne upload per stream into a sink that answers with the SHA-256 of what it \
         received; the sender compares it with its own. Every row is checked.\n\n\
         | path | streams | MiB/s | vs plain TCP | gateway CPU s/GiB | bench CPU s/GiB |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in &rows {
        let plain = rows
            .iter()
            .find(|r| r.path == "plain TCP" && r.streams == row.streams)
            .map(|r| r.mib_per_s)
            .unwrap_or(f64::NAN);
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {} | {:.2} |\n",
            row.path,
            row.streams,
            row.mib_per_s,
            row.mib_per_s / plain,
            row.gateway_cpu_s_per_gib
                .map_or("–".into(), |c| format!("{c:.2}")),
            row.bench_cpu_s_per_gib
        ));
    }
    Ok((md, serde_json::to_value(&rows).expect("serializable")))
}

/// One row through a session of `launcher` to the sink, closed after; without a `label`, the
/// row is named by the SCTP packet size the tube took from the path.
async fn through_tube(
    launcher: &Launcher,
    label: Option<&str>,
    streams: usize,
    total: u64,
    block: &Arc<Vec<u8>>,
    lab: &ProcessLab,
) -> Result<Row, String> {
    let (session, mtu) = launch_sink(launcher).await?;
    let label = label.map_or_else(
        || format!("tube ({mtu}-byte SCTP packets from the path)"),
        str::to_owned,
    );
    let row = measure(
        &label,
        streams,
        total,
        block,
        session.local_addr(),
        Some(lab),
    )
    .await;
    session.close().await;
    row
}

/// A session to the sink resource, and the SCTP packet size its tube uses.
async fn launch_sink(launcher: &Launcher) -> Result<(SinkSession, usize), String> {
    let mut request = LaunchRequest::new(
        SINK,
        Tunables::from_env(Profile::Fast).map_err(|e| e.to_string())?,
    );
    request.client = ClientChoice::None;
    request.port = Some(0);
    let session = launcher
        .launch(request)
        .await
        .map_err(|e| format!("launch of {SINK} failed: {e}"))?;
    let mtu = session.sctp_mtu();
    Ok((SinkSession(session), mtu))
}

struct SinkSession(sallyport_core::Session);

impl SinkSession {
    fn local_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.0.local_port()).into()
    }

    async fn close(self) {
        self.0.close().await;
    }
}

async fn measure(
    path: &str,
    streams: usize,
    total: u64,
    block: &Arc<Vec<u8>>,
    target: std::net::SocketAddr,
    lab: Option<&ProcessLab>,
) -> Result<Row, String> {
    eprintln!("throughput: {path}, {streams} stream(s)");
    let gateway_before = lab.map(|l| l.gateway_usage());
    let own_before = own_usage();
    let started = Instant::now();
    let per_stream = total / streams as u64;
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let block = block.clone();
            tokio::spawn(async move { upload(target, per_stream, &block).await })
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(format!("{path}: the SHA-256 digests differ")),
            Ok(Err(e)) => return Err(format!("{path}: {e}")),
            Err(e) => return Err(format!("{path}: {e}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let carried = per_stream * streams as u64;
    let gib = carried as f64 / GIB;
    let cpu = |before: Usage, after: Usage| (after.cpu_seconds - before.cpu_seconds) / gib;
    Ok(Row {
        path: path.to_owned(),
        streams,
        bytes: carried,
        seconds,
        mib_per_s: carried as f64 / MIB / seconds,
        gateway_cpu_s_per_gib: lab
            .zip(gateway_before)
            .map(|(l, b)| cpu(b, l.gateway_usage())),
        bench_cpu_s_per_gib: cpu(own_before, own_usage()),
    })
}
