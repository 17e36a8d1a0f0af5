//! The shared case tables under `testdata/` (one YAML file, `cases: [...]`, read by the Rust,
//! C and Python tests alike): where they are, how they are read, and how a runner reports
//! every failing case at once instead of stopping at the first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `testdata/<rel>` of this checkout.
pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

/// The cases of `testdata/<rel>`, at least `min` of them (a table that lost its cases must
/// not pass by running none).
pub fn read<T: DeserializeOwned>(rel: &str, min: usize) -> Vec<T> {
    #[derive(Deserialize)]
    struct Table<T> {
        cases: Vec<T>,
    }
    let path = testdata(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    let table: Table<T> = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(
        table.cases.len() >= min,
        "{rel}: only {} cases",
        table.cases.len()
    );
    table.cases
}

/// Runs every case and fails once, listing each case `run` refused with its name.
pub fn check_all<T>(
    cases: &[T],
    name: impl Fn(&T) -> &str,
    mut run: impl FnMut(&T) -> Result<(), String>,
) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run(c).err().map(|e| format!("{}: {e}", name(c))))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// One case of `testdata/authz/l4-cases.yaml`: Istio policies, the workload they protect, a
/// connection to it, and ztunnel's verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4Case {
    /// What the case shows.
    pub name: String,
    /// Istio YAML (AuthorizationPolicy, PeerAuthentication).
    pub policies: String,
    /// The destination workload.
    pub workload: L4Workload,
    /// The connection.
    pub connection: L4Connection,
    /// The verdict.
    pub expect: L4Expect,
}

/// The destination workload of an [`L4Case`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4Workload {
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The connection of an [`L4Case`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Connection {
    /// The client's principal (`td/ns/x/sa/y`); none for plaintext.
    pub source: Option<String>,
    /// The client's IP, when the case depends on it.
    pub source_ip: Option<IpAddr>,
    /// The destination port.
    pub port: u16,
}

/// The verdict of an [`L4Case`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Expect {
    /// Allowed.
    pub allow: bool,
    /// The deciding policy (`ns/name`), when one decides.
    pub policy: Option<String>,
    /// The verdict with the dry-run policies enforced too (only where some apply).
    #[serde(default)]
    pub dry_run: Option<L4DryRun>,
}

/// The would-be verdict of [`L4Expect::dry_run`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4DryRun {
    /// Would be allowed.
    pub allow: bool,
    /// The policy that would decide.
    pub policy: Option<String>,
}

/// The L4 table.
pub fn l4() -> Vec<L4Case> {
    read("authz/l4-cases.yaml", 30)
}
