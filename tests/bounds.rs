//! Reading is bounded by what it produces: hostile files that are small on disk (a shared
//! string in 40,000 cells, a cell in the last column of every row, a page whose content stream
//! inflates to 1 GiB) are refused or read within bounds, and data with no break (one 8 MB
//! word, a 6 MB line of commas) is skipped and reported, by the real `anchorbot ingest`, whose
//! peak memory (VmHWM) the test measures. A process still running after [`HANG_GUARD`] is
//! killed and the test fails: a guard against hangs, not a timing assertion. Also: a UTF-16
//! text file with a byte-order mark is text.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fixtures;
use common::peak::{run_measured, Measured};
use common::*;

/// Kills a child that has not finished by then.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// The peak resident memory an ingest may reach.
const MAX_PEAK_RSS_KB: u64 = 1 << 20;

/// Runs `anchorbot ingest` on `file` with embeddings from the fake server (the embedding
/// model is not what is measured), measuring its peak memory until it exits.
async fn ingest(dir: &Path, server: &FakeLlm, file: &Path, env: &[(&str, &str)]) -> Measured {
    let mut cmd = anchorbot(dir, &server.url);
    cmd.env("ANCHORBOT_DOCUMENTS_EMBEDDER", "openai")
        .env(
            "ANCHORBOT_DOCUMENTS_EMBEDDINGS",
            format!("{{url=\"{}\", model=\"bow-64\"}}", server.url),
        )
        .args(["ingest", "--conversation", "bounds"])
        .arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_measured(cmd, HANG_GUARD).await
}

