//! The local console adapter: each line on standard input is a message in one named
//! conversation, replies stream to standard output, and the "thinking…" status goes to standard
//! error when it is a terminal. `/quit` (or end of input) ends the session.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::{
    Adapter, Attachment, Author, CommandSpec, ConversationKey, EventSink, FinalState, InboundEvent,
    IncomingMessage, Limits, MessageRef, Platform, PlatformError, ReplyTarget, Status,
};
use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Platform name in console conversation keys.
pub const PLATFORM: &str = "console";

/// Output side of the console: prints replies as they grow.
pub struct ConsolePlatform {
    /// Where replies go.
    out: Mutex<Box<dyn Write + Send>>,
    /// Text already printed for each message, so an edit prints only what is new.
    printed: Mutex<HashMap<String, String>>,
    /// Message id counter.
    seq: AtomicU64,
    /// Whether to show the transient status on standard error.
    show_status: bool,
    /// Whether a status is on screen and must be wiped before text.
    status_on_screen: Mutex<bool>,
    /// Whether reasoning text is shown (on standard error, dimmed on a terminal).
    show_reasoning: bool,
}

impl ConsolePlatform {
    /// Prints to standard output; shows the status only when standard error is a terminal.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()), std::io::stderr().is_terminal())
    }

    /// Prints to `out`.
    pub fn new(out: Box<dyn Write + Send>, show_status: bool) -> Self {
        Self {
            out: Mutex::new(out),
            printed: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            show_status,
            status_on_screen: Mutex::new(false),
            show_reasoning: false,
        }
    }

    /// Also shows the model's reasoning, apart from the answer, on standard error.
    pub fn with_reasoning(mut self, show: bool) -> Self {
        self.show_reasoning = show;
        self
    }

    fn write(&self, text: &str) {
        self.wipe_status();
        let mut out = self.out.lock().expect("console lock");
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn wipe_status(&self) {
        let mut on = self.status_on_screen.lock().expect("console lock");
        if *on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            *on = false;
        }
    }
}

