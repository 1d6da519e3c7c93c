//! Replicas on Discord: two `anchorbot run` processes on one PostgreSQL database, both with
//! the same bot token (the fake Discord), behave as one bot. One of them holds the gateway
//! role and opens the only gateway session; the other stands by and says so on its own
//! `/readyz` (200). A message is answered once. When the holder is killed (SIGKILL: it gives
//! nothing up), the standby opens the gateway within the 30 s and answers; a holder
//! that stops gives the role up, so the standby takes it without waiting for it to lapse.
//! A mention whose holder dies after creating its thread, before or after the mention was
//! journaled, is answered once, in that thread, by the replica that takes over.
//!
//! Each test gets a fresh database from `common::pg`; without a test cluster
//! (`ANCHORBOT_TEST_DATABASE_URL`) they are skipped, unless `ANCHORBOT_REQUIRE_POSTGRES=1`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorbot_discord::role::{gateway_role, SHARD};
use common::discord::{FakeDiscord, FakeDiscordConfig, FakeMessage, TEXT_CHANNEL_ID, USER_ID};
use common::*;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// How long a test waits for something that should happen (a loaded 2-core machine included).
const WAIT: Duration = Duration::from_secs(60);

/// The bound on a takeover: from the holder's death to the standby's gateway.
const TAKEOVER: Duration = Duration::from_secs(30);

/// Waits until `found` returns something, failing with `what` (and `state()`) after `limit`.
async fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut found: impl FnMut() -> Option<T>,
    state: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: {}", state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `anchorbot run` process, its log collected as it arrives.
struct Replica {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Where its `/healthz`, `/readyz` and `/metrics` are served.
    ops: String,
}

