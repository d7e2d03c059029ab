//! Helpers shared by integration tests.

pub mod secure_broker;
