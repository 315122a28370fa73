//! Each replica's half: after every configuration it applies, the report of what it serves
//! goes onto its own Pod (a merge patch of one annotation), only when it changed, retried on
//! errors. It runs beside the data plane and never holds it up.

use std::sync::Arc;
use std::time::Duration;

use ::kube::api::{Patch, PatchParams};
use ::kube::{Api, Client};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::watch;

use super::report::{ANNOTATION, ServingReport};
use gantry_translate::status::ObjectStatus;
use gantry_translate::store::ObjectKey;

/// Delay before a failed report is sent again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Reports on `pod` what each applied configuration serves, until the control loop is gone.
pub async fn run(
    client: Client,
    pod: ObjectKey,
    mut statuses: watch::Receiver<Arc<Vec<ObjectStatus>>>,
) {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let mut published: Option<ServingReport> = None;
    loop {
        let current = statuses.borrow_and_update().clone();
        // Before the first translation there is nothing to report.
        let mut retry = false;
        if !current.is_empty() {
            let report = ServingReport::of(&current);
            if published.as_ref() != Some(&report) {
                let body =
                    json!({"metadata": {"annotations": {ANNOTATION: report.to_annotation()}}});
                match api
                    .patch(&pod.name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(annotation = %report.to_annotation(), "serving reported");
                        published = Some(report);
                    }
                    Err(error) => {
                        tracing::warn!(%error, pod = %pod, "serving report not written; retrying");
                        retry = true;
                    }
                }
            }
        }
        tokio::select! {
            changed = statuses.changed() => if changed.is_err() { return; },
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
    }
}
