//! Retrieval quality and latency benchmark.
//!
//! Quality: a corpus of public-domain and permissively licensed texts installed by Debian
//! packages (benches/retrieval/corpus.toml, CORPUS.md) is laid out as PDFs, ingested through
//! the real pipeline (`Documents::ingest`: pdftotext, chunking, all-MiniLM-L6-v2) into one
//! conversation, and the paraphrased questions of benches/retrieval/questions.toml are asked
//! with each retrieval method (`Documents::search_mode`). Each question's answer page is found
//! by its verbatim `needle` in the pages' extracted text (unique in its file, or the bench
//! fails); a hit is a passage citing that file and page. Prints recall@1, recall@5 and MRR@5
//! per method, overall, per source package and per question style.
//!
//! Latency and memory: 10k and 100k chunks in one conversation, made of the corpus' real chunk
//! texts (each with a sentence of another appended) and their real embeddings with a little
//! noise, written through the store API; 300 real questions timed end to end through
//! `search_mode` (query embedding included): p50/p99; then the process RSS with the 100k
//! chunks indexed.
//!
//! Run: `.ci/setup.sh && .ci/retrieval-corpus.sh && cargo bench --bench retrieval`.
//!
//! Environment:
//! - `RETRIEVAL_PART=quality|latency` runs one part only (default: both; the latency part
//!   ingests the corpus too, for its embeddings).
//! - `ANCHORBOT_BENCH_LLM_URL` (base URL including `/v1`) adds the fused + rerank row: the
//!   app's `Reranker` against that OpenAI-compatible server, e.g. the local llama.cpp model
//!   that `.ci/local-llm.sh` starts (`http://127.0.0.1:8005/v1`; the figures in BENCHMARKS.md
//!   are with `LOCAL_LLM=gemma`, Gemma 3 270M). With it:
//!   `ANCHORBOT_BENCH_LLM_MODEL` (default: the first model the server lists),
//!   `ANCHORBOT_BENCH_LLM_GGUF` (the model file, for its size; default: the local-llm.sh file
//!   of the model the server lists), `ANCHORBOT_BENCH_RERANK_TIMEOUT_MS` (default: the
//!   app's `documents.rerank_timeout_ms`) and `ANCHORBOT_BENCH_RERANK_SAMPLE=N` (rerank an
//!   evenly spread N of the questions, with the fused row repeated over the same N).
//! - `RETRIEVAL_VERBOSE=1` prints every question's rank per method; `=2` also the citations
//!   returned for the questions some method missed.
//! - `RETRIEVAL_EXPLORE=FILE` writes each question's dense and lexical top 50 (score, row,
//!   document, page, whether it is the answer page, cosine similarity) as JSON lines, for
//!   comparing fusions offline.
//! - `ANCHORBOT_DOCUMENTS_FUSION=score|rrf`, `ANCHORBOT_DOCUMENTS_QUANTIZED_QUERIES=true|false`,
//!   `ANCHORBOT_DOCUMENTS_EMBED_THREADS=N` choose the variant measured.
//! - `RETRIEVAL_DUMP=DIR` writes each PDF's extracted page texts to DIR (for writing questions).
//! - `RETRIEVAL_SIZES=10000,100000` sets the latency sizes.

use anchorbot_fakes::fixtures;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot::docs::extract::{self, Cancel, ReadLimits};
use anchorbot::docs::rerank::Reranker;
use anchorbot::docs::store::{ChunkRecord, NewChunk};
use anchorbot::docs::{DocRecord, DocStatus, Documents, PageSource, SearchMode};
use anchorbot::llm::pool::{EndpointPool, PoolPolicy};
use anchorbot::llm::tokens::Tiktoken;
use anchorbot::llm::{ChatBackend, ChatRequest, Completion, ItemStream, LlmError, ServerFacts};
use anchorbot::settings::Settings;
use anchorbot::storage::Location;
use anchorbot::store::Store;
use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// Layout of the generated PDFs: Helvetica 10 pt on US Letter, 50 lines of at most 90
/// characters a page (about 2,100 characters a page on average for this corpus, whose
/// licence and HTML lines are mostly shorter than 90, with blank lines between paragraphs).
const FONT_SIZE: f32 = 10.0;
const LINES_PER_PAGE: usize = 50;
const LINE_CHARS: usize = 90;
/// Passages asked for per question.
const K: usize = 5;
/// Shortest needle accepted.
const MIN_NEEDLE: usize = 25;
/// The conversation the corpus is ingested into.
const CONV: &str = "bench:retrieval-corpus";
/// Timed queries per size and method.
const QUERIES: usize = 300;

#[derive(Deserialize)]
struct Manifest {
    doc: Vec<DocSpec>,
}

