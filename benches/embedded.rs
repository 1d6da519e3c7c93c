//! Benchmark of the embedded model (SmolLM2-135M-Instruct, Q4_1, run in this process with
//! candle), printing the figures BENCHMARKS.md reports: load time, first-token latency for a
//! short and a long prompt, and decode speed in tokens per second.
//!
//! Run: `cargo bench --bench embedded` (after `.ci/setup.sh`, which puts the model in
//! `.models/`).

use std::path::Path;
use std::time::{Duration, Instant};

use anchorbot::llm::embedded::EmbeddedModel;
use anchorbot::llm::{ChatBackend, ChatMessage, ChatRequest, Role, StreamItem};
use futures_util::StreamExt;

/// One measured completion.
struct Run {
    prompt_tokens: usize,
    first_token: Duration,
    tokens: usize,
    decode: Duration,
}

async fn measure(model: &EmbeddedModel, question: &str, max_tokens: usize) -> Run {
    let request = ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a helpful assistant."),
            ChatMessage::new(Role::User, question),
        ],
        max_tokens,
        ..ChatRequest::default()
    };
    let prompt_tokens = model.count_prompt(&request).await.unwrap_or(0);
    let started = Instant::now();
    let mut stream = model.stream(&request).await.expect("the model streams");
    let mut first = None;
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item.expect("no generation error") {
            StreamItem::Content(c) => {
                first.get_or_insert_with(|| started.elapsed());
                text.push_str(&c);
            }
            StreamItem::Reasoning(_) => {}
            StreamItem::Finish(_) => break,
        }
    }
    let total = started.elapsed();
    let first_token = first.unwrap_or(total);
    // Tokens generated, counted by the model's own tokenizer through a prompt of the answer.
    let tokens = model
        .count_prompt(&ChatRequest {
            messages: vec![ChatMessage::new(Role::Assistant, text.clone())],
            ..ChatRequest::default()
        })
        .await
        .unwrap_or(0)
        .saturating_sub(5);
    Run {
        prompt_tokens,
        first_token,
        tokens,
        decode: total - first_token,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let started = Instant::now();
    let model = EmbeddedModel::load(&path).expect("run .ci/setup.sh for the model");
    println!("load: {:.2} s", started.elapsed().as_secs_f64());
    rt.block_on(async {
        // Warm-up: the first run pays for page faults on the weights.
        measure(&model, "Say hello.", 8).await;
        let long_context = "The billing service sends invoices, retries failed payments and \
            keeps an audit trail of every change. "
            .repeat(30);
        for (label, question) in [
            ("short prompt", "Explain what a billing service does.".to_string()),
            (
                "long prompt",
                format!("{long_context}\nExplain what a billing service does."),
            ),
        ] {
            let mut firsts = Vec::new();
            let mut rates = Vec::new();
            let mut prompt = 0;
            for _ in 0..3 {
                let run = measure(&model, &question, 128).await;
                prompt = run.prompt_tokens;
                firsts.push(run.first_token.as_secs_f64());
                if run.tokens > 1 && !run.decode.is_zero() {
                    rates.push((run.tokens - 1) as f64 / run.decode.as_secs_f64());
                }
            }
            firsts.sort_by(f64::total_cmp);
            rates.sort_by(f64::total_cmp);
            println!(
                "{label} ({prompt} prompt tokens): first token median {:.2} s; decode median {:.1} tokens/s (3 runs, up to 128 tokens)",
                firsts[1],
                rates.get(rates.len() / 2).copied().unwrap_or(0.0)
            );
        }
    });
}
