//! The audit trail end to end: every launch of a run appears in the router's audit log with
//! its outcome (refused with its code, or connected and then closed with its reason, bytes and
//! duration), attributed to its user, without a token or a target address; the gateway's own
//! log has the connections to targets.

use std::collections::BTreeMap;

use sallyport_core::Profile;
use sallyport_router::audit::{events, AuditRecord};
use sallyport_tests::{audit_until, echo_through, launcher, request};

/// The records of each conversation, in order.
fn by_conversation(records: &[AuditRecord]) -> BTreeMap<String, Vec<AuditRecord>> {
    let mut conversations: BTreeMap<String, Vec<AuditRecord>> = BTreeMap::new();
    for record in records {
        if let Some(id) = &record.conversation_id {
            conversations
                .entry(id.clone())
                .or_default()
                .push(record.clone());
        }
    }
    conversations
}

fn has(records: &[AuditRecord], event: &str) -> bool {
    records.iter().any(|r| r.event == event)
}

/// Every launch requested has its outcome: refused, or closed (after connecting).
fn every_launch_has_an_outcome(records: &[AuditRecord]) -> bool {
    by_conversation(records).values().all(|conversation| {
        !has(conversation, events::LAUNCH_REQUESTED)
            || has(conversation, events::LAUNCH_REFUSED)
            || has(conversation, events::SESSION_CLOSED)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_launch_of_a_run_is_audited_with_its_outcome() {
    // A closed port, for a target that refuses.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing = closed.local_addr().unwrap().to_string();
    drop(closed);
    let lab = sallyport_lab::Lab::start(sallyport_lab::LabOptions {
        include_local_services: false,
        extra_resources: vec![("refusing".into(), "tcp".into(), refusing.clone())],
        max_sessions: Some(2),
        ..sallyport_lab::LabOptions::default()
    })
    .await
    .unwrap();
    let launcher = launcher(&lab, "audit");

    // Two sessions carry bytes and are closed by the client.
    for (i, len) in [1000usize, 2000].into_iter().enumerate() {
        let session = launcher
            .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
            .await
            .unwrap();
        let (sent, received) = echo_through(session.local_port(), len, i as u64 + 1).await;
        assert_eq!(sent, received);
        session.close().await;
    }
    // A tube whose target refuses: the launch fails once the tube is up.
    let err = launcher
        .launch(request("refusing", Profile::Fast))
        .await
        .err()
        .expect("the target refuses");
    assert_eq!(err.code().as_str(), "target_refused", "{err}");
    // Two sessions held open (each resource keeps its local port) fill the gateway; a third
    // is refused with session_limit.
    let held = [
        launcher
            .launch(request(sallyport_lab::DEMO_WEB, Profile::Fast))
            .await
            .unwrap(),
        launcher
            .launch(request(sallyport_lab::DEMO_ECHO, Profile::Fast))
            .await
            .unwrap(),
    ];
    let err = launcher
        .launch(request("refusing", Profile::Fast))
        .await
        .err()
        .expect("the gateway is full");
    assert_eq!(err.code().as_str(), "session_limit", "{err}");
    for session in held {
        session.close().await;
    }

    // The gateway reports each close after the fact: wait (bounded) until every launch has
    // its outcome, then check them all.
    let records = audit_until(&lab.audit_log, every_launch_has_an_outcome).await;
    let conversations = by_conversation(&records);
    let launches: Vec<&Vec<AuditRecord>> = conversations
        .values()
        .filter(|c| has(c, events::LAUNCH_REQUESTED))
        .collect();
    assert_eq!(launches.len(), 6, "six launches: {records:#?}");
    assert!(every_launch_has_an_outcome(&records), "{records:#?}");

    let mut closed_bytes = Vec::new();
    let mut refused_codes = Vec::new();
    for conversation in &launches {
        let requested = &conversation[0];
        assert_eq!(requested.event, events::LAUNCH_REQUESTED);
        assert_eq!(requested.user.as_deref(), Some("lab-user"));
        assert_eq!(
            requested.gateway.as_deref(),
            Some(sallyport_lab::LAB_GATEWAY)
        );
        assert_eq!(requested.source.as_deref(), Some("127.0.0.1"));
        for record in conversation.iter() {
            assert_eq!(record.user.as_deref(), Some("lab-user"), "{record:?}");
            assert_eq!(record.resource, requested.resource, "{record:?}");
        }
        if let Some(refused) = conversation
            .iter()
            .find(|r| r.event == events::LAUNCH_REFUSED)
        {
            refused_codes.push(refused.code.clone().unwrap());
            assert!(
                !has(conversation, events::TUBE_CONNECTED),
                "{conversation:?}"
            );
            continue;
        }
        let connected = conversation
            .iter()
            .position(|r| r.event == events::TUBE_CONNECTED)
            .unwrap_or_else(|| panic!("connected before closed: {conversation:#?}"));
        let closed = conversation
            .iter()
            .position(|r| r.event == events::SESSION_CLOSED)
            .unwrap();
        assert!(connected < closed, "{conversation:?}");
        let closed = &conversation[closed];
        assert_eq!(
            closed.reason.as_deref(),
            Some("client_closed"),
            "{closed:?}"
        );
        assert!(closed.duration_ms.is_some(), "{closed:?}");
        closed_bytes.push((
            closed.resource.clone().unwrap(),
            closed.bytes_from_client.unwrap(),
            closed.bytes_to_client.unwrap(),
        ));
    }
    assert_eq!(refused_codes, ["session_limit"]);
    closed_bytes.sort();
    let echo = sallyport_lab::DEMO_ECHO.to_owned();
    for sent in [0, 1000, 2000] {
        assert!(
            closed_bytes.contains(&(echo.clone(), sent, sent)),
            "an echo session of {sent} bytes each way: {closed_bytes:?}"
        );
    }
    let count = |resource: &str| closed_bytes.iter().filter(|(r, ..)| r == resource).count();
    assert_eq!(
        (
            count(&echo),
            count(sallyport_lab::DEMO_WEB),
            count("refusing")
        ),
        (3, 1, 1),
        "{closed_bytes:?}"
    );
    assert!(records.iter().any(|r| r.event == events::SIGN_IN));

    // Never a token or a target address in the audit trail.
    let text = std::fs::read_to_string(&lab.audit_log).unwrap();
    for secret in [&lab.client_token, &lab.gateway_token] {
        assert!(!text.contains(secret.as_str()), "a token in the audit log");
    }
    for target in lab.resources.iter().map(|r| &r.target) {
        assert!(!text.contains(target.as_str()), "{target} in the audit log");
    }

    // The gateway's own log names the targets it dialled and how each connection went.
    let log = std::fs::read_to_string(&lab.connection_log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "target_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(failed[0]["target"], refusing.as_str());
    assert_eq!(failed[0]["reason"], "target_refused");
    assert!(
        lines
            .iter()
            .filter(
                |l| l["event"] == "target_connected" && l["resource"] == sallyport_lab::DEMO_ECHO
            )
            .count()
            >= 2,
        "{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["event"] == "session_closed")
            .count(),
        5,
        "{log}"
    );
    lab.shutdown().await;
}