#[derive(Deserialize, Clone)]
struct DocSpec {
    /// The PDF's name (what citations show).
    name: String,
    /// The Debian package that installs `path`.
    package: String,
    path: String,
    /// `text` or `html`.
    format: String,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
struct QuestionFile {
    question: Vec<QuestionSpec>,
}

#[derive(Deserialize, Clone)]
struct QuestionSpec {
    file: String,
    needle: String,
    /// Further needles, for an answer that a second page gives as well.
    #[serde(default)]
    also: Vec<String>,
    question: String,
    /// `term` or `paraphrase` (see questions.toml).
    style: String,
}

/// A question with its answer page, found from the needle.
struct Question {
    file: String,
    package: String,
    /// The answer's pages (one, unless `also` names more).
    pages: Vec<u32>,
    text: String,
    style: String,
}

/// One corpus document, laid out and read back.
struct CorpusDoc {
    spec: DocSpec,
    pdf: Vec<u8>,
    /// The text layer of each page as the pipeline's pdftotext call returns it.
    pages: Vec<String>,
}

fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn settings() -> Settings {
    let mut settings = Settings::default();
    // The embedding model and the fusion weight can be set, to compare them.
    settings.documents.model_dir = std::env::var_os("ANCHORBOT_DOCUMENTS_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join(".models/all-MiniLM-L6-v2"));
    if let Ok(w) = std::env::var("ANCHORBOT_DOCUMENTS_LEXICAL_WEIGHT") {
        settings.documents.lexical_weight = w
            .parse()
            .expect("ANCHORBOT_DOCUMENTS_LEXICAL_WEIGHT: a number");
    }
    if let Ok(q) = std::env::var("ANCHORBOT_DOCUMENTS_QUANTIZED_QUERIES") {
        settings.documents.quantized_queries = q
            .parse()
            .expect("ANCHORBOT_DOCUMENTS_QUANTIZED_QUERIES: true or false");
    }
    if let Ok(f) = std::env::var("ANCHORBOT_DOCUMENTS_FUSION") {
        settings.documents.fusion = match f.as_str() {
            "score" => anchorbot::settings::FusionChoice::Score,
            "rrf" => anchorbot::settings::FusionChoice::Rrf,
            other => panic!("ANCHORBOT_DOCUMENTS_FUSION={other}: score or rrf"),
        };
    }
    if let Ok(t) = std::env::var("ANCHORBOT_DOCUMENTS_EMBED_THREADS") {
        settings.documents.embed_threads = Some(
            t.parse()
                .expect("ANCHORBOT_DOCUMENTS_EMBED_THREADS: a number"),
        );
    }
    settings.documents.onnxruntime = root().join(".models/onnxruntime/libonnxruntime.so");
    settings
}

/// The sled store in `dir`.
async fn open_store(dir: &Path) -> Store {
    Store::new(Location::Sled(dir.to_path_buf()).open().await.unwrap())
}

fn documents(store: &Store, settings: &Settings) -> Documents {
    Documents::new(
        store.clone(),
        settings.documents.clone(),
        settings.vision.clone(),
        Arc::new(Tiktoken::cl100k()),
    )
    .unwrap()
}

async fn run() {
    let started = Instant::now();
    let part = std::env::var("RETRIEVAL_PART").unwrap_or_default();
    if part == "reopen" {
        return reopen_part().await;
    }
    let (quality, latency) = match part.as_str() {
        "" | "all" => (true, true),
        "quality" => (true, false),
        "latency" => (false, true),
        other => panic!("RETRIEVAL_PART={other}: use quality, latency or all"),
    };
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let settings = settings();
    if !settings.documents.model_dir.join("model.onnx").exists() {
        panic!(
            "{} is missing: run .ci/setup-models.sh (or .ci/setup.sh) first",
            settings.documents.model_dir.join("model.onnx").display()
        );
    }
    let rss_start = rss_mb("VmRSS:");

    // The corpus, laid out as PDFs and read back as the pipeline reads them.
    let t = Instant::now();
    let corpus = build_corpus(&settings).await;
    let total_pages: usize = corpus.iter().map(|d| d.pages.len()).sum();
    let total_chars: usize = corpus
        .iter()
        .flat_map(|d| &d.pages)
        .map(|p| {
            p.split_whitespace()
                .map(|w| w.chars().count() + 1)
                .sum::<usize>()
        })
        .sum();
    println!(
        "\n== corpus: {} PDFs, {total_pages} pages, {:.0}k characters ({:.0} per page), laid out and read back in {:.1} s",
        corpus.len(),
        total_chars as f64 / 1000.0,
        total_chars as f64 / total_pages as f64,
        t.elapsed().as_secs_f64()
    );
    let mut by_package: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for d in &corpus {
        let e = by_package.entry(d.spec.package.as_str()).or_default();
        e.0 += 1;
        e.1 += d.pages.len();
    }
    for (package, (files, pages)) in &by_package {
        println!("  {package:<16} {files:>2} PDFs {pages:>4} pages");
    }
    if let Ok(dir) = std::env::var("RETRIEVAL_DUMP") {
        dump(&corpus, Path::new(&dir));
    }
    let questions = load_questions(&corpus);
    println!(
        "  {} questions over {} of the {} files",
        questions.len(),
        questions
            .iter()
            .map(|q| q.file.as_str())
            .collect::<HashSet<_>>()
            .len(),
        corpus.len()
    );

    // Ingest through the real pipeline into one conversation.
    let tmp = tempfile::tempdir().unwrap();
    let store = open_store(&tmp.path().join("data")).await;
    let mut docs = documents(&store, &settings);
    let llm_url = std::env::var("ANCHORBOT_BENCH_LLM_URL")
        .ok()
        .filter(|u| !u.is_empty() && quality);
    let llm = match llm_url {
        Some(url) => Some(RerankSetup::new(&settings, &url).await),
        None => None,
    };
    if let Some(r) = &llm {
        docs.set_reranker(r.reranker.clone());
    }
    docs.embedder()
        .await
        .expect("the embedding model loads (run .ci/setup-models.sh first)");
    let rss_model = rss_mb("VmRSS:");
    let (tx, _rx) = tokio::sync::watch::channel(String::new());
    let t = Instant::now();
    let mut chunks = 0;
    for d in &corpus {
        let report = docs
            .ingest(CONV, &d.spec.name, &d.pdf, &tx)
            .await
            .unwrap_or_else(|e| panic!("ingesting {}: {e}", d.spec.name));
        assert_eq!(
            report.doc.status,
            DocStatus::Ready,
            "{} was not fully read",
            d.spec.name
        );
        assert_eq!(report.doc.pages as usize, d.pages.len());
        chunks += report.doc.chunks;
    }
    let ingest_secs = t.elapsed().as_secs_f64();
    println!(
        "  ingested through Documents::ingest: {chunks} chunks in {ingest_secs:.1} s ({:.1} pages/s)",
        total_pages as f64 / ingest_secs
    );

    if quality {
        quality_part(&docs, &questions, llm.as_ref()).await;
    }
    if latency {
        let base = corpus_chunks(&store, &docs).await;
        let rss_ingested = rss_mb("VmRSS:");
        drop(docs);
        drop(store);
        drop(tmp);
        let queries: Vec<String> = questions.iter().map(|q| q.text.clone()).collect();
        latency_part(
            &settings,
            &base,
            &queries,
            rss_start,
            rss_model,
            rss_ingested,
        )
        .await;
    }
    println!(
        "\nbench ran {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
}

// ---------------------------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------------------------

fn read_manifest<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = root().join("benches/retrieval").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Figment::from(Toml::string(&text))
        .extract()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The source text of one document: the file read (through gzip when compressed), cut to
/// `start..end` and turned into plain text.
fn source_text(spec: &DocSpec) -> String {
    let path = Path::new(&spec.path);
    if !path.exists() {
        panic!(
            "{} is missing: install the Debian package `{}` (.ci/retrieval-corpus.sh installs the corpus)",
            spec.path, spec.package
        );
    }
    let bytes = if spec.path.ends_with(".gz") {
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("gzip -dc {}: {e}", spec.path));
        assert!(out.status.success(), "gzip -dc {} failed", spec.path);
        out.stdout
    } else {
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", spec.path))
    };
    // No-break spaces (the Jargon File's headings have them) are spaces here.
    let text = String::from_utf8_lossy(&bytes).replace('\u{a0}', " ");
    let line_start = |at: usize| text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let from = match &spec.start {
        Some(m) => line_start(
            text.find(m.as_str())
                .unwrap_or_else(|| panic!("{}: start marker {m:?} not found", spec.path)),
        ),
        None => 0,
    };
    let to = match &spec.end {
        Some(m) => line_start(
            from + text[from..]
                .find(m.as_str())
                .unwrap_or_else(|| panic!("{}: end marker {m:?} not found", spec.path)),
        ),
        None => text.len(),
    };
    let part = &text[from..to];
    match spec.format.as_str() {
        "text" => part.to_string(),
        "html" => extract::html_to_text(part, &Cancel::never())
            .unwrap_or_else(|e| panic!("{}: {e}", spec.path)),
        other => panic!("{}: unknown format {other:?}", spec.name),
    }
}

/// Lines of at most [`LINE_CHARS`] characters, tabs expanded, runs of blank lines kept to one.
fn layout_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.lines() {
        let mut line = String::new();
        for c in raw.chars() {
            match c {
                '\t' => {
                    let pad = 8 - line.chars().count() % 8;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                c if c.is_control() => {}
                c => line.push(c),
            }
        }
        let line = line.trim_end();
        if line.is_empty() {
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            continue;
        }
        // Wrap at spaces, keeping the indentation (at most 40 columns) on the first line only;
        // a word longer than a line is cut.
        let indent = line.chars().take_while(|c| *c == ' ').count().min(40);
        let mut current: String = " ".repeat(indent);
        let mut width = indent;
        let mut has_word = false;
        for word in line.split_whitespace() {
            let mut rest: Vec<char> = word.chars().collect();
            loop {
                let need = rest.len() + usize::from(has_word);
                if width + need <= LINE_CHARS {
                    if has_word {
                        current.push(' ');
                    }
                    current.extend(rest.iter());
                    width += need;
                    has_word = true;
                    break;
                }
                if has_word {
                    out.push(std::mem::take(&mut current));
                    width = 0;
                    has_word = false;
                    continue;
                }
                let head: String = rest.drain(..LINE_CHARS - width).collect();
                current.push_str(&head);
                out.push(std::mem::take(&mut current));
                width = 0;
            }
        }
        if has_word {
            out.push(current);
        }
    }
    out
}

fn paginate(lines: Vec<String>) -> Vec<Vec<String>> {
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut page: Vec<String> = Vec::new();
    for line in lines {
        if page.is_empty() && line.is_empty() {
            continue;
        }
        page.push(line);
        if page.len() == LINES_PER_PAGE {
            pages.push(std::mem::take(&mut page));
        }
    }
    if page.iter().any(|l| !l.is_empty()) {
        pages.push(page);
    }
    pages
}

async fn build_corpus(settings: &Settings) -> Vec<CorpusDoc> {
    let manifest: Manifest = read_manifest("corpus.toml");
    let dir = tempfile::tempdir().unwrap();
    let limits = ReadLimits::for_documents(&settings.documents);
    let mut corpus = Vec::new();
    let mut names = HashSet::new();
    for spec in manifest.doc {
        assert!(names.insert(spec.name.clone()), "{} twice", spec.name);
        let pages = paginate(layout_lines(&source_text(&spec)));
        let borrowed: Vec<Vec<&str>> = pages
            .iter()
            .map(|p| p.iter().map(String::as_str).collect())
            .collect();
        let pdf = fixtures::text_pdf_sized(&borrowed, FONT_SIZE);
        let path = dir.path().join(&spec.name);
        std::fs::write(&path, &pdf).unwrap();
        let text = extract::pdf_text(
            &path,
            1,
            pages.len() as u32,
            Duration::from_secs(120),
            &limits,
        )
        .await
        .unwrap_or_else(|e| panic!("pdftotext on {}: {e} (install poppler-utils)", spec.name));
        corpus.push(CorpusDoc {
            spec,
            pdf,
            pages: text,
        });
    }
    corpus
}

fn dump(corpus: &[CorpusDoc], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for d in corpus {
        let mut s = String::new();
        for (i, p) in d.pages.iter().enumerate() {
            let _ = writeln!(s, "=== {} page {}\n{p}", d.spec.name, i + 1);
        }
        std::fs::write(dir.join(format!("{}.txt", d.spec.name)), s).unwrap();
    }
    println!("  page texts written to {}", dir.display());
}

/// Whitespace runs made one space, so a needle matches across line breaks and layout spacing.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The questions with their answer pages, found by the needles; fails on any needle that is
/// too short, missing, found more than once in its file, or split by a page break.
fn load_questions(corpus: &[CorpusDoc]) -> Vec<Question> {
    let file: QuestionFile = read_manifest("questions.toml");
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (n, q) in file.question.iter().enumerate() {
        let n = n + 1;
        let Some(doc) = corpus.iter().find(|d| d.spec.name == q.file) else {
            problems.push(format!("question {n}: no file {:?} in the corpus", q.file));
            continue;
        };
        if q.style != "term" && q.style != "paraphrase" {
            problems.push(format!(
                "question {n}: style {:?} is neither \"term\" nor \"paraphrase\"",
                q.style
            ));
        }
        let texts: Vec<String> = doc.pages.iter().map(|p| squash(p)).collect();
        let whole = texts.join(" ");
        let mut pages = Vec::new();
        for raw in std::iter::once(&q.needle).chain(&q.also) {
            let needle = squash(raw);
            if needle.chars().count() < MIN_NEEDLE {
                problems.push(format!(
                    "question {n}: needle {needle:?} is shorter than {MIN_NEEDLE} characters"
                ));
                continue;
            }
            let count = whole.matches(needle.as_str()).count();
            let on: Vec<u32> = texts
                .iter()
                .enumerate()
                .filter(|(_, p)| p.contains(needle.as_str()))
                .map(|(i, _)| i as u32 + 1)
                .collect();
            match (count, on.as_slice()) {
                (0, _) => {
                    problems.push(format!("question {n}: needle {needle:?} not in {}", q.file))
                }
                (1, [page]) => pages.push(*page),
                (1, _) => problems.push(format!(
                    "question {n}: needle {needle:?} crosses a page break in {}",
                    q.file
                )),
                (c, _) => problems.push(format!(
                    "question {n}: needle {needle:?} is in {} {c} times (pages {on:?}); it must be unique",
                    q.file
                )),
            }
        }
        pages.sort_unstable();
        pages.dedup();
        if !pages.is_empty() {
            out.push(Question {
                file: q.file.clone(),
                package: doc.spec.package.clone(),
                pages,
                text: q.question.clone(),
                style: q.style.clone(),
            });
        }
    }
    if !problems.is_empty() {
        panic!(
            "benches/retrieval/questions.toml:\n  {}",
            problems.join("\n  ")
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Quality
// ---------------------------------------------------------------------------------------------

#[derive(Default, Clone)]
struct Score {
    n: usize,
    at1: usize,
    at5: usize,
    rr: f64,
}

impl Score {
    fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if rank == Some(1) {
            self.at1 += 1;
        }
        if let Some(r) = rank {
            self.at5 += 1;
            self.rr += 1.0 / r as f64;
        }
    }
    fn r1(&self) -> f64 {
        self.at1 as f64 / self.n.max(1) as f64
    }
    fn r5(&self) -> f64 {
        self.at5 as f64 / self.n.max(1) as f64
    }
    fn mrr(&self) -> f64 {
        self.rr / self.n.max(1) as f64
    }
}

fn mode_name(mode: SearchMode) -> &'static str {
    match mode {
        SearchMode::Dense => "dense",
        SearchMode::Lexical => "lexical (BM25)",
        SearchMode::Fused => "fused",
        SearchMode::Reranked => "fused + rerank",
    }
}

/// The reasoning model behind `url`: its name (`ANCHORBOT_BENCH_LLM_MODEL`, or the first the
/// server lists) and a description with its size when its GGUF file is found.
async fn llm_description(url: &str) -> (String, String) {
    let listed = async {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/models", url.trim_end_matches('/')))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"][0]["id"].as_str().map(str::to_string)
    }
    .await;
    let model = std::env::var("ANCHORBOT_BENCH_LLM_MODEL")
        .ok()
        .or(listed)
        .unwrap_or_else(|| "gemma-3-270m".into());
    let gguf = std::env::var("ANCHORBOT_BENCH_LLM_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            root().join(if model.starts_with("smollm2") {
                ".models/SmolLM2-135M-Instruct.Q4_1.gguf"
            } else {
                ".models/gemma-3-270m-q4_k_m.gguf"
            })
        });
    let description = match std::fs::metadata(&gguf) {
        Ok(m) => format!(
            "{model} at {url} ({}, {:.0} MB)",
            gguf.file_name().unwrap_or_default().to_string_lossy(),
            m.len() as f64 / 1e6
        ),
        Err(_) => {
            format!("{model} at {url} (model file size unknown: set ANCHORBOT_BENCH_LLM_GGUF)")
        }
    };
    (model, description)
}

