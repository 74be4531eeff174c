//! `sallyport-router --config router.toml` serves; SIGHUP reloads the certificate and reopens
//! the audit log. `sallyport-router audit --since 1h` reads the audit log back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sallyport_router::audit::{self, AuditQuery};

#[derive(Parser)]
#[command(
    name = "sallyport-router",
    version,
    about = "Sallyport's signalling router"
)]
struct Args {
    /// Path to the router's TOML configuration.
    #[arg(
        long,
        short,
        global = true,
        env = "SALLYPORT_ROUTER_CONFIG",
        default_value = "/etc/sallyport/router.toml"
    )]
    config: PathBuf,
    /// Override the configured listen address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the audit log's events (the configuration's audit_log, or --file).
    Audit {
        /// From when: a duration back (90s, 15m, 1h, 7d, 1h30m) or a UTC time
        /// (2025-03-01, 2025-03-01T09:30:00Z).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Only this client's events.
        #[arg(long)]
        user: Option<String>,
        /// Only this resource's events.
        #[arg(long)]
        resource: Option<String>,
        /// Read this file instead of the configuration's audit_log (e.g. a rotated one).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the JSON lines themselves.
        #[arg(long)]
        json: bool,
    },
}

/// mimalloc: the data plane allocates and frees a 64 KiB message per frame, which glibc's
/// allocator answers by growing and trimming its heap over and over (a page fault storm that
/// cost a third of a busy tube's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match args.command {
        Some(Command::Audit {
            since,
            user,
            resource,
            file,
            json,
        }) => {
            let query = match sallyport_ops::jsonl::since(&since, std::time::SystemTime::now()) {
                Ok(since) => AuditQuery {
                    since,
                    user,
                    resource,
                },
                Err(e) => {
                    eprintln!("error [invalid_argument]: --since: {e}");
                    return ExitCode::from(2);
                }
            };
            print_audit(&args.config, file, &query, json)
        }
        None => serve(&args.config, args.listen).await,
    }
}

async fn serve(config_path: &Path, listen: Option<std::net::SocketAddr>) -> ExitCode {
    let mut config = match sallyport_router::RouterConfig::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    // More descriptors allow more connections; the caps are fitted to whatever is granted.
    if let Some(limit) = sallyport_router::raise_descriptor_limit() {
        tracing::debug!(open_file_limit = limit, "descriptor limit");
    }
    let router = match sallyport_router::spawn(config).await {
        Ok(router) => router,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            return ExitCode::from(1);
        }
    };
    println!("sallyport-router listening on {}", router.url());
    serve_until_stopped(&router).await;
    router.shutdown().await;
    ExitCode::SUCCESS
}

/// Until Ctrl-C or SIGTERM (from a service manager): either stops the process gracefully.
/// SIGHUP reloads the certificate and reopens the audit log, keeping every connection.
async fn serve_until_stopped(router: &sallyport_router::RouterHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return,
                    _ = term.recv() => return,
                    _ = hup.recv() => match router.reload() {
                        Ok(()) => tracing::info!("reloaded the certificate and reopened the audit log"),
                        Err(e) => tracing::error!(error = %e, "reload failed; the previous certificate and audit log stay in use"),
                    },
                }
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The audit log the configuration at `config_path` names, relative to its directory.
fn configured_audit_log(config_path: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let config = sallyport_router::RouterConfig::parse(&text)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let log = config.audit_log.ok_or_else(|| {
        format!(
            "{}: audit_log is not set, so there is no audit log to read (or name one with --file)",
            config_path.display()
        )
    })?;
    Ok(match config_path.parent() {
        Some(dir) if log.is_relative() => dir.join(log),
        _ => log,
    })
}

fn print_audit(config: &Path, file: Option<PathBuf>, query: &AuditQuery, json: bool) -> ExitCode {
    let path = match file.map_or_else(|| configured_audit_log(config), Ok) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("error [config_invalid]: {e}");
            return ExitCode::from(2);
        }
    };
    let (records, unreadable) = match audit::read(&path, query) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("error [audit_unreadable]: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    for record in &records {
        if json {
            println!(
                "{}",
                serde_json::to_string(record).expect("audit records serialize")
            );
        } else {
            println!("{}", audit::format_record(record));
        }
    }
    if unreadable > 0 {
        eprintln!(
            "warning: {}: {unreadable} line(s) are not audit records and were skipped",
            path.display()
        );
    }
    ExitCode::SUCCESS
}
