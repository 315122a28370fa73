//! What a Kubernetes-mode proxy leaves out of its store before translating
//! (`gantry_translate::route_scope`: routes that name none of its Gateways, EndpointSlices of
//! namespaces none of its backends can be in) changes nothing it serves: for every golden case,
//! the scoped store translates exactly as the whole store does.

use std::path::Path;

use gantry_translate::goldens;
use gantry_translate::route_scope::{retain_served_endpoints, retain_served_routes};
use gantry_translate::translate::translate;

#[test]
fn a_scoped_store_translates_as_the_whole_store_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let files = std::fs::read_dir(&dir).expect("testdata/translate exists");
    let cases = goldens::listing(files.map(|e| {
        e.expect("readable entry")
            .file_name()
            .to_string_lossy()
            .into_owned()
    }))
    .cases;
    assert!(
        cases.len() > 100,
        "golden cases missing in {}",
        dir.display()
    );
    let (mut slices_dropped, mut routes_dropped) = (0, 0);
    let mut failures = Vec::new();
    for name in cases {
        let input = dir.join(format!("{name}{}", goldens::INPUT_SUFFIX));
        let text = std::fs::read_to_string(&input).expect("readable input");
        let options = goldens::options(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let store = goldens::load(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let routes = retain_served_routes(store.clone(), &options.controller_name);
        let scoped = retain_served_endpoints(routes.clone());
        routes_dropped += store.http_routes.len() - routes.http_routes.len();
        slices_dropped += store.endpoint_slices.len() - scoped.endpoint_slices.len();
        if translate(&scoped, &options) != translate(&store, &options) {
            failures.push(name);
        }
    }
    assert!(
        failures.is_empty(),
        "scoped translations differ: {failures:?}"
    );
    // The cases include routes and endpoints a fleet leaves out, so the comparison is not
    // between two identical stores.
    assert!(
        routes_dropped > 0 && slices_dropped > 0,
        "nothing was ever left out"
    );
}
