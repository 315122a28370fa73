//! An operator [`Context`] talking to the test kit's API server, as the controller tests
//! build it.

use std::sync::Arc;

use gantry_operator::controller::{Context, Scope};
use gantry_operator::metrics::Metrics;
use gantry_operator::params::{OperatorDefaults, ProxyRoles};
use gantry_testkit::apiserver::ApiServer;

/// A `kube::Client` of `server`.
pub fn client(server: &ApiServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

/// A cluster-scoped operator with the test image and the default proxy roles.
pub fn context(fake: &ApiServer) -> Arc<Context> {
    Arc::new(Context::new(
        client(fake),
        OperatorDefaults {
            proxy_image: "gantry-proxy:test".to_string(),
            proxy_roles: ProxyRoles::default(),
        },
        Arc::new(Metrics::new()),
        Scope::Cluster,
    ))
}
