//! ambit-identity: the CA, rotation and chain verification.
//! One test binary (link time is the scarcest thing on 2 cores); one module per concern.

mod ca;
mod rotation;
mod verify;
