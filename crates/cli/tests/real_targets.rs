//! End to end with real targets: `ssh` to a real sshd and `psql` to a real PostgreSQL, each
//! through `sallyport launch` against `sallyport lab`. The targets are installed (Debian
//! packages) and started on loopback by tests/targets/*.sh, which need root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sallyport-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A target started by its script; stopped on drop.
struct Target {
    script: &'static str,
    dir: PathBuf,
    port: u16,
}

impl Target {
    fn start(script: &'static str, dir: PathBuf) -> (Self, String) {
        let port = free_port();
        let out = Command::new("bash")
            .arg(repo().join("tests/targets").join(script))
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{script} start failed (it installs Debian packages and needs root)"
        );
        (
            Self { script, dir, port },
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("tests/targets").join(self.script))
            .arg("stop")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .status();
    }
}

/// `sallyport lab` in the background; killed on drop.
struct LabProcess(Child);

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_lab(home: &Path, resources: &[String]) -> LabProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
    cmd.env("SALLYPORT_HOME", home)
        .args(["lab", "--listen", "127.0.0.1:0", "--no-local-services"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for r in resources {
        cmd.arg("--resource").arg(r);
    }
    let lab = LabProcess(cmd.spawn().expect("sallyport lab starts"));
    let profile = home.join("profile.toml");
    let started = Instant::now();
    while !profile.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the lab wrote no profile"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab
}

fn launch(home: &Path, resource: &str, run: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .env("SALLYPORT_HOME", home)
        .env("PAM_CONNECT_TIMING", "1")
        .args(["launch", resource, "--run", run])
        .stderr(Stdio::inherit())
        .output()
        .expect("sallyport launch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn ssh_and_psql_through_the_tunnel() {
    let (sshd, _) = Target::start("sshd.sh", scratch("sshd"));
    let (postgres, _) = Target::start("postgres.sh", scratch("postgres"));
    let ssh_opts = std::fs::read_to_string(sshd.dir.join("ssh_config_opts"))
        .unwrap()
        .trim()
        .to_owned();

    let home = scratch("home");
    let _lab = start_lab(
        &home,
        &[
            format!("e2e-ssh=ssh@127.0.0.1:{}", sshd.port),
            format!("e2e-postgres=postgres@127.0.0.1:{}", postgres.port),
        ],
    );

    let (ok, stdout) = launch(
        &home,
        "e2e-ssh",
        &format!("ssh -p {{port}} {ssh_opts} root@{{host}} echo hello-from-sshd-$((6*7))"),
    );
    assert!(ok, "ssh through the tunnel failed: {stdout}");
    assert!(
        stdout.contains("hello-from-sshd-42"),
        "ssh output: {stdout:?}"
    );

    let (ok, stdout) = launch(
        &home,
        "e2e-postgres",
        "psql -h {host} -p {port} -U postgres -tA -c 'select 1'",
    );
    assert!(ok, "psql through the tunnel failed: {stdout}");
    assert_eq!(stdout.trim(), "1", "psql output: {stdout:?}");
}

/// The lab's token and a profile file without it, as a real user's would be.
fn bare_profile(home: &Path) -> (String, PathBuf) {
    let text = std::fs::read_to_string(home.join("profile.toml")).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .expect("the lab profile has a token")
        .trim_matches('"')
        .to_owned();
    let bare = home.join("bare.toml");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("token = "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, without).unwrap();
    (token, bare)
}

#[test]
fn login_uses_the_desktop_secret_service() {
    let home = scratch("secret-service");
    let _lab = start_lab(&home, &[]);
    let (token, bare) = bare_profile(&home);
    // A private session bus with an unlocked GNOME Keyring: the desktop keyring, headless.
    let data = home.join("xdg-data");
    let runtime = home.join("xdg-runtime");
    for dir in [&data, &runtime] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let sallyport = env!("CARGO_BIN_EXE_sallyport");
    let script = format!(
        "set -e
         echo -n e2e-keyring-password | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
         '{sallyport}' --profile-file '{bare}' login --token-env LAB_TOKEN
         SALLYPORT_TOKEN= '{sallyport}' --profile-file '{bare}' resources
         if SALLYPORT_KEYRING=keyutils '{sallyport}' --profile-file '{bare}' resources 2>/dev/null; then
           echo 'the token leaked into the kernel keyring' >&2; exit 1
         fi",
        bare = bare.display()
    );
    let out = Command::new("dbus-run-session")
        .args(["--", "bash", "-c", &script])
        .env("SALLYPORT_HOME", &home)
        .env("SALLYPORT_KEYRING", "secret-service")
        .env("XDG_DATA_HOME", &data)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("LAB_TOKEN", &token)
        .env_remove("SALLYPORT_TOKEN")
        .output()
        .expect("dbus-run-session runs (packages dbus and gnome-keyring)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "secret service round trip failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("token stored in the Secret Service"),
        "{stdout}"
    );
    assert!(stdout.contains("demo-echo"), "{stdout}");
}

#[test]
fn login_keeps_the_token_in_the_keyring_not_in_a_file() {
    let home = scratch("keyring");
    let _lab = start_lab(&home, &[]);
    let (token, bare) = bare_profile(&home);

    let sallyport = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
        cmd.env("SALLYPORT_HOME", &home)
            .env("SALLYPORT_KEYRING", "keyutils")
            .env_remove("SALLYPORT_TOKEN")
            .arg("--profile-file")
            .arg(&bare);
        cmd
    };
    let before = sallyport().arg("resources").output().unwrap();
    assert!(!before.status.success(), "no token yet");
    assert!(String::from_utf8_lossy(&before.stderr).contains("sallyport login"));

    let login = sallyport()
        .env("LAB_TOKEN", &token)
        .args(["login", "--token-env", "LAB_TOKEN"])
        .output()
        .unwrap();
    assert!(
        login.status.success(),
        "login failed (the kernel keyring needs `keyctl session -`): {}",
        String::from_utf8_lossy(&login.stderr)
    );
    let after = sallyport().arg("resources").output().unwrap();
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(String::from_utf8_lossy(&after.stdout).contains("demo-echo"));
    // The token is in no file under the home directory but the lab's own profile.
    for entry in std::fs::read_dir(&home).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "profile.toml" && path.is_file() {
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                !content.contains(&token),
                "{} holds the token",
                path.display()
            );
        }
    }
}

