//! N launches at the same moment through one router and one gateway, then the same N
//! sessions left idle: what each costs the gateway in memory, CPU and datagrams.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sallyport_core::checkpoint::names;
use sallyport_core::{ClientChoice, LaunchRequest, Launcher, Profile, StickyPorts, Tunables};
use serde::Serialize;

use super::procs::{own_usage, LabOptions, ProcessLab, Usage, ECHO};
use super::stats::{percentiles, Percentiles};

/// How long the sessions are left alone for the idle figures.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct Report {
    /// Routers the launches were spread over (more than one: a fleet on Redis).
    routers: usize,
    launches: usize,
    failures: usize,
    failure_codes: Vec<String>,
    ready_ms: Percentiles,
    burst_seconds: f64,
    router: Usage,
    gateway: Usage,
    /// CPU seconds during the burst.
    router_burst_cpu_s: f64,
    gateway_burst_cpu_s: f64,
    /// With every session connected and idle.
    idle_seconds: f64,
    gateway_idle_cpu_percent: f64,
    bench_idle_cpu_percent: f64,
    datagrams_per_session_per_s: f64,
    /// Gateway resident memory per connected session (after the burst, minus before).
    gateway_kib_per_session: f64,
}

/// The burst through one router; with `routers` > 1, then the same burst spread over a fleet
/// of that many, and the two p99s side by side.
pub async fn run(n: usize, routers: usize) -> Result<(String, serde_json::Value), String> {
    let (single_md, single) = burst(n, 1).await?;
    if routers <= 1 {
        return Ok((
            single_md,
            serde_json::to_value(&single).expect("serializable"),
        ));
    }
    let (fleet_md, fleet) = burst(n, routers).await?;
    let ratio = fleet.ready_ms.p99 / single.ready_ms.p99.max(f64::EPSILON);
    let md = format!(
        "{single_md}\n{fleet_md}\n## One router beside a fleet of {routers}, same run\n\n\
         | routers | failures | ready p50 ms | ready p99 ms |\n|---|---|---|---|\n\
         | 1 | {} | {:.1} | {:.1} |\n| {routers} | {} | {:.1} | {:.1} |\n\n\
         p99 of the fleet / p99 of one router: **{ratio:.2}×**\n",
        single.failures,
        single.ready_ms.p50,
        single.ready_ms.p99,
        fleet.failures,
        fleet.ready_ms.p50,
        fleet.ready_ms.p99,
    );
    let json = serde_json::json!({
        "single": single,
        "fleet": fleet,
        "p99_ratio": ratio,
    });
    Ok((md, json))
}

