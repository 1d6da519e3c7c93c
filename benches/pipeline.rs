//! Benchmarks for the reasoning pipeline, printing the figures BENCHMARKS.md reports:
//! language-filter throughput, per-token overhead of the stream pipeline, prompt-prefix
//! stability over a scripted 30-turn conversation, and how far cl100k counts differ from the
//! Qwen tokenizer on real text.
//!
//! Run: `cargo bench --bench pipeline` (after `.ci/fetch-tokenizers.sh` for the Qwen figures).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot::llm::lang_filter::{Script, ScriptFilter};
use anchorbot::llm::think::ThinkStart;
use anchorbot::llm::tokens::{Tiktoken, TokenCounter};
use anchorbot::llm::turn::{Input, Turn, TurnConfig};
use anchorbot::llm::{
    parse_chunk, ChatBackend, ChatMessage, ChatRequest, OpenAiEndpoint, Role, StreamItem,
};
use common::*;
use futures_util::StreamExt;
use serde_json::Value;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("machine: {}", machine());
    filter_throughput();
    fsm_per_token();
    rt.block_on(end_to_end_per_token());
    rt.block_on(prefix_stability());
    tokenizer_gap();
}

/// Text made of English prose with CJK characters sprinkled in at `cjk_every` characters.
fn corpus(bytes: usize, cjk_every: Option<usize>) -> String {
    let prose = "The quarterly budget review covers travel, hardware and the new onboarding plan. ";
    let mut s = String::with_capacity(bytes + 64);
    let mut n = 0;
    while s.len() < bytes {
        for c in prose.chars() {
            s.push(c);
            n += 1;
            if let Some(k) = cjk_every {
                if n % k == 0 {
                    s.push('预');
                }
            }
        }
    }
    s
}

fn filter_throughput() {
    println!(
        "\n== language filter throughput (64 KiB chunks, {} MiB per case)",
        64
    );
    for (name, every) in [
        ("English only", None),
        ("English, 1% CJK", Some(100)),
        ("English, 10% CJK", Some(10)),
    ] {
        let text = corpus(64 * 1024, every);
        let mut f = ScriptFilter::new(Script::CJK);
        let reps = 1024;
        let t = Instant::now();
        let mut kept = 0;
        for _ in 0..reps {
            kept += f.push(std::hint::black_box(&text)).len();
        }
        let secs = t.elapsed().as_secs_f64();
        let mb = (text.len() * reps) as f64 / 1e6;
        println!(
            "{name:>18}: {:>8.1} MB/s  (removed {} chars, kept {kept} bytes)",
            mb / secs,
            f.removed()
        );
    }
    // Token-sized chunks, as the filter sees them while streaming.
    let text = corpus(1 << 20, Some(100));
    let pieces: Vec<&str> = split_tokens(&text, 4);
    let mut f = ScriptFilter::new(Script::CJK);
    let t = Instant::now();
    for _ in 0..16 {
        for p in &pieces {
            std::hint::black_box(f.push(p));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:>18}: {:>8.1} MB/s  ({} pieces of ~4 chars)",
        "streamed, 1% CJK",
        16.0 * text.len() as f64 / 1e6 / secs,
        pieces.len()
    );
}

/// Splits `text` into pieces of about `n` characters, on char boundaries.
fn split_tokens(text: &str, n: usize) -> Vec<&str> {
    let idx: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .step_by(n)
        .chain([text.len()])
        .collect();
    idx.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

fn sse_payload(content: &str) -> String {
    serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    .to_string()
}

fn fsm_per_token() {
    println!(
        "\n== stream pipeline, in process (SSE JSON parse + think splitter + filter + turn FSM)"
    );
    let counter: Arc<dyn TokenCounter> = Arc::new(Tiktoken::cl100k());
    let text = format!(
        "<think>{}</think>{}",
        corpus(4000, None),
        corpus(16000, Some(100))
    );
    let tokens = split_tokens(&text, 4);
    let payloads: Vec<String> = tokens.iter().map(|t| sse_payload(t)).collect();
    let request = ChatRequest {
        messages: vec![ChatMessage::new(Role::User, "q")],
        max_tokens: 8192,
        temperature: None,
        continue_final: false,
        thinking_off: false,
    };
    let cfg = TurnConfig {
        max_rounds: 3,
        think_start: ThinkStart::Outside,
        filter: Script::CJK.to_vec(),
        input_budget: 12288,
        continuation: anchorbot::llm::turn::ContinuationStyle::Instruction,
    };
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        let (mut turn, _) = Turn::start(request.clone(), cfg.clone(), counter.clone());
        for p in &payloads {
            for item in parse_chunk(p).unwrap() {
                std::hint::black_box(turn.handle(Input::Item(item)));
            }
        }
        std::hint::black_box(turn.handle(Input::Item(StreamItem::Finish(
            anchorbot::llm::FinishReason::Stop,
        ))));
    }
    let per = t.elapsed().as_secs_f64() / (reps * payloads.len()) as f64;
    println!(
        "  {} tokens per answer (~{} KB): {:.2} µs per token",
        payloads.len(),
        text.len() / 1000,
        per * 1e6
    );
}