impl Replica {
    /// Starts `anchorbot run` on `db` with a data directory of its own, serving the fake
    /// Discord, its ops endpoints on a free port.
    async fn start(data: &Path, llm: &str, discord: &FakeDiscord, db: &pg::TestDb) -> Self {
        let mut cmd = anchorbot(data, llm);
        cmd.arg("run")
            .env("DISCORD_TOKEN", &discord.config().token)
            .env("ANCHORBOT_DISCORD_API_URL", discord.base_url())
            .env("ANCHORBOT_DATABASE_URL", db.url.expose_secret())
            .env("ANCHORBOT_METRICS_LISTEN", "127.0.0.1:0")
            .env("ANCHORBOT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        let ops = wait_for(
            "the ops address",
            WAIT,
            || {
                log.lock()
                    .unwrap()
                    .lines()
                    .find_map(|l| l.split("metrics listening on ").nth(1))
                    .map(|a| a.trim().trim_end_matches('"').to_string())
            },
            || log.lock().unwrap().clone(),
        )
        .await;
        Self { child, log, ops }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `/readyz`: the status and the JSON body.
    async fn readyz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("http://{}/readyz", self.ops))
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str(&r.text().await.unwrap()).unwrap(),
        )
    }

    /// Waits until `/readyz` satisfies `good`, returning its body.
    async fn wait_readyz(&self, what: &str, good: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.readyz().await;
            if good(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: /readyz said {status} {body}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: the process gives nothing up (its leases lapse).
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// Starts a replica that holds the gateway (its model at `llm_a`), then one that stands by
/// (its model at `llm_b`), each with a data directory of its own under `dir`.
async fn holder_and_standby(
    dir: &Path,
    llm_a: &str,
    llm_b: &str,
    discord: &FakeDiscord,
    db: &pg::TestDb,
) -> (Replica, Replica) {
    let first = Replica::start(&dir.join("a"), llm_a, discord, db).await;
    assert!(
        discord.wait_ready(WAIT).await,
        "the first replica never opened the gateway\n{}",
        first.log()
    );
    first
        .wait_readyz("the holder is ready", |s, b| {
            s == 200 && b["notes"].as_array().is_some_and(|n| n.is_empty())
        })
        .await;
    let second = Replica::start(&dir.join("b"), llm_b, discord, db).await;
    second
        .wait_readyz("the standby is ready", |s, b| {
            s == 200 && b["notes"] == serde_json::json!([STANDBY_NOTE])
        })
        .await;
    (first, second)
}

/// The route that starts a thread from a message.
const START_THREAD: &str = "POST /channels/{channel_id}/messages/{message_id}/threads";

/// The standby's note on `/readyz`.
const STANDBY_NOTE: &str = "platform discord: standby, another replica holds the connection";

/// The bot's final answers in `channel` (they carry the 👍/👎 buttons) that contain `text`.
fn answers(discord: &FakeDiscord, channel: &str, text: &str) -> Vec<FakeMessage> {
    discord
        .bot_messages(channel)
        .into_iter()
        .filter(|m| {
            m.content.contains(text) && m.custom_ids().iter().any(|c| c == "anchorbot:good")
        })
        .collect()
}

/// Sends a DM and waits for its final answer.
async fn ask(discord: &FakeDiscord, channel: &str, text: &str) {
    discord.dispatch("MESSAGE_CREATE", discord.dm(channel, USER_ID, text));
    wait_for(
        &format!("no answer to {text:?}"),
        WAIT,
        || answers(discord, channel, text).into_iter().next(),
        || format!("{:?}", discord.bot_messages(channel)),
    )
    .await;
}

/// The model's turns about `text` (not summaries).
fn turns_about(llm: &FakeLlm, text: &str) -> usize {
    llm.turn_requests()
        .iter()
        .filter(|r| last_user(r).contains(text))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_gateway_between_two_replicas_and_the_standby_takes_over_a_killed_holder() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;

    let mut first = Replica::start(&tmp.path().join("a"), &llm.url, &discord, &db).await;
    assert!(
        discord.wait_ready(WAIT).await,
        "the first replica never opened the gateway\n{}",
        first.log()
    );
    first
        .wait_readyz("the holder is ready", |s, b| {
            s == 200 && b["notes"].as_array().is_some_and(|n| n.is_empty())
        })
        .await;
    let second = Replica::start(&tmp.path().join("b"), &llm.url, &discord, &db).await;
    // The second asked for the role, was refused, and stands by: healthy and ready.
    let body = second
        .wait_readyz("the standby is ready", |s, b| {
            s == 200 && !b["notes"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["failed"], serde_json::json!([]), "{body}");
    assert_eq!(body["notes"], serde_json::json!([STANDBY_NOTE]), "{body}");
    let healthz = reqwest::get(format!("http://{}/healthz", second.ops))
        .await
        .unwrap();
    assert_eq!(healthz.status().as_u16(), 200);

    // One message, one answer: only the holder's session receives it.
    let dm = "1200000000000000990";
    ask(&discord, dm, "which day do we deploy?").await;
    assert_eq!(discord.sessions_started(), 1, "{}", second.log());
    assert_eq!(discord.identifies().len(), 1);
    assert_eq!(discord.open_connections(), 1);
    // Only the holder registered the slash commands.
    assert_eq!(discord.commands_puts().len(), 1);

    first.kill().await;
    let died = Instant::now();
    wait_for(
        "the standby never opened the gateway",
        TAKEOVER,
        || (discord.sessions_started() == 2 && discord.ready_connections() == 1).then_some(()),
        || second.log(),
    )
    .await;
    let took = died.elapsed();
    eprintln!("the standby held the gateway {took:?} after the holder was killed");
    let body = second
        .wait_readyz("the new holder is ready and connected", |s, b| {
            s == 200 && b["notes"].as_array().is_some_and(|n| n.is_empty())
        })
        .await;
    assert_eq!(body["failed"], serde_json::json!([]), "{body}");
    ask(&discord, dm, "and at what time?").await;
    assert!(
        died.elapsed() < TAKEOVER + WAIT,
        "answered {:?} after the kill",
        died.elapsed()
    );

    // Each question answered once, by one model turn; never two sessions at once.
    for q in ["which day do we deploy?", "and at what time?"] {
        assert_eq!(answers(&discord, dm, q).len(), 1, "{q}");
        assert_eq!(turns_about(&llm, q), 1, "{q}");
    }
    assert_eq!(discord.most_ready_connections(), 1);
    assert!(!second.log().contains(&discord.config().token));
}

/// The real `App` with the Discord adapter on `db`, and the adapter's outbound side.
async fn app_on(
    dir: &Path,
    llm: &str,
    discord: &FakeDiscord,
    db: &pg::TestDb,
) -> (anchorbot::App, Arc<dyn anchorbot_platform::Platform>) {
    let mut s = settings(dir, llm);
    s.discord.token = Some(secrecy::SecretString::from(discord.config().token.clone()));
    s.discord.api_url = discord.base_url();
    s.database_url = Some(db.url.clone());
    let adapters = anchorbot::adapters::configured(&s).unwrap();
    let platform = adapters[0].platform();
    let mut app = anchorbot::App::build(s).await.unwrap();
    for a in adapters {
        app = app.with_adapter(a);
    }
    (app, platform)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_that_stops_gives_the_gateway_to_the_standby_at_once() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let storage = anchorbot::storage::Location::Postgres(db.url.clone())
        .open()
        .await
        .unwrap();
    let application: u64 = discord.config().application_id.parse().unwrap();
    let lease = anchorbot::replica::role_lease(&gateway_role(application, SHARD));

    let (first, first_platform) = app_on(&tmp.path().join("a"), &llm.url, &discord, &db).await;
    let first_id = first.engine().replica().to_string();
    let first = running::RunningApp::start(first);
    assert!(discord.wait_ready(WAIT).await, "no gateway session");
    assert_eq!(
        storage.leases.holder(&lease).await.unwrap().as_deref(),
        Some(first_id.as_str())
    );
    let (second, second_platform) = app_on(&tmp.path().join("b"), &llm.url, &discord, &db).await;
    let second_id = second.engine().replica().to_string();
    let second = running::RunningApp::start(second);
    wait_for(
        "the second replica never stood by",
        WAIT,
        || second_platform.standby().then_some(()),
        String::new,
    )
    .await;
    assert!(first_platform.connected() && !first_platform.standby());
    assert!(!second_platform.connected());
    assert_eq!(discord.sessions_started(), 1);

    first.stop_within(WAIT, "the first replica").await;
    // Given up at shutdown: not the first's any more (without it, the lease would be the
    // first's for another 15 s).
    assert_ne!(
        storage.leases.holder(&lease).await.unwrap().as_deref(),
        Some(first_id.as_str())
    );
    let stopped = Instant::now();
    wait_for(
        "the standby never opened the gateway",
        WAIT,
        || (discord.sessions_started() == 2 && second_platform.connected()).then_some(()),
        || format!("{} sessions", discord.sessions_started()),
    )
    .await;
    eprintln!(
        "the standby held the gateway {:?} after the holder stopped",
        stopped.elapsed()
    );
    assert!(!second_platform.standby());
    assert_eq!(
        storage.leases.holder(&lease).await.unwrap().as_deref(),
        Some(second_id.as_str())
    );
    let dm = "1200000000000000991";
    ask(&discord, dm, "who holds the gateway?").await;
    assert_eq!(answers(&discord, dm, "who holds the gateway?").len(), 1);
    assert_eq!(turns_about(&llm, "who holds the gateway?"), 1);
    second.stop_within(WAIT, "the second replica").await;
    assert_eq!(storage.leases.holder(&lease).await.unwrap(), None);
    assert_eq!(discord.most_ready_connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_whose_holder_dies_once_its_thread_exists_is_answered_in_that_thread() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let (mut first, second) =
        holder_and_standby(tmp.path(), &llm.url, &llm.url, &discord, &db).await;

    // The holder claims the mention and creates its thread; Discord's answer never reaches
    // it, and it dies waiting: the mention is not journaled as a message of the thread yet.
    discord.answer_late(START_THREAD, 1, Duration::from_secs(600));
    let question = "where is the deploy runbook?";
    let mention = discord.mention(TEXT_CHANNEL_ID, USER_ID, question);
    let mid = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    let thread = discord
        .wait_thread_from(&mid, WAIT)
        .await
        .unwrap_or_else(|| panic!("no thread from the mention\n{}", first.log()));
    assert_eq!(thread, mid, "a thread from a message has the message's id");
    first.kill().await;
    let died = Instant::now();

    // The standby takes the claim over, maps the mention again (Discord refuses a second
    // thread) and answers in the first one.
    wait_for(
        "the mention was never answered in its thread",
        TAKEOVER + WAIT,
        || answers(&discord, &thread, question).into_iter().next(),
        || format!("{}\n{:?}", second.log(), discord.bot_messages(&thread)),
    )
    .await;
    eprintln!(
        "answered in the thread {:?} after the holder was killed",
        died.elapsed()
    );
    let log = second.log();
    assert!(
        log.contains("mapping a Discord message taken over"),
        "{log}"
    );
    assert_eq!(discord.threads_created().len(), 1);
    let refused: Vec<_> = discord
        .calls_to(START_THREAD)
        .into_iter()
        .filter(|c| c.status == 400 && c.response["code"] == 160004)
        .collect();
    assert_eq!(refused.len(), 1, "the re-map asked for the thread again");
    assert_eq!(answers(&discord, &thread, question).len(), 1);
    assert_eq!(turns_about(&llm, question), 1);
    // Nothing was answered in place, in the channel.
    let in_place = discord.bot_messages(TEXT_CHANNEL_ID);
    assert!(in_place.is_empty(), "{in_place:?}");
    assert!(!log.contains(&discord.config().token));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_whose_holder_dies_mid_answer_is_answered_once_in_the_same_thread() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    // The holder's model streams for minutes; the standby's answers at once.
    let stuck = FakeLlm::start(|_| {
        Reply::chunks(vec!["partial words ".to_string(); 2000], Some("stop"))
            .slow(Duration::from_millis(100))
    })
    .await;
    let llm = FakeLlm::start(echo).await;
    let (mut first, second) =
        holder_and_standby(tmp.path(), &stuck.url, &llm.url, &discord, &db).await;

    let question = "who owns the billing service?";
    let mention = discord.mention(TEXT_CHANNEL_ID, USER_ID, question);
    let mid = mention["id"].as_str().unwrap().to_string();
    discord.dispatch("MESSAGE_CREATE", mention);
    let thread = discord
        .wait_thread_from(&mid, WAIT)
        .await
        .unwrap_or_else(|| panic!("no thread from the mention\n{}", first.log()));
    wait_for(
        "the holder never started its answer",
        WAIT,
        || {
            discord
                .bot_messages(&thread)
                .into_iter()
                .find(|m| m.content.contains("partial words"))
        },
        || first.log(),
    )
    .await;
    first.kill().await;
    let died = Instant::now();

    wait_for(
        "the mention was never answered in its thread",
        TAKEOVER + WAIT,
        || answers(&discord, &thread, question).into_iter().next(),
        || format!("{}\n{:?}", second.log(), discord.bot_messages(&thread)),
    )
    .await;
    eprintln!(
        "answered in the thread {:?} after the holder was killed",
        died.elapsed()
    );
    // One thread, one complete answer in it: the partial one was taken away.
    assert_eq!(discord.threads_created().len(), 1);
    assert_eq!(discord.calls_to(START_THREAD).len(), 1);
    let said: Vec<String> = discord
        .bot_messages(&thread)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(answers(&discord, &thread, question).len(), 1, "{said:?}");
    assert!(
        !said.iter().any(|c| c.contains("partial words")),
        "{said:?}"
    );
    assert_eq!(turns_about(&llm, question), 1);
    let in_place = discord.bot_messages(TEXT_CHANNEL_ID);
    assert!(in_place.is_empty(), "{in_place:?}");
}
