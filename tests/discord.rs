//! The Discord adapter end to end: the real `App` with the real `DiscordAdapter` (serenity's
//! gateway, REST through `discord.api_url`) against the local fake Discord
//! (`tests/fakes/src/discord.rs`: REST v10 and a gateway with HELLO, IDENTIFY, READY, heartbeats
//! and RESUME, written from Discord's documented payloads) and the fake OpenAI server.

mod common;

use std::time::Duration;

use common::discord::{
    FakeDiscord, FakeDiscordConfig, FakeInteraction, FakeMessage, INSTALL_GUILD, INSTALL_USER,
    OTHER_USER_ID, TEXT_CHANNEL_ID, USER_ID,
};
use common::discord_app::DiscordApp;
use common::*;

/// Waits until the bot has a finished message containing `text` in `channel`.
async fn bot_says(discord: &FakeDiscord, channel: &str, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = discord
            .bot_messages(channel)
            .into_iter()
            .map(|m| m.content.clone())
            .find(|c| c.contains(text));
        if let Some(c) = found {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no bot message with {text:?} in {channel}: {:?}",
            discord
                .bot_messages(channel)
                .iter()
                .map(|m| m.content.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Dispatches `/name` in `channel` and returns the interaction once it is acknowledged, which
/// must be within Discord's 3 s (the fake refuses a later one and the test fails naming the
/// rule).
async fn slash(discord: &FakeDiscord, channel: &str, name: &str) -> FakeInteraction {
    let cmd = discord.command(channel, USER_ID, name);
    let id = cmd["id"].as_str().unwrap().to_string();
    discord.dispatch("INTERACTION_CREATE", cmd);
    let i = discord
        .wait_callback(&id, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("/{name} was never acknowledged"));
    let (kind, data, _) = &i.callbacks[0];
    assert_eq!(*kind, 5, "deferred: {data}");
    assert_eq!(
        data["flags"].as_u64().unwrap_or(0) & 64,
        64,
        "ephemeral: {data}"
    );
    i
}

/// The answer a deferred command's response shows, once it has been edited in.
async fn command_answer(discord: &FakeDiscord, interaction: &str, wait: Duration) -> FakeMessage {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(m) = discord
            .original_response(interaction)
            .filter(|m| !m.content.is_empty())
        {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deferred response was never edited: {:?}",
            discord.original_response(interaction)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_gets_a_thread_a_streamed_reply_and_memory_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(|req| echo(req).slow(Duration::from_millis(5))).await;
    let app = DiscordApp::start(&dir, &llm.url, &discord).await;
    let mention = discord.mention(TEXT_CHANNEL_ID, USER_ID, "the code word is OSPREY");
    let id = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    let thread = discord
        .wait_thread_from(&id, Duration::from_secs(30))
        .await
        .expect("a thread was made from the mention");
    bot_says(&discord, &thread, "the code word is OSPREY").await;
    assert!(!discord.typing(&thread).is_empty(), "typing was shown");
    // A follow-up in the thread, without a mention.
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.message(&thread, USER_ID, "what was the code word?"),
    );
    bot_says(&discord, &thread, "what was the code word?").await;
    assert!(all_text(&llm.turn_requests().pop().unwrap()).contains("OSPREY"));
    app.stop().await;
    // After a restart the thread is still answered, with its memory from sled.
    let app = DiscordApp::start(&dir, &llm.url, &discord).await;
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.message(&thread, USER_ID, "and now?"),
    );
    bot_says(&discord, &thread, "and now?").await;
    assert!(all_text(&llm.turn_requests().pop().unwrap()).contains("OSPREY"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dm_is_answered_and_echoes_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm("1200000000000000900", USER_ID, "hi in private"),
    );
    bot_says(&discord, "1200000000000000900", "hi in private").await;
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.other_bot_message(TEXT_CHANNEL_ID, "<@1200000000000000001> loop?"),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        llm.turn_requests().len(),
        1,
        "neither echoes nor other bots are answered"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slash_command_is_answered_ephemerally_within_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let i = slash(&discord, TEXT_CHANNEL_ID, "status").await;
    let answer = command_answer(&discord, &i.id, Duration::from_secs(20)).await;
    assert!(answer.ephemeral(), "only the asker sees it");
    assert!(
        answer.content.contains("Conversation discord:"),
        "{}",
        answer.content
    );
    assert!(
        discord.bot_messages(TEXT_CHANNEL_ID).is_empty(),
        "nothing public"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stop_button_cuts_a_slow_stream_and_feedback_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(|req| {
        if last_user(req).contains("long") {
            Reply::chunks((0..300).map(|i| format!("w{i} ")).collect(), Some("stop"))
                .slow(Duration::from_millis(40))
        } else {
            echo(req)
        }
    })
    .await;
    let app = DiscordApp::start(&dir, &llm.url, &discord).await;
    let dm = "1200000000000000901";
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm(dm, USER_ID, "write something long"),
    );
    // The streaming reply carries a Stop button; press it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let streaming = loop {
        let m = discord.bot_messages(dm).into_iter().find(|m| {
            m.custom_ids().iter().any(|c| c == "anchorbot:stop") && m.content.contains("w5")
        });
        if let Some(m) = m {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no streaming reply with a Stop button"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    discord.dispatch(
        "INTERACTION_CREATE",
        discord.button_press(&streaming.id, USER_ID, "anchorbot:stop"),
    );
    let stopped = bot_says(&discord, dm, "Stopped").await;
    assert!(!stopped.contains("w299"), "{stopped}");
    // A complete answer gets 👍/👎; a click is stored and counted.
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "short one"));
    bot_says(&discord, dm, "short one").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let m = discord.bot_messages(dm).into_iter().find(|m| {
            m.content.contains("short one") && m.custom_ids().iter().any(|c| c == "anchorbot:good")
        });
        if let Some(m) = m {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no feedback buttons");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    discord.dispatch(
        "INTERACTION_CREATE",
        discord.button_press(&answer.id, USER_ID, "anchorbot:good"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let i = slash(&discord, dm, "status").await;
        let status = command_answer(&discord, &i.id, Duration::from_secs(20)).await;
        if status.content.contains("Feedback: 1 👍") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "feedback never counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
    let store = reopen_store(&dir).await;
    let key = anchorbot_platform::ConversationKey::new("discord", None, dm, None).unwrap();
    let anchor = store.anchor(&key).await.unwrap();
    assert_eq!(anchor.turns.len(), 1, "the stopped answer was not stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_forced_close_the_bot_resumes_and_answers_the_next_message() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    discord.force_close(4000);
    assert!(
        discord.wait_resumes(1, Duration::from_secs(30)).await,
        "no RESUME"
    );
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm("1200000000000000902", USER_ID, "back again?"),
    );
    bot_says(&discord, "1200000000000000902", "back again?").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_answer_is_split_at_2000_characters_with_balanced_fences() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let code: String = (0..300).map(|i| format!("let x{i} = {i};\n")).collect();
    let answer = format!("Here is the code:\n\n```rust\n{code}```\nDone.");
    let llm = FakeLlm::start(move |_req| Reply::text(&answer)).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let dm = "1200000000000000903";
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "code please"));
    bot_says(&discord, dm, "Done.").await;
    let parts: Vec<String> = discord
        .bot_messages(dm)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert!(parts.len() >= 3, "{}", parts.len());
    for p in &parts {
        assert!(p.chars().count() <= 2000);
        assert_eq!(p.matches("```").count() % 2, 0, "unbalanced fence: {p}");
    }
    let joined = parts.concat();
    for i in [0, 150, 299] {
        assert!(
            joined.contains(&format!("let x{i} = {i};")),
            "line {i} lost"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_from_the_cdn_is_ingested_and_cited_and_an_oversized_one_never_fetched() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let dm = "1200000000000000904";
    let doc = discord.attachment(
        "rota.md",
        b"# On-call rota\n\nNadia is on call in the first week of March.\n",
        "text/markdown",
    );
    let with_file = FakeDiscord::with_attachments(discord.dm(dm, USER_ID, ""), vec![doc]);
    discord.dispatch("MESSAGE_CREATE", with_file);
    // The file is read in the background: wait for its summary before asking about it.
    bot_says(&discord, dm, "Added rota.md").await;
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm(dm, USER_ID, "who is on call in March?"),
    );
    bot_says(&discord, dm, "who is on call in March?").await;
    let question = last_user(&llm.turn_requests().pop().unwrap());
    assert!(
        question.contains("[rota.md"),
        "the passage is cited: {question}"
    );
    assert!(!discord.cdn_requests().is_empty());
    // Over the size limit: refused with a message, never downloaded.
    let before = discord.cdn_requests().len();
    let mut big = discord.attachment("huge.pdf", b"%PDF-1.4 small body", "application/pdf");
    big["size"] = serde_json::json!(60u64 * 1024 * 1024);
    let msg = FakeDiscord::with_attachments(discord.dm(dm, USER_ID, ""), vec![big]);
    discord.dispatch("MESSAGE_CREATE", msg);
    bot_says(&discord, dm, "huge.pdf").await;
    assert_eq!(
        discord.cdn_requests().len(),
        before,
        "the oversized file was fetched"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn regenerate_answers_the_same_question_again_and_replaces_the_old_answer_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = n.clone();
    let llm = FakeLlm::start(move |req| {
        if is_summary(req) {
            return Reply::text("SUMMARY: none");
        }
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Reply::text(&format!("Take {i} on <{}>", last_user(req)))
    })
    .await;
    let app = DiscordApp::start(&dir, &llm.url, &discord).await;
    let dm = "1200000000000000902";
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "name a colour"));
    // The final answer carries Regenerate beside 👍/👎.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let m = discord.bot_messages(dm).into_iter().find(|m| {
            m.content.contains("Take 1")
                && m.custom_ids().iter().any(|c| c == "anchorbot:regenerate")
        });
        if let Some(m) = m {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no Regenerate button");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let press = discord.button_press(&first.id, OTHER_USER_ID, "anchorbot:regenerate");
    let press_id = press["id"].as_str().unwrap().to_string();
    discord.dispatch("INTERACTION_CREATE", press);
    // Acknowledged without changing the message (type 6), then answered again.
    let ack = discord
        .wait_callback(&press_id, Duration::from_secs(10))
        .await
        .expect("the press was never acknowledged");
    assert_eq!(ack.callbacks[0].0, 6);
    let second = bot_says(&discord, dm, "Take 2").await;
    assert!(second.contains("name a colour"), "{second}");
    // The same question, asked as its asker asked it, without the old answer in the prompt.
    let turns = llm.turn_requests();
    assert_eq!(turns.len(), 2);
    assert_eq!(last_user(&turns[0]), last_user(&turns[1]));
    assert!(
        !all_text(&turns[1]).contains("Take 1"),
        "{}",
        all_text(&turns[1])
    );
    assert!(discord
        .find_message(&first.id)
        .unwrap()
        .content
        .contains("Take 1"));
    // The old answer's turn was replaced: pressing its Regenerate again gets a private note.
    let again = discord.button_press(&first.id, USER_ID, "anchorbot:regenerate");
    discord.dispatch("INTERACTION_CREATE", again);
    assert!(
        discord
            .wait_calls(
                "POST /webhooks/{application_id}/{token}",
                1,
                Duration::from_secs(20)
            )
            .await,
        "no follow-up note"
    );
    let note = discord.calls_to("POST /webhooks/{application_id}/{token}");
    assert_eq!(note[0].body["flags"], 64, "{:?}", note[0].body);
    assert!(
        note[0].body["content"]
            .as_str()
            .unwrap()
            .contains("no longer"),
        "{:?}",
        note[0].body
    );
    app.stop().await;
    assert_eq!(llm.turn_requests().len(), 2);
    let store = reopen_store(&dir).await;
    let key = anchorbot_platform::ConversationKey::new("discord", None, dm, None).unwrap();
    let anchor = store.anchor(&key).await.unwrap();
    assert_eq!(anchor.turns.len(), 1, "{:?}", anchor.turns);
    assert!(anchor.turns[0].answer.starts_with("Take 2"));
    assert_eq!(
        anchor.turns[0].author.id, USER_ID,
        "the question stays the asker's"
    );
    assert_eq!(anchor.counters.turns_total, 1);
}

