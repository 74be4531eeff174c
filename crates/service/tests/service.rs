//! The service headless, as the app and the CLI use it: the embedded lab when nothing is
//! configured, launches into one history whichever face made them, client choices, sticky-port
//! rules, sessions closed and supervised, and errors with their own codes and hints.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sallyport_core::checkpoint::names;
use sallyport_core::history::Outcome;
use sallyport_core::{ClientChoice, ClientProfile, Face, SessionState};
use sallyport_lab::{Lab, LabOptions};
use sallyport_protocol::Code;
use sallyport_service::{CommandError, Connect, LaunchOptions, Options, Service};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sallyport-service-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn lab() -> Lab {
    Lab::start(LabOptions {
        include_local_services: false,
        ..LabOptions::default()
    })
    .await
    .expect("lab starts")
}

/// A service with the CLI's face on the lab's profile (written outside `home`).
async fn cli_service(lab: &Lab, home: &std::path::Path) -> Service {
    let profile = scratch("profile").join("profile.toml");
    lab.profile.save(&profile).unwrap();
    Service::start(Options::new(
        home.to_owned(),
        Face::Terminal,
        Connect::Profile(profile),
    ))
    .await
    .unwrap()
}

/// The app's service with nothing configured: its own embedded lab.
async fn app_service(home: &std::path::Path) -> Service {
    Service::start(Options::new(
        home.to_owned(),
        Face::Desktop,
        Connect::RouterOrLab,
    ))
    .await
    .unwrap()
}

