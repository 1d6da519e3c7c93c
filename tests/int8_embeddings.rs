//! The int8-quantized all-MiniLM-L6-v2 (`.models/all-MiniLM-L6-v2-int8`, built by
//! `.ci/setup-models.sh` with ONNX Runtime's dynamic quantization) against the fp32 model.
//!
//! - `int8_vectors_match_fp32` (runs in the suite): same texts, cosine of the two models'
//!   vectors averages at least 0.95.
//! - `int8_speed` (ignored; a measurement, not a check): throughput on 600 chunks of ~96
//!   wordpieces and single short-query latency (p50 of 200), fp32 vs int8. Run:
//!   `cargo test --release --test int8_embeddings -- --ignored --nocapture int8_speed`
//!   (`INT8_THREADS=1` sets ONNX Runtime's intra-op threads; default: ONNX Runtime's own).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anchorbot::docs::embed::{Embedder, LocalEmbedder};
use common::{ensure_models, models_dir};

/// (fp32 dir, int8 dir, ONNX Runtime library), after making sure all three exist.
fn model_paths() -> (PathBuf, PathBuf, PathBuf) {
    ensure_models();
    let dir = models_dir();
    let (fp32, int8) = (
        dir.join("all-MiniLM-L6-v2"),
        dir.join("all-MiniLM-L6-v2-int8"),
    );
    let runtime = dir.join("onnxruntime/libonnxruntime.so");
    if !int8.join("model.onnx").exists() {
        // ensure_models() skips the script when the fp32 model is there; the int8 step is
        // idempotent, so run it again for the int8 model.
        let status = std::process::Command::new("bash")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup-models.sh"))
            .status()
            .expect("run .ci/setup-models.sh");
        assert!(status.success(), ".ci/setup-models.sh failed");
    }
    for f in anchorbot::docs::embed::MODEL_FILES {
        assert!(
            int8.join(f).is_file(),
            "{} is missing: .ci/setup-models.sh did not build the int8 model (see its output; \
             ANCHORBOT_SKIP_INT8 must not be set)",
            int8.join(f).display()
        );
    }
    (fp32, int8, runtime)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

const SENTENCES: &[&str] = &[
    "a cat",
    "How do I reset my password?",
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "Quarterly revenue grew by twelve percent, driven by strong sales in Europe.",
    "You may convey verbatim copies of the Program's source code as you receive it.",
    "Backups are kept for thirty days and then deleted permanently.",
    "The committee approved the budget after a long debate about infrastructure costs.",
    "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
    "Which licence lets me share unchanged copies?",
    "The patient was prescribed antibiotics for a bacterial infection of the lungs.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The train to Berlin leaves from platform nine at a quarter past eight.",
    "In the event of a fire, use the stairs and do not take the elevator.",
    "The function returns an error when the input file cannot be opened.",
    "Licensees may not sublicense the software without prior written permission.",
    "She played the violin in the city orchestra for over twenty years.",
    "Interest rates were left unchanged by the central bank this month.",
    "The hiking trail climbs steeply through pine forest to a glacial lake.",
    "Disclaimer of warranty: the program is provided as is, without warranty of any kind.",
    "what time does the museum open on sundays",
];

/// The int8 model's vectors point where the fp32 model's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_vectors_match_fp32() {
    let (fp32_dir, int8_dir, runtime) = model_paths();
    let fp32 = LocalEmbedder::load(&fp32_dir, &runtime, Some(1)).expect("fp32 model loads");
    let int8 = LocalEmbedder::load(&int8_dir, &runtime, Some(1)).expect("int8 model loads");
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let a = fp32.embed(texts.clone()).await.unwrap();
    let b = int8.embed(texts).await.unwrap();
    assert_eq!(a.len(), SENTENCES.len());
    assert_eq!(b.len(), SENTENCES.len());
    let cos: Vec<f32> = a.iter().zip(&b).map(|(x, y)| cosine(x, y)).collect();
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    let (worst, min) = cos
        .iter()
        .enumerate()
        .fold((0, f32::MAX), |m, (i, &c)| if c < m.1 { (i, c) } else { m });
    eprintln!(
        "int8 vs fp32 over {} sentences: mean cosine {mean:.4}, min {min:.4} ({:?})",
        cos.len(),
        SENTENCES[worst]
    );
    assert!(
        b[0].len() == 384,
        "int8 vectors have {} dimensions",
        b[0].len()
    );
    assert!(mean >= 0.95, "mean cosine int8 vs fp32 {mean:.4} < 0.95");
    assert!(
        min >= 0.90,
        "cosine int8 vs fp32 for {:?} is {min:.4}",
        SENTENCES[worst]
    );
}

