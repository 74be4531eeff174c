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

fn echo() -> LaunchOptions {
    LaunchOptions::new(sallyport_lab::DEMO_ECHO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_the_app_launches_through_its_own_lab() {
    let home = scratch("app");
    let service = Arc::new(
        Service::start(Options::new(
            home.clone(),
            Face::Desktop,
            Connect::RouterOrLab,
        ))
        .await
        .unwrap(),
    );
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
