//! Retrieval end to end with real parts: the real binary (`anchorbot ingest`, `anchorbot
//! search --mode …`, `anchorbot clear`), each call a fresh process reading sled, the real
//! all-MiniLM-L6-v2 for dense search, the BM25 index rebuilt from sled, and a fake OpenAI
//! server as the reasoning model that reranks.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fixtures;
use common::*;
use serde_json::Value;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

async fn ingest(dir: &Path, url: &str, conv: &str, files: &[&Path]) {
    let mut cmd = anchorbot(dir, url);
    cmd.args(["ingest", "--conversation", conv]).args(files);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{out}\n{err}");
}

/// `anchorbot search --mode MODE --json`, with extra environment.
async fn search_env(
    dir: &Path,
    url: &str,
    conv: &str,
    mode: &str,
    k: usize,
    q: &str,
    env: &[(&str, &str)],
) -> Vec<Value> {
    let mut cmd = anchorbot(dir, url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["search", "--conversation", conv, "--json", "--mode", mode])
        .args(["--top-k", &k.to_string(), q]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

async fn search(dir: &Path, url: &str, conv: &str, mode: &str, k: usize, q: &str) -> Vec<Value> {
    search_env(dir, url, conv, mode, k, q, &[]).await
}

/// 1-based rank of the first passage containing `needle`.
fn rank_of(hits: &[Value], needle: &str) -> Option<usize> {
    hits.iter()
        .position(|h| h["text"].as_str().unwrap().contains(needle))
        .map(|i| i + 1)
}

/// Maintenance notes on one theme, one naming a part by its code: one file each, written to
/// `dir`.
fn manual(dir: &Path) -> Vec<PathBuf> {
    let topics = [
        "Inspect the pump housing for cracks and corrosion before every shift, and record the result in the log book.",
        "Check the pressure gauge against the reference gauge once a month; replace it when the readings differ by more than two percent.",
        "Lubricate the bearings with the grease listed in the appendix every five hundred operating hours.",
        "Drain the condensate from the air receiver at the end of each day so that the tank does not rust from the inside.",
        "Tighten the flange bolts in a star pattern to the torque given on the data plate, never all at once.",
        "Clean the suction strainer whenever the flow drops by a tenth, and look for debris in the impeller.",
        "Test the emergency stop button weekly and write the date on the tag attached to the control panel.",
        "Replace the drive belt when it shows glazing or cracks, and set its tension with the spring gauge.",
        "Flush the cooling circuit each spring with clean water, then refill it with the prescribed coolant mixture.",
        "When the seal starts to weep, fit the repair kit and run the pump dry for no more than ten seconds.",
        "Keep spare fuses of the rated current in the cabinet, and never bridge a blown fuse with wire.",
        "Calibrate the flow meter after any repair on the discharge line, following the maker's procedure.",
    ];
    topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            // Every step names its parts by codes that differ in a digit or two: an embedding
            // barely tells them apart, an exact match does.
            let first = if i == 2 {
                "QX-7731".to_string()
            } else {
                format!("QX-77{:02}", 13 + i * 7)
            };
            let codes = format!("Parts: {first}, QX-73{:02}.", 17 + i * 5);
            let text = format!("Pump maintenance. {t} {codes}");
            write(dir, &format!("step{:02}.txt", i + 1), text.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn lexical_search_finds_an_exact_rare_term_that_dense_search_ranks_low() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    let files = manual(tmp.path());
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    ingest(&dir, &url, "m", &files).await;
    let q = "which job needs part QX-7731?";
    let lexical = search(&dir, &url, "m", "lexical", 5, q).await;
    let dense = search(&dir, &url, "m", "dense", 5, q).await;
    let fused = search(&dir, &url, "m", "fused", 5, q).await;
    assert_eq!(rank_of(&lexical, "QX-7731"), Some(1), "{lexical:#?}");
    let dense_rank = rank_of(&dense, "QX-7731").unwrap_or(usize::MAX);
    assert!(
        dense_rank > 1,
        "dense search found it first after all: {dense:#?}"
    );
    // Fusion keeps it in the top 5, above where dense search alone put it.
    let fused_rank = rank_of(&fused, "QX-7731").expect("fusion lost the exact match");
    assert!(
        fused_rank < dense_rank,
        "{fused_rank} vs {dense_rank}: {fused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_page_never_takes_two_slots_and_a_hit_comes_with_its_neighbours() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    // Page 1 says much about rent; pages 2-4 say a little each.
    let rent: Vec<String> = (0..14)
        .map(|i| format!("Rent clause {i}: the monthly rent is paid on the first day of each month by bank transfer to the landlord."))
        .collect();
    let mut p1: Vec<&str> = vec!["Lease"];
    p1.extend(rent.iter().map(String::as_str));
    let pages = vec![
        p1,
        vec![
            "Deposit",
            "The rent deposit equals three months of rent and is returned at the end.",
        ],
        vec![
            "Pets",
            "Pets need the landlord's consent; the rent does not change for them.",
        ],
        vec!["Heating", "Heating is billed with the rent every quarter."],
    ];
    let pdf = write(tmp.path(), "lease.pdf", &fixtures::text_pdf(&pages));
    ingest(&dir, &url, "l", &[&pdf]).await;
    for mode in ["dense", "lexical", "fused"] {
        let hits = search(&dir, &url, "l", mode, 4, "when is the monthly rent paid?").await;
        let pages: Vec<i64> = hits.iter().map(|h| h["page"].as_i64().unwrap()).collect();
        let mut unique = pages.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), pages.len(), "{mode}: {pages:?}");
        assert_eq!(pages[0], 1, "{mode}: {hits:#?}");
    }
    // The hit on page 1 carries the chunks around it: more text than one chunk holds.
    let hits = search(&dir, &url, "l", "fused", 1, "Rent clause 7").await;
    let text = hits[0]["text"].as_str().unwrap();
    assert!(
        text.contains("Rent clause 6") && text.contains("Rent clause 8"),
        "{text}"
    );
    assert_eq!(hits[0]["citation"], "lease.pdf p.1", "{:#?}", hits[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_across_a_page_break_arrives_whole_and_cites_both_pages() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    let pages = vec![
        vec![
            "Termination",
            "Either party may end this contract. The notice period for the tenant is",
        ],
        vec![
            "three months, counted from the end of the calendar month in which notice is given.",
            "Other matters follow.",
        ],
    ];
    let pdf = write(tmp.path(), "contract.pdf", &fixtures::text_pdf(&pages));
    ingest(&dir, &url, "c", &[&pdf]).await;
    let hits = search(
        &dir,
        &url,
        "c",
        "fused",
        1,
        "What is the tenant's notice period?",
    )
    .await;
    let text = hits[0]["text"].as_str().unwrap();
    assert!(text.contains("notice period for the tenant is"), "{text}");
    assert!(text.contains("three months, counted"), "{text}");
    assert_eq!(hits[0]["citation"], "contract.pdf p.1–2", "{:#?}", hits[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_removes_documents_from_both_indexes_and_a_restart_agrees_with_sled() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    let a = write(
        tmp.path(),
        "a.txt",
        b"The vault code word is marmalade-zebra. Keep it secret.",
    );
    let b = write(
        tmp.path(),
        "b.txt",
        b"The backup server lives in rack seventeen, slot four.",
    );
    ingest(&dir, &url, "x", &[&a, &b]).await;
    // Each search is a new process: both indexes are rebuilt from sled.
    for mode in ["lexical", "dense"] {
        let hits = search(&dir, &url, "x", mode, 2, "marmalade-zebra code word").await;
        assert_eq!(hits[0]["name"], "a.txt", "{mode}: {hits:#?}");
    }
    let mut cmd = anchorbot(&dir, &url);
    cmd.args(["clear", "--conversation", "x"]);
    let (ok, _, err) = run(cmd).await;
    assert!(ok, "{err}");
    for mode in ["lexical", "dense", "fused"] {
        let hits = search(&dir, &url, "x", mode, 5, "marmalade-zebra code word").await;
        assert!(hits.is_empty(), "{mode}: {hits:#?}");
    }
    // Only b again: neither index brings a back.
    ingest(&dir, &url, "x", &[&b]).await;
    for mode in ["lexical", "dense", "fused"] {
        let hits = search(&dir, &url, "x", mode, 5, "marmalade-zebra code word backup").await;
        assert!(
            hits.iter().all(|h| h["name"] == "b.txt"),
            "{mode}: {hits:#?}"
        );
        assert!(!hits.is_empty(), "{mode}");
    }
    // Another conversation never sees this one's documents.
    ingest(&dir, &url, "y", &[&a]).await;
    let hits = search(&dir, &url, "x", "lexical", 5, "marmalade-zebra").await;
    assert!(hits.iter().all(|h| h["name"] == "b.txt"), "{hits:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chinese_text_is_searchable() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    let text = "第一条 本合同的有效期为三年。\n\n第二条 租金每月支付一次，在每月五日之前付清。\n\n第三条 房屋内禁止饲养宠物。\n\n第四条 维修费用由房东承担。\n";
    let doc = write(tmp.path(), "合同.txt", text.as_bytes());
    ingest(&dir, &url, "zh", &[&doc]).await;
    for (q, needle) in [
        ("租金什么时候支付", "租金每月支付"),
        ("可以养宠物吗", "禁止饲养宠物"),
    ] {
        for mode in ["lexical", "fused"] {
            let hits = search(&dir, &url, "zh", mode, 1, q).await;
            assert_eq!(rank_of(&hits, needle), Some(1), "{mode} {q}: {hits:#?}");
        }
    }
}

/// A reasoning model that answers every request with `answer`, after `delay`.
async fn reranking_model(answer: &'static str, delay: Duration) -> FakeLlm {
    FakeLlm::start(move |_| {
        let mut r = Reply::text(answer);
        r.first_delay = delay;
        r
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reranker_orders_passages_and_garbage_or_a_timeout_keeps_the_fused_order() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    let files = manual(tmp.path());
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    ingest(&dir, &url, "r", &files).await;
    let q = "how do I look after the pump?";
    let fused = search(&dir, &url, "r", "fused", 3, q).await;
    assert_eq!(fused.len(), 3);
    let on = [
        ("ANCHORBOT_DOCUMENTS_RERANK", "llm"),
        ("ANCHORBOT_DOCUMENTS_RERANK_TIMEOUT_MS", "1500"),
    ];
    // A model that follows the format: its order wins.
    let good = reranking_model("3, 1, 2", Duration::ZERO).await;
    let hits = search_env(&dir, &good.url, "r", "reranked", 3, q, &on).await;
    assert_eq!(hits[0]["text"], fused[2]["text"], "{hits:#?}");
    assert_eq!(hits[1]["text"], fused[0]["text"]);
    assert_eq!(good.requests().len(), 1);
    // Garbage, or no answer within the limit: the fused order.
    let garbage = reranking_model("I am sorry, I cannot help with that.", Duration::ZERO).await;
    let hits = search_env(&dir, &garbage.url, "r", "reranked", 3, q, &on).await;
    assert_eq!(hits, fused);
    assert_eq!(garbage.requests().len(), 1);
    let slow = reranking_model("3, 1, 2", Duration::from_secs(20)).await;
    let hits = search_env(&dir, &slow.url, "r", "reranked", 3, q, &on).await;
    assert_eq!(hits, fused);
    // Down altogether: the fused order too.
    let hits = search_env(&dir, &closed_port_url(), "r", "reranked", 3, q, &on).await;
    assert_eq!(hits, fused);
}

/// A model directory of links to the real model's files, with `quantized` as its
/// `model_quantized.onnx` (none when `None`).
fn model_dir_with(dir: &Path, quantized: Option<&[u8]>) -> PathBuf {
    let real = models_dir().join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "model.onnx",
        "tokenizer.json",
        "config.json",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ] {
        std::os::unix::fs::symlink(real.join(f), dir.join(f)).unwrap();
    }
    if let Some(bytes) = quantized {
        std::fs::write(dir.join("model_quantized.onnx"), bytes).unwrap();
    }
    dir.to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn questions_use_the_quantized_copy_and_fall_back_to_the_full_model() {
    ensure_models();
    let int8 = models_dir().join("all-MiniLM-L6-v2-int8/model.onnx");
    if !int8.exists() {
        let status = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup-models.sh"))
            .status()
            .expect("run .ci/setup-models.sh");
        assert!(status.success(), ".ci/setup-models.sh failed");
    }
    let int8 = std::fs::read(&int8).expect("the int8 model (.ci/setup-models.sh builds it)");
    let tmp = tempfile::tempdir().unwrap();
    let url = closed_port_url();
    let files = manual(tmp.path());
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let q = "how often should the bearings be greased?";
    let mut tops = Vec::new();
    for (name, quantized, enabled, log) in [
        (
            "int8",
            Some(&int8[..]),
            "true",
            "questions are embedded by the quantized model",
        ),
        (
            "corrupt",
            Some(&b"not a model"[..]),
            "true",
            "the quantized model does not load",
        ),
        ("off", Some(&int8[..]), "false", ""),
        ("absent", None, "true", ""),
    ] {
        let model = model_dir_with(&tmp.path().join(format!("model-{name}")), quantized);
        let dir = tmp.path().join(format!("data-{name}"));
        let env = |cmd: &mut tokio::process::Command| {
            cmd.env("ANCHORBOT_DOCUMENTS_MODEL_DIR", &model)
                .env("ANCHORBOT_DOCUMENTS_QUANTIZED_QUERIES", enabled)
                .env("ANCHORBOT_LOG", "anchorbot=info");
        };
        let mut cmd = anchorbot(&dir, &url);
        env(&mut cmd);
        cmd.args(["ingest", "--conversation", "m"]).args(&files);
        let (ok, out, err) = run(cmd).await;
        assert!(ok, "{name}: {out}\n{err}");
        let mut cmd = anchorbot(&dir, &url);
        env(&mut cmd);
        cmd.args([
            "search",
            "--conversation",
            "m",
            "--json",
            "--mode",
            "dense",
            q,
        ]);
        let (ok, out, err) = run(cmd).await;
        assert!(ok, "{name}: {err}");
        let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
        let quantized_used = err.contains("questions are embedded by the quantized model");
        assert_eq!(quantized_used, name == "int8", "{name}: {err}");
        assert!(err.contains(log), "{name}: {err}");
        tops.push((name, hits[0]["text"].as_str().unwrap().to_string()));
    }
    // Every variant finds the step about the bearings first: the int8 copy embeds questions
    // into the same space as the documents' fp32 vectors.
    for (name, top) in &tops {
        assert!(top.contains("Lubricate the bearings"), "{name}: {top}");
    }
}