async fn end_to_end_per_token() {
    println!("\n== stream pipeline over loopback HTTP (fake vLLM SSE server → App → platform)");
    let n_tokens = 4000;
    let tokens: Vec<String> = split_tokens(&corpus(n_tokens * 4, Some(100)), 4)
        .into_iter()
        .map(str::to_string)
        .collect();
    let toks = tokens.clone();
    let llm = FakeLlm::start(move |_| Reply::chunks(toks.clone(), Some("stop"))).await;

    // Raw: the HTTP client and SSE parser alone, consuming the same stream.
    let endpoint = OpenAiEndpoint::new(anchorbot::settings::Endpoint {
        url: llm.url.clone(),
        model: "fake-model".into(),
        ..Default::default()
    });
    let request = ChatRequest {
        messages: vec![ChatMessage::new(Role::User, "q")],
        max_tokens: 8192,
        temperature: None,
        continue_final: false,
        thinking_off: false,
    };
    let reps = 10;
    let endpoint = Arc::new(endpoint);
    // Warm up, then measure on a runtime worker, as the App's turns run.
    tokio::spawn(raw_stream(endpoint.clone(), request.clone(), 1))
        .await
        .unwrap();
    let raw = tokio::spawn(raw_stream(endpoint.clone(), request.clone(), reps))
        .await
        .unwrap()
        .as_secs_f64()
        / (reps * tokens.len()) as f64;

    // Full: the real App, one turn per conversation (store flush included).
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(&tmp.path().join("data"), &llm.url);
    s.reasoning.remote_tokenize = false;
    let app = start_app(s).await;
    app.sink
        .submit(message("warm", "warm", "x", "go"))
        .unwrap()
        .done()
        .await;
    let t = Instant::now();
    for i in 0..reps {
        app.sink
            .submit(message(&format!("B{i}"), &format!("b{i}"), "x", "go"))
            .unwrap()
            .done()
            .await;
    }
    let full = t.elapsed().as_secs_f64() / (reps * tokens.len()) as f64;
    app.shutdown().await;
    println!("  {} tokens per answer", tokens.len());
    println!("  HTTP + SSE parse only : {:.2} µs per token", raw * 1e6);
    println!("  full turn through App : {:.2} µs per token", full * 1e6);
    println!(
        "  pipeline overhead     : {:.2} µs per token",
        (full - raw) * 1e6
    );
}

/// Consumes `reps` streams with the HTTP client and SSE parser alone.
async fn raw_stream(endpoint: Arc<OpenAiEndpoint>, request: ChatRequest, reps: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..reps {
        let mut s = endpoint.stream(&request).await.unwrap();
        while let Some(item) = s.next().await {
            std::hint::black_box(item.unwrap());
        }
    }
    t.elapsed()
}

/// Renders a request the way a ChatML template (Qwen, the R1 Qwen distills) lays it out.
fn render(req: &Value) -> String {
    let mut s = String::new();
    for m in req["messages"].as_array().unwrap() {
        s.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m["role"].as_str().unwrap(),
            m["content"].as_str().unwrap()
        ));
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

fn counter() -> (Arc<Tiktoken>, &'static str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".models/qwen2.tiktoken");
    match Tiktoken::from_file(&path) {
        Ok(t) => (Arc::new(t), "Qwen2 tokenizer"),
        Err(_) => (
            Arc::new(Tiktoken::cl100k()),
            "cl100k (run .ci/fetch-tokenizers.sh for Qwen)",
        ),
    }
}

