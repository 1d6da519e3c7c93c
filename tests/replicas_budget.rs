//! Replicas on one PostgreSQL database share their rate-limit budget (issue 20): a 429's
//! `Retry-After` one replica receives holds the method for every replica, and the published
//! allowances are split among the live replicas. The budgets are the real `SharedBudget`s on
//! real `PgStore`s (one pool each, as two processes would have); the Slack half uses the real
//! `SlackAdapter`s, built the way `anchorbot run` builds them, against the fake Slack, which
//! records every call sent into a running Retry-After as a broken rule.
//!
//! Skipped without a test cluster (`ANCHORBOT_TEST_DATABASE_URL`), failed instead with
//! `ANCHORBOT_REQUIRE_POSTGRES=1`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot::replica::budget::SharedBudget;
use anchorbot::storage::postgres::PgStore;
use anchorbot::storage::Storage;
use anchorbot_platform::budget::{Rate, RateBudget, RateKey};
use anchorbot_platform::{MessageRef, Platform, PlatformError, ReplyTarget};
use common::pg::{self, TestDb};
use common::slack::{FakeSlack, FakeSlackConfig};
use secrecy::SecretString;

/// One replica's store: a connection pool of its own on the shared database.
async fn store(db: &TestDb) -> Storage {
    Storage::of(Arc::new(PgStore::connect(&db.url).await.expect("connect")))
}

/// One replica's budget on `s`.
fn budget(s: &Storage) -> SharedBudget {
    SharedBudget::start(s.holds.clone(), s.leases.clone())
}

fn key(method: &str) -> RateKey {
    RateKey::new("slack", "T1", method)
}

/// Waits up to `within` for `check`; how long it took.
async fn within(within: Duration, what: &str, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_one_replica_receives_holds_the_other_until_it_ends() {
    let Some(db) = pg::database().await else {
        return;
    };
    let (sa, sb) = (store(&db).await, store(&db).await);
    let (a, b) = (budget(&sa), budget(&sb));
    let k = key("chat.update");
    let held_at = Instant::now();
    a.hold(&k, Duration::from_millis(1500));
    assert!(
        a.held(&k).is_some(),
        "the replica that got the 429 holds at once"
    );
    let seen = within(Duration::from_secs(2), "the other replica holds it", || {
        b.held(&k).is_some()
    })
    .await;
    assert!(
        b.try_spend(&k, Rate::per_minute(50)).is_err(),
        "no allowance"
    );
    assert!(
        b.held(&key("chat.postMessage")).is_none(),
        "only its method"
    );
    within(Duration::from_secs(4), "the hold ends", || {
        b.held(&k).is_none()
    })
    .await;
    let ended = held_at.elapsed();
    assert!(
        ended >= Duration::from_millis(1400) && ended < Duration::from_millis(2500),
        "a 1.5 s hold ended {ended:?} after it was received (seen by the other after {seen:?})"
    );
    b.try_spend(&k, Rate::per_minute(50))
        .expect("free after the hold");
    // A global hold (every method of the scope) travels too.
    b.hold(&k.global(), Duration::from_secs(10));
    within(
        Duration::from_secs(2),
        "the scope is held on the first",
        || a.held(&key("reactions.add")).is_some(),
    )
    .await;
    assert!(a
        .held(&RateKey::new("slack", "T2", "reactions.add"))
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_replicas_share_the_published_allowance() {
    let Some(db) = pg::database().await else {
        return;
    };
    let (sa, sb) = (store(&db).await, store(&db).await);
    let ttl = Duration::from_secs(30);
    for (s, r) in [(&sa, "r1"), (&sb, "r2")] {
        let lease = anchorbot::replica::liveness_lease(r);
        assert!(s.leases.try_acquire(&lease, r, ttl).await.unwrap());
    }
    let (a, b) = (budget(&sa), budget(&sb));
    within(Duration::from_secs(2), "both count two replicas", || {
        a.replicas() == 2 && b.replicas() == 2
    })
    .await;
    // Tier 2: 20 a minute for the workspace, so 10 each, 20 together.
    let rate = Rate::per_minute(20);
    let k = key("chat.startStream");
    let spend_all = |x: &SharedBudget| {
        let mut n = 0;
        while x.try_spend(&k, rate).is_ok() {
            n += 1;
        }
        n
    };
    assert_eq!((spend_all(&a), spend_all(&b)), (10, 10));
    // One replica gone (its lease given up): the other has the whole allowance again.
    sb.leases
        .release(&anchorbot::replica::liveness_lease("r2"), "r2")
        .await
        .unwrap();
    within(Duration::from_secs(2), "one replica counted", || {
        a.replicas() == 1
    })
    .await;
    assert_eq!(a.available(&key("chat.update"), Rate::per_minute(50)), 50.0);
}

/// Two Slack adapters as `anchorbot run` makes them on `storage` (a second replica has its own
/// store, as a second process would), each on the fake Slack.
fn slack_replica(slack: &FakeSlack, db: &TestDb, storage: &Storage) -> Arc<dyn Platform> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = common::settings(dir.path(), "http://127.0.0.1:9");
    s.database_url = Some(db.url.clone());
    s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
    s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
    s.slack.api_url = slack.api_url();
    let adapters = anchorbot::adapters::configured_on(&s, storage).unwrap();
    assert_eq!(adapters.len(), 1);
    adapters[0].platform()
}

/// Edits `message` until Slack takes it, waiting what each refusal asks (at most 10 s).
async fn edit_until_taken(platform: &dyn Platform, message: &MessageRef) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match platform.edit(message, "edited").await {
            Ok(()) => return,
            Err(PlatformError::RateLimited { retry_after }) => {
                assert!(Instant::now() < deadline, "the edit never went through");
                tokio::time::sleep(retry_after.min(Duration::from_millis(500))).await;
            }
            Err(e) => panic!("edit failed: {e}"),
        }
    }
}

