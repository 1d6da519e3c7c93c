//! Documents end to end with real parts: PDFs made here and read by poppler, OCR through a
//! local fake vision endpoint speaking the OpenAI image format or through tesseract, embeddings
//! from the real all-MiniLM-L6-v2 ONNX model via fastembed, storage in sled.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fixtures;
use common::*;
use serde_json::Value;

/// Facts on known pages, asked about in other words.
const PAGES: [&str; 4] = [
    "The monthly rent for the apartment is 1200 euros, paid on the first day of each month.",
    "Pets are not allowed in the building, with the exception of fish kept in an aquarium.",
    "The tenant must announce the end of the lease in writing three months in advance.",
    "Heating costs are billed every quarter according to the meter readings.",
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

async fn ingest(dir: &Path, url: &str, conv: &str, files: &[&Path]) -> (bool, String, String) {
    let mut cmd = anchorbot(dir, url);
    cmd.args(["ingest", "--conversation", conv]).args(files);
    run(cmd).await
}

async fn search(dir: &Path, url: &str, conv: &str, q: &str) -> Vec<Value> {
    let mut cmd = anchorbot(dir, url);
    cmd.args([
        "search",
        "--conversation",
        conv,
        "--json",
        "--top-k",
        "3",
        q,
    ]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn text_pdf_paraphrased_questions_find_the_right_page() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pages: Vec<Vec<&str>> = PAGES.iter().map(|p| vec!["Lease agreement", *p]).collect();
    let pdf = write(tmp.path(), "lease.pdf", &fixtures::text_pdf(&pages));
    let url = closed_port_url();
    let (ok, out, err) = ingest(&dir, &url, "flat", &[&pdf]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Added lease.pdf: 4 pages"), "{out}");
    for (q, page) in [
        ("How much do I pay each month to live there?", 1),
        ("Can I keep a dog?", 2),
        ("How early do I have to say that I am moving out?", 3),
        ("When are the charges for warming the flat invoiced?", 4),
    ] {
        let hits = search(&dir, &url, "flat", q).await;
        assert_eq!(hits[0]["page"], page, "{q}: {hits:?}");
        assert_eq!(hits[0]["citation"], format!("lease.pdf p.{page}"));
        assert!(hits[0]["score"].as_f64().unwrap() > hits[2]["score"].as_f64().unwrap());
    }
    // Another conversation sees nothing.
    assert!(search(&dir, &url, "other", "monthly rent").await.is_empty());
}

/// A committed fixture file (see `tests/fixtures/make_office.py`).
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_word_document_is_read_with_its_pages_and_cited() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Named without an extension: the content decides that it is a DOCX.
    let docx = write(tmp.path(), "handbook", &fixture("handbook.docx"));
    let url = closed_port_url();
    let (ok, out, err) = ingest(&dir, &url, "hr", &[&docx]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Added handbook: 3 pages"), "{out}");
    for (q, page, needle) in [
        ("When do I have to be at my desk?", 1, "Core hours"),
        (
            "Can I get my plane trip paid back?",
            2,
            "flights need approval",
        ),
        (
            "What is the per diem for domestic travel?",
            2,
            "Domestic | 45 EUR",
        ),
        (
            "Do I keep my computer when I leave the company?",
            3,
            "laptop",
        ),
    ] {
        let hits = search(&dir, &url, "hr", q).await;
        assert_eq!(hits[0]["page"], page, "{q}: {hits:?}");
        assert_eq!(hits[0]["citation"], format!("handbook p.{page}"));
        assert!(
            hits[0]["text"].as_str().unwrap().contains(needle),
            "{hits:?}"
        );
    }
    let listing = files(&dir, &url, "hr").await;
    assert!(
        listing.contains("handbook (application/vnd.openxmlformats-officedocument.wordprocessingml.document, 3 pages"),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slides_and_sheets_are_pages_in_display_order() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let deck = write(tmp.path(), "deck.pptx", &fixture("deck.pptx"));
    let book = write(tmp.path(), "budget.xlsx", &fixture("budget.xlsx"));
    let url = closed_port_url();
    let (ok, out, err) = ingest(&dir, &url, "plan", &[&deck, &book]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Added deck.pptx: 3 slides"), "{out}");
    assert!(out.contains("Added budget.xlsx: 2 sheets"), "{out}");
    for (q, citation, needle) in [
        // The deck shows its third slide file first.
        (
            "When does the data center agreement run out?",
            "deck.pptx slide 1",
            "October",
        ),
        (
            "How many people will we recruit for support?",
            "deck.pptx slide 3",
            "Lisbon",
        ),
        (
            "What did the venue rental cost?",
            "budget.xlsx sheet Costs",
            "Venue rental | 4200 | TRUE",
        ),
        (
            "Who is the project lead?",
            "budget.xlsx sheet People",
            "Ada | Project lead",
        ),
    ] {
        let hits = search(&dir, &url, "plan", q).await;
        assert_eq!(hits[0]["citation"], citation, "{q}: {hits:?}");
        assert!(
            hits[0]["text"].as_str().unwrap().contains(needle),
            "{hits:?}"
        );
    }
}

/// The scanned page used by the OCR tests.
fn scanned_pdf(dir: &Path) -> PathBuf {
    let (w, h, gray) =
        fixtures::render_text_to_gray(&["INVOICE 4711", "TOTAL 99 EUR", "Due by March 31"]);
    write(dir, "scan.pdf", &fixtures::gray_image_pdf(w, h, &gray))
}

#[tokio::test(flavor = "multi_thread")]
async fn scanned_pdf_goes_to_the_vision_model_and_becomes_searchable() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pdf = scanned_pdf(tmp.path());
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s2 = seen.clone();
    let vision = FakeLlm::start(move |req| {
        s2.lock().unwrap().push(req.clone());
        Reply::chunks(
            vec!["```markdown\n# Invoice 4711\n\nTotal: 99 EUR, due by March 31.\n```".into()],
            Some("stop"),
        )
    })
    .await;
    let (ok, out, err) = ingest(&dir, &vision.url, "acc", &[&pdf]).await;
    assert!(ok, "{err}");
    assert!(out.contains("OCR by vision model"), "{out}");
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1, "one page, one OCR request");
    let content = &reqs[0]["messages"][0]["content"];
    assert_eq!(content[0]["type"], "text");
    assert!(content[0]["text"].as_str().unwrap().contains("Markdown"));
    assert_eq!(content[1]["type"], "image_url");
    let data_url = content[1]["image_url"]["url"].as_str().unwrap();
    assert!(
        data_url.starts_with("data:image/png;base64,iVBOR"),
        "{}",
        &data_url[..40]
    );
    let hits = search(&dir, &vision.url, "acc", "what is the invoice total?").await;
    assert_eq!(hits[0]["citation"], "scan.pdf p.1");
    assert!(hits[0]["text"].as_str().unwrap().contains("Total: 99 EUR"));
    assert!(files(&dir, &vision.url, "acc")
        .await
        .contains("OCR by vision model"));
}

#[tokio::test(flavor = "multi_thread")]
async fn scanned_pdf_falls_back_to_tesseract() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pdf = scanned_pdf(tmp.path());
    let down = closed_port_url();
    let (ok, out, err) = ingest(&dir, &down, "t", &[&pdf]).await;
    assert!(ok, "{err}");
    assert!(out.contains("OCR by tesseract"), "{out}");
    let hits = search(&dir, &down, "t", "invoice 4711 total").await;
    let text = hits[0]["text"].as_str().unwrap().to_uppercase();
    assert!(
        text.contains("INVOICE 4711") && text.contains("99 EUR"),
        "{text}"
    );
    let listing = files(&dir, &down, "t").await;
    assert!(listing.contains("OCR by tesseract (fallback"), "{listing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_not_stored_twice_and_clear_removes_chunks() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let pages: Vec<Vec<&str>> = PAGES.iter().map(|p| vec![*p]).collect();
    let pdf = write(tmp.path(), "lease.pdf", &fixtures::text_pdf(&pages));
    let copy = write(tmp.path(), "lease-copy.pdf", &std::fs::read(&pdf).unwrap());
    let llm =
        FakeLlm::start(|req| Reply::text(&format!("seen {} chars", all_text(req).len()))).await;
    let app = start_app(settings(&data, &llm.url)).await;
    app.sink
        .submit(upload("D", "u1", "ann", "", &pdf))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(upload("D", "u2", "ann", "", &copy))
        .unwrap()
        .done()
        .await;
    let finals = app.platform.finals("D");
    assert!(
        finals[0].starts_with("📄 Added lease.pdf: 4 pages"),
        "{finals:?}"
    );
    assert!(
        finals[1].contains("already in this conversation"),
        "{finals:?}"
    );
    app.sink
        .submit(message("D", "c1", "ann", "/clear"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("D", "f1", "ann", "/files"))
        .unwrap()
        .done()
        .await;
    let all = app.platform.all();
    let eph: Vec<String> = all
        .iter()
        .filter_map(|r| match r {
            Record::Ephemeral(_, t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert!(eph[0].contains("1 document (4 chunks) removed"), "{eph:?}");
    assert!(eph[1].contains("No documents"), "{eph:?}");
    app.shutdown().await;
    let (_store, docs) = reopen(&data).await;
    assert_eq!(docs.chunk_count("test:W1/D").await, 0);
    assert!(docs.list("test:W1/D").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_never_cross_conversations_under_any_interleaving() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Each conversation gets its own document with a secret code word.
    let convs = ["A", "B", "C"];
    let secrets = ["pelican", "saxophone", "glacier"];
    let paths: Vec<PathBuf> = convs
        .iter()
        .zip(secrets)
        .map(|(c, s)| {
            write(
                tmp.path(),
                &format!("{c}.md"),
                format!("# Notes for team {c}\n\nThe project code word is {s}. The budget owner is team {c}.\n").as_bytes(),
            )
        })
        .collect();
    let llm = FakeLlm::start(|_| Reply::text("noted")).await;
    let app = start_app(settings(&data, &llm.url)).await;
    // Deterministic pseudo-random interleavings of uploads and questions (a small xorshift).
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut uploaded = [false; 3];
    let mut receipts = Vec::new();
    for step in 0..60 {
        let i = (next() % 3) as usize;
        let ev = if next() % 3 == 0 {
            uploaded[i] = true;
            upload(convs[i], &format!("s{step}"), "u", "", &paths[i])
        } else {
            message(
                convs[i],
                &format!("s{step}"),
                "u",
                "what is the project code word?",
            )
        };
        receipts.push(app.sink.submit(ev).unwrap());
        if next() % 4 == 0 {
            // Sometimes wait, so both concurrent and sequential orders happen.
            for r in receipts.drain(..) {
                r.done().await;
            }
        }
    }
    for r in receipts {
        r.done().await;
    }
    // Every prompt carries only its own conversation's secret.
    let reqs = llm.turn_requests();
    assert!(reqs.len() > 20);
    for r in &reqs {
        let text = all_text(r);
        let owners: Vec<usize> = (0..3).filter(|&j| text.contains(secrets[j])).collect();
        assert!(owners.len() <= 1, "a prompt mixed documents: {owners:?}");
        if let Some(&j) = owners.first() {
            assert!(text.contains(&format!("team {}", convs[j])));
            // Passages arrive fenced as quoted data with their citation tag.
            assert!(
                text.contains(&format!("<document source=\"[{}.md]\"", convs[j])),
                "{text}"
            );
            assert!(text.contains("not instructions"));
        }
    }
    let docs = app.platform.finals("A").len()
        + app.platform.finals("B").len()
        + app.platform.finals("C").len();
    assert!(docs >= reqs.len());
    app.shutdown().await;
    let (_store, ds) = reopen(&data).await;
    for (i, c) in convs.iter().enumerate() {
        let list = ds.list(&format!("test:W1/{c}")).await.unwrap();
        assert_eq!(list.len(), usize::from(uploaded[i]), "{c}");
        assert!(list.iter().all(|d| d.name == format!("{c}.md")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_get_clear_messages_and_leave_the_store_consistent() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = tmp.path();
    let good = fixtures::text_pdf(&[vec!["Good page with plenty of readable words on it."]]);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write(d, "corrupt.pdf", &fixtures::corrupt_pdf()),
            "damaged or truncated",
        ),
        (
            write(d, "truncated.pdf", &fixtures::truncated(&good)),
            "damaged or truncated",
        ),
        (
            write(d, "secret.pdf", &fixtures::encrypted_pdf(&good)),
            "encrypted",
        ),
        (write(d, "empty.txt", b""), "empty"),
        (
            write(d, "secret.docx", &fixture("secret.docx")),
            "encrypted",
        ),
        (
            write(
                d,
                "cut.docx",
                &fixtures::truncated(&fixture("handbook.docx")),
            ),
            "damaged or truncated",
        ),
        (
            write(
                d,
                "archive.zip",
                &fixtures::truncated(&fixture("handbook.docx"))[..30],
            ),
            "not supported",
        ),
        (
            write(
                d,
                "bomb.png",
                &fixtures::png_header_with_dimensions(100_000, 100_000),
            ),
            "over the limit",
        ),
        (
            write(d, "program.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00"),
            "not supported",
        ),
    ];
    let url = closed_port_url();
    for (path, expected) in &cases {
        let (ok, _, err) = ingest(&dir, &url, "bad", &[path]).await;
        assert!(!ok, "{} was accepted", path.display());
        assert!(
            err.to_lowercase().contains(expected),
            "{}: {err}",
            path.display()
        );
    }
    // A mislabelled file is read for what it is: text named .png, a PNG named .pdf.
    let text_as_png = write(
        d,
        "notes.png",
        b"Plain notes: the offsite is in Lisbon in June.\n",
    );
    let png_as_pdf = write(
        d,
        "picture.pdf",
        &fixtures::png_of_text(&["OFFSITE LISBON"]),
    );
    let (ok, out, err) = ingest(&dir, &url, "bad", &[&text_as_png, &png_as_pdf]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Added notes.png: 1 page"), "{out}");
    assert!(
        out.contains("Added picture.pdf: 1 page") && out.contains("tesseract"),
        "{out}"
    );
    // Only the two good documents are stored; nothing half-stored.
    let listing = files(&dir, &url, "bad").await;
    assert!(listing.contains("2 documents"), "{listing}");
    assert!(
        !listing.contains("incomplete") && !listing.contains("being read"),
        "{listing}"
    );
    // A file over the size limit is refused before reading.
    let mut cmd = anchorbot(&dir, &url);
    cmd.env("ANCHORBOT_DOCUMENTS_MAX_FILE_MB", "0")
        .args(["ingest", "--conversation", "bad"])
        .arg(&text_as_png);
    let (ok, _, err) = run(cmd).await;
    assert!(!ok && err.contains("over the 0-byte limit"), "{err}");
    // More text than one document may hold is refused before embedding, and nothing is kept.
    let long = write(
        d,
        "long.txt",
        "A line of ordinary words. ".repeat(2000).as_bytes(),
    );
    let mut cmd = anchorbot(&dir, &url);
    cmd.env("ANCHORBOT_DOCUMENTS_MAX_CHUNKS", "5")
        .args(["ingest", "--conversation", "bad"])
        .arg(&long);
    let (ok, _, err) = run(cmd).await;
    assert!(!ok && err.contains("too much text"), "{err}");
    assert!(err.contains("over the limit of 5"), "{err}");
    let listing = files(&dir, &url, "bad").await;
    assert!(
        listing.contains("2 documents") && !listing.contains("long.txt"),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_ingest_is_marked_incomplete_and_resumes() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Six scanned pages OCR'd one at a time, slowly, so the process can be killed mid-way.
    let mut pages = Vec::new();
    for i in 0..6 {
        pages.push(fixtures::render_text_to_gray(&[&format!("PAGE {i}")]));
    }
    let (w, h, _) = pages[0].clone();
    let pdf = write(tmp.path(), "scan6.pdf", &multi_page_gray_pdf(w, h, &pages));
    let vision = FakeLlm::start(|_| {
        let mut r = Reply::chunks(
            vec!["A scanned page about quarterly planning and budgets.".into()],
            Some("stop"),
        );
        r.delay = Duration::from_millis(400);
        r
    })
    .await;
    let mut cmd = anchorbot(&dir, &vision.url);
    cmd.env("ANCHORBOT_DOCUMENTS_OCR_CONCURRENCY", "1")
        .env("ANCHORBOT_DOCUMENTS_EMBED_BATCH", "1")
        .args(["ingest", "--conversation", "k"])
        .arg(&pdf)
        // Killed mid-way: its progress lines are nobody's to read.
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Wait until some pages are stored, then kill -9.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while vision.requests().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "OCR never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let listing = files(&dir, &vision.url, "k").await;
    assert!(listing.contains("incomplete"), "{listing}");
    // Every stored chunk belongs to a page marked done.
    {
        let (_store, ds) = reopen(&dir).await;
        let doc = &ds.list("console:k").await.unwrap()[0];
        let done = doc
            .page_status
            .iter()
            .filter(|p| matches!(p, anchorbot::docs::PageSource::Ocr { .. }))
            .count();
        assert!(done < 6, "the kill came too late: {done} pages done");
        assert_eq!(ds.chunk_count("console:k").await, doc.chunks as usize);
        assert_eq!(doc.chunks as usize, done, "one chunk per stored page");
    }
    let before = vision.requests().len();
    let (ok, out, err) = ingest(&dir, &vision.url, "k", &[&pdf]).await;
    assert!(ok, "{err}");
    assert!(out.contains("resumed after"), "{out}");
    assert!(
        vision.requests().len() - before < 6,
        "stored pages were not OCR'd again"
    );
    assert!(files(&dir, &vision.url, "k").await.contains("ready"));
}

/// A PDF of several gray "scanned" pages.
fn multi_page_gray_pdf(w: u32, h: u32, pages: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    let pdfs: Vec<Vec<u8>> = pages
        .iter()
        .map(|(_, _, gray)| fixtures::gray_image_pdf(w, h, gray))
        .collect();
    fixtures::join_pdfs(&pdfs)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openai_compatible_embeddings_endpoint_can_replace_the_local_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    let notes = write(
        tmp.path(),
        "notes.md",
        b"# Travel\n\nThe offsite happens in Lisbon during June.\n\n# Hardware\n\nEvery engineer receives a laptop and a monitor.\n",
    );
    let with_endpoint = |cmd: &mut tokio::process::Command| {
        cmd.env("ANCHORBOT_DOCUMENTS_EMBEDDER", "openai")
            .env("ANCHORBOT_DOCUMENTS_CHUNK_TOKENS", "16")
            .env("ANCHORBOT_DOCUMENTS_CHUNK_OVERLAP", "0")
            // The local model is not needed: point it nowhere to prove it is not used.
            .env("ANCHORBOT_DOCUMENTS_MODEL_DIR", "/nonexistent")
            .env(
                "ANCHORBOT_DOCUMENTS_EMBEDDINGS",
                format!("{{url=\"{}\", model=\"bow-64\"}}", server.url),
            );
    };
    let mut cmd = anchorbot(&dir, &server.url);
    with_endpoint(&mut cmd);
    cmd.args(["ingest", "--conversation", "e"]).arg(&notes);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(out.contains("Added notes.md"), "{out}");
    let mut cmd = anchorbot(&dir, &server.url);
    with_endpoint(&mut cmd);
    cmd.args([
        "search",
        "--conversation",
        "e",
        "--json",
        "--top-k",
        "1",
        "which laptop and monitor",
    ]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        hits[0]["text"].as_str().unwrap().contains("laptop"),
        "{hits:?}"
    );
    let embed_reqs: Vec<Value> = server
        .requests()
        .into_iter()
        .filter(|r| r.get("input").is_some())
        .collect();
    assert!(embed_reqs.len() >= 2);
    assert_eq!(embed_reqs[0]["model"], "bow-64");
}
