//! Single sign-on end to end, against a real OpenID provider (oidc-provider from the npm
//! registry, tests/oidc) started on loopback: a user of a configured group signs in with the
//! device authorization grant and launches through the lab; the app's sign-in (authorization
//! code with PKCE through a loopback redirect) in the service, its tokens only in the keyring;
//! and the router refusing an expired token, a token of another issuer, a tampered signature
//! and a user outside the group, each with its own code.

use std::time::Duration;

use sallyport_core::sso::{SsoClient, Tokens};
use sallyport_core::{ClientProfile, CoreError, Face, StickyPorts};
use sallyport_lab::{Lab, LabOptions};
use sallyport_protocol::Code;
use sallyport_router::sso::{SsoConfig, SsoGroup};
use sallyport_service::{Connect, LaunchOptions, Options, Service};
use sallyport_tests::oidc::{self, Provider};
use sallyport_tests::{echo_through, request, scratch};

/// The router's `[sso]`: group `dba` may launch the demo resources; no leeway, so the expiry
/// test need not wait for it.
fn sso_config(provider: &Provider) -> SsoConfig {
    SsoConfig {
        issuer: provider.issuer.clone(),
        audience: oidc::CLIENT_ID.into(),
        groups_claim: "groups".into(),
        user_claim: "preferred_username".into(),
        leeway_secs: 0,
        jwks_refresh_secs: 30,
        fetch_timeout_secs: 5,
        groups: vec![
            SsoGroup {
                name: "dba".into(),
                resources: vec!["demo-*".into()],
                roles: Vec::new(),
            },
            // A help desk: reads every user's launches, launches nothing itself.
            SsoGroup {
                name: "helpdesk".into(),
                resources: Vec::new(),
                roles: vec!["support".into()],
            },
        ],
    }
}

async fn sso_lab(provider: &Provider) -> Lab {
    Lab::start(LabOptions {
        include_local_services: false,
        sso: Some(sso_config(provider)),
        ..LabOptions::default()
    })
    .await
    .expect("lab starts")
}

/// A sign-in through the browser flow, the browser being the scripted agent as `user`.
async fn browser_tokens(provider: &Provider, user: &'static str) -> Tokens {
    SsoClient::new(&provider.settings())
        .unwrap()
        .browser_login(|url| {
            let url = url.to_owned();
            tokio::spawn(async move { oidc::sign_in_as(&url, user).await });
            Ok(())
        })
        .await
        .unwrap()
}

