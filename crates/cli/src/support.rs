//! `sallyport timeline FILE` (a diagnostic bundle drawn in the terminal) and `sallyport support
//! launches|stats` (every user's launch reports at the router, for the support role): what the
//! app's Timeline and Support panel show, as text.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sallyport_core::bundle::BundleView;
use sallyport_core::{chart, Checkpoint, CoreError};
use sallyport_protocol::report::{
    GroupBy, LaunchQuery, LaunchSummary, Outcome, PhaseStats, MAX_LIST_LIMIT,
};
use sallyport_service::Service;

#[derive(Subcommand)]
pub enum SupportCommand {
    /// Recent launches of every user, newest first.
    Launches {
        #[command(flatten)]
        filter: Filter,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIST_LIMIT)))]
        limit: u32,
        /// Draw the timeline of this launch (by its id) instead of the list.
        #[arg(long)]
        launch: Option<String>,
        /// Print the router's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per-phase percentiles, for the fleet and per gateway or resource, with the groups and
    /// phases slower than the fleet's median marked.
    Stats {
        #[command(flatten)]
        filter: Filter,
        #[arg(long, default_value = "gateway", value_parser = parse_group_by)]
        group_by: GroupBy,
        #[arg(long)]
        json: bool,
    },
}

/// The filters both support commands take.
#[derive(Args)]
pub struct Filter {
    /// The user (the client name of the token that launched).
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    resource: Option<String>,
    #[arg(long)]
    gateway: Option<String>,
    /// ok or failed.
    #[arg(long, value_parser = parse_outcome)]
    outcome: Option<Outcome>,
    /// Launches since this long ago (30m, 6h, 7d) or since a time in Unix milliseconds.
    #[arg(long, value_parser = parse_since)]
    since: Option<u64>,
}

impl Filter {
    fn query(self) -> LaunchQuery {
        LaunchQuery {
            user: self.user,
            resource: self.resource,
            gateway: self.gateway,
            outcome: self.outcome,
            since: self.since,
        }
    }
}

fn parse_outcome(text: &str) -> Result<Outcome, String> {
    Outcome::parse(text).ok_or_else(|| format!("{text:?} is not ok or failed"))
}

fn parse_group_by(text: &str) -> Result<GroupBy, String> {
    GroupBy::parse(text).ok_or_else(|| format!("{text:?} is not phase, gateway or resource"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `30m`, `6h`, `7d`, `45s` ago, or a time in Unix milliseconds.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is neither a duration ago (30m, 6h, 7d) nor Unix milliseconds");
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    Ok(now_ms().saturating_sub(n.saturating_mul(unit_ms)))
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The terminal's width in columns: `COLUMNS`, else the terminal's own, else 100.
pub fn terminal_width() -> usize {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return n;
    }
    // SAFETY: TIOCGWINSZ fills a winsize and touches nothing else.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0 {
            return usize::from(size.ws_col);
        }
    }
    100
}

/// `sallyport timeline FILE`: the bundle's launch, drawn.
pub fn timeline(path: &Path, width: Option<usize>, log: bool) -> Result<ExitCode, CoreError> {
    let bundle = sallyport_core::bundle::read_file(path)?;
    print!(
        "{}",
        describe(&bundle, width.unwrap_or_else(terminal_width), log)
    );
    Ok(ExitCode::SUCCESS)
}

/// The bundle as text: what, when, which versions, the timeline, the tunables, the log.
pub fn describe(bundle: &BundleView, width: usize, log: bool) -> String {
    let launch = &bundle.launch;
    let mut out = format!(
        "{} · launch {} · {} · {:.1} ms · profile {} · {}\n",
        launch.resource,
        launch.launch_id,
        launch.outcome.as_str(),
        launch.total_ms,
        launch.profile,
        utc(launch.started_unix_ms)
    );
    out.push_str(&format!(
        "imported bundle {} ({}) · Sallyport {}, protocol {}, {}/{} · router {}\n",
        bundle.kind.rsplit('/').next().unwrap_or_default(),
        if bundle.verified {
            "digest verified"
        } else {
            "v1: no digest to check"
        },
        bundle.sallyport_version,
        bundle.protocol_version,
        bundle.os,
        bundle.arch,
        bundle.router_url
    ));
    if let Some(error) = &launch.error {
        out.push_str(&format!("failed [{}]: {}\n", error.code, error.message));
    }
    out.push('\n');
    out.push_str(&chart::draw(&launch.checkpoints, width));
    out.push('\n');
    let tunables: Vec<String> = bundle
        .tunables
        .iter()
        .map(|t| format!("{}={}", t.name, t.value))
        .collect();
    out.push_str(&format!("tunables: {}\n", tunables.join(" ")));
    if log {
        out.push_str(&format!("log ({} lines):\n", bundle.log.len()));
        for line in &bundle.log {
            out.push_str(&format!("  {line}\n"));
        }
    } else {
        out.push_str(&format!(
            "log: {} lines (--log prints them)\n",
            bundle.log.len()
        ));
    }
    out
}