#[async_trait]
impl Platform for ConsolePlatform {
    fn limits(&self) -> Limits {
        Limits {
            max_message_chars: usize::MAX / 2,
            min_edit_interval: Duration::ZERO,
        }
    }

    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
        let id = self.seq.fetch_add(1, Ordering::Relaxed).to_string();
        self.write(text);
        self.printed
            .lock()
            .expect("console lock")
            .insert(id.clone(), text.to_string());
        Ok(MessageRef {
            channel: to.channel.clone(),
            id,
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let before = self
            .printed
            .lock()
            .expect("console lock")
            .insert(message.id.clone(), text.to_string())
            .unwrap_or_default();
        // A terminal cannot rewrite scrolled text: print the new tail; ignore a text that only
        // lost trailing characters; print the whole text again if the beginning changed.
        if let Some(tail) = text.strip_prefix(before.as_str()) {
            self.write(tail);
        } else if !before.starts_with(text) {
            self.write(&format!("\n{text}"));
        }
        Ok(())
    }

    async fn ephemeral(
        &self,
        _to: &ReplyTarget,
        _user: &Author,
        text: &str,
    ) -> Result<(), PlatformError> {
        self.write(&format!("{text}\n"));
        Ok(())
    }

    async fn status(&self, _to: &ReplyTarget, status: &Status) -> Result<(), PlatformError> {
        if !self.show_status {
            return Ok(());
        }
        self.wipe_status();
        let text = match status {
            Status::Thinking => "thinking…".to_string(),
            Status::Progress(p) => p.clone(),
            Status::Clear => return Ok(()),
        };
        let _ = write!(std::io::stderr(), "{text}");
        *self.status_on_screen.lock().expect("console lock") = true;
        Ok(())
    }

    async fn reasoning(&self, _to: &ReplyTarget, delta: &str) -> Result<(), PlatformError> {
        if self.show_reasoning {
            self.wipe_status();
            let mut err = std::io::stderr().lock();
            let _ = if err.is_terminal() {
                write!(err, "\x1b[2m{delta}\x1b[0m")
            } else {
                write!(err, "{delta}")
            };
        }
        Ok(())
    }

    async fn finished(&self, _to: &ReplyTarget, _state: &FinalState) -> Result<(), PlatformError> {
        self.write("\n");
        Ok(())
    }

    async fn fetch(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, PlatformError> {
        let meta = tokio::fs::metadata(&attachment.locator)
            .await
            .map_err(|e| PlatformError::Rejected(format!("{}: {e}", attachment.locator)))?;
        if meta.len() > max_bytes {
            return Err(PlatformError::TooLarge {
                size: meta.len(),
                limit: max_bytes,
            });
        }
        tokio::fs::read(&attachment.locator)
            .await
            .map_err(|e| PlatformError::Rejected(format!("{}: {e}", attachment.locator)))
    }
}

/// The console adapter: one conversation, fed line by line.
pub struct Console<R> {
    /// The conversation the lines belong to.
    key: ConversationKey,
    /// Who is typing.
    user: Author,
    /// Where lines come from.
    input: R,
    /// Whether to print a prompt before each line.
    interactive: bool,
    /// The output side.
    platform: Arc<ConsolePlatform>,
}

impl<R: AsyncBufRead + Unpin + Send + 'static> Console<R> {
    /// A console for conversation `name`, reading `input`.
    pub fn new(
        name: &str,
        user: &str,
        input: R,
        interactive: bool,
        platform: Arc<ConsolePlatform>,
    ) -> Result<Self, anchorbot_platform::KeyError> {
        Ok(Self {
            key: ConversationKey::console(name)?,
            user: Author {
                id: format!("console:{user}"),
                display_name: user.to_string(),
            },
            input,
            interactive,
            platform,
        })
    }
}

/// Builds the event for `/upload PATH`: a message with the file as its attachment (read
/// lazily by [`ConsolePlatform::fetch`]).
pub fn upload_event(
    key: &ConversationKey,
    user: &Author,
    path: &str,
) -> Result<InboundEvent, String> {
    if path.is_empty() {
        return Err("Usage: /upload PATH".into());
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("Cannot upload {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("Cannot upload {path}: not a file"));
    }
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    let mut ev = message_event(key, user, "");
    if let InboundEvent::Message(m) = &mut ev {
        m.attachments.push(Attachment {
            name,
            declared_mime: None,
            size: meta.len(),
            locator: path.to_string(),
        });
    }
    Ok(ev)
}

/// Builds the event for one console message in conversation `key`.
pub fn message_event(key: &ConversationKey, user: &Author, text: &str) -> InboundEvent {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    InboundEvent::Message(IncomingMessage {
        key: key.clone(),
        event_id: format!(
            "{}-{}-{}",
            std::process::id(),
            nanos,
            SEQ.fetch_add(1, Ordering::Relaxed)
        ),
        author: user.clone(),
        text: text.to_string(),
        attachments: Vec::new(),
        reply_to: ReplyTarget {
            channel: key.channel().to_string(),
            ..ReplyTarget::default()
        },
    })
}

#[async_trait]
impl<R: AsyncBufRead + Unpin + Send + 'static> Adapter for Console<R> {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    fn platform(&self) -> Arc<dyn Platform> {
        self.platform.clone()
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        _commands: &'static [CommandSpec],
    ) -> Result<(), PlatformError> {
        let Console {
            key,
            user,
            input,
            interactive,
            platform,
        } = *self;
        let mut lines = input.lines();
        loop {
            if interactive {
                platform.write(&format!("{}> ", user.display_name));
            }
            let line = match lines.next_line().await {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    return Err(PlatformError::Transport(format!(
                        "reading standard input: {e}"
                    )))
                }
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if matches!(text, "/quit" | "/exit") {
                break;
            }
            let event = match text.strip_prefix("/upload") {
                Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                    match upload_event(&key, &user, rest.trim()) {
                        Ok(ev) => ev,
                        Err(msg) => {
                            platform.write(&format!("{msg}\n"));
                            continue;
                        }
                    }
                }
                _ => message_event(&key, &user, text),
            };
            // One message at a time, like a person at a prompt: wait for the reply.
            match sink.submit(event) {
                Ok(receipt) => receipt.done().await,
                Err(e) => platform.write(&format!("{e}\n")),
            }
        }
        Ok(())
    }
}
