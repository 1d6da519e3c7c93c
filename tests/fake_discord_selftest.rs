//! Checks the fake Discord (`anchorbot_fakes::discord`) with plain HTTP and WebSocket clients: the
//! bot token, the 2,000-character limit, 429s, threads, typing, history, interactions, the CDN,
//! and the gateway's HELLO, IDENTIFY, READY, heartbeats, dispatches, close and RESUME.

use std::time::Duration;

use anchorbot_fakes::discord::{self, FakeDiscord, FakeDiscordConfig, TEXT_CHANNEL_ID, USER_ID};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// The intents the adapter asks for: GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES |
/// MESSAGE_CONTENT.
const INTENTS: u64 = 1 | (1 << 9) | (1 << 12) | (1 << 15);

fn auth(fake: &FakeDiscord) -> String {
    format!("Bot {}", fake.config().token)
}

async fn rest(
    fake: &FakeDiscord,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req =
        reqwest::Client::new().request(method, format!("{}/api/v10{path}", fake.base_url()));
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn bot(
    fake: &FakeDiscord,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let a = auth(fake);
    let (s, _, v) = rest(fake, method, path, Some(&a), body).await;
    (s, v)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame within 5 s")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

/// The next dispatch (op 0), skipping heartbeat ACKs.
async fn next_dispatch(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["op"] == 0 {
            return v;
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Connects the way serenity does: `GET /gateway`, then `{url}?v=10`.
async fn connect(fake: &FakeDiscord) -> Ws {
    let (s, v) = bot(fake, reqwest::Method::GET, "/gateway", None).await;
    assert_eq!(s, 200);
    let url = v["url"].as_str().unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    // serenity builds `{url}?v=10` with the `url` crate, which makes the empty path `/`.
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}/?v=10"))
        .await
        .unwrap();
    ws
}

async fn identify(fake: &FakeDiscord, ws: &mut Ws, intents: u64) -> Value {
    let hello = next_json(ws).await;
    assert_eq!(hello["op"], 10);
    assert_eq!(hello["d"]["heartbeat_interval"], 1000);
    let token = auth(fake);
    send(
        ws,
        json!({"op": 2, "d": {
            "token": token, "intents": intents, "compress": true, "large_threshold": 250,
            "shard": [0, 1],
            "properties": {"os": "linux", "browser": "serenity", "device": "serenity"},
            "presence": {"afk": false, "status": "online", "since": null, "activities": []}
        }}),
    )
    .await;
    let ready = next_dispatch(ws).await;
    assert_eq!(ready["t"], "READY", "{ready}");
    ready
}

#[tokio::test]
async fn rest_checks_the_bot_token() {
    let fake = FakeDiscord::start_default().await;
    let (s, _, v) = rest(&fake, reqwest::Method::GET, "/users/@me", None, None).await;
    assert_eq!(s, 401);
    assert_eq!(v, json!({"message": "401: Unauthorized", "code": 0}));
    let bare = fake.config().token.clone();
    let (s, _, _) = rest(&fake, reqwest::Method::GET, "/users/@me", Some(&bare), None).await;
    assert_eq!(s, 401, "the token without `Bot ` is refused");
    let (s, me) = bot(&fake, reqwest::Method::GET, "/users/@me", None).await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], fake.config().bot_user_id.as_str());
    assert_eq!(me["bot"], true);
    let (_, app) = bot(&fake, reqwest::Method::GET, "/applications/@me", None).await;
    let flags = app["flags"].as_u64().unwrap();
    assert_ne!(flags & discord::FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED, 0);
    let (_, gw) = bot(&fake, reqwest::Method::GET, "/gateway/bot", None).await;
    assert_eq!(gw["shards"], 1);
    assert_eq!(fake.calls().len(), 5);
    assert!(fake.calls()[0].authorization.is_none());
}

#[tokio::test]
async fn application_flags_follow_the_portal_switch() {
    let fake = FakeDiscord::start(FakeDiscordConfig {
        message_content_enabled: false,
        ..FakeDiscordConfig::default()
    })
    .await;
    let (_, app) = bot(&fake, reqwest::Method::GET, "/applications/@me", None).await;
    assert_eq!(
        app["flags"].as_u64().unwrap() & discord::FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED,
        0
    );
    // IDENTIFY asking for the privileged intent is closed with 4014.
    let mut ws = connect(&fake).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        json!({"op": 2, "d": {"token": auth(&fake), "intents": INTENTS,
                              "properties": {"os": "linux", "browser": "t", "device": "t"}}}),
    )
    .await;
    let msg = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    match msg {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4014),
        other => panic!("expected a 4014 close, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_are_limited_edited_and_listed() {
    let fake = FakeDiscord::start_default().await;
    let path = format!("/channels/{TEXT_CHANNEL_ID}/messages");
    let long = "x".repeat(2001);
    let (s, v) = bot(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(json!({"content": long})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["code"], 50035);
    assert!(v["errors"]["content"].is_object(), "{v}");
    let (s, v) = bot(&fake, reqwest::Method::POST, &path, Some(json!({}))).await;
    assert_eq!((s, v["code"].clone()), (400, json!(50006)));
    // Both are broken rules, recorded as such (the test's own requests break them on purpose).
    let broken: Vec<String> = fake
        .violations()
        .take()
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("at most 2,000 characters"), "{broken:?}");
    assert!(broken[1].contains("50006"), "{broken:?}");

    let exact = "é".repeat(2000);
    let (s, m) = bot(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(
            json!({"content": exact, "components": [{"type": 1, "components": [
            {"type": 2, "style": 4, "label": "Stop", "custom_id": "stop:1"}]}]}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["author"]["bot"], true);
    assert_eq!(m["components"][0]["components"][0]["custom_id"], "stop:1");

    let (s, e) = bot(
        &fake,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        Some(json!({"content": "done", "components": []})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(e["edited_timestamp"].is_string());
    let stored = fake.find_message(&id).unwrap();
    assert_eq!(stored.content, "done");
    assert!(stored.components.is_empty());
    assert_eq!(stored.edits(), 1);

    // A user's message cannot be edited by the bot.
    let user_msg = fake.mention(TEXT_CHANNEL_ID, USER_ID, "hello");
    fake.dispatch("MESSAGE_CREATE", user_msg.clone());
    let uid = user_msg["id"].as_str().unwrap();
    let (s, v) = bot(
        &fake,
        reqwest::Method::PATCH,
        &format!("{path}/{uid}"),
        Some(json!({"content": "hijack"})),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (403, json!(50005)));

    let (s, h) = bot(
        &fake,
        reqwest::Method::GET,
        &format!("{path}?limit=1"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["id"], uid, "history is newest first");
    let (_, h) = bot(
        &fake,
        reqwest::Method::GET,
        &format!("{path}?&limit=50&before={uid}"),
        None,
    )
    .await;
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["id"], id.as_str());

    let (s, _) = bot(
        &fake,
        reqwest::Method::DELETE,
        &format!("{path}/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert!(fake.find_message(&id).unwrap().deleted);
    let (s, v) = bot(
        &fake,
        reqwest::Method::POST,
        "/channels/1/messages",
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (404, json!(10003)));
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers() {
    let fake = FakeDiscord::start_default().await;
    let route = "PATCH /channels/{channel_id}/messages/{message_id}";
    let path = format!("/channels/{TEXT_CHANNEL_ID}/messages");
    let (_, m) = bot(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(json!({"content": "a"})),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    fake.rate_limit(route, 1, 0.5);
    let a = auth(&fake);
    let (s, h, v) = rest(
        &fake,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        Some(&a),
        Some(json!({"content": "b"})),
    )
    .await;
    assert_eq!(s, 429);
    assert_eq!(
        v,
        json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false})
    );
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-reset-after"], "0.500");
    assert_eq!(h["x-ratelimit-bucket"], fake.bucket_of(route).as_str());
    assert_eq!(h["x-ratelimit-scope"], "user");
    assert_eq!(fake.find_message(id).unwrap().content, "a");
    // A call inside the Retry-After (past the in-flight grace) is refused and recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = bot(
        &fake,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        Some(json!({"content": "b"})),
    )
    .await;
    assert_eq!(s, 429);
    let broken = fake.violations().take();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].rule.contains("Retry-After"), "{broken:?}");
    assert!(
        broken[0].request.starts_with("PATCH /channels/"),
        "{broken:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = bot(
        &fake,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        Some(json!({"content": "b"})),
    )
    .await;
    assert_eq!(s, 200, "once the Retry-After has passed");
    let calls = fake.calls_to(route);
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![429, 429, 200]
    );
}

#[tokio::test]
async fn buckets_count_calls_per_channel_and_a_global_429_holds_all_but_interactions() {
    let fake = FakeDiscord::start(FakeDiscordConfig {
        bucket_limit: 2,
        bucket_window: Duration::from_secs(30),
        ..FakeDiscordConfig::default()
    })
    .await;
    let route = "POST /channels/{channel_id}/typing";
    let typing = format!("/channels/{TEXT_CHANNEL_ID}/typing");
    let a = auth(&fake);
    let (s, h, _) = rest(&fake, reqwest::Method::POST, &typing, Some(&a), None).await;
    assert_eq!(s, 204);
    assert_eq!(h["x-ratelimit-limit"], "2");
    assert_eq!(h["x-ratelimit-remaining"], "1");
    assert_eq!(h["x-ratelimit-bucket"], fake.bucket_of(route).as_str());
    let reset_after: f64 = h["x-ratelimit-reset-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset_after > 29.0 && reset_after <= 30.0, "{reset_after}");
    let (s, h, _) = rest(&fake, reqwest::Method::POST, &typing, Some(&a), None).await;
    assert_eq!(
        (s, h["x-ratelimit-remaining"].to_str().unwrap()),
        (204, "0")
    );
    // Past the limit: a 429 whose Retry-After is the rest of the window.
    let (s, h, v) = rest(&fake, reqwest::Method::POST, &typing, Some(&a), None).await;
    assert_eq!(s, 429);
    assert_eq!(v["global"], false);
    assert!(v["retry_after"].as_f64().unwrap() > 29.0, "{v}");
    assert_eq!(h["x-ratelimit-scope"], "user");
    assert!(
        fake.violations().all().is_empty(),
        "a 429 itself breaks nothing"
    );
    // Another channel has its own count.
    let dm = "1200000000000000950";
    fake.dm(dm, USER_ID, "hi");
    let (s, _, _) = rest(
        &fake,
        reqwest::Method::POST,
        &format!("/channels/{dm}/typing"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(s, 204);

    // A global 429: every route is held, the interaction endpoints excepted.
    fake.global_rate_limit(5.0);
    let (s, h, v) = rest(&fake, reqwest::Method::GET, "/users/@me", Some(&a), None).await;
    assert_eq!(s, 429);
    assert_eq!(v["global"], true);
    assert_eq!(h["x-ratelimit-global"], "true");
    assert_eq!(h["x-ratelimit-scope"], "global");
    let cmd = fake.command(TEXT_CHANNEL_ID, USER_ID, "status");
    fake.dispatch("INTERACTION_CREATE", cmd.clone());
    let (id, token) = (cmd["id"].as_str().unwrap(), cmd["token"].as_str().unwrap());
    let (s, _, _) = rest(
        &fake,
        reqwest::Method::POST,
        &format!("/interactions/{id}/{token}/callback"),
        None,
        Some(json!({"type": 5, "data": {"flags": 64}})),
    )
    .await;
    assert_eq!(s, 204, "interactions are not bound by the global limit");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _, _) = rest(
        &fake,
        reqwest::Method::GET,
        &format!("/channels/{dm}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(s, 429);
    let broken = fake.violations().take();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].rule.contains("global"), "{broken:?}");
}

#[tokio::test]
async fn every_request_is_checked_against_the_published_spec() {
    let fake = FakeDiscord::start_default().await;
    // A route Discord does not have.
    let (s, v) = bot(&fake, reqwest::Method::GET, "/channels/1/nonsense", None).await;
    assert_eq!((s, v["message"].clone()), (404, json!("404: Not Found")));
    // A path parameter that is not a snowflake.
    let (s, _) = bot(
        &fake,
        reqwest::Method::POST,
        "/channels/general/typing",
        None,
    )
    .await;
    assert_eq!(s, 400);
    // A body that does not fit the request schema: `tts` is a boolean.
    let (s, v) = bot(
        &fake,
        reqwest::Method::POST,
        &format!("/channels/{TEXT_CHANNEL_ID}/messages"),
        Some(json!({"content": "x", "tts": "yes"})),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (400, json!(50035)));
    // A form body where the route takes JSON only.
    let a = auth(&fake);
    let resp = reqwest::Client::new()
        .put(format!(
            "{}/api/v10/applications/{}/commands",
            fake.base_url(),
            fake.config().application_id
        ))
        .header("authorization", &a)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=status")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let broken: Vec<String> = fake
        .violations()
        .take()
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert_eq!(broken.len(), 4, "{broken:#?}");
    assert!(broken[0].contains("not a route of API v10"), "{broken:?}");
    assert!(broken[1].contains("\"channel_id\""), "{broken:?}");
    assert!(
        broken[2].contains("/tts") && broken[2].contains("discord-openapi.json"),
        "{broken:?}"
    );
    assert!(broken[3].contains("application/json"), "{broken:?}");
}

#[tokio::test]
async fn commands_are_refused_for_installation_contexts_the_app_lacks() {
    let fake = FakeDiscord::start(FakeDiscordConfig {
        integration_types: vec![discord::INSTALL_GUILD],
        ..FakeDiscordConfig::default()
    })
    .await;
    let app = fake.config().application_id.clone();
    let (_, me) = bot(&fake, reqwest::Method::GET, "/applications/@me", None).await;
    let config = me["integration_types_config"].as_object().unwrap();
    assert_eq!(config.keys().collect::<Vec<_>>(), ["0"]);
    let path = format!("/applications/{app}/commands");
    let good = json!({"name": "status", "type": 1, "description": "Show memory",
                      "integration_types": [0], "contexts": [0, 1]});
    let user = json!({"name": "help", "type": 1, "description": "List the commands",
                      "integration_types": [0, 1], "contexts": [0, 1, 2]});
    // One command for User Install refuses the whole bulk overwrite.
    let (s, v) = bot(
        &fake,
        reqwest::Method::PUT,
        &path,
        Some(json!([good.clone(), user.clone()])),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (400, json!(50035)));
    assert!(v["errors"]["1.integration_types"].is_object(), "{v}");
    assert!(fake.registered_commands(None).is_empty());
    assert!(fake.commands_puts().is_empty());
    // One at a time, the good one is created and the other refused.
    let (s, created) = bot(&fake, reqwest::Method::POST, &path, Some(good.clone())).await;
    assert_eq!(s, 201, "{created}");
    let (s, _) = bot(&fake, reqwest::Method::POST, &path, Some(user)).await;
    assert_eq!(s, 400);
    // Creating it again replaces it.
    let (s, again) = bot(&fake, reqwest::Method::POST, &path, Some(good)).await;
    assert_eq!((s, again["id"].clone()), (200, created["id"].clone()));
    let names: Vec<Value> = fake
        .registered_commands(None)
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("status")]);
    let broken = fake.violations().take();
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(
        broken.iter().all(|v| v.rule.contains("integration_types")),
        "{broken:?}"
    );
    assert!(broken[0].rule.contains("refused whole"), "{broken:?}");
}

#[tokio::test]
async fn a_second_thread_from_one_message_is_refused_with_code_160004() {
    let fake = FakeDiscord::start_default().await;
    let mention = fake.mention(TEXT_CHANNEL_ID, USER_ID, "where is the runbook?");
    fake.dispatch("MESSAGE_CREATE", mention.clone());
    let mid = mention["id"].as_str().unwrap();
    let path = format!("/channels/{TEXT_CHANNEL_ID}/messages/{mid}/threads");
    let body = json!({"name": "where is the runbook?", "auto_archive_duration": 1440});
    let (s, t) = bot(&fake, reqwest::Method::POST, &path, Some(body.clone())).await;
    assert_eq!((s, t["id"].as_str()), (201, Some(mid)), "{t}");
    // Discord's answer to a second thread from the same message, whoever asks.
    let (s, v) = bot(&fake, reqwest::Method::POST, &path, Some(body)).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"code": 160004, "message": "A thread has already been created for this message"})
        )
    );
    assert_eq!(fake.threads_created().len(), 1);
    // Another message still gets its own thread.
    let other = fake.mention(TEXT_CHANNEL_ID, USER_ID, "and the on-call rota?");
    fake.dispatch("MESSAGE_CREATE", other.clone());
    let oid = other["id"].as_str().unwrap();
    let (s, t) = bot(
        &fake,
        reqwest::Method::POST,
        &format!("/channels/{TEXT_CHANNEL_ID}/messages/{oid}/threads"),
        Some(json!({"name": "rota"})),
    )
    .await;
    assert_eq!((s, t["id"].as_str()), (201, Some(oid)), "{t}");
    assert_eq!(fake.threads_created().len(), 2);
    fake.violations().assert_none("Discord");
}

