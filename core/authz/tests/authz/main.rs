//! ambit-authz against its shared case tables and its loaders.
//! One test binary (link time is the scarcest thing on 2 cores); one module per concern.

mod istio_table;
mod l7_loading;
mod l7_table;
mod loading;