/// The router's answer to `token` on `GET /v1/resources`: its status and code.
async fn refusal(lab: &Lab, token: &str) -> (u16, Code) {
    let api = sallyport_core::router_api::RouterApi::for_profile(&lab.profile, token).unwrap();
    match api.resources().await {
        Err(CoreError::Router { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_in_the_group_signs_in_with_the_device_grant_and_launches() {
    let provider = Provider::start(600);
    let lab = sso_lab(&provider).await;
    let client = SsoClient::new(&provider.settings()).unwrap();
    let prompted = std::sync::Arc::new(std::sync::Mutex::new(None));
    let tokens = {
        let prompted = prompted.clone();
        client
            .device_login(move |prompt| {
                *prompted.lock().unwrap() = Some(prompt.user_code.clone());
                // The user opens the verification URL and confirms the code.
                let url = prompt
                    .verification_uri_complete
                    .clone()
                    .expect("the provider gives the complete URL");
                tokio::spawn(async move { oidc::sign_in_as(&url, "alice").await });
            })
            .await
            .unwrap()
    };
    assert!(prompted.lock().unwrap().is_some(), "a code was shown");
    assert!(
        tokens.refresh_token.is_some(),
        "offline_access gives a refresh token"
    );

    // The ID token is the router token: alice launches demo-echo through the lab.
    let dir = scratch("sso-device");
    let launcher = sallyport_core::Launcher::new(
        ClientProfile {
            token: None,
            ..lab.profile.clone()
        },
        &tokens.id_token,
        StickyPorts::new(dir.join("ports.json")),
    )
    .unwrap()
    .with_state_dir(dir);
    let names: Vec<String> = launcher
        .resources()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(names.contains(&"demo-echo".to_owned()), "{names:?}");
    let session = launcher
        .launch(request("demo-echo", sallyport_core::Profile::Fast))
        .await
        .unwrap();
    let (sent, received) = echo_through(session.local_port(), 256 * 1024, 7).await;
    assert_eq!(sent, received);
    session.close().await;

    // The audit trail names her by her user claim.
    let records = sallyport_tests::audit_until(&lab.audit_log, |r| {
        r.iter().any(|x| x.event == "tube_connected")
    })
    .await;
    assert!(
        records
            .iter()
            .any(|r| r.event == "sign_in" && r.user.as_deref() == Some("alice")),
        "{records:?}"
    );
    assert!(records
        .iter()
        .any(|r| r.event == "tube_connected" && r.user.as_deref() == Some("alice")));

    // A refresh gives a new ID token the router takes as well.
    let fresh = client
        .refresh(tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    let api =
        sallyport_core::router_api::RouterApi::for_profile(&lab.profile, &fresh.id_token).unwrap();
    assert!(!api.resources().await.unwrap().is_empty());
    let me = api.whoami().await.unwrap();
    assert_eq!((me.client.as_str(), me.roles.len()), ("alice", 0));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_signs_in_through_the_browser_and_keeps_its_tokens_in_the_keyring_only() {
    // carol's ID tokens live 4 s: the app must refresh them to keep launching.
    let provider = Provider::start(4);
    let lab = sso_lab(&provider).await;
    let home = scratch("sso-app");
    // The administrator's profile, imported: the lab's router, its CA, the provider, the pin.
    let distributed = lab.distributed_profile(Some(&provider.settings()));
    // The app as it starts with nothing configured.
    let app = Options::new(home.clone(), Face::Desktop, Connect::RouterOrLab);
    let service = Service::start(app).await.unwrap();
    service
        .import_profile(&distributed, std::path::Path::new("team.toml"))
        .await
        .unwrap();
    assert!(
        service.app_state().await.lab,
        "not signed in yet: its own lab"
    );

    let opened = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let opened = opened.clone();
        service
            .sso_sign_in_with(move |url| {
                *opened.lock().unwrap() = url.to_owned();
                let url = url.to_owned();
                tokio::spawn(async move { oidc::sign_in_as(&url, "carol").await });
                Ok(())
            })
            .await
            .unwrap();
    }
    let settings = service.settings().await;
    assert!(settings.signed_in, "{settings:?}");
    assert_eq!(
        settings.sso_issuer.as_deref(),
        Some(provider.issuer.as_str())
    );
    let url = opened.lock().unwrap().clone();
    assert!(
        url.contains("code_challenge_method=S256")
            && url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    let state = service.app_state().await;
    assert!(
        !state.lab && state.router_url == lab.router.url(),
        "{state:?}"
    );
    let session = service
        .launch(LaunchOptions::new(sallyport_lab::DEMO_ECHO), |_| {})
        .await
        .unwrap();
    let (sent, received) = echo_through(session.local_port(), 4096, 3).await;
    assert_eq!(sent, received);
    service.close_all().await;

    // The refresh token is in the keyring, and in no file of the app's.
    let refresh =
        sallyport_core::secrets::load_secret(&format!("{}#sso-refresh", lab.router.url()))
            .unwrap()
            .expect("the refresh token is kept in the keyring");
    for entry in walk(&home) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&refresh),
            "the refresh token is in {}",
            entry.display()
        );
    }
    lab.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_foreign_tampered_and_outsider_tokens_are_refused_with_their_codes() {
    let provider = Provider::start(2);
    let other = Provider::start(600);
    let lab = sso_lab(&provider).await;

    let alice = browser_tokens(&provider, "alice").await;
    let api =
        sallyport_core::router_api::RouterApi::for_profile(&lab.profile, &alice.id_token).unwrap();
    assert!(
        !api.resources().await.unwrap().is_empty(),
        "a valid token is taken"
    );

    // The signature altered in its middle (an edge character may carry unused bits).
    let (head, signature) = alice.id_token.rsplit_once('.').unwrap();
    let mut sig: Vec<u8> = signature.bytes().collect();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{head}.{}", String::from_utf8(sig).unwrap());
    assert_eq!(refusal(&lab, &tampered).await, (401, Code::BadSignature));

    // A router that expects another audience (client id) refuses the same valid token.
    let elsewhere = Lab::start(LabOptions {
        include_local_services: false,
        sso: Some(SsoConfig {
            audience: "another-application".into(),
            ..sso_config(&provider)
        }),
        ..LabOptions::default()
    })
    .await
    .expect("lab starts");
    assert_eq!(
        refusal(&elsewhere, &alice.id_token).await,
        (401, Code::WrongAudience)
    );
    elsewhere.shutdown().await;

    // The same user, signed in at another provider.
    let foreign = browser_tokens(&other, "alice").await;
    assert_eq!(
        refusal(&lab, &foreign.id_token).await,
        (401, Code::WrongIssuer)
    );

    // A user of no configured group.
    let bob = browser_tokens(&provider, "bob").await;
    assert_eq!(refusal(&lab, &bob.id_token).await, (403, Code::NotInGroup));

    // A user whose only group gives a role: signed in, with the support role, and nothing to
    // launch.
    let dana = browser_tokens(&provider, "dana").await;
    let api =
        sallyport_core::router_api::RouterApi::for_profile(&lab.profile, &dana.id_token).unwrap();
    let me = api.whoami().await.unwrap();
    assert_eq!(
        (me.client.as_str(), me.roles.clone()),
        ("dana", vec!["support".to_owned()])
    );
    assert!(api.resources().await.unwrap().is_empty());

    // An ID token past its expiry (carol's live 2 s).
    let carol = browser_tokens(&provider, "carol").await;
    let wait = carol.remaining() + Duration::from_millis(1500);
    assert!(wait < Duration::from_secs(5), "{wait:?}");
    tokio::time::sleep(wait).await;
    assert_eq!(
        refusal(&lab, &carol.id_token).await,
        (401, Code::TokenExpired)
    );

    // Each refusal is in the audit trail with its code.
    let records = sallyport_tests::audit_until(&lab.audit_log, |r| {
        r.iter().filter(|x| x.event == "sign_in_refused").count() >= 4
    })
    .await;
    let codes: Vec<&str> = records
        .iter()
        .filter(|r| r.event == "sign_in_refused")
        .filter_map(|r| r.code.as_deref())
        .collect();
    for code in [
        "bad_signature",
        "wrong_issuer",
        "not_in_group",
        "token_expired",
    ] {
        assert!(codes.contains(&code), "{code} in {codes:?}");
    }
    // A static token still works beside SSO (gateways and automation).
    let api = sallyport_core::router_api::RouterApi::for_profile(&lab.profile, &lab.client_token)
        .unwrap();
    assert!(!api.resources().await.unwrap().is_empty());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_fetches_the_keys_again_when_the_provider_rotates_them() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let before = Provider::start_with(&[("PORT", &port)]);
    let lab = Lab::start(LabOptions {
        include_local_services: false,
        sso: Some(SsoConfig {
            jwks_refresh_secs: 1,
            ..sso_config(&before)
        }),
        ..LabOptions::default()
    })
    .await
    .expect("lab starts");
    let old = browser_tokens(&before, "alice").await;
    let api =
        sallyport_core::router_api::RouterApi::for_profile(&lab.profile, &old.id_token).unwrap();
    assert!(!api.resources().await.unwrap().is_empty());
    drop(before);

    // The same issuer with new keys, now signing with ES256: an unknown key id makes the
    // router read the key set again (once the rate limit allows).
    let after = Provider::start_with(&[("PORT", &port), ("OIDC_ALG", "ES256")]);
    let new = browser_tokens(&after, "alice").await;
    let header = sallyport_tests::jwt_header(&new.id_token);
    assert_eq!(header["alg"], "ES256", "{header}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let api =
        sallyport_core::router_api::RouterApi::for_profile(&lab.profile, &new.id_token).unwrap();
    assert!(
        !api.resources().await.unwrap().is_empty(),
        "the new key is fetched"
    );
    // The old key is gone from the provider's set, so is its token's validity.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        refusal(&lab, &old.id_token).await,
        (401, Code::BadSignature)
    );
    lab.shutdown().await;
}
