//! The kinds of object the operator creates, and where the API serves each.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::core::ApiResource;

/// A kind of generated object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// rbac/v1 RoleBinding.
    RoleBinding,
    /// rbac/v1 ClusterRoleBinding.
    ClusterRoleBinding,
    /// core/v1 Service.
    Service,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// autoscaling/v2 HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
    /// cert-manager.io/v1 Certificate (a CRD the cluster may not have).
    Certificate,
    /// coordination.k8s.io/v1 Lease: the fleet's leader-election Lease, applied without a spec
    /// (the proxies hold it) so that it has an owner and goes with the fleet.
    Lease,
}

impl Kind {
    /// Where the API serves this kind.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            Kind::RoleBinding => ApiResource::erase::<RoleBinding>(&()),
            Kind::ClusterRoleBinding => ApiResource::erase::<ClusterRoleBinding>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Kind::HorizontalPodAutoscaler => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            Kind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
            Kind::Lease => ApiResource::erase::<Lease>(&()),
            Kind::Certificate => ApiResource {
                group: "cert-manager.io".to_string(),
                version: "v1".to_string(),
                api_version: "cert-manager.io/v1".to_string(),
                kind: "Certificate".to_string(),
                plural: "certificates".to_string(),
            },
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::ClusterRoleBinding)
    }
}
