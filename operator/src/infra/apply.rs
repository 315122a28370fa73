//! Makes the cluster match the rendered objects: server-side apply, and deletes for what is no
//! longer desired. Fields dropped from an apply body (a removed Service port, `replicas` once
//! an HPA takes over) are removed or released by the API server itself; only whole objects that
//! disappear from the desired set (HPA, PDB, Certificate, a fleet after a topology switch) need
//! an explicit delete here.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use super::kind::Kind;
use super::names::{
    self, FIELD_MANAGER, GATEWAY_CLASS_NAME_LABEL, GATEWAY_NAME_LABEL, GATEWAY_NAMESPACE_LABEL,
    GRANT_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
};
use super::plan::FleetRef;
use super::render::DesiredObject;
use crate::params::ProxyRoles;

/// A failed call to the API server, naming the object involved.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind:?} {namespace}/{name}: {source}")]
pub struct ApplyError {
    /// apply, delete or list.
    pub verb: &'static str,
    /// Kind of the object.
    pub kind: Kind,
    /// Its namespace (empty for cluster-scoped).
    pub namespace: String,
    /// Its name (empty for a list).
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Whether an API error is a 404 (object, or the whole kind, absent).
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

/// How far [`Applier::teardown_fleet`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// The Deployment is being deleted: its pods are draining. Call again once it is gone.
    Draining,
    /// Nothing of the fleet is left.
    Done,
}

/// Server-side applies and deletes generated objects with the operator's field manager.
#[derive(Clone)]
pub struct Applier {
    client: Client,
}

impl Applier {
    /// An applier using `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api(&self, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = kind.api_resource();
        match namespace.filter(|_| kind.namespaced()) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// Applies every object in order; stops at the first failure.
    pub async fn apply_all(&self, objects: &[DesiredObject]) -> Result<(), ApplyError> {
        for object in objects {
            self.apply(object).await?;
        }
        Ok(())
    }

