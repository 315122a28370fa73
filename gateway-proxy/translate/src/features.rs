//! The Gateway API features Gantry implements (GEP-2162 names), each with the kinds it needs
//! served and the tests that prove it.
//!
//! This one list is what the operator reports in GatewayClass `status.supportedFeatures`
//! ([`supported`], narrowed to the kinds the cluster serves) and what `docs/conformance.md`
//! shows ([`conformance_markdown`]). `tests/features.rs` checks it against the translator:
//! every golden a feature names translates without an "unsupported" condition, every test it
//! names exists, and the document is current.

use std::fmt::Write as _;

/// One feature and how it is proven.
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    /// The Gateway API feature name (`pkg/features` upstream).
    pub name: &'static str,
    /// Kinds that must be served for the feature to work; empty for Gateway and HTTPRoute
    /// features, whose kinds every installation has.
    pub kinds: &'static [&'static str],
    /// Translator goldens (`testdata/translate/<name>.in.yaml`) that use the feature.
    pub goldens: &'static [&'static str],
    /// Tests against the real binary that exercise it: `path/from/repo/root.rs#test_name`.
    pub tests: &'static [&'static str],
}

const fn feature(
    name: &'static str,
    kinds: &'static [&'static str],
    goldens: &'static [&'static str],
    tests: &'static [&'static str],
) -> Feature {
    Feature {
        name,
        kinds,
        goldens,
        tests,
    }
}

const NONE: &[&str] = &[];
const GRPC: &[&str] = &["GRPCRoute"];
const TLS: &[&str] = &["TLSRoute"];
const TCP: &[&str] = &["TCPRoute"];
const UDP: &[&str] = &["UDPRoute"];
const GRANT: &[&str] = &["ReferenceGrant"];
const BTLS: &[&str] = &["BackendTLSPolicy"];
const LS: &[&str] = &["ListenerSet"];

