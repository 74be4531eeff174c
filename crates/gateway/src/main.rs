//! `sallyport-gateway run --config gateway.toml` and `sallyport-gateway keygen --out FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sallyport-gateway",
    version,
    about = "Sallyport's gateway agent"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the router and serve the configured resources.
    Run {
        #[arg(long, short, env = "SALLYPORT_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Write a new secret key and print its public key (to pin in client profiles).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of an existing secret key file.
    Pubkey {
        #[arg(long)]
        key: PathBuf,
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
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rtc=warn,rtc_ice=warn,rtc_dtls=warn,rtc_sctp=off".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Args::parse().command {
        Command::Keygen { out } => match sallyport_gateway::generate_key(&out) {
            Ok(pair) => {
                println!("{}", pair.public());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Pubkey { key } => match sallyport_gateway::load_key(&key) {
            Ok(pair) => {
                println!("{}", pair.public());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Run { config } => {
            let config = match sallyport_gateway::GatewayConfig::load(&config) {
                Ok(config) => config,
                Err(e) => return fail(&e),
            };
            let key = match sallyport_gateway::load_key(&config.key_file) {
                Ok(key) => key,
                Err(e) => return fail(&e),
            };
            println!("gateway {} public key: {}", config.gateway_id, key.public());
            let gateway = match sallyport_gateway::spawn(config, key) {
                Ok(gateway) => gateway,
                Err(e) => return fail(&e),
            };
            stop_requested().await;
            gateway.shutdown().await;
            ExitCode::SUCCESS
        }
    }
}

fn fail(e: &sallyport_gateway::GatewayError) -> ExitCode {
    eprintln!("error [{}]: {e}", e.code());
    ExitCode::from(2)
}

/// Ctrl-C, or SIGTERM from a service manager: either stops the process gracefully.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
