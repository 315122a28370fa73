//! The contract between the operator and the proxy: the command line the operator renders into
//! a fleet's Deployment is parsed by the proxy's own parser (`gantry_proxy::cli::Cli`) and must
//! mean what the parameters say, and the Service's `targetPort` and the container port must be
//! the port the proxy's data plane binds with those arguments. Checked for every Deployment of
//! the render goldens and for every combination of the parameters that shape the arguments.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use clap::Parser;
use gantry_crds::gateway::gatewayclasses::GatewayClass;
use gantry_crds::gateway::gateways::Gateway;
use gantry_crds::gateway::listenersets::ListenerSet;
use gantry_crds::params::{AccessLogFormat, GatewayParametersSpec};
use gantry_operator::infra::kind::Kind;
use gantry_operator::infra::render::{ADMIN_DEBUG_PORT, ADMIN_PORT, DesiredObject, POD_IP_ENV};
use gantry_operator::infra::{overlay, plan};
use gantry_operator::params::FleetParameters;
use gantry_proxy::admin::Placement;
use gantry_proxy::cli::{Cli, Command, RunArgs};
use gantry_proxy::server::DataPlane;
use gantry_proxy::telemetry::Metrics;
use gantry_proxy::telemetry::logging::LogFormat;
use gantry_translate::store::{ObjectKey, Store};
use gantry_translate::translate::{TranslateOptions, translate};
use serde_json::{Value, json};
use support::render_cases::{self, Input};

/// What a fleet was rendered to serve.
enum Serves {
    /// A dedicated fleet: `--gateway NS/NAME`.
    Gateway(String),
    /// A shared fleet: `--gateway-class NAME`.
    Class(String),
}

/// The pod IPs the arguments are expanded with: one IPv4 and one IPv6 pod.
const POD_IPS: [&str; 2] = ["10.1.2.3", "fd00::7"];

/// The proxy container's arguments, as the kubelet passes them after the entrypoint: every
/// `$(NAME)` of a variable the container defines is replaced by its value, the downward API's
/// `status.podIP` by `pod_ip`.
fn proxy_args(deployment: &Value, pod_ip: &str) -> Vec<String> {
    let container = proxy_container(deployment);
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("status.podIP") => pod_ip.to_string(),
            Some(path) => format!("<{path}>"),
            None => var["value"].as_str().unwrap_or_default().to_string(),
        };
        env.insert(name, value);
    }
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    args.into_iter()
        .map(|arg| {
            env.iter().fold(arg, |arg, (name, value)| {
                arg.replace(&format!("$({name})"), value)
            })
        })
        .collect()
}

fn proxy_container(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "proxy")
        .expect("a container named proxy")
}

/// Parses `args` with the proxy's parser, failing the test with clap's message when it refuses.
fn parse(context: &str, args: &[String]) -> RunArgs {
    let argv = std::iter::once("gantry-proxy".to_string()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(run),
        }) => *run,
        Ok(other) => panic!("{context}: {args:?} is not a run command: {other:?}"),
        Err(error) => panic!("{context}: the proxy rejects {args:?}:\n{error}"),
    }
}

/// Distinct (port, protocol) of the listeners the fleet serves, as the Service should expose:
/// the Gateways' own, and those of every ListenerSet in `objects` that the proxy's translator
/// (with the fleet's `namespace_labels`) does not refuse as `NotAllowed` by its Gateway.
fn listener_ports(
    gateways: &[&Gateway],
    objects: &Store,
    namespace_labels: bool,
) -> BTreeSet<(i32, &'static str)> {
    let mut store = objects.clone();
    store
        .gateway_classes
        .insert("gantry".to_string(), Arc::new(class()));
    store.gateways = gateways
        .iter()
        .map(|g| {
            let key = ObjectKey::new(
                g.metadata.namespace.as_deref().unwrap_or_default(),
                g.metadata.name.as_deref().unwrap_or_default(),
            );
            (key, Arc::new((*g).clone()))
        })
        .collect();
    let options = TranslateOptions {
        namespace_labels,
        parameters_refs: false,
        ..TranslateOptions::default()
    };
    let statuses = serde_json::to_value(translate(&store, &options).statuses).unwrap();
    let not_allowed = |set: &ObjectKey| {
        statuses.as_array().unwrap().iter().any(|s| {
            s["kind"] == "ListenerSet"
                && s["namespace"] == set.namespace.as_str()
                && s["name"] == set.name.as_str()
                && s["status"]["conditions"][0]["reason"] == "NotAllowed"
        })
    };
    let own = gateways.iter().flat_map(|g| {
        g.spec
            .listeners
            .iter()
            .map(|l| (l.port, l.protocol.clone()))
    });
    let from_sets = store
        .listener_sets
        .iter()
        .filter(|(key, set)| {
            let parent = set
                .spec
                .parent_ref
                .namespace
                .as_deref()
                .unwrap_or(&key.namespace);
            store
                .gateways
                .contains_key(&ObjectKey::new(parent, &set.spec.parent_ref.name))
                && !not_allowed(key)
        })
        .flat_map(|(_, set)| {
            set.spec
                .listeners
                .iter()
                .map(|l| (l.port, l.protocol.clone()))
        });
    own.chain(from_sets)
        .map(|(port, protocol)| (port, if protocol == "UDP" { "UDP" } else { "TCP" }))
        .collect()
}

