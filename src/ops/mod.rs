//! Operations: the HTTP endpoints for health, readiness and Prometheus metrics
//! ([`server`]), the metric names and recorder ([`metrics`]), and log output with secrets
//! redacted ([`logging`]).

pub mod logging;
pub mod metrics;
pub mod server;

pub use server::{OpsError, Readiness};