/// Every feature Gantry implements, in the order `docs/conformance.md` lists them.
pub const FEATURES: &[Feature] = &[
    feature(
        "Gateway",
        NONE,
        &["basic-http-route", "listener-protocol-conflict"],
        &["e2e/tests/e2e/lifecycle.rs#status_reports_gateway_listeners_and_route_parents"],
    ),
    feature(
        "GatewayPort8080",
        NONE,
        &["basic-http-route"],
        &["e2e/tests/e2e/routing.rs#every_match_type_picks_its_backend"],
    ),
    feature(
        "GatewayHTTPSListenerDetectMisdirectedRequests",
        NONE,
        &["https-listener"],
        &["e2e/tests/e2e/tls.rs#a_host_of_another_listener_is_misdirected"],
    ),
    feature(
        "GatewayBackendClientCertificate",
        BTLS,
        &["gateway-backend-client-certificate"],
        &[
            "e2e/tests/e2e/backend_tls.rs#the_gateway_presents_its_backend_client_certificate",
            "e2e/tests/e2e/l4_backend_tls.rs#tcp_and_terminated_tls_routes_reach_a_tls_backend_with_verified_tls",
        ],
    ),
    feature(
        "GatewayFrontendClientCertificateValidation",
        NONE,
        &["frontend-validation"],
        &[
            "e2e/tests/e2e/mtls.rs#valid_client_certificates_are_required_unless_the_port_falls_back",
        ],
    ),
    feature(
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        NONE,
        &["frontend-validation"],
        &[
            "e2e/tests/e2e/mtls.rs#valid_client_certificates_are_required_unless_the_port_falls_back",
        ],
    ),
    feature(
        "GatewayInfrastructurePropagation",
        NONE,
        // GEP-1867: the operator copies them onto the fleet; the Gateway translates as usual.
        &["gateway-infrastructure"],
        &["operator/tests/render_goldens.rs#render_goldens"],
    ),
    feature(
        "ListenerSet",
        LS,
        &[
            "listenerset-attached",
            "listenerset-not-allowed",
            "listenerset-allowed-from-selector",
            "listenerset-conflict-with-gateway-listener",
            "listenerset-route-section-name",
        ],
        &[
            "e2e/tests/e2e/listener_sets.rs#a_listener_set_listener_serves_its_port_and_hostname_and_goes_with_its_file",
            "e2e/tests/e2e/listener_sets.rs#a_listener_set_terminates_tls_with_a_certificate_of_its_own_namespace",
            "gateway-proxy/tests/kube_listener_set_status.rs#listener_set_status_and_attached_listener_sets_are_written",
            "operator/tests/controllers.rs#a_listener_set_opens_its_ports_on_the_fleet_of_the_gateway_that_admits_it",
        ],
    ),
    feature(
        "HTTPRoute",
        NONE,
        &["basic-http-route", "precedence-exact-beats-prefix"],
        &["e2e/tests/e2e/routing.rs#every_match_type_picks_its_backend"],
    ),
    feature(
        "HTTPRouteQueryParamMatching",
        NONE,
        &["precedence-method-headers-query"],
        &["e2e/tests/e2e/routing.rs#every_match_type_picks_its_backend"],
    ),
    feature(
        "HTTPRouteMethodMatching",
        NONE,
        &["precedence-method-headers-query"],
        &["e2e/tests/e2e/routing.rs#method_match_and_header_names_are_case_insensitive"],
    ),
    feature(
        "HTTPRouteResponseHeaderModification",
        NONE,
        &["filters-header-modifiers"],
        &["e2e/tests/e2e/filters.rs#header_modifiers_edit_request_and_response"],
    ),
    feature(
        "HTTPRouteBackendRequestHeaderModification",
        NONE,
        &["filters-per-backend"],
        &["e2e/tests/e2e/filters.rs#backend_filters_apply_to_their_backend"],
    ),
    feature(
        "HTTPRoutePortRedirect",
        NONE,
        &["filters-redirect"],
        &["e2e/tests/e2e/filters.rs#redirects_build_the_location_the_spec_describes"],
    ),
    feature(
        "HTTPRouteSchemeRedirect",
        NONE,
        &["filters-redirect"],
        &["e2e/tests/e2e/filters.rs#redirects_build_the_location_the_spec_describes"],
    ),
    feature(
        "HTTPRoutePathRedirect",
        NONE,
        &["filters-redirect"],
        &["e2e/tests/e2e/filters.rs#redirects_build_the_location_the_spec_describes"],
    ),
    feature(
        "HTTPRoute303RedirectStatusCode",
        NONE,
        &["filters-redirect"],
        &["e2e/tests/e2e/filters.rs#redirects_build_the_location_the_spec_describes"],
    ),
    feature(
        "HTTPRoute307RedirectStatusCode",
        NONE,
        &["filters-redirect"],
        &["e2e/tests/e2e/filters.rs#redirects_build_the_location_the_spec_describes"],
    ),
    feature(
        "HTTPRoute308RedirectStatusCode",
        NONE,
        &["filters-redirect"],
        &["e2e/tests/e2e/filters.rs#redirects_build_the_location_the_spec_describes"],
    ),
    feature(
        "HTTPRouteHostRewrite",
        NONE,
        &["filters-url-rewrite"],
        &["e2e/tests/e2e/filters.rs#url_rewrites_change_what_the_backend_sees"],
    ),
    feature(
        "HTTPRoutePathRewrite",
        NONE,
        &["filters-url-rewrite"],
        &["e2e/tests/e2e/filters.rs#url_rewrites_change_what_the_backend_sees"],
    ),
    feature(
        "HTTPRouteRequestMirror",
        NONE,
        &["filters-mirror"],
        &["e2e/tests/e2e/filters.rs#mirrored_requests_arrive_at_the_mirror"],
    ),
    feature(
        "HTTPRouteRequestPercentageMirror",
        NONE,
        &["filters-mirror"],
        &["e2e/tests/e2e/filters.rs#mirrored_requests_arrive_at_the_mirror"],
    ),
    feature(
        "HTTPRouteRequestTimeout",
        NONE,
        &["timeouts"],
        &["e2e/tests/e2e/hostile.rs#a_silent_backend_is_cut_off_by_the_default_request_timeout"],
    ),
    feature(
        "HTTPRouteBackendTimeout",
        NONE,
        &["timeouts"],
        &["e2e/tests/e2e/backends.rs#proxy_errors_map_to_the_documented_codes"],
    ),
    feature(
        "HTTPRouteRetry",
        NONE,
        &[
            "retry-translated-into-ir",
            "retry-invalid-values-drop-their-rules",
        ],
        &[
            "e2e/tests/e2e/retries.rs#a_status_listed_in_codes_is_retried_until_the_backend_answers",
            "e2e/tests/e2e/retries.rs#when_the_attempts_run_out_the_client_gets_the_backends_last_answer",
            "e2e/tests/e2e/retries.rs#a_post_body_is_replayed_on_retry",
        ],
    ),
    feature(
        "HTTPRouteRetryCodes",
        NONE,
        &["retry-translated-into-ir"],
        &["e2e/tests/e2e/retries.rs#a_status_listed_in_codes_is_retried_until_the_backend_answers"],
    ),
    feature(
        "HTTPRouteRetryBackoff",
        NONE,
        &["retry-translated-into-ir"],
        &["e2e/tests/e2e/retries.rs#retries_stop_at_the_request_timeout"],
    ),
    feature(
        "HTTPRouteRetryBackendTimeout",
        NONE,
        &["retry-translated-into-ir"],
        &["e2e/tests/e2e/retries.rs#a_slow_attempt_is_cut_by_backend_request_and_retried"],
    ),
    feature(
        "HTTPRouteRetryConnectionError",
        NONE,
        &["retry-translated-into-ir"],
        &[
            "e2e/tests/e2e/retries.rs#a_connection_closed_before_the_answer_is_retried",
            "e2e/tests/e2e/retries.rs#a_retry_picks_another_endpoint",
        ],
    ),
    feature(
        "HTTPRouteExternalAuthHTTP",
        NONE,
        &["filters-external-auth"],
        &[
            "e2e/tests/e2e/external_auth.rs#an_http_service_allows_with_its_headers_and_its_denial_is_the_answer",
            "e2e/tests/e2e/external_auth.rs#it_fails_closed",
        ],
    ),
    feature(
        "HTTPRouteExternalAuthGRPC",
        NONE,
        &["filters-external-auth"],
        &["e2e/tests/e2e/external_auth.rs#a_grpc_service_decides_with_envoys_check_protocol"],
    ),
    feature(
        "HTTPRouteExternalAuthForwardBody",
        NONE,
        &["filters-external-auth"],
        &[
            "e2e/tests/e2e/external_auth.rs#the_body_is_forwarded_up_to_max_size_and_a_larger_one_is_refused",
        ],
    ),
    feature(
        "HTTPRouteCORS",
        NONE,
        &["cors-filter-wildcards-and-credentials"],
        &[
            "e2e/tests/e2e/cors.rs#a_preflight_from_an_allowed_origin_is_answered_by_the_proxy",
            "e2e/tests/e2e/cors.rs#a_preflight_from_a_refused_origin_gets_no_cors_headers",
            "e2e/tests/e2e/cors.rs#actual_requests_reach_the_backend_and_get_headers_only_for_allowed_origins",
        ],
    ),
    feature(
        "HTTPRouteBackendProtocolH2C",
        NONE,
        &["backend-h2c-app-protocol"],
        &[
            "e2e/tests/e2e/backends.rs#http2_client_and_h2c_backend",
            "e2e/tests/e2e/backends.rs#h2c_backends_get_the_host_as_authority",
        ],
    ),
    feature(
        "HTTPRouteBackendProtocolWebSocket",
        NONE,
        &["basic-http-route"],
        &["e2e/tests/e2e/backends.rs#websocket_upgrade_is_bridged"],
    ),
    feature(
        "HTTPRouteDestinationPortMatching",
        NONE,
        &["parent-ref-port"],
        &["e2e/tests/e2e/routing.rs#every_match_type_picks_its_backend"],
    ),
    feature(
        "HTTPRouteParentRefPort",
        NONE,
        &["parent-ref-port"],
        &["e2e/tests/e2e/lifecycle.rs#status_reports_gateway_listeners_and_route_parents"],
    ),
    feature(
        "GRPCRoute",
        GRPC,
        &["grpc-route-matches", "grpc-route-precedence"],
        &["e2e/tests/e2e/grpc.rs#method_matches_route_by_service_and_method"],
    ),
    feature(
        "TLSRoute",
        TLS,
        &["tls-route-passthrough-hostnames"],
        &[
            "e2e/tests/e2e/tls_routes.rs#tls_passthrough_routes_by_sni_and_the_client_sees_the_backends_certificate",
        ],
    ),
    feature(
        "TLSRouteModeTerminate",
        TLS,
        &["tls-route-mixed-modes-one-port"],
        &[
            "e2e/tests/e2e/tls_routes.rs#tls_terminate_forwards_the_decrypted_stream_to_a_tcp_backend",
        ],
    ),
    feature(
        "TLSRouteModeMixed",
        TLS,
        &["tls-route-mixed-modes-one-port"],
        &["e2e/tests/e2e/tls_routes.rs#tls_passthrough_and_terminate_listeners_share_one_port"],
    ),
    feature(
        "TCPRoute",
        TCP,
        &[
            "tcp-route-weighted-backends",
            "listener-tcp-and-udp-share-a-port",
        ],
        &["e2e/tests/e2e/l4.rs#tcp_route_splits_connections_by_weight"],
    ),
    feature(
        "UDPRoute",
        UDP,
        &["udp-route-basic", "listener-tcp-and-udp-share-a-port"],
        &["e2e/tests/e2e/l4.rs#udp_route_keeps_a_session_per_client_and_expires_idle_ones"],
    ),
    feature(
        "ReferenceGrant",
        GRANT,
        &["reference-grant-allowed", "reference-grant-denied"],
        &[
            "gateway-proxy/tests/kube_source.rs#a_secret_in_a_namespace_no_reference_grant_permits_is_never_watched",
            "e2e/tests/e2e/tls.rs#sni_selects_the_listener_and_its_certificate",
        ],
    ),
    // Also for TCPRoute and TLSRoute in Terminate mode (GEP-2643; the upstream conformance test
    // BackendTLSPolicyTLSRouteTerminate needs only this feature and TLSRouteModeTerminate):
    // upstream defines no feature name of its own for that.
    feature(
        "BackendTLSPolicy",
        BTLS,
        &[
            "backend-tls-policy-accepted",
            "backend-tls-policy-tls-route-terminate",
            "backend-tls-policy-tcp-route",
        ],
        &[
            "e2e/tests/e2e/backend_tls.rs#backend_certificates_are_verified_against_the_policy",
            "e2e/tests/e2e/l4_backend_tls.rs#tcp_and_terminated_tls_routes_reach_a_tls_backend_with_verified_tls",
        ],
    ),
    feature(
        "BackendTLSPolicySANValidation",
        BTLS,
        &["backend-tls-policy-accepted"],
        &["e2e/tests/e2e/backend_tls.rs#backend_certificates_are_verified_against_the_policy"],
    ),
];

