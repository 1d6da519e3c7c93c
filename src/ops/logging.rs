//! Log output: plain text or JSON lines (`ANCHORBOT_LOG_FORMAT=json`) on standard error, or in
//! a log file for the interactive console ([`Logging::to_file`]), with secrets redacted in
//! either format. The redaction sits in the writer, after formatting, so it covers every field
//! of every event: a URL with a token in it or an `Authorization` header that found its way
//! into a message is caught as well as a configured secret. Beside the log, a layer collects
//! the warnings a console user must act on ([`super::notices`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use secrecy::ExposeSecret;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use anchorbot_platform::redact::TokenPattern;

use super::log_file::LogFile;
use super::notices::{NoticeLayer, Notices};
use crate::settings::Settings;
use anchorbot_platform::sync;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Bearer credentials in HTTP headers, whatever sends them.
const BEARER: &[TokenPattern] = &[
    TokenPattern::after("Bearer "),
    TokenPattern::after("bearer "),
];

/// Shortest configured secret that is replaced verbatim: shorter values would mangle ordinary
/// words, and are no secret worth the name.
const MIN_SECRET_CHARS: usize = 6;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `ANCHORBOT_LOG_FORMAT` holds something other than `text` or `json`.
#[derive(Debug, thiserror::Error)]
#[error("ANCHORBOT_LOG_FORMAT = {0:?}: use \"json\" or \"text\"")]
pub struct BadLogFormat(pub String);

impl LogFormat {
    /// Parses `ANCHORBOT_LOG_FORMAT`'s value; unset means text.
    pub fn parse(value: Option<&str>) -> Result<Self, BadLogFormat> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Self::Text),
            Some(v) if v.is_empty() || v == "text" => Ok(Self::Text),
            Some(v) if v == "json" => Ok(Self::Json),
            Some(v) => Err(BadLogFormat(v)),
        }
    }
}

/// Replaces secrets in log text. Cheap to clone; the configured secrets can be set after the
/// subscriber is installed (logging starts before the settings are read).
#[derive(Clone, Default)]
pub struct Redactor {
    /// Configured secret values, longest first (so a secret containing another goes first).
    secrets: Arc<RwLock<Vec<String>>>,
    /// The platforms' token shapes, found and replaced wherever they appear.
    patterns: Arc<[TokenPattern]>,
    /// Logs are JSON lines: messages for the operator go out as log events too.
    json: bool,
}

impl Redactor {
    /// A redactor for the token shapes `patterns` (and bearer credentials), with no configured
    /// secrets yet.
    pub fn new(patterns: Vec<TokenPattern>) -> Self {
        Self {
            patterns: patterns.into(),
            ..Self::default()
        }
    }

    /// Tells whoever started the process about a problem, redacted: a plain line on standard
    /// error (`warning: …`, `error: …`), or with JSON logs a log event, so that a log
    /// collector reading JSON lines gets no plain text.
    pub fn tell(&self, level: tracing::Level, text: &str) {
        let text = self.redact(text);
        if self.json {
            if level == tracing::Level::ERROR {
                tracing::error!("{text}");
            } else {
                tracing::warn!("{text}");
            }
        } else if level == tracing::Level::ERROR {
            eprintln!("error: {text}");
        } else {
            eprintln!("warning: {text}");
        }
    }

    /// Sets the exact values to redact.
    pub fn set_secrets(&self, secrets: impl IntoIterator<Item = String>) {
        let mut list: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        list.dedup();
        *sync::write(&self.secrets) = list;
    }

    /// `text` with every configured secret, platform token and bearer credential replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in sync::read(&self.secrets).iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        for pattern in self.patterns.iter().chain(BEARER) {
            out = replace_after(&out, pattern);
        }
        out
    }
}