#[test]
fn connect_timing_lines_and_tunable_errors_have_the_documented_shape() {
    let home = scratch("timing");
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .env("SALLYPORT_HOME", &home)
        .env("PAM_CONNECT_TIMING", "1")
        .args([
            "lab",
            "--listen",
            "127.0.0.1:0",
            "--no-local-services",
            "--demo",
            "demo-echo",
        ])
        .output()
        .expect("sallyport lab --demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("echo through the tube: hello through the tube"),
        "{stdout}"
    );
    // `<label> | <phase padded to 44> | +<step> ms (step) | <total> ms (total)`
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sallyport[demo-echo#"))
        .collect();
    let tube = lines
        .iter()
        .find(|l| l.contains("| create_tube_ok "))
        .unwrap_or_else(|| panic!("no create_tube_ok line in {stderr}"));
    let fields: Vec<&str> = tube.split(" | ").collect();
    assert_eq!(fields.len(), 4, "{tube}");
    assert_eq!(fields[1].len(), 44, "phase padded to 44: {tube:?}");
    assert!(
        fields[2].starts_with('+') && fields[2].ends_with(" ms (step)"),
        "{tube}"
    );
    assert!(fields[3].ends_with(" ms (total)"), "{tube}");
    let total = lines.last().expect("timing lines");
    assert!(
        total.contains(" | ready | TOTAL ") && total.ends_with(" ms"),
        "summary line: {total}"
    );

    // A bad tunable is a clear error naming the variable, before anything is launched.
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .env("SALLYPORT_HOME", &home)
        .env("PAM_OFFER_RETRY_EXTRA_SEC", "-1")
        .args(["launch", "demo-echo", "--no-client"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid_tunable") && stderr.contains("PAM_OFFER_RETRY_EXTRA_SEC"),
        "{stderr}"
    );
}

/// `sallyport` with `args` against `profile`, standard input not a terminal: (success, stdout,
/// stderr).
fn sallyport(home: &Path, profile: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .env("SALLYPORT_HOME", home)
        .arg("--profile-file")
        .arg(profile)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sallyport runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unpinned_or_changed_gateway_key_is_refused_off_a_terminal_with_its_fingerprints() {
    let home = scratch("pinning");
    let _lab = start_lab(&home, &[]);
    let mut profile = sallyport_core::ClientProfile::load(&home.join("profile.toml")).unwrap();
    let real = profile.gateway_key("lab").unwrap();
    profile.gateways.clear();
    let unpinned = home.join("unpinned.toml");
    profile.save(&unpinned).unwrap();

    // No terminal to ask on: refused, with the code and the fingerprint to compare.
    let (ok, _, stderr) = sallyport(&home, &unpinned, &["launch", "demo-echo", "--no-client"]);
    assert!(!ok);
    assert!(stderr.contains("error [unpinned_gateway]"), "{stderr}");
    assert!(stderr.contains(&real.fingerprint()), "{stderr}");
    let kept = sallyport_core::ClientProfile::load(&unpinned).unwrap();
    assert!(kept.gateways.is_empty(), "nothing pinned unasked");

    // Pinned by hand, as an administrator's key: listed by its fingerprint.
    let (ok, stdout, stderr) = sallyport(
        &home,
        &unpinned,
        &["profile", "pin", "lab", &real.to_base64()],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&real.fingerprint()), "{stdout}");

    // Another key pinned: the launch is refused, naming the gateway and both fingerprints.
    let other = sallyport_protocol::GatewayKeyPair::generate().public();
    let (ok, _, stderr) = sallyport(
        &home,
        &unpinned,
        &["profile", "pin", "lab", &other.to_base64()],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = sallyport(&home, &unpinned, &["launch", "demo-echo", "--no-client"]);
    assert!(!ok);
    assert!(stderr.contains("error [gateway_key_changed]"), "{stderr}");
    for part in ["\"lab\"", &real.fingerprint(), &other.fingerprint()] {
        assert!(stderr.contains(part), "{part} in {stderr}");
    }
    let (ok, stdout, _) = sallyport(&home, &unpinned, &["profile", "unpin", "lab"]);
    assert!(ok && stdout.contains("(none)"), "{stdout}");
}
