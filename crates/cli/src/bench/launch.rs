//! N launches per profile, profiles interleaved, against a real router and gateway; p50, p90
//! and p99 of `ready` and of every phase. With `--rtt`, the same across emulated wide-area
//! round trips: the signalling through a delaying TCP proxy, the data path through a delaying
//! UDP relay that both ends reach as their 1:1 NAT.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use sallyport_core::checkpoint::names;
use sallyport_core::{
    ClientChoice, LaunchRequest, Launcher, Profile, StickyPorts, TubeConfig, Tunables,
};
use sallyport_relay::{Side, TcpDelayProxy, UdpRelay};
use serde::Serialize;

use super::procs::{LabOptions, ProcessLab, ECHO};
use super::stats::{percentiles, Percentiles};

/// One column of the bench: a profile, or `fast` without one of its wide-area changes, run
/// beside it so that the change is measured within one run.
#[derive(Clone, Copy, PartialEq)]
struct Variant {
    profile: Profile,
    without: Option<Change>,
}

/// A change `fast` made for wide-area paths.
#[derive(Clone, Copy, PartialEq)]
enum Change {
    /// It sends its offer at once instead of after its WebSocket's `subscribed`.
    OfferAtOnce,
    /// Its client offers `a=setup:passive`, so that the gateway is the DTLS and SCTP client.
    GatewayStartsDtls,
    /// It asks the gateway to open the first connection at `start` (`open_first`).
    OpenFirst,
}

impl Change {
    const ALL: [Change; 3] = [
        Change::OfferAtOnce,
        Change::GatewayStartsDtls,
        Change::OpenFirst,
    ];

    /// How `fast` ran before the change.
    fn before(self) -> &'static str {
        match self {
            Change::OfferAtOnce => "registration first",
            Change::GatewayStartsDtls => "client as DTLS client",
            Change::OpenFirst => "target after the channel",
        }
    }
}

impl Variant {
    fn label(self) -> String {
        match self.without {
            Some(change) => format!("{} ({})", self.profile, change.before()),
            None => self.profile.to_string(),
        }
    }

    fn tunables(self) -> Result<Tunables, String> {
        let mut tunables = Tunables::from_env(self.profile).map_err(|e| e.to_string())?;
        match self.without {
            Some(Change::OfferAtOnce) => tunables.offer_at_once = false,
            Some(Change::OpenFirst) => tunables.open_first = false,
            _ => {}
        }
        Ok(tunables)
    }

    fn launcher(self, launchers: &Launchers) -> &Launcher {
        match self.without {
            Some(Change::GatewayStartsDtls) => &launchers.client_dtls,
            _ => &launchers.default,
        }
    }
}

/// The launcher of every variant, and one whose client is the DTLS client.
struct Launchers {
    default: Launcher,
    client_dtls: Launcher,
}

#[derive(Serialize)]
struct ProfileResult {
    profile: Profile,
    /// The profile, or `fast (registration first)`.
    variant: String,
    runs: usize,
    failures: usize,
    ready_ms: Percentiles,
    /// Step time of each checkpoint, in pipeline order.
    phases: Vec<(String, Percentiles)>,
    /// From `answer_received` to `webrtc_data_plane_connected`.
    data_plane_ms: Percentiles,
}

#[derive(Serialize)]
struct RttResult {
    rtt_ms: Option<u64>,
    profiles: Vec<ProfileResult>,
}

/// Ports for the relayed paths: below Linux's ephemeral range, so nothing else takes them.
fn relay_ports() -> ((u16, u16), (u16, u16)) {
    let base = 20_000 + (std::process::id() % 100) as u16 * 100;
    ((base, base + 39), (base + 50, base + 89))
}

