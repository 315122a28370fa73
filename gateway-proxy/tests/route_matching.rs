//! Route matching against a reference model of the Gateway API's HTTPRoute precedence:
//! arbitrary routes and requests, translated and compiled as the proxy does, must pick the
//! rule the spec picks. The `route_matching` fuzz target runs the same check on fuzzer input.

mod route_model;

use proptest::prelude::*;
use route_model::{Scenario, check, check_explain};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_compiled_router_picks_the_rule_the_spec_picks(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let scenario = Scenario::from_bytes(&bytes);
        if let Err(why) = check(&scenario) {
            prop_assert!(false, "{}", why);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `gantry-proxy explain` reports the rule the data plane and the spec pick, and says of
    /// every other entry whether it matched exactly as the model does.
    #[test]
    fn explain_reports_the_rule_the_router_and_the_spec_pick(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let scenario = Scenario::from_bytes(&bytes);
        if let Err(why) = check_explain(&scenario) {
            prop_assert!(false, "{}", why);
        }
    }
}

/// Hand-picked scenarios the model and the router must agree on.
#[test]
fn seeds_agree() {
    for bytes in [
        &[][..],
        &[2, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 3][..],
        &[
            4, 1, 1, 2, 2, 1, 2, 2, 3, 1, 3, 1, 2, 0, 0, 1, 1, 3, 2, 1, 0, 1,
        ][..],
    ] {
        check(&Scenario::from_bytes(bytes)).unwrap_or_else(|why| panic!("{why}"));
        check_explain(&Scenario::from_bytes(bytes)).unwrap_or_else(|why| panic!("{why}"));
    }
}
