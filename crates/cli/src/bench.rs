//! `sallyport bench`: N launches per profile, profiles interleaved in one run against an
//! embedded lab on loopback; p50/p90/p99 of `ready` and of every phase.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use sallyport_core::checkpoint::names;
use sallyport_core::{
    ClientChoice, CoreError, LaunchRequest, Launcher, Profile, StickyPorts, Tunables,
};
use sallyport_lab::{Lab, LabOptions, DEMO_ECHO};
use serde::Serialize;

#[derive(Serialize)]
struct ProfileResult {
    profile: Profile,
    runs: usize,
    failures: usize,
    ready_ms: Percentiles,
    /// Step time of each checkpoint, in pipeline order.
    phases: Vec<(String, Percentiles)>,
}

#[derive(Serialize, Clone, Copy)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
}

fn percentiles(values: &mut [f64]) -> Percentiles {
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

pub async fn run(runs: usize, profiles: &[Profile], out: &Path) -> Result<ExitCode, CoreError> {
    let lab = Lab::start(LabOptions {
        router_listen: "127.0.0.1:0".parse().expect("valid address"),
        include_local_services: false,
        ..LabOptions::default()
    })
    .await
    .map_err(CoreError::Profile)?;
    let scratch = std::env::temp_dir().join(format!("sallyport-bench-{}", std::process::id()));
    let launcher = Launcher::new(
        lab.profile.clone(),
        &lab.client_token,
        StickyPorts::new(scratch.join("ports.json")),
    )?
    .with_state_dir(scratch.clone());

    let mut ready: BTreeMap<Profile, Vec<f64>> = BTreeMap::new();
    let mut steps: BTreeMap<Profile, Vec<(String, Vec<f64>)>> = BTreeMap::new();
    let mut failures: BTreeMap<Profile, usize> = BTreeMap::new();
    for round in 0..runs {
        for &profile in profiles {
            let mut request = LaunchRequest::new(DEMO_ECHO, Tunables::from_env(profile)?);
            request.client = ClientChoice::None;
            match launcher.launch(request).await {
                Ok(session) => {
                    let checkpoints = session.checkpoints();
                    let phases = steps.entry(profile).or_default();
                    for c in &checkpoints {
                        match phases.iter_mut().find(|(name, _)| *name == c.phase) {
                            Some((_, v)) => v.push(c.step_ms),
                            None => phases.push((c.phase.clone(), vec![c.step_ms])),
                        }
                        if c.phase == names::READY {
                            ready.entry(profile).or_default().push(c.total_ms);
                        }
                    }
                    session.close().await;
                }
                Err(e) => {
                    eprintln!("round {round} {profile}: launch failed: [{}] {e}", e.code());
                    *failures.entry(profile).or_default() += 1;
                }
            }
        }
        eprint!("\rround {}/{runs}", round + 1);
    }
    eprintln!();
    lab.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);

    let results: Vec<ProfileResult> = profiles
        .iter()
        .map(|&profile| ProfileResult {
            profile,
            runs,
            failures: failures.get(&profile).copied().unwrap_or(0),
            ready_ms: percentiles(
                ready
                    .get_mut(&profile)
                    .map(Vec::as_mut_slice)
                    .unwrap_or(&mut []),
            ),
            phases: steps
                .remove(&profile)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, mut v)| (name, percentiles(&mut v)))
                .collect(),
        })
        .collect();

    let markdown = render(&results);
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("bench.md"), &markdown)?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&results).expect("serializable"),
    )?;
    println!("{markdown}");
    println!("written to {}/bench.md and bench.json", out.display());
    Ok(ExitCode::SUCCESS)
}

fn render(results: &[ProfileResult]) -> String {
    let mut md = String::new();
    md.push_str("| profile | runs | failures | ready p50 ms | ready p90 ms | ready p99 ms |\n|---|---|---|---|---|---|\n");
    for r in results {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            r.profile, r.runs, r.failures, r.ready_ms.p50, r.ready_ms.p90, r.ready_ms.p99
        ));
    }
    md.push_str("\nStep time per checkpoint (p50 / p90 / p99 ms):\n\n| checkpoint |");
    for r in results {
        md.push_str(&format!(" {} |", r.profile));
    }
    md.push_str("\n|---|");
    for _ in results {
        md.push_str("---|");
    }
    md.push('\n');
    let mut order: Vec<String> = Vec::new();
    for r in results {
        for (name, _) in &r.phases {
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
    }
    for name in order {
        md.push_str(&format!("| `{name}` |"));
        for r in results {
            match r.phases.iter().find(|(n, _)| *n == name) {
                Some((_, p)) => {
                    md.push_str(&format!(" {:.1} / {:.1} / {:.1} |", p.p50, p.p90, p.p99))
                }
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    md
}
