//! Launch reports at a real router on loopback: who may send and read them, the refusals of
//! bad bodies and queries, the retention and the cap, the statistics, a router with reports
//! off, and a file store that outlives the router.

mod support;

use sallyport_protocol::report::{LaunchList, LaunchStats, WhoAmI};
use sallyport_protocol::GatewayKeyPair;
use sallyport_router::RouterHandle;
use serde_json::{json, Value};

const SUPPORT_TOKEN: &str = "support-desk-token";
const BOB_TOKEN: &str = "bob-client-token";

/// Clients `alice` (everything), `bob` (only `db`) and `desk` (support); gateways `dc1`, `dc2`.
fn config(reports: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
plain_http = true
{reports}
[[gateways]]
id = "dc1"
token = "{}"
public_key = "{}"

[[gateways]]
id = "dc2"
token = "dc2-gateway-token"
public_key = "{}"

[[clients]]
name = "alice"
token = "{}"
resources = ["*"]

[[clients]]
name = "bob"
token = "{BOB_TOKEN}"
resources = ["db"]

[[clients]]
name = "desk"
token = "{SUPPORT_TOKEN}"
resources = []
roles = ["support"]
"#,
        support::GATEWAY_TOKEN,
        support::gateway_key().public(),
        GatewayKeyPair::generate().public(),
        support::CLIENT_TOKEN,
    )
}

