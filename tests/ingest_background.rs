//! Shared files are read in the background, with the real embedding model: a question sent
//! while a large file is read is answered before the file is in (through the real `anchorbot
//! chat` binary), `/clear` during a read keeps nothing of the file and no chunk is written
//! after it, a question sent with a file is answered from that file once it is in, a
//! redelivery of a message being read is dropped, and the shutdown deadline stops a read with
//! a note that sharing the file again resumes it. Big files are [`fixtures::prose`], none of
//! whose words (lighthouse, pears, boathouse, notice, weeks) the tests look for.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous guard against a hang: no step of these tests should come near it.
const HANG: Duration = Duration::from_secs(300);

/// Writes `text` to `dir/name`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A running `anchorbot chat` whose output the test reads as it comes.
struct Chat {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    out: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Chat {
    fn start(data: &Path, url: &str, conversation: &str) -> Self {
        let mut cmd = anchorbot(data, url);
        cmd.args(["chat", "--conversation", conversation])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Self {
            child,
            stdin,
            out,
            reader,
        }
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("input still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Everything printed so far.
    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until the output from byte `from` on satisfies `done`; returns that part.
    async fn wait_for(&self, from: usize, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            let out = self.output();
            if done(&out[from..]) {
                return out[from..].to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {HANG:?}; output:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `/status` and returns its answer.
    async fn status(&mut self) -> String {
        let from = self.output().len();
        self.send("/status").await;
        // The report ends with its token budget line or the files being read.
        self.wait_for(from, "/status answer", |s| {
            s.contains("Conversation ") && s.ends_with('\n')
        })
        .await
    }

    /// Polls `/status` until a file is being indexed with some chunks stored, and returns that
    /// progress line.
    async fn wait_indexing(&mut self, name: &str) -> String {
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            let status = self.status().await;
            let line = status
                .lines()
                .find(|l| l.contains(&format!("Indexing {name}: ")))
                .map(str::to_string);
            if let Some(line) = line.filter(|l| !l.contains(": 0 of ")) {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never showed indexing progress in /status:\n{status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Closes the input and waits for the process to exit; returns its whole output.
    async fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("anchorbot chat did not exit")
            .unwrap();
        (&mut self.reader).await.unwrap();
        let out = self.output();
        assert!(status.success(), "exit {status}; output:\n{out}");
        out
    }
}

/// The document store of a data dir whose process has exited.
async fn doc_store(data: &Path) -> anchorbot::docs::DocStore {
    reopen(data).await.1
}

/// A fake model that says whether the prompt held `needle`.
async fn llm_looking_for(needle: &'static str) -> FakeLlm {
    FakeLlm::start(move |req| {
        if is_summary(req) {
            return Reply::text("SUMMARY: nothing\nFACTS:");
        }
        if all_text(req).contains(needle) {
            Reply::text(&format!("Found it: {needle}."))
        } else {
            Reply::text("I could not find that.")
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_sent_while_a_large_file_is_read_is_answered_before_it_is_in() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // About 450 KB: over a thousand chunks, many seconds of embedding. Its first paragraph
    // holds the fact asked about, so the first stored batch answers the question.
    let text = format!(
        "The lighthouse keeper is paid in pears by the harbour council.\n\n{}",
        fixtures::prose(450_000, 7)
    );
    let big = write(tmp.path(), "big.txt", &text);
    let llm = llm_looking_for("paid in pears").await;
    let mut chat = Chat::start(&data, &llm.url, "reading");
    chat.send(&format!("/upload {}", big.display())).await;
    let progress = chat.wait_indexing("big.txt").await;
    assert!(progress.contains("chunks"), "{progress}");

    let from = chat.output().len();
    chat.send("What is the lighthouse keeper paid in?").await;
    let answer = chat
        .wait_for(from, "answer", |s| {
            s.contains("Found it: paid in pears.") || s.contains("I could not find that.")
        })
        .await;
    // Answered from the part of the file already stored, while the file is still being read.
    assert!(answer.contains("Found it: paid in pears."), "{answer}");
    let so_far = chat.output();
    assert!(
        !so_far.contains("Added big.txt"),
        "the answer waited for the file:\n{so_far}"
    );

    // End of input: the console waits for the file, whose summary line comes last.
    let out = chat.finish().await;
    let added = out
        .find("📄 Added big.txt: 1 page")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.find("Found it").unwrap() < added, "{out}");
    assert_eq!(llm.turn_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_while_a_file_is_read_keeps_nothing_of_it() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let big = write(tmp.path(), "big.txt", &fixtures::prose(450_000, 11));
    let llm = llm_looking_for("never there").await;
    let mut chat = Chat::start(&data, &llm.url, "wipe");
    chat.send(&format!("/upload {}", big.display())).await;
    // Chunks are stored (the progress counts them) when the clear comes.
    chat.wait_indexing("big.txt").await;

    let from = chat.output().len();
    chat.send("/clear").await;
    let cleared = chat
        .wait_for(from, "/clear answer", |s| {
            s.contains("Cleared this conversation")
        })
        .await;
    // The read stopped first and said so, then the clear removed what it had stored.
    let kept = cleared
        .find("🗑️ I did not keep big.txt: this conversation was cleared")
        .unwrap_or_else(|| panic!("{cleared}"));
    assert!(kept < cleared.find("Cleared this conversation").unwrap());
    let status = chat.status().await;
    assert!(!status.contains("Files being read"), "{status}");
    assert!(status.contains("Documents: 0"), "{status}");
    let from = chat.output().len();
    chat.send("/files").await;
    let files = chat
        .wait_for(from, "/files answer", |s| s.contains("No documents"))
        .await;
    assert!(!files.contains("big.txt"), "{files}");
    let out = chat.finish().await;
    assert!(!out.contains("Added big.txt"), "{out}");

    // Nothing was written after the clear: the store the process left has no trace of it.
    let docs = doc_store(&data).await;
    let conv = anchorbot_platform::ConversationKey::console("wipe")
        .unwrap()
        .to_string();
    assert_eq!(docs.chunk_count(&conv).await, 0);
    assert!(docs.list(&conv).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_sent_with_a_file_is_answered_from_it_once_it_is_in() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let body = fixtures::prose(60_000, 23);
    let (head, tail) = body.split_at(body.len() / 2);
    let tail = tail.split_once("\n\n").map_or(tail, |(_, t)| t);
    let text =
        format!("{head}The notice period for the boathouse lease is eleven weeks.\n\n{tail}");
    let file = write(tmp.path(), "lease.txt", &text);
    let llm = llm_looking_for("eleven weeks").await;
    let app = start_app(settings(&data, &llm.url)).await;

    let ask = "What is the notice period for the boathouse lease?";
    let first = app
        .sink
        .submit(upload("F", "m1", "ann", ask, &file))
        .unwrap();
    // The platform delivers the same event again while the file is read: dropped, not read
    // twice (its receipt resolves at once).
    let again = app
        .sink
        .submit(upload("F", "m1", "ann", ask, &file))
        .unwrap();
    tokio::time::timeout(HANG, again.done()).await.unwrap();
    tokio::time::timeout(HANG, first.done()).await.unwrap();

    let finals = app.platform.finals("F");
    assert_eq!(finals.len(), 2, "{finals:?}");
    assert!(
        finals[0].starts_with("📄 Added lease.txt: 1 page"),
        "{finals:?}"
    );
    // The answer came after its file was in, and its prompt held the file's passage.
    assert_eq!(finals[1], "Found it: eleven weeks.", "{finals:?}");
    assert_eq!(llm.turn_requests().len(), 1);
    app.shutdown().await;
    let docs = doc_store(&data).await;
    assert_eq!(docs.list("test:W1/F").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shutdown_deadline_stops_a_read_and_says_sharing_again_resumes() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Far more than the grace period can read.
    let big = write(tmp.path(), "huge.txt", &fixtures::prose(2_000_000, 31));
    let llm = llm_looking_for("never there").await;
    let mut s = settings(&data, &llm.url);
    s.shutdown_grace_secs = 1;
    let app = start_app(s).await;
    let receipt = app.sink.submit(upload("S", "u1", "ann", "", &big)).unwrap();
    // Wait until some of it is stored, as /status shows.
    let deadline = tokio::time::Instant::now() + HANG;
    let mut n = 0;
    loop {
        n += 1;
        app.sink
            .submit(message("S", &format!("st{n}"), "ann", "/status"))
            .unwrap()
            .done()
            .await;
        let shown = app.platform.all().into_iter().rev().find_map(|r| match r {
            Record::Ephemeral(c, t) if c == "S" => Some(t),
            _ => None,
        });
        let shown = shown.unwrap_or_default();
        if shown.contains("Indexing huge.txt: ") && !shown.contains(": 0 of ") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let platform = app.platform.clone();
    // The drain waits for the file within the grace period, then the deadline cuts it.
    tokio::time::timeout(HANG, app.shutdown()).await.unwrap();
    tokio::time::timeout(HANG, receipt.done()).await.unwrap();
    let finals = platform.finals("S");
    assert_eq!(
        finals,
        ["⏸️ Reading huge.txt was interrupted by a restart of anchorbot. Share the file again and I'll pick up where I stopped."],
    );
    // Nothing claims the file is complete.
    let docs = doc_store(&data).await;
    let list = docs.list("test:W1/S").await.unwrap();
    assert!(
        list.iter()
            .all(|d| d.status != anchorbot::docs::DocStatus::Ready),
        "{list:?}"
    );
}
