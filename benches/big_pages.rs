//! Big single pages through the real `anchorbot ingest` with the real embedding model: for
//! each file its chunks, wall time and peak resident memory (VmHWM), the table BENCHMARKS.md
//! reports. Prose of 1, 2 and 8 MB shows that memory does not grow with the size of a page;
//! runs with no break (letters, commas, a `data:` image) show that data is skipped, not
//! embedded. The 8 MB file takes about ten minutes on a 2-core machine: too slow for CI.
//!
//! Run: `.ci/setup.sh && cargo bench --bench big_pages` (add `-- quick` to leave out 8 MB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fixtures;
use common::peak::run_measured;

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(quick));
}

async fn run(quick: bool) {
    common::ensure_models();
    println!(
        "machine: {} cores; embedding threads: 1 (anchorbot's default on 2 cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let tmp = tempfile::tempdir().unwrap();
    let image = "iVBORw0KGgoAAAANSUhEUgAA".repeat((2 << 20) / 24);
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("letters-1mb.txt", fixtures::one_long_word(1 << 20, 3)),
        ("commas-6mb.csv", vec![b','; 6 << 20]),
        (
            "image-2mb.md",
            format!(
                "# Offsite\n\nIn Lisbon during June.\n\n![map](data:image/png;base64,{image})\n"
            )
            .into_bytes(),
        ),
        ("prose-1mb.txt", fixtures::prose(1 << 20, 1).into_bytes()),
        ("prose-2mb.txt", fixtures::prose(2 << 20, 2).into_bytes()),
        (
            "chinese-1mb.txt",
            fixtures::chinese_prose(1 << 20, 5).into_bytes(),
        ),
    ];
    if !quick {
        files.push(("prose-8mb.txt", fixtures::prose(8 << 20, 8).into_bytes()));
    }
    println!("\n== one-page files through `anchorbot ingest` (real all-MiniLM-L6-v2)");
    println!(
        "  {:<16} {:>8} {:>9} {:>10} {:>10}  result",
        "file", "size", "chunks", "wall", "peak RSS"
    );
    for (name, bytes) in files {
        let path = tmp.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let data = tmp.path().join(format!("data-{name}"));
        let mut cmd = common::anchorbot(&data, "http://127.0.0.1:9/v1");
        cmd.args(["ingest", "--conversation", "bench"]).arg(&path);
        let started = Instant::now();
        let run = run_measured(cmd, Duration::from_secs(3600)).await;
        let wall = started.elapsed().as_secs_f64();
        let said = if run.ok {
            run.stdout.trim().to_string()
        } else {
            run.stderr
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("failed")
                .to_string()
        };
        println!(
            "  {:<16} {:>6} KB {:>9} {:>8.1} s {:>7} MB  {}",
            name,
            bytes.len() >> 10,
            chunks(&said),
            wall,
            run.peak_mb(),
            said
        );
        std::fs::remove_dir_all(&data).ok();
        std::fs::remove_file(Path::new(&path)).ok();
    }
}

/// The chunk count of a summary line, or "-".
fn chunks(summary: &str) -> String {
    common::chunk_count(summary).map_or("-".to_string(), |n| n.to_string())
}
