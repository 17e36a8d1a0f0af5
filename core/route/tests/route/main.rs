//! ambit-route: the shared case table and the table's API.
//! One test binary (link time is the scarcest thing on 2 cores); one module per concern.

mod api;
mod cases;
mod conformance;
