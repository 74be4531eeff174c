//! `sallyport bench`: measurements side by side in one run, against a real router and gateway
//! (each its own process) on loopback. Medians and ratios, never single runs: this machine is
//! shared and noisy.
//!
//! * launches per profile, interleaved (`--runs`, `--profiles`), optionally across emulated
//!   wide-area round trips (`--rtt 0,20,50,100`);
//! * bytes through a tunnel beside plain TCP (`--throughput`);
//! * many launches at once, then the same sessions idle (`--concurrent N`);
//! * a soak: launch/close cycles and many connections, and what every process still holds
//!   afterwards (`--soak CYCLES --soak-connections N`).

mod concurrent;
mod launch;
mod procs;
mod soak;
mod stats;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;

use sallyport_core::Profile;

/// What to measure.
pub struct Options {
    pub runs: usize,
    pub profiles: Vec<Profile>,
    pub out: PathBuf,
    pub rtt: Option<Vec<u64>>,
    pub throughput: bool,
    pub megabytes: u64,
    pub concurrent: Option<usize>,
    /// Routers of the fleet for `concurrent` (1: one router, no Redis).
    pub routers: usize,
    /// Launch/close cycles and connections of a soak.
    pub soak: Option<(usize, usize)>,
}

pub async fn run(options: Options) -> Result<ExitCode, String> {
    let mut md = format!(
        "Command: `sallyport {}`\n\nMachine: {} cores, {}\n\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| format!("Linux {}", r.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned()),
    );
    let mut json = serde_json::Map::new();
    if options.throughput {
        let (section, value) = throughput::run(options.megabytes).await?;
        md.push_str(&section);
        json.insert("throughput".into(), value);
    }
    if let Some(n) = options.concurrent {
        let (section, value) = concurrent::run(n, options.routers).await?;
        md.push_str(&section);
        json.insert("concurrent".into(), value);
    }
    if let Some((cycles, connections)) = options.soak {
        let (section, value) = soak::run(cycles, connections).await?;
        md.push_str(&section);
        json.insert("soak".into(), value);
    }
    if !options.throughput && options.concurrent.is_none() && options.soak.is_none() {
        let (section, value) =
            launch::run(options.runs, &options.profiles, options.rtt.as_deref()).await?;
        md.push_str(&section);
        json.insert("launches".into(), value);
    }
    std::fs::create_dir_all(&options.out).map_err(|e| e.to_string())?;
    std::fs::write(options.out.join("bench.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(
        options.out.join("bench.json"),
        serde_json::to_string_pretty(&json).expect("serializable"),
    )
    .map_err(|e| e.to_string())?;
    println!("{md}");
    println!(
        "written to {}/bench.md and bench.json",
        options.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
