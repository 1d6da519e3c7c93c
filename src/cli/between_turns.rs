//! The interactive console's warnings, shown between turns: a wrapper around the console
//! adapter whose event sink holds each message's receipt until the answer is complete, then
//! prints the warnings collected meanwhile as one dim line, before the console reads (and
//! prompts for) the next line. A log line can then never land inside the "thinking…" status or
//! the streamed answer.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anchorbot::ops::notices::Notices;
use anchorbot_platform::{
    Adapter, Arrival, CommandSpec, EventSink, InboundEvent, Platform, PlatformError, Receipt,
    Shutdown, SubmitError,
};
use async_trait::async_trait;

/// Prints the warnings collected so far, as one line on standard output (dim on a terminal).
#[derive(Clone)]
pub struct NoticeLine {
    /// The warnings.
    notices: Notices,
    /// The log file the line points to.
    log: PathBuf,
}

impl NoticeLine {
    /// Shows `notices`, pointing at `log` for details.
    pub fn new(notices: Notices, log: PathBuf) -> Self {
        Self { notices, log }
    }

    /// The log file the line points to.
    pub fn log(&self) -> &std::path::Path {
        &self.log
    }

    /// Prints the line, if there is anything to say.
    pub fn show(&self) {
        let Some(line) = self.notices.take_line(&self.log) else {
            return;
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe has no reader to warn.
        let _ = if out.is_terminal() {
            writeln!(out, "\x1b[2m{line}\x1b[0m")
        } else {
            writeln!(out, "{line}")
        };
        let _ = out.flush();
    }
}

/// An adapter that runs `inner` and shows the warnings between its turns.
pub struct BetweenTurns<A> {
    /// The console adapter.
    inner: A,
    /// What to show.
    line: NoticeLine,
}

impl<A> BetweenTurns<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, line: NoticeLine) -> Self {
        Self { inner, line }
    }
}

#[async_trait]
impl<A: Adapter> Adapter for BetweenTurns<A> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn platform(&self) -> Arc<dyn Platform> {
        self.inner.platform()
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        commands: &'static [CommandSpec],
        shutdown: Shutdown,
    ) -> Result<(), PlatformError> {
        let BetweenTurns { inner, line } = *self;
        // Warnings from start-up (a missing model file, an unreadable tokenizer) come first.
        line.show();
        let sink = Arc::new(TurnSink {
            inner: sink,
            line: line.clone(),
        });
        let result = Box::new(inner).run(sink, commands, shutdown).await;
        line.show();
        result
    }
}

/// The engine's sink, with each message's receipt resolved only after the warnings are shown.
struct TurnSink {
    /// The engine's sink.
    inner: Arc<dyn EventSink>,
    /// What to show.
    line: NoticeLine,
}

impl TurnSink {
    /// `receipt`, resolving once the warnings collected by then are shown. A shared file is
    /// read in the background while the next line is taken, so its receipt passes unchanged:
    /// printing when it resolves could cut into an answer.
    fn after_turn(&self, event_has_files: bool, receipt: Receipt) -> Receipt {
        if event_has_files {
            return receipt;
        }
        let (done, wrapped) = Receipt::new();
        let line = self.line.clone();
        tokio::spawn(async move {
            receipt.done().await;
            line.show();
            let _ = done.send(());
        });
        wrapped
    }
}

/// Whether `event` shares files.
fn has_files(event: &InboundEvent) -> bool {
    matches!(event, InboundEvent::Message(m) if !m.attachments.is_empty())
}

#[async_trait]
impl EventSink for TurnSink {
    fn submit(&self, event: InboundEvent) -> Result<Receipt, SubmitError> {
        let files = has_files(&event);
        let receipt = self.inner.submit(event)?;
        Ok(self.after_turn(files, receipt))
    }

    async fn accept(&self, event: InboundEvent) -> Result<Receipt, SubmitError> {
        let files = has_files(&event);
        let receipt = self.inner.accept(event).await?;
        Ok(self.after_turn(files, receipt))
    }

    async fn claim(&self, arrival: &Arrival) -> Result<(), SubmitError> {
        self.inner.claim(arrival).await
    }

    async fn mapped(
        &self,
        arrival: &Arrival,
        event: Option<InboundEvent>,
    ) -> Result<Option<Receipt>, SubmitError> {
        let files = event.as_ref().is_some_and(has_files);
        let receipt = self.inner.mapped(arrival, event).await?;
        Ok(receipt.map(|r| self.after_turn(files, r)))
    }

    fn arrivals(&self, platform: &str) -> Option<tokio::sync::mpsc::Receiver<Arrival>> {
        self.inner.arrivals(platform)
    }

    async fn lead(&self, role: &str, ttl: Duration) -> bool {
        self.inner.lead(role, ttl).await
    }

    async fn resign(&self, role: &str) {
        self.inner.resign(role).await
    }
}
