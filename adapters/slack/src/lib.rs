//! The Slack adapter: anchorbot as a Slack AI app. It turns Socket Mode envelopes and Events
//! API requests into platform events, and replies with Slack's native streaming (or post plus
//! update), in Slack's own Markdown. It knows nothing about LLMs, prompts or storage.
#![forbid(unsafe_code)]

pub mod arrival;
pub mod auth;
pub mod client;
pub mod config;
pub mod doctor;
pub mod http;
pub mod inbound;
pub mod markdown;
pub mod names;
pub mod pace;
pub mod platform;
pub mod rate;
pub mod settings;
pub mod stream_errors;
pub mod target;
pub mod thread;
pub mod users;
pub mod work;

pub use config::SlackConfig;
pub use settings::SlackSettings;

mod adapter;
pub use adapter::{SlackAdapter, SlackError};
