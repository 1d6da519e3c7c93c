//! The Discord behaviours around a reply, end to end: the real `App` with the real
//! `DiscordAdapter` against the strict fake Discord (`anchorbot_fakes::discord`) and the fake
//! OpenAI server. Forum posts and threads the bot was asked into, 429s (per bucket, and global),
//! the edit throttle, typing and the status message of a file being read. The rate-limit
//! tests also drive the adapter's own `DiscordPlatform` directly, to time its calls exactly.
//!
//! Timing: nothing here asserts speed. The only time bounds are the ones Discord imposes (lower
//! bounds between writes: `retry_after`, the edit throttle) and the typing indicator's lifetime.

mod common;

use std::time::{Duration, Instant};

use anchorbot_discord::platform::DiscordPlatform;
use anchorbot_discord::rest::Rest;
use anchorbot_discord::target::{DiscordTarget, InteractionRef};
use anchorbot_discord::DiscordConfig;
use anchorbot_fakes::discord_limits::IN_FLIGHT;
use anchorbot_platform::{Author, ConversationKey, Platform, PlatformError, ReplyTarget};
use common::discord::{
    FakeDiscord, FakeDiscordConfig, FakeMessage, RestCall, FORUM_CHANNEL_ID, GUILD_ID,
    OTHER_USER_ID, TEXT_CHANNEL_ID, USER_ID,
};
use common::discord_app::DiscordApp;
use common::fixtures;
use common::*;

/// Creating a message.
const POST: &str = "POST /channels/{channel_id}/messages";
/// Editing a message.
const EDIT: &str = "PATCH /channels/{channel_id}/messages/{message_id}";
/// Deleting a message.
const DELETE: &str = "DELETE /channels/{channel_id}/messages/{message_id}";
/// Starting a thread from a message.
const THREAD_FROM_MESSAGE: &str = "POST /channels/{channel_id}/messages/{message_id}/threads";
/// Reading a channel's history.
const HISTORY: &str = "GET /channels/{channel_id}/messages";

/// How long a test waits for something that should happen (a loaded 2-core machine included).
const WAIT: Duration = Duration::from_secs(60);