/// The names, integration types and contexts of the commands registered now (global).
fn registered(discord: &FakeDiscord) -> Vec<(String, serde_json::Value, serde_json::Value)> {
    let mut cmds: Vec<_> = discord
        .registered_commands(None)
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["integration_types"].clone(),
                c["contexts"].clone(),
            )
        })
        .collect();
    cmds.sort_by(|a, b| a.0.cmp(&b.0));
    cmds
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_without_user_install_gets_its_commands_for_guild_install_only() {
    let tmp = tempfile::tempdir().unwrap();
    // A bot application with only Guild Install enabled in the portal.
    let discord = FakeDiscord::start(FakeDiscordConfig {
        integration_types: vec![INSTALL_GUILD],
        ..FakeDiscordConfig::default()
    })
    .await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    assert!(
        discord
            .wait_commands(None, 4, Duration::from_secs(30))
            .await,
        "the slash commands were not registered: {:?}",
        discord
            .calls()
            .iter()
            .filter(|c| c.route.contains("/commands"))
            .map(|c| (c.route.clone(), c.status, c.response.clone()))
            .collect::<Vec<_>>()
    );
    let guild_only = (serde_json::json!([0]), serde_json::json!([0, 1]));
    let expected: Vec<_> = ["clear", "files", "help", "status"]
        .iter()
        .map(|n| (n.to_string(), guild_only.0.clone(), guild_only.1.clone()))
        .collect();
    assert_eq!(registered(&discord), expected);
    // The application was asked which installation contexts it has, before registering.
    let asked = discord.calls_to("GET /applications/@me");
    let put = discord.calls_to("PUT /applications/{application_id}/commands");
    assert!(!asked.is_empty() && !put.is_empty());
    assert!(asked[0].at <= put[0].at);
    // And the commands work in the guild.
    let i = slash(&discord, TEXT_CHANNEL_ID, "help").await;
    let help = command_answer(&discord, &i.id, Duration::from_secs(20)).await;
    assert!(help.content.contains("/status"), "{}", help.content);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_with_both_installation_contexts_gets_its_commands_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig {
        integration_types: vec![INSTALL_GUILD, INSTALL_USER],
        ..FakeDiscordConfig::default()
    })
    .await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    assert!(
        discord
            .wait_commands(None, 4, Duration::from_secs(30))
            .await
    );
    for (name, types, contexts) in registered(&discord) {
        assert_eq!(types, serde_json::json!([0, 1]), "/{name}");
        assert_eq!(contexts, serde_json::json!([0, 1, 2]), "/{name}");
    }
    assert_eq!(
        discord.commands_puts().len(),
        1,
        "one bulk overwrite, not one call per command"
    );
    assert!(discord.commands_created().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slash_commands_are_deferred_within_3_s_while_the_bot_waits_on_a_stalled_discord_call() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    // Discord takes 8 s to create the thread for a mention: the inbound mapper, which keeps
    // arrival order, waits on it.
    let stall = Duration::from_secs(8);
    discord.stall(
        "POST /channels/{channel_id}/messages/{message_id}/threads",
        1,
        stall,
    );
    let mention = discord.mention(TEXT_CHANNEL_ID, USER_ID, "a question while Discord is slow");
    let mention_id = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    // Every command is acknowledged within Discord's 3 s all the same (the fake refuses a
    // later callback with 10062 and records the broken rule, which fails the test).
    let mut pending = Vec::new();
    for name in ["status", "files", "help", "clear"] {
        let i = slash(&discord, TEXT_CHANNEL_ID, name).await;
        let latency = i.ack_latency().unwrap();
        assert!(
            latency < Duration::from_secs(3),
            "/{name} acknowledged after {latency:?}"
        );
        pending.push((name, i.id));
    }
    assert!(
        started.elapsed() < stall,
        "the acknowledgements waited for the stalled call: {:?}",
        started.elapsed()
    );
    assert!(
        discord.threads_created().is_empty(),
        "the thread call was still stalled while the commands were acknowledged"
    );
    // Once Discord answers, each command's answer is edited into its deferred response, and the
    // mention is answered in its thread.
    for (name, id) in pending {
        let answer = command_answer(&discord, &id, Duration::from_secs(30)).await;
        assert!(answer.ephemeral(), "/{name}");
        assert!(!answer.content.trim().is_empty(), "/{name}");
    }
    let thread = discord
        .wait_thread_from(&mention_id, Duration::from_secs(30))
        .await
        .expect("the thread was made once Discord answered");
    bot_says(&discord, &thread, "a question while Discord is slow").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_note_about_a_button_press_is_an_ephemeral_follow_up_not_a_public_message() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(|req| {
        if last_user(req).contains("slowly") {
            Reply::chunks((0..200).map(|i| format!("s{i} ")).collect(), Some("stop"))
                .slow(Duration::from_millis(50))
        } else {
            echo(req)
        }
    })
    .await;
    // One message may wait behind the answer being written.
    let app = DiscordApp::start_with(&tmp.path().join("data"), &llm.url, &discord, |s| {
        s.queue_capacity = 1
    })
    .await;
    let dm = "1200000000000000905";
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "first question"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answered = loop {
        let m = discord.bot_messages(dm).into_iter().find(|m| {
            m.content.contains("first question")
                && m.custom_ids().iter().any(|c| c == "anchorbot:good")
        });
        if let Some(m) = m {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "no first answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A slow answer is being written, and one more message waits: the queue is full.
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "answer slowly"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !discord
        .bot_messages(dm)
        .iter()
        .any(|m| m.content.contains("s3") && m.custom_ids().iter().any(|c| c == "anchorbot:stop"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow answer never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "a follow-up"));
    // 👍 on the first answer cannot be queued: the note says so to the presser alone.
    let press = discord.button_press(&answered.id, USER_ID, "anchorbot:good");
    let press_id = press["id"].as_str().unwrap().to_string();
    discord.dispatch("INTERACTION_CREATE", press);
    let followup = "POST /webhooks/{application_id}/{token}";
    assert!(
        discord
            .wait_calls(followup, 1, Duration::from_secs(20))
            .await,
        "no ephemeral follow-up; the bot's messages: {:?}",
        discord
            .bot_messages(dm)
            .iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
    );
    let note = &discord.calls_to(followup)[0];
    assert_eq!(note.status, 200, "{:?}", note.response);
    assert_eq!(note.body["flags"], 64, "{:?}", note.body);
    assert!(
        note.body["content"]
            .as_str()
            .unwrap_or("")
            .contains("still working through"),
        "{:?}",
        note.body
    );
    let token = discord.interaction(&press_id).unwrap().token;
    assert!(note.path.contains(&token), "the press's own token");
    assert!(
        discord
            .bot_messages(dm)
            .iter()
            .all(|m| !m.content.contains("still working through")),
        "the note went to the channel in public"
    );
    // The answers still complete.
    bot_says(&discord, dm, "a follow-up").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_command_does_not_take_the_others_with_it() {
    let discord = FakeDiscord::start(FakeDiscordConfig {
        integration_types: vec![INSTALL_GUILD],
        ..FakeDiscordConfig::default()
    })
    .await;
    let mut cfg = anchorbot_discord::DiscordConfig::new(secrecy::SecretString::from(
        discord.config().token.clone(),
    ));
    cfg.api_url = discord.base_url();
    let rest = anchorbot_discord::rest::Rest::new(&cfg).unwrap();
    let application: u64 = discord.config().application_id.parse().unwrap();
    let command = |name: &str, types: serde_json::Value| serde_json::json!({"name": name, "type": 1, "description": "d", "integration_types": types});
    // One of three asks for User Install, which this application lacks.
    let commands = vec![
        command("status", serde_json::json!([0])),
        command("share", serde_json::json!([1])),
        command("help", serde_json::json!([0])),
    ];
    let report =
        anchorbot_discord::commands::register_payload(&rest, application, None, commands).await;
    assert!(
        report.one_by_one,
        "the bulk overwrite was refused: {report:?}"
    );
    assert_eq!(report.registered, ["status", "help"]);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].0, "share");
    assert!(report.refused[0].1.contains("50035"), "{report:?}");
    assert_eq!(
        registered(&discord)
            .into_iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        ["help", "status"]
    );
    // The rules this test breaks on purpose: the bulk overwrite, then `share` on its own.
    let broken = discord.violations().take();
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].request.starts_with("PUT "), "{broken:?}");
    assert!(broken[1].request.starts_with("POST "), "{broken:?}");
    assert!(broken.iter().all(|v| v.rule.contains("integration_types")));
}