/// Calls to the reranking model, as seen from outside the reranker.
#[derive(Default)]
struct Calls {
    started: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    answer_ms: AtomicU64,
}

/// The reasoning endpoint behind the reranker, counting its calls (a call the reranker's time
/// limit cancels is started but neither answered nor failed).
struct Counting {
    inner: EndpointPool,
    calls: Arc<Calls>,
}

#[async_trait::async_trait]
impl ChatBackend for Counting {
    async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError> {
        self.inner.stream(request).await
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        self.calls.started.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let done = self.inner.complete(request).await;
        match &done {
            Ok(_) => {
                self.calls.answered.fetch_add(1, Ordering::Relaxed);
                self.calls
                    .answer_ms
                    .fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.calls.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        done
    }

    async fn facts(&self) -> ServerFacts {
        self.inner.facts().await
    }

    async fn health_check(&self) {
        self.inner.health_check().await
    }
}

/// The reranker of the fused + rerank row: the app's own `Reranker` over the endpoint at
/// `ANCHORBOT_BENCH_LLM_URL`.
struct RerankSetup {
    reranker: Arc<Reranker>,
    calls: Arc<Calls>,
    timeout: Duration,
    description: String,
}

impl RerankSetup {
    async fn new(settings: &Settings, url: &str) -> Self {
        let mut reasoning = settings.reasoning.clone();
        reasoning.url = url.trim_end_matches('/').to_string();
        reasoning.fallback_urls.clear();
        let (model, description) = llm_description(&reasoning.url).await;
        reasoning.model = model;
        let timeout = Duration::from_millis(
            std::env::var("ANCHORBOT_BENCH_RERANK_TIMEOUT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(settings.documents.rerank_timeout_ms)
                .max(1),
        );
        let calls = Arc::new(Calls::default());
        let policy = PoolPolicy {
            retries: 0,
            backoff: Duration::from_millis(100),
            cooldown: Duration::from_secs(1),
        };
        let backend = Counting {
            inner: EndpointPool::new(vec![reasoning.clone()], policy),
            calls: calls.clone(),
        };
        let reranker = Arc::new(
            Reranker::new(Arc::new(backend), timeout).with_think_start(reasoning.think_start()),
        );
        Self {
            reranker,
            calls,
            timeout,
            description,
        }
    }
}

/// One row of the quality table: a method over some of the questions.
struct Row {
    label: String,
    score: Score,
    per: BTreeMap<String, Score>,
    ms: f64,
    /// Per question: its rank and the citations returned, or `None` when not asked.
    ranks: Vec<Option<(Option<usize>, Vec<String>)>>,
}

/// Asks `mode` the questions whose index is in `asked`.
async fn evaluate(
    docs: &Documents,
    questions: &[Question],
    mode: SearchMode,
    asked: &[usize],
) -> Row {
    let mut ranks = vec![None; questions.len()];
    let t = Instant::now();
    for &i in asked {
        let q = &questions[i];
        let hits = docs
            .search_mode(CONV, &q.text, K, mode)
            .await
            .unwrap_or_else(|e| panic!("{} search failed: {e}", mode_name(mode)));
        let rank = hits
            .iter()
            .take(K)
            .position(|p| p.name == q.file && p.page.is_some_and(|n| q.pages.contains(&n)))
            .map(|i| i + 1);
        ranks[i] = Some((rank, hits.iter().map(|p| p.citation.clone()).collect()));
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / asked.len().max(1) as f64;
    let mut row = Row {
        label: mode_name(mode).to_string(),
        score: Score::default(),
        per: BTreeMap::new(),
        ms,
        ranks,
    };
    row.tally(questions);
    row
}

impl Row {
    fn tally(&mut self, questions: &[Question]) {
        self.score = Score::default();
        self.per.clear();
        for (q, r) in questions.iter().zip(&self.ranks) {
            if let Some((rank, _)) = r {
                self.score.add(*rank);
                self.per.entry(q.package.clone()).or_default().add(*rank);
                self.per
                    .entry(format!("style: {}", q.style))
                    .or_default()
                    .add(*rank);
            }
        }
    }
}

async fn quality_part(docs: &Documents, questions: &[Question], llm: Option<&RerankSetup>) {
    // 1: each question's rank per method; 2: also the citations found for questions missed.
    let verbose: u8 = std::env::var("RETRIEVAL_VERBOSE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cfg = docs.settings();
    println!(
        "fusion: {}; questions embedded by the {} model",
        match cfg.fusion {
            anchorbot::settings::FusionChoice::Score =>
                format!("similarity + lexical bonus (at most {})", cfg.lexical_bonus),
            anchorbot::settings::FusionChoice::Rrf => format!(
                "reciprocal rank, k = 60, lexical weight {}",
                cfg.lexical_weight
            ),
        },
        if cfg.quantized_queries && cfg.model_dir.join("model_quantized.onnx").is_file() {
            "int8"
        } else {
            "fp32"
        }
    );
    // Warm up the model (its first call allocates).
    let _ = docs
        .search_mode(CONV, "warm-up", K, SearchMode::Dense)
        .await;
    if let Ok(path) = std::env::var("RETRIEVAL_EXPLORE") {
        // The index is built on the blocking pool (it waits for the store).
        let idx = tokio::task::block_in_place(|| docs.store().index(CONV)).unwrap();
        let embedder = docs.embedder().await.unwrap();
        let mut out = String::new();
        for q in questions {
            let v = embedder
                .embed(vec![q.text.clone()])
                .await
                .unwrap()
                .pop()
                .unwrap();
            let mut lists = Vec::new();
            for list in [idx.dense_scored(&v, 50), idx.lexical(&q.text, 50)] {
                let mut items = Vec::new();
                for (score, row) in list {
                    let c = docs.store().chunk(CONV, &idx, row).await.unwrap().unwrap();
                    let hit = c.name == q.file && c.page.is_some_and(|n| q.pages.contains(&n));
                    let pl = idx.places[row];
                    let cos = idx.similarity(&v, &[row])[0].0;
                    items.push(serde_json::json!([score, row, pl.doc, pl.page, hit, cos]));
                }
                lists.push(items);
            }
            let line = serde_json::json!({"q": q.text, "style": q.style, "pkg": q.package, "dense": lists[0], "lex": lists[1]});
            out.push_str(&line.to_string());
            out.push('\n');
        }
        std::fs::write(path, out).unwrap();
    }
    let all: Vec<usize> = (0..questions.len()).collect();
    let mut rows = Vec::new();
    for mode in [SearchMode::Dense, SearchMode::Lexical, SearchMode::Fused] {
        rows.push(evaluate(docs, questions, mode, &all).await);
    }
    if llm.is_some() {
        // A small CPU model takes many seconds a call: ANCHORBOT_BENCH_RERANK_SAMPLE asks an
        // evenly spread sample, and the fused row is repeated over the same questions.
        let n = std::env::var("ANCHORBOT_BENCH_RERANK_SAMPLE")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(questions.len())
            .clamp(1, questions.len());
        let sample: Vec<usize> = (0..n).map(|i| i * questions.len() / n).collect();
        let mut row = evaluate(docs, questions, SearchMode::Reranked, &sample).await;
        if n < questions.len() {
            let fused = &rows[2];
            let mut same = Row {
                label: format!("fused, the same {n} questions"),
                score: Score::default(),
                per: BTreeMap::new(),
                ms: fused.ms,
                ranks: (0..questions.len())
                    .map(|i| {
                        if sample.contains(&i) {
                            fused.ranks[i].clone()
                        } else {
                            None
                        }
                    })
                    .collect(),
            };
            same.tally(questions);
            row.label = format!("fused + rerank, {n} questions");
            rows.push(same);
        }
        rows.push(row);
    }

    println!(
        "\n== retrieval quality: {} paraphrased questions, top {K}, a hit is the answer's file and page",
        questions.len()
    );
    println!("\n| method | recall@1 | recall@5 | MRR@5 | mean time per query |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.0} ms |",
            r.label,
            r.score.r1(),
            r.score.r5(),
            r.score.mrr(),
            r.ms
        );
    }
    match llm {
        Some(r) => {
            let c = &r.calls;
            let started = c.started.load(Ordering::Relaxed);
            let ok = c.answered.load(Ordering::Relaxed);
            let failed = c.failed.load(Ordering::Relaxed);
            println!(
                "\nrerank model: {}\n  {started} rerank calls (time limit {} ms, \
                 ANCHORBOT_BENCH_RERANK_TIMEOUT_MS): {ok} answered (mean {:.1} s), {failed} failed, \
                 {} over the limit; an unanswered or unusable call keeps the fused order",
                r.description,
                r.timeout.as_millis(),
                c.answer_ms.load(Ordering::Relaxed) as f64 / 1000.0 / ok.max(1) as f64,
                started.saturating_sub(ok + failed),
            );
        }
        None => println!(
            "\n(fused + rerank skipped: set ANCHORBOT_BENCH_LLM_URL to an OpenAI-compatible base URL \
             including /v1, e.g. start the local llama.cpp model with `.ci/local-llm.sh` and use \
             http://127.0.0.1:8005/v1)"
        ),
    }
    println!("\nrecall@5 by source package and by question style:\n");
    let mut header = "| questions | n |".to_string();
    let mut rule = "|---|---|".to_string();
    for r in &rows {
        header.push_str(&format!(" {} |", r.label));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for group in rows[0].per.keys() {
        let mut line = format!("| {group} | {} |", rows[0].per[group].n);
        for r in &rows {
            match r.per.get(group) {
                Some(s) => line.push_str(&format!(" {:.2} ({}) |", s.r5(), s.n)),
                None => line.push_str(" – |"),
            }
        }
        println!("{line}");
    }
    if verbose > 0 {
        println!(
            "\nranks per question ({}; - = not in the top {K}, · = not asked):",
            rows.iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (i, q) in questions.iter().enumerate() {
            let marks: Vec<String> = rows
                .iter()
                .map(|r| match &r.ranks[i] {
                    None => "·".into(),
                    Some((None, _)) => "-".into(),
                    Some((Some(rank), _)) => rank.to_string(),
                })
                .collect();
            println!(
                "  {:>3} [{}] {} p.{}: {}",
                i + 1,
                marks.join(" "),
                q.file,
                q.pages
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                q.text
            );
            let missed = rows.iter().any(|r| matches!(r.ranks[i], Some((None, _))));
            if verbose > 1 && missed {
                for r in &rows {
                    if let Some((_, cites)) = &r.ranks[i] {
                        println!("        {:<15} {}", r.label, cites.join(" · "));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Latency and memory
// ---------------------------------------------------------------------------------------------

/// The corpus' stored chunks with their embeddings: read from the store when its vectors are
/// plain `f32` rows of the model's dimension, embedded again otherwise.
async fn corpus_chunks(store: &Store, docs: &Documents) -> Vec<(ChunkRecord, Vec<f32>)> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    store
        .storage()
        .documents
        .scan_chunks(CONV, &mut |row| {
            let Ok(c) = serde_json::from_slice::<ChunkRecord>(&row.record) else {
                return;
            };
            let v: Option<Vec<f32>> = (row.vector.len() == 384 * 4).then(|| {
                row.vector
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            });
            match v {
                Some(v) => out.push((c, v)),
                None => missing.push(c),
            }
        })
        .await
        .unwrap();
    if !missing.is_empty() {
        let embedder = docs.embedder().await.unwrap();
        for batch in missing.chunks(64) {
            let texts: Vec<String> = batch.iter().map(|c| c.text.clone()).collect();
            let vs = embedder.embed(texts).await.unwrap();
            out.extend(batch.iter().cloned().zip(vs));
        }
    }
    assert!(!out.is_empty(), "no chunks were stored for the corpus");
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Roughly normal, mean 0, standard deviation 1 (sum of uniforms).
    fn gauss(&mut self) -> f32 {
        (0..4)
            .map(|_| (self.next() >> 11) as f32 / (1u64 << 53) as f32)
            .sum::<f32>()
            * 1.732
            - 3.464
    }
}

/// The first sentence of `text` (at most 200 characters).
fn a_sentence(text: &str) -> &str {
    let end = text
        .char_indices()
        .find(|&(i, c)| (c == '.' && i > 20) || i > 200)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    &text[..end]
}

/// Writes `n` chunks into `conv`: documents of 1,000 chunks (10 pages of 100), each chunk a
/// corpus chunk's text with a sentence of another appended, and its embedding with noise.
async fn write_synthetic(
    docs: &Documents,
    conv: &str,
    n: usize,
    base: &[(ChunkRecord, Vec<f32>)],
) -> f64 {
    let mut rng = Rng(0x2545F4914F6CDD1D ^ n as u64);
    let t = Instant::now();
    let per_doc = 1000;
    let per_page = 100;
    for d in 0..n.div_ceil(per_doc) {
        let count = per_doc.min(n - d * per_doc);
        let pages = count.div_ceil(per_page) as u32;
        let mut rec = DocRecord {
            id: format!("synthetic{d:05}"),
            name: format!("synthetic-{d:05}.pdf"),
            mime: "application/pdf".into(),
            size: 0,
            sha256: format!("{d:064}"),
            pages,
            status: DocStatus::Ready,
            ingested_at_ms: 0,
            page_status: vec![PageSource::Text; pages as usize],
            chunks: 0,
            paged: true,
            page_labels: Vec::new(),
            partial: None,
            skipped: Default::default(),
        };
        let rows: Vec<NewChunk> = (0..count)
            .map(|i| {
                let (c, v) = &base[rng.below(base.len())];
                let other = &base[rng.below(base.len())].0.text;
                let page = (i / per_page) as u32 + 1;
                let mut vector: Vec<f32> = v.iter().map(|x| x + 0.01 * rng.gauss()).collect();
                anchorbot::docs::embed::normalize(&mut vector);
                NewChunk {
                    page,
                    record: ChunkRecord {
                        doc_id: rec.id.clone(),
                        name: rec.name.clone(),
                        page: Some(page),
                        position: (i % per_page) as u32,
                        heading: c.heading.clone(),
                        text: format!("{} {}", c.text, a_sentence(other)),
                        label: None,
                    },
                    vector,
                }
            })
            .collect();
        rec.chunks = rows.len() as u32;
        docs.store().commit(conv, &rec, &rows).await.unwrap();
    }
    t.elapsed().as_secs_f64()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency_part(
    settings: &Settings,
    base: &[(ChunkRecord, Vec<f32>)],
    questions: &[String],
    rss_start: f64,
    rss_model: f64,
    rss_ingested: f64,
) {
    let sizes: Vec<usize> = std::env::var("RETRIEVAL_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("RETRIEVAL_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![10_000, 100_000]);
    // 300 distinct queries: the questions, then each again with the start of another.
    let queries: Vec<String> = (0..QUERIES)
        .map(|i| {
            let q = &questions[i % questions.len()];
            let round = i / questions.len();
            if round == 0 {
                q.clone()
            } else {
                let other = &questions[(i * 7 + round) % questions.len()];
                let words: Vec<&str> = other.split_whitespace().take(4 + round).collect();
                format!("{q} {}", words.join(" "))
            }
        })
        .collect();
    println!(
        "\n== query latency: top {K} through Documents::search_mode, query embedding included, \
         {QUERIES} real questions after a first query that loads the index"
    );
    println!(
        "(chunks: the corpus' {} real chunk texts, each with a sentence of another appended, and \
         their embeddings with noise (σ 0.01 per dimension, renormalized), in documents of 1,000 \
         chunks, written with DocStore::commit)\n",
        base.len()
    );
    println!("| chunks | method | p50 | p99 | max | first query (builds the index) | writing the chunks |");
    println!("|---|---|---|---|---|---|---|");
    let mut memory = Vec::new();
    let mut restarted = Vec::new();
    for &n in &sizes {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_store(&tmp.path().join("data")).await;
        let docs = documents(&store, settings);
        docs.embedder().await.unwrap();
        let rss_before = rss_mb("VmRSS:");
        let conv = format!("bench:latency{n}");
        let write_secs = write_synthetic(&docs, &conv, n, base).await;
        let t = Instant::now();
        let hits = docs
            .search_mode(
                &conv,
                "What may I do with the source code?",
                K,
                SearchMode::Fused,
            )
            .await
            .unwrap();
        assert_eq!(hits.len(), K);
        let first = t.elapsed().as_secs_f64() * 1000.0;
        for mode in [SearchMode::Fused, SearchMode::Dense, SearchMode::Lexical] {
            let mut lat = Vec::with_capacity(QUERIES);
            for q in &queries {
                let t = Instant::now();
                let hits = docs.search_mode(&conv, q, K, mode).await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(!hits.is_empty());
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            let extra = if mode == SearchMode::Fused {
                format!("{first:.0} ms | {write_secs:.1} s")
            } else {
                "| ".into()
            };
            println!(
                "| {n} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {extra} |",
                mode_name(mode),
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                lat[lat.len() - 1],
            );
        }
        memory.push((n, rss_before, rss_mb("VmRSS:")));
        // A restarted bot: a new process opens the store, loads the model, builds the index
        // from sled and answers the same queries. Its RSS is the figure for n chunks.
        drop(docs);
        drop(store);
        let qfile = tmp.path().join("queries.txt");
        std::fs::write(&qfile, queries.join("\n")).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("RETRIEVAL_PART", "reopen")
            .env("RETRIEVAL_DIR", tmp.path().join("data"))
            .env("RETRIEVAL_CONV", &conv)
            .env("RETRIEVAL_QUERIES", &qfile)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        restarted.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    println!("\n== a restarted process: opens the store, loads the model, builds the index from sled, then the same {QUERIES} queries (fused)\n");
    println!("| chunks | p50 | p99 | max | first query (builds the index) | one-bit prefilter: recall of the exhaustive dense top 50 | index in memory | **VmRSS after** |");
    println!("|---|---|---|---|---|---|---|---|");
    for line in &restarted {
        println!("{line}");
    }
    println!("\n== memory (VmRSS of this process)\n");
    println!("| state | RSS |\n|---|---|");
    println!("| at start | {rss_start:.0} MB |");
    println!("| embedding model loaded | {rss_model:.0} MB |");
    println!("| after ingesting the corpus | {rss_ingested:.0} MB |");
    for (n, before, after) in memory {
        println!("| a fresh store and model, before writing {n} chunks | {before:.0} MB |");
        println!("| **{n} chunks written, indexed and queried** | **{after:.0} MB** |");
    }
    println!("| peak (VmHWM) | {:.0} MB |", rss_mb("VmHWM:"));
}

/// The restarted-process part: `RETRIEVAL_DIR` holds a store with `RETRIEVAL_CONV`'s chunks;
/// prints one Markdown row.
async fn reopen_part() {
    let dir = std::path::PathBuf::from(std::env::var("RETRIEVAL_DIR").unwrap());
    let conv = std::env::var("RETRIEVAL_CONV").unwrap();
    let queries: Vec<String> = std::fs::read_to_string(std::env::var("RETRIEVAL_QUERIES").unwrap())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let settings = settings();
    let store = open_store(&dir).await;
    let docs = documents(&store, &settings);
    // Loads the model that embeds questions (and only that one: nothing is ingested here).
    docs.embed_query("warm-up").await.unwrap();
    let t = Instant::now();
    let hits = docs
        .search_mode(&conv, &queries[0], K, SearchMode::Fused)
        .await
        .unwrap();
    assert_eq!(hits.len(), K);
    let first = t.elapsed().as_secs_f64() * 1000.0;
    let mut lat = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let hits = docs
            .search_mode(&conv, q, K, SearchMode::Fused)
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!hits.is_empty());
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let idx = tokio::task::block_in_place(|| docs.store().index(&conv)).unwrap();
    let (mut found, mut total) = (0usize, 0usize);
    for q in queries.iter().take(100) {
        let v = docs.embed_query(q).await.unwrap();
        let fast = idx.dense(&v, 50);
        let full = idx.dense_exhaustive(&v, 50);
        total += full.len();
        found += full.iter().filter(|r| fast.contains(r)).count();
    }
    println!(
        "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {first:.0} ms | {:.3} | {:.0} MB | **{:.0} MB** |",
        idx.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1],
        found as f64 / total.max(1) as f64,
        idx.heap_bytes() as f64 / 1e6,
        rss_mb("VmRSS:"),
    );
}
