//! Bad console input through the real `anchorbot chat` binary: a line that is not UTF-8 or is
//! over the console's 64 KiB cap gets a notice on standard error, never reaches the model, and
//! the session goes on to answer the next line.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread")]
async fn bad_lines_get_a_notice_and_the_chat_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(echo).await;

    let mut input = b"first\n".to_vec();
    input.extend_from_slice(b"caf\xe9 latin-1\n");
    input.extend_from_slice(&vec![b'x'; 200 * 1024]);
    input.extend_from_slice(b"\nsecond\n");

    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["chat", "--conversation", "c1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Write while the child reads: the input is larger than a pipe's buffer.
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Answer to <you: first>"), "{stdout}");
    assert!(stdout.contains("Answer to <you: second>"), "{stdout}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    assert!(stderr.contains("longer than 64 KiB"), "{stderr}");
    // Neither bad line was sent: exactly two model calls.
    assert_eq!(llm.turn_requests().len(), 2);
}