pub async fn run(
    runs: usize,
    profiles: &[Profile],
    rtts: Option<&[u64]>,
) -> Result<(String, serde_json::Value), String> {
    let (gateway_ports, client_ports) = relay_ports();
    let gateway_front: IpAddr = [127, 0, 0, 3].into();
    let client_front: IpAddr = [127, 0, 0, 5].into();
    let relayed = rtts.is_some();
    let lab = ProcessLab::start(&LabOptions {
        max_sessions: 64,
        nat: relayed.then_some((gateway_ports, gateway_front)),
        ..LabOptions::default()
    })
    .await?;
    let relay = if relayed {
        let localhost: IpAddr = [127, 0, 0, 1].into();
        Some(
            UdpRelay::start(
                Side {
                    real: localhost,
                    front: client_front,
                    ports: client_ports,
                },
                Side {
                    real: localhost,
                    front: gateway_front,
                    ports: gateway_ports,
                },
                Duration::ZERO,
            )
            .await
            .map_err(|e| format!("cannot start the UDP relay: {e}"))?,
        )
    } else {
        None
    };
    let scratch = std::env::temp_dir().join(format!("sallyport-bench-{}", std::process::id()));

    // Across round trips, `fast` also runs without each of its wide-area changes.
    let mut variants = Vec::new();
    for &profile in profiles {
        variants.push(Variant {
            profile,
            without: None,
        });
        if relayed && profile == Profile::Fast {
            for change in Change::ALL {
                variants.push(Variant {
                    profile,
                    without: Some(change),
                });
            }
        }
    }
    let mut results = Vec::new();
    for rtt in rtts.map_or(vec![None], |r| r.iter().map(|&r| Some(r)).collect()) {
        let one_way = Duration::from_millis(rtt.unwrap_or(0)) / 2;
        let (router_url, _proxy) = match rtt {
            Some(_) => {
                let proxy = TcpDelayProxy::start(lab.router_addr, one_way)
                    .await
                    .map_err(|e| format!("cannot start the TCP proxy: {e}"))?;
                (format!("http://{}", proxy.addr()), Some(proxy))
            }
            None => (lab.router_url(), None),
        };
        if let Some(relay) = &relay {
            relay.set_one_way_delay(one_way);
        }
        let mut tube = lab.profile(&router_url).tube_config();
        if relayed {
            tube = TubeConfig {
                udp_port_range: Some(client_ports),
                advertise_ip: Some(client_front),
                ..tube
            };
        }
        let launcher = |tube: TubeConfig| {
            Launcher::new(
                lab.profile(&router_url),
                &lab.client_token,
                StickyPorts::new(scratch.join("ports.json")),
            )
            .map(|launcher| {
                launcher
                    .with_tube_config(tube)
                    .with_state_dir(scratch.clone())
            })
            .map_err(|e| e.to_string())
        };
        let launchers = Launchers {
            default: launcher(tube.clone())?,
            client_dtls: launcher(TubeConfig {
                offer_passive: false,
                ..tube
            })?,
        };
        if let Some(rtt) = rtt {
            eprintln!("RTT {rtt} ms");
        }
        results.push(RttResult {
            rtt_ms: rtt,
            profiles: launches(&launchers, runs, &variants).await,
        });
    }
    drop(relay);
    lab.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);

    let mut md = String::from("## Launches\n\n");
    if relayed {
        md.push_str(&render_rtt(&results));
    }
    for result in &results {
        if let Some(rtt) = result.rtt_ms {
            md.push_str(&format!("\n### RTT {rtt} ms\n\n"));
        }
        md.push_str(&render(&result.profiles));
    }
    Ok((md, serde_json::to_value(&results).expect("serializable")))
}

