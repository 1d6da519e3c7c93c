//! Replicas on one PostgreSQL database: turns per second through one and through two
//! replicas, and the time from a replica's death mid-answer to the complete answer from the
//! other.
//!
//! - Turns: real `App`s (in this one process, so on this machine's two cores they share the
//!   CPU: the figure shows the cost of coordination, not the gain of a second machine), a
//!   fake model that answers after 50 ms, 40 conversations. Every event is accepted
//!   (journaled) as adapters do. Two ways to spread events over two replicas: each
//!   conversation stays on one replica, or each conversation's events alternate between them
//!   (every turn then waits for the conversation's lease to change hands).
//! - Takeover: replica A (a runtime of its own) streams an answer that never ends; it is
//!   killed mid-answer, as `kill -9` would; replica B answers. Measured from the kill to B's
//!   final answer, three times.
//!
//! Run: `eval "$(ANCHORBOT_PG_DURABLE=1 .ci/postgres.sh start)"; cargo bench --bench replicas;
//! .ci/postgres.sh stop "$ANCHORBOT_PG_DIR"`. Add `-- quick` for a short run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot_platform::{EventSink, Receipt};
use common::isolated::Isolated;
use common::*;

/// How many conversations the turns are spread over.
const CONVS: usize = 40;

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("machine: {}", machine());
    rt.block_on(async {
        let rounds = if quick { 2 } else { 10 };
        let llm = FakeLlm::start(|req| {
            Reply::text(&format!("ok {}", last_user(req).len())).slow(Duration::from_millis(10))
        })
        .await;
        for (label, replicas, alternate) in [
            ("1 replica", 1, false),
            ("2 replicas, each conversation on one", 2, false),
            ("2 replicas, each conversation alternating", 2, true),
        ] {
            let Some(db) = pg::database().await else {
                println!("no PostgreSQL (ANCHORBOT_TEST_DATABASE_URL unset): nothing to measure");
                return;
            };
            let tmp = tempfile::tempdir().unwrap();
            let mut apps = Vec::new();
            for r in 0..replicas {
                let mut s = settings(&tmp.path().join(format!("r{r}")), &llm.url);
                s.database_url = Some(db.url.clone());
                apps.push(start_app(s).await);
            }
            let started = Instant::now();
            for round in 0..rounds {
                let mut receipts: Vec<Receipt> = Vec::new();
                for c in 0..CONVS {
                    let r = if alternate { (c + round) % replicas } else { c % replicas };
                    let event = message(
                        &format!("P{c}"),
                        &format!("p{c}-{round}"),
                        "ann",
                        &format!("q {round}"),
                    );
                    receipts.push(apps[r].sink.accept(event).await.unwrap());
                }
                for r in receipts {
                    r.done().await;
                }
            }
            let elapsed = started.elapsed();
            let n = CONVS * rounds;
            println!(
                "turns per second, {label}: {n} turns over {CONVS} conversations, model 10 ms a chunk: {:.0} turns/s",
                n as f64 / elapsed.as_secs_f64()
            );
            for app in apps {
                app.shutdown().await;
            }
        }
        let mut took = Vec::new();
        for i in 0..if quick { 1 } else { 3 } {
            match takeover(i).await {
                Some(t) => took.push(t),
                None => return,
            }
        }
        took.sort();
        println!(
            "death mid-answer to the complete answer from the other replica: {} (median {:.1} s)",
            took.iter()
                .map(|t| format!("{:.1} s", t.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
            took[took.len() / 2].as_secs_f64()
        );
    });
}

/// One death mid-answer; the time from the kill to the other replica's final answer.
async fn takeover(i: usize) -> Option<Duration> {
    let db = pg::database().await?;
    let tmp = tempfile::tempdir().unwrap();
    let stuck = FakeLlm::start(|_| {
        Reply::chunks(vec!["partial ".to_string(); 5000], Some("stop"))
            .slow(Duration::from_millis(50))
    })
    .await;
    let llm = FakeLlm::start(|req| Reply::text(&format!("answer to {}", last_user(req)))).await;
    let process = Isolated::new();
    let mut s = settings(&tmp.path().join("a"), &stuck.url);
    s.database_url = Some(db.url.clone());
    let a = process.run(async move { start_app(s).await }).await;
    let mut s = settings(&tmp.path().join("b"), &llm.url);
    s.database_url = Some(db.url.clone());
    let b = start_app(s).await;
    let sink: Arc<dyn EventSink> = a.sink.clone();
    let channel = format!("K{i}");
    let event = message(&channel, "k1", "ann", "what is our deploy day?");
    process
        .run(async move { sink.accept(event).await.map(|_| ()) })
        .await
        .unwrap();
    // Mid-answer: part of it is on screen.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a
        .platform
        .messages_in(&channel)
        .iter()
        .any(|m| m.contains("partial"))
    {
        assert!(Instant::now() < deadline, "A never started its answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    let died = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.platform.finals(&channel).is_empty() {
        assert!(Instant::now() < deadline, "B never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = died.elapsed();
    b.shutdown().await;
    Some(took)
}
