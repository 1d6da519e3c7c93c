//! anchorbot: a self-hosted AI teammate for Slack and Discord. Each conversation (thread,
//! channel, DM) has a durable context anchor in sled that is re-injected into every prompt;
//! answers stream from an OpenAI-compatible model server (vLLM in production).
//!
//! The engine here never names a platform: adapters implement the contract in
//! `anchorbot-platform` and hand it events keyed by conversation.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod app;
pub mod commands;
pub mod dispatch;
pub mod docs;
pub mod doctor;
pub mod engine;
pub mod llm;
pub mod ops;
pub mod replica;
pub mod retrieval;
pub mod rights;
pub mod settings;
pub mod storage;
pub mod store;

pub use app::{App, AppError};
pub use settings::Settings;
