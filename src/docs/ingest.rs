//! Ingesting one file: sniffed and measured, its pages read (text layers, Office parts, OCR
//! where there is none), chunked, embedded and committed in batches with the record that says
//! which pages are stored, so a crash loses at most the batch in flight and sharing the file
//! again resumes.

use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::embed::{EmbedError, Embedder};
use super::sniff::{self, Kind, OfficeKind, TextKind};
use super::store::{ChunkRecord, NewChunk};
use super::{batch, chunk, extract, office};
use super::{DocError, DocRecord, DocStatus, Documents, IngestReport, PageSource, Skipped};
use crate::store::now_ms;

/// One page waiting for chunking.
pub(super) struct ReadPage {
    pub(super) page: u32,
    pub(super) text: String,
    pub(super) source: PageSource,
}

/// A page's chunks, from the chunker's output.
fn page_chunks(page: ReadPage, chunked: chunk::Chunked) -> batch::PageChunks {
    batch::PageChunks {
        page: page.page,
        source: page.source,
        chunks: chunked.chunks,
        skipped: chunked.skipped,
        from: 0,
    }
}

/// The progress note of one ingestion: by chunks embedded, so it moves within a page; by
/// pages when scanned pages are read (their chunks are not known ahead).
struct Meter<'a> {
    name: &'a str,
    pages: u32,
    to_embed: usize,
    by_page: bool,
}

impl Meter<'_> {
    fn note(&self, rec: &DocRecord, embedded: usize) -> String {
        let name = self.name;
        if self.by_page || self.to_embed == 0 {
            let done = rec
                .page_status
                .iter()
                .filter(|p| !matches!(p, PageSource::Pending))
                .count();
            return format!("Indexing {name}: page {done}/{}", self.pages);
        }
        let total = self.to_embed;
        let done = embedded.min(total);
        format!(
            "Indexing {name}: {done} of {total} chunks ({}%)",
            done * 100 / total
        )
    }
}

/// What the first read of a file learned, handed on to the page reader.
pub(super) enum Layout {
    /// One page: a text file or an image.
    Single,
    /// A PDF written to a temporary file, with its page facts.
    Pdf((std::path::PathBuf, extract::PdfInfo)),
    /// Pages already extracted (an Office document: Word's pages, slides or sheets).
    Extracted(Vec<office::OfficePage>),
}

