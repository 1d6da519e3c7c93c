//! The file download: an attachment fetched with the bot token, which goes only to
//! `files.slack.com` or to the origin of `api_url`, never on a redirect, within a size cap,
//! refusing Slack's HTML sign-in page. Also builds the HTTPS client it (and `response_url`
//! posts) use.

use std::time::Duration;

use anchorbot_platform::{Attachment, PlatformError};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use url::Url;

use super::errors::http_status_error;
use super::SlackPlatform;

/// The host Slack serves `url_private_download` from; the bot token may go there.
pub const FILE_HOST: &str = "files.slack.com";

/// A whole file download, headers and body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The HTTPS client for file downloads and `response_url` posts. hyper's client never
/// follows redirects, which is what the token needs.
pub(crate) type WebClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

impl SlackPlatform {
    /// The download client, or why there is none.
    pub(super) fn web_client(&self) -> Result<&WebClient, PlatformError> {
        self.web
            .as_ref()
            .as_ref()
            .map_err(|e| PlatformError::Transport(e.clone()))
    }

    /// Downloads `url` with the bot token, refusing more than `max_bytes`.
    async fn download(&self, url: &Url, max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        let web = self.web_client()?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.cfg.bot_token.expose_secret()))
                .map_err(|_| {
                    PlatformError::Rejected("the bot token is not a valid header value".into())
                })?;
        auth.set_sensitive(true);
        let request = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .header(AUTHORIZATION, auth)
            .body(Full::default())
            .map_err(|_| PlatformError::Rejected("the file's address is not usable".into()))?;
        let response = web
            .request(request)
            .await
            .map_err(|e| PlatformError::Transport(format!("file download: {e}")))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(PlatformError::Rejected(format!(
                "the file host answered {status} (a redirect), which is not followed with the bot token"
            )));
        }
        if !status.is_success() {
            return Err(http_status_error("the file host", status, &response));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if is_html(content_type) {
            return Err(PlatformError::Rejected(
                "Slack answered with a sign-in page instead of the file; check that the app \
                 has the files:read scope and is in the channel"
                    .into(),
            ));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        anchorbot_platform::download::read_capped(
            response.into_body().into_data_stream(),
            declared,
            max_bytes,
            |e| PlatformError::Transport(format!("file download: {e}")),
        )
        .await
    }

    /// Downloads `attachment` with the bot token, refusing more than `max_bytes` (the
    /// platform's [`anchorbot_platform::Platform::fetch`]).
    pub(super) async fn fetch_file(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, PlatformError> {
        let url = Url::parse(&attachment.locator)
            .map_err(|_| PlatformError::Rejected("the file's address is not a URL".into()))?;
        if !token_allowed(&url, &self.cfg.api_url) {
            return Err(PlatformError::Rejected(format!(
                "files are downloaded only from {FILE_HOST} or the Slack API's host, not from {}",
                url.host_str().unwrap_or("an address without a host")
            )));
        }
        if attachment.size > max_bytes {
            return Err(PlatformError::TooLarge {
                size: attachment.size,
                limit: max_bytes,
            });
        }
        tokio::time::timeout(FETCH_TIMEOUT, self.download(&url, max_bytes))
            .await
            .map_err(|_| PlatformError::Transport("the file download timed out".into()))?
    }
}

/// Builds the download client.
pub(crate) fn web_client() -> Result<WebClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(crate::client::tls_provider())
        .map_err(|e| format!("cannot load the system's TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https))
}

/// Whether the bot token may be sent to `url`: `https://files.slack.com`, or the origin
/// (scheme, host and port) of `api_url`.
pub fn token_allowed(url: &Url, api_url: &str) -> bool {
    if url.scheme() == "https"
        && url.host_str() == Some(FILE_HOST)
        && url.port_or_known_default() == Some(443)
    {
        return true;
    }
    let Ok(api) = Url::parse(api_url) else {
        return false;
    };
    url.host_str().is_some()
        && url.scheme() == api.scheme()
        && url.host_str() == api.host_str()
        && url.port_or_known_default() == api.port_or_known_default()
}

/// Whether a `Content-Type` is HTML.
fn is_html(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
}

#[cfg(test)]
mod tests {
    use anchorbot_platform::Platform;

    use super::*;
    use crate::platform::testing::{platform, platform_at, serve};
    use anchorbot_platform::sync::lock;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn the_token_goes_only_to_the_file_host_and_the_api_origin() {
        let api = "https://slack.com/api";
        assert!(token_allowed(
            &url("https://files.slack.com/files-pri/T1-F1/download/a.pdf"),
            api
        ));
        assert!(token_allowed(&url("https://slack.com/files/x"), api));
        for foreign in [
            "http://files.slack.com/files-pri/a",
            "https://files.slack.com:8443/a",
            "https://files.slack.com.evil.example/a",
            "https://evil.example/files.slack.com/a",
            "https://evil.example/?u=https://files.slack.com/",
            "https://api.slack.com/a",
            "http://slack.com/a",
            "file:///etc/passwd",
        ] {
            assert!(!token_allowed(&url(foreign), api), "{foreign}");
        }
        let fake = "http://127.0.0.1:8080/api/";
        assert!(token_allowed(&url("http://127.0.0.1:8080/files/a"), fake));
        assert!(!token_allowed(&url("http://127.0.0.1:8081/files/a"), fake));
        assert!(!token_allowed(&url("http://localhost:8080/files/a"), fake));
        assert!(!token_allowed(&url("http://127.0.0.1:8080/a"), "not a url"));
    }

    #[tokio::test]
    async fn a_foreign_file_is_refused_before_any_request() {
        let p = platform();
        let file = Attachment {
            name: "a.pdf".into(),
            declared_mime: None,
            size: 10,
            locator: "https://evil.example/a.pdf".into(),
        };
        match p.fetch(&file, 100).await {
            Err(PlatformError::Rejected(why)) => {
                assert!(why.contains("evil.example"), "{why}");
                assert!(!why.contains("xoxb"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let not_a_url = Attachment {
            locator: "F123".into(),
            ..file
        };
        assert!(matches!(
            p.fetch(&not_a_url, 100).await,
            Err(PlatformError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn the_declared_size_is_checked_before_downloading() {
        let p = platform();
        let file = Attachment {
            name: "big.pdf".into(),
            declared_mime: None,
            size: 5_000,
            locator: "https://files.slack.com/files-pri/T-F/download/big.pdf".into(),
        };
        match p.fetch(&file, 1_000).await {
            Err(PlatformError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (5_000, 1_000))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn html_is_the_sign_in_page() {
        assert!(is_html("text/html"));
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("TEXT/HTML"));
        assert!(!is_html("application/pdf"));
        assert!(!is_html("text/plain"));
        assert!(!is_html(""));
    }

    #[tokio::test]
    async fn downloads_send_the_token_and_refuse_redirects_html_and_excess() {
        let (base, seen) = serve(|path: &str| match path {
            "/files/ok" => (
                200,
                vec![("Content-Type", "application/pdf".into())],
                "%PDF-1.4".into(),
            ),
            "/files/moved" => (
                302,
                vec![("Location", "https://evil.example/x".into())],
                String::new(),
            ),
            "/files/login" => (
                200,
                vec![("Content-Type", "text/html; charset=utf-8".into())],
                "<html>".into(),
            ),
            "/files/endless" => (200, vec![("x-no-length", String::new())], "x".repeat(5_000)),
            "/files/gone" => (404, vec![], String::new()),
            _ => (500, vec![], String::new()),
        })
        .await;
        let p = platform_at(&base);
        let file = |path: &str, size: u64| Attachment {
            name: "a.pdf".into(),
            declared_mime: None,
            size,
            locator: format!("{base}{path}"),
        };
        assert_eq!(
            p.fetch(&file("/files/ok", 8), 100).await.expect("bytes"),
            b"%PDF-1.4"
        );
        assert_eq!(lock(&seen)[0].1.as_deref(), Some("Bearer xoxb-test-token"));
        assert!(matches!(
            p.fetch(&file("/files/moved", 8), 100).await,
            Err(PlatformError::Rejected(why)) if why.contains("redirect")
        ));
        assert!(matches!(
            p.fetch(&file("/files/login", 8), 100).await,
            Err(PlatformError::Rejected(why)) if why.contains("sign-in")
        ));
        assert!(matches!(
            p.fetch(&file("/files/endless", 8), 1_000).await,
            Err(PlatformError::TooLarge { limit: 1_000, .. })
        ));
        assert!(matches!(
            p.fetch(&file("/files/gone", 8), 100).await,
            Err(PlatformError::Rejected(why)) if why.contains("404")
        ));
        assert_eq!(lock(&seen).len(), 5, "no request followed the redirect");
    }
}
