//! End-to-end runs of the real `anchorbot` binary against a local OpenAI-compatible SSE server:
//! memory across turns and restarts, commands, budgets, summarization and a dead endpoint.

mod common;

use std::process::Stdio;

use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

async fn status_json(dir: &std::path::Path, url: &str, conv: &str) -> Value {
    let mut cmd = anchorbot(dir, url);
    cmd.args(["status", "--conversation", conv, "--json"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "status failed: {err}");
    serde_json::from_str(&out).unwrap()
}

async fn ask(dir: &std::path::Path, url: &str, conv: &str, q: &str) -> (bool, String, String) {
    let mut cmd = anchorbot(dir, url);
    cmd.args(["ask", "--conversation", conv, q]);
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_turns_remember_across_process_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;

    let (ok, out, err) = ask(
        &dir,
        &llm.url,
        "team",
        "My name is Ada and our budget is 10k",
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Answer to <you: My name is Ada and our budget is 10k>"),
        "{out}"
    );

    // A new process: the anchor must come back from disk.
    let (ok, out, err) = ask(&dir, &llm.url, "team", "What is our budget?").await;
    assert!(ok, "{err}");
    assert!(out.contains("What is our budget?"));

    let reqs = llm.turn_requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1]["messages"].as_array().unwrap();
    // system, turn-1 user, turn-1 assistant, turn-2 user
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert_eq!(msgs[1]["role"], "user");
    assert_eq!(
        msgs[1]["content"],
        "you: My name is Ada and our budget is 10k"
    );
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(
        msgs[2]["content"],
        "Answer to <you: My name is Ada and our budget is 10k>"
    );
    assert_eq!(reqs[1]["stream"], true);
    assert_eq!(reqs[1]["max_tokens"], 4096);
    assert_eq!(reqs[1]["model"], "fake-model");
    assert!(system_of(&reqs[1]).contains("answer in English"));

    let st = status_json(&dir, &llm.url, "team").await;
    assert_eq!(st["turns"], 2);
    assert_eq!(st["recent_turns"], 2);
    assert_eq!(st["conversation"], "console:team");

    // Another conversation knows nothing of this one.
    let st = status_json(&dir, &llm.url, "other").await;
    assert_eq!(st["turns"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_streams_answers_handles_commands_and_remembers_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;

    let chat = |input: &'static str| {
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.args(["chat", "--conversation", "c1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        async move {
            stdin.write_all(input.as_bytes()).await.unwrap();
            drop(stdin);
            let out =
                tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                    .await
                    .unwrap()
                    .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };

    let out = chat("hello there\n\n   \nsecond message\n/status\n/frobnicate\n").await;
    assert!(out.contains("Answer to <you: hello there>"), "{out}");
    assert!(out.contains("Answer to <you: second message>"), "{out}");
    assert!(out.contains("Turns: 2 (2 recent"), "{out}");
    assert!(out.contains("Unknown command /frobnicate"), "{out}");
    assert!(
        out.contains("/clear"),
        "unknown command must print help: {out}"
    );
    // Blank lines were ignored: exactly two model calls.
    assert_eq!(llm.turn_requests().len(), 2);

    // Restart: the third turn's prompt carries the first two.
    let out = chat("third\n").await;
    assert!(out.contains("Answer to <you: third>"));
    let reqs = llm.turn_requests();
    let text = all_text(&reqs[2]);
    assert!(
        text.contains("you: hello there") && text.contains("you: second message"),
        "{text}"
    );

    // /clear resets the conversation: /status then shows 0 turns, and the next prompt is bare.
    let out = chat("/clear\n/status\nfresh start\n").await;
    assert!(out.contains("Cleared this conversation: 3 turns"), "{out}");
    assert!(out.contains("Turns: 0 (0 recent"), "{out}");
    let reqs = llm.turn_requests();
    let last = reqs.last().unwrap();
    assert_eq!(last["messages"].as_array().unwrap().len(), 2, "{last}");
    assert!(!all_text(last).contains("hello there"));
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_command_resets_the_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    assert!(
        ask(&dir, &llm.url, "x", "remember the word pineapple")
            .await
            .0
    );
    assert!(ask(&dir, &llm.url, "y", "unrelated").await.0);
    assert_eq!(status_json(&dir, &llm.url, "x").await["turns"], 1);

    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["clear", "--conversation", "x"]);
    let (ok, out, _) = run(cmd).await;
    assert!(ok);
    assert!(out.contains("Cleared this conversation: 1 turn,"), "{out}");
    assert_eq!(status_json(&dir, &llm.url, "x").await["turns"], 0);
    // Clearing x leaves y alone.
    assert_eq!(status_json(&dir, &llm.url, "y").await["turns"], 1);

    assert!(ask(&dir, &llm.url, "x", "what word?").await.0);
    let last = llm.turn_requests().pop().unwrap();
    assert!(!all_text(&last).contains("pineapple"));
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_fails_clearly_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let url = closed_port_url();
    let (ok, _out, err) = ask(&dir, &url, "down", "anyone there?").await;
    assert!(!ok, "ask must exit non-zero");
    assert!(err.contains("cannot connect to the model server"), "{err}");
    assert!(err.contains(&url), "the error names the endpoint: {err}");
    let st = status_json(&dir, &url, "down").await;
    assert_eq!(st["turns"], 0);
    assert_eq!(st["recent_turns"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_cut_mid_answer_or_server_error_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        let q = last_user(req);
        if q.contains("cut") {
            let mut r = Reply::text("half an ans");
            r.finish = None;
            r
        } else {
            Reply::status(500)
        }
    })
    .await;
    let (ok, out, err) = ask(&dir, &llm.url, "c", "please cut").await;
    assert!(!ok);
    assert!(
        out.contains("half an ans"),
        "the partial text is shown: {out}"
    );
    assert!(err.contains("broke off"), "{err}");
    // The partial answer is for the reader (stdout), not for the log or the error line.
    assert!(!err.contains("half an ans"), "{err}");
    let (ok, _, err) = ask(&dir, &llm.url, "c", "server error").await;
    assert!(!ok);
    assert!(err.contains("HTTP 500"), "{err}");
    assert_eq!(status_json(&dir, &llm.url, "c").await["turns"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn input_over_budget_is_cut_oldest_first_keeping_system_and_query() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // The summarizer fails, so the history outgrows the prompt and has to be cut.
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            return Reply::status(500);
        }
        let q = last_user(req);
        Reply::text(&format!(
            "{q} {}",
            "filler words in a long answer ".repeat(8)
        ))
    })
    .await;
    let budget = "600";
    for i in 0..8 {
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.env("ANCHORBOT_MAX_INPUT_TOKENS", budget).args([
            "ask",
            "--conversation",
            "b",
            &format!("question number {i}"),
        ]);
        assert!(run(cmd).await.0);
    }
    let reqs = llm.turn_requests();
    let last = reqs.last().unwrap();
    let msgs = last["messages"].as_array().unwrap();
    // The system prompt and the query are intact.
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(system_of(last), system_of(&reqs[0]));
    assert_eq!(last_user(last), "you: question number 7");
    // Older turns were dropped, newest kept: turn 6 is present, turn 0 is not.
    assert!(
        msgs.len() < 2 + 7 * 2,
        "nothing was cut: {} messages",
        msgs.len()
    );
    let text = all_text(last);
    assert!(text.contains("you: question number 6"));
    assert!(!text.contains("you: question number 0"));
    // The estimate stays within the budget.
    let st = status_json(&dir, &llm.url, "b").await;
    assert!(st["last_prompt_tokens"].as_u64().unwrap() <= 600, "{st}");
    assert_eq!(st["turns"], 8, "cutting the prompt never deletes memory");

    // A query that alone is over budget gets told how much to cut, and the model is not called.
    let before = llm.requests().len();
    let huge = "lorem ipsum dolor sit amet ".repeat(300);
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.env("ANCHORBOT_MAX_INPUT_TOKENS", budget)
        .args(["ask", "--conversation", "b", &huge]);
    let (ok, out, err) = run(cmd).await;
    assert!(!ok);
    // The user sees the reason on stderr; stdout is for answers only.
    assert!(err.contains("cut about") && err.contains("tokens"), "{err}");
    assert_eq!(out, "", "no answer, nothing on stdout");
    assert_eq!(llm.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn summarization_triggers_and_keeps_key_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let summaries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = summaries.clone();
    let llm = FakeLlm::start(move |req| {
        if is_summary(req) {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i == 0 {
                Reply::text("SUMMARY: Ada set up project Bluebird.\nFACTS:\n- The project codename is Bluebird\n- Ada owns the budget\n")
            } else {
                // The second pass forgets the earlier facts; they must still be kept.
                Reply::text("SUMMARY: Later they discussed launch dates.\nFACTS:\n- Launch is on May 3\n- ada owns the budget.\n")
            }
        } else {
            Reply::text(&format!("Noted: {} {}", last_user(req), "and some detail ".repeat(10)))
        }
    })
    .await;
    let ask_small = |q: String| {
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.env("ANCHORBOT_RECENT_TURNS_TOKENS", "300")
            .args(["ask", "--conversation", "s", &q]);
        run(cmd)
    };
    let mut i = 0;
    while summaries.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(i < 10, "summarization never triggered");
        let (ok, _, err) = ask_small(format!("message {i}")).await;
        assert!(ok, "{err}");
        i += 1;
    }
    let st = status_json(&dir, &llm.url, "s").await;
    assert_eq!(st["summaries"], 1);
    assert_eq!(st["turns"].as_u64().unwrap(), i as u64);
    assert!(st["recent_turns"].as_u64().unwrap() < i as u64);
    let facts: Vec<String> = serde_json::from_value(st["key_facts"].clone()).unwrap();
    assert_eq!(
        facts,
        vec!["The project codename is Bluebird", "Ada owns the budget"]
    );

    // The summarization request carried the oldest turn verbatim.
    let sreq = llm.requests().into_iter().find(is_summary).unwrap();
    assert!(all_text(&sreq).contains("you: message 0"));

    // The next turn's system prompt carries summary and facts; the folded turn is gone.
    assert!(ask_small("what is the codename?".into()).await.0);
    let last = llm.turn_requests().pop().unwrap();
    let sys = system_of(&last);
    assert!(sys.contains("Ada set up project Bluebird."), "{sys}");
    assert!(sys.contains("- The project codename is Bluebird"), "{sys}");
    assert!(!all_text(&last).contains("you: message 0\n"));

    // Keep going until a second summarization: old facts survive, duplicates are merged.
    let mut j = 0;
    while summaries.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(j < 10, "second summarization never triggered");
        assert!(ask_small(format!("later {j}")).await.0);
        j += 1;
    }
    let st = status_json(&dir, &llm.url, "s").await;
    let facts: Vec<String> = serde_json::from_value(st["key_facts"].clone()).unwrap();
    assert_eq!(
        facts,
        vec![
            "The project codename is Bluebird",
            "Ada owns the budget",
            "Launch is on May 3"
        ]
    );
    assert_eq!(st["summaries"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_input_budget_folds_turns_before_truncation_would_drop_them() {
    // Only max_input_tokens is lowered (a small-context server); recent_turns_tokens keeps its
    // default of 6144, which alone would let turns fall out of the prompt unsummarized.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            Reply::text("SUMMARY: Ada named the project Bluebird.\nFACTS:\n- The project codename is Bluebird\n")
        } else {
            Reply::text(&format!("Noted: {} {}", last_user(req), "and some detail ".repeat(10)))
        }
    })
    .await;
    let mut i = 0;
    loop {
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.env("ANCHORBOT_MAX_INPUT_TOKENS", "700").args([
            "ask",
            "--conversation",
            "small",
            &format!("message {i}"),
        ]);
        let (ok, _, err) = run(cmd).await;
        assert!(ok, "{err}");
        i += 1;
        if llm.requests().iter().any(is_summary) {
            break;
        }
        assert!(i < 12, "summarization never triggered");
    }
    assert!(i >= 3, "folded after {i} turns");
    // Every turn before the fold reached the model whole: nothing was dropped unread.
    for (n, req) in llm.turn_requests().iter().enumerate() {
        let text = all_text(req);
        for k in 0..n {
            assert!(
                text.contains(&format!("you: message {k}")),
                "turn {n} lost message {k}"
            );
        }
    }
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.env("ANCHORBOT_MAX_INPUT_TOKENS", "700").args([
        "status",
        "--conversation",
        "small",
        "--json",
    ]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let budget = st["recent_turns_budget"].as_u64().unwrap();
    assert!(budget > 0 && budget < 700 / 2, "{st}");
    assert_eq!(st["summaries"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_fails_to_open_is_reported_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    // Not a sled database: garbage where its config lives.
    std::fs::write(dir.join("conf"), b"\x00\x01 not a sled config").unwrap();
    std::fs::write(dir.join("db"), b"garbage bytes that are not a log").unwrap();
    let before_db = std::fs::read(dir.join("db")).unwrap();
    let (ok, _, err) = ask(&dir, &closed_port_url(), "z", "hi").await;
    assert!(!ok);
    assert!(err.contains("cannot open the store"), "{err}");
    assert!(err.contains("left untouched"), "{err}");
    assert_eq!(std::fs::read(dir.join("db")).unwrap(), before_db);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_endpoints_and_models() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.env("ANCHORBOT_REASONING_API_KEY", "sk-top-secret")
        .arg("doctor");
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("serves: fake-model") && out.contains("16384"),
        "{out}"
    );
    assert!(out.contains("writable"));
    assert!(!out.contains("sk-top-secret") && !err.contains("sk-top-secret"));

    let mut cmd = anchorbot(&dir, &closed_port_url());
    cmd.arg("doctor");
    let (ok, out, _) = run(cmd).await;
    assert!(!ok);
    assert!(out.contains("FAIL"), "{out}");

    // A server that does not report its context (llama.cpp), and no vision server: doctor says
    // what that means for the budgets and for scans.
    let plain = FakeLlm::start_with(None, None, echo).await;
    let mut cmd = anchorbot(&dir, &plain.url);
    cmd.env("ANCHORBOT_VISION_URL", closed_port_url())
        .env("ANCHORBOT_MAX_INPUT_TOKENS", "3000")
        .env("ANCHORBOT_MAX_OUTPUT_TOKENS", "500")
        .arg("doctor");
    let (ok, out, _) = run(cmd).await;
    assert!(
        out.contains("does not report its context length")
            && out.contains("keep max_input_tokens + max_output_tokens (3500) within"),
        "{out}"
    );
    // Tesseract is installed here (.ci/setup.sh): scans are still read, so a missing vision
    // endpoint is a warning and doctor passes.
    let vision = out.lines().find(|l| l.contains("vision endpoint")).unwrap();
    assert!(
        vision.starts_with("[warn]") && vision.contains("read with tesseract meanwhile"),
        "{vision}"
    );
    assert!(
        ok,
        "a missing vision endpoint alone must not fail doctor:\n{out}"
    );
    // Settings are printed as written, not as the f64 nearest to the f32.
    assert!(out.contains("\nlexical_bonus = 0.05\n"), "{out}");
    assert!(out.contains("\nlexical_weight = 1.0\n"), "{out}");
}

/// A directory on PATH holding only the PDF tools doctor requires, so tesseract is missing.
fn path_without_tesseract(root: &std::path::Path) -> std::path::PathBuf {
    let bin = root.join("bin-no-tesseract");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["pdftotext", "pdftoppm"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not installed (run .ci/setup.sh)"));
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_on_a_missing_vision_endpoint_without_tesseract() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.env("ANCHORBOT_VISION_URL", closed_port_url())
        .env("PATH", path_without_tesseract(tmp.path()))
        .arg("doctor");
    let (ok, out, _) = run(cmd).await;
    let vision = out.lines().find(|l| l.contains("vision endpoint")).unwrap();
    assert!(
        vision.starts_with("[FAIL]") && vision.contains("cannot be read until it is up"),
        "{vision}"
    );
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("[FAIL]")).collect();
    assert_eq!(fails, [vision], "only the vision endpoint fails:\n{out}");
    assert!(!ok, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reasoning_is_shown_only_on_request_and_never_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(|_| {
        Reply::chunks(
            vec!["secret plan</th".into(), "ink>The answer.".into()],
            Some("stop"),
        )
    })
    .await;
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.env("ANCHORBOT_REASONING_MODEL", "deepseek-r1-distill")
        .args(["ask", "--conversation", "r", "--show-reasoning", "q1"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "The answer.");
    assert!(err.contains("secret plan"), "{err}");
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.env("ANCHORBOT_REASONING_MODEL", "deepseek-r1-distill")
        .args(["ask", "--conversation", "r", "q2"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok);
    assert_eq!(out.trim(), "The answer.");
    assert!(!err.contains("secret plan"));
    // The stored turns hold answers only; the second prompt carries no reasoning.
    let last = llm.turn_requests().pop().unwrap();
    assert!(!all_text(&last).contains("secret plan"));
    assert!(all_text(&last).contains("The answer."));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_any_platform_credentials_names_the_settings_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.arg("run");
    let (ok, _, err) = run(cmd).await;
    assert!(!ok);
    assert!(
        err.contains("SLACK_BOT_TOKEN") && err.contains("SLACK_APP_TOKEN"),
        "{err}"
    );
    // A token alone is not enough to receive events: say what else is needed.
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.arg("run").env("SLACK_BOT_TOKEN", "xoxb-secret-123");
    let (ok, out, err) = run(cmd).await;
    assert!(!ok);
    assert!(err.contains("SLACK_APP_TOKEN"), "{err}");
    assert!(!err.contains("xoxb-secret-123") && !out.contains("xoxb-secret-123"));
}
