//! Ingestion that stops part-way resumes: a document with failed pages or an interrupted
//! ingestion is picked up where it stopped when it is shared again or retried with
//! `anchorbot ingest --retry-failed`, OCR falls back to tesseract page by page, and pages are on
//! disk once reported. Real poppler, tesseract, sled and embedding model; the vision endpoint is
//! the local fake.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anchorbot::docs::{DocRecord, DocStatus, PageSource};
use common::fixtures;
use common::*;
use serde_json::Value;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A PDF of scanned pages (no text layer), one per entry, each legible to tesseract.
fn scanned_pdf(dir: &Path, name: &str, pages: &[&str]) -> PathBuf {
    let pdfs: Vec<Vec<u8>> = pages
        .iter()
        .map(|text| {
            let (w, h, gray) = fixtures::render_text_to_gray(&[text]);
            fixtures::gray_image_pdf(w, h, &gray)
        })
        .collect();
    write(dir, name, &fixtures::join_pdfs(&pdfs))
}

/// True for an OCR request (a user message with an image part).
fn is_ocr(req: &Value) -> bool {
    req["messages"][0]["content"].is_array()
}

/// A fake vision endpoint: the `n`th OCR request (from 1) gets `answer(n)`; other requests get
/// a plain reply. Returns the server and the OCR request counter.
async fn vision(
    answer: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> (FakeLlm, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let server = FakeLlm::start(move |req| {
        if is_ocr(req) {
            answer(c.fetch_add(1, Ordering::SeqCst) + 1)
        } else {
            Reply::text("noted")
        }
    })
    .await;
    (server, count)
}

/// An OCR transcription that names its request, so pages are told apart in search.
fn transcript(n: usize) -> Reply {
    Reply::chunks(
        vec![format!(
            "# Scanned page\n\nThis page was transcribed by request number {n}."
        )],
        Some("stop"),
    )
}

/// The conversation's documents and chunk count, read from the store on disk.
async fn stored(data: &Path, conv: &str) -> (Vec<DocRecord>, usize) {
    let (_store, docs) = reopen(data).await;
    (docs.list(conv).await.unwrap(), docs.chunk_count(conv).await)
}

fn engines(doc: &DocRecord) -> Vec<String> {
    doc.page_status
        .iter()
        .map(|p| match p {
            PageSource::Ocr { engine } => engine.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// `anchorbot ingest` into `conv`, one OCR page at a time and no OCR retries; the caller adds
/// files or flags.
fn ingest(data: &Path, url: &str, conv: &str) -> tokio::process::Command {
    let mut cmd = anchorbot(data, url);
    cmd.env("ANCHORBOT_DOCUMENTS_OCR_CONCURRENCY", "1")
        .env("ANCHORBOT_DOCUMENTS_OCR_RETRIES", "0")
        .args(["ingest", "--conversation", conv]);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partly_read_document_resumes_when_shared_again_and_is_not_a_duplicate() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pdf = scanned_pdf(tmp.path(), "scan3.pdf", &["ONE", "TWO", "THREE"]);
    // The second page's OCR fails the first time; everything else is read.
    let (llm, ocr_requests) = vision(|n| {
        if n == 2 {
            Reply::status(500)
        } else {
            transcript(n)
        }
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.documents.ocr = anchorbot::settings::OcrChoice::Vision;
    s.documents.ocr_retries = 0;
    s.documents.ocr_concurrency = 1;
    let app = start_app(s).await;
    app.sink
        .submit(upload("P", "u1", "ann", "", &pdf))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(upload("P", "u2", "ann", "", &pdf))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("P", "f1", "ann", "/files"))
        .unwrap()
        .done()
        .await;
    let finals = app.platform.finals("P");
    assert!(
        finals[0].contains("Could not read page 2"),
        "first share: {finals:?}"
    );
    assert!(
        !finals[1].contains("already in this conversation"),
        "a partly read document was called a duplicate: {finals:?}"
    );
    assert!(
        finals[1].contains("retried failed page 2: now read"),
        "{finals:?}"
    );
    assert!(
        finals[1].contains("resumed after 2 pages already stored"),
        "{finals:?}"
    );
    let listing = app
        .platform
        .all()
        .into_iter()
        .filter_map(|r| match r {
            Record::Ephemeral(_, t) => Some(t),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(listing.contains("ready"), "{listing}");
    // Only the failed page was read again.
    assert_eq!(ocr_requests.load(Ordering::SeqCst), 4);
    app.shutdown().await;
    let (docs, chunks) = stored(&data, "test:W1/P").await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].status, DocStatus::Ready);
    assert!(docs[0].failed_pages().is_empty(), "{docs:?}");
    assert_eq!(docs[0].chunks, 3, "one chunk per page, each stored once");
    assert_eq!(chunks, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_retry_failed_reads_the_failed_pages_again_without_the_file() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pdf = scanned_pdf(tmp.path(), "scan3.pdf", &["ONE", "TWO", "THREE"]);
    let (llm, ocr_requests) = vision(|n| {
        if n == 3 {
            Reply::status(500)
        } else {
            transcript(n)
        }
    })
    .await;
    let mut cmd = ingest(&data, &llm.url, "r");
    cmd.env("ANCHORBOT_DOCUMENTS_OCR", "vision").arg(&pdf);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.contains("Could not read page 3"), "{out}");
    // The file is gone; the retry needs none.
    std::fs::remove_file(&pdf).unwrap();
    let mut cmd = ingest(&data, &llm.url, "r");
    cmd.env("ANCHORBOT_DOCUMENTS_OCR", "vision")
        .arg("--retry-failed");
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.contains("Retrying scan3.pdf: page 3"), "{out}");
    assert!(
        out.contains("retried failed page 3: now read") && !out.contains("Could not read"),
        "{out}"
    );
    assert_eq!(ocr_requests.load(Ordering::SeqCst), 4, "only page 3 again");
    let (docs, chunks) = stored(&data, "console:r").await;
    assert_eq!(docs[0].status, DocStatus::Ready);
    assert_eq!((docs[0].chunks, chunks), (3, 3));
    // Nothing is left to retry.
    let mut cmd = ingest(&data, &llm.url, "r");
    cmd.arg("--retry-failed");
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.contains("Nothing to retry"), "{out}");
    assert_eq!(ocr_requests.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn ocr_falls_back_to_tesseract_page_by_page_when_the_vision_endpoint_fails() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pdf = scanned_pdf(
        tmp.path(),
        "mixed.pdf",
        &["INVOICE 4711", "TOTAL 99 EUR", "DUE BY MARCH 31"],
    );
    // The vision endpoint answers /models throughout, reads page 1, then fails.
    let (llm, ocr_requests) = vision(|n| {
        if n == 1 {
            transcript(n)
        } else {
            Reply::status(500)
        }
    })
    .await;
    let mut cmd = ingest(&data, &llm.url, "m");
    cmd.arg(&pdf);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.contains("OCR by tesseract and vision model"), "{out}");
    assert!(!out.contains("Could not read"), "{out}");
    // Page 2 tried the vision model once; page 3 went straight to tesseract.
    assert_eq!(ocr_requests.load(Ordering::SeqCst), 2);
    let (docs, _) = stored(&data, "console:m").await;
    assert_eq!(docs[0].status, DocStatus::Ready);
    assert_eq!(
        engines(&docs[0]),
        ["vision model", "tesseract", "tesseract"],
        "which engine read each page"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_reported_before_a_crash_are_kept_and_sharing_again_resumes() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pdf = scanned_pdf(tmp.path(), "scan5.pdf", &["A", "B", "C", "D", "E"]);
    // The third page's OCR never answers in the first run: the process is killed there.
    let (llm, ocr_requests) = vision(|n| {
        let mut r = transcript(n);
        if n == 3 {
            r.first_delay = Duration::from_secs(600);
        }
        r
    })
    .await;
    let mut cmd = ingest(&data, &llm.url, "k");
    // Killed mid-way: its progress lines are nobody's to read.
    cmd.arg(&pdf).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // With one page in flight, page 3 is asked for only after page 2 is committed.
    while ocr_requests.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "OCR never reached page 3"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (docs, chunks) = stored(&data, "console:k").await;
    assert_eq!(docs.len(), 1, "the interrupted document is listed");
    assert_eq!(docs[0].status, DocStatus::Incomplete);
    assert_eq!(
        engines(&docs[0])[..2],
        ["vision model", "vision model"],
        "pages committed before the crash are on disk: {:?}",
        docs[0].page_status
    );
    assert_eq!((docs[0].chunks, chunks), (2, 2));
    // Sharing it again reads only the rest.
    let mut cmd = ingest(&data, &llm.url, "k");
    cmd.arg(&pdf);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(!out.contains("already in this conversation"), "{out}");
    assert!(
        out.contains("resumed after 2 pages already stored"),
        "{out}"
    );
    assert_eq!(
        ocr_requests.load(Ordering::SeqCst),
        6,
        "pages 3, 4 and 5 only"
    );
    let (docs, chunks) = stored(&data, "console:k").await;
    assert_eq!(docs[0].status, DocStatus::Ready);
    assert_eq!((docs[0].chunks, chunks), (5, 5), "every page stored once");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shares_of_one_file_at_once_read_it_once() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pdf = std::fs::read(scanned_pdf(tmp.path(), "scan2.pdf", &["ONE", "TWO"])).unwrap();
    let (llm, ocr_requests) = vision(|n| transcript(n).slow(Duration::from_millis(200))).await;
    let s = settings(&data, &llm.url);
    let (store, _) = reopen(&data).await;
    let docs = anchorbot::docs::Documents::new(
        store,
        s.documents.clone(),
        s.vision.clone(),
        Arc::new(anchorbot::llm::tokens::Tiktoken::cl100k()),
    )
    .unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(String::new());
    let (a, b) = tokio::join!(
        docs.ingest("c", "scan2.pdf", &pdf, &tx),
        docs.ingest("c", "scan2.pdf", &pdf, &tx)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [a.duplicate, b.duplicate].iter().filter(|d| **d).count(),
        1,
        "one share reads the file, the other finds it: {a:?} {b:?}"
    );
    assert_eq!(
        ocr_requests.load(Ordering::SeqCst),
        2,
        "each page read once"
    );
    let doc = &docs.store().list("c").await.unwrap()[0];
    assert_eq!(doc.status, DocStatus::Ready);
    assert_eq!((doc.chunks, docs.store().chunk_count("c").await), (2, 2));
}

/// A stored chunk: page, position, heading, text.
type Stored = (u32, u32, Option<String>, String);

/// Every chunk of the conversation's one document, and the number of vectors stored, read from
/// the store on disk.
async fn chunks_on_disk(data: &Path, conv: &str) -> (Vec<Stored>, usize) {
    let (_store, docs) = reopen(data).await;
    let list = docs.list(conv).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let chunks = docs
        .document_chunks(conv, &list[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|(page, c)| (page, c.position, c.heading, c.text))
        .collect();
    let (_, _, vectors) = docs.counts(conv).await.unwrap();
    (chunks, vectors as usize)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_within_a_page_resumes_to_the_same_chunks_as_an_uninterrupted_ingest() {
    use tokio::io::AsyncBufReadExt;
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    // One page of about 500 chunks: eight batches of 64 with the real model.
    let file = write(
        tmp.path(),
        "handbook.txt",
        fixtures::prose(150_000, 21).as_bytes(),
    );
    let data = tmp.path().join("data");
    let mut cmd = ingest(&data, "http://127.0.0.1:9/v1", "k");
    cmd.arg(&file).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // A progress note is sent once its batch is committed; kill the process after the first.
    let note = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Indexing handbook.txt: ") && !line.contains(" 0 of ") {
                return line;
            }
        }
        panic!("the ingest ended before any batch was stored");
    })
    .await
    .expect("no batch was stored within the hang guard");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(!note.contains("(100%)"), "killed too late to test: {note}");

    let (docs, on_disk) = stored(&data, "console:k").await;
    let doc = &docs[0];
    assert_eq!(doc.status, DocStatus::Incomplete);
    assert_eq!(
        doc.page_status,
        [PageSource::Pending],
        "the page is not done"
    );
    let partial = doc.partial.expect("how far the page is stored");
    assert_eq!(partial.page, 1);
    assert!(
        partial.chunks > 0 && partial.chunks % 64 == 0,
        "{partial:?}"
    );
    assert_eq!(
        (doc.chunks, on_disk),
        (partial.chunks, partial.chunks as usize),
        "the record counts what is on disk"
    );

    // Sharing it again goes on after the stored chunks.
    let mut cmd = ingest(&data, "http://127.0.0.1:9/v1", "k");
    cmd.arg(&file);
    let (ok, out, err) = run_for(cmd, Duration::from_secs(300)).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "resumed after {} chunks already stored",
            partial.chunks
        )),
        "{out}"
    );

    // The same file read in one go, elsewhere.
    let whole = tmp.path().join("whole");
    let mut cmd = ingest(&whole, "http://127.0.0.1:9/v1", "k");
    cmd.arg(&file);
    let (ok, _, err) = run_for(cmd, Duration::from_secs(300)).await;
    assert!(ok, "{err}");

    let (resumed, resumed_vectors) = chunks_on_disk(&data, "console:k").await;
    let (uninterrupted, vectors) = chunks_on_disk(&whole, "console:k").await;
    assert!(resumed.len() > partial.chunks as usize);
    assert_eq!(
        resumed, uninterrupted,
        "the same chunks at the same positions"
    );
    assert_eq!((resumed_vectors, vectors), (resumed.len(), resumed.len()));
    let (docs, _) = stored(&data, "console:k").await;
    assert_eq!(docs[0].status, DocStatus::Ready);
    assert_eq!(docs[0].chunks as usize, resumed.len());
    assert_eq!(docs[0].partial, None);
}
