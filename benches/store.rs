//! The store's share of a turn, on sled and on PostgreSQL, and `store copy` throughput.
//!
//! - Turns: the real `App` and a fake model that answers at once, so a turn is the engine
//!   plus the store: sequential turns in one conversation (latency) and 20 conversations at
//!   once (throughput). The same run on both backends; the difference is the store's.
//! - Store calls: the commit that ends a turn (`update_marking`, durable) and an anchor read.
//! - Copy: a sled store of 40 documents × 500 chunks (384-dimension vectors) copied into an
//!   empty database.
//!
//! Run: `eval "$(ANCHORBOT_PG_DURABLE=1 .ci/postgres.sh start)"; cargo bench --bench store;
//! .ci/postgres.sh stop`. Without a cluster only the sled half runs. Add `-- quick` for a
//! short run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anchorbot::storage::{ChunkRow, DocRow, Location, Storage};
use anchorbot::store::Store;
use anchorbot_platform::ConversationKey;
use common::*;

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("machine: {}", machine());
    rt.block_on(async {
        let turns = if quick { 40 } else { 200 };
        let tmp = tempfile::tempdir().unwrap();
        let llm = FakeLlm::start(|req| Reply::text(&format!("ok {}", last_user(req).len()))).await;
        let sled = Location::Sled(tmp.path().join("sled"));
        let db = pg::database().await;
        let mut backends = vec![("sled", sled.clone(), None)];
        match &db {
            Some(d) => backends.push((
                "PostgreSQL",
                Location::Postgres(d.url.clone()),
                Some(d.url.clone()),
            )),
            None => println!("no PostgreSQL (ANCHORBOT_TEST_DATABASE_URL unset): sled only"),
        }
        for (name, location, url) in &backends {
            let data = tmp.path().join(format!("data-{name}"));
            let mut s = settings(
                match location {
                    Location::Sled(dir) => dir,
                    Location::Postgres(_) => &data,
                },
                &llm.url,
            );
            s.database_url = url.clone();
            turn_latency(name, s.clone(), turns).await;
            parallel_turns(name, s, if quick { 5 } else { 20 }).await;
        }
        for (name, location, _) in &backends {
            store_calls(name, location, if quick { 200 } else { 1000 }).await;
        }
        if let Some(target) = pg::database().await {
            copy_throughput(&tmp.path().join("copy-source"), &target, quick).await;
        }
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sequential turns in one conversation: submit to reply, each.
async fn turn_latency(name: &str, settings: anchorbot::Settings, turns: usize) {
    let app = start_app(settings).await;
    // Warm up: the first turn opens connections and builds caches.
    app.sink
        .submit(message("W", "w0", "ann", "warm up"))
        .unwrap()
        .done()
        .await;
    let mut times = Vec::with_capacity(turns);
    for i in 0..turns {
        let started = Instant::now();
        app.sink
            .submit(message(
                "L",
                &format!("l{i}"),
                "ann",
                &format!("question {i}"),
            ))
            .unwrap()
            .done()
            .await;
        times.push(started.elapsed());
    }
    app.shutdown().await;
    times.sort();
    println!(
        "turn latency, {name}: {turns} turns in one conversation: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(*times.last().unwrap())
    );
}

/// 20 conversations at once, `each` turns each: turns per second.
async fn parallel_turns(name: &str, settings: anchorbot::Settings, each: usize) {
    let app = start_app(settings).await;
    let convs = 20;
    let started = Instant::now();
    let mut receipts = Vec::new();
    for round in 0..each {
        for c in 0..convs {
            receipts.push(
                app.sink
                    .submit(message(
                        &format!("P{c}"),
                        &format!("p{c}-{round}"),
                        "ann",
                        &format!("q {round}"),
                    ))
                    .unwrap(),
            );
        }
        // Each conversation's queue is bounded; let a round drain before the next.
        for r in receipts.drain(..) {
            r.done().await;
        }
    }
    let elapsed = started.elapsed();
    app.shutdown().await;
    let n = convs * each;
    println!(
        "turns per second, {name}: {n} turns over {convs} conversations: {:.0} turns/s",
        n as f64 / elapsed.as_secs_f64()
    );
}

/// The store calls of a turn, alone: the durable commit and an anchor read.
async fn store_calls(name: &str, location: &Location, n: usize) {
    let location = match location {
        Location::Sled(dir) => Location::Sled(dir.with_extension("calls")),
        other => other.clone(),
    };
    let store = Store::new(location.open().await.unwrap());
    let key = ConversationKey::console("bench-calls").unwrap();
    let mut commits = Vec::with_capacity(n);
    let mut reads = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        store
            .update_marking(&key, Some(&format!("e{i}")), |a| {
                a.facts.push(format!("fact {i}"));
                if a.facts.len() > 20 {
                    a.facts.remove(0);
                }
            })
            .await
            .unwrap();
        commits.push(started.elapsed());
        let started = Instant::now();
        store.anchor(&key).await.unwrap();
        reads.push(started.elapsed());
    }
    commits.sort();
    reads.sort();
    println!(
        "store calls, {name}: durable commit p50 {:.2} ms, p95 {:.2} ms; anchor read p50 {:.3} ms, p95 {:.3} ms",
        ms(percentile(&commits, 0.5)),
        ms(percentile(&commits, 0.95)),
        ms(percentile(&reads, 0.5)),
        ms(percentile(&reads, 0.95)),
    );
}

/// A sled store with documents, copied into an empty database.
async fn copy_throughput(dir: &std::path::Path, db: &pg::TestDb, quick: bool) {
    let (docs, per_doc) = if quick { (8, 250) } else { (40, 500) };
    let from: Storage = Location::Sled(dir.to_path_buf()).open().await.unwrap();
    let text = "The quarterly budget review covers travel, hardware and onboarding. ".repeat(12);
    for d in 0..docs {
        let doc = format!("doc{d:03}");
        let record = serde_json::to_vec(&serde_json::json!({
            "id": doc, "name": format!("{doc}.pdf"), "ingested_at_ms": d,
        }))
        .unwrap();
        let row = DocRow {
            doc: doc.clone(),
            ingested_ms: d as u64,
            record,
        };
        let chunks: Vec<ChunkRow> = (0..per_doc)
            .map(|i| ChunkRow {
                doc: doc.clone(),
                page: 1 + i / 10,
                position: i % 10,
                record: serde_json::to_vec(&serde_json::json!({
                    "doc_id": doc, "name": format!("{doc}.pdf"), "page": 1 + i / 10,
                    "position": i % 10, "heading": null, "text": text,
                }))
                .unwrap(),
                vector: (0..384)
                    .flat_map(|k| (((i * 31 + k) % 97) as f32 / 97.0).to_le_bytes())
                    .collect(),
            })
            .collect();
        from.documents
            .commit(&format!("console:c{}", d % 8), &row, &chunks)
            .await
            .unwrap();
    }
    from.conversations.flush().await.unwrap();
    let to = Location::Postgres(db.url.clone()).open().await.unwrap();
    let report = anchorbot::storage::copy::copy(&from, &to, false, |_| {})
        .await
        .unwrap();
    let secs = report.elapsed_ms as f64 / 1000.0;
    println!(
        "store copy, sled to PostgreSQL: {} documents, {} chunks with vectors ({:.1} MB) in {secs:.2} s: {:.0} chunks/s, {:.1} MB/s",
        report.documents,
        report.chunks,
        report.bytes as f64 / 1048576.0,
        report.chunks as f64 / secs,
        report.bytes as f64 / 1048576.0 / secs,
    );
}
