//! The C ABI as C hosts and packagers use it.
//! One test binary (link time is the scarcest thing on 2 cores); one module per concern.

mod c_integration;
mod packaging;