/// Replaces the token that follows each of `pattern`'s markers (and, unless it keeps the
/// marker, the marker too). A token runs over the characters tokens are made of, and counts
/// only when it has the pattern's shape (so "Bot said" stays).
fn replace_after(text: &str, pattern: &TokenPattern) -> String {
    let marker = pattern.marker;
    let token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = &rest[i + marker.len()..];
        let len = after.find(|c: char| !token_char(c)).unwrap_or(after.len());
        let token = &after[..len];
        let credential = pattern.matches(token);
        out.push_str(&rest[..i]);
        if credential {
            if pattern.keep_marker {
                out.push_str(marker);
            }
            out.push_str(REDACTED);
            rest = &after[len..];
        } else {
            out.push_str(marker);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The secrets in `settings`: platform tokens, model API keys and the database password.
pub fn secrets_of(settings: &Settings) -> Vec<String> {
    settings
        .platform_secrets()
        .into_iter()
        .chain(
            [
                &settings.reasoning.api_key,
                &settings.vision.api_key,
                &settings.documents.embeddings.api_key,
            ]
            .into_iter()
            .flatten(),
        )
        .map(|s| s.expose_secret().to_string())
        .chain(
            settings
                .database_url
                .iter()
                .flat_map(crate::storage::url_secrets),
        )
        .collect()
}

/// A [`MakeWriter`] that redacts each formatted event before it reaches `inner`.
#[derive(Clone)]
pub struct RedactingWriter<W> {
    /// Where redacted lines go.
    inner: W,
    /// What to redact.
    redactor: Redactor,
}

impl<W> RedactingWriter<W> {
    /// Redacts with `redactor`, then writes to `inner`.
    pub fn new(inner: W, redactor: Redactor) -> Self {
        Self { inner, redactor }
    }
}

/// One event's bytes, redacted and written out when the formatter is done with it.
pub struct EventBuffer<W: Write> {
    /// The formatted event so far.
    buf: Vec<u8>,
    /// Where it goes.
    inner: W,
    /// What to redact.
    redactor: Redactor,
}

impl<W: Write> Write for EventBuffer<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = self.redactor.redact(&text);
        self.buf.clear();
        self.inner.write_all(clean.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for EventBuffer<W> {
    fn drop(&mut self) {
        // The formatter writes a whole event and drops the writer; a failing stderr has nowhere
        // to report to.
        let _ = self.flush();
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<W> {
    type Writer = EventBuffer<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer {
            buf: Vec::with_capacity(256),
            inner: self.inner.make_writer(),
            redactor: self.redactor.clone(),
        }
    }
}

/// Where formatted log lines go: standard error until a log file is set. Cheap to clone.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Option<LogFile>>>);

impl Output {
    /// Sends every later line to `file`.
    fn set_file(&self, file: LogFile) {
        *sync::lock(&self.0) = Some(file);
    }
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut file = sync::lock(&self.0);
        match file.as_mut().map(|f| f.append(bytes)) {
            Some(Ok(())) => {}
            // A log file that cannot be written (disk full) must not lose the line.
            Some(Err(_)) | None => std::io::stderr().write_all(bytes)?,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Output;

    fn make_writer(&'a self) -> Output {
        self.clone()
    }
}

/// The installed logging: the redactor, where lines go, and the console's notices.
#[derive(Clone)]
pub struct Logging {
    /// Redacts log lines and messages for the operator; fill it once the settings are read.
    pub redactor: Redactor,
    /// Where formatted lines go.
    output: Output,
    /// Warnings the console user must act on.
    notices: Notices,
}

impl Logging {
    /// Sends the log to `dir/anchorbot.log` (appended, rotated past a size cap) instead of
    /// standard error, and returns the file's path.
    pub fn to_file(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let file = LogFile::open(dir)?;
        let path = file.path().to_path_buf();
        self.output.set_file(file);
        Ok(path)
    }

    /// Starts collecting the warnings a console user must act on, and returns them.
    pub fn collect_notices(&self) -> &Notices {
        self.notices.enable();
        &self.notices
    }
}

/// Installs the global subscriber: `filter` (an `EnvFilter` directive), `format`, standard
/// error (until [`Logging::to_file`]), redaction of the token shapes `patterns` and by the returned [`Logging::redactor`] (fill it
/// once the settings are read), and the notice collector (idle until
/// [`Logging::collect_notices`]), which sees every WARN and ERROR whatever `filter` says.
pub fn init(filter: &str, format: LogFormat, ansi: bool, patterns: Vec<TokenPattern>) -> Logging {
    let redactor = Redactor {
        json: format == LogFormat::Json,
        ..Redactor::new(patterns)
    };
    let output = Output::default();
    let notices = Notices::default();
    let writer = RedactingWriter::new(output.clone(), redactor.clone());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
        LogFormat::Json => fmt.json().with_ansi(false).with_current_span(false).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(tracing_subscriber::EnvFilter::new(filter)))
        .with(NoticeLayer::new(notices.clone(), redactor.clone()).with_filter(LevelFilter::WARN))
        .init();
    Logging {
        redactor,
        output,
        notices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn configured_secrets_and_token_patterns_are_redacted() {
        let r = Redactor::new(crate::adapters::token_patterns());
        r.set_secrets(["sk-configured-key".to_string(), "abc".to_string()]);
        let line = "url=http://h/v1?key=sk-configured-key auth=\"Bearer eyJhbGc.iOi-J9\" \
                    slack=xoxb-123-456-abcDEF app=xapp-1-A0-99 word abc Bot said hi \
                    discord=Bot MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.mnopqrstuv";
        let clean = r.redact(line);
        for secret in [
            "sk-configured-key",
            "eyJhbGc",
            "xoxb-123",
            "abcDEF",
            "xapp-1",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4",
        ] {
            assert!(!clean.contains(secret), "{secret} left in {clean}");
        }
        assert!(clean.contains("Bearer [redacted]"), "{clean}");
        // Short values and ordinary words are left alone.
        assert!(clean.contains("word abc Bot said hi"), "{clean}");
    }

    #[test]
    fn every_configured_model_key_is_a_secret() {
        use secrecy::SecretString;
        let mut settings = Settings::default();
        settings.reasoning.api_key = Some(SecretString::from("sk-reasoning-key"));
        settings.vision.api_key = Some(SecretString::from("sk-vision-key"));
        settings.documents.embeddings.api_key = Some(SecretString::from("sk-embeddings-key"));
        let secrets = secrets_of(&settings);
        for key in ["sk-reasoning-key", "sk-vision-key", "sk-embeddings-key"] {
            assert!(secrets.iter().any(|s| s == key), "{key} is not redacted");
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn json_lines_parse_and_hold_no_secret() {
        let captured = Captured::default();
        let redactor = Redactor::new(crate::adapters::token_patterns());
        redactor.set_secrets(["discord-token-value-123".to_string()]);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingWriter::new(captured.clone(), redactor))
            .json()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                endpoint = "http://h/v1?t=discord-token-value-123",
                "probing"
            );
            tracing::warn!(
                header = "Authorization: Bearer sk-abc.def",
                "request failed"
            );
            tracing::error!("token xoxb-1-2-3 rejected");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert!(v["fields"]["message"].is_string(), "{line}");
        }
        for secret in ["discord-token-value-123", "sk-abc.def", "xoxb-1-2-3"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(text.matches(REDACTED).count(), 3, "{text}");
    }
}
