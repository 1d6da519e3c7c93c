//! Data rights end to end with the real binary and a real sled store on disk: export, forget
//! (every tree scanned for the key, every file of the data dir grepped for the needles),
//! backup and restore, the message while another process holds the store, retention and the
//! conversation listing. Conversations are filled through the binary: `ask` against the fake
//! OpenAI server and `ingest` with embeddings from the same server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anchorbot_platform::ConversationKey;
use common::*;
use serde_json::Value;

/// A word of the first conversation's document, found nowhere else.
const DOC_NEEDLE: &str = "zanzibarquixotic";
/// A word of the first conversation's question, found nowhere else.
const TURN_NEEDLE: &str = "marmaladeophelia";

/// The binary with embeddings from the fake server and small overlapping chunks.
fn cmd(dir: &Path, url: &str) -> tokio::process::Command {
    let mut cmd = anchorbot(dir, url);
    cmd.env("ANCHORBOT_DOCUMENTS_EMBEDDER", "openai")
        .env(
            "ANCHORBOT_DOCUMENTS_EMBEDDINGS",
            format!("{{url=\"{url}\", model=\"bow-64\"}}"),
        )
        .env("ANCHORBOT_DOCUMENTS_CHUNK_TOKENS", "40")
        .env("ANCHORBOT_DOCUMENTS_CHUNK_OVERLAP", "20")
        .env("ANCHORBOT_DOCUMENTS_MODEL_DIR", "/nonexistent");
    cmd
}

async fn ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut c = cmd(dir, url);
    c.args(args);
    let (ok, out, err) = run(c).await;
    assert!(ok, "anchorbot {args:?} failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
    out
}

