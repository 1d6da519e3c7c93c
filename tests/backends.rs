//! End to end, on every backend: the same scenarios through the real `App` and the real
//! binary, on sled in the data directory and on PostgreSQL (a fresh database per test, from
//! `common::pg`; skipped without a cluster unless `ANCHORBOT_REQUIRE_POSTGRES=1`). They cover
//! memory across restarts, documents and their search, `/clear`, duplicate events, and the
//! data-rights commands. On PostgreSQL every start gets a new, empty data directory: nothing
//! the bot remembers may live there.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use anchorbot_platform::{ConversationKey, EventSink};
use common::*;
use secrecy::ExposeSecret;
use serde_json::Value;

/// A store under test.
struct Backend {
    /// The database, on PostgreSQL.
    db: Option<pg::TestDb>,
    /// Holds every data directory of the test.
    tmp: tempfile::TempDir,
    /// Starts so far (each gets its own data dir on PostgreSQL).
    starts: std::sync::atomic::AtomicUsize,
}

impl Backend {
    fn sled() -> Option<Self> {
        Some(Self {
            db: None,
            tmp: tempfile::tempdir().unwrap(),
            starts: Default::default(),
        })
    }

    async fn postgres() -> Option<Self> {
        let db = pg::database().await?;
        Some(Self {
            db: Some(db),
            tmp: tempfile::tempdir().unwrap(),
            starts: Default::default(),
        })
    }

    /// The data directory for the next start: always the same on sled, a new empty one on
    /// PostgreSQL.
    fn data_dir(&self) -> PathBuf {
        let n = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match self.db {
            None => self.tmp.path().join("data"),
            Some(_) => self.tmp.path().join(format!("data-{n}")),
        }
    }

    /// A folder for files to share.
    fn files(&self) -> &Path {
        self.tmp.path()
    }

    fn settings(&self, url: &str) -> anchorbot::Settings {
        let mut s = settings(&self.data_dir(), url);
        s.database_url = self.db.as_ref().map(|d| d.url.clone());
        s
    }

    /// The real binary on this store.
    fn command(&self, url: &str) -> tokio::process::Command {
        let mut cmd = anchorbot(&self.data_dir(), url);
        if let Some(db) = &self.db {
            cmd.env("ANCHORBOT_DATABASE_URL", db.url.expose_secret());
        }
        cmd
    }

    async fn start(&self, url: &str) -> Running {
        start_app(self.settings(url)).await
    }
}

fn key(channel: &str) -> ConversationKey {
    ConversationKey::new("test", Some("W1"), channel, None).unwrap()
}

async fn say(app: &Running, channel: &str, id: &str, text: &str) {
    app.sink
        .submit(message(channel, id, "ann", text))
        .unwrap()
        .done()
        .await;
}

