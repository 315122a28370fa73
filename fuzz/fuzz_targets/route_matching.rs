//! Arbitrary HTTPRoutes and a request: the compiled router must choose the rule the reference
//! model of the spec's precedence chooses (the model the `route_matching` proptest uses).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../gateway-proxy/tests/route_model/mod.rs"]
mod route_model;

fuzz_target!(|data: &[u8]| {
    let scenario = route_model::Scenario::from_bytes(data);
    if let Err(why) = route_model::check(&scenario) {
        panic!("{why}");
    }
});