/// Checks the fleet's Deployment (and Service) in `objects` against `params`, and returns the
/// Deployment's namespace and name.
fn check_fleet(
    context: &str,
    objects: &[DesiredObject],
    params: &FleetParameters,
    serves: &Serves,
    gateways: &[&Gateway],
    listener_sets: &Store,
) -> (String, String) {
    let deployment = objects
        .iter()
        .find(|o| o.kind == Kind::Deployment || o.kind == Kind::DaemonSet)
        .unwrap_or_else(|| panic!("{context}: no Deployment or DaemonSet rendered"));
    let body = &deployment.body;
    for pod_ip in POD_IPS {
        let args = proxy_args(body, pod_ip);
        let run = parse(context, &args);
        let context = format!("{context}: {args:?}");
        // Probes and scrapers reach the pod IP; /status and /config only loopback.
        let admin_port = u16::try_from(ADMIN_PORT).unwrap();
        assert_eq!(
            run.admin_addr,
            SocketAddr::new(pod_ip.parse().unwrap(), admin_port),
            "{context}"
        );
        let debug = SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            u16::try_from(ADMIN_DEBUG_PORT).unwrap(),
        ));
        assert_eq!(run.admin_debug_addr, Some(debug), "{context}");
        assert_eq!(
            Placement::new(run.admin_addr, run.admin_debug_addr),
            Placement::Separate(debug),
            "{context}"
        );
    }
    let args = proxy_args(body, POD_IPS[0]);
    let run = parse(context, &args);
    let context = format!("{context}: {args:?}");
    let env = &proxy_container(body)["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == POD_IP_ENV
                && v["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"),
        "{context}: {POD_IP_ENV} from the downward API"
    );

    assert!(run.kubernetes, "{context}: not in Kubernetes mode");
    assert_eq!(run.config_dir, None, "{context}");
    // A namespace-scoped install: the fleet watches only its namespace, and is told its class.
    let namespace = params.roles.namespace.clone();
    assert_eq!(run.watch_namespace, namespace, "{context}");
    let (scope, namespaced) = gantry_proxy::kubernetes::watch::Scope::from_flags_in(
        &run.gateways,
        run.gateway_class.as_deref(),
        run.watch_namespace.as_deref(),
    )
    .unwrap_or_else(|e| panic!("{context}: the proxy refuses its scope: {e}"));
    assert_eq!(
        namespaced.map(|n| n.namespace),
        namespace.clone(),
        "{context}: {scope:?}"
    );
    // The fleet the proxy reports to is the one whose Pods it watches: `--fleet` is the
    // workload's name and its Pods' `gantry.dev/fleet` label, in the same namespace.
    let pod_labels = &body["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        run.fleet.as_deref(),
        Some(deployment.name.as_str()),
        "{context}"
    );
    assert_eq!(
        pod_labels[gantry_proxy::kubernetes::serving::fleet::FLEET_LABEL],
        json!(deployment.name),
        "{context}: the Pods carry the label the proxy selects them by"
    );
    // The Lease the proxy holds (in its namespace, `POD_NAMESPACE`) is the one rendered with
    // the fleet, so that it has an owner and is deleted with the fleet.
    let leases: Vec<(Option<&str>, &str)> = objects
        .iter()
        .filter(|o| o.kind == Kind::Lease)
        .map(|o| (o.namespace.as_deref(), o.name.as_str()))
        .collect();
    assert_eq!(
        leases,
        [(deployment.namespace.as_deref(), scope.lease_name().as_str())],
        "{context}"
    );
    match serves {
        Serves::Gateway(key) => {
            let gateways: Vec<String> = run.gateways.iter().map(|g| g.to_string()).collect();
            assert_eq!(gateways, vec![key.clone()], "{context}");
            if namespace.is_some() {
                assert!(run.gateway_class.is_some(), "{context}: the class is named");
            } else {
                assert_eq!(run.gateway_class, None, "{context}");
            }
        }
        Serves::Class(class) => {
            assert!(run.gateways.is_empty(), "{context}");
            assert_eq!(
                run.gateway_class.as_deref(),
                Some(class.as_str()),
                "{context}"
            );
        }
    }
    let proxy = &params.proxy;
    assert_eq!(run.port_offset, proxy.port_offset, "{context}");
    assert_eq!(
        run.log_level,
        serde_json::to_value(proxy.log_level)
            .unwrap()
            .as_str()
            .unwrap(),
        "{context}"
    );
    let format = match proxy.access_log_format {
        AccessLogFormat::Json => LogFormat::Json,
        AccessLogFormat::Text => LogFormat::Text,
    };
    assert_eq!(run.access_log_format, format, "{context}");
    assert_eq!(
        run.worker_threads,
        proxy.worker_threads.map(|t| usize::try_from(t).unwrap()),
        "{context}"
    );
    assert!(!run.no_access_log, "{context}");
    // The drain the parameters ask for, and a grace period the kubelet waits for it.
    let millis = |ms: u128| std::time::Duration::from_millis(u64::try_from(ms).unwrap());
    assert_eq!(run.drain_delay, millis(proxy.drain_delay_ms), "{context}");
    assert_eq!(
        run.drain_timeout,
        millis(proxy.drain_timeout_ms),
        "{context}"
    );
    let grace = body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(
        std::time::Duration::from_secs(grace) > run.drain_delay + run.drain_timeout,
        "{context}: a grace period of {grace}s ends before the drain"
    );
    assert!(
        proxy_container(body).get("lifecycle").is_none(),
        "{context}: no preStop hook, the proxy holds on SIGTERM itself"
    );
    // Every interface of the pod, or the Service cannot reach the listeners.
    assert!(run.bind_address.is_unspecified(), "{context}");

    // The admin server (on the pod IP, above) is where the probes and the `admin` container
    // port point; the probes name no host, so the kubelet sends them to the pod IP.
    let container = proxy_container(body);
    let container_ports: BTreeMap<String, (i64, String)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                (
                    p["containerPort"].as_i64().unwrap(),
                    p["protocol"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(
        container_ports.get("admin"),
        Some(&(i64::from(ADMIN_PORT), "TCP".to_string())),
        "{context}"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{context}");
        assert!(
            container[probe]["httpGet"].get("host").is_none(),
            "{context}"
        );
    }
    assert!(
        !container_ports
            .values()
            .any(|(port, _)| *port == i64::from(ADMIN_DEBUG_PORT)),
        "{context}: the debug port is not a container port"
    );

    // Each listener port: the Service targets the container port of the same name, which is
    // where the proxy's data plane binds the listener given these arguments.
    let plane = DataPlane::new(run.dataplane_options(), Arc::new(Metrics::new()));
    let wanted = listener_ports(gateways, listener_sets, namespace.is_none());
    let service = objects.iter().find(|o| o.kind == Kind::Service);
    let Some(service) = service else {
        assert!(wanted.is_empty(), "{context}: listeners but no Service");
        assert_eq!(container_ports.len(), 1, "{context}: only the admin port");
        return (
            deployment.namespace.clone().unwrap(),
            deployment.name.clone(),
        );
    };
    let mut exposed = BTreeSet::new();
    for port in service.body["spec"]["ports"].as_array().unwrap() {
        let name = port["name"].as_str().unwrap();
        let listener_port = port["port"].as_i64().unwrap();
        let protocol = port["protocol"].as_str().unwrap().to_string();
        let target = port["targetPort"].as_i64().unwrap();
        let bound = plane
            .listen_addr(u16::try_from(listener_port).unwrap())
            .port();
        assert_eq!(
            target,
            i64::from(bound),
            "{context}: Service port {name} targets {target}, the proxy binds {bound}"
        );
        assert_eq!(
            container_ports.get(name),
            Some(&(target, protocol.clone())),
            "{context}: container port {name}"
        );
        exposed.insert((i32::try_from(listener_port).unwrap(), protocol));
    }
    let wanted: BTreeSet<(i32, String)> = wanted
        .into_iter()
        .map(|(port, protocol)| (port, protocol.to_string()))
        .collect();
    assert_eq!(exposed, wanted, "{context}: Service ports");
    assert_eq!(
        container_ports.len(),
        wanted.len() + 1,
        "{context}: container ports are the listeners' and admin"
    );
    (
        deployment.namespace.clone().unwrap(),
        deployment.name.clone(),
    )
}

/// Every Deployment in `<case>.out.yaml`, as namespace and name.
fn golden_deployments(case: &std::path::Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(render_cases::golden_path(case)).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
    docs.iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "DaemonSet")
        .map(|d| {
            (
                d["metadata"]["namespace"].as_str().unwrap().to_string(),
                d["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Checks the fleets the controllers render for one golden input; returns the Deployments seen.
fn check_case(case: &str, input: &Input) -> BTreeSet<(String, String)> {
    let mut checked = BTreeSet::new();
    for gateway in &input.gateways {
        let Ok(params) = input.gateway_parameters(gateway) else {
            continue;
        };
        let objects = plan::gateway_objects(
            gateway,
            &params,
            &input.secrets_of(gateway),
            &input.references,
        );
        // What the controller applies: the objects after their overlays, or nothing.
        let Ok(objects) = overlay::apply(objects, &params.overlays) else {
            continue;
        };
        if !objects
            .iter()
            .any(|o| o.kind == Kind::Deployment || o.kind == Kind::DaemonSet)
        {
            continue;
        }
        let key = format!(
            "{}/{}",
            gateway.metadata.namespace.clone().unwrap_or_default(),
            gateway.metadata.name.clone().unwrap_or_default()
        );
        let context = format!("{case}: fleet of {key}");
        checked.insert(check_fleet(
            &context,
            &objects,
            &params,
            &Serves::Gateway(key),
            &[gateway],
            &input.references,
        ));
    }
    if let Ok(params) = input.class_fleet_parameters() {
        let objects = plan::class_objects(
            &input.class,
            &params,
            input.shared_namespace(),
            &input.gateways,
            false,
            Some(&plan::class_owner(&input.class)),
            &input.references,
        );
        let objects = overlay::apply(objects, &params.overlays).unwrap_or_default();
        if objects
            .iter()
            .any(|o| o.kind == Kind::Deployment || o.kind == Kind::DaemonSet)
        {
            let class = input.class.metadata.name.clone().unwrap_or_default();
            let gateways: Vec<&Gateway> = input.gateways.iter().collect();
            checked.insert(check_fleet(
                &format!("{case}: shared fleet of {class}"),
                &objects,
                &params,
                &Serves::Class(class),
                &gateways,
                &input.references,
            ));
        }
    }
    checked
}

#[tokio::test]
async fn every_golden_deployment_runs_a_proxy_that_accepts_its_arguments() {
    let cases = render_cases::cases();
    assert!(!cases.is_empty(), "no render cases found");
    let mut deployments = 0;
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let checked = check_case(&name, &render_cases::parse(&case));
        assert_eq!(
            checked,
            golden_deployments(&case),
            "{name}: every Deployment of the golden is checked"
        );
        deployments += checked.len();
    }
    assert!(deployments > 0, "no Deployment checked");
}

fn gateway(name: &str, listeners: &[(&str, i32, &str)]) -> Gateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": { "name": name, "namespace": "edge", "uid": format!("uid-{name}") },
        "spec": {
            "gatewayClassName": "gantry",
            "listeners": listeners
                .iter()
                .map(|(listener, port, protocol)| json!({
                    "name": listener, "port": port, "protocol": protocol,
                }))
                .collect::<Vec<_>>(),
        },
    }))
    .unwrap()
}