impl Feature {
    /// The tests as `(path, test name)`; a bare path names a whole test file.
    pub fn tests(&self) -> Vec<(&'static str, Option<&'static str>)> {
        self.tests
            .iter()
            .map(|t| match t.split_once('#') {
                Some((path, name)) => (path, Some(name)),
                None => (*t, None),
            })
            .collect()
    }
}

/// The names to report for a cluster (or standalone proxy) that serves the kinds for which
/// `served` is true, sorted as GatewayClass `status.supportedFeatures` must be ("It MUST be
/// sorted in ascending alphabetical order by the Name key").
pub fn supported(served: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FEATURES
        .iter()
        .filter(|f| f.kinds.iter().all(|k| served(k)))
        .map(|f| f.name)
        .collect();
    names.sort_unstable();
    names
}

/// A kind that may be missing from a cluster (its CRD not installed, or installed from a
/// release that serves it at another version), with the versions Gantry reads it at, newest
/// first. The proxy watches the newest one the API server serves; the operator reports the
/// features of a kind only when one is served.
#[derive(Clone, Copy, Debug)]
pub struct OptionalKind {
    pub kind: &'static str,
    pub group: &'static str,
    pub plural: &'static str,
    pub versions: &'static [&'static str],
}

const GW: &str = "gateway.networking.k8s.io";
const GWX: &str = "gateway.networking.x-k8s.io";