fn echo() -> LaunchOptions {
    LaunchOptions::new(sallyport_lab::DEMO_ECHO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_the_app_launches_through_its_own_lab() {
    let home = scratch("app");
    let service = Arc::new(app_service(&home).await);
    let state = service.app_state().await;
    assert!(state.lab && state.token_set, "{state:?}");

    let resources = service.resources().await.unwrap();
    let echo_view = resources
        .iter()
        .find(|r| r.name == sallyport_lab::DEMO_ECHO)
        .expect("the lab serves demo-echo");
    // A plain TCP resource has one choice: the tunnel only.
    assert_eq!(echo_view.client_choices.len(), 1);
    assert_eq!(echo_view.client_choices[0].template, None);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let info = {
        let seen = seen.clone();
        service
            .launch_supervised(echo(), move |c| seen.lock().unwrap().push(c.clone()))
            .await
            .unwrap()
    };
    assert_eq!(info.client, None, "tcp's default is no client");
    assert_eq!(service.sessions().len(), 1);

    // The history holds the launch with exactly the checkpoints the caller saw live.
    let history = service.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].launch_id, info.launch_id);
    assert_eq!(history[0].outcome, Outcome::Ok);
    assert_eq!(history[0].checkpoints, *seen.lock().unwrap());
    assert_eq!(history[0].checkpoints.last().unwrap().phase, names::READY);
    assert_eq!(
        service.recent_resources(5),
        [sallyport_lab::DEMO_ECHO.to_owned()]
    );

    let bundle = service.export_bundle(&info.launch_id).await.unwrap();
    assert!(bundle.is_file());
    let err = service.export_bundle("no-such-launch").await.unwrap_err();
    assert_eq!(err.code(), Code::UnknownLaunch);

    let changes = service.changes();
    service.close_session(&info.launch_id).await.unwrap();
    assert!(changes.has_changed().unwrap(), "closing is announced");
    assert!(service.sessions().is_empty());
    let err = service.close_session(&info.launch_id).await.unwrap_err();
    assert_eq!(err.code(), Code::UnknownSession);
    assert_eq!(CommandError::from(&err).hint, Code::UnknownSession.hint());
    service.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_launch_shows_in_the_app_s_history() {
    let lab = lab().await;
    let home = scratch("shared");
    let cli = cli_service(&lab, &home).await;
    let session = cli.launch(echo(), |_| {}).await.unwrap();
    let launch_id = session.launch_id().to_owned();
    cli.close_all().await;

    // The app, started later on the same home, sees the CLI's launch.
    let app = Service::start(Options::new(
        home.clone(),
        Face::Desktop,
        Connect::Profile(scratch("app-profile").join("missing.toml")),
    ))
    .await;
    // (No profile at that path: the app-faced service cannot connect, and says why.)
    assert_eq!(app.err().unwrap().code(), Code::InvalidProfile);
    let app = cli_service(&lab, &home).await;
    let history = app.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].launch_id, launch_id);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_launch_is_recorded_with_its_code_as_fields() {
    let lab = lab().await;
    let home = scratch("failed");
    let service = cli_service(&lab, &home).await;
    let err = service
        .launch(LaunchOptions::new("no-such-resource"), |_| {})
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::UnknownResource);
    let record = &service.history()[0];
    assert_eq!(record.outcome, Outcome::Failed);
    let error = record.error.as_ref().unwrap();
    assert_eq!(error.code, Code::UnknownResource);
    let failed = record.checkpoints.last().unwrap();
    assert_eq!(failed.phase, names::FAILED);
    assert_eq!(failed.error.as_ref(), Some(error));
    assert!(service.sessions().is_empty());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_ports_are_checked_and_shown() {
    let lab = lab().await;
    let home = scratch("ports");
    let service = cli_service(&lab, &home).await;
    let err = service
        .set_sticky_port(sallyport_lab::DEMO_ECHO, Some(80))
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidPort);
    service
        .set_sticky_port(sallyport_lab::DEMO_ECHO, Some(40123))
        .unwrap();
    let port_of = |list: Vec<sallyport_service::ResourceView>| {
        list.into_iter()
            .find(|r| r.name == sallyport_lab::DEMO_ECHO)
            .unwrap()
            .sticky_port
    };
    assert_eq!(port_of(service.resources().await.unwrap()), Some(40123));
    service
        .set_sticky_port(sallyport_lab::DEMO_ECHO, None)
        .unwrap();
    assert_eq!(port_of(service.resources().await.unwrap()), None);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_command_is_resolved_per_face_and_a_missing_one_fails_early() {
    let lab = lab().await;
    let home = scratch("client");
    let service = cli_service(&lab, &home).await;
    let options = LaunchOptions {
        client: ClientChoice::Template("definitely-not-installed-xyz {port}".into()),
        ..echo()
    };
    let err = service.launch(options, |_| {}).await.err().unwrap();
    assert_eq!(err.code(), Code::ClientMissing);
    let shown = CommandError::from(&err);
    assert_eq!(shown.hint, Code::ClientMissing.hint());
    assert!(shown.to_string().starts_with("error [client_missing]: "));
    lab.shutdown().await;
}

