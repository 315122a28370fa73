//! How long the translator takes at N routes, from scratch and for one new route with a warm
//! [`Translator`]. A profiling aid for the translator alone (no sockets, no status writer):
//!
//!   cargo run --release -p gantry-translate --example translate_timing -- 1000 5000 10000

use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_translate::store::Store;
use gantry_translate::store::load::load_store;
use gantry_translate::translate::{TranslateOptions, Translator, translate};

/// As in the proxy's binary.
#[global_allocator]
static ALLOCATOR: gantry_allocator::Mimalloc = gantry_allocator::Mimalloc;

const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gantry}
spec: {controllerName: gantry.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gantry
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: 9000}]
endpoints: [{addresses: [127.0.0.1]}]
";

fn route(i: usize) -> String {
    format!(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route-{i}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [host-{i}.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /r{i}}}}}]
    backendRefs: [{{name: backend, port: 80}}]
"
    )
}

fn store(routes: impl Iterator<Item = usize>) -> Store {
    let docs: Vec<(String, String)> = std::iter::once(("base.yaml".to_owned(), BASE.to_owned()))
        .chain(routes.map(|i| (format!("route-{i}.yaml"), route(i))))
        .collect();
    load_store(docs).expect("the generated objects load").0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("route counts"))
        .collect();
    const SAMPLES: usize = 20;
    for n in if counts.is_empty() {
        vec![1000, 5000]
    } else {
        counts
    } {
        let base = store(0..n);
        let started = Instant::now();
        let _ = translate(&base, &TranslateOptions::default());
        let cold = started.elapsed();
        let mut translator = Translator::new(TranslateOptions::default());
        let mut current = Arc::new(base);
        let _ = translator.translate(&current);
        let mut warm = Vec::with_capacity(SAMPLES);
        for k in 0..SAMPLES {
            // One new route, as the Kubernetes source would hand it over: the other objects
            // are the same Arcs.
            let mut next = Store::clone(&current);
            let added = store(std::iter::once(n + k));
            next.http_routes.extend(added.http_routes);
            let next = Arc::new(next);
            let started = Instant::now();
            let translation = translator.translate(&next);
            warm.push(started.elapsed());
            assert!(!translation.ir.ports.is_empty());
            current = next;
        }
        println!(
            "{n:>6} routes: from scratch {:>8.2} ms; one new route {:>7.2} ms (median of {SAMPLES}; {:?})",
            cold.as_secs_f64() * 1e3,
            median(warm).as_secs_f64() * 1e3,
            translator.stats(),
        );
    }
}
