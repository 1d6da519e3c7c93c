//! The local console adapter: each line on standard input is a message in one named
//! conversation, replies stream to standard output, and the "thinking…" status goes to standard
//! error when it is a terminal. `/quit` (or end of input) ends the session.
//!
//! A line that is not valid UTF-8, or longer than [`MAX_LINE_BYTES`], is refused with a notice
//! on standard error and the session goes on. Lines are read as bytes and at most the cap is
//! held in memory, so neither kind of line reaches the engine or its tokenizer.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::sync;
use anchorbot_platform::{
    Adapter, Attachment, Author, CommandSpec, ConversationKey, EventSink, FinalState, InboundEvent,
    IncomingMessage, Limits, MessageRef, Platform, PlatformError, ReplyTarget, Status,
};
use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Platform name in console conversation keys.
pub const PLATFORM: &str = "console";

/// Longest line, in bytes and without its line ending, that the console accepts as a message.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Most uploads the console lets be read in the background at once; one more waits for the
/// oldest.
const UPLOADS_AT_ONCE: usize = 8;

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
    /// Where notices about refused input go (standard error unless redirected).
    notices: Mutex<Box<dyn Write + Send>>,
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
            notices: Mutex::new(Box::new(std::io::stderr())),
        }
    }

    /// Sends notices about refused input lines to `notices` instead of standard error.
    pub fn with_notices(mut self, notices: Box<dyn Write + Send>) -> Self {
        self.notices = Mutex::new(notices);
        self
    }

    /// Also shows the model's reasoning, apart from the answer, on standard error.
    pub fn with_reasoning(mut self, show: bool) -> Self {
        self.show_reasoning = show;
        self
    }

    fn write(&self, text: &str) {
        self.wipe_status();
        let mut out = sync::lock(&self.out);
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Tells the user, apart from the conversation, why their input was not sent.
    fn notice(&self, text: &str) {
        self.wipe_status();
        let mut notices = sync::lock(&self.notices);
        let _ = writeln!(notices, "{text}");
        let _ = notices.flush();
    }

    fn wipe_status(&self) {
        let mut on = sync::lock(&self.status_on_screen);
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
        sync::lock(&self.printed).insert(id.clone(), text.to_string());
        Ok(MessageRef {
            channel: to.channel.clone(),
            id,
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let before = sync::lock(&self.printed)
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
        *sync::lock(&self.status_on_screen) = true;
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

    async fn finished(
        &self,
        _to: &ReplyTarget,
        _state: &FinalState,
        _messages: &[anchorbot_platform::MessageRef],
    ) -> Result<(), PlatformError> {
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

/// One line of console input, as read.
#[derive(Debug)]
enum Line {
    /// A line of text, without its line ending.
    Text(String),
    /// A line over [`MAX_LINE_BYTES`]; it was skipped, not kept.
    TooLong,
    /// A line that is not UTF-8; `at` is the offset of its first bad byte.
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        at: usize,
    },
    /// The input has ended.
    End,
}

/// Reads the next line of `input` into `buf` (cleared first), holding at most the cap of
/// [`MAX_LINE_BYTES`] plus a `\r\n` ending in memory.
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    let limit = MAX_LINE_BYTES + 2;
    buf.clear();
    let read = (&mut *input)
        .take(limit as u64)
        .read_until(b'\n', buf)
        .await?;
    if read == 0 {
        return Ok(Line::End);
    }
    if buf.last() != Some(&b'\n') && buf.len() >= limit {
        // The rest of the line can be any length: drop it as it arrives rather than hold it.
        skip_line(input).await?;
        return Ok(Line::TooLong);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > MAX_LINE_BYTES {
        return Ok(Line::TooLong);
    }
    Ok(match String::from_utf8(std::mem::take(buf)) {
        Ok(text) => Line::Text(text),
        Err(e) => Line::NotUtf8 {
            at: e.utf8_error().valid_up_to(),
        },
    })
}

/// Discards `input` up to and including the next `\n`, one buffer at a time.
async fn skip_line<R: AsyncBufRead + Unpin>(input: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            input.consume(end + 1);
            return Ok(());
        }
        let len = chunk.len();
        input.consume(len);
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
        mentions_bot: true,
        from_bot: false,
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
        mut shutdown: anchorbot_platform::Shutdown,
    ) -> Result<(), PlatformError> {
        let Console {
            key,
            user,
            mut input,
            interactive,
            platform,
        } = *self;
        let mut buf = Vec::new();
        // Receipts of uploads still being read, oldest first.
        let mut uploads = std::collections::VecDeque::<anchorbot_platform::Receipt>::new();
        loop {
            if interactive {
                platform.write(&format!("{}> ", user.display_name));
            }
            let read = tokio::select! {
                // The engine's shutdown handles files still being read.
                _ = shutdown.wait() => return Ok(()),
                read = read_line(&mut input, &mut buf) => read,
            };
            let line = match read {
                Ok(Line::Text(l)) => l,
                Ok(Line::End) => break,
                // A bad line is the user's to fix, not the end of the session.
                Ok(Line::TooLong) => {
                    platform.notice(&format!(
                        "Not sent: that line is longer than {} KiB, the console's limit for \
                         one message. Use /upload PATH for a long text.",
                        MAX_LINE_BYTES / 1024
                    ));
                    continue;
                }
                Ok(Line::NotUtf8 { at }) => {
                    platform.notice(&format!(
                        "Not sent: that line is not valid UTF-8 (first bad byte at offset {at}). \
                         Send it as UTF-8 text."
                    ));
                    continue;
                }
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
            // One message at a time, like a person at a prompt: wait for the reply. A file is
            // read in the background (its summary line prints when it is in), so the next line
            // is taken at once.
            let upload = matches!(&event, InboundEvent::Message(m) if !m.attachments.is_empty());
            // Journaled first: a question typed here is answered even if the process dies
            // before it is (by the next `chat` or `run` on the same store).
            match sink.accept(event).await {
                Ok(receipt) if upload => {
                    if uploads.len() >= UPLOADS_AT_ONCE {
                        if let Some(oldest) = uploads.pop_front() {
                            oldest.done().await;
                        }
                    }
                    uploads.push_back(receipt);
                }
                Ok(receipt) => receipt.done().await,
                Err(e) => platform.write(&format!("{e}\n")),
            }
        }
        // End of input (or /quit): the files shared are read before the session ends, unless
        // anchorbot is stopped meanwhile.
        let read = async {
            for receipt in uploads {
                receipt.done().await;
            }
        };
        tokio::select! {
            _ = read => {}
            _ = shutdown.wait() => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorbot_platform::{Receipt, SubmitError};
    use tokio::io::{AsyncRead, BufReader};

    /// Records the text of every message and answers it at once.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl EventSink for Recorder {
        fn submit(&self, event: InboundEvent) -> Result<Receipt, SubmitError> {
            if let InboundEvent::Message(m) = event {
                self.0.lock().unwrap().push(m.text);
            }
            let (done, receipt) = Receipt::new();
            let _ = done.send(());
            Ok(receipt)
        }
    }

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Runs a console session over `input` (read through a small buffer, so long lines span
    /// many reads) and returns the messages sent, what went to the output and the notices.
    async fn session(
        input: impl AsyncRead + Unpin + Send + 'static,
    ) -> (Result<(), PlatformError>, Vec<String>, String, String) {
        let (out, notices) = (Shared::default(), Shared::default());
        let platform = Arc::new(
            ConsolePlatform::new(Box::new(out.clone()), false)
                .with_notices(Box::new(notices.clone())),
        );
        let reader = BufReader::with_capacity(64, input);
        let console = Console::new("t", "tester", reader, false, platform).unwrap();
        let sink = Arc::new(Recorder::default());
        let result = Box::new(console)
            .run(sink.clone(), &[], anchorbot_platform::Shutdown::new().1)
            .await;
        let sent = sink.0.lock().unwrap().clone();
        (result, sent, out.text(), notices.text())
    }

    #[tokio::test]
    async fn invalid_utf8_is_refused_with_a_notice_and_the_session_goes_on() {
        let input: &[u8] = b"first\nbad \xff\xfe line\r\nsecond\n\xc3\nlast without newline";
        let (result, sent, out, notices) = session(input).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, ["first", "second", "last without newline"]);
        assert_eq!(notices.matches("not valid UTF-8").count(), 2, "{notices}");
        assert!(notices.contains("offset 4"), "{notices}");
        assert!(
            !out.contains("UTF-8"),
            "notices stay off the reply output: {out}"
        );
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_refused_and_the_next_one_is_sent() {
        let long = tokio::io::repeat(b'x').take(16 * MAX_LINE_BYTES as u64);
        let input = b"before\n"
            .chain(long)
            .chain(&b"\nafter\n"[..])
            .chain(tokio::io::repeat(b'y').take(MAX_LINE_BYTES as u64 + 1));
        let (result, sent, _, notices) = session(input).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, ["before", "after"]);
        assert_eq!(
            notices.matches("longer than 64 KiB").count(),
            2,
            "{notices}"
        );
    }

    #[tokio::test]
    async fn a_line_at_the_cap_is_sent_whole() {
        let at_cap = "é".repeat(MAX_LINE_BYTES / 2);
        let input = format!("{at_cap}\r\n/quit\nnever sent\n").into_bytes();
        let (result, sent, _, notices) = session(std::io::Cursor::new(input)).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, [at_cap]);
        assert_eq!(notices, "");
    }
}
