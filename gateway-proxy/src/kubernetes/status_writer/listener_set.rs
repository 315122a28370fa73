//! ListenerSet status: `Accepted`, `Programmed` and `listeners[]`, all the proxy's, written by
//! server-side apply as the Gateway's part is.

use ::kube::Api;
use ::kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;
use tracing::instrument;

use super::compare::{keep_times, listener_set_wish, parse_list, same_conditions, same_listeners};
use super::settled::Settled;
use super::{FIELD_MANAGER, GATEWAY_GROUP, StatusWriter, WriteError};
use gantry_translate::status::{Condition, GatewayStatus, ListenerStatus};
use gantry_translate::store::{ObjectKey, Store};

/// The kind, as statuses name it.
pub(super) const KIND: &str = "ListenerSet";

impl StatusWriter {
    /// Applies the ListenerSet's status when it differs from the live one (times aside).
    #[instrument(skip(self, store, desired), fields(listener_set = %key))]
    pub(super) async fn listener_set(
        &mut self,
        store: &Store,
        key: &ObjectKey,
        desired: &GatewayStatus,
    ) -> Result<bool, WriteError> {
        let Some(object) = store.listener_sets.get(key) else {
            return Ok(false);
        };
        let version = object.metadata.resource_version.as_deref();
        let wish = listener_set_wish(desired);
        if self.settled.listener_set_settled(key, version, &wish) {
            return Ok(false);
        }
        let Ok(live) = serde_json::to_value(&**object) else {
            return Ok(false);
        };
        let status = &live["status"];
        let live_conditions: Vec<Condition> = parse_list(&status["conditions"]);
        let live_listeners: Option<Vec<ListenerStatus>> =
            serde_json::from_value(status["listeners"].clone()).ok();
        let now = (self.clock)();
        let mut conditions = desired.conditions.clone();
        keep_times(&mut conditions, &live_conditions, &now);
        let mut listeners = desired.listeners.clone();
        for listener in &mut listeners {
            let old = live_listeners
                .iter()
                .flatten()
                .find(|l| l.name == listener.name)
                .map(|l| l.conditions.as_slice())
                .unwrap_or_default();
            keep_times(&mut listener.conditions, old, &now);
        }
        // An absent `listeners` is the same as an empty one (a ListenerSet that is not
        // allowed has none).
        let unchanged = same_conditions(&conditions, &live_conditions)
            && same_listeners(&listeners, live_listeners.as_deref().unwrap_or_default());
        if unchanged {
            self.settled
                .settle_listener_set(key, Settled::at(&live, wish));
            return Ok(false);
        }
        let body = json!({
            "apiVersion": format!("{GATEWAY_GROUP}/v1"),
            "kind": KIND,
            "metadata": { "name": key.name, "namespace": key.namespace },
            "status": { "conditions": conditions, "listeners": listeners },
        });
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<gantry_crds::gateway::listenersets::ListenerSet>(&()),
        );
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&key.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| WriteError::Api {
                kind: KIND.into(),
                key: key.clone(),
                source: Box::new(source),
            })?;
        self.settled
            .settle_listener_set(key, Settled::at(&live, wish));
        tracing::info!("ListenerSet status written");
        Ok(true)
    }
}
