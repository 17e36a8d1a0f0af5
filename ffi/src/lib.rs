//! The C ABI of ambit (`libambit`, header `include/ambit.h`).
//!
//! Conventions (the header repeats them per function):
//! - Functions return an [`ambit_result`]; `AMBIT_RESULT_OK` is success. Outputs are written only
//!   on success; errors that carry a message also hand back an [`ambit_error`] to free.
//! - Every pointer is checked: a NULL where an object or buffer is required returns
//!   `AMBIT_RESULT_NULL_PARAMETER`. `_free(NULL)` does nothing.
//! - No panic crosses the boundary: a bug inside returns `AMBIT_RESULT_PANIC`.
//! - Every borrowed string is an `ambit_str` (pointer + length, need not be NUL-terminated,
//!   UTF-8 unless said otherwise); every address is an `ambit_socket_addr`.
//! - Options are built with `_options_new` and `_set_` calls, never passed as structs, so that
//!   adding an option never changes the ABI.
//!   Strings returned into caller buffers are NOT NUL-terminated; `*out_n` gives the length, and
//!   a too-small buffer returns `AMBIT_RESULT_INSUFFICIENT_SIZE` with `*out_n` set to the size
//!   needed.
//! - Objects documented as immutable are thread-safe and may be shared by any threads.
//!
//! The ABI is unstable until 1.0.
#![allow(non_camel_case_types, reason = "C type names follow C conventions")]
#![allow(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "these are C entry points; each documents its pointer contract"
)]

// Glue: pointers, the panic boundary, errors and codes, strings, addresses.
mod addr;
mod error;
mod ffi;
mod panic;
mod strings;

// One file per concept.
mod authn;
mod hbone;
mod identity;
mod l7;
mod node;
mod policy;
mod proxy_v2;
mod route;
mod runtime;
mod waypoint;

pub use addr::{ambit_socket_addr, ambit_socket_addr_format, ambit_socket_addr_parse};
pub use authn::{
    ambit_authenticators, ambit_authenticators_authenticate, ambit_authenticators_free,
    ambit_authenticators_from_yaml, ambit_authenticators_jwks_uri,
    ambit_authenticators_jwks_uri_count, ambit_authenticators_len, ambit_authenticators_set_jwks,
    ambit_authenticators_warnings, ambit_authn_outcome, ambit_authn_result,
    ambit_authn_result_claim, ambit_authn_result_edits, ambit_authn_result_free,
    ambit_authn_result_outcome, ambit_authn_result_path, ambit_authn_result_principal,
    ambit_authn_result_reason, ambit_jwks_uri_from_openid_configuration,
};
pub use error::{
    ambit_error, ambit_error_code, ambit_error_free, ambit_error_location, ambit_error_message,
    ambit_result, ambit_result_message,
};
pub use hbone::{
    ambit_hbone_dial, ambit_hbone_dial_udp, ambit_hbone_listener, ambit_hbone_listener_accept,
    ambit_hbone_listener_fd, ambit_hbone_listener_free, ambit_hbone_listener_local_addr,
    ambit_hbone_listener_new,
};
pub use identity::{
    ambit_ca, ambit_ca_free, ambit_ca_issue, ambit_ca_new, ambit_cert_usage, ambit_credentials,
    ambit_credentials_free, ambit_credentials_from_pem, ambit_spiffe_id, ambit_spiffe_id_check,
    ambit_spiffe_id_free, ambit_spiffe_id_new, ambit_spiffe_id_part, ambit_spiffe_id_part_kind,
    ambit_verify_peer_chain,
};
pub use l7::{
    ambit_http_request, ambit_l7_policies, ambit_l7_policies_decide, ambit_l7_policies_free,
    ambit_l7_policies_from_yaml, ambit_l7_policies_len, ambit_l7_policies_warnings,
    ambit_l7_reason, ambit_waypoint_target,
};
pub use node::{
    ambit_node_options, ambit_node_options_free, ambit_node_options_new,
    ambit_node_options_set_hbone_port, ambit_node_options_set_http_connect,
    ambit_node_options_set_metrics, ambit_node_options_set_readiness,
    ambit_node_options_set_socks5, ambit_node_proxy, ambit_node_proxy_free,
    ambit_node_proxy_metrics, ambit_node_proxy_reload, ambit_node_proxy_socks5_addr,
    ambit_node_proxy_start,
};
pub use policy::{
    ambit_l4_attributes, ambit_label, ambit_policy_set, ambit_policy_set_decide,
    ambit_policy_set_evaluate_l4, ambit_policy_set_free, ambit_policy_set_from_istio_yaml,
    ambit_policy_set_len,
};
pub use proxy_v2::{ambit_proxy_v2_decode, ambit_proxy_v2_encode};
pub use route::{
    ambit_route_decision, ambit_route_decision_authority, ambit_route_decision_backend_name,
    ambit_route_decision_backend_namespace, ambit_route_decision_backend_port,
    ambit_route_decision_free, ambit_route_decision_kind, ambit_route_decision_limits,
    ambit_route_decision_location, ambit_route_decision_mirror, ambit_route_decision_mirror_count,
    ambit_route_decision_path, ambit_route_decision_request_edits,
    ambit_route_decision_response_edits, ambit_route_decision_retries_status,
    ambit_route_decision_route, ambit_route_decision_status, ambit_route_kind, ambit_route_limits,
    ambit_route_request, ambit_route_table, ambit_route_table_decide, ambit_route_table_free,
    ambit_route_table_from_yaml, ambit_route_table_len, ambit_route_table_warnings,
};
pub use runtime::{ambit_runtime, ambit_runtime_free, ambit_runtime_new};
pub use strings::{
    ambit_header, ambit_header_edits, ambit_header_edits_get, ambit_header_edits_len,
    ambit_header_op, ambit_str,
};
pub use waypoint::{
    ambit_waypoint, ambit_waypoint_free, ambit_waypoint_hbone_addr, ambit_waypoint_metrics,
    ambit_waypoint_options, ambit_waypoint_options_free, ambit_waypoint_options_new,
    ambit_waypoint_options_set_metrics, ambit_waypoint_options_set_network,
    ambit_waypoint_options_set_root_namespace, ambit_waypoint_reload, ambit_waypoint_reload_l7,
    ambit_waypoint_start, ambit_waypoint_warnings,
};

/// The library version, e.g. "0.1.0", as a NUL-terminated static string.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