/// Chunks of about `len` wordpieces ([CLS] and [SEP] included) cut from the licence texts
/// Debian's base-files installs, `n` of them (overlapping windows if the text is short).
fn chunks(tokenizer_json: &std::path::Path, n: usize, len: usize) -> Vec<String> {
    let mut text = String::new();
    for name in [
        "GPL-3",
        "GPL-2",
        "LGPL-2.1",
        "LGPL-3",
        "Apache-2.0",
        "MPL-2.0",
        "MPL-1.1",
        "GFDL-1.3",
        "Artistic",
        "CC0-1.0",
        "BSD",
    ] {
        let path = format!("/usr/share/common-licenses/{name}");
        let t = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.push_str(&t.split_whitespace().collect::<Vec<_>>().join(" "));
        text.push(' ');
    }
    let tok = tokenizer(tokenizer_json);
    let enc = tok.encode(text.as_str(), false).unwrap();
    let offsets = enc.get_offsets();
    let body = len - 2;
    let stride = ((offsets.len() - body) / n).clamp(1, body);
    (0..n)
        .map(|i| {
            let start = (i * stride) % (offsets.len() - body);
            text[offsets[start].0..offsets[start + body - 1].1].to_string()
        })
        .collect()
}

/// The model's tokenizer without the fixed 128 padding and truncation tokenizer.json sets
/// (fastembed replaces them with batch-longest padding and truncation at 256).
fn tokenizer(path: &std::path::Path) -> tokenizers::Tokenizer {
    let mut tok = tokenizers::Tokenizer::from_file(path).unwrap();
    tok.with_padding(None);
    tok.with_truncation(None).unwrap();
    tok
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Throughput and query latency, fp32 vs int8. Prints; asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --release --test int8_embeddings -- --ignored --nocapture"]
async fn int8_speed() {
    let (fp32_dir, int8_dir, runtime) = model_paths();
    let threads = std::env::var("INT8_THREADS")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<usize>().expect("INT8_THREADS is a number"));
    let models = [
        (
            "fp32",
            LocalEmbedder::load(&fp32_dir, &runtime, threads).unwrap(),
        ),
        (
            "int8",
            LocalEmbedder::load(&int8_dir, &runtime, threads).unwrap(),
        ),
    ];
    let sizes: Vec<u64> = [&fp32_dir, &int8_dir]
        .iter()
        .map(|d| std::fs::metadata(d.join("model.onnx")).unwrap().len())
        .collect();

    let n_chunks: usize = std::env::var("INT8_CHUNKS").map_or(600, |v| v.parse().unwrap());
    let docs = chunks(&fp32_dir.join("tokenizer.json"), n_chunks, 96);
    let tok = tokenizer(&fp32_dir.join("tokenizer.json"));
    let pieces: usize = docs
        .iter()
        .map(|d| tok.encode(d.as_str(), true).unwrap().len().min(256))
        .sum();
    println!(
        "machine: {} cores; ONNX Runtime intra-op threads: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        threads.map_or("default".to_string(), |t| t.to_string())
    );
    println!(
        "model.onnx: fp32 {:.1} MB, int8 {:.1} MB",
        sizes[0] as f64 / 1e6,
        sizes[1] as f64 / 1e6
    );
    println!(
        "corpus: {} chunks, {:.1} wordpieces each on average ([CLS]/[SEP] included)",
        docs.len(),
        pieces as f64 / docs.len() as f64
    );

    // Warm-up (first runs allocate and pick kernels).
    for (_, m) in &models {
        m.embed(docs[..32].to_vec()).await.unwrap();
    }

    // Throughput: the whole corpus in one call (batches of 16 inside), alternating models,
    // best of `rounds` per model (the least disturbed by other load on the machine).
    let rounds: usize = std::env::var("INT8_ROUNDS").map_or(3, |v| v.parse().unwrap());
    let mut best = [f64::MAX; 2];
    for r in 0..rounds {
        for k in 0..2 {
            let k = if r % 2 == 0 { k } else { 1 - k };
            let t = Instant::now();
            let out = models[k].1.embed(docs.clone()).await.unwrap();
            let s = t.elapsed().as_secs_f64();
            assert_eq!(out.len(), docs.len());
            println!("  round {r} {}: {s:.2} s", models[k].0);
            best[k] = best[k].min(s);
        }
    }

    // Latency: 200 short queries one at a time; the models alternate per query.
    let queries: Vec<String> = (0..200)
        .map(|i| format!("{} ({i})", SENTENCES[i % SENTENCES.len()]))
        .collect();
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for (i, q) in queries.iter().enumerate() {
        for k in 0..2 {
            let k = if i % 2 == 0 { k } else { 1 - k };
            let t = Instant::now();
            models[k].1.embed(vec![q.clone()]).await.unwrap();
            lat[k].push(t.elapsed());
        }
    }

    println!(
        "load average at the end (other work on the machine skews timings): {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("\n| model | chunks/s | wordpieces/s | query p50 ms | query p90 ms |");
    println!("|---|---|---|---|---|");
    for k in 0..2 {
        lat[k].sort();
        println!(
            "| {} | {:.1} | {:.0} | {:.2} | {:.2} |",
            models[k].0,
            docs.len() as f64 / best[k],
            pieces as f64 / best[k],
            pct(&lat[k], 0.5),
            pct(&lat[k], 0.9)
        );
    }
    println!(
        "int8 / fp32: throughput x{:.2}, query p50 x{:.2}",
        best[0] / best[1],
        pct(&lat[1], 0.5) / pct(&lat[0], 0.5)
    );
}
