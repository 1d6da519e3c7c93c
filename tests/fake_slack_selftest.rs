//! Checks the fake Slack (`tests/fakes/src/slack.rs`) with plain HTTP and WebSocket clients:
//! tokens, limits, 429s, streaming, threads, files, Socket Mode's hello, acks, retries and
//! disconnects, and the spec checker (`slack_spec.rs`) refusing what Slack's published spec
//! refuses.

use std::time::Duration;

use anchorbot_fakes::slack::{FakeSlack, FakeSlackConfig, ForeignHost};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

async fn call(fake: &FakeSlack, method: &str, token: Option<&str>, body: Value) -> Value {
    let (status, _, v) = call_full(fake, method, token, body).await;
    assert_eq!(status, 200, "{method}");
    v
}

async fn call_full(
    fake: &FakeSlack,
    method: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/{method}", fake.api_url()))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// A read method as the official SDKs call it: GET with query parameters and a bearer token.
async fn get(fake: &FakeSlack, method: &str, query: &[(&str, &str)]) -> Value {
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let resp = reqwest::Client::new()
        .get(format!("{}/{method}?{}", fake.api_url(), query.join("&")))
        .header("authorization", format!("Bearer {}", bot(fake)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{method}");
    resp.json().await.unwrap()
}

/// The rules the fake recorded since the last call, taken (so the fake's drop check passes).
fn broken(fake: &FakeSlack) -> Vec<String> {
    fake.violations()
        .take()
        .into_iter()
        .map(|v| v.rule)
        .collect()
}

fn bot(fake: &FakeSlack) -> String {
    fake.config().bot_token.clone()
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame within 5 s")
            .expect("socket ended")
            .expect("socket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn connect(fake: &FakeSlack) -> Ws {
    let app = fake.config().app_token.clone();
    let open = call(fake, "apps.connections.open", Some(&app), json!({})).await;
    assert_eq!(open["ok"], true, "{open}");
    let url = open["url"].as_str().unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

#[tokio::test]
async fn tokens_are_checked_as_slack_does() {
    let fake = FakeSlack::start_default().await;
    let v = call(&fake, "auth.test", None, json!({})).await;
    assert_eq!(v, json!({"ok": false, "error": "not_authed"}));
    let v = call(&fake, "auth.test", Some("xoxb-wrong"), json!({})).await;
    assert_eq!(v, json!({"ok": false, "error": "invalid_auth"}));

    let (status, headers, v) = call_full(&fake, "auth.test", Some(&bot(&fake)), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true);
    for k in ["url", "team", "user", "team_id", "user_id", "bot_id"] {
        assert!(v[k].is_string(), "auth.test lacks {k}: {v}");
    }
    assert_eq!(v["user_id"], "UBOT");
    let scopes = headers["x-oauth-scopes"].to_str().unwrap();
    assert!(scopes.split(',').any(|s| s == "chat:write"), "{scopes}");

    // The app-level token is only for apps.connections.open, and the bot token is not.
    let app = fake.config().app_token.clone();
    let v = call(
        &fake,
        "chat.postMessage",
        Some(&app),
        json!({"channel": "C1", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "not_allowed_token_type");
    let v = call(&fake, "apps.connections.open", Some(&bot(&fake)), json!({})).await;
    assert_eq!(v["error"], "not_allowed_token_type");

    let v = call(&fake, "chat.nonsense", Some(&bot(&fake)), json!({})).await;
    assert_eq!(v, json!({"ok": false, "error": "unknown_method"}));
    let rules = broken(&fake);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules[0].contains("auth.test requires `token`"), "{rules:?}");
    assert!(
        rules[1].contains("`chat.nonsense` is not a Web API method"),
        "{rules:?}"
    );

    // A form body with the token in it, and `blocks` as a JSON string.
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]);
    let form = format!(
        "token={}&channel=C1&text=fallback&blocks={}",
        bot(&fake),
        urlencode(&blocks.to_string())
    );
    let v: Value = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let m = fake.find_message("C1", v["ts"].as_str().unwrap()).unwrap();
    assert_eq!(m.blocks, blocks.as_array().unwrap().clone());
    assert_eq!(m.visible_text(), "*hi*");
    let last = fake.calls().pop().unwrap();
    assert_eq!(last.token.as_deref(), Some(bot(&fake).as_str()));
    assert_eq!(last.args["blocks"], blocks);

    // Missing scope.
    let mut cfg = FakeSlackConfig::default();
    cfg.scopes.retain(|s| s != "reactions:write");
    let narrow = FakeSlack::start(cfg).await;
    let v = call(
        &narrow,
        "reactions.add",
        Some(&bot(&narrow)),
        json!({"channel": "C1", "timestamp": "1.2", "name": "eyes"}),
    )
    .await;
    assert_eq!(v["error"], "missing_scope");
    assert_eq!(v["needed"], "reactions:write");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn message_limits_and_ts() {
    // Many posts to one channel at once: past chat.postMessage's per-channel tier, which is
    // not what this test is about.
    let fake = FakeSlack::start(FakeSlackConfig {
        tiers: false,
        ..Default::default()
    })
    .await;
    let t = bot(&fake);
    let a = call(
        &fake,
        "chat.postMessage",
        Some(&t),
        json!({"channel": "C1", "text": "one"}),
    )
    .await;
    let b = call(
        &fake,
        "chat.postMessage",
        Some(&t),
        json!({"channel": "C1", "text": "two"}),
    )
    .await;
    assert_eq!(a["ts"], "1712345678.000100");
    assert!(b["ts"].as_str().unwrap() > a["ts"].as_str().unwrap());
    assert_eq!(a["message"]["bot_id"], "BBOT");

    let long = "x".repeat(40_001);
    let v = call(
        &fake,
        "chat.postMessage",
        Some(&t),
        json!({"channel": "C1", "text": long}),
    )
    .await;
    assert_eq!(v["error"], "msg_too_long");
    let v = call(
        &fake,
        "chat.update",
        Some(&t),
        json!({"channel": "C1", "ts": a["ts"], "text": long}),
    )
    .await;
    assert_eq!(v["error"], "msg_too_long");

    let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    let v = call(
        &fake,
        "chat.postMessage",
        Some(&t),
        json!({"channel": "C1", "text": "x", "blocks": many}),
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks");
    let big = json!([{"type": "markdown", "text": "y".repeat(12_001)}]);
    let v = call(
        &fake,
        "chat.postMessage",
        Some(&t),
        json!({"channel": "C1", "text": "x", "blocks": big}),
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks");
    let v = call(
        &fake,
        "chat.postMessage",
        Some(&t),
        json!({"channel": "C1"}),
    )
    .await;
    assert_eq!(v["error"], "no_text");
    // Each breach is a broken rule, not only an error answer.
    let rules = broken(&fake);
    assert_eq!(rules.len(), 4, "{rules:?}");
    assert!(
        rules[0].contains("chat.postMessage `text` is limited to 40000"),
        "{rules:?}"
    );
    assert!(
        rules[1].contains("chat.update `text` is limited to 40000"),
        "{rules:?}"
    );
    assert!(rules[2].contains("at most 50 blocks"), "{rules:?}");
    assert!(
        rules[3].contains("`markdown` blocks hold at most 12000"),
        "{rules:?}"
    );

    // Update keeps blocks when they are omitted; the user sees the blocks, not `text`.
    let md = json!([{"type": "markdown", "text": "**final**"}]);
    let v = call(
        &fake,
        "chat.update",
        Some(&t),
        json!({"channel": "C1", "ts": a["ts"], "text": "fb", "blocks": md}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let v = call(
        &fake,
        "chat.update",
        Some(&t),
        json!({"channel": "C1", "ts": a["ts"], "text": "fb2"}),
    )
    .await;
    assert_eq!(v["ok"], true);
    let m = fake.find_message("C1", a["ts"].as_str().unwrap()).unwrap();
    assert_eq!((m.text.as_str(), m.edits), ("fb2", 2));
    assert_eq!(m.visible_text(), "**final**");

    let v = call(
        &fake,
        "chat.delete",
        Some(&t),
        json!({"channel": "C1", "ts": b["ts"]}),
    )
    .await;
    assert_eq!(v["ok"], true);
    assert_eq!(fake.channel_messages("C1").len(), 1);
    let v = call(
        &fake,
        "chat.delete",
        Some(&t),
        json!({"channel": "C1", "ts": b["ts"]}),
    )
    .await;
    assert_eq!(v["error"], "message_not_found");

    let v = call(
        &fake,
        "chat.postEphemeral",
        Some(&t),
        json!({"channel": "C1", "user": "U1", "text": "only you"}),
    )
    .await;
    assert!(v["message_ts"].is_string());
    assert_eq!(fake.ephemerals()[0].user, "U1");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let fake = FakeSlack::start_default().await;
    fake.rate_limit("chat.update", 1, 1);
    let body = json!({"channel": "C1", "ts": "1.1", "text": "x"});
    let (status, headers, v) =
        call_full(&fake, "chat.update", Some(&bot(&fake)), body.clone()).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(v["ok"], false);
    // The method is held until Retry-After has passed; after it the call goes through.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _, v) = call_full(&fake, "chat.update", Some(&bot(&fake)), body).await;
    assert_eq!(status, 200);
    assert_eq!(v["error"], "message_not_found");
    let calls = fake.calls_to("chat.update");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_secs(1));
    assert_eq!(calls[1].args["text"], "x");
}

#[tokio::test]
async fn streams_accumulate_into_one_message() {
    let fake = FakeSlack::start_default().await;
    let t = bot(&fake);
    let parent = fake.seed_thread("C1", &[("U1", "question")])[0].clone();
    let v = call(
        &fake,
        "chat.startStream",
        Some(&t),
        json!({"channel": "C1", "thread_ts": parent}),
    )
    .await;
    assert_eq!(
        v["error"], "invalid_arguments",
        "outside a DM a recipient is needed"
    );
    let v = call(
        &fake,
        "chat.startStream",
        Some(&t),
        json!({"channel": "C1", "thread_ts": parent, "recipient_user_id": "U1",
               "recipient_team_id": "T1", "markdown_text": "Hel"}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let ts = v["ts"].as_str().unwrap().to_string();
    for piece in ["lo ", "**world**"] {
        let v = call(
            &fake,
            "chat.appendStream",
            Some(&t),
            json!({"channel": "C1", "ts": ts, "markdown_text": piece}),
        )
        .await;
        assert_eq!(v["ok"], true, "{v}");
    }
    let v = call(
        &fake,
        "chat.appendStream",
        Some(&t),
        json!({"channel": "C1", "ts": ts, "markdown_text": "z".repeat(12_001)}),
    )
    .await;
    assert_eq!(v["error"], "msg_too_long");
    let rules = broken(&fake);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        rules[0].contains("`markdown_text` is limited to 12000"),
        "{rules:?}"
    );
    let feedback = json!([{"type": "context_actions", "block_id": "fb1", "elements": [{
        "type": "feedback_buttons", "action_id": "feedback",
        "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "good"},
        "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": "bad"}}]}]);
    let v = call(
        &fake,
        "chat.stopStream",
        Some(&t),
        json!({"channel": "C1", "ts": ts, "markdown_text": "!", "blocks": feedback}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let v = call(
        &fake,
        "chat.appendStream",
        Some(&t),
        json!({"channel": "C1", "ts": ts, "markdown_text": "late"}),
    )
    .await;
    assert_eq!(v["error"], "message_not_in_streaming_state");

    let thread = fake.thread_messages("C1", &parent);
    assert_eq!(thread.len(), 2);
    assert_eq!(thread[1].text, "Hello **world**!");
    assert_eq!(thread[1].visible_text(), "Hello **world**!");
    assert!(!thread[1].streaming);

    // The click mirrors the posted buttons.
    let click = fake.feedback_click("C1", &ts, "U1", false).unwrap();
    let action = &click["actions"][0];
    assert_eq!(action["type"], "feedback_buttons");
    assert_eq!(action["action_id"], "feedback");
    assert_eq!(action["block_id"], "fb1");
    assert_eq!(action["value"], "bad");
    assert_eq!(click["container"]["message_ts"], ts.as_str());

    // DMs need no recipient; a workspace without streaming says unknown_method.
    let dm = fake.seed_thread("D1", &[("U1", "question")])[0].clone();
    let v = call(
        &fake,
        "chat.startStream",
        Some(&t),
        json!({"channel": "D1", "thread_ts": dm}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    fake.set_streaming(false);
    let v = call(
        &fake,
        "chat.startStream",
        Some(&t),
        json!({"channel": "D1", "thread_ts": dm}),
    )
    .await;
    assert_eq!(v, json!({"ok": false, "error": "unknown_method"}));
}

#[tokio::test]
async fn replies_paginate_oldest_first() {
    let fake = FakeSlack::start_default().await;
    let ts = fake.seed_thread(
        "C7",
        &[
            ("U1", "a"),
            ("U2", "b"),
            ("UBOT", "c"),
            ("U1", "d"),
            ("U2", "e"),
        ],
    );
    let mut cursor: Option<String> = None;
    let mut texts = Vec::new();
    let mut pages = 0;
    loop {
        let mut url = format!(
            "{}/conversations.replies?channel=C7&ts={}&limit=2",
            fake.api_url(),
            ts[0]
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let v: Value = reqwest::Client::new()
            .get(url)
            .header("authorization", format!("Bearer {}", bot(&fake)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["ok"], true, "{v}");
        pages += 1;
        texts.extend(
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_string()),
        );
        if v["has_more"] != true {
            assert_eq!(v["response_metadata"]["next_cursor"], "");
            break;
        }
        cursor = Some(
            v["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(pages, 3);
    assert_eq!(texts, ["a", "b", "c", "d", "e"]);
    let v = get(
        &fake,
        "conversations.replies",
        &[("channel", "C7"), ("ts", "1.000001")],
    )
    .await;
    assert_eq!(v["error"], "thread_not_found");
}

#[tokio::test]
async fn assistant_reactions_and_users() {
    let fake = FakeSlack::start_default().await;
    let t = bot(&fake);
    let ts = fake.seed_thread("D1", &[("U1", "hi")])[0].clone();
    let v = call(
        &fake,
        "assistant.threads.setSuggestedPrompts",
        Some(&t),
        json!({"channel_id": "D1", "thread_ts": ts,
               "prompts": [{"title": "Summarize", "message": "Summarize the channel"}]}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    for status in ["is thinking…", ""] {
        call(
            &fake,
            "assistant.threads.setStatus",
            Some(&t),
            json!({"channel_id": "D1", "thread_ts": ts, "status": status}),
        )
        .await;
    }
    call(
        &fake,
        "assistant.threads.setTitle",
        Some(&t),
        json!({"channel_id": "D1", "thread_ts": ts, "title": "Hi"}),
    )
    .await;
    assert_eq!(fake.assistant_statuses("D1", &ts), ["is thinking…", ""]);
    assert_eq!(fake.thread_title("D1", &ts).as_deref(), Some("Hi"));
    assert_eq!(
        fake.suggested_prompts("D1", &ts).unwrap()["prompts"][0]["title"],
        "Summarize"
    );

    let r = json!({"channel": "D1", "timestamp": ts, "name": "eyes"});
    assert_eq!(
        call(&fake, "reactions.add", Some(&t), r.clone()).await["ok"],
        true
    );
    assert_eq!(
        call(&fake, "reactions.add", Some(&t), r.clone()).await["error"],
        "already_reacted"
    );
    assert_eq!(
        fake.find_message("D1", &ts).unwrap().reaction_names(),
        ["eyes"]
    );
    assert_eq!(
        call(&fake, "reactions.remove", Some(&t), r.clone()).await["ok"],
        true
    );
    assert_eq!(
        call(&fake, "reactions.remove", Some(&t), r).await["error"],
        "no_reaction"
    );

    let v = get(&fake, "users.info", &[("user", "U1")]).await;
    assert_eq!(v["user"]["id"], "U1");
    let v = get(&fake, "users.info", &[("user", "nobody")]).await;
    assert_eq!(v["error"], "user_not_found");
}

#[tokio::test]
async fn files_need_the_bot_token() {
    let fake = FakeSlack::start_default().await;
    let url = fake.host_file("report.pdf", b"%PDF-1.4 fake", "application/pdf");
    assert!(url.contains("/files-pri/T1-F"), "{url}");
    assert!(url.ends_with("/download/report.pdf"), "{url}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let resp = client
        .get(&url)
        .header("authorization", format!("Bearer {}", bot(&fake)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"%PDF-1.4 fake");

    for auth in [None, Some("Bearer xoxb-wrong")] {
        let mut req = client.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "Slack answers 200 with a sign-in page");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(resp.text().await.unwrap().contains("<!DOCTYPE html>"));
    }
    let seen: Vec<Option<String>> = fake
        .file_requests()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    assert_eq!(
        seen,
        [
            Some(format!("Bearer {}", bot(&fake))),
            None,
            Some("Bearer xoxb-wrong".into())
        ]
    );

    let file = fake.file_object("notes.txt", b"hello", "text/plain", "U1");
    assert_eq!(file["size"], 5);
    assert_eq!(file["mimetype"], "text/plain");

    let foreign = ForeignHost::start().await;
    let target = foreign.url("/evil/doc.pdf");
    let redirect = fake.host_redirect("moved.pdf", &target);
    let resp = client
        .get(&redirect)
        .header("authorization", format!("Bearer {}", bot(&fake)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], target.as_str());
    assert!(foreign.requests().is_empty());
    client.get(&target).send().await.unwrap();
    assert_eq!(foreign.requests().len(), 1);
    assert!(!foreign.saw_credentials());
    client
        .get(&target)
        .header("authorization", "Bearer leaked")
        .send()
        .await
        .unwrap();
    assert!(foreign.saw_credentials());
}

#[tokio::test]
async fn socket_mode_hello_ack_redeliver_disconnect() {
    let fake = FakeSlack::start_default().await;
    // An unknown ticket is refused.
    let bad = fake.base_url().replace("http://", "ws://") + "/link/?ticket=nope";
    assert!(tokio_tungstenite::connect_async(bad).await.is_err());

    // Pushed before anyone connects: delivered after the hello.
    let early = fake.push_event(fake.message("D1", "U1", "early", None));
    let mut ws = connect(&fake).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["num_connections"], 1);
    assert_eq!(hello["connection_info"]["app_id"], "A1");
    let env = next_json(&mut ws).await;
    assert_eq!(env["envelope_id"], early.as_str());
    assert_eq!(fake.connections_opened(), 1);

    let mention = fake.app_mention("C1", "U1", "what did we decide?", None);
    assert_eq!(mention["text"], "<@UBOT> what did we decide?");
    let id = fake.push_event(mention.clone());
    let env = next_json(&mut ws).await;
    assert_eq!(env["type"], "events_api");
    assert_eq!(env["envelope_id"], id.as_str());
    assert_eq!(env["accepts_response_payload"], false);
    assert_eq!(env["retry_attempt"], 0);
    let payload = &env["payload"];
    assert_eq!(payload["type"], "event_callback");
    assert_eq!(payload["api_app_id"], "A1");
    assert_eq!(payload["event"]["type"], "app_mention");
    assert_eq!(payload["authorizations"][0]["user_id"], "UBOT");
    let event_id = payload["event_id"].as_str().unwrap().to_string();
    assert!(event_id.starts_with("Ev"));
    // The mention now exists in Slack, so a thread can be read from it.
    assert_eq!(
        fake.thread_messages("C1", mention["ts"].as_str().unwrap())
            .len(),
        1
    );

    ws.send(Message::Text(json!({"envelope_id": id}).to_string().into()))
        .await
        .unwrap();
    let took = fake.wait_ack(&id, WAIT).await.expect("no ack");
    assert!(took < WAIT);
    assert!(fake
        .wait_ack(&early, Duration::from_millis(50))
        .await
        .is_none());

    let again = fake.redeliver(&id);
    assert_ne!(again, id);
    let env = next_json(&mut ws).await;
    assert_eq!(env["envelope_id"], again.as_str());
    assert_eq!(env["retry_attempt"], 1);
    assert_eq!(env["retry_reason"], "timeout");
    assert_eq!(env["payload"]["event_id"], event_id.as_str());

    let cmd = fake.push_slash_command(fake.anchor_status("C1", "U1"));
    let env = next_json(&mut ws).await;
    assert_eq!(env["type"], "slash_commands");
    assert_eq!(env["accepts_response_payload"], true);
    assert_eq!(env["payload"]["command"], "/anchor");
    assert_eq!(env["payload"]["text"], "status");
    ws.send(Message::Text(
        json!({"envelope_id": cmd, "payload": {"text": "all good"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    fake.wait_ack(&cmd, WAIT).await.expect("no ack");
    assert_eq!(
        fake.ack_of(&cmd).unwrap().payload.unwrap()["text"],
        "all good"
    );

    // The bot's own post comes back as a message event.
    let v = call(
        &fake,
        "chat.postMessage",
        Some(&bot(&fake)),
        json!({"channel": "C1", "text": "answer", "thread_ts": mention["ts"]}),
    )
    .await;
    let env = next_json(&mut ws).await;
    let echo = &env["payload"]["event"];
    assert_eq!(echo["type"], "message");
    assert_eq!(echo["user"], "UBOT");
    assert_eq!(echo["bot_id"], "BBOT");
    assert_eq!(echo["ts"], v["ts"]);

    fake.disconnect_all("refresh_requested");
    let msg = next_json(&mut ws).await;
    assert_eq!(
        msg,
        json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-1"}})
    );
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed, "a close frame follows the disconnect message");

    let mut ws2 = connect(&fake).await;
    assert_eq!(next_json(&mut ws2).await["type"], "hello");
    assert_eq!(fake.connections_opened(), 2);
    assert!(fake.wait_connections(1, WAIT).await);
    fake.drop_all();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match ws2.next().await {
                Some(Ok(Message::Close(_))) => return "close frame",
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return "dropped",
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end, "dropped");
    assert!(fake.unexpected_frames().is_empty());
}

#[tokio::test]
async fn event_builders_follow_slacks_shapes() {
    let fake = FakeSlack::start_default().await;
    let im = fake.message("D9", "U1", "hello", None);
    assert_eq!(im["channel_type"], "im");
    assert_eq!(im["blocks"][0]["type"], "rich_text");
    let f = fake.file_object("a.pdf", b"%PDF", "application/pdf", "U1");
    let share = fake.file_share("C1", "U1", "see", vec![f.clone()], None);
    assert_eq!(share["subtype"], "file_share");
    assert_eq!(
        share["files"][0]["url_private_download"],
        f["url_private_download"]
    );
    let own = fake.own_message("C1", "mine", None);
    assert_eq!(
        (own["user"].as_str(), own["bot_id"].as_str()),
        (Some("UBOT"), Some("BBOT"))
    );
    let other = fake.bot_message("C1", "BOTHER", "beep", None);
    assert_eq!(other["subtype"], "bot_message");
    let changed = fake.message_changed("C1", "1712345678.000100", "U1", "a", "b");
    assert_eq!(changed["subtype"], "message_changed");
    assert_eq!(changed["message"]["text"], "b");
    let started = fake.assistant_thread_started("U1", "D9", "1712345678.000900", Some("C1"));
    assert_eq!(started["assistant_thread"]["context"]["channel_id"], "C1");
    assert_eq!(started["assistant_thread"]["channel_id"], "D9");
    let changed = fake.assistant_thread_context_changed("U1", "D9", "1712345678.000900", None);
    assert_eq!(changed["type"], "assistant_thread_context_changed");
    let mention = FakeSlack::with_files(
        fake.app_mention("C1", "U1", "read this", Some("1712345678.000100")),
        vec![f],
    );
    assert_eq!(mention["thread_ts"], "1712345678.000100");
    assert_eq!(
        mention["blocks"][0]["elements"][0]["elements"][0]["user_id"],
        "UBOT"
    );
    let twin = fake.message_twin(&mention);
    assert_eq!(
        (twin["type"].as_str(), twin["ts"].clone()),
        (Some("message"), mention["ts"].clone())
    );
    let cmd = fake.anchor_status("C1", "U1");
    assert!(cmd["response_url"].as_str().unwrap().contains("/commands/"));
    let resp = reqwest::Client::new()
        .post(cmd["response_url"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(json!({"response_type": "ephemeral", "text": "ok"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.response_url_posts()[0].json().unwrap()["text"], "ok");
}

#[tokio::test]
async fn the_spec_checker_refuses_a_json_read_and_names_the_rule() {
    let fake = FakeSlack::start_default().await;
    let ts = fake.seed_thread("C7", &[("U1", "a"), ("U2", "b")]);
    // A JSON body to a form-only method: Slack does not read its arguments, so neither does
    // the fake, and the request is refused as Slack refuses one without a channel.
    let v = call(
        &fake,
        "conversations.replies",
        Some(&bot(&fake)),
        json!({"channel": "C7", "ts": ts[0]}),
    )
    .await;
    assert_eq!(v, json!({"ok": false, "error": "channel_not_found"}));
    let rules = broken(&fake);
    assert_eq!(rules.len(), 3, "{rules:?}");
    assert!(
        rules[0].contains("conversations.replies consumes application/x-www-form-urlencoded, not application/json (slack-web-openapi-v2.json"),
        "{rules:?}"
    );
    assert!(
        rules[1].contains("requires argument `channel`"),
        "{rules:?}"
    );
    assert!(rules[2].contains("requires argument `ts`"), "{rules:?}");
    let first = &fake.calls_to("conversations.replies")[0];
    assert_eq!(first.args, json!({}), "the JSON arguments were not read");

    // As the SDKs call it, GET with query parameters, it is read and breaks nothing.
    let v = get(
        &fake,
        "conversations.replies",
        &[("channel", "C7"), ("ts", &ts[0])],
    )
    .await;
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(2), "{v}");
    // So is a POST form.
    let v: Value = reqwest::Client::new()
        .post(format!("{}/conversations.replies", fake.api_url()))
        .header("authorization", format!("Bearer {}", bot(&fake)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("channel=C7&ts={}", ts[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(broken(&fake), Vec::<String>::new());

    // A required argument missing, named with where the rule comes from.
    get(&fake, "conversations.replies", &[("channel", "C7")]).await;
    let rules = broken(&fake);
    assert_eq!(
        rules,
        [
            "slack: conversations.replies requires argument `ts` (slack-web-openapi-v2.json and \
          slack-newer-methods.toml: conversations.d.ts: ConversationsRepliesArguments extends \
          MessageSpecifier (channel, ts))"
        ]
    );
    let v = call(
        &fake,
        "chat.update",
        Some(&bot(&fake)),
        json!({"channel": "C7", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "message_not_found");
    assert_eq!(
        broken(&fake),
        ["slack: chat.update requires argument `ts` (slack-web-openapi-v2.json)"]
    );
    // Newer methods come from the table.
    let v = call(
        &fake,
        "assistant.threads.setTitle",
        Some(&bot(&fake)),
        json!({"channel_id": "D1", "thread_ts": "1.0"}),
    )
    .await;
    assert_eq!(v["ok"], false);
    let rules = broken(&fake);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        rules[0].starts_with("slack: assistant.threads.setTitle requires argument `title` (slack-newer-methods.toml: assistant.d.ts"),
        "{rules:?}"
    );

    // A write method is a POST; a JSON body's token is not read.
    get(
        &fake,
        "chat.postMessage",
        &[("channel", "C7"), ("text", "x")],
    )
    .await;
    let rules = broken(&fake);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        rules[0].contains("chat.postMessage is called with POST, not GET"),
        "{rules:?}"
    );
    let v = call(
        &fake,
        "chat.postMessage",
        None,
        json!({"token": bot(&fake), "channel": "C7", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "not_authed");
    let rules = broken(&fake);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules[0].contains("a JSON body's `token` is not read"),
        "{rules:?}"
    );
    assert!(
        rules[1].contains("chat.postMessage requires `token`"),
        "{rules:?}"
    );
    // Nor one in the query string.
    let v: Value = reqwest::Client::new()
        .get(format!(
            "{}/users.info?user=U1&token={}",
            fake.api_url(),
            bot(&fake)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"], "not_authed");
    let rules = broken(&fake);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules[0].contains("a token in the query string is not read"),
        "{rules:?}"
    );
}

#[tokio::test]
async fn users_info_answers_with_slacks_user_object() {
    let fake = FakeSlack::start_default().await;
    fake.add_person("U7", "", "Grace Hopper");
    fake.add_person("U8", "ada", "Ada Lovelace");
    let v = get(&fake, "users.info", &[("user", "U7")]).await;
    let u = &v["user"];
    assert_eq!(v["ok"], true);
    assert_eq!(u["id"], "U7");
    assert_eq!(u["team_id"], "T1");
    assert_eq!(u["name"], "grace");
    assert_eq!(u["real_name"], "Grace Hopper");
    assert_eq!(
        u["profile"]["display_name"], "",
        "Slack sends an empty display name"
    );
    assert_eq!(u["profile"]["real_name"], "Grace Hopper");
    assert_eq!(u["profile"]["first_name"], "Grace");
    assert_eq!(u["is_bot"], false);
    for k in [
        "deleted",
        "tz",
        "tz_offset",
        "is_admin",
        "updated",
        "is_app_user",
    ] {
        assert!(!u[k].is_null(), "{k} missing: {u}");
    }
    for size in [24, 32, 48, 72, 192, 512] {
        assert!(u["profile"][format!("image_{size}")].is_string(), "{u}");
    }
    let v = get(&fake, "users.info", &[("user", "U8")]).await;
    assert_eq!(v["user"]["profile"]["display_name"], "ada");
    let bot_user = get(&fake, "users.info", &[("user", "UBOT")]).await;
    assert_eq!(bot_user["user"]["is_bot"], true);
    assert_eq!(bot_user["user"]["profile"]["bot_id"], "BBOT");
    let rules = broken(&fake);
    assert!(rules.is_empty(), "{rules:?}");
}