fn checkpoints(launch: &LaunchSummary) -> Vec<Checkpoint> {
    launch
        .checkpoints
        .iter()
        .map(|c| Checkpoint {
            launch_id: launch.launch_id.clone(),
            resource: launch.resource.clone(),
            phase: c.phase.clone(),
            step_ms: c.step_ms,
            total_ms: c.total_ms,
            attempt: c.attempt,
            detail: None,
            error: None,
            at_unix_ms: 0,
        })
        .collect()
}

/// A group or phase is slow beside the fleet when its median is more than twice the fleet's
/// and over 50 ms above it (the app's Support panel marks the same).
pub fn slow(p50: f64, fleet_p50: f64) -> bool {
    p50 > 2.0 * fleet_p50 && p50 - fleet_p50 > 50.0
}

pub async fn run(service: &Service, command: SupportCommand) -> Result<ExitCode, CoreError> {
    match command {
        SupportCommand::Launches {
            filter,
            limit,
            launch,
            json,
        } => {
            let list = service
                .support_launches(&filter.query(), Some(limit))
                .await?;
            if let Some(id) = launch {
                let found = list.launches.iter().find(|l| l.launch_id == id);
                let Some(found) = found else {
                    return Err(CoreError::UnknownLaunch(id));
                };
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(found).expect("serializable")
                    );
                } else {
                    println!(
                        "{} · {} · launch {} · {}{} · {:.1} ms · gateway {} · {}\n",
                        found.user,
                        found.resource,
                        found.launch_id,
                        found.outcome.as_str(),
                        found.code.map_or(String::new(), |c| format!(" [{c}]")),
                        found.total_ms,
                        found.gateway.as_deref().unwrap_or("-"),
                        utc(found.started_unix_ms)
                    );
                    print!("{}", chart::draw(&checkpoints(found), terminal_width()));
                }
                return Ok(ExitCode::SUCCESS);
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("serializable")
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<23} {:<14} {:<16} {:<10} {:<7} {:<18} {:>10} {:>3}  LAUNCH",
                "STARTED", "USER", "RESOURCE", "GATEWAY", "OUTCOME", "CODE", "TOTAL", "TRY"
            );
            for l in &list.launches {
                println!(
                    "{:<23} {:<14} {:<16} {:<10} {:<7} {:<18} {:>10} {:>3}  {}",
                    utc(l.started_unix_ms),
                    l.user,
                    l.resource,
                    l.gateway.as_deref().unwrap_or("-"),
                    l.outcome.as_str(),
                    l.code.map_or("-".into(), |c| c.to_string()),
                    format!("{:.1} ms", l.total_ms),
                    l.attempts,
                    l.launch_id
                );
            }
            if list.launches.is_empty() {
                println!("(no launch matches)");
            }
            Ok(ExitCode::SUCCESS)
        }
        SupportCommand::Stats {
            filter,
            group_by,
            json,
        } => {
            let stats = service.support_stats(&filter.query(), group_by).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stats).expect("serializable")
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} launches, grouped by {}",
                stats.launches,
                group_by.as_str()
            );
            println!(
                "\n{:<16} {:>6} {:>10} {:>10} {:>10}",
                "TOTALS", "COUNT", "P50", "P90", "P99"
            );
            for t in &stats.totals {
                println!(
                    "{:<16} {:>6} {:>10} {:>10} {:>10}",
                    t.group.as_deref().unwrap_or("(fleet)"),
                    t.count,
                    ms(t.p50),
                    ms(t.p90),
                    ms(t.p99)
                );
            }
            println!(
                "\n{:<16} {:<44} {:>6} {:>10} {:>10} {:>10} {:>10}",
                "GROUP", "PHASE", "COUNT", "P50", "P90", "P99", "FLEET P50"
            );
            for p in &stats.phases {
                println!("{}", stats_line(p));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}

fn stats_line(p: &PhaseStats) -> String {
    let mark = if slow(p.p50, p.fleet_p50) {
        format!(
            "  ▲ {:.1}× the fleet's median",
            p.p50 / p.fleet_p50.max(0.001)
        )
    } else {
        String::new()
    };
    format!(
        "{:<16} {:<44} {:>6} {:>10} {:>10} {:>10} {:>10}{mark}",
        p.group.as_deref().unwrap_or("(fleet)"),
        p.phase,
        p.count,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.fleet_p50)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(parse_since("1700000000000"), Ok(1_700_000_000_000));
        let hour_ago = parse_since("1h").unwrap();
        assert!(now_ms() - hour_ago >= 3_600_000);
        assert!(parse_since("1w").is_err() && parse_since("h").is_err());
        assert!(slow(200.0, 20.0) && !slow(30.0, 10.0) && !slow(20.0, 20.0));
    }
}