/// Replica A posts in C1 and B in C2; Slack answers A's first `chat.update` 429 with
/// `Retry-After: 3`; a second later B edits its message. Returns the fake's `chat.update`
/// calls and when the 429 was answered.
async fn a_429_then_the_other_replica_edits(
    a: &dyn Platform,
    b: &dyn Platform,
    slack: &FakeSlack,
) -> (Vec<common::slack::ApiCall>, Instant) {
    let to = |channel: &str| ReplyTarget {
        channel: channel.into(),
        ..Default::default()
    };
    let ma = a.post(&to("C1"), "from replica A").await.unwrap();
    let mb = b.post(&to("C2"), "from replica B").await.unwrap();
    slack.rate_limit("chat.update", 1, 3);
    match a.edit(&ma, "edited").await {
        Err(PlatformError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(3))
        }
        other => panic!("the forced 429 was not answered: {other:?}"),
    }
    let limited = slack
        .calls_to("chat.update")
        .iter()
        .find(|c| c.status == 429)
        .expect("the 429 was recorded")
        .at;
    // Longer than a poll and a write: the hold has had time to travel.
    tokio::time::sleep(Duration::from_secs(1)).await;
    edit_until_taken(b, &mb).await;
    (slack.calls_to("chat.update"), limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sends_nothing_into_a_retry_after_the_other_replica_received() {
    let Some(db) = pg::database().await else {
        return;
    };
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming: false,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let (sa, sb) = (store(&db).await, store(&db).await);
    let (a, b) = (
        slack_replica(&slack, &db, &sa),
        slack_replica(&slack, &db, &sb),
    );
    let (updates, limited) = a_429_then_the_other_replica_edits(&*a, &*b, &slack).await;
    assert_eq!(
        updates.iter().filter(|c| c.status == 429).count(),
        1,
        "only replica A's call met the 429: B sent nothing into it"
    );
    let taken = updates
        .iter()
        .find(|c| c.ok())
        .expect("replica B's edit went through");
    assert!(
        taken.at.duration_since(limited) >= Duration::from_millis(2900),
        "replica B edited {:?} after the 429 asking for 3 s",
        taken.at.duration_since(limited)
    );
    assert_eq!(slack.violations().all(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_budget_the_other_replica_calls_into_the_retry_after() {
    // The control: two replicas with a budget each (what `configured` gives a process alone on
    // its store) break the rule the shared budget keeps, and the fake says so.
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming: false,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let replica = || {
        let dir = tempfile::tempdir().unwrap();
        let mut s = common::settings(dir.path(), "http://127.0.0.1:9");
        s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
        s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
        s.slack.api_url = slack.api_url();
        anchorbot::adapters::configured(&s).unwrap()[0].platform()
    };
    let (a, b) = (replica(), replica());
    let (updates, _) = a_429_then_the_other_replica_edits(&*a, &*b, &slack).await;
    assert_eq!(updates.iter().filter(|c| c.status == 429).count(), 2);
    let broken = slack.violations().take();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        broken[0]
            .rule
            .starts_with(anchorbot_fakes::slack_tiers::RULE),
        "{}",
        broken[0].rule
    );
}