async fn fails(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut c = cmd(dir, url);
    c.args(args);
    let (ok, out, err) = run(c).await;
    assert!(!ok, "anchorbot {args:?} should fail: {out}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

async fn export_json(dir: &Path, url: &str, conv: &str) -> Value {
    let out = ok(
        dir,
        url,
        &["export", "--conversation", conv, "--format", "json"],
    )
    .await;
    serde_json::from_str(&out).unwrap()
}

/// Numbered sentences, long enough for several overlapping chunks.
fn document(needle: &str, topic: &str) -> String {
    (1..=30)
        .map(|i| {
            if i == 17 {
                format!("Sentence {i} names the {needle} about {topic}.")
            } else {
                format!("Sentence {i} is about {topic} number {}.", i * 7)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The files under `dir` whose raw bytes contain `needle`.
fn grep(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

/// Records of `conv` in any tree (its anchor key, or the `conv\0` prefix), and records
/// anywhere whose bytes contain `needle`.
fn scan(dir: &Path, conv: &str, needle: &str) -> (usize, usize) {
    let store = reopen_sled(dir);
    let db = store.db();
    let mut prefix = conv.as_bytes().to_vec();
    prefix.push(0);
    let (mut of_conv, mut with_needle) = (0, 0);
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            if k.as_ref() == conv.as_bytes() || k.starts_with(&prefix) {
                of_conv += 1;
            }
            let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_bytes());
            if has(&k) || has(&v) {
                with_needle += 1;
            }
        }
    }
    (of_conv, with_needle)
}

fn all_text(export: &Value) -> String {
    export["documents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["text"].as_array().unwrap().iter())
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Fills conversation `alpha` (a turn with [`TURN_NEEDLE`], a document with [`DOC_NEEDLE`])
/// and `beta` (a turn and a document about harbours).
async fn fill(tmp: &Path, dir: &Path, url: &str) {
    let q = format!("Please remember the codeword {TURN_NEEDLE} for later");
    ok(dir, url, &["ask", "--conversation", "alpha", &q]).await;
    let a = write(tmp, "alpha.txt", &document(DOC_NEEDLE, "orchards"));
    let out = ok(
        dir,
        url,
        &["ingest", "--conversation", "alpha", a.to_str().unwrap()],
    )
    .await;
    assert!(out.contains("Added alpha.txt"), "{out}");
    ok(
        dir,
        url,
        &["ask", "--conversation", "beta", "What do harbours need?"],
    )
    .await;
    let b = write(tmp, "beta.txt", &document("lighthousekeeper", "harbours"));
    ok(
        dir,
        url,
        &["ingest", "--conversation", "beta", b.to_str().unwrap()],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_forget_then_export_shows_everything_gone_from_trees_and_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let url = llm.url.clone();
    fill(tmp.path(), &dir, &url).await;

    // Export: the turn with its author and time, the document and its text in order.
    let before = export_json(&dir, &url, "alpha").await;
    assert_eq!(before["conversation"], "console:alpha");
    assert_eq!(before["stored"], true);
    let turns = before["anchor"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1, "{before}");
    assert!(turns[0]["query"].as_str().unwrap().contains(TURN_NEEDLE));
    assert!(!turns[0]["answer"].as_str().unwrap().is_empty());
    assert_eq!(turns[0]["author"]["display_name"], "you");
    assert!(turns[0]["at_ms"].as_u64().unwrap() > 0);
    assert_eq!(before["feedback"].as_array().unwrap().len(), 0);
    let docs = before["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["name"], "alpha.txt");
    assert_eq!(docs[0]["status"], "ready");
    assert!(docs[0]["ingested_at_ms"].as_u64().unwrap() > 0);
    let chunks = docs[0]["chunks"].as_u64().unwrap();
    assert!(
        chunks >= 3,
        "the document should span several chunks: {chunks}"
    );
    // The chunks overlap, and the export joins them without repeating the overlap: every
    // sentence of the file appears exactly once, in order.
    let text = all_text(&before);
    let mut at = 0;
    for i in 1..=30 {
        let s = format!("Sentence {i} ");
        assert_eq!(text.matches(&s).count(), 1, "{s:?} in {text:?}");
        let pos = text.find(&s).unwrap();
        assert!(pos >= at, "sentences out of order in {text:?}");
        at = pos;
    }
    assert!(text.contains(DOC_NEEDLE));
    let md = ok(&dir, &url, &["export", "--conversation", "alpha"]).await;
    assert!(md.contains(TURN_NEEDLE) && md.contains(DOC_NEEDLE), "{md}");
    assert!(md.contains("alpha.txt"), "{md}");

    // The listing has both conversations, with sizes.
    let list: Value =
        serde_json::from_str(&ok(&dir, &url, &["conversations", "--json"]).await).unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"console:alpha") && keys.contains(&"console:beta"),
        "{list}"
    );
    for c in list.as_array().unwrap() {
        assert!(c["bytes"].as_u64().unwrap() > 0, "{c}");
        assert_eq!(c["documents"], 1, "{c}");
        assert!(c["last_activity_ms"].as_u64().unwrap() > 0, "{c}");
    }

    // Before forget, the needles are on disk (so the grep below can fail).
    assert!(
        !grep(&dir, DOC_NEEDLE).is_empty(),
        "the needle should be stored before forget"
    );
    assert!(!grep(&dir, TURN_NEEDLE).is_empty());

    // Without confirmation (no terminal, no --yes) nothing is erased.
    let err = fails(&dir, &url, &["forget", "--conversation", "console:alpha"]).await;
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(export_json(&dir, &url, "alpha").await["stored"], true);

    let out = ok(
        &dir,
        &url,
        &["forget", "--conversation", "console:alpha", "--yes"],
    )
    .await;
    for expected in [
        counted(1, "turn", "turns"),
        "0 summaries".to_string(),
        "0 key facts".to_string(),
        counted(1, "document", "documents"),
        counted(chunks, "chunk", "chunks"),
        counted(chunks, "vector", "vectors"),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from {out:?}");
    }

    // Export afterwards shows nothing.
    let after = export_json(&dir, &url, "alpha").await;
    assert_eq!(after["stored"], false, "{after}");
    assert_eq!(after["anchor"]["turns"].as_array().unwrap().len(), 0);
    assert_eq!(after["documents"].as_array().unwrap().len(), 0);
    // No tree holds a record under the key, nor the needles anywhere.
    assert_eq!(scan(&dir, "console:alpha", DOC_NEEDLE), (0, 0));
    assert_eq!(scan(&dir, "console:alpha", TURN_NEEDLE), (0, 0));
    // And no file of the data dir holds their bytes.
    assert_eq!(grep(&dir, DOC_NEEDLE), Vec::<PathBuf>::new());
    assert_eq!(grep(&dir, TURN_NEEDLE), Vec::<PathBuf>::new());
    assert!(!dir.with_file_name("data.anchorbot-new").exists());
    assert!(!dir.with_file_name("data.anchorbot-old").exists());

    // The other conversation is intact and still searchable.
    let beta = export_json(&dir, &url, "beta").await;
    assert_eq!(beta["anchor"]["turns"].as_array().unwrap().len(), 1);
    assert!(all_text(&beta).contains("lighthousekeeper"));
    let hits: Vec<Value> = serde_json::from_str(
        &ok(
            &dir,
            &url,
            &[
                "search",
                "--conversation",
                "beta",
                "--json",
                "lighthousekeeper harbours",
            ],
        )
        .await,
    )
    .unwrap();
    assert!(
        hits.iter()
            .any(|h| h["text"].as_str().unwrap().contains("lighthousekeeper")),
        "{hits:?}"
    );
    let list: Value =
        serde_json::from_str(&ok(&dir, &url, &["conversations", "--json"]).await).unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["console:beta"]);

    // Forgetting again: nothing stored, not an error. A malformed key is an error.
    let out = ok(&dir, &url, &["forget", "--conversation", "alpha", "--yes"]).await;
    assert!(out.contains("Nothing stored for console:alpha"), "{out}");
    let err = fails(
        &dir,
        &url,
        &["forget", "--conversation", "slack:a/b/c/d", "--yes"],
    )
    .await;
    assert!(err.contains("bad conversation"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_of_other_platforms_as_listed_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let key: ConversationKey = "slack:T1/C2/1712345678.000100".parse().unwrap();
    {
        let store = reopen_store(&dir).await;
        store
            .update(&key, |a| {
                a.facts.push("the launch is on Tuesday".into());
                a.counters.turns_total = 4;
            })
            .await
            .unwrap();
    }
    let list: Value =
        serde_json::from_str(&ok(&dir, &llm.url, &["conversations", "--json"]).await).unwrap();
    assert_eq!(list[0]["key"], key.to_string(), "{list}");
    let e = export_json(&dir, &llm.url, &key.to_string()).await;
    assert_eq!(e["anchor"]["facts"][0], "the launch is on Tuesday");
    let out = ok(
        &dir,
        &llm.url,
        &["forget", "--conversation", &key.to_string(), "--yes"],
    )
    .await;
    assert!(
        out.contains("4 turns") && out.contains("1 key fact"),
        "{out}"
    );
    let out = ok(&dir, &llm.url, &["conversations"]).await;
    assert!(out.contains("No conversations stored"), "{out}");
}

fn without_time(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("exported_at_ms");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_then_restore_gives_back_identical_anchors_and_searchable_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let url = llm.url.clone();
    fill(tmp.path(), &dir, &url).await;
    let status = |conv: &'static str| {
        let (dir, url) = (dir.clone(), url.clone());
        async move { ok(&dir, &url, &["status", "--conversation", conv, "--json"]).await }
    };
    let status_before = status("alpha").await;
    let alpha_before = without_time(export_json(&dir, &url, "alpha").await);
    let beta_before = without_time(export_json(&dir, &url, "beta").await);

    let file = tmp.path().join("store.backup");
    let out = ok(&dir, &url, &["backup", file.to_str().unwrap()]).await;
    assert!(out.contains("2 conversations"), "{out}");

    // Change things after the backup.
    ok(&dir, &url, &["clear", "--conversation", "alpha"]).await;
    ok(
        &dir,
        &url,
        &["ask", "--conversation", "gamma", "Newer than the backup?"],
    )
    .await;
    let cleared = export_json(&dir, &url, "alpha").await;
    assert_eq!(cleared["anchor"]["turns"].as_array().unwrap().len(), 0);
    assert_eq!(cleared["documents"].as_array().unwrap().len(), 0);

    // A store with conversations is not replaced without --force.
    let err = fails(&dir, &url, &["restore", file.to_str().unwrap()]).await;
    assert!(err.contains("--force"), "{err}");
    assert_eq!(export_json(&dir, &url, "gamma").await["stored"], true);

    // Files that are not whole backups are refused, and nothing changes.
    let garbage = write(tmp.path(), "garbage.backup", "not a backup at all");
    let err = fails(
        &dir,
        &url,
        &["restore", "--force", garbage.to_str().unwrap()],
    )
    .await;
    assert!(err.contains("not a usable anchorbot backup"), "{err}");
    let bytes = std::fs::read(&file).unwrap();
    let cut = tmp.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = fails(&dir, &url, &["restore", "--force", cut.to_str().unwrap()]).await;
    assert!(err.contains("not a usable anchorbot backup"), "{err}");
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let damaged = tmp.path().join("damaged.backup");
    std::fs::write(&damaged, &flipped).unwrap();
    let err = fails(
        &dir,
        &url,
        &["restore", "--force", damaged.to_str().unwrap()],
    )
    .await;
    assert!(err.contains("not a usable anchorbot backup"), "{err}");
    assert_eq!(export_json(&dir, &url, "gamma").await["stored"], true);

    let out = ok(&dir, &url, &["restore", "--force", file.to_str().unwrap()]).await;
    assert!(out.contains("Restored 2 conversations"), "{out}");
    assert_eq!(status("alpha").await, status_before);
    assert_eq!(
        without_time(export_json(&dir, &url, "alpha").await),
        alpha_before
    );
    assert_eq!(
        without_time(export_json(&dir, &url, "beta").await),
        beta_before
    );
    assert_eq!(export_json(&dir, &url, "gamma").await["stored"], false);
    let hits: Vec<Value> = serde_json::from_str(
        &ok(
            &dir,
            &url,
            &["search", "--conversation", "alpha", "--json", DOC_NEEDLE],
        )
        .await,
    )
    .unwrap();
    assert!(
        hits.iter()
            .any(|h| h["text"].as_str().unwrap().contains(DOC_NEEDLE)),
        "{hits:?}"
    );

    // Into an empty data dir as well; the restored store answers questions with its memory.
    let fresh = tmp.path().join("fresh");
    ok(&fresh, &url, &["restore", file.to_str().unwrap()]).await;
    assert_eq!(
        without_time(export_json(&fresh, &url, "alpha").await),
        alpha_before
    );
    ok(
        &fresh,
        &url,
        &["ask", "--conversation", "alpha", "And the codeword?"],
    )
    .await;
    let last = llm.turn_requests().last().cloned().unwrap();
    assert!(common::all_text(&last).contains(TURN_NEEDLE), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_say_why_they_cannot_run_while_another_process_holds_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let url = llm.url.clone();
    ok(
        &dir,
        &url,
        &["ask", "--conversation", "alpha", "hello there"],
    )
    .await;
    let file = tmp.path().join("store.backup");
    ok(&dir, &url, &["backup", file.to_str().unwrap()]).await;

    // A running bot: `chat` with its input open holds the store.
    let mut bot = cmd(&dir, &url);
    bot.args(["chat", "--conversation", "alpha"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = bot.spawn().unwrap();
    // Wait until it has the store: a command then reports the lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = cmd(&dir, &url);
        c.args(["conversations"]);
        let (ok, _, err) = run(c).await;
        if !ok {
            assert!(err.contains("in use by a running anchorbot"), "{err}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chat never opened the store"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = tmp.path().join("other.backup");
    for args in [
        vec!["backup", other.to_str().unwrap()],
        vec!["restore", "--force", file.to_str().unwrap()],
        vec!["forget", "--conversation", "alpha", "--yes"],
        vec!["export", "--conversation", "alpha"],
    ] {
        let err = fails(&dir, &url, &args).await;
        assert!(
            err.contains("in use by a running anchorbot"),
            "{args:?}: {err}"
        );
        assert!(err.contains("Stop the bot first"), "{err}");
    }
    assert!(!other.exists());
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("chat ends with its input")
        .unwrap();
    assert!(status.success());
    // The bot's conversation is untouched.
    assert_eq!(
        export_json(&dir, &url, "alpha").await["anchor"]["turns"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_forgets_conversations_idle_longer_than_retention_days_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let url = llm.url.clone();
    ok(
        &dir,
        &url,
        &[
            "ask",
            "--conversation",
            "old",
            &format!("old talk {TURN_NEEDLE}"),
        ],
    )
    .await;
    let doc = write(tmp.path(), "old.txt", &document(DOC_NEEDLE, "orchards"));
    ok(
        &dir,
        &url,
        &["ingest", "--conversation", "old", doc.to_str().unwrap()],
    )
    .await;
    ok(
        &dir,
        &url,
        &["ask", "--conversation", "fresh", "recent talk"],
    )
    .await;
    // Age the old conversation through the store's public API: 40 days ago.
    {
        let (store, docs) = reopen(&dir).await;
        let then = anchorbot::store::now_ms() - 40 * 24 * 3600 * 1000;
        let key = ConversationKey::console("old").unwrap();
        store
            .update(&key, |a| a.turns.iter_mut().for_each(|t| t.at_ms = then))
            .await
            .unwrap();
        for mut d in docs.list("console:old").await.unwrap() {
            d.ingested_at_ms = then;
            docs.put("console:old", &d).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    // Retention off: nothing is forgotten.
    let mut chat = cmd(&dir, &url);
    chat.args(["chat", "--conversation", "fresh"])
        .stdin(Stdio::null());
    let (ok_run, _, err) = run(chat).await;
    assert!(ok_run, "{err}");
    assert_eq!(export_json(&dir, &url, "old").await["stored"], true);

    let mut chat = cmd(&dir, &url);
    chat.args(["chat", "--conversation", "fresh"])
        .env("ANCHORBOT_RETENTION_DAYS", "30")
        .env("ANCHORBOT_LOG", "info")
        .stdin(Stdio::null());
    let (ok_run, _, err) = run(chat).await;
    assert!(ok_run, "{err}");
    // `chat` writes its log to a file in the data dir.
    let log = std::fs::read_to_string(dir.join("logs").join("anchorbot.log"))
        .expect("chat writes its log file");
    assert!(
        log.contains("forgotten=1"),
        "the sweep is logged with its count: {log}"
    );
    assert!(
        !log.contains(TURN_NEEDLE) && !log.contains("console:old"),
        "{log}"
    );
    // The running bot could not compact its own store; it marked it, and the next open
    // (this export) compacted it: the bytes are gone from disk, not only from the trees.
    assert!(dir.with_file_name("data.anchorbot-compact").exists());
    assert_eq!(export_json(&dir, &url, "old").await["stored"], false);
    assert!(!dir.with_file_name("data.anchorbot-compact").exists());
    for needle in [TURN_NEEDLE, DOC_NEEDLE] {
        assert_eq!(grep(&dir, needle), Vec::<PathBuf>::new(), "{needle}");
    }
    assert_eq!(scan(&dir, "console:old", DOC_NEEDLE), (0, 0));
    let fresh = export_json(&dir, &url, "fresh").await;
    assert_eq!(fresh["anchor"]["turns"].as_array().unwrap().len(), 1);
}
