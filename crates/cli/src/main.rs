//! `sallyport`: the command line over the same core as the app.

mod bench;
mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sallyport_core::checkpoint::format_line;
use sallyport_core::{
    ClientChoice, ClientProfile, CoreError, Face, LaunchRequest, Launcher, Profile, SessionEnd,
    StickyPorts, Tunables,
};
use sallyport_lab::{Lab, LabOptions};
use sallyport_protocol::Code;
use sallyport_service::{CommandError, Connect, LaunchOptions, Options, Service};

#[derive(Parser)]
#[command(
    name = "sallyport",
    version,
    about = "Launch privileged-access sessions through WebRTC tubes"
)]
struct Cli {
    /// Profile file (default: $SALLYPORT_HOME/profile.toml).
    #[arg(long, global = true, env = "SALLYPORT_PROFILE")]
    profile_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded default: a router, a gateway and demo targets on loopback, and write
    /// a client profile for them.
    Lab {
        /// Router address.
        #[arg(long, default_value = "127.0.0.1:8740")]
        listen: std::net::SocketAddr,
        /// Don't add this machine's sshd and PostgreSQL as resources.
        #[arg(long)]
        no_local_services: bool,
        /// Extra resource NAME=PROTOCOL@HOST:PORT (repeatable).
        #[arg(long = "resource", value_parser = parse_resource)]
        resources: Vec<(String, String, String)>,
        /// Launch this resource through the lab once it is up, show the timeline, and exit.
        #[arg(long)]
        demo: Option<String>,
    },
    /// Store the router token in the OS keyring, or sign in with the profile's OpenID
    /// provider (`--sso`).
    Login {
        /// Read the token from this environment variable instead of standard input.
        #[arg(long, default_value = "SALLYPORT_TOKEN")]
        token_env: String,
        /// Sign in with the profile's `[sso]` provider (device authorization grant: open the
        /// printed URL in any browser and confirm the code).
        #[arg(long)]
        sso: bool,
    },
    /// The profile: import one an administrator distributed, list and change pinned gateways.
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
    /// List the resources this token may launch.
    Resources {
        #[arg(long)]
        json: bool,
    },
    /// Launch a session.
    Launch {
        resource: String,
        /// Local port on 127.0.0.1 (default: the resource's remembered port).
        #[arg(long)]
        port: Option<u16>,
        /// Client command template, e.g. 'ssh -p {port} admin@{host}'.
        #[arg(long, conflicts_with = "no_client")]
        run: Option<String>,
        /// Start no client; keep the tunnel up until Ctrl-C.
        #[arg(long)]
        no_client: bool,
        /// Launch profile: legacy, tuned or fast (default: the app's setting, else fast).
        #[arg(long)]
        profile: Option<Profile>,
        /// Ask for the answer inline instead of trickling candidates.
        #[arg(long)]
        no_trickle: bool,
        /// Print the session and its checkpoints as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Draw the launch of an exported diagnostic bundle: phases, step and total, a bar per
    /// phase scaled to the terminal's width.
    Timeline {
        /// The bundle (a .json file the app's History exported).
        file: PathBuf,
        /// Columns to draw in (default: the terminal's width).
        #[arg(long)]
        width: Option<usize>,
        /// Print the bundle's log lines too.
        #[arg(long)]
        log: bool,
    },
    /// Write the diagnostic bundle of a launch in the history (the app's History has the same
    /// Export) and print its path.
    Export {
        /// The launch's id (`sallyport launch --json` prints it; so does the history file).
        launch_id: String,
    },
    /// Every user's launch reports at the router (needs a token with the support role).
    Support {
        #[command(subcommand)]
        command: support::SupportCommand,
    },
    /// Measure launches per profile (interleaved), throughput or many launches at once,
    /// against a real router and gateway started as processes on loopback.
    Bench {
        /// Launches per profile.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Profiles to compare.
        #[arg(long, value_delimiter = ',', default_value = "legacy,tuned,fast")]
        profiles: Vec<Profile>,
        /// Launch across emulated round trips, in ms (e.g. 0,20,50,100): signalling through a
        /// delaying TCP proxy, the data path through a delaying UDP relay.
        #[arg(long, value_delimiter = ',')]
        rtt: Option<Vec<u64>>,
        /// Measure bytes through a tunnel beside plain TCP instead of launches.
        #[arg(long)]
        throughput: bool,
        /// MiB per throughput measurement (split across the parallel streams).
        #[arg(long, default_value_t = 1024)]
        megabytes: u64,
        /// Launch this many at the same moment, then leave them idle, instead of launches
        /// per profile.
        #[arg(long)]
        concurrent: Option<usize>,
        /// With --concurrent: also run the burst through this many routers sharing one Redis
        /// (a fleet; launches spread over them, one gateway), beside one router in the same
        /// run.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
        routers: u64,
        /// Soak instead: this many launch/close cycles, then `--soak-connections` short
        /// connections through one session; prints what each process holds before and after.
        #[arg(long)]
        soak: Option<usize>,
        #[arg(long, default_value_t = 10_000)]
        soak_connections: usize,
        /// Directory for bench.md and bench.json.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProfileAction {
    /// Import a distributed profile (router URL, CA, OpenID provider, pinned gateway keys).
    Import { file: PathBuf },
    /// Show the router, the OpenID provider and the pinned gateways with their fingerprints.
    Show,
    /// Pin a gateway's public key (base64), as your administrator gave it.
    Pin { gateway: String, key: String },
    /// Remove a gateway's pin (its next launch asks again).
    Unpin { gateway: String },
}

fn parse_resource(text: &str) -> Result<(String, String, String), String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or("expected NAME=PROTOCOL@HOST:PORT")?;
    let (protocol, target) = rest
        .split_once('@')
        .ok_or("expected NAME=PROTOCOL@HOST:PORT")?;
    Ok((name.into(), protocol.into(), target.into()))
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warn,rtc=error,rtc_dtls=error,rtc_ice=error,rtc_sctp=off".into()
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let profile_path = cli
        .profile_file
        .clone()
        .unwrap_or_else(sallyport_core::profile::default_profile_path);
    let result = match cli.command {
        Command::Lab {
            listen,
            no_local_services,
            resources,
            demo,
        } => lab(&profile_path, listen, !no_local_services, resources, demo).await,
        Command::Login { sso: true, .. } => login_sso(&profile_path).await,
        Command::Login { token_env, .. } => login(&profile_path, &token_env),
        Command::Profile { action } => profile(&profile_path, action).await,
        Command::Resources { json } => list_resources(&profile_path, json).await,
        Command::Timeline { file, width, log } => support::timeline(&file, width, log),
        Command::Export { launch_id } => match service(&profile_path).await {
            Ok(service) => service.export_bundle(&launch_id).await.map(|path| {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }),
            Err(e) => Err(e),
        },
        Command::Support { command } => match service(&profile_path).await {
            Ok(service) => support::run(&service, command).await,
            Err(e) => Err(e),
        },
        Command::Launch {
            resource,
            port,
            run,
            no_client,
            profile,
            no_trickle,
            json,
        } => {
            let options = LaunchOptions {
                port,
                client: match (run, no_client) {
                    (Some(template), _) => ClientChoice::Template(template),
                    (None, true) => ClientChoice::None,
                    (None, false) => ClientChoice::Default,
                },
                profile,
                trickle: !no_trickle,
                ..LaunchOptions::new(&resource)
            };
            launch(&profile_path, options, json).await
        }
        Command::Bench {
            runs,
            profiles,
            rtt,
            throughput,
            megabytes,
            concurrent,
            routers,
            soak,
            soak_connections,
            out,
        } => {
            let options = bench::Options {
                runs,
                profiles,
                out,
                rtt,
                throughput,
                megabytes,
                concurrent,
                routers: routers as usize,
                soak: soak.map(|cycles| (cycles, soak_connections)),
            };
            match bench::run(options).await {
                Ok(code) => Ok(code),
                Err(message) => {
                    let code = Code::BenchFailed;
                    eprintln!("error [{code}]: {message}\nhint: {}", code.hint());
                    return ExitCode::from(1);
                }
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The same code, message and hint the app shows.
            eprintln!("{}", CommandError::from(e));
            ExitCode::from(1)
        }
    }
}

/// The service as the CLI uses it: the profile file's router, clients in this terminal.
async fn service(profile_path: &std::path::Path) -> Result<Service, CoreError> {
    let home = sallyport_core::profile::home_dir();
    let connect = Connect::Profile(profile_path.to_owned());
    Service::start(Options::new(home, Face::Terminal, connect)).await
}

async fn profile(
    profile_path: &std::path::Path,
    action: ProfileAction,
) -> Result<ExitCode, CoreError> {
    // The core's own profile functions (the service's wrap the same ones): these need no
    // router and no token, which a fresh import does not have yet.
    use sallyport_core::import;
    let profile = match action {
        ProfileAction::Import { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| CoreError::ProfileImport {
                file: file.display().to_string(),
                message: format!("cannot read: {e}"),
            })?;
            let profile = import::import_profile(&text, &file, profile_path)?;
            println!(
                "imported {} into {}",
                file.display(),
                profile_path.display()
            );
            profile
        }
        ProfileAction::Show => ClientProfile::load(profile_path)?,
        ProfileAction::Pin { gateway, key } => import::pin(profile_path, &gateway, &key)?,
        ProfileAction::Unpin { gateway } => import::unpin(profile_path, &gateway)?,
    };
    println!("router: {}", profile.router_url);
    if let Some(ca) = &profile.ca_file {
        println!("router CA: {}", ca.display());
    }
    if let Some(sso) = &profile.sso {
        println!(
            "sign-in: {} (client {}): `sallyport login --sso`",
            sso.issuer, sso.client_id
        );
    }
    println!("pinned gateways:");
    let pins = sallyport_core::PinnedGateway::list(&profile);
    if pins.is_empty() {
        println!("  (none)");
    }
    for pin in pins {
        println!("  {:<16} {}", pin.gateway, pin.fingerprint);
    }
    Ok(ExitCode::SUCCESS)
}

/// Like SSH's first connection: show the fingerprint of the key the router lists for an
/// unpinned gateway and ask whether to pin it. Only on a terminal; `false` otherwise.
fn accept_gateway_key(pin: &sallyport_core::PinnedGateway) -> std::io::Result<bool> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprintln!(
        "The authenticity of gateway {:?} can't be established: its key is not pinned.",
        pin.gateway
    );
    eprintln!(
        "The router lists its key with fingerprint {}.",
        pin.fingerprint
    );
    eprintln!("Compare it with the fingerprint your administrator gave you.");
    loop {
        eprint!("Pin this key and continue (yes/no)? ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Ok(false);
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "yes" => return Ok(true),
            "no" | "" => return Ok(false),
            _ => eprintln!("Please type 'yes' or 'no'."),
        }
    }
}

