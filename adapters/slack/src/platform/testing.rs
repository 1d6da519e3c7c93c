//! Test support for the platform's modules: a platform pointed nowhere or at a local fake Web
//! API, reply targets, and the fake server that records what it was sent.

use std::sync::{Arc, Mutex};

use anchorbot_platform::ReplyTarget;
use secrecy::SecretString;
use serde_json::Value;

use super::SlackPlatform;
use crate::client::Api;
use crate::target::SlackTarget;
use crate::SlackConfig;
use anchorbot_platform::sync::lock;

pub(super) fn platform() -> SlackPlatform {
    let mut cfg = SlackConfig::new(SecretString::from("xoxb-test-token"));
    cfg.api_url = "http://127.0.0.1:9/api".into();
    let api = Api::new(&cfg).expect("client");
    SlackPlatform::new(cfg, api)
}

pub(super) fn target(channel: &str, thread: Option<&str>, t: SlackTarget) -> ReplyTarget {
    t.into_target(channel, thread, Some("1.0"))
}

pub(super) fn slack_target(team: &str) -> SlackTarget {
    SlackTarget {
        team: team.into(),
        user: "U1".into(),
        ..Default::default()
    }
}

/// A request the local server received: path, `Authorization` header, JSON body.
pub(super) type Seen = (String, Option<String>, Value);

/// A local HTTP server that answers every request with `respond(path)`: status, extra
/// headers and body, sent without `Content-Length` (to the end of the connection) when
/// the headers include `x-no-length`.
pub(super) async fn serve<F>(respond: F) -> (String, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(&str) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_string())
                    })
                };
                let length: usize = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    // client.rs's `api_base` ends in a slash and slack-morphism adds
                    // another: `/api//chat.postMessage`.
                    .replace("//", "/");
                let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                lock(&log).push((path.clone(), header("authorization"), body));
                let (status, headers, body) = respond(&path);
                let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                let mut sized = true;
                for (k, v) in headers {
                    if k == "x-no-length" {
                        sized = false;
                    } else {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                }
                if sized {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = socket.write_all(out.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (base, seen)
}

/// A fake Web API: `ok` with a ts for every method, except `unsupported` ones.
pub(super) fn web_api(
    unsupported: &'static [&'static str],
) -> impl Fn(&str) -> (u16, Vec<(&'static str, String)>, String) {
    move |path: &str| {
        let json = vec![("Content-Type", "application/json".to_string())];
        let method = path.trim_start_matches("/api/");
        if unsupported.contains(&method) {
            return (200, json, r#"{"ok":false,"error":"unknown_method"}"#.into());
        }
        (200, json, r#"{"ok":true,"channel":"C1","ts":"2.0"}"#.into())
    }
}

pub(super) fn platform_at(base: &str) -> SlackPlatform {
    let mut cfg = SlackConfig::new(SecretString::from("xoxb-test-token"));
    cfg.api_url = format!("{base}/api");
    let api = Api::new(&cfg).expect("client");
    SlackPlatform::new(cfg, api)
}

pub(super) fn methods(seen: &Mutex<Vec<Seen>>) -> Vec<String> {
    lock(seen).iter().map(|(p, _, _)| p.clone()).collect()
}

pub(super) fn body_of(seen: &Mutex<Vec<Seen>>, path: &str) -> Value {
    lock(seen)
        .iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, _, b)| b.clone())
        .unwrap_or(Value::Null)
}