#[tokio::test]
async fn a_late_answer_is_carried_out_before_it_is_sent() {
    let fake = FakeDiscord::start_default().await;
    let route = "POST /channels/{channel_id}/messages/{message_id}/threads";
    fake.answer_late(route, 1, Duration::from_millis(800));
    let mention = fake.mention(TEXT_CHANNEL_ID, USER_ID, "who is on call?");
    fake.dispatch("MESSAGE_CREATE", mention.clone());
    let mid = mention["id"].as_str().unwrap().to_string();
    let path = format!("/channels/{TEXT_CHANNEL_ID}/messages/{mid}/threads");
    let t = std::time::Instant::now();
    let call = {
        let fake_url = fake.base_url();
        let token = auth(&fake);
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{fake_url}/api/v10{path}"))
                .header("authorization", token)
                .json(&json!({"name": "on call"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // The thread exists while its caller still waits for the answer.
    assert_eq!(fake.wait_thread_from(&mid, WAIT).await, Some(mid.clone()));
    assert!(!call.is_finished(), "answered at once");
    assert_eq!(call.await.unwrap(), 201);
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_route_answers_late() {
    let fake = FakeDiscord::start_default().await;
    fake.stall("GET /users/@me", 1, Duration::from_millis(600));
    let t = std::time::Instant::now();
    let (s, _) = bot(&fake, reqwest::Method::GET, "/users/@me", None).await;
    assert_eq!(s, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    bot(&fake, reqwest::Method::GET, "/users/@me", None).await;
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "only the next call stalls"
    );
}

#[tokio::test]
async fn threads_typing_and_commands() {
    let fake = FakeDiscord::start_default().await;
    let mention = fake.mention(TEXT_CHANNEL_ID, USER_ID, "what is an anchor?");
    assert_eq!(
        mention["content"],
        format!("<@{}> what is an anchor?", fake.config().bot_user_id)
    );
    assert_eq!(
        mention["mentions"][0]["id"],
        fake.config().bot_user_id.as_str()
    );
    fake.dispatch("MESSAGE_CREATE", mention.clone());
    let mid = mention["id"].as_str().unwrap();
    let path = format!("/channels/{TEXT_CHANNEL_ID}/messages/{mid}/threads");
    let (s, t) = bot(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(json!({"name": "what is an anchor?", "auto_archive_duration": 1440})),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["type"], 11);
    assert_eq!(t["id"], mid, "a thread from a message has its id");
    assert_eq!(t["parent_id"], TEXT_CHANNEL_ID);
    assert_eq!(t["owner_id"], fake.config().bot_user_id.as_str());
    let (s, v) = bot(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(json!({"name": "again"})),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (400, json!(160004)));
    assert_eq!(fake.wait_thread_from(mid, WAIT).await.as_deref(), Some(mid));

    let (s, c) = bot(
        &fake,
        reqwest::Method::GET,
        &format!("/channels/{mid}"),
        None,
    )
    .await;
    assert_eq!((s, c["type"].clone()), (200, json!(11)));
    let (s, _) = bot(
        &fake,
        reqwest::Method::POST,
        &format!("/channels/{mid}/typing"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(fake.typing(mid).len(), 1);
    let (s, _) = bot(
        &fake,
        reqwest::Method::POST,
        &format!("/channels/{mid}/messages"),
        Some(json!({"content": "An anchor is…"})),
    )
    .await;
    assert_eq!(s, 200);
    let in_thread = fake.channel_messages(mid);
    assert_eq!(
        in_thread[0].kind, 21,
        "the thread opens with its starter message"
    );
    assert_eq!(fake.bot_messages(mid).len(), 1);

    let app = fake.config().application_id.clone();
    let cmds = json!([{"name": "status", "description": "Show status", "type": 1},
                      {"name": "help", "description": "Help", "type": 1,
                       "integration_types": [0, 1], "contexts": [0, 1, 2]}]);
    let (s, v) = bot(
        &fake,
        reqwest::Method::PUT,
        &format!("/applications/{app}/guilds/{}/commands", discord::GUILD_ID),
        Some(cmds.clone()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["guild_id"], discord::GUILD_ID);
    let (s, v) = bot(
        &fake,
        reqwest::Method::PUT,
        &format!("/applications/{app}/commands"),
        Some(json!([{"name": "Bad Name", "description": "x"}])),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (400, json!(50035)));
    let puts = fake.commands_puts();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].guild_id.as_deref(), Some(discord::GUILD_ID));
    let broken = fake.violations().take();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].rule.contains("command name"), "{broken:?}");
}

#[tokio::test]
async fn interactions_are_answered_once_within_the_deadline() {
    let fake = FakeDiscord::start_default().await;
    let cmd = fake.command(TEXT_CHANNEL_ID, USER_ID, "status");
    assert_eq!(cmd["type"], 2);
    assert!(cmd["attachment_size_limit"].is_u64());
    assert_eq!(cmd["member"]["user"]["id"], USER_ID);
    fake.dispatch("INTERACTION_CREATE", cmd.clone());
    let (id, token) = (cmd["id"].as_str().unwrap(), cmd["token"].as_str().unwrap());
    let path = format!("/interactions/{id}/{token}/callback");
    // The callback authenticates with its token; no bot header needed.
    let (s, _, _) = rest(
        &fake,
        reqwest::Method::POST,
        &path,
        None,
        Some(json!({"type": 5, "data": {"flags": 64}})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, v) = rest(
        &fake,
        reqwest::Method::POST,
        &path,
        None,
        Some(json!({"type": 4, "data": {"content": "x"}})),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (400, json!(40060)));
    let app = fake.config().application_id.clone();
    let (s, _, m) = rest(
        &fake,
        reqwest::Method::PATCH,
        &format!("/webhooks/{app}/{token}/messages/@original"),
        None,
        Some(json!({"content": "All good."})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(m["content"], "All good.");
    let original = fake.original_response(id).unwrap();
    assert!(original.ephemeral());
    assert_eq!(original.content, "All good.");
    assert!(fake.interaction(id).unwrap().ack_latency().unwrap() < Duration::from_secs(3));

    // A button press on the bot's message, acknowledged with type 7.
    let path = format!("/channels/{TEXT_CHANNEL_ID}/messages");
    let (_, m) = bot(
        &fake,
        reqwest::Method::POST,
        &path,
        Some(
            json!({"content": "streaming", "components": [{"type": 1, "components": [
            {"type": 2, "style": 4, "label": "Stop", "custom_id": "stop:1"}]}]}),
        ),
    )
    .await;
    let press = fake.button_press(m["id"].as_str().unwrap(), USER_ID, "stop:1");
    assert_eq!(press["type"], 3);
    assert_eq!(press["message"]["id"], m["id"]);
    fake.dispatch("INTERACTION_CREATE", press.clone());
    let p = format!(
        "/interactions/{}/{}/callback",
        press["id"].as_str().unwrap(),
        press["token"].as_str().unwrap()
    );
    let (s, _, _) = rest(
        &fake,
        reqwest::Method::POST,
        &p,
        None,
        Some(json!({"type": 7, "data": {"content": "streaming\n_Stopped._", "components": []}})),
    )
    .await;
    assert_eq!(s, 204);
    let stored = fake.find_message(m["id"].as_str().unwrap()).unwrap();
    assert_eq!(stored.content, "streaming\n_Stopped._");
    assert!(stored.components.is_empty());

    // Past three seconds the token is gone.
    let late = fake.command(TEXT_CHANNEL_ID, USER_ID, "help");
    fake.dispatch("INTERACTION_CREATE", late.clone());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let p = format!(
        "/interactions/{}/{}/callback",
        late["id"].as_str().unwrap(),
        late["token"].as_str().unwrap()
    );
    let (s, _, v) = rest(
        &fake,
        reqwest::Method::POST,
        &p,
        None,
        Some(json!({"type": 4, "data": {"content": "late"}})),
    )
    .await;
    assert_eq!((s, v["code"].clone()), (404, json!(10062)));
    let late = fake.interaction(late["id"].as_str().unwrap()).unwrap();
    assert!(late.callbacks.is_empty());
    let waited = late.attempts[0].saturating_duration_since(late.dispatched.unwrap());
    assert!(waited > Duration::from_secs(3), "{waited:?}");
    let broken = fake.violations().take();
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(
        broken[0].rule.contains("one initial response"),
        "{broken:?}"
    );
    assert!(broken[1].rule.contains("within 3 s"), "{broken:?}");
    assert!(
        broken[1].request.contains("{token}"),
        "no token in a violation"
    );
}

#[tokio::test]
async fn cdn_serves_hosted_attachments() {
    let fake = FakeDiscord::start_default().await;
    let att = fake.attachment("notes.txt", b"anchor facts", "text/plain; charset=utf-8");
    assert_eq!(att["size"], 12);
    let msg = FakeDiscord::with_attachments(
        fake.message(TEXT_CHANNEL_ID, USER_ID, ""),
        vec![att.clone()],
    );
    assert_eq!(msg["attachments"][0]["filename"], "notes.txt");
    let url = att["url"].as_str().unwrap();
    assert!(url.starts_with(&fake.base_url()));
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"anchor facts");
    let missing = format!("{}/attachments/1/2/nope.txt", fake.base_url());
    assert_eq!(reqwest::get(&missing).await.unwrap().status(), 404);
    let reqs = fake.cdn_requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].authorization.is_none());
    assert_eq!(reqs[0].status, 200);
}

#[tokio::test]
async fn gateway_identifies_heartbeats_dispatches_and_resumes() {
    let fake = FakeDiscord::start_default().await;
    let mut ws = connect(&fake).await;
    assert_eq!(fake.connect_queries(), vec!["v=10".to_string()]);
    let ready = identify(&fake, &mut ws, INTENTS).await;
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(d["v"], 10);
    assert_eq!(d["user"]["id"], fake.config().bot_user_id.as_str());
    assert_eq!(d["guilds"][0]["unavailable"], true);
    assert!(d["resume_gateway_url"]
        .as_str()
        .unwrap()
        .starts_with("ws://127.0.0.1:"));
    assert_eq!(
        d["application"]["id"],
        fake.config().application_id.as_str()
    );
    let session_id = d["session_id"].as_str().unwrap().to_string();
    let gc = next_dispatch(&mut ws).await;
    assert_eq!(
        (gc["t"].clone(), gc["s"].clone()),
        (json!("GUILD_CREATE"), json!(2))
    );
    assert!(gc["d"]["roles"][0]["colors"].is_object());
    assert_eq!(gc["d"]["channels"][0]["type"], 0);

    send(&mut ws, json!({"op": 1, "d": 2})).await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["op"], 11);
    assert_eq!(fake.heartbeats().len(), 1);

    let m = fake.mention(TEXT_CHANNEL_ID, USER_ID, "hi");
    let seq = fake.dispatch("MESSAGE_CREATE", m.clone());
    assert_eq!(seq, 3);
    let got = next_dispatch(&mut ws).await;
    assert_eq!(
        (got["t"].clone(), got["s"].clone()),
        (json!("MESSAGE_CREATE"), json!(3))
    );
    assert_eq!(got["d"]["id"], m["id"]);

    // Closed with 4000; what happens meanwhile is replayed on RESUME.
    fake.force_close(4000);
    let msg = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    match msg {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4000),
        other => panic!("expected a 4000 close, got {other:?}"),
    }
    let missed = fake.message(TEXT_CHANNEL_ID, USER_ID, "while away");
    assert_eq!(fake.dispatch("MESSAGE_CREATE", missed.clone()), 4);

    let mut ws = connect(&fake).await;
    assert_eq!(next_json(&mut ws).await["op"], 10);
    send(
        &mut ws,
        json!({"op": 6, "d": {"token": auth(&fake), "session_id": session_id, "seq": 3}}),
    )
    .await;
    let replayed = next_dispatch(&mut ws).await;
    assert_eq!(replayed["s"], 4);
    assert_eq!(replayed["d"]["id"], missed["id"]);
    let resumed = next_dispatch(&mut ws).await;
    assert_eq!(
        (resumed["t"].clone(), resumed["s"].clone()),
        (json!("RESUMED"), json!(5))
    );
    assert!(fake.wait_resumes(1, WAIT).await);
    assert_eq!(fake.connections_opened(), 2);
    assert_eq!(fake.sessions_started(), 1);

    // The resumed connection gets new dispatches.
    let after = fake.mention(TEXT_CHANNEL_ID, USER_ID, "after");
    fake.dispatch("MESSAGE_CREATE", after.clone());
    assert_eq!(next_dispatch(&mut ws).await["d"]["id"], after["id"]);

    // A RESUME with an unknown session gets INVALID_SESSION (not resumable).
    let mut ws2 = connect(&fake).await;
    next_json(&mut ws2).await;
    send(
        &mut ws2,
        json!({"op": 6, "d": {"token": auth(&fake), "session_id": "nope", "seq": 1}}),
    )
    .await;
    let inv = next_json(&mut ws2).await;
    assert_eq!(
        (inv["op"].clone(), inv["d"].clone()),
        (json!(9), json!(false))
    );
}

#[tokio::test]
async fn gateway_rejects_a_wrong_token_and_filters_content() {
    let fake = FakeDiscord::start_default().await;
    let mut ws = connect(&fake).await;
    next_json(&mut ws).await;
    send(
        &mut ws,
        json!({"op": 2, "d": {"token": "Bot wrong", "intents": INTENTS,
                              "properties": {"os": "linux", "browser": "t", "device": "t"}}}),
    )
    .await;
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4004),
        other => panic!("expected a 4004 close, got {other:?}"),
    }

    // Without MESSAGE_CONTENT, guild messages that do not mention the bot arrive empty.
    let mut ws = connect(&fake).await;
    identify(&fake, &mut ws, INTENTS & !(1 << 15)).await;
    next_dispatch(&mut ws).await;
    let plain = fake.message(TEXT_CHANNEL_ID, USER_ID, "secret");
    fake.dispatch("MESSAGE_CREATE", plain);
    assert_eq!(next_dispatch(&mut ws).await["d"]["content"], "");
    let mention = fake.mention(TEXT_CHANNEL_ID, USER_ID, "visible");
    fake.dispatch("MESSAGE_CREATE", mention);
    let got = next_dispatch(&mut ws).await;
    assert!(got["d"]["content"].as_str().unwrap().ends_with("visible"));
    let dm = fake.dm("1200000000000000900", USER_ID, "dm text");
    assert!(dm.get("guild_id").is_none());
    fake.dispatch("MESSAGE_CREATE", dm);
    assert_eq!(next_dispatch(&mut ws).await["d"]["content"], "dm text");
}

#[tokio::test]
async fn the_bots_own_messages_are_echoed() {
    let fake = FakeDiscord::start_default().await;
    let mut ws = connect(&fake).await;
    identify(&fake, &mut ws, INTENTS).await;
    next_dispatch(&mut ws).await;
    let (_, m) = bot(
        &fake,
        reqwest::Method::POST,
        &format!("/channels/{TEXT_CHANNEL_ID}/messages"),
        Some(json!({"content": "mine"})),
    )
    .await;
    let echo = next_dispatch(&mut ws).await;
    assert_eq!(echo["t"], "MESSAGE_CREATE");
    assert_eq!(echo["d"]["id"], m["id"]);
    assert_eq!(
        echo["d"]["author"]["id"],
        fake.config().bot_user_id.as_str()
    );
    let other = fake.other_bot_message(TEXT_CHANNEL_ID, "beep");
    assert_eq!(other["author"]["bot"], true);
    let own = fake.own_message(TEXT_CHANNEL_ID, "echo");
    assert_eq!(own["author"]["id"], fake.config().bot_user_id.as_str());
}