async fn lab(
    profile_path: &std::path::Path,
    listen: std::net::SocketAddr,
    local_services: bool,
    extra: Vec<(String, String, String)>,
    demo: Option<String>,
) -> Result<ExitCode, CoreError> {
    // Beside the profile, which names the CA written there.
    let lab_dir = match profile_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("lab"),
        _ => PathBuf::from("lab"),
    };
    let lab = Lab::start(LabOptions {
        router_listen: listen,
        include_local_services: local_services,
        extra_resources: extra,
        dir: Some(lab_dir),
        ..LabOptions::default()
    })
    .await
    .map_err(CoreError::LabFailed)?;
    lab.profile.save(profile_path)?;
    println!(
        "sallyport lab: router {} with gateway \"lab\"",
        lab.router.url()
    );
    println!("  TLS: the router's CA is {}", lab.ca_file.display());
    println!("  audit log: {}", lab.audit_log.display());
    for r in &lab.resources {
        println!(
            "  resource {:<16} {:<10} -> {}",
            r.name, r.protocol, r.target
        );
    }
    println!("profile written to {}", profile_path.display());
    // What an administrator would hand out, to try `sallyport profile import` with.
    let team = lab.dir.join("team.toml");
    if std::fs::write(&team, lab.distributed_profile(None)).is_ok() {
        println!("a profile to distribute: {}", team.display());
    }

    if let Some(resource) = demo {
        let launcher = Launcher::new(
            lab.profile.clone(),
            &lab.client_token,
            StickyPorts::in_home(),
        )?;
        let mut request = LaunchRequest::new(&resource, Tunables::from_env(Profile::Fast)?);
        request.client = ClientChoice::None;
        let session = launcher.launch(request).await?;
        println!(
            "\nlaunch of {resource} ready on 127.0.0.1:{}",
            session.local_port()
        );
        print_timeline(&session.checkpoints());
        if resource == sallyport_lab::DEMO_ECHO {
            let reply = echo_once(session.local_port(), b"hello through the tube\n").await?;
            print!("echo through the tube: {}", String::from_utf8_lossy(&reply));
        }
        session.close().await;
        lab.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "\nin another terminal: sallyport launch {}",
        sallyport_lab::DEMO_ECHO
    );
    println!("Ctrl-C stops the lab");
    let _ = tokio::signal::ctrl_c().await;
    lab.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn echo_once(port: u16, message: &[u8]) -> Result<Vec<u8>, CoreError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(message).await?;
    let mut reply = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply))
        .await
        .map_err(|_| CoreError::Timeout(Duration::from_secs(10), "the echo"))??;
    Ok(reply)
}

