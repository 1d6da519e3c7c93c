//! The store migration fixture: `tests/fixtures/store-v1` is a sled store written at schema
//! version 1 (committed as is). Opening it with this build upgrades it without loss.

mod common;

use std::path::{Path, PathBuf};

use anchorbot_platform::ConversationKey;
use common::*;
use serde_json::json;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Opens the raw sled database without a background flusher, waiting briefly for a
/// previous handle's lock: sled releases its file lock only when its last internal thread
/// lets go of the database, a moment after the handle is dropped.
fn open_raw(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open {}: {e}", dir.display()),
        }
    }
}

/// Regenerates the fixture: `cargo test --test migration -- --ignored write_v1_fixture`.
/// Only ever needed if the fixture is lost; it must be written at version 1, not current.
#[test]
#[ignore]
fn write_v1_fixture() {
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::open(&dir).unwrap();
    anchorbot_migrations::migrate_to(&db, 1).unwrap();
    let anchors = db.open_tree(anchorbot_migrations::ANCHORS_TREE).unwrap();
    anchors
        .insert(
            "console:legacy",
            serde_json::to_vec(&json!({
                "summary": "Ada and Bo planned the Bluebird launch.",
                "facts": ["The launch date is May 3", "Budget is 10k EUR"],
                "turns": [
                    {"role": "user", "text": "Who signs off the budget?", "at": 1_700_000_000u64},
                    {"role": "assistant", "text": "Bo signs off the budget.", "at": 1_700_000_005u64},
                    {"role": "user", "text": "And the venue?", "at": 1_700_000_100u64},
                    {"role": "assistant", "text": "The venue is Hall 4.", "at": 1_700_000_104u64}
                ],
                "turn_count": 9
            }))
            .unwrap(),
        )
        .unwrap();
    anchors
        .insert(
            "slack:T1/C2/1712345678.000100",
            serde_json::to_vec(&json!({"summary": "", "facts": [], "turns": [], "turn_count": 0}))
                .unwrap(),
        )
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn v1_fixture_upgrades_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&fixture(), &dir);
    {
        let db = open_raw(&dir);
        assert_eq!(
            anchorbot_migrations::stored_version(&db).unwrap(),
            1,
            "fixture must stay at v1"
        );
    }
    let store = reopen_store(&dir).await;
    let key = ConversationKey::console("legacy").unwrap();
    let a = store.anchor(&key).await.unwrap();
    assert_eq!(a.summaries.len(), 1);
    assert_eq!(
        a.summaries[0].text,
        "Ada and Bo planned the Bluebird launch."
    );
    assert_eq!(
        a.facts,
        vec!["The launch date is May 3", "Budget is 10k EUR"]
    );
    assert_eq!(a.turns.len(), 2);
    assert_eq!(a.turns[0].query, "Who signs off the budget?");
    assert_eq!(a.turns[0].answer, "Bo signs off the budget.");
    assert_eq!(a.turns[0].at_ms, 1_700_000_000_000);
    assert_eq!(a.turns[1].answer, "The venue is Hall 4.");
    assert_eq!(a.counters.turns_total, 9);
    let mut convs = store.conversations().await.unwrap();
    convs.sort();
    assert_eq!(
        convs,
        vec!["console:legacy", "slack:T1/C2/1712345678.000100"]
    );
    drop(store);
    let db = open_raw(&dir);
    assert_eq!(
        anchorbot_migrations::stored_version(&db).unwrap(),
        anchorbot_migrations::CURRENT_VERSION
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_upgrades_the_fixture_and_uses_its_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    copy_dir(&fixture(), &dir);
    let llm = FakeLlm::start(|_| Reply::text("Hall 4, as before.")).await;
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args([
        "ask",
        "--conversation",
        "legacy",
        "Where is the venue again?",
    ]);
    let (ok, _, err) = run(cmd).await;
    assert!(ok, "{err}");
    let req = llm.turn_requests().pop().unwrap();
    let sys = system_of(&req);
    assert!(
        sys.contains("Ada and Bo planned the Bluebird launch."),
        "{sys}"
    );
    assert!(sys.contains("- Budget is 10k EUR"));
    assert!(all_text(&req).contains("The venue is Hall 4."));
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["status", "--conversation", "legacy", "--json"]);
    let (ok, out, _) = run(cmd).await;
    assert!(ok);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["turns"], 10);
    assert_eq!(st["recent_turns"], 3);
}