fn assert_bounded(what: &str, run: &Measured) {
    assert!(
        run.peak_kb < MAX_PEAK_RSS_KB,
        "{what}: peak RSS {} MB, over 1 GiB",
        run.peak_kb >> 10
    );
    eprintln!(
        "{what}: peak RSS {} MB; {}{}",
        run.peak_kb >> 10,
        run.stdout.trim(),
        run.stderr.trim()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shared_string_in_40k_cells_is_refused_while_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    // 40,000 cells × 75,000 characters: 3 GB of text from a file of about 200 KB.
    let bytes = fixtures::xlsx_one_string_everywhere(40_000, 75_000);
    assert!(bytes.len() < 400 * 1024, "{} bytes", bytes.len());
    let file = write(tmp.path(), "everywhere.xlsx", &bytes);
    let run = ingest(&tmp.path().join("data"), &server, &file, &[]).await;
    assert_bounded("shared string", &run);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("more than 34,560,000 characters of text"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Added"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_whose_only_cell_is_in_column_xfd_are_not_padded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    // Padded to width, 40,000 rows would be 2 GB of separators.
    let bytes = fixtures::xlsx_last_column(40_000);
    assert!(bytes.len() < 400 * 1024, "{} bytes", bytes.len());
    let file = write(tmp.path(), "far.xlsx", &bytes);
    let run = ingest(&tmp.path().join("data"), &server, &file, &[]).await;
    assert_bounded("column XFD", &run);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("Added far.xlsx: 1 sheet"),
        "{}",
        run.stdout
    );
    // Each row is `XFD: n`, a few tokens: a thousand-odd chunks, not millions.
    let chunks = chunk_count(&run.stdout);
    assert!(chunks < 5_000, "{chunks} chunks");
    // The last rows were read and embedded.
    assert!(embedding_inputs(&server)
        .iter()
        .any(|t| t.contains("XFD: 39999")));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_8_mb_word_between_paragraphs_is_skipped_and_reported_and_the_prose_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    let word = fixtures::one_long_word(8 << 20, 8);
    let mut page = b"The offsite happens in Lisbon during June.\n\n".to_vec();
    page.extend_from_slice(&word);
    page.extend_from_slice(b"\n\nBudget approvals close on the first Friday of May.\n");
    let file = write(tmp.path(), "blob.txt", &page);
    let run = ingest(&tmp.path().join("data"), &server, &file, &[]).await;
    assert_bounded("8 MB word", &run);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("; skipped 8 MB of unbroken text (data, not prose)."),
        "{}",
        run.stdout
    );
    let inputs = embedding_inputs(&server);
    assert_eq!(inputs.len(), chunk_count(&run.stdout));
    let text = inputs.join("\n");
    assert!(
        text.contains("Lisbon") && text.contains("first Friday"),
        "{text}"
    );
    let head = std::str::from_utf8(&word[..40]).unwrap();
    assert!(!text.contains(head), "the word was embedded");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_8_mb_page_of_4_kb_words_is_chunked_in_linear_time() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    // Just under the length taken as data: these are read, in pieces of at most 64 letters.
    let letters = fixtures::one_long_word(8 << 20, 8);
    let words: Vec<u8> = letters
        .chunks(4000)
        .flat_map(|w| w.iter().copied().chain([b' ']))
        .collect();
    let file = write(tmp.path(), "words.txt", &words);
    // Chunks of 256 tokens keep the 8 MB under the chunk limit: what is measured here is that
    // chunking stays linear, not the limit.
    let env = [("ANCHORBOT_DOCUMENTS_CHUNK_TOKENS", "256")];
    let run = ingest(&tmp.path().join("data"), &server, &file, &env).await;
    assert_bounded("8 MB of 4 KB words", &run);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("Added words.txt"), "{}", run.stdout);
    assert!(!run.stdout.contains("skipped"), "{}", run.stdout);
    let inputs = embedding_inputs(&server);
    assert_eq!(inputs.len(), chunk_count(&run.stdout));
    // The last word's last 32 letters are one piece (608 letters, cut every 64).
    let tail = std::str::from_utf8(&letters[letters.len() - 32..]).unwrap();
    assert!(inputs.iter().any(|t| t.contains(tail)));
    assert!(inputs
        .iter()
        .flat_map(|t| t.split_whitespace())
        .all(|w| w.len() <= 64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_6_mb_line_of_commas_is_skipped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    let file = write(tmp.path(), "commas.csv", &vec![b','; 6 << 20]);
    let run = ingest(&tmp.path().join("data"), &server, &file, &[]).await;
    assert_bounded("6 MB of commas", &run);
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "commas.csv: the file has no readable text: skipped 6 MB of unbroken text (data, not prose)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        embedding_inputs(&server).is_empty(),
        "nothing is embedded, the embedder is not even asked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chunk_limit_counts_what_is_left_after_data_is_skipped_and_comes_before_embedding() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    let blob = "QUJDRA==".repeat((3 << 20) / 8);
    let prose = "The offsite happens in Lisbon during June. ".repeat(10);
    let limit = [("ANCHORBOT_DOCUMENTS_MAX_CHUNKS", "5")];
    // 3 MB of base64 and a paragraph: a few chunks once the blob is skipped.
    let small = write(
        tmp.path(),
        "small.md",
        format!("{prose}\n\n![x](data:image/png;base64,{blob})\n").as_bytes(),
    );
    let run = ingest(&tmp.path().join("a"), &server, &small, &limit).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("; skipped 3 MB of unbroken text"),
        "{}",
        run.stdout
    );
    // The same blob with more prose than five chunks hold: refused, and nothing embedded.
    let big = write(
        tmp.path(),
        "big.md",
        format!("{}\n\n{blob}\n", prose.repeat(20)).as_bytes(),
    );
    let before = embedding_inputs(&server).len();
    let run = ingest(&tmp.path().join("b"), &server, &big, &limit).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains("too much text") && run.stderr.contains("over the limit of 5"),
        "{}",
        run.stderr
    );
    assert_eq!(embedding_inputs(&server).len(), before, "nothing embedded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_inflating_to_1_gib_is_stopped_and_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    // The vision model sees a blank page and says nothing.
    let server = FakeLlm::start(|_| Reply::text("")).await;
    let pdf = fixtures::inflating_pdf(1 << 30);
    assert!(pdf.len() < 2 << 20, "{} bytes", pdf.len());
    let file = write(tmp.path(), "inflating.pdf", &pdf);
    // Each poppler run gets 10 s: reading the text layer and rendering the page each take
    // about 8 s on an idle 2-core machine, so either may be stopped.
    let run = ingest(
        &tmp.path().join("data"),
        &server,
        &file,
        &[("ANCHORBOT_DOCUMENTS_PARSE_TIMEOUT_SECS", "10")],
    )
    .await;
    assert_bounded("inflating page", &run);
    assert!(!run.ok);
    assert!(!run.stdout.contains("Added"), "{}", run.stdout);
    let stopped = run.stderr.contains("took longer than 10 s and was stopped");
    let blank = run.stderr.contains("no readable text");
    assert!(stopped || blank, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_utf16_text_file_with_a_byte_order_mark_is_read_as_text() {
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeLlm::start(|_| Reply::text("unused")).await;
    let text = "Meeting notes\r\nThe offsite happens in Lisbon during June.\r\n";
    let bytes: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let file = write(tmp.path(), "notes.txt", &bytes);
    let run = ingest(&tmp.path().join("data"), &server, &file, &[]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("Added notes.txt: 1 page, 1 chunk"),
        "{}",
        run.stdout
    );
    let inputs = embedding_inputs(&server);
    assert!(
        inputs
            .iter()
            .any(|t| t.contains("The offsite happens in Lisbon during June.")),
        "{inputs:?}"
    );
}

/// The chunk count in an ingest summary.
fn chunk_count(summary: &str) -> usize {
    common::chunk_count(summary).unwrap_or_else(|| panic!("no chunk count in {summary}"))
}

/// Every text the fake server was asked to embed.
fn embedding_inputs(server: &FakeLlm) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r["input"].as_array())
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}
