//! The example binaries as a user runs them.
//! One test binary (link time is the scarcest thing on 2 cores); one module per concern.

mod ambitctl;
mod daemons;
mod netns;