fn ephemerals(app: &Running) -> Vec<String> {
    app.platform
        .all()
        .iter()
        .filter_map(|r| match r {
            Record::Ephemeral(_, t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

const LEASE: [&str; 3] = [
    "The monthly rent is 1200 euros, due on the first day of each month.",
    "Pets are allowed with the landlord's written consent; dogs need a deposit.",
    "Either party may end the lease with three months' notice in writing.",
];

async fn memory_survives_restarts_on_an_empty_data_dir(b: Backend) {
    let llm = FakeLlm::start(|req| Reply::text(&format!("noted: {}", last_user(req)))).await;
    let app = b.start(&llm.url).await;
    say(&app, "M", "m1", "our launch code name is BLUEHERON").await;
    say(&app, "N", "n1", "the other team's budget is 40k").await;
    app.shutdown().await;

    // A new process: on PostgreSQL its data dir is empty, so memory comes from the database.
    let app = b.start(&llm.url).await;
    say(&app, "M", "m2", "what is the code name?").await;
    app.shutdown().await;
    let last = llm.turn_requests().last().cloned().unwrap();
    let prompt = all_text(&last);
    assert!(
        prompt.contains("BLUEHERON"),
        "the follow-up remembers: {prompt}"
    );
    assert!(
        !prompt.contains("40k"),
        "another conversation's memory leaked: {prompt}"
    );
    let (store, _) = reopen_backend(&b).await;
    let a = store.anchor(&key("M")).await.unwrap();
    assert_eq!(a.turns.len(), 2);
    assert_eq!(a.turns[1].answer, "noted: ann: what is the code name?");
}

async fn documents_are_cited_and_clear_removes_them_with_the_memory(b: Backend) {
    ensure_models();
    let pdf = b.files().join("lease.pdf");
    let pages: Vec<Vec<&str>> = LEASE.iter().map(|p| vec![*p]).collect();
    std::fs::write(&pdf, fixtures::text_pdf(&pages)).unwrap();
    let llm =
        FakeLlm::start(|req| Reply::text(&format!("seen {} chars", all_text(req).len()))).await;
    let app = b.start(&llm.url).await;
    app.sink
        .submit(upload("D", "u1", "ann", "", &pdf))
        .unwrap()
        .done()
        .await;
    say(&app, "D", "q1", "Can I keep a dog in the flat?").await;
    app.shutdown().await;
    let finals_prompt = all_text(llm.turn_requests().last().unwrap());
    assert!(
        finals_prompt.contains("lease.pdf p.2") && finals_prompt.contains("written consent"),
        "the passage and its citation reach the model: {finals_prompt}"
    );

    // After a restart (an empty data dir on PostgreSQL), the documents are still there, and
    // /clear takes them and the memory in one go.
    let app = b.start(&llm.url).await;
    say(&app, "D", "f1", "/files").await;
    say(&app, "D", "c1", "/clear").await;
    say(&app, "D", "f2", "/files").await;
    let eph = ephemerals(&app);
    app.shutdown().await;
    assert!(eph[0].contains("lease.pdf"), "{eph:?}");
    assert!(
        eph[1].contains("1 turn") && eph[1].contains("1 document (3 chunks) removed"),
        "{eph:?}"
    );
    assert!(eph[2].contains("No documents"), "{eph:?}");
    let (store, docs) = reopen_backend(&b).await;
    assert_eq!(store.anchor(&key("D")).await.unwrap().turns.len(), 0);
    assert_eq!(docs.counts("test:W1/D").await.unwrap(), (0, 0, 0));
}

async fn a_duplicate_event_is_answered_once_even_after_a_restart(b: Backend) {
    let llm = FakeLlm::start(|req| Reply::text(&format!("hi {}", last_user(req)))).await;
    let app = b.start(&llm.url).await;
    say(&app, "E", "same-id", "hello").await;
    say(&app, "E", "same-id", "hello").await;
    app.shutdown().await;
    // A platform redelivering the event to the next process: still a duplicate.
    let app = b.start(&llm.url).await;
    say(&app, "E", "same-id", "hello").await;
    let finals = app.platform.finals("E");
    app.shutdown().await;
    assert_eq!(llm.turn_requests().len(), 1);
    assert!(finals.is_empty(), "the redelivery was answered: {finals:?}");
}

/// The keys `anchorbot conversations --json` lists.
async fn listed_keys(b: &Backend, url: &str) -> Vec<String> {
    let mut cmd = b.command(url);
    cmd.args(["conversations", "--json"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    listed
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect()
}

async fn data_rights_commands_list_export_and_forget(b: Backend) {
    let llm = FakeLlm::start(|req| Reply::text(&format!("ok {}", last_user(req)))).await;
    let app = b.start(&llm.url).await;
    say(&app, "R", "r1", "remember the vendor is ACME").await;
    say(&app, "K", "k1", "keep this one").await;
    app.shutdown().await;

    let mut keys = listed_keys(&b, &llm.url).await;
    keys.sort();
    assert_eq!(keys, vec!["test:W1/K", "test:W1/R"]);

    let mut cmd = b.command(&llm.url);
    cmd.args(["export", "--conversation", "test:W1/R", "--format", "json"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    let export: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(export["stored"], true);
    assert_eq!(
        export["anchor"]["turns"][0]["query"],
        "remember the vendor is ACME"
    );

    let mut cmd = b.command(&llm.url);
    cmd.args(["forget", "--conversation", "test:W1/R", "--yes"])
        .env("ANCHORBOT_LOG", "debug");
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("Forgot test:W1/R: 1 turn"), "{out}");
    match &b.db {
        Some(db) => {
            assert!(out.contains("Its rows were deleted"), "{out}");
            for text in [&out, &err] {
                assert!(
                    !text.contains(&db.password()),
                    "the password was shown: {text}"
                );
            }
        }
        None => assert!(out.contains("The store was compacted"), "{out}"),
    }

    assert_eq!(listed_keys(&b, &llm.url).await, vec!["test:W1/K"]);

    // The bot that starts next has no memory of it.
    let app = b.start(&llm.url).await;
    say(&app, "R", "r2", "who is the vendor?").await;
    app.shutdown().await;
    let prompt = all_text(llm.turn_requests().last().unwrap());
    assert!(
        !prompt.contains("ACME"),
        "forgotten memory came back: {prompt}"
    );
}

/// `doctor` on PostgreSQL: the database check connects and counts, and a wrong password fails
/// the check without showing either password.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_the_database_without_showing_its_password() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let url = closed_port_url();
    let mut cmd = anchorbot(&tmp.path().join("data"), &url);
    cmd.arg("doctor")
        .env("ANCHORBOT_DATABASE_URL", db.url.expose_secret());
    let (_, out, err) = run(cmd).await;
    let line = out
        .lines()
        .find(|l| l.contains("PostgreSQL at postgres://"))
        .unwrap_or_else(|| panic!("no database check: {out}"));
    assert!(
        line.contains("connected")
            && line.contains("0 conversations")
            && line.contains("0 replicas running on it")
            && line.contains("0 events accepted and not answered yet"),
        "{line}"
    );
    assert!(
        !out.contains(&db.password()) && !err.contains(&db.password()),
        "{out}{err}"
    );

    let wrong = db.url_text().replace(&db.password(), "not-the-password-42");
    assert_ne!(wrong, db.url_text());
    let mut cmd = anchorbot(&tmp.path().join("data"), &url);
    cmd.arg("doctor").env("ANCHORBOT_DATABASE_URL", &wrong);
    let (ok, out, err) = run(cmd).await;
    assert!(!ok, "doctor passed with a wrong password: {out}");
    let line = out
        .lines()
        .find(|l| l.contains("PostgreSQL at postgres://"))
        .unwrap_or_else(|| panic!("no database check: {out}"));
    assert!(line.contains("password authentication failed"), "{line}");
    for text in [&out, &err] {
        assert!(!text.contains("not-the-password-42"), "{text}");
        assert!(!text.contains(&db.password()), "{text}");
    }
}

async fn retention_forgets_idle_conversations_with_their_documents(b: Backend) {
    ensure_models();
    let llm = FakeLlm::start(|req| Reply::text(&format!("ok {}", last_user(req)))).await;
    let app = b.start(&llm.url).await;
    let txt = b.files().join("orchard.txt");
    std::fs::write(&txt, LEASE.join("\n\n")).unwrap();
    app.sink
        .submit(upload("OLD", "o1", "ann", "about the orchard", &txt))
        .unwrap()
        .done()
        .await;
    say(&app, "OLD", "o2", "the orchard lease").await;
    say(&app, "NEW", "n1", "recent talk").await;
    app.shutdown().await;
    // Age one conversation through the store's API: 40 days ago.
    {
        let (store, docs) = reopen_backend(&b).await;
        let then = anchorbot::store::now_ms() - 40 * 24 * 3600 * 1000;
        store
            .update(&key("OLD"), |a| {
                a.turns.iter_mut().for_each(|t| t.at_ms = then)
            })
            .await
            .unwrap();
        let listed = docs.list("test:W1/OLD").await.unwrap();
        assert_eq!(listed.len(), 1, "the file was not stored");
        for mut d in listed {
            d.ingested_at_ms = then;
            docs.put("test:W1/OLD", &d).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    let mut s = b.settings(&llm.url);
    s.retention_days = Some(30);
    let app = start_app(s).await;
    app.shutdown().await;
    let (store, docs) = reopen_backend(&b).await;
    assert_eq!(store.anchor(&key("OLD")).await.unwrap().turns.len(), 0);
    assert_eq!(docs.counts("test:W1/OLD").await.unwrap(), (0, 0, 0));
    assert_eq!(store.anchor(&key("NEW")).await.unwrap().turns.len(), 1);
    let left: Vec<String> = store
        .storage()
        .maintenance
        .sizes()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.conv)
        .collect();
    assert_eq!(left, vec!["test:W1/NEW".to_string()]);
}

/// On PostgreSQL `backup` and `restore` are refused with the way to do it: `pg_dump`.
#[tokio::test(flavor = "multi_thread")]
async fn backup_on_postgres_points_to_pg_dump() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("anchorbot.backup");
    for args in [
        vec!["backup", file.to_str().unwrap()],
        vec!["restore", file.to_str().unwrap()],
    ] {
        let mut cmd = anchorbot(&tmp.path().join("data"), &closed_port_url());
        cmd.args(&args)
            .env("ANCHORBOT_DATABASE_URL", db.url.expose_secret());
        let (ok, out, err) = run(cmd).await;
        assert!(!ok, "{args:?}: {out}");
        assert!(
            err.contains("not available with PostgreSQL") && err.contains("pg_dump"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(&db.password()), "{err}");
    }
    assert!(!file.exists());
}

/// The store as a test reads it after the app stopped.
async fn reopen_backend(b: &Backend) -> (anchorbot::store::Store, anchorbot::docs::DocStore) {
    match &b.db {
        None => reopen(&b.tmp.path().join("data")).await,
        Some(db) => {
            let storage = anchorbot::storage::Location::Postgres(db.url.clone())
                .open()
                .await
                .expect("open the database");
            (
                anchorbot::store::Store::new(storage.clone()),
                anchorbot::docs::DocStore::new(storage),
            )
        }
    }
}

/// One test per scenario for a backend.
macro_rules! backend_tests {
    ($backend:ident, $open:expr) => {
        mod $backend {
            backend_tests!(@each $open;
                memory_survives_restarts_on_an_empty_data_dir,
                documents_are_cited_and_clear_removes_them_with_the_memory,
                a_duplicate_event_is_answered_once_even_after_a_restart,
                data_rights_commands_list_export_and_forget,
                retention_forgets_idle_conversations_with_their_documents,
            );
        }
    };
    (@each $open:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $scenario() {
                if let Some(b) = $open {
                    super::$scenario(b).await;
                }
            }
        )*
    };
}

backend_tests!(sled, super::Backend::sled());
backend_tests!(postgres, super::Backend::postgres().await);

/// The acceptance path from sled to PostgreSQL: a sled store with documents is copied with
/// `anchorbot store copy`, and `search` returns the same passages from both; then the bot on
/// the database, with an empty data dir, remembers the conversation.
#[tokio::test(flavor = "multi_thread")]
async fn store_copy_moves_a_sled_store_and_search_agrees() {
    ensure_models();
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sled_dir = tmp.path().join("data");
    let pdf = tmp.path().join("lease.pdf");
    let pages: Vec<Vec<&str>> = LEASE.iter().map(|p| vec![*p]).collect();
    std::fs::write(&pdf, fixtures::text_pdf(&pages)).unwrap();
    let llm = FakeLlm::start(|req| Reply::text(&format!("ok {}", last_user(req)))).await;

    let app = start_app(settings(&sled_dir, &llm.url)).await;
    say(&app, "S", "s1", "our office is in Lyon").await;
    app.shutdown().await;
    let mut cmd = anchorbot(&sled_dir, &llm.url);
    cmd.args(["ingest", "--conversation", "flat"]).arg(&pdf);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.contains("Added lease.pdf: 3 pages"), "{out}");

    let search = |on_db: bool, q: &'static str| {
        let mut cmd = anchorbot(&sled_dir, &llm.url);
        if on_db {
            cmd.env("ANCHORBOT_DATABASE_URL", db.url.expose_secret());
        }
        cmd.args([
            "search",
            "--conversation",
            "flat",
            "--json",
            "--top-k",
            "3",
            q,
        ]);
        async move {
            let (ok, out, err) = run_for(cmd, Duration::from_secs(120)).await;
            assert!(ok, "{err}");
            serde_json::from_str::<Value>(&out).unwrap()
        }
    };
    let questions = [
        "Can I keep a dog?",
        "How much is the rent?",
        "How do I move out?",
    ];
    let mut before = Vec::new();
    for q in questions {
        before.push(search(false, q).await);
    }

    let mut cmd = anchorbot(&sled_dir, &llm.url);
    cmd.args(["store", "copy", "--to", &db.url_text()]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("Copied 2 conversations (1 memory), 1 document, 3 chunks"),
        "{out}"
    );
    assert!(
        !out.contains(&db.password()),
        "the password was printed: {out}"
    );
    assert!(
        !err.contains(&db.password()),
        "the password was logged: {err}"
    );

    for (q, expected) in questions.iter().zip(&before) {
        let got = search(true, q).await;
        assert_eq!(&got, expected, "{q}");
        assert!(!got.as_array().unwrap().is_empty(), "{q}: no passages");
    }

    // A second copy into the same database is refused: it would mix two stores.
    let mut cmd = anchorbot(&sled_dir, &llm.url);
    cmd.args(["store", "copy", "--to", &db.url_text()]);
    let (ok, _, err) = run(cmd).await;
    assert!(!ok);
    assert!(err.contains("already holds 2 conversation(s)"), "{err}");

    // The bot on the database, with an empty data dir, remembers.
    let mut s = settings(&tmp.path().join("empty"), &llm.url);
    s.database_url = Some(db.url.clone());
    let app = start_app(s).await;
    say(&app, "S", "s2", "where is our office?").await;
    app.shutdown().await;
    let prompt = all_text(llm.turn_requests().last().unwrap());
    assert!(prompt.contains("Lyon"), "{prompt}");
}

/// An event accepted (journaled) by a process that dies before answering is answered by the
/// next process on the same database, whose data dir is empty; a redelivery of it is a
/// duplicate meanwhile and after.
#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_question_is_answered_after_the_process_that_took_it_dies() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    // The first process's model never finishes: it dies mid-answer.
    let stuck = FakeLlm::start(|_| {
        Reply::chunks(vec!["Thinking about".into(), " it".into()], Some("stop"))
            .slow(Duration::from_secs(3600))
    })
    .await;
    // The first process runs in a runtime of its own, killed below as a `kill -9` would.
    let process = common::isolated::Isolated::new();
    let settings = b.settings(&stuck.url);
    let first = process.run(async move { start_app(settings).await }).await;
    let accept = |sink: Arc<dyn EventSink>| async move {
        sink.accept(message("J", "j1", "ann", "what is our deploy day?"))
            .await
            .map(|_| ())
    };
    process.run(accept(first.sink.clone())).await.unwrap();
    // Its twin (the same message seen again) is a duplicate, even while unanswered.
    assert_eq!(
        process.run(accept(first.sink.clone())).await.unwrap_err(),
        anchorbot_platform::SubmitError::Duplicate
    );
    // It is alive: it holds its liveness lease. Then it "dies": its runtime ends at once, its
    // lease is no longer renewed, and it never answers (its model never finishes).
    let storage = anchorbot::storage::Location::Postgres(b.db.as_ref().unwrap().url.clone())
        .open()
        .await
        .unwrap();
    let owner = storage.journal.pending().await.unwrap()[0].owner.clone();
    let lease = anchorbot::replica::liveness_lease(&owner);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while storage.leases.holder(&lease).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no liveness lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    let died = std::time::Instant::now();

    let llm = FakeLlm::start(|req| Reply::text(&format!("answer to {}", last_user(req)))).await;
    let second = b.start(&llm.url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while second.platform.finals("J").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        second.platform.finals("J"),
        vec!["answer to ann: what is our deploy day?".to_string()]
    );
    let took = died.elapsed();
    eprintln!("answered {took:?} after the first process died");
    // It waited for the dead process's lease to expire: not taken while it could be alive.
    assert!(took >= Duration::from_secs(5), "taken over after {took:?}");
    // Answered once: a redelivery now is a duplicate, and nothing is left to replay.
    assert_eq!(
        second
            .sink
            .accept(message("J", "j1", "ann", "what is our deploy day?"))
            .await
            .unwrap_err(),
        anchorbot_platform::SubmitError::Duplicate
    );
    second.shutdown().await;
    let (store, _) = reopen_backend(&b).await;
    assert!(store.storage().journal.pending().await.unwrap().is_empty());
    assert_eq!(store.anchor(&key("J")).await.unwrap().turns.len(), 1);
}

/// A single sled process killed (SIGKILL) mid-answer answers that question after its restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_sled_process_killed_mid_answer_answers_after_its_restart() {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let stuck = FakeLlm::start(|_| {
        Reply::chunks(vec!["Let me".into(), " think".into()], Some("stop"))
            .slow(Duration::from_secs(3600))
    })
    .await;
    let mut cmd = anchorbot(&data, &stuck.url);
    cmd.args(["chat", "--conversation", "ops"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"which day do we deploy?\n").await.unwrap();
    // Killed once the model has the question: the answer is under way.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stuck.turn_requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the question never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(stdin);

    let llm = FakeLlm::start(|req| Reply::text(&format!("answer to {}", last_user(req)))).await;
    let mut cmd = anchorbot(&data, &llm.url);
    cmd.args(["chat", "--conversation", "ops"])
        .stdin(std::process::Stdio::null());
    let (ok, out, err) = run_for(cmd, Duration::from_secs(120)).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("answer to ") && out.contains("which day do we deploy?"),
        "the question was not answered after the restart: {out}\n{err}"
    );
    assert_eq!(llm.turn_requests().len(), 1, "answered once");
    let (store, _) = reopen(&data).await;
    let a = store
        .anchor(&ConversationKey::console("ops").unwrap())
        .await
        .unwrap();
    assert_eq!(a.turns.len(), 1);
    assert!(
        a.turns[0].answer.starts_with("answer to "),
        "{:?}",
        a.turns[0]
    );
    assert!(store.storage().journal.pending().await.unwrap().is_empty());
}

