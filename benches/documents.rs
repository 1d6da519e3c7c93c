//! Benchmarks for documents, printing the figures BENCHMARKS.md reports: how much a large
//! ingest in one conversation delays the tokens streaming in another, ingest throughput of
//! a 200-page text PDF next to the raw embedding throughput of the same chunks, retrieval
//! latency at 10k and 100k chunks in one conversation, and RSS with the model loaded.
//!
//! Run: `.ci/setup.sh && cargo bench --bench documents`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot::docs::chunk::Chunker;
use anchorbot::docs::store::{ChunkRecord, NewChunk};
use anchorbot::docs::{DocRecord, DocStatus, Documents, PageSource};
use anchorbot::llm::tokens::Tiktoken;
use anchorbot::settings::EmbedderKind;
use anchorbot::settings::Settings;
use common::{fixtures, FakeLlm, Reply};
use futures_util::StreamExt;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut settings = Settings::default();
    settings.documents.model_dir = root.join(".models/all-MiniLM-L6-v2");
    settings.documents.onnxruntime = root.join(".models/onnxruntime/libonnxruntime.so");
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = common::reopen(&tmp.path().join("data")).await;
    let docs = Documents::new(
        store,
        settings.documents.clone(),
        settings.vision.clone(),
        Arc::new(Tiktoken::cl100k()),
    )
    .unwrap();
    let rss_before = rss_mb();
    let embedder = docs
        .embedder()
        .await
        .expect("run .ci/setup-models.sh first");
    let rss_loaded = rss_mb();

    // Ingest a 200-page text PDF through the whole pipeline, and embed the same chunk texts
    // alone; alternate the two and keep the best of two runs each, so warm-up and noise do not
    // favour either side.
    let pdf = fixtures::text_pdf_many(200, 45, 7);
    let (tx, _rx) = tokio::sync::watch::channel(String::new());
    let mut ingest_secs = f64::MAX;
    let mut embed_secs = f64::MAX;
    let mut chunks = 0.0;
    let mut texts: Vec<String> = Vec::new();
    for round in 0..2 {
        let conv = format!("bench:ingest{round}");
        let t = Instant::now();
        let report = docs.ingest(&conv, "big.pdf", &pdf, &tx).await.unwrap();
        ingest_secs = ingest_secs.min(t.elapsed().as_secs_f64());
        chunks = report.doc.chunks as f64;
        if texts.is_empty() {
            let stored = docs
                .store()
                .document_chunks(&conv, &report.doc.id)
                .await
                .unwrap();
            for (_, c) in stored {
                texts.push(match &c.heading {
                    Some(h) if !c.text.contains(h.as_str()) => format!("{h}\n{}", c.text),
                    _ => c.text,
                });
            }
        }
        let t = Instant::now();
        for batch in texts.chunks(settings.documents.embed_batch) {
            embedder.embed(batch.to_vec()).await.unwrap();
        }
        embed_secs = embed_secs.min(t.elapsed().as_secs_f64());
    }
    let rss_ingested = rss_mb();
    println!(
        "\n== ingest: 200-page text PDF ({} KB), {} chunks (best of 2 runs each)",
        pdf.len() / 1024,
        chunks
    );
    println!(
        "  full pipeline : {:>7.1} pages/s  {:>7.1} chunks/s  ({ingest_secs:.2} s)",
        200.0 / ingest_secs,
        chunks / ingest_secs
    );
    println!(
        "  embedding only: {:>7.1} pages/s  {:>7.1} chunks/s  ({embed_secs:.2} s)",
        200.0 / embed_secs,
        texts.len() as f64 / embed_secs
    );
    println!(
        "  pipeline overhead over embedding alone: {:+.1}%",
        100.0 * (ingest_secs - embed_secs) / embed_secs
    );

    // Retrieval latency with synthetic unit vectors (the model's dimension).
    for n in [10_000usize, 100_000] {
        let conv = format!("bench:retrieval{n}");
        let mut seed = 0x2545F4914F6CDD1Du64 ^ n as u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let mut unit = |dims: usize| {
            let mut v: Vec<f32> = (0..dims).map(|_| rnd()).collect();
            anchorbot::docs::embed::normalize(&mut v);
            v
        };
        let dims = 384;
        let pages = (n / 1000) as u32;
        let mut rec = DocRecord {
            id: format!("synthetic{n}"),
            name: "synthetic.pdf".into(),
            mime: "application/pdf".into(),
            size: 0,
            sha256: format!("{n:064}"),
            pages,
            status: DocStatus::Ready,
            ingested_at_ms: 0,
            page_status: vec![PageSource::Text; pages as usize],
            chunks: 0,
            paged: true,
            page_labels: Vec::new(),
            partial: None,
            skipped: Default::default(),
        };
        let t = Instant::now();
        for page in 1..=pages {
            let rows: Vec<NewChunk> = (0..1000u32)
                .map(|i| NewChunk {
                    page,
                    record: ChunkRecord {
                        doc_id: rec.id.clone(),
                        name: rec.name.clone(),
                        page: Some(page),
                        position: i,
                        heading: None,
                        text: format!("synthetic chunk {page}-{i}"),
                        label: None,
                    },
                    vector: unit(dims),
                })
                .collect();
            rec.chunks += rows.len() as u32;
            docs.store().commit(&conv, &rec, &rows).await.unwrap();
        }
        let load = t.elapsed().as_secs_f64();
        // Searches run on the blocking pool (an index build waits for the store); here the
        // whole measurement leaves the async context at once, so the timings are the search's.
        let (first, mut lat) = tokio::task::block_in_place(|| {
            // First query loads the conversation's vectors into memory.
            let t = Instant::now();
            docs.store()
                .index(&conv)
                .unwrap()
                .dense_scored(&unit(dims), 5);
            let first = t.elapsed().as_secs_f64() * 1000.0;
            let lat: Vec<f64> = (0..300)
                .map(|_| {
                    let q = unit(dims);
                    let t = Instant::now();
                    let hits = docs.store().index(&conv).unwrap().dense_scored(&q, 5);
                    assert_eq!(hits.len(), 5);
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            (first, lat)
        });
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
        println!("\n== retrieval: top-5 of {n} chunks in one conversation");
        println!("  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (first query, loading the index: {first:.0} ms; writing them: {load:.1} s)", pct(0.5), pct(0.99), lat[lat.len() - 1]);
    }
    println!("\n== memory (RSS)");
    println!("  before loading the model : {rss_before:.0} MB");
    println!("  model loaded             : {rss_loaded:.0} MB");
    println!("  after the 200-page ingest: {rss_ingested:.0} MB");
    println!("  with 110k vectors indexed: {:.0} MB", rss_mb());
    // Last, so its 8 MB files do not count in the memory figures above.
    stream_while_ingesting().await;
}

/// Gaps between the SSE frames of one streamed answer, in milliseconds, read on a runtime
/// worker like a conversation's turn.
async fn stream_gaps(url: String) -> Vec<f64> {
    let body = serde_json::json!({
        "model": "fake-model",
        "messages": [{"role": "user", "content": "q"}],
        "stream": true
    });
    let response = reqwest::Client::new()
        .post(format!("{url}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut frames = response.bytes_stream();
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    while let Some(frame) = frames.next().await {
        frame.unwrap();
        let now = Instant::now();
        gaps.push((now - last).as_secs_f64() * 1000.0);
        last = now;
    }
    // The first gap is the request itself.
    gaps.remove(0);
    gaps
}

fn gap_line(label: &str, mut gaps: Vec<f64>) -> String {
    gaps.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| gaps[((gaps.len() as f64 - 1.0) * p) as usize];
    format!(
        "  {label:<50}: p50 {:>5.1} ms, p99 {:>5.1} ms, max {:>6.1} ms ({} gaps)",
        pct(0.5),
        pct(0.99),
        gaps[gaps.len() - 1],
        gaps.len()
    )
}

/// One conversation streams an answer (a token every 5 ms from the fake server) while two
/// others each ingest an 8 MB text file (embedded by the fake server, so parsing, chunking
/// and storage are the work). The inter-token delay is measured alone, during the ingests as
/// they run now (parse and chunk on the blocking pool), and during the same chunking done on
/// the async workers, as text layers were chunked before.
async fn stream_while_ingesting() {
    const TOKENS: usize = 2000;
    const EVERY: Duration = Duration::from_millis(5);
    let tokens: Vec<String> = (0..TOKENS).map(|i| format!(" w{i}")).collect();
    let llm =
        FakeLlm::start(move |_| Reply::chunks(tokens.clone(), Some("stop")).slow(EVERY)).await;
    let url = llm.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = common::reopen(&tmp.path().join("data")).await;
    let mut settings = Settings::default();
    settings.documents.embedder = EmbedderKind::Openai;
    settings.documents.embeddings.url = llm.url.clone();
    settings.documents.embeddings.model = "bow-64".into();
    let docs = Arc::new(
        Documents::new(
            store,
            settings.documents.clone(),
            settings.vision.clone(),
            Arc::new(Tiktoken::cl100k()),
        )
        .unwrap(),
    );
    // 8 MB of prose in paragraphs, varied so chunks differ.
    let mut text = String::with_capacity(8 << 20);
    let mut i = 0u64;
    while text.len() < 8 << 20 {
        i += 1;
        text.push_str(&format!(
            "Item {i}: the quarterly budget covers travel, hardware and onboarding for team {}. \
             Approvals above {} EUR need a second signature.\n\n",
            i % 97,
            (i * 37) % 5000
        ));
    }
    let bytes = Arc::new(text.into_bytes());
    println!(
        "\n== inter-token delay of a streaming answer while two other conversations ingest {} MB of text each",
        bytes.len() >> 20,
    );
    println!(
        "  a token every {} ms, {TOKENS} tokens, {} runtime workers",
        EVERY.as_millis(),
        tokio::runtime::Handle::current().metrics().num_workers()
    );

    // Warm up the connection and the tokenizer.
    stream_gaps(url.clone()).await;
    let alone = tokio::spawn(stream_gaps(url.clone())).await.unwrap();
    println!("{}", gap_line("alone", alone));

    for round in 0..2 {
        let stream = tokio::spawn(stream_gaps(url.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let ingests: Vec<_> = (0..2)
            .map(|n| {
                let (docs, bytes) = (docs.clone(), bytes.clone());
                tokio::spawn(async move {
                    let (tx, _rx) = tokio::sync::watch::channel(String::new());
                    let conv = format!("bench:ingest-while-streaming{round}-{n}");
                    docs.ingest(&conv, "notes.txt", &bytes, &tx).await
                })
            })
            .collect();
        let mut chunks = 0;
        for ingest in ingests {
            chunks += ingest
                .await
                .unwrap()
                .expect("the ingest succeeds")
                .doc
                .chunks;
        }
        let ingest_secs = t.elapsed().as_secs_f64();
        let gaps = stream.await.unwrap();
        println!(
            "{}",
            gap_line(
                &format!(
                    "during 2 ingests (run {}, {ingest_secs:.1} s, {chunks} chunks)",
                    round + 1
                ),
                gaps
            )
        );
    }

    let stream = tokio::spawn(stream_gaps(url.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let chunkings: Vec<_> = (0..2)
        .map(|_| {
            let page = String::from_utf8(bytes.to_vec()).unwrap();
            let chunker = Chunker::new(Arc::new(Tiktoken::cl100k()), 256, 32);
            tokio::spawn(async move { chunker.chunk(&page, false).len() })
        })
        .collect();
    let mut chunks = 0;
    for chunking in chunkings {
        chunks += chunking.await.unwrap();
    }
    let chunk_secs = t.elapsed().as_secs_f64();
    let gaps = stream.await.unwrap();
    println!(
        "{}",
        gap_line(
            &format!("2 chunkings on the async workers ({chunk_secs:.1} s, {chunks} chunks)"),
            gaps
        )
    );
}
