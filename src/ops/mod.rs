//! Operations: the HTTP endpoints for health, readiness and Prometheus metrics
//! ([`server`]), the metric names and recorder ([`metrics`]), log output with secrets
//! redacted ([`logging`]), the console's log file ([`log_file`]) and the warnings it shows
//! between turns ([`notices`]).

pub mod log_file;
pub mod logging;
pub mod metrics;
pub mod notices;
pub mod server;

pub use server::{OpsError, Readiness};