/// Two replicas on one database: the documents one stores are searched by the other, whose
/// index of the conversation was built before they arrived, and a /clear on one empties the
/// other's search too.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_search_the_documents_the_other_one_stored() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    ensure_models();
    let rent = b.files().join("rent.txt");
    std::fs::write(&rent, LEASE[0]).unwrap();
    let pets = b.files().join("pets.txt");
    std::fs::write(&pets, LEASE[1]).unwrap();
    let llm =
        FakeLlm::start(|req| Reply::text(&format!("seen {} chars", all_text(req).len()))).await;
    let one = b.start(&llm.url).await;
    let mut s = b.settings(&llm.url);
    s.data_dir = b.files().join("second-replica");
    let two = start_app(s).await;
    let last_prompt = || all_text(llm.turn_requests().last().unwrap());

    one.sink
        .submit(upload("R", "r1", "ann", "", &rent))
        .unwrap()
        .done()
        .await;
    // The second replica searches the conversation: its index holds the rent file.
    say(&two, "R", "r2", "How much is the monthly rent?").await;
    assert!(last_prompt().contains("1200 euros"), "{}", last_prompt());
    // The first stores another file; the second finds it.
    one.sink
        .submit(upload("R", "r3", "ann", "", &pets))
        .unwrap()
        .done()
        .await;
    say(&two, "R", "r4", "Can I keep a dog in the flat?").await;
    assert!(
        last_prompt().contains("written consent"),
        "{}",
        last_prompt()
    );
    // A /clear on the first empties the second's search.
    say(&one, "R", "c1", "/clear").await;
    say(&two, "R", "r5", "How much is the monthly rent?").await;
    let after = last_prompt();
    assert!(
        !after.contains("1200 euros") && !after.contains("written consent"),
        "{after}"
    );
    one.shutdown().await;
    two.shutdown().await;
}
