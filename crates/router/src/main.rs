//! `sallyport-router --config router.toml`

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "sallyport-router",
    version,
    about = "Sallyport's signalling router"
)]
struct Args {
    /// Path to the router's TOML configuration.
    #[arg(long, short, env = "SALLYPORT_ROUTER_CONFIG")]
    config: PathBuf,
    /// Override the configured listen address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

/// mimalloc: the data plane allocates and frees a 64 KiB message per frame, which glibc's
/// allocator answers by growing and trimming its heap over and over (a page fault storm that
/// cost a third of a busy tube's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut config = match sallyport_router::RouterConfig::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
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
            return std::process::ExitCode::from(1);
        }
    };
    println!("sallyport-router listening on {}", router.url());
    stop_requested().await;
    router.shutdown().await;
    std::process::ExitCode::SUCCESS
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
