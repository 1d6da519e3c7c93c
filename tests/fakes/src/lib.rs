//! Local fakes of the platforms anchorbot talks to, and generators of test documents.
//!
//! They live in one crate so that the 20-odd integration test binaries and the benchmarks share
//! one compiled copy instead of each compiling its own.
#![forbid(unsafe_code)]

pub mod discord;
pub mod discord_limits;
pub mod discord_spec;
pub mod fixtures;
pub mod model_servers;
pub mod rules;
pub mod slack;
pub mod slack_spec;
pub mod slack_tiers;
pub mod slack_users;
