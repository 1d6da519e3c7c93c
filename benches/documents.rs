//! Benchmarks for documents, printing the figures BENCHMARKS.md reports: ingest throughput of
//! a 200-page text PDF next to the raw embedding throughput of the same chunks, retrieval
//! latency at 10k and 100k chunks in one conversation, and RSS with the model loaded.
//!
//! Run: `.ci/setup.sh && cargo bench --bench documents`.

#[path = "../tests/common/fixtures.rs"]
mod fixtures;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anchorbot::docs::store::{ChunkRecord, NewChunk};
use anchorbot::docs::{DocRecord, DocStatus, Documents, PageSource};
use anchorbot::settings::Settings;
use anchorbot::store::Store;
use anchorbot::tokens::Tiktoken;

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut settings = Settings::default();
    settings.documents.model_dir = root.join(".models/all-MiniLM-L6-v2");
    settings.documents.onnxruntime = root.join(".models/onnxruntime/libonnxruntime.so");
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data")).unwrap();
    let docs = Documents::new(
        store.clone(),
        settings.documents.clone(),
        settings.vision.clone(),
        Arc::new(Tiktoken::cl100k()),
    )
    .unwrap();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
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
            let db = store.db();
            let tree = db.open_tree("chunks").unwrap();
            for item in tree.scan_prefix(format!("{conv}\0").as_bytes()) {
                let (_, val) = item.unwrap();
                let c: ChunkRecord = serde_json::from_slice(&val).unwrap();
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
            docs.store().commit(&conv, &rec, &rows).unwrap();
        }
        let load = t.elapsed().as_secs_f64();
        // First query loads the conversation's vectors into memory.
        let t = Instant::now();
        docs.store().search(&conv, &unit(dims), 5).unwrap();
        let first = t.elapsed().as_secs_f64() * 1000.0;
        let mut lat: Vec<f64> = (0..300)
            .map(|_| {
                let q = unit(dims);
                let t = Instant::now();
                let hits = docs.store().search(&conv, &q, 5).unwrap();
                assert_eq!(hits.len(), 5);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
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
}
