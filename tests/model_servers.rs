//! The README's "Model servers" table, row by row, through the real App against fakes that
//! follow each server's documented behaviour (`anchorbot_fakes::model_servers`): where the
//! reasoning arrives, how `continuation = "auto"` resumes a cut answer on the wire, whether
//! prompts are counted exactly, and which context length the budgets follow.

mod common;

use anchorbot::llm::turn::CONTINUE_PROMPT;
use anchorbot_fakes::model_servers::{Kind, ModelServer, Setup};
use anchorbot_platform::ConversationKey;
use common::*;
use serde_json::Value;

const ANSWER: &str = "Billing services record what each customer uses. They turn that usage into \
invoices every month. They collect the payments and chase the late ones.";

const REASONING: &str = "The user asks about billing services. ";

/// How a continuation round must look on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    /// vLLM's flags with the partial answer as the final assistant message.
    Prefill,
    /// The partial answer as the final assistant message and nothing else.
    Resume,
    /// The partial answer, then a user message asking to continue.
    Instruction,
}

/// What a row of the table promises.
struct Row {
    setup: Setup,
    wire: Wire,
    /// The server counts prompts exactly (vLLM's `/tokenize`; llama-server's
    /// `/apply-template` and `/tokenize`).
    exact_counts: bool,
    /// The input budget `/status` must show with max_input 6000 and max_output 16.
    input_budget: usize,
}

fn key(channel: &str) -> ConversationKey {
    ConversationKey::new("test", Some("W1"), channel, None).unwrap()
}

