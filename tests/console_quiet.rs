//! The console stays quiet, through the real `anchorbot` binary: in `chat` the log goes to a
//! file in the data dir and a warning the user must act on is one line between turns, never
//! inside an answer; `ask` keeps standard output for the answer alone.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use tokio::io::AsyncWriteExt;

/// Whether `line` looks like a log line (a level word as the formatter writes it).
fn is_log_line(line: &str) -> bool {
    [" TRACE ", " DEBUG ", " INFO ", " WARN ", " ERROR "]
        .iter()
        .any(|level| line.contains(level))
        || line.contains("retrying")
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_logs_to_a_file_and_shows_one_warning_line_between_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = flaky_calls.clone();
    let llm = FakeLlm::start(move |req| {
        let q = last_user(req);
        if q.contains("broken") {
            // Every attempt fails: the turn fails after its retries.
            Reply::status(503)
        } else if q.contains("flaky") && calls.fetch_add(1, Ordering::SeqCst) == 0 {
            // Fails once, then answers: a retry the user need not hear about.
            Reply::status(503)
        } else {
            echo(req)
        }
    })
    .await;

    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["chat", "--conversation", "q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"broken question\nflaky question\nlast question\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chat did not end within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");

    let log = dir.join("logs").join("anchorbot.log");
    let lines: Vec<&str> = stdout.lines().collect();
    let flaky = lines
        .iter()
        .position(|l| l.contains("Answer to <you: flaky question>"))
        .unwrap_or_else(|| panic!("the flaky question is answered:\n{stdout}"));
    let last = lines
        .iter()
        .position(|l| l.contains("Answer to <you: last question>"))
        .unwrap_or_else(|| panic!("the last question is answered:\n{stdout}"));
    assert!(flaky < last, "{stdout}");

    // Exactly one warning line, between the failed turn and the next answer, naming the log.
    let warnings: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("warning: ") || l.starts_with("error: "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line:\n{stdout}");
    let at = warnings[0];
    assert_eq!(
        at + 1,
        flaky,
        "the warning comes right before the next answer:\n{stdout}"
    );
    assert!(at > 0, "the failed turn's message comes first:\n{stdout}");
    let warning = lines[at];
    assert!(warning.contains("endpoint failed"), "{warning}");
    assert!(warning.contains("503"), "it says what failed: {warning}");
    assert!(
        warning.ends_with(&format!("details in {}", log.display())),
        "{warning}"
    );
    assert!(
        !warning.contains('\x1b'),
        "no colour codes off a terminal: {warning:?}"
    );

    // No log line anywhere in the conversation or on stderr.
    for line in &lines {
        assert!(
            !is_log_line(line),
            "a log line in the transcript: {line}\n{stdout}"
        );
    }
    for line in stderr.lines() {
        assert!(!is_log_line(line), "a log line on stderr: {line}\n{stderr}");
    }

    // The log file has the whole story: the retries and the failure.
    let text = std::fs::read_to_string(&log).expect("the log file exists");
    assert!(text.contains(" WARN "), "{text}");
    assert!(text.contains("model request failed; retrying"), "{text}");
    assert!(text.contains("endpoint failed"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour codes in the file: {text:?}"
    );

    // A second session appends to the same file.
    let before = text.len();
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["chat", "--conversation", "q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"broken again\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chat did not end within 60 s")
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The warning of the last turn is shown as the session ends.
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("warning: endpoint failed"), "{stdout}");
    let again = std::fs::read_to_string(&log).unwrap();
    assert!(again.len() > before && again.starts_with(&text));
}

#[tokio::test(flavor = "multi_thread")]
async fn ask_keeps_stdout_for_the_answer_and_fails_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        if last_user(req).contains("broken") {
            Reply::status(500)
        } else {
            echo(req)
        }
    })
    .await;

    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["ask", "--conversation", "a", "hello"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert_eq!(
        out, "Answer to <you: hello>\n",
        "the answer and nothing else"
    );

    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["ask", "--conversation", "a", "broken"]);
    let (ok, out, err) = run(cmd).await;
    assert!(!ok, "a failed answer exits non-zero");
    assert_eq!(out, "", "nothing on stdout when there is no answer");
    assert!(err.contains("HTTP 500"), "the failure is on stderr: {err}");

    let down = closed_port_url();
    let mut cmd = anchorbot(&dir, &down);
    cmd.args(["ask", "--conversation", "a", "anyone?"]);
    let (ok, out, err) = run(cmd).await;
    assert!(!ok);
    assert_eq!(out, "");
    assert!(err.contains("cannot connect to the model server"), "{err}");
}