fn print_timeline(checkpoints: &[sallyport_core::Checkpoint]) {
    for c in checkpoints {
        let mut line = format_line("  ", c);
        if let Some(detail) = &c.detail {
            line.push_str(&format!("  [{detail}]"));
        }
        println!("{}", line.trim_start());
    }
}

fn login(profile_path: &std::path::Path, token_env: &str) -> Result<ExitCode, CoreError> {
    let profile = ClientProfile::load(profile_path)?;
    let token = match std::env::var(token_env) {
        Ok(t) if !t.is_empty() => t,
        _ => {
            eprint!("router token for {}: ", profile.router_url);
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    if token.is_empty() {
        return Err(CoreError::MissingToken);
    }
    // Check it against the router before keeping it.
    let api = sallyport_core::router_api::RouterApi::for_profile(&profile, &token)?;
    let rt = tokio::runtime::Handle::current();
    let count = tokio::task::block_in_place(|| rt.block_on(api.resources()))?.len();
    let keyring = sallyport_core::secrets::store_token(&profile.router_url, &token)?;
    println!(
        "token stored in the {} ({count} resources visible)",
        keyring.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// `sallyport login --sso`: the device authorization grant (RFC 8628). The refresh token and
/// the ID token go into the OS keyring, never a file; later commands refresh the ID token.
async fn login_sso(profile_path: &std::path::Path) -> Result<ExitCode, CoreError> {
    use sallyport_core::sso;
    let profile = ClientProfile::load(profile_path)?;
    let settings = profile.sso.clone().ok_or_else(|| {
        CoreError::Profile(format!(
            "{}: no [sso] section: import your administrator's profile (`sallyport profile import FILE`)",
            profile_path.display()
        ))
    })?;
    let client = sso::SsoClient::new(&settings)?;
    let tokens = client
        .device_login(|prompt| {
            println!("To sign in, open {} in a browser", prompt.verification_uri);
            println!("and enter the code {}", prompt.user_code);
            if let Some(complete) = &prompt.verification_uri_complete {
                println!("(or open {complete})");
            }
            println!("waiting for the confirmation ...");
        })
        .await?;
    let keyring = sso::store(&profile.router_url, &tokens)?;
    // Check it against the router before saying so.
    let api = sallyport_core::router_api::RouterApi::for_profile(&profile, &tokens.id_token)?;
    let count = api.resources().await?.len();
    println!(
        "signed in with {}; tokens kept in the {} ({count} resources visible; the sign-in is renewed before it expires)",
        settings.issuer,
        keyring.name()
    );
    Ok(ExitCode::SUCCESS)
}

async fn list_resources(profile_path: &std::path::Path, json: bool) -> Result<ExitCode, CoreError> {
    let resources = service(profile_path).await?.resources().await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resources).expect("serializable")
        );
    } else {
        println!(
            "{:<20} {:<11} {:<12} STATE",
            "RESOURCE", "PROTOCOL", "GATEWAY"
        );
        for r in resources {
            let state = if r.online { "online" } else { "offline" };
            println!(
                "{:<20} {:<11} {:<12} {state}",
                r.name, r.protocol, r.gateway
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn launch(
    profile_path: &std::path::Path,
    options: LaunchOptions,
    json: bool,
) -> Result<ExitCode, CoreError> {
    let service = service(profile_path).await?;
    let resource = options.resource.clone();
    // Through the service, so the launch shows in the app's History too.
    let launched = match service.launch(options.clone(), |_| {}).await {
        // A gateway whose key is not pinned yet: show its fingerprint and ask, as SSH does.
        Err(e) if e.offered_key().is_some() => {
            let pin = e.offered_key().expect("checked above");
            if !accept_gateway_key(&pin)? {
                return Err(e);
            }
            service.pin_gateway(&pin.gateway, &pin.key).await?;
            eprintln!(
                "sallyport: pinned gateway {:?} ({})",
                pin.gateway, pin.fingerprint
            );
            service.launch(options, |_| {}).await
        }
        other => other,
    };
    let session = match launched {
        Ok(session) => session,
        Err(e) => {
            // The failure's report goes to the router before the process ends.
            service.flush_reports(Duration::from_secs(3)).await;
            return Err(e);
        }
    };
    // A client that hands the session to another program (a browser) returns at once: the
    // session lasts until Ctrl-C.
    let hands_off = session
        .client_command()
        .is_some_and(sallyport_core::native_client::hands_off);
    if json {
        let out =
            serde_json::json!({ "session": session.info(), "checkpoints": session.checkpoints() });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializable")
        );
    } else {
        eprintln!(
            "sallyport: {resource} ready on 127.0.0.1:{} in {:.0} ms",
            session.local_port(),
            session.info().ready_ms
        );
        if let Some(cmd) = session.client_command() {
            eprintln!("sallyport: running {cmd}");
            if hands_off {
                eprintln!("sallyport: Ctrl-C closes the session");
            }
        } else {
            eprintln!("sallyport: no client started; Ctrl-C closes the session");
        }
    }
    let mut states = session.state_changes();
    let report_states = async move {
        let mut since = None;
        while states.changed().await.is_ok() {
            let state = *states.borrow_and_update();
            match state {
                sallyport_core::SessionState::Reconnecting => {
                    since = Some(std::time::Instant::now());
                    eprintln!("sallyport: reconnecting: the path to the gateway broke");
                }
                sallyport_core::SessionState::Active => {
                    if let Some(since) = since.take() {
                        eprintln!(
                            "sallyport: reconnected after {:.1} s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                }
                _ => {}
            }
        }
    };
    let end = tokio::select! {
        end = async { if hands_off { session.wait_tunnel().await } else { session.wait().await } } => end,
        _ = tokio::signal::ctrl_c() => SessionEnd::Closed,
        _ = async { if !json { report_states.await } std::future::pending::<()>().await } => unreachable!(),
    };
    let info = session.info();
    service.close_all().await;
    service.flush_reports(Duration::from_secs(3)).await;
    if !json {
        let why = match &end {
            SessionEnd::ClientExited { code: Some(code) } => {
                format!("the client exited with {code}")
            }
            SessionEnd::ClientExited { code: None } => "the client was killed".to_owned(),
            SessionEnd::TubeEnded { reason } => format!("the tunnel ended: {reason}"),
            SessionEnd::Closed => "closed".to_owned(),
        };
        eprintln!(
            "sallyport: session ended ({why}); {} bytes in, {} bytes out",
            info.bytes_in, info.bytes_out
        );
    }
    Ok(match end {
        SessionEnd::ClientExited { code: Some(code) } => ExitCode::from(code.clamp(0, 255) as u8),
        SessionEnd::ClientExited { code: None } => ExitCode::from(1),
        SessionEnd::TubeEnded { .. } => ExitCode::from(3),
        SessionEnd::Closed => ExitCode::SUCCESS,
    })
}
