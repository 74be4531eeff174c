//! `sallyport login --sso` end to end: the device authorization grant against a real OpenID
//! provider (tests/oidc) and a lab whose router accepts its tokens. The user reads the URL
//! and code the command prints and confirms them in a browser (here the scripted one); then
//! `sallyport resources` works with the kept sign-in, whose tokens are in no file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sallyport_lab::{Lab, LabOptions};
use sallyport_router::sso::{SsoConfig, SsoGroup};
use sallyport_tests::oidc::{self, Provider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sso_prints_a_code_and_keeps_the_sign_in_in_the_keyring() {
    let provider = Provider::start(600);
    let lab = Lab::start(LabOptions {
        include_local_services: false,
        sso: Some(SsoConfig {
            issuer: provider.issuer.clone(),
            audience: oidc::CLIENT_ID.into(),
            groups_claim: "groups".into(),
            user_claim: "preferred_username".into(),
            leeway_secs: 30,
            jwks_refresh_secs: 30,
            fetch_timeout_secs: 5,
            groups: vec![SsoGroup {
                name: "dba".into(),
                resources: vec!["demo-*".into()],
                roles: Vec::new(),
            }],
        }),
        ..LabOptions::default()
    })
    .await
    .expect("lab starts");
    let home = sallyport_tests::scratch("cli-login-sso");
    let profile_path = home.join("profile.toml");
    let team = home.join("team.toml");
    std::fs::write(&team, lab.distributed_profile(Some(&provider.settings()))).unwrap();
    let sallyport = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
        cmd.env("SALLYPORT_HOME", &home)
            .env_remove("SALLYPORT_TOKEN")
            .arg("--profile-file")
            .arg(&profile_path)
            .args(args)
            .stdin(Stdio::null());
        cmd
    };
    let out = sallyport(&["profile", "import", team.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut login = sallyport(&["login", "--sso"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(login.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let complete = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("login --sso prints the URL and the code");
        printed.push(line.clone());
        if let Some(url) = line
            .strip_prefix("(or open ")
            .and_then(|l| l.strip_suffix(')'))
        {
            break url.to_owned();
        }
    };
    assert!(
        printed.iter().any(|l| l.starts_with("and enter the code ")),
        "{printed:?}"
    );
    oidc::sign_in_as(&complete, "alice").await;
    let status = tokio::task::spawn_blocking(move || login.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        status.status.success(),
        "{printed:?} {rest:?} {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        rest.iter().any(|l| l.starts_with("signed in with")),
        "{rest:?}"
    );

    // Later commands use the kept sign-in.
    let out = sallyport(&["resources"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("demo-echo"),
        "{out:?}"
    );

    // The refresh token is in the keyring, and in no file under the home directory.
    let refresh =
        sallyport_core::secrets::load_secret(&format!("{}#sso-refresh", lab.router.url()))
            .unwrap()
            .expect("kept in the keyring");
    for entry in std::fs::read_dir(&home).unwrap().flatten() {
        if entry.path().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            assert!(!text.contains(&refresh), "in {}", entry.path().display());
        }
    }
    lab.shutdown().await;
}
