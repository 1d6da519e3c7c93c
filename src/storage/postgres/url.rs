//! The database URL: checked to be a PostgreSQL one, shown without its password, and used to
//! scrub the password (and the URL itself) out of any text the database driver produces.

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

use crate::storage::StorageError;

/// A parsed `postgres://` URL: the driver's options, and what must never be shown.
pub(super) struct DbUrl {
    /// The connect options (they hold the password: never `Debug` them).
    pub options: PgConnectOptions,
    /// `postgres://user@host:port/database`, for logs, errors and `doctor`.
    pub display: String,
    /// Texts that must not appear in anything shown: the password (as written and decoded)
    /// and the whole URL.
    secrets: Vec<String>,
}

impl DbUrl {
    /// Parses `url`, refusing anything but a `postgres://` (or `postgresql://`) URL. The
    /// error names the scheme found, never the URL.
    pub fn parse(url: &SecretString) -> Result<Self, StorageError> {
        let raw = url.expose_secret().trim();
        let invalid = |reason: String| StorageError::Open {
            location: "database_url".into(),
            reason,
        };
        let parsed = url::Url::parse(raw).map_err(|e| {
            invalid(format!(
                "database_url is not a valid URL ({e}); expected postgres://user:password@host:5432/database"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!(
                "database_url must be a postgres:// URL, not {}://",
                parsed.scheme()
            )));
        }
        let mut secrets = vec![raw.to_string()];
        let written = parsed.password().map(str::to_string).into_iter().chain(
            parsed
                .query_pairs()
                .filter(|(k, _)| k == "password")
                .map(|(_, v)| v.into_owned()),
        );
        for password in written {
            let decoded = percent_decode(&password);
            secrets.push(password);
            secrets.push(decoded);
        }
        // Longest first, so a password inside the URL is not half-replaced before the URL is.
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let options = PgConnectOptions::from_str(raw)
            .map_err(|e| invalid(scrub_with(&e.to_string(), &secrets)))?
            .application_name("anchorbot");
        let display = display(&options);
        Ok(Self {
            options,
            display,
            secrets,
        })
    }

    /// The password (as written and decoded) and the whole URL.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `text` with the password and the URL replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        scrub_with(text, &self.secrets)
    }
}

/// `postgres://user@host:port/database` from the options (the password is never read).
fn display(o: &PgConnectOptions) -> String {
    let host = match o.get_socket() {
        Some(dir) => dir.display().to_string(),
        None if o.get_host().contains(':') => format!("[{}]", o.get_host()),
        None => o.get_host().to_string(),
    };
    let db = o.get_database().unwrap_or(o.get_username());
    format!(
        "postgres://{}@{host}:{}/{db}",
        o.get_username(),
        o.get_port()
    )
}

fn scrub_with(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

/// Percent-decoding, as the driver does for the password it sends.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<DbUrl, StorageError> {
        DbUrl::parse(&SecretString::from(url.to_string()))
    }

    #[test]
    fn display_drops_the_password() {
        let u = parse("postgres://anchorbot:s3cr%40t@db.example:5433/bot?sslmode=require").unwrap();
        assert_eq!(u.display, "postgres://anchorbot@db.example:5433/bot");
        let u = parse("postgresql://anchorbot:pw@db.example/bot").unwrap();
        assert_eq!(u.display, "postgres://anchorbot@db.example:5432/bot");
    }

    #[test]
    fn scrub_removes_the_password_as_written_and_decoded_and_the_url() {
        let raw = "postgres://anchorbot:s3cr%40t@db.example/bot";
        let u = parse(raw).unwrap();
        let text = format!("failed: {raw}; pw s3cr@t; enc s3cr%40t");
        let clean = u.scrub(&text);
        assert_eq!(clean, "failed: ***; pw ***; enc ***");
    }

    #[test]
    fn a_password_in_the_query_is_scrubbed_too() {
        let u = parse("postgres://anchorbot@db.example/bot?password=hunter2").unwrap();
        assert_eq!(u.scrub("x hunter2 y"), "x *** y");
        assert!(!u.display.contains("hunter2"));
    }

    #[test]
    fn other_schemes_are_refused_without_echoing_the_url() {
        let err = parse("mysql://root:topsecret@db.example/bot")
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("must be a postgres:// URL, not mysql://"),
            "{text}"
        );
        assert!(!text.contains("topsecret"), "{text}");
        let err = parse("not a url with topsecret").err().unwrap();
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