    /// Server-side apply of one object. `force` takes over fields another manager set, which is
    /// what a controller that owns the object wants (kube-rs controller guidelines).
    pub async fn apply(&self, object: &DesiredObject) -> Result<DynamicObject, ApplyError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api(object.kind, object.namespace.as_deref())
            .patch(&object.name, &params, &Patch::Apply(&object.body))
            .await
            .map_err(|source| ApplyError {
                verb: "apply",
                kind: object.kind,
                namespace: object.namespace.clone().unwrap_or_default(),
                name: object.name.clone(),
                source,
            })
    }

    /// What the API server says of applying `object`, without storing it (`dryRun=All`): its
    /// validation message when it refuses the object (`400` or `422`), `Ok(None)` when it
    /// would take it. Other failures are errors.
    pub async fn refusal(&self, object: &DesiredObject) -> Result<Option<String>, ApplyError> {
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = true;
        match self
            .api(object.kind, object.namespace.as_deref())
            .patch(&object.name, &params, &Patch::Apply(&object.body))
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 400 || status.code == 422 => {
                Ok(Some(status.message))
            }
            Err(source) => Err(ApplyError {
                verb: "dry-run apply",
                kind: object.kind,
                namespace: object.namespace.clone().unwrap_or_default(),
                name: object.name.clone(),
                source,
            }),
        }
    }

    /// Deletes one object; `Ok(false)` when it was already gone.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ApplyError> {
        match self
            .api(kind, namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(source) => Err(ApplyError {
                verb: "delete",
                kind,
                namespace: namespace.unwrap_or_default().to_string(),
                name: name.to_string(),
                source,
            }),
        }
    }

    /// Deletes the HPA and PDB of `fleet` when they are not among `desired` (autoscaling or the
    /// budget turned off).
    pub async fn prune_fleet(
        &self,
        fleet: &FleetRef,
        desired: &[DesiredObject],
    ) -> Result<(), ApplyError> {
        for kind in [Kind::HorizontalPodAutoscaler, Kind::PodDisruptionBudget] {
            let wanted = desired.iter().any(|o| {
                o.kind == kind
                    && o.name == fleet.name
                    && o.namespace.as_deref() == Some(&fleet.namespace)
            });
            if !wanted {
                self.delete(kind, Some(&fleet.namespace), &fleet.name)
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes a fleet that no longer serves anything, in order, over several calls: first
    /// the Deployment (or DaemonSet), deleted in the foreground, so that it disappears only once its pods
    /// are gone ([`Teardown::Draining`] until then); then what the pods used while draining
    /// (the Lease they held, their RoleBindings, their ServiceAccount), the HPA and PDB, and
    /// the Service last: while it exists, a teardown is unfinished. `lease` is the fleet's
    /// Lease; with `roles` of a namespace-scoped install, the fleet's RoleBinding of the
    /// `<prefix>` Role goes too.
    pub async fn teardown_fleet(
        &self,
        fleet: &FleetRef,
        roles: &ProxyRoles,
        lease: &str,
    ) -> Result<Teardown, ApplyError> {
        let namespace = Some(fleet.namespace.as_str());
        let mut draining = false;
        for kind in [Kind::Deployment, Kind::DaemonSet] {
            let workloads = self.api(kind, namespace);
            let error = |verb, source| ApplyError {
                verb,
                kind,
                namespace: fleet.namespace.clone(),
                name: fleet.name.clone(),
                source,
            };
            match workloads.get_opt(&fleet.name).await {
                Ok(Some(workload)) => {
                    if workload.metadata.deletion_timestamp.is_none() {
                        // Foreground: the garbage collector removes the ReplicaSets (or the
                        // DaemonSet's pods), each pod draining for its grace period, before
                        // the object itself.
                        match workloads
                            .delete(&fleet.name, &DeleteParams::foreground())
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if is_not_found(&e) => {}
                            Err(source) => return Err(error("delete", source)),
                        }
                    }
                    draining = true;
                }
                Ok(None) => {}
                // A cluster (or test) that serves no DaemonSets has none to delete.
                Err(e) if is_not_found(&e) => {}
                Err(source) => return Err(error("get", source)),
            }
        }
        if draining {
            return Ok(Teardown::Draining);
        }
        let mut rest = vec![
            (Kind::HorizontalPodAutoscaler, fleet.name.clone()),
            (Kind::PodDisruptionBudget, fleet.name.clone()),
            (Kind::Lease, lease.to_string()),
            (
                Kind::RoleBinding,
                names::leader_election_binding(&fleet.name),
            ),
        ];
        if roles.namespace.is_some() {
            rest.push((Kind::RoleBinding, names::fleet_reads_binding(&fleet.name)));
        }
        rest.push((Kind::ServiceAccount, fleet.name.clone()));
        rest.push((Kind::Service, fleet.name.clone()));
        for (kind, name) in rest {
            self.delete(kind, namespace, &name).await?;
        }
        Ok(Teardown::Done)
    }

    /// Whether anything of a fleet is left: its Deployment or DaemonSet, or the Service a
    /// teardown deletes last.
    pub async fn fleet_remains(&self, fleet: &FleetRef) -> Result<bool, ApplyError> {
        for kind in [Kind::Deployment, Kind::DaemonSet, Kind::Service] {
            match self
                .api(kind, Some(&fleet.namespace))
                .get_metadata_opt(&fleet.name)
                .await
            {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(source) => {
                    return Err(ApplyError {
                        verb: "get",
                        kind,
                        namespace: fleet.namespace.clone(),
                        name: fleet.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(false)
    }

    /// Deletes the RoleBindings granting the class's fleets reads in a namespace that are not
    /// among `desired` (a reference removed, a ReferenceGrant withdrawn, a fleet gone). They are
    /// found by label, in `scope` (the operator's namespace) or in every namespace.
    pub async fn prune_reference_bindings(
        &self,
        class: &str,
        scope: Option<&str>,
        desired: &[DesiredObject],
    ) -> Result<Vec<(String, String)>, ApplyError> {
        let selector = format!(
            "{GATEWAY_CLASS_NAME_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY},{GRANT_LABEL}",
            names::label_value(class),
        );
        let existing = self
            .api(Kind::RoleBinding, scope)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ApplyError {
                verb: "list",
                kind: Kind::RoleBinding,
                namespace: scope.unwrap_or_default().to_string(),
                name: String::new(),
                source,
            })?;
        let mut deleted = Vec::new();
        for binding in existing.items {
            let namespace = binding.metadata.namespace.clone().unwrap_or_default();
            let name = binding.name_any();
            let wanted = desired.iter().any(|o| {
                o.kind == Kind::RoleBinding
                    && o.name == name
                    && o.namespace.as_deref() == Some(namespace.as_str())
            });
            if !wanted
                && self
                    .delete(Kind::RoleBinding, Some(&namespace), &name)
                    .await?
            {
                deleted.push((namespace, name));
            }
        }
        Ok(deleted)
    }

    /// Deletes the operator's Certificates for a Gateway that are not among `desired` (a removed
    /// HTTPS listener). A cluster without cert-manager answers 404 for the kind: nothing to do.
    pub async fn prune_certificates(
        &self,
        namespace: &str,
        gateway: &str,
        desired: &[DesiredObject],
    ) -> Result<(), ApplyError> {
        let selector = format!(
            "{GATEWAY_NAME_LABEL}={},{GATEWAY_NAMESPACE_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
            super::names::label_value(gateway),
            super::names::label_value(namespace),
        );
        let api = self.api(Kind::Certificate, Some(namespace));
        let existing = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(source) => {
                return Err(ApplyError {
                    verb: "list",
                    kind: Kind::Certificate,
                    namespace: namespace.to_string(),
                    name: String::new(),
                    source,
                });
            }
        };
        for certificate in existing {
            let name = certificate.name_any();
            let wanted = desired
                .iter()
                .any(|o| o.kind == Kind::Certificate && o.name == name);
            if !wanted {
                self.delete(Kind::Certificate, Some(namespace), &name)
                    .await?;
            }
        }
        Ok(())
    }
}