/// The kinds features depend on ([`Feature::kinds`]). TCPRoute and UDPRoute are served at `v1`
/// from Gateway API v1.6 (standard channel, where `v1alpha2` is no longer served) and at
/// `v1alpha2` before.
pub const OPTIONAL_KINDS: &[OptionalKind] = &[
    OptionalKind {
        kind: "GRPCRoute",
        group: GW,
        plural: "grpcroutes",
        versions: &["v1"],
    },
    OptionalKind {
        kind: "TLSRoute",
        group: GW,
        plural: "tlsroutes",
        versions: &["v1", "v1alpha3", "v1alpha2"],
    },
    OptionalKind {
        kind: "TCPRoute",
        group: GW,
        plural: "tcproutes",
        versions: &["v1", "v1alpha2"],
    },
    OptionalKind {
        kind: "UDPRoute",
        group: GW,
        plural: "udproutes",
        versions: &["v1", "v1alpha2"],
    },
    OptionalKind {
        kind: "ReferenceGrant",
        group: GW,
        plural: "referencegrants",
        versions: &["v1", "v1beta1"],
    },
    OptionalKind {
        kind: "BackendTLSPolicy",
        group: GW,
        plural: "backendtlspolicies",
        versions: &["v1", "v1alpha3"],
    },
    OptionalKind {
        kind: "ListenerSet",
        group: GW,
        plural: "listenersets",
        versions: &["v1"],
    },
    OptionalKind {
        kind: "XBackendTrafficPolicy",
        group: GWX,
        plural: "xbackendtrafficpolicies",
        versions: &["v1alpha1"],
    },
];

