//! The support desk from the command line, against `sallyport lab` as a process (router and
//! gateway over TLS with the lab's CA): launches are reported to the router, `sallyport support
//! launches|stats` reads them back, a profile with `launch_reports = false` sends none, and
//! `sallyport timeline` draws an exported bundle and refuses a damaged or foreign one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sallyport-desk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sallyport lab` in the background; killed on drop.
struct LabProcess(Child);

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_lab(home: &Path) -> LabProcess {
    let lab = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .env("SALLYPORT_HOME", home)
        .args(["lab", "--listen", "127.0.0.1:0", "--no-local-services"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sallyport lab starts");
    let lab = LabProcess(lab);
    let started = Instant::now();
    while !home.join("profile.toml").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the lab wrote no profile"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab
}

fn sallyport(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .env("SALLYPORT_HOME", home)
        .args(args)
        .output()
        .expect("sallyport runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Launch `resource` with a client that exits at once; the launch's id and whether it worked.
fn launch(home: &Path, resource: &str) -> (bool, String) {
    let out = sallyport(home, &["launch", resource, "--run", "true", "--json"]);
    let id = serde_json::from_str::<Value>(&stdout(&out))
        .ok()
        .and_then(|v| v["session"]["launch_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (out.status.success(), id)
}

fn launches(home: &Path, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["support", "launches", "--json"];
    args.extend_from_slice(filter);
    let out = sallyport(home, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    list["launches"].as_array().unwrap().clone()
}

#[test]
fn launches_reach_the_support_desk_over_tls() {
    let home = scratch("reports");
    let _lab = start_lab(&home);
    let profile = std::fs::read_to_string(home.join("profile.toml")).unwrap();
    assert!(
        profile.contains("https://"),
        "the lab serves TLS: {profile}"
    );

    let (ok, first) = launch(&home, "demo-echo");
    assert!(ok && !first.is_empty(), "launch through the lab failed");
    let (ok, _) = launch(&home, "no-such-resource");
    assert!(!ok, "an unknown resource cannot launch");

    let all = launches(&home, &[]);
    assert_eq!(all.len(), 2, "{all:?}");
    let echo = all
        .iter()
        .find(|l| l["launch_id"] == first.as_str())
        .unwrap();
    assert_eq!(echo["user"], "lab-user");
    assert_eq!(echo["resource"], "demo-echo");
    assert_eq!(echo["gateway"], "lab");
    assert_eq!(echo["outcome"], "ok");
    let phases: Vec<&str> = echo["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phase"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"answer_received") && phases.last() == Some(&"ready"),
        "{phases:?}"
    );
    // Names and times only: the report carries no address, port or token.
    let text = echo.to_string();
    let token = profile
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        !text.contains("127.0.0.1") && !text.contains(token) && !text.contains("detail"),
        "{text}"
    );
    let failed = launches(&home, &["--outcome", "failed"]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["code"], "unknown_resource");
    assert_eq!(launches(&home, &["--resource", "demo-web"]).len(), 0);

    let table = sallyport(&home, &["support", "launches"]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(stdout(&table).contains(&first), "{}", stdout(&table));
    let drawn = sallyport(&home, &["support", "launches", "--launch", &first]);
    assert!(drawn.status.success(), "{}", stderr(&drawn));
    assert!(
        stdout(&drawn).contains("answer_received"),
        "{}",
        stdout(&drawn)
    );

    let stats = sallyport(
        &home,
        &["support", "stats", "--group-by", "gateway", "--json"],
    );
    assert!(stats.status.success(), "{}", stderr(&stats));
    let stats: Value = serde_json::from_str(&stdout(&stats)).unwrap();
    assert_eq!(stats["group_by"], "gateway");
    assert_eq!(stats["launches"], 2);
    assert!(
        stats["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["group"] == "lab" && p["phase"] == "answer_received"),
        "{stats}"
    );
    let stats = sallyport(&home, &["support", "stats", "--group-by", "phase"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    assert!(stdout(&stats).contains("ready"), "{}", stdout(&stats));

    // The user's profile turns reports off: the next launch stays on this machine.
    std::fs::write(
        home.join("profile.toml"),
        format!("launch_reports = false\n{profile}"),
    )
    .unwrap();
    let (ok, quiet) = launch(&home, "demo-echo");
    assert!(ok, "launch with reports off failed");
    let after = launches(&home, &[]);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|l| l["launch_id"] != quiet.as_str()));
}

#[test]
fn a_bundle_is_drawn_and_a_damaged_or_foreign_one_refused() {
    let home = scratch("timeline");
    let _lab = start_lab(&home);
    let (ok, id) = launch(&home, "demo-echo");
    assert!(ok, "launch through the lab failed");
    let export = sallyport(&home, &["export", &id]);
    assert!(export.status.success(), "{}", stderr(&export));
    let bundle = PathBuf::from(stdout(&export).trim());
    let text = std::fs::read_to_string(&bundle).unwrap();

    let drawn = sallyport(
        &home,
        &["timeline", bundle.to_str().unwrap(), "--width", "80"],
    );
    assert!(drawn.status.success(), "{}", stderr(&drawn));
    let out = stdout(&drawn);
    assert!(
        out.contains(&id) && out.contains("digest verified"),
        "{out}"
    );
    for phase in ["create_tube_ok", "answer_received", "ready"] {
        assert!(out.contains(phase), "{phase} missing: {out}");
    }
    let bars: Vec<&str> = out.lines().filter(|l| l.contains('█')).collect();
    assert!(bars.len() >= 10, "{out}");
    assert!(
        bars.iter().all(|l| l.chars().count() <= 80),
        "drawn wider than 80 columns:\n{out}"
    );

    let refused = |name: &str, content: &str, code: &str| {
        let path = home.join(name);
        std::fs::write(&path, content).unwrap();
        let out = sallyport(&home, &["timeline", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was drawn: {}", stdout(&out));
        assert!(stdout(&out).is_empty(), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("error [{code}]")) && err.contains("hint:"),
            "{name}: {err}"
        );
    };
    refused("cut.json", &text[..text.len() / 2], "bundle_damaged");
    refused(
        "changed.json",
        &text.replacen("\"ready\"", "\"reedy\"", 1),
        "bundle_damaged",
    );
    refused(
        "newer.json",
        &text.replace("diagnostic-bundle/v2", "diagnostic-bundle/v9"),
        "bundle_unsupported",
    );
    refused("other.json", "{\"hello\": 1}", "bundle_unsupported");
}