/// Waits until `found` returns something, failing with `what` (and `state()`) at the deadline.
async fn wait_for<T>(
    what: &str,
    mut found: impl FnMut() -> Option<T>,
    state: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: {}", state());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The contents of the bot's visible messages in `channel`.
fn contents(discord: &FakeDiscord, channel: &str) -> Vec<String> {
    discord
        .bot_messages(channel)
        .into_iter()
        .map(|m| m.content)
        .collect()
}

/// Waits until the bot's answer containing `text` in `channel` is final: it carries the
/// 👍/👎 buttons, which are set once the reply has ended complete.
async fn answer(discord: &FakeDiscord, channel: &str, text: &str) -> FakeMessage {
    wait_for(
        &format!("no final answer with {text:?} in {channel}"),
        || {
            discord.bot_messages(channel).into_iter().find(|m| {
                m.content.contains(text) && m.custom_ids().iter().any(|c| c == "anchorbot:good")
            })
        },
        || format!("{:?}", contents(discord, channel)),
    )
    .await
}

/// The calls of `route` whose path is in `channel` (`/channels/{channel}` and below).
fn calls_in(discord: &FakeDiscord, route: &str, channel: &str) -> Vec<RestCall> {
    let prefix = format!("/channels/{channel}");
    discord
        .calls_to(route)
        .into_iter()
        .filter(|c| c.path == prefix || c.path.starts_with(&format!("{prefix}/")))
        .collect()
}

/// The writes of one message's text, in arrival order: its creation and the edits that set
/// its content (not the ones that only change its buttons).
fn text_writes(discord: &FakeDiscord, m: &FakeMessage) -> Vec<RestCall> {
    let created = calls_in(discord, POST, &m.channel_id)
        .into_iter()
        .filter(|c| c.status == 200 && c.response["id"] == m.id.as_str());
    let edit_path = format!("/channels/{}/messages/{}", m.channel_id, m.id);
    let edited = discord
        .calls_to(EDIT)
        .into_iter()
        .filter(|c| c.path == edit_path && c.body.get("content").is_some());
    let mut all: Vec<RestCall> = created.chain(edited).collect();
    all.sort_by_key(|c| c.at);
    all
}

/// The gaps between consecutive calls.
fn gaps(calls: &[RestCall]) -> Vec<Duration> {
    calls
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .collect()
}

/// A slow answer: `n` words `w0 … w{n-1}`, one every `every`.
fn slow_words(n: usize, every: Duration) -> Reply {
    Reply::chunks((0..n).map(|i| format!("w{i} ")).collect(), Some("stop")).slow(every)
}

/// The full text of [`slow_words`].
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// No thread was started from a message, and nothing was posted in `channel`.
fn assert_no_thread_and_nothing_in(discord: &FakeDiscord, channel: &str) {
    assert!(
        discord.threads_created().is_empty(),
        "a thread was created: {:?}",
        discord.threads_created()
    );
    assert!(discord.calls_to(THREAD_FROM_MESSAGE).is_empty());
    assert!(
        calls_in(discord, POST, channel).is_empty(),
        "the bot posted in {channel}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forum_post_that_mentions_the_bot_is_answered_in_the_post_as_its_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&dir, &llm.url, &discord).await;
    let bot = discord.config().bot_user_id.clone();
    let (thread, first) = discord.forum_post(
        FORUM_CHANNEL_ID,
        USER_ID,
        "Release trains",
        &format!("<@{bot}> our release train is called KESTREL"),
    );
    let post = thread["id"].as_str().unwrap().to_string();
    assert_eq!(
        first["id"], thread["id"],
        "a forum post's first message has its id"
    );
    discord.dispatch("THREAD_CREATE", thread);
    discord.dispatch("MESSAGE_CREATE", first);
    let reply = answer(&discord, &post, "our release train is called KESTREL").await;
    assert_eq!(reply.channel_id, post, "answered inside the post");
    // In the post, a message without a mention is not for the bot; one with a mention is,
    // and it remembers the post's conversation. The mapper keeps arrival order and a
    // conversation answers in order, so once the second is answered the first was skipped.
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.message(&post, USER_ID, "an aside about PLOVER, not for the bot"),
    );
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.mention(&post, USER_ID, "what is our release train called?"),
    );
    answer(&discord, &post, "what is our release train called?").await;
    let turns = llm.turn_requests();
    assert_eq!(turns.len(), 2, "only the mentions were answered");
    assert!(
        all_text(&turns[1]).contains("KESTREL"),
        "the follow-up was answered with the post's memory: {}",
        all_text(&turns[1])
    );
    assert!(turns.iter().all(|r| !last_user(r).contains("PLOVER")));
    assert!(contents(&discord, &post)
        .iter()
        .all(|c| !c.contains("PLOVER")));
    assert_no_thread_and_nothing_in(&discord, FORUM_CHANNEL_ID);
    assert_eq!(
        contents(&discord, &post).len(),
        2,
        "{:?}",
        contents(&discord, &post)
    );
    app.stop().await;
    // The conversation is the post: discord:GUILD/FORUM/POST.
    let store = reopen_store(&dir).await;
    let key =
        ConversationKey::new("discord", Some(GUILD_ID), FORUM_CHANNEL_ID, Some(&post)).unwrap();
    assert_eq!(
        key.to_string(),
        format!("discord:{GUILD_ID}/{FORUM_CHANNEL_ID}/{post}")
    );
    let turns = store.anchor(&key).await.unwrap().turns;
    assert_eq!(turns.len(), 2);
    assert!(turns[0].query.contains("KESTREL"), "{:?}", turns[0].query);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_in_a_thread_the_bot_did_not_create_seeds_it_with_the_earlier_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&dir, &llm.url, &discord).await;
    // bob started a thread from his message in #general; the thread opens with Discord's
    // thread starter message, which points at that message.
    let thread = discord.seed_thread_from_message(
        TEXT_CHANNEL_ID,
        OTHER_USER_ID,
        "Outage review",
        (
            OTHER_USER_ID,
            "Outage review: the cache tier fell over at 02:10",
        ),
        &[
            (USER_ID, "root cause was the TTL change in PR 4411"),
            (OTHER_USER_ID, "we agreed to roll back on Friday"),
        ],
    );
    let mention = discord.mention(&thread, USER_ID, "what did we decide?");
    let mention_id = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    let reply = answer(&discord, &thread, "what did we decide?").await;
    assert_eq!(reply.channel_id, thread);
    // The history was read from the thread, before the mention.
    let reads = calls_in(&discord, HISTORY, &thread);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].query.get("before"), Some(&mention_id));
    // The prompt holds the earlier messages, oldest first, the starter's message included.
    let prompt = all_text(&llm.turn_requests()[0]);
    let at = |s: &str| {
        prompt
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} is not in the prompt: {prompt}"))
    };
    let (starter, cause, decision) = (
        at("bob: Outage review: the cache tier fell over at 02:10"),
        at("alice: root cause was the TTL change in PR 4411"),
        at("bob: we agreed to roll back on Friday"),
    );
    assert!(
        starter < cause && cause < decision,
        "oldest first: {prompt}"
    );
    assert_no_thread_and_nothing_in(&discord, TEXT_CHANNEL_ID);
    // The bot was asked in once: later messages there need a mention again.
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.message(&thread, USER_ID, "side chat about GANNET"),
    );
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.mention(&thread, USER_ID, "who rolls it back?"),
    );
    answer(&discord, &thread, "who rolls it back?").await;
    let turns = llm.turn_requests();
    assert_eq!(turns.len(), 2, "only the mentions were answered");
    assert!(turns.iter().all(|r| !last_user(r).contains("GANNET")));
    assert!(contents(&discord, &thread)
        .iter()
        .all(|c| !c.contains("GANNET")));
    // The second mention is a follow-up of the same conversation: the seed is in memory and
    // the history is not read again.
    assert!(all_text(&turns[1]).contains("roll back on Friday"));
    assert_eq!(calls_in(&discord, HISTORY, &thread).len(), 1);
    app.stop().await;
    let store = reopen_store(&dir).await;
    let key =
        ConversationKey::new("discord", Some(GUILD_ID), TEXT_CHANNEL_ID, Some(&thread)).unwrap();
    assert_eq!(store.anchor(&key).await.unwrap().turns.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_thread_seeds_only_its_newest_messages_within_the_token_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    // 100 messages near Discord's 2,000-character limit: far more than any prompt holds.
    let notes: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "note {i:03}: {}",
                "the quick brown fox jumps over the lazy dog ".repeat(40)
            )
        })
        .collect();
    let seeded: Vec<(&str, &str)> = notes.iter().map(|n| (OTHER_USER_ID, n.as_str())).collect();
    let thread = discord.seed_thread(TEXT_CHANNEL_ID, OTHER_USER_ID, "Long thread", &seeded);
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.mention(&thread, USER_ID, "summarise this thread"),
    );
    answer(&discord, &thread, "summarise this thread").await;
    let prompt = all_text(&llm.turn_requests()[0]);
    assert!(prompt.contains("note 099:"), "the newest message is kept");
    assert!(
        !prompt.contains("note 000:"),
        "the oldest message is left out"
    );
    let kept: Vec<usize> = (0..100)
        .filter(|i| prompt.contains(&format!("note {i:03}:")))
        .collect();
    // What is kept is the newest run of messages, without gaps.
    assert!(!kept.is_empty());
    assert_eq!(
        kept,
        (kept[0]..100).collect::<Vec<_>>(),
        "newest first, no gaps"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_edit_waits_out_retry_after_and_the_answer_still_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // About 3 s of streaming: edits are due every 1.1 s, and two of them are refused.
    let llm = FakeLlm::start(|_| slow_words(60, Duration::from_millis(50))).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let retry_after = Duration::from_millis(1500);
    discord.rate_limit(EDIT, 2, retry_after.as_secs_f64());
    let dm = "1200000000000000910";
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "stream please"));
    let reply = answer(&discord, dm, "w59").await;
    assert_eq!(reply.content.trim(), words(60), "complete and correct");
    assert_eq!(
        contents(&discord, dm).len(),
        1,
        "{:?}",
        contents(&discord, dm)
    );
    let edits = calls_in(&discord, EDIT, dm);
    let limited: Vec<usize> = (0..edits.len())
        .filter(|&i| edits[i].status == 429)
        .collect();
    assert_eq!(limited.len(), 2, "{edits:?}");
    for i in limited {
        let next = edits
            .get(i + 1)
            .unwrap_or_else(|| panic!("nothing was edited after the 429: {edits:?}"));
        let waited = next.at.saturating_duration_since(edits[i].at);
        assert!(
            waited >= retry_after,
            "the next edit came {waited:?} after a 429 asking for {retry_after:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_first_post_is_sent_again_after_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let retry_after = Duration::from_millis(700);
    discord.rate_limit(POST, 1, retry_after.as_secs_f64());
    let dm = "1200000000000000911";
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm(dm, USER_ID, "hello despite limits"),
    );
    answer(&discord, dm, "hello despite limits").await;
    assert_eq!(
        contents(&discord, dm).len(),
        1,
        "{:?}",
        contents(&discord, dm)
    );
    let posts = calls_in(&discord, POST, dm);
    assert_eq!(
        posts.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200],
        "{posts:?}"
    );
    let waited = posts[1].at.saturating_duration_since(posts[0].at);
    assert!(
        waited >= retry_after,
        "posted again {waited:?} after a 429 asking for {retry_after:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_button_change_is_sent_again_so_no_stop_button_outlives_the_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // One piece: the first post already holds the whole answer, so the first edit is the one
    // that swaps the Stop button for 👍/👎.
    let llm = FakeLlm::start(|_| Reply::chunks(vec!["Short answer.".into()], Some("stop"))).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let retry_after = Duration::from_millis(500);
    discord.rate_limit(EDIT, 1, retry_after.as_secs_f64());
    let dm = "1200000000000000913";
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "be brief"));
    let reply = answer(&discord, dm, "Short answer.").await;
    assert!(
        !reply.custom_ids().iter().any(|c| c == "anchorbot:stop"),
        "{:?}",
        reply.custom_ids()
    );
    let edits = calls_in(&discord, EDIT, dm);
    assert_eq!(
        edits.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200],
        "{edits:?}"
    );
    assert!(edits.iter().all(|c| c.body.get("content").is_none()));
    let waited = edits[1].at.saturating_duration_since(edits[0].at);
    assert!(waited >= retry_after, "sent again after {waited:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_reply_is_posted_then_edited_at_most_about_once_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // About 4 s of streaming, a word every 50 ms.
    let llm = FakeLlm::start(|_| slow_words(80, Duration::from_millis(50))).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let dm = "1200000000000000912";
    discord.dispatch("MESSAGE_CREATE", discord.dm(dm, USER_ID, "stream slowly"));
    let reply = answer(&discord, dm, "w79").await;
    assert_eq!(reply.content.trim(), words(80));
    let writes = text_writes(&discord, &reply);
    assert_eq!(writes[0].method, "POST", "posted first: {writes:?}");
    assert!(
        writes.len() >= 3,
        "a post, edits while streaming, the final edit: {writes:?}"
    );
    assert!(writes.iter().all(|c| c.status == 200), "{writes:?}");
    // The throttle is 1.1 s between writes; the final write is not held back. Allow for the
    // requests' own delays on a loaded machine.
    let streaming = &writes[..writes.len() - 1];
    for (i, gap) in gaps(streaming).into_iter().enumerate() {
        assert!(
            gap >= Duration::from_millis(900),
            "write {} came {gap:?} after the one before",
            i + 1
        );
    }
    // The text is written once more at the end, then only the buttons change.
    let last = writes.last().unwrap();
    assert_eq!(
        last.body["content"].as_str().map(str::trim),
        Some(words(80).as_str())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_shows_where_the_reply_goes_is_renewed_and_stops_when_the_answer_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // The first token comes after 9.5 s, past one typing indicator's 10 s minus renewal
    // latency; then the answer streams for 7.5 s, past the next renewal, had it not stopped.
    let llm = FakeLlm::start(|_| {
        let mut r = slow_words(75, Duration::from_millis(100));
        r.first_delay = Duration::from_millis(9500);
        r
    })
    .await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let mention = discord.mention(TEXT_CHANNEL_ID, USER_ID, "think hard");
    let id = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    let thread = discord
        .wait_thread_from(&id, WAIT)
        .await
        .expect("a thread was made from the mention");
    let reply = answer(&discord, &thread, "w74").await;
    let first_post = text_writes(&discord, &reply)[0].at;
    let typing = discord.typing(&thread);
    assert!(
        discord.typing(TEXT_CHANNEL_ID).is_empty(),
        "typing goes where the reply goes, the thread"
    );
    assert!(typing.len() >= 2, "renewed while waiting: {typing:?}");
    assert!(
        typing.iter().all(|t| t.at < first_post),
        "typing after the answer started: {:?}",
        typing
            .iter()
            .map(|t| t.at.saturating_duration_since(first_post))
            .collect::<Vec<_>>()
    );
    // Renewed before it runs out (an indicator lasts 10 s), and not needlessly often.
    for w in typing.windows(2) {
        let gap = w[1].at.saturating_duration_since(w[0].at);
        assert!(
            gap >= Duration::from_secs(7) && gap < Duration::from_secs(10),
            "typing renewed after {gap:?}"
        );
    }
    app.stop().await;
}

/// A scanned PDF: `n` image-only pages, each a picture of one line of text.
fn scanned_pdf(n: usize) -> Vec<u8> {
    let pages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let (w, h, gray) = fixtures::render_text_to_gray(&[&format!("HANDBOOK PAGE {i}")]);
            fixtures::gray_image_pdf(w, h, &gray)
        })
        .collect();
    fixtures::join_pdfs(&pages)
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_a_pdf_edits_one_status_message_then_confirms_the_file() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // Scanned pages go to the vision model, which takes 600 ms a page: reading the file takes
    // seconds however fast the machine is, so progress has time to show.
    let llm = FakeLlm::start(|req| {
        if req["stream"] == true {
            echo(req)
        } else {
            Reply::text("Handbook page: holidays are booked in the team calendar.")
                .slow(Duration::from_millis(600))
        }
    })
    .await;
    let app = DiscordApp::start_with(&tmp.path().join("data"), &llm.url, &discord, |s| {
        s.documents.ocr_concurrency = 1;
        s.documents.embed_batch = 1;
    })
    .await;
    let file = discord.attachment("handbook.pdf", &scanned_pdf(5), "application/pdf");
    let bot = discord.config().bot_user_id.clone();
    let mention = FakeDiscord::with_attachments(
        discord.message(TEXT_CHANNEL_ID, USER_ID, &format!("<@{bot}>")),
        vec![file],
    );
    let id = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    let thread = discord
        .wait_thread_from(&id, WAIT)
        .await
        .expect("a thread was made from the mention");
    // A notice, not an answer: once final, no button is left under it (no Stop, and no
    // 👍/👎 or Regenerate either).
    let confirmation = wait_for(
        "no final confirmation of handbook.pdf",
        || {
            discord.bot_messages(&thread).into_iter().find(|m| {
                m.content.contains("Added handbook.pdf")
                    && m.custom_ids().is_empty()
                    && m.edits() > 0
            })
        },
        || format!("{:?}", contents(&discord, &thread)),
    )
    .await;
    assert!(
        confirmation.content.contains("5 pages"),
        "{}",
        confirmation.content
    );
    // Two messages were posted in the thread: the status message, then the confirmation.
    let posts: Vec<RestCall> = calls_in(&discord, POST, &thread)
        .into_iter()
        .filter(|c| c.status == 200)
        .collect();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1].response["id"], confirmation.id.as_str());
    let status_id = posts[0].response["id"].as_str().unwrap().to_string();
    let status = discord.find_message(&status_id).unwrap();
    assert!(
        status.history[0].starts_with("Reading handbook.pdf"),
        "{:?}",
        status.history
    );
    // The progress went into that one message, edited as pages were read.
    assert!(
        status.history[1..]
            .iter()
            .any(|h| h.contains("handbook.pdf: page")),
        "{:?}",
        status.history
    );
    // Its edits follow the same throttle as a streamed reply.
    let writes = text_writes(&discord, &status);
    assert_eq!(writes.len(), status.history.len(), "{writes:?}");
    for gap in gaps(&writes) {
        assert!(
            gap >= Duration::from_millis(900),
            "status edited after {gap:?}"
        );
    }
    // Once the file is in, the confirmation says so and the status message goes.
    wait_for(
        "the status message stayed",
        || discord.find_message(&status_id).filter(|m| m.deleted),
        || format!("{:?}", discord.find_message(&status_id).map(|m| m.history)),
    )
    .await;
    let deletes = calls_in(&discord, DELETE, &thread);
    assert_eq!(deletes.len(), 1, "only the status message was removed");
    assert!(
        deletes[0].at >= posts[1].at,
        "removed after the confirmation"
    );
    assert_eq!(contents(&discord, &thread), [confirmation.content]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_discord_gateway_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    // Before the adapter runs, its platform has no session: not ready.
    let mut s = settings(&dir, &llm.url);
    s.discord.token = Some(secrecy::SecretString::from(discord.config().token.clone()));
    s.discord.api_url = discord.base_url();
    let adapters = anchorbot::adapters::configured(&s).unwrap();
    assert!(
        !adapters[0].platform().connected(),
        "connected before READY"
    );
    drop(adapters);
    let app = DiscordApp::start_with(&dir, &llm.url, &discord, |s| {
        s.metrics.listen = Some("127.0.0.1:0".into());
    })
    .await;
    let ops = app.ops.expect("metrics.listen was set");
    // After READY: the store, the model endpoint and the Discord session are all up.
    wait_ready(ops, |_| {}).await;
    // The REST calls made so far (registering the slash commands at READY) are counted by a
    // route template: no snowflake in any label.
    let metrics = reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let calls = metrics
        .lines()
        .find(|l| {
            l.starts_with("anchorbot_platform_api_calls_total{")
                && l.contains("platform=\"discord\"")
                && l.contains("route=\"PUT /applications/{id}/commands\"")
        })
        .unwrap_or_else(|| panic!("no command registration counted:\n{metrics}"));
    let n: f64 = calls.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{calls}");
    let app_id = discord.config().application_id.clone();
    assert!(!metrics.contains(&app_id), "an id in a label:\n{metrics}");
    app.stop().await;
}