async fn prefix_stability() {
    println!("\n== prompt prefix stability, scripted 30-turn conversation");
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            let n = all_text(req).matches("Assistant:").count();
            return Reply::text(&format!(
                "SUMMARY: The team reviewed {n} points of the launch plan, agreed on owners and kept the budget at 40k.\nFACTS:\n- Launch is planned for May 3\n- Budget is 40k EUR\n- Ada owns the rollout plan"
            ));
        }
        let q = last_user(req);
        let n = q.len() % 7;
        // Answers of 150–400 tokens.
        Reply::text(&format!("Regarding {q}: {}", "we should check the rollout steps, the owners and the timeline in detail. ".repeat(12 + n * 4)))
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let app = start_app(settings(&tmp.path().join("data"), &llm.url)).await;
    for i in 0..30 {
        let q = format!(
            "Point {i}: what about {} for the launch?",
            ["pricing", "hiring", "the venue", "QA", "marketing"][i % 5]
        );
        app.sink
            .submit(message("P", &format!("p{i}"), "ada", &q))
            .unwrap()
            .done()
            .await;
        // People pause between messages; background summarization lands in between.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    app.shutdown().await;
    let (tok, name) = counter();
    let reqs = llm.turn_requests();
    let summaries = llm.requests().iter().filter(|r| is_summary(r)).count();
    let mut prev: Option<Vec<u32>> = None;
    let mut shares = Vec::new();
    let (mut shared_total, mut tokens_total) = (0usize, 0usize);
    for r in &reqs {
        let ids = tok_ids(&tok, &render(r));
        if let Some(p) = &prev {
            let common = p.iter().zip(&ids).take_while(|(a, b)| a == b).count();
            shares.push(common as f64 / ids.len() as f64);
            shared_total += common;
            tokens_total += ids.len();
        }
        prev = Some(ids);
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    let min = shares.iter().cloned().fold(1.0, f64::min);
    println!(
        "  tokenizer: {name}; {} turns, {summaries} summarizations",
        reqs.len()
    );
    println!("  mean per-turn prefix share : {:.1}%", mean * 100.0);
    println!(
        "  token-weighted prefix share: {:.1}%",
        100.0 * shared_total as f64 / tokens_total as f64
    );
    println!("  worst turn                 : {:.1}%", min * 100.0);
}

fn tok_ids(t: &Tiktoken, text: &str) -> Vec<u32> {
    t.encode(text)
}

fn tokenizer_gap() {
    println!("\n== cl100k estimate vs the Qwen tokenizer on real text");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".models/qwen2.tiktoken");
    let Ok(qwen) = Tiktoken::from_file(&path) else {
        println!("  skipped: run .ci/fetch-tokenizers.sh");
        return;
    };
    let cl = Tiktoken::cl100k();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read_all = |dir: &str, ext: &str| {
        let mut s = String::new();
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == ext) {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    };
    let mut cases = vec![
        ("Rust source (src/*.rs)", read_all("src", "rs")),
        (
            "Markdown (README.md)",
            std::fs::read_to_string(root.join("README.md")).unwrap(),
        ),
        (
            "TOML config",
            std::fs::read_to_string(root.join("anchorbot.example.toml")).unwrap(),
        ),
    ];
    if let Ok(gpl) = std::fs::read_to_string("/usr/share/common-licenses/GPL-3") {
        cases.insert(0, ("English prose (GPL-3 text)", gpl));
    }
    if let Ok(de) = std::fs::read_to_string("/usr/share/common-licenses/Apache-2.0") {
        cases.push(("English legal (Apache-2.0)", de));
    }
    // Real CJK text, from .ci/fetch-cjk-corpus.sh (Debian's translated man pages).
    for (name, file) in [
        ("Chinese man pages", "zh_CN.txt"),
        ("Japanese man pages", "ja.txt"),
    ] {
        match std::fs::read_to_string(root.join(".models/corpus").join(file)) {
            Ok(text) => cases.push((name, text)),
            Err(_) => println!("  ({name} skipped: run .ci/fetch-cjk-corpus.sh)"),
        }
    }
    println!(
        "  {:<28} {:>9} {:>9} {:>8}",
        "text", "cl100k", "Qwen2", "Qwen/cl"
    );
    let (mut c_all, mut q_all) = (0, 0);
    for (name, text) in &cases {
        let c = cl.count(text);
        let q = qwen.count(text);
        c_all += c;
        q_all += q;
        println!("  {name:<28} {c:>9} {q:>9} {:>7.3}x", q as f64 / c as f64);
    }
    println!(
        "  {:<28} {c_all:>9} {q_all:>9} {:>7.3}x",
        "all",
        q_all as f64 / c_all as f64
    );
}
