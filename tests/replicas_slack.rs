//! Replicas against the fake Slack: two real `App`s with the real `SlackAdapter`, each in a
//! runtime of its own (a process stand-in that can be killed at once), with separate empty
//! data dirs, on one PostgreSQL database. Each opens its own Socket Mode connections, and
//! the fake delivers each event to one connection, as Slack spreads an app's events over its
//! connections.
//!
//! Skipped without `ANCHORBOT_TEST_DATABASE_URL` (fails instead with
//! `ANCHORBOT_REQUIRE_POSTGRES=1`, as CI runs it).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::isolated::Isolated;
use common::running::RunningApp;
use common::slack::{FakeSlack, FakeSlackConfig};
use common::*;
use secrecy::SecretString;

/// One replica: an `App` with the Slack adapter in its own runtime.
struct Replica {
    process: Isolated,
    app: RunningApp,
}

impl Replica {
    /// Starts a replica with its data in `dir` (empty), the model at `llm`, on database
    /// `db`; returns once its first Socket Mode connection is open.
    async fn start(dir: &Path, llm: &str, slack: &FakeSlack, db: &pg::TestDb) -> Self {
        let mut s: anchorbot::Settings = settings(dir, llm);
        s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
        s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
        s.slack.api_url = slack.api_url();
        s.database_url = Some(db.url.clone());
        let before = slack.connections_opened();
        let process = Isolated::new();
        let app = RunningApp::spawn(|stopped| {
            process.spawn(async move {
                let mut app = anchorbot::App::build(s.clone()).await?;
                for a in anchorbot::adapters::configured_on(&s, app.storage()).unwrap() {
                    app = app.with_adapter(a);
                }
                app.run_until_stopped(stopped).await
            })
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while slack.connections_opened() <= before {
            assert!(Instant::now() < deadline, "no Socket Mode connection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { process, app }
    }

    /// Stops the replica and waits for it to drain.
    async fn stop(self) {
        self.app
            .stop_within(running::STOP_WAIT, "the replica")
            .await;
    }

    /// Ends the replica where it stands, as `kill -9` would.
    fn kill(self) {
        self.process.kill();
    }
}

/// Waits until `n` Socket Mode connections are open.
async fn connections(slack: &FakeSlack, n: usize) {
    assert!(
        slack.wait_connections(n, Duration::from_secs(20)).await,
        "{} connections open, {n} expected",
        slack.open_connections()
    );
}

/// The bot's messages in a thread.
fn bot_answers(slack: &FakeSlack, channel: &str, ts: &str) -> Vec<String> {
    slack
        .thread_messages(channel, ts)
        .into_iter()
        .filter(|m| m.bot_id.is_some())
        .map(|m| m.visible_text())
        .collect()
}

/// Two replicas A and B on one database, one Socket Mode connection each (Tier 1 allows
/// about one open a minute): connection 0 is A's, 1 is B's.
async fn two_replicas(
    slack: &FakeSlack,
    llm_a: &str,
    llm_b: &str,
    db: &pg::TestDb,
    tmp: &Path,
) -> (Replica, Replica) {
    let a = Replica::start(&tmp.join("a"), llm_a, slack, db).await;
    connections(slack, 1).await;
    let b = Replica::start(&tmp.join("b"), llm_b, slack, db).await;
    connections(slack, 2).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_answer_each_mention_once_in_order_and_share_memory() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    // Slow enough that a second question arrives while the first is answered.
    let llm = FakeLlm::start(|req| echo(req).slow(Duration::from_millis(150))).await;
    let (a, b) = two_replicas(&slack, &llm.url, &llm.url, &db, tmp.path()).await;

    // A mention reaches A; its `message` twin, and the mention again, reach B.
    let mention = slack.app_mention("C1", "U1", "the code word is BLUEBIRD", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    let twin = slack.message_twin(&mention);
    let env = slack.push_event_to(Some(0), mention.clone());
    assert!(slack.wait_ack(&env, Duration::from_secs(3)).await.is_some());
    slack.push_event_to(Some(1), twin);
    slack.push_event_to(Some(1), mention);
    slack.answer_in("C1", &ts, "BLUEBIRD").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bot_answers(&slack, "C1", &ts).len(), 1, "answered once");
    assert_eq!(llm.turn_requests().len(), 1);

    // Two follow-ups in the thread, the first to B, the second to A right after: they are
    // answered in order, the second seeing the first's turn (whichever replica took it).
    let first = slack.app_mention("C1", "U1", "what was the code word?", Some(&ts));
    slack.push_event_to(Some(1), first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = slack.app_mention("C1", "U1", "and spell it backwards", Some(&ts));
    slack.push_event_to(Some(0), second);
    slack.answer_in("C1", &ts, "and spell it backwards").await;
    let answers = bot_answers(&slack, "C1", &ts);
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(
        answers[1].contains("what was the code word?"),
        "{answers:?}"
    );
    assert!(answers[2].contains("and spell it backwards"), "{answers:?}");
    let requests = llm.turn_requests();
    assert_eq!(requests.len(), 3);
    let follow_up = all_text(&requests[1]);
    assert!(
        follow_up.contains("BLUEBIRD"),
        "memory crossed replicas: {follow_up}"
    );
    let last = all_text(&requests[2]);
    assert!(
        last.contains("what was the code word?") && last.contains("BLUEBIRD"),
        "the second follow-up started after the first was committed: {last}"
    );

    // A replica restarted on an empty data dir remembers the thread.
    a.stop().await;
    let c = Replica::start(&tmp.path().join("c-empty"), &llm.url, &slack, &db).await;
    b.stop().await;
    let newest = slack.open_connections() - 1;
    slack.push_event_to(
        Some(newest),
        slack.app_mention("C1", "U1", "remind me", Some(&ts)),
    );
    slack.answer_in("C1", &ts, "remind me").await;
    let last = llm.turn_requests().pop().unwrap();
    assert!(all_text(&last).contains("BLUEBIRD"));
    c.stop().await;
    slack.violations().assert_none("slack");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_answer_leaves_one_complete_answer_from_the_other_for_each_question() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    // A's model streams for minutes; B's answers at once.
    let stuck = FakeLlm::start(|_| {
        Reply::chunks(vec!["partial words ".to_string(); 2000], Some("stop"))
            .slow(Duration::from_millis(100))
    })
    .await;
    let llm = FakeLlm::start(echo).await;
    let (a, b) = two_replicas(&slack, &stuck.url, &llm.url, &db, tmp.path()).await;

    // Two questions in two channels reach A, and both answers are on screen, partly.
    let mut threads = Vec::new();
    for (channel, question) in [
        ("C7", "what is our deploy day?"),
        ("C8", "who owns billing?"),
    ] {
        let mention = slack.app_mention(channel, "U1", question, None);
        let ts = mention["ts"].as_str().unwrap().to_string();
        let env = slack.push_event_to(Some(0), mention);
        assert!(slack.wait_ack(&env, Duration::from_secs(3)).await.is_some());
        threads.push((channel, ts, question));
    }
    for (channel, ts, _) in &threads {
        let partial = slack
            .wait_thread(channel, ts, Duration::from_secs(30), |msgs| {
                msgs.iter()
                    .any(|m| m.bot_id.is_some() && m.visible_text().contains("partial words"))
            })
            .await;
        assert!(partial, "A never started its answer in {channel}");
    }
    a.kill();
    let died = Instant::now();

    for (channel, ts, question) in &threads {
        let answer = slack.answer_in(channel, ts, question).await;
        let took = died.elapsed();
        eprintln!("{channel} answered {took:?} after the replica died");
        assert!(
            answer.contains(&format!("Answer to <u1: {question}>")),
            "{answer}"
        );
        assert!(took < Duration::from_secs(30), "took {took:?}");
        // One complete answer: the partial one was taken away.
        let answers = bot_answers(&slack, channel, ts);
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert!(!answers[0].contains("partial words"), "{answers:?}");
    }
    assert_eq!(llm.turn_requests().len(), 2);
    b.stop().await;
}