async fn burst(n: usize, routers: usize) -> Result<(String, Report), String> {
    let lab = ProcessLab::start(&LabOptions {
        max_sessions: n + 16,
        routers,
        ..LabOptions::default()
    })
    .await?;
    let scratch = std::env::temp_dir().join(format!("sallyport-bench-{}", std::process::id()));
    // One launcher per router; launch i goes through router i mod routers.
    let launchers = lab
        .router_urls()
        .iter()
        .enumerate()
        .map(|(i, url)| {
            Ok(Launcher::new(
                lab.profile(url),
                &lab.client_token,
                StickyPorts::new(scratch.join(format!("ports-{i}.json"))),
            )
            .map_err(|e| e.to_string())?
            .with_state_dir(scratch.clone()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Warm the resource caches so every launch starts from the same place.
    for launcher in &launchers {
        launcher.resources().await.map_err(|e| e.to_string())?;
    }

    let (router_before, gateway_before) = (lab.router_usage(), lab.gateway_usage());
    eprintln!("{n} launches at once through {routers} router(s)");
    let started = Instant::now();
    let outcomes = join_all((0..n).map(|i| {
        let launcher = &launchers[i % launchers.len()];
        async move {
            let mut request = LaunchRequest::new(ECHO, Tunables::from_env(Profile::Fast)?);
            request.client = ClientChoice::None;
            request.port = Some(0);
            launcher.launch(request).await
        }
    }))
    .await;
    let burst_seconds = started.elapsed().as_secs_f64();
    let (router_after, gateway_after) = (lab.router_usage(), lab.gateway_usage());

    let mut ready = Vec::new();
    let mut sessions = Vec::new();
    let mut failure_codes = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(session) => {
                if let Some(c) = session
                    .checkpoints()
                    .iter()
                    .find(|c| c.phase == names::READY)
                {
                    ready.push(c.total_ms);
                }
                sessions.push(session);
            }
            Err(e) => failure_codes.push(format!("{}: {e}", e.code())),
        }
    }

    // Every session connected and left alone.
    let datagrams = |sessions: &[sallyport_core::Session]| -> u64 {
        sessions
            .iter()
            .map(|s| {
                let (sent, received) = s.datagrams();
                sent + received
            })
            .sum()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (gateway_idle_before, own_idle_before) = (lab.gateway_usage(), own_usage());
    let datagrams_before = datagrams(&sessions);
    let idle_started = Instant::now();
    tokio::time::sleep(IDLE).await;
    let idle_seconds = idle_started.elapsed().as_secs_f64();
    let (gateway_idle_after, own_idle_after) = (lab.gateway_usage(), own_usage());
    let datagrams_after = datagrams(&sessions);
    let connected = sessions.len().max(1) as f64;

    let report = Report {
        routers,
        launches: n,
        failures: failure_codes.len(),
        failure_codes,
        ready_ms: percentiles(&mut ready),
        burst_seconds,
        router: router_after,
        gateway: gateway_after,
        router_burst_cpu_s: router_after.cpu_seconds - router_before.cpu_seconds,
        gateway_burst_cpu_s: gateway_after.cpu_seconds - gateway_before.cpu_seconds,
        idle_seconds,
        gateway_idle_cpu_percent: 100.0
            * (gateway_idle_after.cpu_seconds - gateway_idle_before.cpu_seconds)
            / idle_seconds,
        bench_idle_cpu_percent: 100.0 * (own_idle_after.cpu_seconds - own_idle_before.cpu_seconds)
            / idle_seconds,
        datagrams_per_session_per_s: (datagrams_after - datagrams_before) as f64
            / connected
            / idle_seconds,
        gateway_kib_per_session: (gateway_idle_after.rss_kib as f64
            - gateway_before.rss_kib as f64)
            / connected,
    };
    for session in &sessions {
        session.close().await;
    }
    lab.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);

    let setup = if routers > 1 {
        format!(
            "{routers} router processes in a fleet on one redis-server, the launches spread \
             over them in turn, and one gateway process (connected to the first router)"
        )
    } else {
        "One router and one gateway process".to_owned()
    };
    let md = format!(
        "## {n} launches at once, {routers} router(s)\n\n\
         {setup}; every launch of the `fast` profile started at the \
         same moment from this process.\n\n\
         | launches | failures | ready p50 ms | ready p90 ms | ready p99 ms | burst s |\n\
         |---|---|---|---|---|---|\n\
         | {n} | {} | {:.1} | {:.1} | {:.1} | {:.2} |\n\n\
         | process | peak RSS MiB | CPU s during the burst |\n|---|---|---|\n\
         | router(s) | {:.1} | {:.2} |\n| gateway | {:.1} | {:.2} |\n\n\
         Then all {} sessions connected and idle for {:.0} s:\n\n\
         | gateway CPU | bench (client) CPU | datagrams per session per second (both ways) | gateway memory per session |\n\
         |---|---|---|---|\n\
         | {:.2} % | {:.2} % | {:.2} | {:.0} KiB |\n{}",
        report.failures,
        report.ready_ms.p50,
        report.ready_ms.p90,
        report.ready_ms.p99,
        report.burst_seconds,
        report.router.peak_rss_kib as f64 / 1024.0,
        report.router_burst_cpu_s,
        report.gateway.peak_rss_kib as f64 / 1024.0,
        report.gateway_burst_cpu_s,
        sessions.len(),
        report.idle_seconds,
        report.gateway_idle_cpu_percent,
        report.bench_idle_cpu_percent,
        report.datagrams_per_session_per_s,
        report.gateway_kib_per_session,
        if report.failure_codes.is_empty() {
            String::new()
        } else {
            format!("\nFailures:\n\n{}\n", report.failure_codes.iter().map(|c| format!("- {c}\n")).collect::<String>())
        }
    );
    Ok((md, report))
}
