//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod agent;
pub mod certs;
pub mod device;
pub mod docker;
pub mod edgehub;
pub mod elf;
pub mod routes;
pub mod schema;
pub mod workload;