impl Documents {
    /// Ingests one file into conversation `conv`. Progress notes go to `progress`.
    pub async fn ingest(
        &self,
        conv: &str,
        name: &str,
        bytes: &[u8],
        progress: &watch::Sender<String>,
    ) -> Result<IngestReport, DocError> {
        let limit = self.cfg.max_file_bytes();
        if bytes.len() as u64 > limit {
            return Err(DocError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        if bytes.is_empty() {
            return Err(DocError::Empty);
        }
        let kind = sniff::sniff(bytes, name).map_err(|u| {
            if u.encrypted {
                DocError::Encrypted
            } else {
                DocError::Unsupported { mime: u.mime }
            }
        })?;
        let sha = hex(&Sha256::digest(bytes));
        let ticket = self.running.start(conv);
        // A second share of a file being read waits for the first, then finds it complete or
        // resumes where it stopped.
        let _one_at_a_time = tokio::select! {
            lock = self.store.ingest_lock(conv, &sha[..16]) => lock,
            _ = ticket.stop.cancelled() => return Err(DocError::Cancelled),
        };
        let existing = self.store.find_by_sha(conv, &sha).await?;
        if let Some(d) = &existing {
            // Only a complete document is a duplicate: one with failed or unread pages resumes.
            if d.status == DocStatus::Ready {
                return Ok(IngestReport {
                    doc: d.clone(),
                    duplicate: true,
                    resumed_pages: 0,
                    resumed_chunks: 0,
                    retried_pages: Vec::new(),
                });
            }
        }
        let _ = progress.send(format!("Reading {name}…"));
        let parse_limit = Duration::from_secs(self.cfg.parse_timeout_secs);
        // Page count and kind of content, before anything is stored.
        let dir = tempfile::tempdir().map_err(DocError::Io)?;
        let (pages, layout) = match kind {
            Kind::Pdf => {
                let path = dir.path().join("doc.pdf");
                std::fs::write(&path, bytes).map_err(DocError::Io)?;
                let info = extract::pdf_info(&path, parse_limit).await?;
                if info.pages > self.cfg.max_pages {
                    return Err(DocError::TooManyPages {
                        pages: info.pages,
                        limit: self.cfg.max_pages,
                    });
                }
                (info.pages, Layout::Pdf((path, info)))
            }
            Kind::Image(_) => {
                let size = imagesize::blob_size(bytes).map_err(|e| DocError::Corrupt {
                    reason: format!("image header: {e}"),
                })?;
                let pixels = size.width as u64 * size.height as u64;
                if pixels > self.cfg.max_image_pixels {
                    return Err(DocError::ImageTooLarge {
                        width: size.width as u64,
                        height: size.height as u64,
                        limit: self.cfg.max_image_pixels,
                    });
                }
                (1, Layout::Single)
            }
            Kind::Text(_) => (1, Layout::Single),
            Kind::Office(office) => {
                let owned = bytes.to_vec();
                let limits = extract::ReadLimits::for_documents(&self.cfg);
                let extracted = extract::blocking(parse_limit, move |cancel| match office {
                    OfficeKind::Docx => office::docx_pages(&owned, &limits, cancel),
                    OfficeKind::Pptx => office::pptx_pages(&owned, &limits, cancel),
                    OfficeKind::Xlsx => office::xlsx_pages(&owned, &limits, cancel),
                })
                .await?;
                if extracted.iter().all(|p| p.text.trim().is_empty()) {
                    return Err(DocError::NoText);
                }
                let pages = extracted.len() as u32;
                if pages > self.cfg.max_pages {
                    return Err(DocError::TooManyPages {
                        pages,
                        limit: self.cfg.max_pages,
                    });
                }
                (pages, Layout::Extracted(extracted))
            }
        };
        let mut rec = match existing {
            Some(mut d) => {
                d.status = DocStatus::Ingesting;
                d
            }
            None => DocRecord {
                id: sha[..16].to_string(),
                name: name.to_string(),
                mime: kind.mime().to_string(),
                size: bytes.len() as u64,
                sha256: sha.clone(),
                pages,
                status: DocStatus::Ingesting,
                ingested_at_ms: now_ms(),
                page_status: vec![PageSource::Pending; pages as usize],
                chunks: 0,
                paged: match &layout {
                    Layout::Pdf(_) => true,
                    Layout::Extracted(p) => p.len() > 1,
                    Layout::Single => false,
                },
                page_labels: match &layout {
                    Layout::Extracted(p) => p.iter().filter_map(|p| p.label.clone()).collect(),
                    _ => Vec::new(),
                },
                partial: None,
                skipped: Skipped::default(),
            },
        };
        let resumed_pages = rec.page_status.iter().filter(|p| p.is_stored()).count() as u32;
        let resumed_chunks = rec.chunks;
        let retried_pages = rec.failed_pages();
        self.store.put(conv, &rec).await?;
        self.flush().await?;
        // A stop drops the work at its next await: every commit is one sled transaction and
        // `rec` is updated with it, so what `rec` says is what is stored.
        let result = tokio::select! {
            r = self.ingest_pages(conv, name, bytes, kind, &layout, &mut rec, progress) => r,
            _ = ticket.stop.cancelled() => Err(DocError::Cancelled),
        };
        match result {
            Ok(()) => {
                // Keep the file while pages failed, so `ingest --retry-failed` needs none.
                if rec.status == DocStatus::Ready {
                    self.store.remove_source(conv, &rec.id).await?;
                } else {
                    self.store.put_source(conv, &rec.id, bytes).await?;
                }
                self.flush().await?;
                let stored = rec.page_status.iter().filter(|p| p.is_stored()).count() as u32;
                metrics::counter!(crate::ops::metrics::DOCUMENTS).increment(1);
                metrics::counter!(crate::ops::metrics::PAGES)
                    .increment(stored.saturating_sub(resumed_pages).into());
                metrics::counter!(crate::ops::metrics::OCR_FAILURES)
                    .increment(rec.failed_pages().len() as u64);
                Ok(IngestReport {
                    doc: rec,
                    duplicate: false,
                    resumed_pages,
                    resumed_chunks,
                    retried_pages,
                })
            }
            Err(e) => {
                // Leave nothing half-stored unmarked: drop a document with nothing stored, mark
                // one with stored pages or chunks by what they say (sharing it again resumes).
                if rec.page_status.iter().any(PageSource::is_stored) || rec.partial.is_some() {
                    rec.status = rec.settled_status();
                    self.store.put(conv, &rec).await?;
                    self.store.put_source(conv, &rec.id, bytes).await?;
                } else {
                    self.store.clear_doc(conv, &rec.id).await?;
                }
                self.flush().await?;
                Err(e)
            }
        }
    }

    /// The conversation's documents with failed pages or an interrupted ingestion, oldest
    /// first; [`DocStore::source`] has the file of those whose file was kept.
    pub async fn retry_candidates(&self, conv: &str) -> Result<Vec<DocRecord>, DocError> {
        Ok(self
            .store
            .list(conv)
            .await?
            .into_iter()
            .filter(|d| d.status != DocStatus::Ready)
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_pages(
        &self,
        conv: &str,
        name: &str,
        bytes: &[u8],
        kind: Kind,
        layout: &Layout,
        rec: &mut DocRecord,
        progress: &watch::Sender<String>,
    ) -> Result<(), DocError> {
        let pages = rec.pages;
        // Fail early, before any OCR work, if embeddings cannot be made. An image is OCR'd
        // while it is read; other files load the model once their text is known to need it
        // (a file of data only, or with too much text, is refused without it).
        if matches!(kind, Kind::Image(_)) {
            self.embedder().await?;
        }
        let todo: Vec<u32> = (1..=pages)
            .filter(|p| {
                !matches!(
                    rec.page_status[*p as usize - 1],
                    PageSource::Text | PageSource::Ocr { .. }
                )
            })
            .collect();
        let (read, need_ocr) = self
            .read_pages(&kind, bytes, name, layout, &todo, progress)
            .await?;
        let ocr = if need_ocr.is_empty() {
            None
        } else {
            self.page_ocr().await
        };
        let markdown = matches!(kind, Kind::Text(TextKind::Markdown) | Kind::Office(_));
        let chunker = &self.chunker;
        let chunk_page = move |page: ReadPage| {
            let chunked = chunker
                .chunk_page(
                    &page.text,
                    &page.source,
                    markdown,
                    &extract::Cancel::never(),
                )
                .expect("a chunker that is never cancelled does not fail");
            page_chunks(page, chunked)
        };
        // Text layers are chunked before any embedding, so a file with more text than one
        // document may hold is refused at once instead of after minutes of work. Up to 50 MB
        // of text: off the async workers, and stopped inside at the parse limit. The pages'
        // texts are dropped once chunked.
        let mut read: Vec<batch::PageChunks> = {
            let (chunker, limit) = (self.chunker.clone(), self.cfg.parse_timeout_secs);
            extract::blocking(Duration::from_secs(limit), move |cancel| {
                read.into_iter()
                    .map(|page| {
                        let chunked =
                            chunker.chunk_page(&page.text, &page.source, markdown, cancel)?;
                        Ok(page_chunks(page, chunked))
                    })
                    .collect::<Result<_, DocError>>()
            })
            .await?
        };
        self.resume_partial(conv, rec, &mut read).await?;
        let to_embed: usize = read.iter().map(|w| w.chunks.len()).sum();
        let total = rec.chunks as usize + to_embed;
        if total > self.cfg.max_chunks {
            return Err(DocError::TooMuchText {
                chunks: total,
                limit: self.cfg.max_chunks,
            });
        }
        if need_ocr.is_empty() && total == 0 {
            let mut skipped = rec.skipped;
            read.iter().for_each(|w| skipped.add(w.skipped));
            if !skipped.is_empty() {
                return Err(DocError::OnlyData { skipped });
            }
        }
        let embedder = self.embedder().await?;
        let meter = Meter {
            name,
            pages,
            to_embed,
            by_page: !need_ocr.is_empty(),
        };
        let scanned = match layout {
            Layout::Pdf(pdf) if !need_ocr.is_empty() => self
                .ocr_pages(name, pdf, need_ocr, ocr, progress)
                .map(chunk_page)
                .boxed(),
            _ => futures_util::stream::empty().boxed(),
        };
        let mut pages_in = futures_util::stream::iter(read).chain(scanned);
        // Each batch is embedded and committed (its chunks, and the record saying which pages
        // and how much of the page in progress are stored) before the next is made, so memory
        // holds one batch, and a crash loses at most the batch in flight.
        let mut batcher = batch::Batcher::new(batch::Cap {
            chunks: self.cfg.embed_batch,
            tokens: self.cfg.embed_batch_tokens,
            chunk_tokens: self.cfg.chunk_tokens,
        });
        let mut embedded = 0;
        while let Some(w) = pages_in.next().await {
            let alone = matches!(w.source, PageSource::Ocr { .. } | PageSource::Failed { .. });
            let ready = batcher.page(w, alone);
            for b in ready {
                embedded += b.chunks.len();
                self.commit_batch(conv, rec, b, embedder.as_ref()).await?;
                let _ = progress.send(meter.note(rec, embedded));
            }
        }
        if let Some(b) = batcher.finish() {
            self.commit_batch(conv, rec, b, embedder.as_ref()).await?;
        }
        let failed = rec.failed_pages().len();
        if failed as u32 == pages && rec.chunks == 0 {
            // Nothing readable at all.
            let reason = match rec.page_status.first() {
                Some(PageSource::Failed { reason }) => reason.clone(),
                _ => "no readable text".into(),
            };
            return Err(DocError::Ocr { reason });
        }
        rec.status = rec.settled_status();
        rec.ingested_at_ms = now_ms();
        self.store.commit(conv, rec, &[]).await?;
        self.flush().await?;
        tracing::info!(
            conversation = conv,
            document = name,
            pages,
            chunks = rec.chunks,
            skipped_bytes = rec.skipped.bytes,
            failed,
            "document ingested"
        );
        Ok(())
    }

    /// Goes on with a page an earlier ingestion stored part of: its stored chunks are dropped
    /// from `read`, which then starts after them. If the page no longer chunks the way it did
    /// (the chunk settings changed), its stored chunks are deleted and it starts over.
    async fn resume_partial(
        &self,
        conv: &str,
        rec: &mut DocRecord,
        read: &mut [batch::PageChunks],
    ) -> Result<(), DocError> {
        let Some(partial) = rec.partial else {
            return Ok(());
        };
        let stored = partial.chunks as usize;
        if let Some(w) = read.iter_mut().find(|w| w.page == partial.page) {
            let last = match stored.checked_sub(1) {
                Some(i) if i < w.chunks.len() => self
                    .store
                    .chunk_text(conv, &rec.id, partial.page, i as u32)
                    .await?
                    .filter(|t| *t == w.chunks[i].text),
                _ => None,
            };
            if last.is_some() {
                w.chunks.drain(..stored);
                w.from = partial.chunks;
                tracing::info!(
                    document = %rec.name,
                    page = partial.page,
                    stored,
                    "resuming within a page"
                );
                return Ok(());
            }
        }
        tracing::warn!(
            document = %rec.name,
            page = partial.page,
            "the half-stored page no longer chunks the same way; reading it again"
        );
        rec.chunks = rec.chunks.saturating_sub(partial.chunks);
        rec.partial = None;
        self.store.clear_page(conv, rec, partial.page).await
    }

    async fn commit_batch(
        &self,
        conv: &str,
        rec: &mut DocRecord,
        batch: batch::Batch,
        embedder: &dyn Embedder,
    ) -> Result<(), DocError> {
        let batch::Batch {
            chunks,
            done,
            partial,
            ..
        } = batch;
        let inputs: Vec<String> = chunks.iter().map(|p| batch::input(&p.chunk)).collect();
        let pending: Vec<_> = chunks
            .into_iter()
            .map(|p| (p.page, p.position, p.chunk))
            .collect();
        let vectors = if inputs.is_empty() {
            Vec::new()
        } else {
            embedder.embed(inputs).await?
        };
        if vectors.len() != pending.len() {
            return Err(DocError::Embed(EmbedError::Failed(format!(
                "{} vectors for {} chunks",
                vectors.len(),
                pending.len()
            ))));
        }
        let rows: Vec<NewChunk> = pending
            .into_iter()
            .zip(vectors)
            .map(|((page, position, c), vector)| NewChunk {
                page,
                record: ChunkRecord {
                    doc_id: rec.id.clone(),
                    name: rec.name.clone(),
                    page: rec.paged.then_some(page),
                    label: rec.page_labels.get(page as usize - 1).cloned(),
                    position,
                    heading: c.heading,
                    text: c.text,
                },
                vector,
            })
            .collect();
        for d in done {
            rec.page_status[d.page as usize - 1] = d.source;
            rec.skipped.add(d.skipped);
        }
        rec.partial = partial;
        rec.chunks += rows.len() as u32;
        rec.ingested_at_ms = now_ms();
        self.store.commit(conv, rec, &rows).await?;
        // On disk before the page is reported done: a crash loses no page it reported.
        self.flush().await
    }

    /// Reads the text of pages `todo`: text layers, OCR where there is none.
    async fn read_pages(
        &self,
        kind: &Kind,
        bytes: &[u8],
        name: &str,
        layout: &Layout,
        todo: &[u32],
        progress: &watch::Sender<String>,
    ) -> Result<(Vec<ReadPage>, Vec<u32>), DocError> {
        let parse_limit = Duration::from_secs(self.cfg.parse_timeout_secs);
        match kind {
            Kind::Text(t) => {
                // Off the async workers: decoding 50 MB would stall every conversation.
                let (owned, html) = (bytes.to_vec(), *t == TextKind::Html);
                let mut limits = extract::ReadLimits::for_documents(&self.cfg);
                // A text file holds no more characters than bytes, and its data runs are skipped
                // before the chunk limit counts: every text file within the size limit is read.
                limits.chars = limits.chars.max(self.cfg.max_file_bytes());
                let text = extract::blocking(parse_limit, move |cancel| {
                    let text = extract::decode_text(&owned, &limits, cancel)?;
                    if html {
                        extract::html_to_text(&text, cancel)
                    } else {
                        Ok(text)
                    }
                })
                .await?;
                if text.trim().is_empty() {
                    return Err(DocError::NoText);
                }
                Ok((
                    vec![ReadPage {
                        page: 1,
                        text,
                        source: PageSource::Text,
                    }],
                    Vec::new(),
                ))
            }
            Kind::Image(img) => {
                let Some(ocr) = self.ocr_engine().await else {
                    return Err(DocError::Ocr {
                        reason: "no OCR is available: the vision endpoint does not answer and tesseract is not installed".into(),
                    });
                };
                let _ = progress.send(format!("Reading {name} with the {}…", ocr.name()));
                let text = ocr.transcribe(bytes, img.mime()).await?;
                Ok((
                    vec![ReadPage {
                        page: 1,
                        text,
                        source: PageSource::Ocr {
                            engine: ocr.name().into(),
                        },
                    }],
                    Vec::new(),
                ))
            }
            Kind::Office(_) => {
                let Layout::Extracted(all) = layout else {
                    unreachable!("an Office document is extracted before its pages are read")
                };
                let pages = todo
                    .iter()
                    .map(|&p| ReadPage {
                        page: p,
                        text: all[p as usize - 1].text.clone(),
                        source: PageSource::Text,
                    })
                    .collect();
                Ok((pages, Vec::new()))
            }
            Kind::Pdf => {
                let Layout::Pdf((path, _)) = layout else {
                    unreachable!("a PDF is measured before its pages are read")
                };
                let (Some(&first), Some(&last)) = (todo.first(), todo.last()) else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let limits = extract::ReadLimits::for_documents(&self.cfg);
                let texts = extract::pdf_text(path, first, last, parse_limit, &limits).await?;
                let mut pages = Vec::new();
                let mut need_ocr = Vec::new();
                for &p in todo {
                    let t = &texts[(p - first) as usize];
                    if extract::has_text_layer(t) {
                        pages.push(ReadPage {
                            page: p,
                            text: t.clone(),
                            source: PageSource::Text,
                        });
                    } else {
                        need_ocr.push(p);
                    }
                }
                Ok((pages, need_ocr))
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&Sha256::digest(b"abc"))[..16], *"ba7816bf8f01cfea");
    }
}