#[tokio::test]
async fn a_profile_without_a_token_says_so_with_its_own_code() {
    let home = scratch("token");
    let profile = home.join("profile.toml");
    ClientProfile::new("http://127.0.0.1:9")
        .save(&profile)
        .unwrap();
    let err = Service::start(Options::new(
        home,
        Face::Terminal,
        Connect::Profile(profile),
    ))
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), Code::MissingToken, "{err}");
    assert!(err.to_string().contains("sallyport login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_session_that_ends_by_itself_says_why_until_dismissed() {
    let lab = lab().await;
    let home = scratch("supervised");
    let service = Arc::new(cli_service(&lab, &home).await);
    let info = service.launch_supervised(echo(), |_| {}).await.unwrap();
    assert_eq!(service.sessions()[0].launch_id, info.launch_id);
    assert_eq!(service.sessions()[0].ended, None);
    let mut changes = service.changes();
    // The gateway stops: the tube ends, and the list says so (closed, and why).
    lab.shutdown().await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Some(s) = service.sessions().into_iter().find(|s| s.ended.is_some()) {
                return s;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the ended session shows how it ended");
    assert_eq!(ended.launch_id, info.launch_id);
    assert_eq!(ended.state, SessionState::Closed);
    assert_eq!(ended.ended.unwrap().code, Code::GatewayShutdown);
    assert_eq!(service.sessions().len(), 1, "only the ended one");

    // Dismissing it takes it off the list; a second dismissal names the unknown session.
    service.close_session(&info.launch_id).await.unwrap();
    assert!(service.sessions().is_empty());
    let err = service.close_session(&info.launch_id).await.unwrap_err();
    assert_eq!(err.code(), Code::UnknownSession);
}

/// A profile of the lab's router with the lab's token and no pinned gateway (what a user has
/// before a gateway's first launch), written outside `home`.
fn unpinned_profile(lab: &Lab) -> PathBuf {
    let path = scratch("unpinned").join("profile.toml");
    let mut profile = lab.profile.clone();
    profile.gateways.clear();
    profile.save(&path).unwrap();
    path
}

async fn service_on(profile: &std::path::Path, home: &std::path::Path) -> Service {
    Service::start(Options::new(
        home.to_owned(),
        Face::Terminal,
        Connect::Profile(profile.to_owned()),
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_gateway_shows_its_fingerprint_and_launches_once_pinned() {
    let lab = lab().await;
    let home = scratch("tofu");
    let profile_path = unpinned_profile(&lab);
    let service = service_on(&profile_path, &home).await;
    let real = lab.profile.gateway_key(sallyport_lab::LAB_GATEWAY).unwrap();

    // Not trusted on the router's word: refused, with the fingerprint to compare.
    let err = service.launch(echo(), |_| {}).await.err().expect("refused");
    assert_eq!(err.code(), Code::UnpinnedGateway);
    let shown = CommandError::from(&err);
    let offered = shown.unpinned.clone().expect("the router's key is offered");
    assert_eq!(offered.gateway, sallyport_lab::LAB_GATEWAY);
    assert_eq!(offered.fingerprint, real.fingerprint());
    assert!(shown.message.contains(&real.fingerprint()), "{shown}");
    assert!(service.pinned_gateways().await.is_empty());
    let pinned = ClientProfile::load(&profile_path).unwrap();
    assert!(pinned.gateways.is_empty(), "nothing pinned unasked");

    // Accepted: pinned in the profile file, and the launch goes through.
    let pins = service
        .pin_gateway(&offered.gateway, &offered.key)
        .await
        .unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].fingerprint, real.fingerprint());
    let session = service.launch(echo(), |_| {}).await.unwrap();
    let (sent, received) = echo_through(session.local_port()).await;
    assert_eq!(sent, received);
    service.close_all().await;

    // Removed: the next launch asks again.
    assert!(service
        .unpin_gateway(sallyport_lab::LAB_GATEWAY)
        .await
        .unwrap()
        .is_empty());
    let again = service.launch(echo(), |_| {}).await.err().expect("asks");
    assert_eq!(again.code(), Code::UnpinnedGateway);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_gateway_key_is_refused_naming_both_fingerprints() {
    let lab = lab().await;
    let home = scratch("changed");
    let profile_path = unpinned_profile(&lab);
    let other = sallyport_protocol::GatewayKeyPair::generate().public();
    let mut profile = ClientProfile::load(&profile_path).unwrap();
    profile
        .gateways
        .insert(sallyport_lab::LAB_GATEWAY.into(), other.to_base64());
    profile.save(&profile_path).unwrap();
    let service = service_on(&profile_path, &home).await;
    let real = lab.profile.gateway_key(sallyport_lab::LAB_GATEWAY).unwrap();

    let err = service.launch(echo(), |_| {}).await.err().expect("refused");
    assert_eq!(err.code(), Code::GatewayKeyChanged);
    let message = err.to_string();
    for part in [
        sallyport_lab::LAB_GATEWAY,
        &other.fingerprint(),
        &real.fingerprint(),
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(
        CommandError::from(&err).unpinned.is_none(),
        "nothing offered"
    );
    // The pin stays as it was.
    let kept = ClientProfile::load(&profile_path).unwrap();
    assert_eq!(
        kept.gateways.get(sallyport_lab::LAB_GATEWAY),
        Some(&other.to_base64())
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_profile_pins_its_gateways_and_the_app_launches_through_it() {
    let lab = lab().await;
    let home = scratch("import-app");
    let key = lab.profile.gateway_key(sallyport_lab::LAB_GATEWAY).unwrap();
    let distributed = lab.distributed_profile(None);
    // The app, with nothing configured: its own lab, until the import.
    let service = app_service(&home).await;
    assert!(service.app_state().await.lab);
    // A bad field is named, and nothing changes.
    let bad = distributed.replace(&key.to_base64(), "bm90LWEta2V5");
    let err = service
        .import_profile(&bad, std::path::Path::new("team.toml"))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidProfileImport);
    assert!(err.to_string().contains("team.toml: gateways.lab"), "{err}");
    assert!(!home.join("profile.toml").exists());

    let view = service
        .import_profile(&distributed, std::path::Path::new("team.toml"))
        .await
        .unwrap();
    assert_eq!(view.router_url, lab.router.url());
    assert_eq!(view.gateways[0].fingerprint, key.fingerprint());
    assert!(home.join("ca.pem").exists());
    // No token yet: the imported router is not used, the pins are listed all the same.
    assert_eq!(service.pinned_gateways().await, view.gateways);
    // The token into the keyring, as Settings does: the app now uses the imported router.
    service
        .save_settings(
            &lab.router.url(),
            sallyport_core::Profile::Fast,
            Some(lab.client_token.clone()),
        )
        .await
        .unwrap();
    let state = service.app_state().await;
    assert!(!state.lab, "{state:?}");
    assert_eq!(service.pinned_gateways().await, view.gateways, "pins kept");
    let session = service.launch(echo(), |_| {}).await.unwrap();
    let (sent, received) = echo_through(session.local_port()).await;
    assert_eq!(sent, received);
    service.close_all().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_lab_pins_change_in_the_app_and_its_own_profile_imports_into_it() {
    let home = scratch("lab-pins");
    let service = app_service(&home).await;
    let pins = service.pinned_gateways().await;
    assert_eq!(pins.len(), 1);
    let right = pins[0].clone();
    assert_eq!(right.gateway, sallyport_lab::LAB_GATEWAY);

    // Removed: the next launch asks, with the lab gateway's fingerprint.
    assert!(service
        .unpin_gateway(&right.gateway)
        .await
        .unwrap()
        .is_empty());
    let err = service.launch(echo(), |_| {}).await.err().expect("asks");
    assert_eq!(err.code(), Code::UnpinnedGateway);
    assert_eq!(CommandError::from(&err).unpinned.as_deref(), Some(&right));
    service
        .pin_gateway(&right.gateway, &right.key)
        .await
        .unwrap();
    let session = service.launch(echo(), |_| {}).await.unwrap();
    let (sent, received) = echo_through(session.local_port()).await;
    assert_eq!(sent, received);

    // A profile of the lab's own router pins into the lab: another key is refused at launch.
    let router = service.settings().await.router_url;
    let other = sallyport_protocol::GatewayKeyPair::generate().public();
    let text = format!(
        "router_url = \"{router}\"\n[gateways]\nlab = \"{}\"\n",
        other.to_base64()
    );
    let view = service
        .import_profile(&text, std::path::Path::new("team.toml"))
        .await
        .unwrap();
    assert_eq!(view.gateways[0].fingerprint, other.fingerprint());
    assert!(
        !home.join("profile.toml").exists(),
        "the lab's router is not a profile to keep"
    );
    assert!(service.app_state().await.lab);
    let err = service.launch(echo(), |_| {}).await.err().expect("refused");
    assert_eq!(err.code(), Code::GatewayKeyChanged);
    let message = err.to_string();
    assert!(
        message.contains(&other.fingerprint()) && message.contains(&right.fingerprint),
        "{message}"
    );
    service.close_all().await;
}

/// Some bytes to the echo target through the session's port, and what came back.
async fn echo_through(port: u16) -> (Vec<u8>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sent = b"pinned and sealed\n".to_vec();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(&sent).await.unwrap();
    let mut received = vec![0u8; sent.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_exact(&mut received),
    )
    .await
    .expect("echo in time")
    .unwrap();
    (sent, received)
}