fn sentences(text: &str) -> Vec<String> {
    text.split_inclusive('.')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Runs one question whose answer is cut twice and checks the row's promises.
async fn check(row: Row) {
    let kind = row.setup.kind;
    let reasoning = row.setup.reasoning.is_some();
    let model = row.setup.model.clone();
    let server = ModelServer::start(row.setup).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = settings(&data, &server.url);
    s.reasoning.model = model;
    s.max_input_tokens = 6000;
    // 25 words at 10 per round: cut twice, finished in the third round.
    s.max_output_tokens = 10;
    s.max_rounds = 3;
    let app = start_app(s).await;
    app.sink
        .submit(message("S", "q1", "ann", "What does a billing service do?"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("S", "st", "ann", "/status"))
        .unwrap()
        .done()
        .await;

    // The answer: every sentence once, in order, and never the instruction.
    let finals = app.platform.finals("S");
    assert_eq!(finals.len(), 1, "{kind:?}: {finals:?}");
    assert_eq!(sentences(&finals[0]), sentences(ANSWER), "{kind:?}");
    assert!(!finals[0].contains("cut off"), "{kind:?}: {}", finals[0]);

    // The continuation rounds, on the wire.
    let chats = server.chats();
    let turn: Vec<&Value> = chats
        .iter()
        .filter(|c| c["stream"] == Value::Bool(true))
        .collect();
    assert_eq!(
        turn.len(),
        3,
        "{kind:?}: one first round and two continuations"
    );
    for c in &turn[1..] {
        let messages = c["messages"].as_array().unwrap();
        let last = messages.last().unwrap();
        let flags = (
            c.get("continue_final_message").cloned(),
            c.get("add_generation_prompt").cloned(),
        );
        match row.wire {
            Wire::Prefill => {
                assert_eq!(last["role"], "assistant", "{kind:?}");
                assert_eq!(
                    flags,
                    (Some(Value::Bool(true)), Some(Value::Bool(false))),
                    "{kind:?}"
                );
            }
            Wire::Resume => {
                assert_eq!(last["role"], "assistant", "{kind:?}");
                assert_eq!(flags, (None, None), "{kind:?}: no vLLM flag");
                assert!(
                    messages.iter().all(|m| m["content"] != CONTINUE_PROMPT),
                    "{kind:?}: no instruction"
                );
            }
            Wire::Instruction => {
                assert_eq!(last["role"], "user", "{kind:?}");
                assert_eq!(last["content"], CONTINUE_PROMPT, "{kind:?}");
                assert_eq!(flags, (None, None), "{kind:?}");
            }
        }
    }

    // Exact counts only where the server counts chat prompts: vLLM's `/tokenize` with the
    // messages, llama-server's `/tokenize` of what `/apply-template` rendered.
    let requests = server.requests();
    let rendered = requests.iter().any(|r| r.route == "POST /apply-template");
    let counted = requests.iter().any(|r| {
        r.route == "POST /tokenize"
            && (r.body.get("messages").is_some()
                || (rendered
                    && r.body["content"]
                        .as_str()
                        .is_some_and(|c| c.contains("<|im_start|>"))))
    });
    assert_eq!(counted, row.exact_counts, "{kind:?}: /tokenize");

    // Reasoning arrives apart, in the server's own field, and is never part of the answer.
    let shown = app
        .platform
        .reasoning
        .lock()
        .unwrap()
        .get("S")
        .cloned()
        .unwrap_or_default();
    if reasoning {
        assert_eq!(shown.trim(), REASONING.trim(), "{kind:?}");
    } else {
        assert!(shown.is_empty(), "{kind:?}: {shown}");
    }

    // The budget follows the context the server serves.
    let status = app
        .platform
        .messages_in("S")
        .into_iter()
        .find(|m| m.contains("Token budget"))
        .or_else(|| {
            app.platform.all().iter().find_map(|r| {
                let text = format!("{r:?}");
                text.contains("Token budget").then_some(text)
            })
        })
        .expect("a /status reply");
    let want = format!("of max_input_tokens {}", row.input_budget);
    assert!(status.contains(&want), "{kind:?}: want {want} in {status}");

    app.shutdown().await;
    let store = reopen_store(&data).await;
    let turns = store.anchor(&key("S")).await.unwrap().turns;
    assert_eq!(turns.len(), 1, "{kind:?}");
    assert_eq!(sentences(&turns[0].answer), sentences(ANSWER), "{kind:?}");
    assert!(!turns[0].answer.contains(REASONING.trim()), "{kind:?}");
}

fn setup(kind: Kind, model: &str) -> Setup {
    let mut s = Setup::new(kind, model, ANSWER);
    s.reasoning = Some(REASONING.into());
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn vllm_resumes_with_its_flags_counts_exactly_and_reports_max_model_len() {
    let mut s = setup(Kind::Vllm, "Qwen/Qwen3-8B");
    s.context = Some(3000);
    check(Row {
        setup: s,
        wire: Wire::Prefill,
        exact_counts: true,
        input_budget: 2990,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sglang_resumes_with_the_same_flags_and_reports_max_model_len() {
    let mut s = setup(Kind::Sglang, "Qwen/Qwen3-8B");
    s.context = Some(3000);
    check(Row {
        setup: s,
        wire: Wire::Prefill,
        exact_counts: false,
        input_budget: 2990,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llama_server_resumes_a_final_assistant_message_and_serves_props_n_ctx() {
    let mut s = setup(Kind::LlamaServer, "SmolLM2-135M-Instruct-Q4_1");
    s.context = Some(2048);
    check(Row {
        setup: s,
        wire: Wire::Resume,
        exact_counts: true,
        input_budget: 2038,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn llama_cpp_python_gets_the_instruction_and_the_settings_budget() {
    let mut s = Setup::new(Kind::LlamaCppPython, "smollm2-135m-instruct", ANSWER);
    s.context = Some(4096); // --n_ctx: not reported anywhere
    check(Row {
        setup: s,
        wire: Wire::Instruction,
        exact_counts: false,
        input_budget: 6000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_resumes_and_follows_num_ctx_not_the_trained_maximum() {
    let mut s = setup(Kind::Ollama, "qwen2.5:0.5b");
    s.context = Some(3000);
    check(Row {
        setup: s,
        wire: Wire::Resume,
        exact_counts: false,
        input_budget: 2990,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_without_num_ctx_follows_the_loaded_context_then_its_default() {
    let mut s = setup(Kind::Ollama, "qwen2.5:0.5b");
    s.ollama_loaded = Some(5000);
    check(Row {
        setup: s,
        wire: Wire::Resume,
        exact_counts: false,
        input_budget: 4990,
    })
    .await;
    let s = setup(Kind::Ollama, "qwen2.5:0.5b");
    check(Row {
        setup: s,
        wire: Wire::Resume,
        exact_counts: false,
        input_budget: 4086,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lm_studio_gets_the_instruction_and_follows_its_loaded_context() {
    let mut s = setup(Kind::LmStudio, "qwen2.5-0.5b-instruct");
    s.context = Some(3000);
    check(Row {
        setup: s,
        wire: Wire::Instruction,
        exact_counts: false,
        input_budget: 2990,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn continuation_by_url_overrides_the_role_setting() {
    // The role says "instruction", the setting for this server's URL says "resume": with
    // every server of the role resuming, the turn resumes, with no vLLM flag.
    let server = ModelServer::start(setup(Kind::Ollama, "qwen2.5:0.5b")).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = settings(&data, &server.url);
    s.reasoning.model = "qwen2.5:0.5b".into();
    s.reasoning.continuation = anchorbot::settings::ContinuationMode::Instruction;
    s.reasoning.continuation_by_url.insert(
        server.url.clone(),
        anchorbot::settings::ContinuationMode::Resume,
    );
    s.max_output_tokens = 10;
    let app = start_app(s).await;
    app.sink
        .submit(message("S", "q1", "ann", "What does a billing service do?"))
        .unwrap()
        .done()
        .await;
    let chats = server.chats();
    assert!(chats.len() >= 2, "{chats:?}");
    for c in &chats[1..] {
        let last = c["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "assistant");
        assert!(c.get("continue_final_message").is_none());
    }
    assert_eq!(sentences(&app.platform.finals("S")[0]), sentences(ANSWER));
    app.shutdown().await;
}

/// `doctor`'s check of the reasoning endpoint against `setup`, with `model` configured and the
/// default budgets (12,288 + 4,096).
async fn doctor_reasoning(setup: Setup, model: &str) -> anchorbot::doctor::Check {
    let server = ModelServer::start(setup).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(&tmp.path().join("data"), &server.url);
    s.reasoning.model = model.into();
    s.max_input_tokens = 12288;
    s.max_output_tokens = 4096;
    anchorbot::doctor::run(&s)
        .await
        .into_iter()
        .find(|c| c.name.starts_with("reasoning endpoint"))
        .expect("a reasoning endpoint check")
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_the_documented_cpu_set_up_and_says_what_to_set() {
    // .ci/local-llm.sh: llama-cpp-python serving SmolLM2 as smollm2-135m-instruct, --n_ctx 4096.
    let setup = Setup::new(Kind::LlamaCppPython, "smollm2-135m-instruct", ANSWER);
    let check = doctor_reasoning(setup, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B").await;
    assert!(check.state.is_ok(), "{}", check.detail);
    let d = &check.detail;
    assert!(d.contains("llama-cpp-python"), "{d}");
    assert!(d.contains("under any name"), "{d}");
    assert!(d.contains("the settings apply"), "{d}");
    assert!(
        d.contains("set max_input_tokens = 3072 and max_output_tokens = 1024"),
        "{d}"
    );
    assert!(d.contains("continued by instruction"), "{d}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_served_model_and_the_exact_budgets() {
    let mut setup = Setup::new(Kind::LlamaServer, "SmolLM2-135M-Instruct-Q4_1", ANSWER);
    setup.context = Some(4096);
    let check = doctor_reasoning(setup, "whatever").await;
    assert!(check.state.is_ok(), "{}", check.detail);
    let d = &check.detail;
    assert!(d.contains("context 4096 (n_ctx in /props)"), "{d}");
    assert!(
        d.contains("set max_input_tokens = 3072 and max_output_tokens = 1024 (context 4096)"),
        "{d}"
    );
    assert!(d.contains("resumed in place"), "{d}");

    // Ollama answers only the models it has: the check fails and names the value to set.
    let mut setup = Setup::new(Kind::Ollama, "qwen2.5:0.5b", ANSWER);
    setup.context = Some(8192);
    let check = doctor_reasoning(setup, "qwen2.5:7b").await;
    assert!(!check.state.is_ok(), "{}", check.detail);
    let d = &check.detail;
    assert!(
        d.contains(
            "set reasoning.model = \"qwen2.5:0.5b\" (or ANCHORBOT_REASONING_MODEL=qwen2.5:0.5b)"
        ),
        "{d}"
    );
    assert!(
        d.contains("context 8192 (the model's num_ctx in /api/show)"),
        "{d}"
    );
}

#[test]
fn continuation_by_url_parses_from_toml_and_plain_fallbacks_still_do() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("anchorbot.toml");
    std::fs::write(
        &path,
        r#"
[reasoning]
url = "http://vllm:8005/v1"
fallback_urls = ["http://ollama:11434/v1", "http://llamacpp:8080/v1"]
continuation = "instruction"
continuation_by_url = { "http://ollama:11434/v1/" = "resume", "http://vllm:8005/v1" = "prefill" }
"#,
    )
    .unwrap();
    let s = anchorbot::Settings::load(Some(&path)).unwrap();
    use anchorbot::settings::ContinuationMode::*;
    let modes: Vec<_> = s
        .reasoning
        .with_fallbacks()
        .iter()
        .map(|e| (e.url.clone(), e.continuation))
        .collect();
    assert_eq!(
        modes,
        vec![
            ("http://vllm:8005/v1".to_string(), Prefill),
            ("http://ollama:11434/v1".to_string(), Resume),
            ("http://llamacpp:8080/v1".to_string(), Instruction),
        ]
    );
}