/// `gateway` admitting ListenerSets of its own namespace.
fn allowing_listener_sets(mut gateway: Gateway) -> Gateway {
    gateway.spec.allowed_listeners =
        serde_json::from_value(json!({"namespaces": {"from": "Same"}})).unwrap();
    gateway
}

/// A store holding one ListenerSet in `edge` that names the Gateway `parent`.
fn listener_set(parent: &str, listeners: &[(&str, i32, &str)]) -> Store {
    let set: ListenerSet = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ListenerSet",
        "metadata": { "name": "team", "namespace": "edge" },
        "spec": {
            "parentRef": { "name": parent },
            "listeners": listeners
                .iter()
                .map(|(listener, port, protocol)| json!({
                    "name": listener, "port": port, "protocol": protocol,
                }))
                .collect::<Vec<_>>(),
        },
    }))
    .unwrap();
    let mut store = Store::default();
    store
        .listener_sets
        .insert(ObjectKey::new("edge", "team"), Arc::new(set));
    store
}

fn class() -> GatewayClass {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": { "name": "gantry", "uid": "uid-class" },
        "spec": { "controllerName": "gantry.dev/gateway-controller" },
    }))
    .unwrap()
}

/// Every value of every parameter that shapes the proxy's arguments, in both topologies, with
/// listeners on both sides of 1024, at the ends of the port range, and on UDP.
#[tokio::test]
async fn every_combination_of_proxy_parameters_renders_arguments_the_proxy_accepts() {
    let gateways = [
        gateway(
            "web",
            &[
                ("http", 80, "HTTP"),
                ("https", 443, "HTTPS"),
                ("low", 1, "TCP"),
                ("last-privileged", 1023, "TCP"),
                ("first-unprivileged", 1024, "HTTP"),
                ("dns", 53, "UDP"),
                ("top", 65535, "TCP"),
            ],
        ),
        allowing_listener_sets(gateway(
            "api",
            &[("http", 80, "HTTP"), ("alt", 8080, "HTTP")],
        )),
        gateway("empty", &[]),
    ];
    // A ListenerSet adding ports to `api`: new ones on both sides of 1024 and on UDP, and one
    // that `web` and `api` already use.
    let listener_sets = listener_set(
        "api",
        &[
            ("extra", 9443, "HTTP"),
            ("low", 1, "TCP"),
            ("dns", 5353, "UDP"),
            ("http", 80, "HTTP"),
        ],
    );
    let class = class();
    let mut fleets = 0;
    // Cluster-wide, and namespace-scoped (Roles only) in the Gateways' namespace.
    for install_namespace in [None, Some("edge")] {
        let mut defaults = render_cases::defaults();
        defaults.proxy_roles.namespace = install_namespace.map(str::to_string);
        let shared_namespace = install_namespace.unwrap_or("gantry-system");
        for topology in ["Dedicated", "Shared"] {
            for log_level in [
                None,
                Some("trace"),
                Some("debug"),
                Some("info"),
                Some("warn"),
                Some("error"),
            ] {
                for access_log_format in [None, Some("json"), Some("text")] {
                    for worker_threads in [None, Some(1), Some(1024)] {
                        for port_offset in [None, Some(0), Some(1), Some(10000), Some(64512)] {
                            let spec: GatewayParametersSpec = serde_json::from_value(json!({
                                "topology": topology,
                                "proxy": {
                                    "logLevel": log_level,
                                    "accessLogFormat": access_log_format,
                                    "workerThreads": worker_threads,
                                    "portOffset": port_offset,
                                },
                            }))
                            .unwrap();
                            let params = plan::gateway_parameters(Some(&spec), None, &defaults)
                                .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                            let context = format!("{spec:?}");
                            if topology == "Dedicated" {
                                for g in &gateways {
                                    let objects = plan::gateway_objects(
                                        g,
                                        &params,
                                        &BTreeMap::new(),
                                        &listener_sets,
                                    );
                                    let key = format!("edge/{}", g.metadata.name.clone().unwrap());
                                    check_fleet(
                                        &context,
                                        &objects,
                                        &params,
                                        &Serves::Gateway(key),
                                        &[g],
                                        &listener_sets,
                                    );
                                    fleets += 1;
                                }
                            } else {
                                let objects = plan::class_objects(
                                    &class,
                                    &params,
                                    Some(shared_namespace),
                                    &gateways,
                                    false,
                                    Some(&plan::class_owner(&class)),
                                    &listener_sets,
                                );
                                let all: Vec<&Gateway> = gateways.iter().collect();
                                check_fleet(
                                    &context,
                                    &objects,
                                    &params,
                                    &Serves::Class("gantry".to_string()),
                                    &all,
                                    &listener_sets,
                                );
                                fleets += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(fleets, 2 * 6 * 3 * 3 * 5 * (3 + 1));
}

/// Offsets the operator refuses are the offsets the proxy refuses, and the largest one both
/// accept moves port 1023 to 65535.
#[test]
fn operator_and_proxy_accept_the_same_port_offsets() {
    let defaults = render_cases::defaults();
    for (offset, valid) in [
        (i64::from(i32::MIN), false),
        (-1, false),
        (0, true),
        (10000, true),
        (64512, true),
        (64513, false),
        (65535, false),
        (65536, false),
        (i64::from(i32::MAX), false),
    ] {
        let args = [
            "gantry-proxy".to_string(),
            "run".to_string(),
            "--kubernetes".to_string(),
            format!("--port-offset={offset}"),
        ];
        let proxy = Cli::try_parse_from(&args);
        assert_eq!(proxy.is_ok(), valid, "proxy, offset {offset}");
        let spec: GatewayParametersSpec =
            serde_json::from_value(json!({ "proxy": { "portOffset": offset } })).unwrap();
        let operator = plan::gateway_parameters(Some(&spec), None, &defaults);
        assert_eq!(operator.is_ok(), valid, "operator, offset {offset}");
        if let Err(message) = operator {
            assert!(
                message.starts_with(&format!(
                    "proxy.portOffset is invalid: port offset {offset} "
                )),
                "{message}"
            );
            assert!(message.ends_with("(use 0 to 64512)"), "{message}");
        }
    }
}

/// `proxy.clientTraffic` reaches the proxy as the options it names; unset fields leave the
/// proxy's own defaults.
#[test]
fn client_traffic_parameters_become_the_proxy_options() {
    use gantry_proxy::routing::normalize::EscapedSlashes;
    use std::time::Duration;

    let run_for = |proxy: Value| {
        rendered_run(json!({"topology": "Dedicated", "proxy": proxy})).dataplane_options()
    };

    let set = run_for(json!({"clientTraffic": {
        "escapedSlashesAction": "KeepUnchanged",
        "disableMergeSlashes": true,
        "numTrustedHops": 2,
        "requestHeaderTimeout": "5s",
        "idleTimeout": "1m30s",
        "stallTimeout": "10m",
        "requestBodyTimeout": "0s",
        "defaultRequestTimeout": "1h2m",
        "connectionLimit": 500,
        "maxConnections": 900,
        "http2MaxConcurrentStreams": 32,
    }}));
    assert_eq!(set.http.paths.escaped_slashes, EscapedSlashes::Keep);
    assert!(!set.http.paths.merge_slashes);
    assert_eq!(set.http.trusted_proxy_hops, 2);
    assert_eq!(set.http.request_body_timeout, None);
    assert_eq!(
        set.http.default_request_timeout,
        Some(Duration::from_secs(3720))
    );
    assert_eq!(set.connections.timeouts.header, Duration::from_secs(5));
    assert_eq!(set.connections.timeouts.idle, Duration::from_secs(90));
    assert_eq!(set.connections.timeouts.stall, Duration::from_secs(600));
    assert_eq!(set.connections.per_listener, 500);
    assert_eq!(set.connections.process, 900);
    assert_eq!(set.connections.http2_max_streams, 32);

    let unset = run_for(json!({}));
    let proxy_defaults =
        parse("defaults", &["run".into(), "--kubernetes".into()]).dataplane_options();
    assert_eq!(unset.http.paths, proxy_defaults.http.paths);
    assert_eq!(
        unset.http.trusted_proxy_hops,
        proxy_defaults.http.trusted_proxy_hops
    );
    assert_eq!(
        unset.http.request_body_timeout,
        proxy_defaults.http.request_body_timeout
    );
    assert_eq!(
        unset.http.default_request_timeout,
        proxy_defaults.http.default_request_timeout
    );
    assert_eq!(
        unset.connections.timeouts,
        proxy_defaults.connections.timeouts
    );
    assert_eq!(
        unset.connections.per_listener,
        proxy_defaults.connections.per_listener
    );
    assert_eq!(
        unset.connections.http2_max_streams,
        proxy_defaults.connections.http2_max_streams
    );

    // A duration the schema would refuse never reaches the command line: the parameters are
    // invalid instead.
    let spec: GatewayParametersSpec =
        serde_json::from_value(json!({"proxy": {"clientTraffic": {"idleTimeout": "soon"}}}))
            .unwrap();
    let error = plan::gateway_parameters(Some(&spec), None, &render_cases::defaults()).unwrap_err();
    assert!(error.contains("proxy.clientTraffic.idleTimeout"), "{error}");
}

/// The command line of the proxy of a dedicated fleet for Gateway `web` with parameters `spec`.
fn rendered_run(spec: Value) -> RunArgs {
    let spec: GatewayParametersSpec = serde_json::from_value(spec).unwrap();
    let params = plan::gateway_parameters(Some(&spec), None, &render_cases::defaults()).unwrap();
    let g = gateway("web", &[("http", 80, "HTTP")]);
    let objects = plan::gateway_objects(&g, &params, &BTreeMap::new(), &Store::default());
    let deployment = objects.iter().find(|o| o.kind == Kind::Deployment).unwrap();
    parse("web", &proxy_args(&deployment.body, POD_IPS[0]))
}

/// `proxy.shutdown` reaches the proxy as its drain delay and timeout; unset, the operator renders
/// the proxy's own defaults, which fit Kubernetes' default grace period.
#[test]
fn shutdown_parameters_become_the_proxy_drain() {
    use std::time::Duration;

    let defaults = render_cases::defaults();
    let set = rendered_run(json!({
        "deployment": {"terminationGracePeriodSeconds": 120},
        "proxy": {"shutdown": {"drainDelay": "15s", "drainTimeout": "1m30s"}},
    }));
    assert_eq!(set.drain_delay, Duration::from_secs(15));
    assert_eq!(set.drain_timeout, Duration::from_secs(90));

    let unset = rendered_run(json!({}));
    let proxy_defaults = parse("defaults", &["run".into(), "--kubernetes".into()]);
    assert_eq!(unset.drain_delay, proxy_defaults.drain_delay);
    assert_eq!(unset.drain_timeout, proxy_defaults.drain_timeout);

    // A drain longer than the grace period is refused, not rendered.
    let spec: GatewayParametersSpec = serde_json::from_value(json!({
        "proxy": {"shutdown": {"drainTimeout": "30s"}},
    }))
    .unwrap();
    let error = plan::gateway_parameters(Some(&spec), None, &defaults).unwrap_err();
    assert!(
        error.contains("terminationGracePeriodSeconds (30)"),
        "{error}"
    );
}

#[test]
fn programmed_parameters_become_the_proxy_options() {
    use std::time::Duration;

    let set = rendered_run(json!({
        "deployment": {"replicas": 3},
        "autoscaling": {"enabled": false},
        "proxy": {"programmed": {"minReplicas": 2, "timeout": "2m"}},
    }));
    assert_eq!(set.programmed_min_replicas, Some(2));
    assert_eq!(set.programmed_timeout, Duration::from_secs(120));

    // Unset, the proxy's own defaults: every desired replica, and its default timeout.
    let unset = rendered_run(json!({}));
    let proxy_defaults = parse("defaults", &["run".into(), "--kubernetes".into()]);
    assert_eq!(unset.programmed_min_replicas, None);
    assert_eq!(unset.programmed_timeout, proxy_defaults.programmed_timeout);
}

/// `proxy.tracing` reaches the proxy as its `--tracing-*` options; unset, no tracing flag is
/// rendered at all (a fleet one minor older need not know them).
#[test]
fn tracing_parameters_become_the_proxy_tracing_options() {
    let set = rendered_run(json!({
        "proxy": {"tracing": {
            "endpoint": "http://otel-collector.observability:4317",
            "protocol": "GRPC",
            "samplingRate": 5,
            "serviceName": "edge-gateway",
        }},
    }));
    let options = set.tracing_options().expect("tracing is on");
    assert_eq!(
        options.endpoint.to_string(),
        "http://otel-collector.observability:4317/"
    );
    assert_eq!(
        options.protocol,
        gantry_proxy::telemetry::trace::Protocol::Grpc
    );
    assert!((options.ratio - 0.05).abs() < 1e-9, "{}", options.ratio);
    assert_eq!(options.service_name, "edge-gateway");

    let unset = rendered_run(json!({}));
    assert!(unset.tracing_endpoint.is_none());
    let proxy_defaults = parse("defaults", &["run".into(), "--kubernetes".into()]);
    assert_eq!(
        unset.tracing_sampling_ratio,
        proxy_defaults.tracing_sampling_ratio
    );
    // An endpoint alone: the proxy's defaults for the rest.
    let minimal = rendered_run(json!({
        "proxy": {"tracing": {"endpoint": "http://collector:4318"}},
    }));
    let options = minimal.tracing_options().expect("tracing is on");
    assert_eq!(
        options.protocol,
        gantry_proxy::telemetry::trace::Protocol::Http
    );
    assert!((options.ratio - 1.0).abs() < 1e-9);
}

#[test]
fn rate_limit_redis_becomes_the_proxy_redis_flag() {
    let set = rendered_run(json!({
        "proxy": {"rateLimit": {"redis": {"url": "redis://redis.gantry-system:6379"}}},
    }));
    assert_eq!(
        set.rate_limit_redis.as_deref(),
        Some("redis://redis.gantry-system:6379")
    );
    // Unset: no flag, so a fleet one minor older runs unchanged.
    assert!(rendered_run(json!({})).rate_limit_redis.is_none());
}

/// The Deployment of the dedicated fleet of Gateway `web` with parameters `spec`.
fn rendered_deployment(spec: Value) -> Value {
    let spec: GatewayParametersSpec = serde_json::from_value(spec).unwrap();
    let params = plan::gateway_parameters(Some(&spec), None, &render_cases::defaults()).unwrap();
    let g = gateway("web", &[("http", 80, "HTTP")]);
    let objects = plan::gateway_objects(&g, &params, &BTreeMap::new(), &Store::default());
    objects
        .into_iter()
        .find(|o| o.kind == Kind::Deployment)
        .unwrap()
        .body
}

/// The directory a volume of the proxy container is mounted at, and the volume.
fn mounted<'a>(deployment: &'a Value, volume: &str) -> (&'a str, &'a Value) {
    let mount = proxy_container(deployment)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("no mount of {volume}"));
    assert_eq!(mount["readOnly"], true, "{volume} is mounted read-only");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume)
        .unwrap_or_else(|| panic!("no volume {volume}"));
    (mount["mountPath"].as_str().unwrap(), volume)
}

fn acme_spec() -> Value {
    json!({"certificates": {"acme": {
        "directory": "https://acme.internal.example.com/directory",
        "email": "ops@example.com",
        "caCertificateRef": {"name": "acme-ca", "key": "root.pem"},
        "externalAccountBinding": {
            "keyID": "kid-1",
            "hmacKeyRef": {"name": "acme-eab", "key": "hmac"},
        },
        "challenge": "TLSALPN01",
        "keyType": "RSA2048",
        "renewBefore": "1440h",
    }}})
}

/// `certificates.acme` as the command line says it, whichever proxy this is built with: the
/// flags, and the files they name inside the volumes of the CA ConfigMap and the External
/// Account Binding Secret (the named key only). Unset, no `--acme-*` flag at all.
#[test]
fn acme_parameters_become_acme_flags_and_mounted_files() {
    let deployment = rendered_deployment(acme_spec());
    let args = proxy_args(&deployment, POD_IPS[0]);
    let acme: Vec<&str> = args
        .iter()
        .skip_while(|a| !a.starts_with("--acme-"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        acme,
        [
            "--acme-directory",
            "https://acme.internal.example.com/directory",
            "--acme-email",
            "ops@example.com",
            "--acme-challenge",
            "tls-alpn-01",
            "--acme-key-type",
            "rsa-2048",
            "--acme-renew-before",
            "1440h",
            "--acme-ca-file",
            "/etc/gantry/acme/ca/ca.crt",
            "--acme-eab-kid",
            "kid-1",
            "--acme-eab-hmac-file",
            "/etc/gantry/acme/eab/hmac-key",
        ]
    );
    assert!(
        !args.iter().any(|a| a == "--acme-dir"),
        "state lives in a Secret"
    );
    // Each file flag names the one key of its volume, under the volume's mount.
    let (ca_dir, ca) = mounted(&deployment, "acme-ca");
    assert_eq!(
        ca["configMap"],
        json!({"name": "acme-ca", "items": [{"key": "root.pem", "path": "ca.crt"}]})
    );
    assert_eq!(format!("{ca_dir}/ca.crt"), "/etc/gantry/acme/ca/ca.crt");
    let (eab_dir, eab) = mounted(&deployment, "acme-eab");
    assert_eq!(
        eab["secret"],
        json!({"secretName": "acme-eab", "items": [{"key": "hmac", "path": "hmac-key"}]})
    );
    assert_eq!(
        format!("{eab_dir}/hmac-key"),
        "/etc/gantry/acme/eab/hmac-key"
    );

    // The defaults: HTTP-01, ECDSA P-256, 30 days; no CA or binding, so no volume.
    let minimal = rendered_deployment(json!({"certificates": {"acme": {
        "directory": "https://acme-v02.api.letsencrypt.org/directory",
    }}}));
    let args = proxy_args(&minimal, POD_IPS[0]);
    let acme: Vec<&str> = args
        .iter()
        .skip_while(|a| !a.starts_with("--acme-"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        acme,
        [
            "--acme-directory",
            "https://acme-v02.api.letsencrypt.org/directory",
            "--acme-challenge",
            "http-01",
            "--acme-key-type",
            "ecdsa-p256",
            "--acme-renew-before",
            "720h",
        ]
    );
    let volumes = &minimal["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes.as_array().unwrap().len(), 1, "{volumes}");

    // Unset: no flag, so a fleet one minor older runs unchanged.
    let unset = proxy_args(&rendered_deployment(json!({})), POD_IPS[0]);
    assert!(!unset.iter().any(|a| a.starts_with("--acme-")), "{unset:?}");
}

/// The proxy reads `certificates.acme` from the command line as the parameters say.
#[test]
fn acme_parameters_become_the_proxy_acme_options() {
    use gantry_proxy::acme::args::{ChallengeArg, KeyTypeArg};
    use std::path::Path;
    use std::time::Duration;

    let run = parse(
        "acme",
        &proxy_args(&rendered_deployment(acme_spec()), POD_IPS[0]),
    );
    let acme = &run.acme;
    assert_eq!(
        acme.acme_directory.as_deref(),
        Some("https://acme.internal.example.com/directory")
    );
    assert_eq!(acme.acme_dir, None);
    assert_eq!(acme.acme_email.as_deref(), Some("ops@example.com"));
    assert_eq!(
        acme.acme_ca_file.as_deref(),
        Some(Path::new("/etc/gantry/acme/ca/ca.crt"))
    );
    assert_eq!(acme.acme_eab_kid.as_deref(), Some("kid-1"));
    assert_eq!(
        acme.acme_eab_hmac_file.as_deref(),
        Some(Path::new("/etc/gantry/acme/eab/hmac-key"))
    );
    assert_eq!(acme.acme_challenge, ChallengeArg::TlsAlpn01);
    assert_eq!(acme.acme_key_type, KeyTypeArg::Rsa2048);
    assert_eq!(acme.acme_renew_before, Duration::from_secs(60 * 86_400));

    // The defaults the operator renders are the proxy's own.
    let minimal = parse(
        "acme defaults",
        &proxy_args(
            &rendered_deployment(json!({"certificates": {"acme": {
                "directory": "https://acme-v02.api.letsencrypt.org/directory",
            }}})),
            POD_IPS[0],
        ),
    );
    let proxy_defaults = parse(
        "defaults",
        &[
            "run".into(),
            "--kubernetes".into(),
            "--acme-directory".into(),
            "https://acme-v02.api.letsencrypt.org/directory".into(),
        ],
    );
    assert_eq!(
        minimal.acme.acme_challenge,
        proxy_defaults.acme.acme_challenge
    );
    assert_eq!(
        minimal.acme.acme_renew_before,
        proxy_defaults.acme.acme_renew_before
    );
    assert_eq!(
        minimal.acme.acme_key_type,
        proxy_defaults.acme.acme_key_type
    );
}
