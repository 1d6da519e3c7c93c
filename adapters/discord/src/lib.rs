//! The Discord adapter: anchorbot as a Discord bot on serenity's gateway. A mention opens a
//! thread that is the conversation, replies stream by post and throttled edits with a Stop
//! button, answers get 👍/👎, attachments are downloaded with size and host checks, and
//! `/status`, `/files`, `/clear` and `/help` answer ephemerally. It knows nothing about LLMs,
//! prompts or storage.
#![forbid(unsafe_code)]

pub mod arrival;
pub mod auth;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod identity;
pub mod inbound;
pub mod limits;
pub mod platform;
pub mod rest;
pub mod role;
pub mod route;
pub mod settings;
pub mod target;

pub use config::DiscordConfig;
pub use settings::DiscordSettings;

mod adapter;
pub use adapter::{intents, DiscordAdapter, DiscordError};
