//! Warnings the user of the interactive console must act on, collected from the log events so
//! the console can show them between turns while the log itself goes to a file.
//!
//! Which events count is decided from their metadata alone ([`must_act_on`]): WARN or ERROR
//! events of anchorbot's own crates, except those that carry a `retry_in` field. A retry is
//! followed by its outcome (an answer, or a final failure that is an event of its own), so the
//! user has nothing to do about the retry itself. Everything else at WARN or above (the model
//! server is unreachable, summarization gave up, a page could not be read) says something is
//! wrong that the user can fix or should know before relying on the answer.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::logging::Redactor;
use anchorbot_platform::sync;

/// The field whose presence marks an event as a retry under way.
pub const RETRYING_FIELD: &str = "retry_in";

/// Most notices held between two turns; more are only counted (the log file has them all).
const MAX_HELD: usize = 64;

/// Longest notice line, in characters.
const MAX_LINE_CHARS: usize = 240;

/// Whether an event with this metadata is one the console user must act on.
pub fn must_act_on(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN
        && meta.target().starts_with("anchorbot")
        && meta.fields().field(RETRYING_FIELD).is_none()
}

/// One warning for the user: the event's message and, when it has one, its `error` or
/// `reason` field, redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// WARN or ERROR.
    pub level: Level,
    /// What happened, on one line.
    pub text: String,
}

/// The notices collected since they were last taken. Cheap to clone; collects nothing until
/// [`Notices::enable`] (only the interactive console shows them).
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Whether events are collected.
    enabled: Arc<AtomicBool>,
    /// Notices held, oldest first, and how many more were dropped past [`MAX_HELD`].
    held: Arc<Mutex<(Vec<Notice>, usize)>>,
}

impl Notices {
    /// Starts collecting.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// Whether notices are collected.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    fn push(&self, notice: Notice) {
        let mut held = sync::lock(&self.held);
        if held.0.len() < MAX_HELD {
            held.0.push(notice);
        } else {
            held.1 += 1;
        }
    }

    /// Takes what was collected and renders it as ONE line naming the log file, or `None`
    /// when nothing was: the first error if there is one (else the first warning), and how
    /// many more there are.
    pub fn take_line(&self, log: &Path) -> Option<String> {
        let (list, dropped) = std::mem::take(&mut *sync::lock(&self.held));
        let first = list
            .iter()
            .find(|n| n.level == Level::ERROR)
            .or(list.first())?;
        let more = list.len() - 1 + dropped;
        let mut line = format!(
            "{}: {}",
            if first.level == Level::ERROR {
                "error"
            } else {
                "warning"
            },
            first.text
        );
        if line.chars().count() > MAX_LINE_CHARS {
            line = line.chars().take(MAX_LINE_CHARS - 1).collect::<String>() + "…";
        }
        if more > 0 {
            let _ = write!(
                line,
                " (and {more} more warning{})",
                if more == 1 { "" } else { "s" }
            );
        }
        let _ = write!(line, " — details in {}", log.display());
        Some(line)
    }
}

/// The layer that fills [`Notices`] from log events.
pub struct NoticeLayer {
    /// Where notices go.
    notices: Notices,
    /// What to hide in their text.
    redactor: Redactor,
}

impl NoticeLayer {
    /// Collects into `notices`, redacting with `redactor`.
    pub fn new(notices: Notices, redactor: Redactor) -> Self {
        Self { notices, redactor }
    }
}

impl<S: Subscriber> Layer<S> for NoticeLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !self.notices.is_enabled() || !must_act_on(event.metadata()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut text = fields.message;
        if let Some(why) = fields.error.or(fields.reason) {
            let _ = write!(text, ": {why}");
        }
        let text = self
            .redactor
            .redact(&text)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        self.notices.push(Notice {
            level: *event.metadata().level(),
            text,
        });
    }
}

/// The fields a notice shows.
#[derive(Default)]
struct Fields {
    /// The event's message.
    message: String,
    /// Its `error` field.
    error: Option<String>,
    /// Its `reason` field.
    reason: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.keep(field, format!("{value:?}"));
    }
}

impl Fields {
    fn keep(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "error" => self.error = Some(value),
            "reason" => self.reason = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn collect(f: impl FnOnce()) -> Notices {
        let notices = Notices::default();
        notices.enable();
        let redactor = Redactor::default();
        redactor.set_secrets(["sk-very-secret".to_string()]);
        let subscriber =
            tracing_subscriber::registry().with(NoticeLayer::new(notices.clone(), redactor));
        tracing::subscriber::with_default(subscriber, f);
        notices
    }

    #[test]
    fn warnings_to_act_on_are_kept_and_retries_and_info_are_not() {
        let notices = collect(|| {
            tracing::info!("answered");
            tracing::warn!(retry_in = ?std::time::Duration::from_millis(10), error = "503", "model request failed; retrying");
            tracing::warn!(target: "hyper", "a dependency's warning");
            tracing::warn!(
                error = "cannot connect to http://x?key=sk-very-secret",
                "endpoint failed"
            );
            tracing::warn!(reason = %"no SUMMARY part", "summarization failed; turns kept verbatim");
        });
        let line = notices
            .take_line(Path::new("/d/logs/anchorbot.log"))
            .unwrap();
        assert_eq!(
            line,
            "warning: endpoint failed: cannot connect to http://x?key=[redacted] \
             (and 1 more warning) — details in /d/logs/anchorbot.log"
        );
        // Taken: nothing is shown twice.
        assert_eq!(notices.take_line(Path::new("/x")), None);
    }

    #[test]
    fn an_error_is_the_one_shown_and_the_line_stays_one_line() {
        let notices = collect(|| {
            tracing::warn!("first\nwarning");
            tracing::error!(error = "disk full", "turn not saved");
        });
        let line = notices.take_line(Path::new("/l")).unwrap();
        assert_eq!(
            line,
            "error: turn not saved: disk full (and 1 more warning) — details in /l"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn nothing_is_collected_until_enabled() {
        let notices = Notices::default();
        let subscriber = tracing_subscriber::registry()
            .with(NoticeLayer::new(notices.clone(), Redactor::default()));
        tracing::subscriber::with_default(subscriber, || tracing::warn!("early"));
        assert_eq!(notices.take_line(Path::new("/l")), None);
    }
}
