//! The same broken object is reported at the same place (file, object, field) by every way in:
//! the crate's own loader, a waypoint's L7 config, and the facade's `Error::location()` that the
//! C ABI and Python read. The fixtures in `testdata/config-errors/` carry the expected place on
//! their first line; the C and Python tests read the same files and the same line.

use std::path::PathBuf;

use ambit::authz::{DEFAULT_ROOT_NAMESPACE, L7Policies};
use ambit::config::ConfigError;
use ambit::route::RouteTable;
use ambit::run::{self, L7_TEXT};

/// The fixture's text and the place its first line (`# where: file | object | field`) names.
fn fixture(name: &str) -> (String, [String; 3]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/config-errors")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let first = text.lines().next().unwrap_or_default();
    let spec = first
        .strip_prefix("# where: ")
        .unwrap_or_else(|| panic!("{name}: first line is not `# where: …`"));
    let parts: Vec<String> = spec.split(" | ").map(str::to_owned).collect();
    let place: [String; 3] = parts
        .try_into()
        .unwrap_or_else(|_| panic!("{name}: `# where:` needs file | object | field"));
    (text, place)
}

fn place_of(e: &ConfigError) -> [String; 3] {
    [e.file.clone(), e.object.clone(), e.field.clone()]
}

/// Where the facade says a waypoint's L7 config is broken (what C and Python are handed).
fn waypoint_place(text: &str) -> [String; 3] {
    let e = match run::l7_config(text, L7_TEXT, DEFAULT_ROOT_NAMESPACE) {
        Ok(_) => panic!("the waypoint's L7 config accepted a broken object"),
        Err(e) => e,
    };
    let at = e.location().expect("a config error has a location");
    [at.file.into(), at.object.into(), at.field.into()]
}

#[test]
fn a_broken_httproute_is_placed_alike_by_the_route_loader_and_the_waypoint() {
    let (text, want) = fixture("httproute.yaml");
    let e = RouteTable::parse(&text, L7_TEXT).expect_err("route loader accepted it");
    assert_eq!(place_of(&e), want, "route loader: {e}");
    assert_eq!(waypoint_place(&text), want);
}

#[test]
fn a_broken_authorization_policy_is_placed_alike_by_the_policy_loader_and_the_waypoint() {
    let (text, want) = fixture("authorizationpolicy.yaml");
    let e = L7Policies::parse(&text, L7_TEXT, DEFAULT_ROOT_NAMESPACE)
        .expect_err("policy loader accepted it");
    assert_eq!(place_of(&e), want, "policy loader: {e}");
    assert_eq!(waypoint_place(&text), want);
}