async fn router(reports: &str) -> RouterHandle {
    support::router_from(&config(reports)).await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn report(id: &str, resource: &str, gateway: &str) -> Value {
    json!({
        "v": 1,
        "launch_id": id,
        "resource": resource,
        "gateway": gateway,
        "profile": "fast",
        "outcome": "ok",
        "started_unix_ms": now_ms(),
        "total_ms": 60.0,
        "checkpoints": [
            {"phase": "resource_resolved", "step_ms": 10.0, "total_ms": 10.0},
            {"phase": "gateway_offer_http_attempt_1", "step_ms": 20.0, "total_ms": 30.0, "attempt": 1},
            {"phase": "ready", "step_ms": 30.0, "total_ms": 60.0}
        ],
        "client_version": "0.1.0"
    })
}

async fn post(url: &str, token: &str, body: &Value) -> (u16, Value) {
    post_text(url, token, body.to_string()).await
}

async fn post_text(url: &str, token: &str, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/launches"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str, token: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn list(url: &str, query: &str) -> LaunchList {
    let (status, body) = get(url, SUPPORT_TOKEN, &format!("/v1/launches{query}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

fn ids(list: &LaunchList) -> Vec<&str> {
    list.launches.iter().map(|l| l.launch_id.as_str()).collect()
}

const ON: &str = "[reports]\nenabled = true\n";

/// The launch ids the support desk lists, sorted.
async fn kept(url: &str) -> Vec<String> {
    let mut kept: Vec<String> = ids(&list(url, "").await)
        .into_iter()
        .map(str::to_owned)
        .collect();
    kept.sort();
    kept
}

#[tokio::test]
async fn a_report_is_kept_and_read_back_only_by_the_support_role() {
    let router = router(ON).await;
    let url = router.url();
    let (status, body) = post(
        &url,
        support::CLIENT_TOKEN,
        &report("alice-0001", "db", "dc1"),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // The user is the token's client name, never something the body says.
    let launches = list(&url, "").await;
    assert_eq!(ids(&launches), ["alice-0001"]);
    let l = &launches.launches[0];
    assert_eq!(
        (l.user.as_str(), l.gateway.as_deref(), l.attempts),
        ("alice", Some("dc1"), 1)
    );
    assert_eq!(l.checkpoints.len(), 3);

    for path in ["/v1/launches", "/v1/launches/stats"] {
        let (status, body) = get(&url, support::CLIENT_TOKEN, path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{path}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("support"),
            "{body}"
        );
        let (status, body) = get(&url, "no-such-token-at-all", path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
    }

    let (_, me) = get(&url, SUPPORT_TOKEN, "/v1/me").await;
    let me: WhoAmI = serde_json::from_value(me).unwrap();
    assert_eq!(
        (me.client.as_str(), me.roles.as_slice(), me.reports),
        ("desk", &["support".to_owned()][..], true)
    );
    let (_, me) = get(&url, support::CLIENT_TOKEN, "/v1/me").await;
    assert_eq!(me["roles"], json!([]));
    router.shutdown().await;
}

#[tokio::test]
async fn bad_reports_are_refused_with_their_code() {
    let router = router(ON).await;
    let url = router.url();
    let token = support::CLIENT_TOKEN;
    let refused = |status: u16, code: &str, body: &Value| {
        assert_eq!(body["code"].as_str(), Some(code), "{body}");
        assert_eq!(
            status,
            sallyport_protocol::Code::from_wire(code).http_status(),
            "{body}"
        );
    };

    let (status, body) = post_text(&url, token, "{not json".into()).await;
    refused(status, "malformed", &body);
    let mut extra = report("alice-0002", "db", "dc1");
    extra["token"] = json!("secret");
    let (status, body) = post(&url, token, &extra).await;
    refused(status, "malformed", &body);
    assert!(
        body["message"].as_str().unwrap().contains("token"),
        "{body}"
    );
    let mut phase = report("alice-0003", "db", "dc1");
    phase["checkpoints"][1]["phase"] = json!("Not A Phase");
    let (status, body) = post(&url, token, &phase).await;
    refused(status, "malformed", &body);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("checkpoints[1].phase"),
        "{body}"
    );
    let mut version = report("alice-0004", "db", "dc1");
    version["v"] = json!(2);
    let (status, body) = post(&url, token, &version).await;
    refused(status, "unsupported_version", &body);
    let mut failed = report("alice-0005", "db", "dc1");
    failed["outcome"] = json!("failed");
    let (status, body) = post(&url, token, &failed).await;
    refused(status, "malformed", &body);

    // Larger than max_report_bytes: refused before the body is read.
    let mut big = report("alice-0006", "db", "dc1");
    big["client_version"] = json!("x".repeat(40 * 1024));
    let (status, body) = post(&url, token, &big).await;
    refused(status, "too_large", &body);

    // Only resources the client may launch, only configured gateways.
    let (status, body) = post(&url, BOB_TOKEN, &report("bob-00001", "web", "dc1")).await;
    refused(status, "forbidden", &body);
    let (status, body) = post(&url, token, &report("alice-0007", "db", "dc9")).await;
    refused(status, "unknown_gateway", &body);
    let (status, body) = post_text(&url, "", report("alice-0008", "db", "dc1").to_string()).await;
    refused(status, "unauthorized", &body);

    assert!(
        list(&url, "").await.launches.is_empty(),
        "nothing refused was kept"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn filters_narrow_the_list_and_bad_queries_are_named() {
    let router = router(ON).await;
    let url = router.url();
    post(
        &url,
        support::CLIENT_TOKEN,
        &report("alice-0001", "db", "dc1"),
    )
    .await;
    post(
        &url,
        support::CLIENT_TOKEN,
        &report("alice-0002", "web", "dc2"),
    )
    .await;
    post(&url, BOB_TOKEN, &report("bob-00001", "db", "dc1")).await;
    let mut failed = report("bob-00002", "db", "dc2");
    failed["outcome"] = json!("failed");
    failed["code"] = json!("controller_down");
    post(&url, BOB_TOKEN, &failed).await;

    assert_eq!(list(&url, "").await.launches.len(), 4);
    let mut bob = ids(&list(&url, "?user=bob").await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    bob.sort();
    assert_eq!(bob, ["bob-00001", "bob-00002"]);
    assert_eq!(ids(&list(&url, "?resource=web").await), ["alice-0002"]);
    assert_eq!(
        ids(&list(&url, "?gateway=dc2&user=bob").await),
        ["bob-00002"]
    );
    let failures = list(&url, "?outcome=failed").await;
    assert_eq!(ids(&failures), ["bob-00002"]);
    assert_eq!(
        failures.launches[0].code,
        Some(sallyport_protocol::Code::ControllerDown)
    );
    assert_eq!(
        list(&url, "?user=&resource=&gateway=&since=&outcome=")
            .await
            .launches
            .len(),
        4
    );
    assert!(list(&url, &format!("?since={}", now_ms() + 60_000))
        .await
        .launches
        .is_empty());
    assert_eq!(list(&url, "?limit=1").await.launches.len(), 1);

    for (query, names) in [
        ("?outcome=maybe", "outcome"),
        ("?since=yesterday", "since"),
        ("?limit=0", "limit"),
        ("?colour=blue", "colour"),
        ("?user=a&user=b", "user"),
        ("?gateway=../x", "gateway"),
    ] {
        let (status, body) = get(&url, SUPPORT_TOKEN, &format!("/v1/launches{query}")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("malformed")),
            "{query}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(names),
            "{query}: {body}"
        );
    }
    router.shutdown().await;
}

#[tokio::test]
async fn statistics_show_the_slow_gateway_beside_the_fleet() {
    let router = router(ON).await;
    let url = router.url();
    for i in 0..4 {
        post(
            &url,
            support::CLIENT_TOKEN,
            &report(&format!("fast-000{i}"), "db", "dc1"),
        )
        .await;
    }
    let mut slow = report("slow-0001", "db", "dc2");
    slow["checkpoints"][1]["step_ms"] = json!(900.0);
    slow["checkpoints"][1]["total_ms"] = json!(910.0);
    slow["checkpoints"][2]["total_ms"] = json!(940.0);
    slow["total_ms"] = json!(940.0);
    post(&url, support::CLIENT_TOKEN, &slow).await;

    let (status, body) = get(&url, SUPPORT_TOKEN, "/v1/launches/stats?group_by=gateway").await;
    assert_eq!(status, 200, "{body}");
    let stats: LaunchStats = serde_json::from_value(body).unwrap();
    assert_eq!(stats.launches, 5);
    let offer = |group: &str| {
        stats
            .phases
            .iter()
            .find(|p| {
                p.group.as_deref() == Some(group) && p.phase == "gateway_offer_http_attempt_1"
            })
            .unwrap()
            .clone()
    };
    assert_eq!((offer("dc1").count, offer("dc1").p50), (4, 20.0));
    assert_eq!((offer("dc2").p50, offer("dc2").fleet_p50), (900.0, 20.0));
    assert_eq!(stats.totals[0].count, 5);
    let phases: Vec<_> = stats
        .phases
        .iter()
        .filter(|p| p.group.as_deref() == Some("dc1"))
        .map(|p| p.phase.as_str())
        .collect();
    assert_eq!(
        phases,
        ["resource_resolved", "gateway_offer_http_attempt_1", "ready"]
    );

    let (_, by_phase) = get(
        &url,
        SUPPORT_TOKEN,
        "/v1/launches/stats?group_by=phase&resource=db",
    )
    .await;
    assert_eq!(
        by_phase["phases"].as_array().unwrap().len(),
        3,
        "{by_phase}"
    );
    let (status, body) = get(&url, SUPPORT_TOKEN, "/v1/launches/stats?group_by=colour").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed")),
        "{body}"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn retention_and_the_cap_drop_the_oldest() {
    let router = router("[reports]\nenabled = true\nretention_hours = 1\nmax_reports = 3\n").await;
    let url = router.url();
    let mut old = report("old-00001", "db", "dc1");
    old["started_unix_ms"] = json!(now_ms() - 2 * 3_600_000);
    let (status, _) = post(&url, support::CLIENT_TOKEN, &old).await;
    assert_eq!(status, 204);
    assert!(
        list(&url, "").await.launches.is_empty(),
        "past the retention: not kept"
    );

    for i in 1..=5 {
        post(
            &url,
            support::CLIENT_TOKEN,
            &report(&format!("cap-0000{i}"), "db", "dc1"),
        )
        .await;
    }
    assert_eq!(
        kept(&url).await,
        ["cap-00003", "cap-00004", "cap-00005"],
        "the cap keeps the newest"
    );
    router.shutdown().await;
}

#[tokio::test]
async fn a_router_with_reports_off_says_so() {
    let router = router("").await;
    let url = router.url();
    let (status, body) = post(
        &url,
        support::CLIENT_TOKEN,
        &report("alice-0001", "db", "dc1"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("reports_disabled")),
        "{body}"
    );
    let (status, body) = get(&url, SUPPORT_TOKEN, "/v1/launches").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("reports_disabled")),
        "{body}"
    );
    let (_, me) = get(&url, SUPPORT_TOKEN, "/v1/me").await;
    assert_eq!(me["reports"], json!(false));
    router.shutdown().await;
}

#[tokio::test]
async fn a_file_store_outlives_the_router_and_a_bad_path_is_named() {
    let dir = std::env::temp_dir().join(format!("sallyport-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reports.sqlite");
    let reports = format!(
        "[reports]\nenabled = true\npath = {:?}\n",
        path.display().to_string()
    );
    let router = router(&reports).await;
    post(
        &router.url(),
        support::CLIENT_TOKEN,
        &report("alice-0001", "db", "dc1"),
    )
    .await;
    router.shutdown().await;
    let again = self::router(&reports).await;
    assert_eq!(ids(&list(&again.url(), "").await), ["alice-0001"]);
    again.shutdown().await;

    let bad = format!(
        "[reports]\nenabled = true\npath = {:?}\n",
        dir.join("no/such/dir/r.sqlite").display().to_string()
    );
    let config = sallyport_router::RouterConfig::parse(&config(&bad)).unwrap();
    let err = sallyport_router::spawn(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("reports.path"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_refused_token_on_the_report_endpoints_is_in_the_audit_trail() {
    let dir = std::env::temp_dir().join(format!("sallyport-reports-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let router = router(&format!(
        "audit_log = {:?}\n[reports]\nenabled = true\n",
        audit.display().to_string()
    ))
    .await;
    let url = router.url();
    let (status, _) = post(&url, "stolen-token", &report("alice-0001", "db", "dc1")).await;
    assert_eq!(status, 401);
    for path in ["/v1/launches", "/v1/launches/stats", "/v1/me"] {
        let (status, body) = get(&url, "stolen-token", path).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    }
    router.shutdown().await;
    let refused: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["event"] == "sign_in_refused")
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    for record in &refused {
        assert_eq!(record["code"], "unauthorized");
        assert_eq!(record["source"], "127.0.0.1");
    }
}

#[tokio::test]
async fn one_user_s_reports_cannot_push_out_another_s() {
    let router =
        router("[reports]\nenabled = true\nmax_reports = 4\nmax_reports_per_user = 2\n").await;
    let url = router.url();
    let (status, _) = post(&url, BOB_TOKEN, &report("bob-00001", "db", "dc1")).await;
    assert_eq!(status, 204);
    for i in 1..=6 {
        let id = format!("alice-0000{i}");
        let (status, _) = post(&url, support::CLIENT_TOKEN, &report(&id, "db", "dc1")).await;
        assert_eq!(status, 204);
    }
    assert_eq!(
        kept(&url).await,
        ["alice-00005", "alice-00006", "bob-00001"],
        "alice's cap keeps her newest two; bob's report stays"
    );
    router.shutdown().await;

    let bad = "[reports]\nenabled = true\nmax_reports_per_user = 0\n";
    let err = sallyport_router::RouterConfig::parse(&config(bad)).unwrap_err();
    assert!(
        err.to_string().contains("reports.max_reports_per_user"),
        "{err}"
    );
}