/// The adapter's outbound side, on its own, calling the fake.
fn platform_for(discord: &FakeDiscord) -> DiscordPlatform {
    let mut cfg = DiscordConfig::new(secrecy::SecretString::from(discord.config().token.clone()));
    cfg.api_url = discord.base_url();
    let rest = Rest::new(&cfg).unwrap();
    DiscordPlatform::new(cfg, rest, Rest::downloader().unwrap())
}

/// A reply target posting in DM channel `id` (which the fake then knows).
fn dm_target(discord: &FakeDiscord, id: &str) -> ReplyTarget {
    discord.dm(id, USER_ID, "hello");
    DiscordTarget::default().into_target(id, None, None)
}

/// The one call of `route` in `channel` answered 429.
fn the_429(discord: &FakeDiscord, route: &str, channel: &str) -> RestCall {
    let limited: Vec<RestCall> = calls_in(discord, route, channel)
        .into_iter()
        .filter(|c| c.status == 429)
        .collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    limited[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_holds_every_route_of_its_bucket_in_that_channel_and_no_other() {
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // Discord counts creating and editing messages in one bucket here.
    discord.share_bucket(&[POST, EDIT]);
    let p = platform_for(&discord);
    let (dm, other) = ("1200000000000000920", "1200000000000000921");
    let to = dm_target(&discord, dm);
    let elsewhere = dm_target(&discord, other);
    let first = p.post(&to, "first").await.unwrap();
    p.post(&elsewhere, "elsewhere, first").await.unwrap();
    let retry_after = Duration::from_secs(3);
    discord.rate_limit(EDIT, 1, retry_after.as_secs_f64());
    match p.edit(&first, "first, edited").await {
        Err(PlatformError::RateLimited { retry_after: r }) => {
            assert!(r >= Duration::from_millis(2900), "{r:?}")
        }
        other => panic!("expected a 429: {other:?}"),
    }
    let limited = the_429(&discord, EDIT, dm);
    // Another channel's count of the bucket is its own: not held.
    p.post(&elsewhere, "elsewhere, second").await.unwrap();
    let other_post = calls_in(&discord, POST, other).pop().unwrap();
    assert!(
        other_post.at < limited.at + retry_after,
        "a post in another channel waited for this channel's hold"
    );
    // A post in the held channel is another route of the same bucket: it waits the hold out
    // (the fake records a call inside a running Retry-After as a broken rule).
    p.post(&to, "second").await.unwrap();
    let posts = calls_in(&discord, POST, dm);
    let second = posts.last().unwrap();
    assert_eq!(second.status, 200, "{posts:?}");
    let waited = second.at.saturating_duration_since(limited.at);
    assert!(
        waited >= retry_after,
        "posted {waited:?} after a 429 of the bucket asking for {retry_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_429_holds_every_route_but_the_interaction_endpoints() {
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let p = platform_for(&discord);
    let (dm, other) = ("1200000000000000922", "1200000000000000923");
    let to = dm_target(&discord, dm);
    let elsewhere = dm_target(&discord, other);
    let m = p.post(&to, "first").await.unwrap();
    let retry_after = Duration::from_secs(3);
    discord.global_rate_limit(retry_after.as_secs_f64());
    assert!(matches!(
        p.edit(&m, "edited").await,
        Err(PlatformError::RateLimited { .. })
    ));
    let limited = the_429(&discord, EDIT, dm);
    assert_eq!(limited.response["global"], true);
    // A slash command in the other DM is still answered at once: Discord's global limit does
    // not bind interaction endpoints, and its 3 s would not wait.
    let cmd = discord.command(other, USER_ID, "status");
    let (id, token) = (
        cmd["id"].as_str().unwrap().to_string(),
        cmd["token"].as_str().unwrap().to_string(),
    );
    discord.dispatch("INTERACTION_CREATE", cmd);
    let interaction = DiscordTarget {
        guild: None,
        interaction: Some(InteractionRef {
            id: id.clone(),
            token,
            application: discord.config().application_id.clone(),
            deferred: false,
            acknowledged: false,
        }),
    }
    .into_target(other, None, None);
    let asker = Author {
        id: USER_ID.into(),
        display_name: "alice".into(),
    };
    p.ephemeral(&interaction, &asker, "private answer")
        .await
        .unwrap();
    let answered = discord.interaction(&id).unwrap().callbacks[0].2;
    assert!(
        answered < limited.at + retry_after,
        "the interaction waited for the global hold"
    );
    // Every other route waits, in every channel.
    p.post(&elsewhere, "after the hold").await.unwrap();
    let post = calls_in(&discord, POST, other).pop().unwrap();
    assert_eq!(post.status, 200);
    let waited = post.at.saturating_duration_since(limited.at);
    assert!(
        waited >= retry_after,
        "posted {waited:?} after a global 429 asking for {retry_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_429_in_the_middle_of_two_answers_holds_both_and_both_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // About 4 s of streaming each.
    let llm = FakeLlm::start(|_| slow_words(80, Duration::from_millis(50))).await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let (a, b) = ("1200000000000000924", "1200000000000000925");
    discord.dispatch("MESSAGE_CREATE", discord.dm(a, USER_ID, "first asker"));
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm(b, OTHER_USER_ID, "second asker"),
    );
    // Once both answers are streaming, Discord answers the next call with a global 429.
    wait_for(
        "both answers streaming",
        || {
            let streaming = |c: &str| {
                discord
                    .bot_messages(c)
                    .iter()
                    .any(|m| m.content.contains("w5"))
            };
            (streaming(a) && streaming(b)).then_some(())
        },
        || format!("{:?} {:?}", contents(&discord, a), contents(&discord, b)),
    )
    .await;
    let retry_after = Duration::from_secs(2);
    discord.global_rate_limit(retry_after.as_secs_f64());
    for c in [a, b] {
        let reply = answer(&discord, c, "w79").await;
        assert_eq!(reply.content.trim(), words(80), "complete in {c}");
    }
    let calls = discord.calls();
    let global = calls
        .iter()
        .find(|c| c.status == 429 && c.response["global"] == true)
        .expect("the global 429 was given")
        .clone();
    // No call went out during the hold but those already on their way when the 429 came (the
    // fake records any other as a broken rule); calls resumed after it.
    let hold_end = global.at + retry_after;
    let during: Vec<String> = calls
        .iter()
        .filter(|c| c.at > global.at + IN_FLIGHT && c.at < hold_end)
        .filter(|c| !c.path.starts_with("/interactions/") && !c.path.starts_with("/webhooks/"))
        .map(|c| format!("{} {} {:?}", c.method, c.path, c.at - global.at))
        .collect();
    assert!(during.is_empty(), "sent into the global hold: {during:?}");
    assert!(
        calls.iter().any(|c| c.at >= hold_end && c.status == 200),
        "nothing was sent after the hold"
    );
    app.stop().await;
}