/// The entry of [`OPTIONAL_KINDS`] for `kind`.
pub fn optional_kind(kind: &str) -> Option<&'static OptionalKind> {
    OPTIONAL_KINDS.iter().find(|k| k.kind == kind)
}

/// `docs/conformance.md`: every feature with the kinds it needs and the tests that prove it.
pub fn conformance_markdown() -> String {
    let mut out = String::from(
        "# Gateway API conformance\n\n\
         <!-- Generated from `gateway-proxy/translate/src/features.rs` by \
         `GANTRY_UPDATE_DOCS=1 cargo test -p gantry-translate --test features`; do not edit. -->\n\n\
         The features Gantry reports in GatewayClass `status.supportedFeatures`, each with the \
         translator goldens (`gateway-proxy/translate/testdata/translate/`) and the tests against \
         the real binary that prove it. In Kubernetes mode the operator reports a feature only \
         when the cluster serves every kind it needs (for example `TCPRoute` only when a \
         TCPRoute CRD is installed); see [operations](operations.md).\n\n\
         | Feature | Needs | Goldens | Tests |\n|---|---|---|---|\n",
    );
    for f in FEATURES {
        let kinds = if f.kinds.is_empty() {
            "—".to_owned()
        } else {
            f.kinds.join(", ")
        };
        let goldens = f
            .goldens
            .iter()
            .map(|g| format!("[{g}](../gateway-proxy/translate/testdata/translate/{g}.in.yaml)"))
            .collect::<Vec<_>>()
            .join(", ");
        let tests = f
            .tests()
            .iter()
            .map(|(path, name)| match name {
                Some(name) => format!("[`{name}`](../{path})"),
                None => format!("[{path}](../{path})"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "| `{}` | {kinds} | {goldens} | {tests} |", f.name);
    }
    out
}
