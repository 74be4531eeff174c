//! Long runs: launch and close over and over, then many short connections through one session;
//! what the router, the gateway and this client hold at the start and at the end.

use std::time::Duration;

use sallyport_core::{ClientChoice, LaunchRequest, Launcher, Profile, StickyPorts, Tunables};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::procs::{LabOptions, ProcessLab, ECHO};

/// Cycles run before the first snapshot, so that caches and pools have filled.
const WARM_UP: usize = 50;

#[derive(Serialize, Clone, Copy, Default)]
struct Holdings {
    rss_kib: u64,
    fds: u64,
    threads: u64,
    /// Tasks alive in the process's runtime, where it can be read (router metrics, this
    /// process); `None` for the gateway, which publishes none.
    tasks: Option<u64>,
}

#[derive(Serialize)]
struct Snapshot {
    router: Holdings,
    gateway: Holdings,
    client: Holdings,
}

pub async fn run(cycles: usize, connections: usize) -> Result<(String, serde_json::Value), String> {
    let lab = ProcessLab::start(&LabOptions {
        max_sessions: 16,
        ..LabOptions::default()
    })
    .await?;
    let scratch = std::env::temp_dir().join(format!("sallyport-soak-{}", std::process::id()));
    let launcher = Launcher::new(
        lab.profile(&lab.router_url()),
        &lab.client_token,
        StickyPorts::new(scratch.join("ports.json")),
    )
    .map_err(|e| e.to_string())?
    .with_state_dir(scratch.clone());

    eprintln!("soak: {WARM_UP} warm-up cycles");
    for _ in 0..WARM_UP {
        cycle(&launcher).await?;
    }
    let start = snapshot(&lab).await;
    for i in 0..cycles {
        cycle(&launcher).await?;
        if (i + 1) % 100 == 0 {
            eprintln!("soak: {} of {cycles} launch/close cycles", i + 1);
        }
    }
    let session = launch(&launcher).await?;
    let port = session.local_port();
    for i in 0..connections {
        ping(port).await?;
        if (i + 1) % 1000 == 0 {
            eprintln!("soak: {} of {connections} connections", i + 1);
        }
    }
    session.close().await;
    // Let closing tubes finish their goodbyes before looking.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end = snapshot(&lab).await;
    lab.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);

    let per_cycle = |a: u64, b: u64| (b as f64 - a as f64) / cycles.max(1) as f64;
    let row = |name: &str, a: Holdings, b: Holdings| {
        format!(
            "| {name} | {} → {} KiB ({:+.2} KiB per cycle) | {} → {} | {} → {} | {} |\n",
            a.rss_kib,
            b.rss_kib,
            per_cycle(a.rss_kib, b.rss_kib),
            a.fds,
            b.fds,
            a.threads,
            b.threads,
            match (a.tasks, b.tasks) {
                (Some(x), Some(y)) => format!("{x} → {y}"),
                _ => "–".into(),
            }
        )
    };
    let md = format!(
        "## Soak\n\n{cycles} launch/close cycles, then {connections} short connections through one \
         session, after {WARM_UP} warm-up cycles; holdings at the start and at the end.\n\n\
         | process | resident memory | file descriptors | threads | runtime tasks |\n|---|---|---|---|---|\n{}{}{}",
        row("router", start.router, end.router),
        row("gateway", start.gateway, end.gateway),
        row("client (this process)", start.client, end.client),
    );
    Ok((
        md,
        serde_json::json!({ "cycles": cycles, "connections": connections, "start": start, "end": end }),
    ))
}

async fn launch(launcher: &Launcher) -> Result<sallyport_core::Session, String> {
    let mut request = LaunchRequest::new(
        ECHO,
        Tunables::from_env(Profile::Fast).map_err(|e| e.to_string())?,
    );
    request.client = ClientChoice::None;
    request.port = Some(0);
    launcher
        .launch(request)
        .await
        .map_err(|e| format!("launch failed: [{}] {e}", e.code()))
}

/// One launch, one exchange through it, one close.
async fn cycle(launcher: &Launcher) -> Result<(), String> {
    let session = launch(launcher).await?;
    ping(session.local_port()).await?;
    session.close().await;
    Ok(())
}

async fn ping(port: u16) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"soak").await?;
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).await?;
        stream.shutdown().await?;
        Ok::<_, std::io::Error>(back == *b"soak")
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("the echo came back wrong".into()),
        Ok(Err(e)) => Err(format!("a connection failed: {e}")),
        Err(_) => Err("a connection hung".into()),
    }
}

async fn snapshot(lab: &ProcessLab) -> Snapshot {
    let router_tasks = reqwest::get(format!("{}/metrics", lab.router_url()))
        .await
        .ok();
    let router_tasks = match router_tasks {
        Some(r) => r.text().await.ok().and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("sallyport_tasks "))
                .and_then(|v| v.trim().parse().ok())
        }),
        None => None,
    };
    let holdings = |pid: Option<u32>, tasks: Option<u64>| {
        let Some(pid) = pid else {
            return Holdings::default();
        };
        let usage = super::procs::usage(pid);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        Holdings {
            rss_kib: usage.rss_kib,
            fds,
            threads,
            tasks,
        }
    };
    Snapshot {
        router: holdings(lab.router_pid(), router_tasks),
        gateway: holdings(lab.gateway_pid(), None),
        client: holdings(
            Some(std::process::id()),
            Some(
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks() as u64,
            ),
        ),
    }
}
