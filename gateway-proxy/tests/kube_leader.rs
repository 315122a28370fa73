//! Leader election over a Lease: one replica leads, another takes over when it dies or
//! releases the Lease.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use gantry_proxy::kubernetes::leader::{self, Elector, LeaseConfig};
use support::apiserver::ApiServer;
use support::{Client, eventually};
use tokio::sync::watch;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "gantry-system".into(),
        name: leader::lease_name("default/gw"),
        identity: identity.into(),
        duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(100),
    }
}

fn start(
    server: &ApiServer,
    identity: &str,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(leader::run(
        Elector::new(server.client(), config(identity)),
        tx,
    ));
    (rx, task)
}

fn holder(server: &ApiServer) -> (String, i64) {
    let lease = server
        .get("leases", "gantry-system", &leader::lease_name("default/gw"))
        .unwrap();
    (
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
    )
}

/// Successful Lease writes that name `identity` as the holder.
fn renewals_by(server: &ApiServer, identity: &str) -> usize {
    server
        .writes()
        .iter()
        .filter(|w| {
            w.path.contains("/leases")
                && w.status < 300
                && w.body["spec"]["holderIdentity"] == identity
        })
        .count()
}

#[test]
fn lease_names_are_valid_object_names() {
    assert_eq!(leader::lease_name("default/gw"), "gantry-proxy-default-gw");
    assert_eq!(
        leader::lease_name("Shared_Class"),
        "gantry-proxy-shared-class"
    );
    assert!(leader::lease_name(&"x".repeat(400)).len() <= 253);
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_dies() {
    let server = ApiServer::start().await;
    let (a, a_task) = start(&server, "pod-a");
    eventually(5, "pod-a to lead", || {
        let leads = *a.borrow();
        async move { leads }
    })
    .await;
    let (b, _b_task) = start(&server, "pod-b");
    // pod-b tries as often as pod-a renews; after five renewals it has tried several times.
    let renewals_before = renewals_by(&server, "pod-a");
    eventually(10, "pod-a to renew five more times", || {
        let renewed = renewals_by(&server, "pod-a") >= renewals_before + 5;
        async move { renewed }
    })
    .await;
    assert!(!*b.borrow(), "two leaders at once");
    assert!(*a.borrow(), "the leader lost the Lease while renewing");
    assert_eq!(holder(&server), ("pod-a".to_owned(), 0));

    a_task.abort(); // pod-a dies without releasing
    eventually(10, "pod-b to take over", || {
        let leads = *b.borrow();
        async move { leads }
    })
    .await;
    assert_eq!(holder(&server), ("pod-b".to_owned(), 1));
}

#[tokio::test]
async fn a_released_lease_is_taken_over_at_once() {
    let server = ApiServer::start().await;
    let mut a = Elector::new(server.client(), config("pod-a"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    let mut b = Elector::new(server.client(), config("pod-b"));
    assert!(!b.try_acquire_or_renew().await.unwrap());
    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "not taken over after release"
    );
    assert_eq!(holder(&server).0, "pod-b");
    assert!(a.try_acquire_or_renew().await.is_ok_and(|leads| !leads));
}