async fn launches(launchers: &Launchers, runs: usize, variants: &[Variant]) -> Vec<ProfileResult> {
    let mut ready: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut data_plane: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut steps: BTreeMap<String, Vec<(String, Vec<f64>)>> = BTreeMap::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..runs {
        for &variant in variants {
            let profile = variant.label();
            let tunables = match variant.tunables() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{e}");
                    *failures.entry(profile).or_default() += 1;
                    continue;
                }
            };
            let mut request = LaunchRequest::new(ECHO, tunables);
            request.client = ClientChoice::None;
            request.port = Some(0);
            match variant.launcher(launchers).launch(request).await {
                Ok(session) => {
                    let checkpoints = session.checkpoints();
                    let total = |name: &str| {
                        checkpoints
                            .iter()
                            .find(|c| c.phase == name)
                            .map(|c| c.total_ms)
                    };
                    if let (Some(answer), Some(connected)) = (
                        total(names::ANSWER_RECEIVED),
                        total(names::WEBRTC_DATA_PLANE_CONNECTED),
                    ) {
                        data_plane
                            .entry(profile.clone())
                            .or_default()
                            .push(connected - answer);
                    }
                    let phases = steps.entry(profile.clone()).or_default();
                    for c in &checkpoints {
                        match phases.iter_mut().find(|(name, _)| *name == c.phase) {
                            Some((_, v)) => v.push(c.step_ms),
                            None => phases.push((c.phase.clone(), vec![c.step_ms])),
                        }
                        if c.phase == names::READY {
                            ready.entry(profile.clone()).or_default().push(c.total_ms);
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
    variants
        .iter()
        .map(|&variant| (variant, variant.label()))
        .map(|(variant, profile)| ProfileResult {
            profile: variant.profile,
            runs,
            failures: failures.get(&profile).copied().unwrap_or(0),
            ready_ms: percentiles(
                ready
                    .get_mut(&profile)
                    .map(Vec::as_mut_slice)
                    .unwrap_or(&mut []),
            ),
            data_plane_ms: percentiles(
                data_plane
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
            variant: profile,
        })
        .collect()
}

fn render_rtt(results: &[RttResult]) -> String {
    let mut md = String::from(
        "Ready p50 per round-trip time, and how many round trips the data plane took \
         (`answer_received` to `webrtc_data_plane_connected`, p50):\n\n| RTT ms |",
    );
    let profiles: Vec<String> = results
        .first()
        .map(|r| r.profiles.iter().map(|p| p.variant.clone()).collect())
        .unwrap_or_default();
    for p in &profiles {
        md.push_str(&format!(" {p} ready p50 ms | {p} in RTTs |"));
    }
    let befores: Vec<String> = profiles
        .iter()
        .filter(|p| p.starts_with("fast ("))
        .cloned()
        .collect();
    md.push_str(" fast data plane RTTs |");
    for before in &befores {
        md.push_str(&format!(" fast ÷ {before} |"));
    }
    md.push_str("\n|---|");
    for _ in &profiles {
        md.push_str("---|---|");
    }
    md.push_str("---|");
    for _ in &befores {
        md.push_str("---|");
    }
    md.push('\n');
    for r in results {
        let rtt = r.rtt_ms.unwrap_or(0);
        md.push_str(&format!("| {rtt} |"));
        let in_rtts = |ms: f64| {
            if rtt == 0 {
                "–".to_owned()
            } else {
                format!("{:.1}", ms / rtt as f64)
            }
        };
        for p in &r.profiles {
            md.push_str(&format!(
                " {:.1} | {} |",
                p.ready_ms.p50,
                in_rtts(p.ready_ms.p50)
            ));
        }
        let fast = r.profiles.iter().find(|p| p.variant == "fast");
        md.push_str(&format!(
            " {} |",
            fast.map_or("–".into(), |f| in_rtts(f.data_plane_ms.p50))
        ));
        for before in &befores {
            let before = r.profiles.iter().find(|p| p.variant == *before);
            let ratio = match (fast, before) {
                (Some(f), Some(b)) if b.ready_ms.p50 > 0.0 => {
                    format!("{:.2}", f.ready_ms.p50 / b.ready_ms.p50)
                }
                _ => "–".into(),
            };
            md.push_str(&format!(" {ratio} |"));
        }
        md.push('\n');
    }
    md
}

fn render(results: &[ProfileResult]) -> String {
    let mut md = String::new();
    md.push_str("| profile | runs | failures | ready p50 ms | ready p90 ms | ready p99 ms |\n|---|---|---|---|---|---|\n");
    for r in results {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            r.variant, r.runs, r.failures, r.ready_ms.p50, r.ready_ms.p90, r.ready_ms.p99
        ));
    }
    let p50 = |profile: Profile| {
        results
            .iter()
            .find(|r| r.variant == profile.as_str())
            .map(|r| r.ready_ms.p50)
    };
    if let (Some(fast), Some(other)) = (p50(Profile::Fast), p50(Profile::Legacy)) {
        md.push_str(&format!(
            "\nfast is {:.0}× faster than legacy (p50)",
            other / fast
        ));
        if let Some(tuned) = p50(Profile::Tuned) {
            md.push_str(&format!(" and {:.0}× faster than tuned", tuned / fast));
        }
        md.push_str(".\n");
    }
    md.push_str("\nStep time per checkpoint (p50 / p90 / p99 ms):\n\n| checkpoint |");
    for r in results {
        md.push_str(&format!(" {} |", r.variant));
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
