//! Embedding batches. A page's chunks are cut into batches capped by count and by tokens;
//! each batch is embedded, stored and dropped before the next, so the memory an ingestion
//! needs is one batch's, whatever the size of a page. Small pages share a batch.
//!
//! A batch records which pages it completes, and, when it ends inside a page, how many of that
//! page's chunks are stored with it ([`PartialPage`]): an ingestion stopped there resumes
//! after them. Pure bookkeeping, tested without async; the ingestion drives it.

use super::chunk::PageChunk;
use super::data_runs::Skipped;
use super::store::{PageSource, PartialPage};

/// The most a batch may hold.
#[derive(Debug, Clone, Copy)]
pub struct Cap {
    /// Chunks.
    pub chunks: usize,
    /// Tokens of the texts embedded, as [`bound`] counts them.
    pub tokens: usize,
    /// The most tokens the chunker puts in a chunk's text.
    pub chunk_tokens: usize,
}

/// A chunk waiting for its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Its page.
    pub page: u32,
    /// Its position in the page.
    pub position: u32,
    /// The chunk; what is embedded is its [`input`], made when its batch is embedded (a
    /// copy of every chunk of a page made at once would double the page's memory).
    pub chunk: PageChunk,
}

/// A page that is complete once its batch is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The page.
    pub page: u32,
    /// How it was read.
    pub source: PageSource,
    /// What of it was skipped as data.
    pub skipped: Skipped,
}

/// Chunks to embed and store together, and the pages they complete.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    /// The chunks, in order.
    pub chunks: Vec<Pending>,
    /// Pages complete once this is stored.
    pub done: Vec<Done>,
    /// The page this batch ends inside, with its chunks stored up to here.
    pub partial: Option<PartialPage>,
    /// Tokens of the chunks' inputs.
    pub tokens: usize,
}

impl Batch {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.done.is_empty()
    }
}

/// The text embedded for a chunk: the heading gives a chunk its context in the vector, not in
/// the stored text.
pub fn input(c: &PageChunk) -> String {
    match &c.heading {
        Some(h) if !c.text.contains(h.as_str()) => format!("{h}\n{}", c.text),
        _ => c.text.clone(),
    }
}

/// One page's chunks waiting for embedding (its text is dropped once chunked).
#[derive(Debug, Clone, PartialEq)]
pub struct PageChunks {
    /// The page.
    pub page: u32,
    /// How it was read.
    pub source: PageSource,
    /// Its chunks still to store.
    pub chunks: Vec<PageChunk>,
    /// What of it was skipped as data.
    pub skipped: Skipped,
    /// The position of the first of `chunks` (those before were stored by an earlier
    /// ingestion).
    pub from: u32,
}

/// The most tokens a chunk's [`input`] can have, without tokenizing it (counting every chunk
/// of a big page again would cost more than a tenth of the embedding): the chunker keeps the
/// text within `chunk_tokens`, and a heading put in front adds at most a token per character
/// and the line break.
pub fn bound(c: &PageChunk, chunk_tokens: usize) -> usize {
    match &c.heading {
        Some(h) if !c.text.contains(h.as_str()) => chunk_tokens + h.chars().count() + 1,
        _ => chunk_tokens,
    }
}

/// Cuts pages into batches.
pub struct Batcher {
    cap: Cap,
    current: Batch,
}

impl Batcher {
    /// A batcher with `cap` (each at least 1).
    pub fn new(cap: Cap) -> Self {
        Self {
            cap: Cap {
                chunks: cap.chunks.max(1),
                tokens: cap.tokens.max(1),
                chunk_tokens: cap.chunk_tokens,
            },
            current: Batch::default(),
        }
    }

    /// Adds one page. Returns the batches now ready, in order; with `alone`, the page's last
    /// batch is ready too (a scanned page is stored as soon as it is read, because OCR is the
    /// slow part).
    pub fn page(&mut self, p: PageChunks, alone: bool) -> Vec<Batch> {
        let PageChunks {
            page,
            source,
            chunks,
            skipped,
            from,
        } = p;
        let mut ready = Vec::new();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let position = from + i as u32;
            let n = bound(&chunk, self.cap.chunk_tokens);
            let fits = self.current.chunks.is_empty()
                || (self.current.chunks.len() < self.cap.chunks
                    && self.current.tokens + n <= self.cap.tokens);
            if !fits {
                // The page goes on in the next batch: this one stores its chunks so far.
                let mut full = std::mem::take(&mut self.current);
                full.partial = (position > 0).then_some(PartialPage {
                    page,
                    chunks: position,
                });
                ready.push(full);
            }
            self.current.tokens += n;
            self.current.chunks.push(Pending {
                page,
                position,
                chunk,
            });
        }
        self.current.done.push(Done {
            page,
            source,
            skipped,
        });
        let full =
            self.current.chunks.len() >= self.cap.chunks || self.current.tokens >= self.cap.tokens;
        if alone || full {
            ready.push(std::mem::take(&mut self.current));
        }
        ready
    }

    /// The last batch, if anything is left.
    pub fn finish(&mut self) -> Option<Batch> {
        let last = std::mem::take(&mut self.current);
        (!last.is_empty()).then_some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize) -> Vec<PageChunk> {
        (0..n)
            .map(|i| PageChunk {
                text: format!("chunk {i}"),
                offset: i * 10,
                heading: None,
            })
            .collect()
    }

    fn pc(page: u32, source: PageSource, chunks: Vec<PageChunk>, from: u32) -> PageChunks {
        PageChunks {
            page,
            source,
            chunks,
            skipped: Skipped::default(),
            from,
        }
    }

    #[test]
    fn a_big_page_is_cut_into_batches_that_mark_how_far_the_page_is_stored() {
        let mut b = Batcher::new(Cap {
            chunks: 4,
            tokens: 1000,
            chunk_tokens: 1,
        });
        let ready = b.page(pc(1, PageSource::Text, chunks(10), 0), false);
        assert_eq!(ready.len(), 2, "8 of 10 chunks are ready");
        assert_eq!(ready[0].partial, Some(PartialPage { page: 1, chunks: 4 }));
        assert_eq!(ready[1].partial, Some(PartialPage { page: 1, chunks: 8 }));
        assert!(ready.iter().all(|r| r.done.is_empty()));
        let positions: Vec<u32> = ready[1].chunks.iter().map(|p| p.position).collect();
        assert_eq!(positions, [4, 5, 6, 7]);
        let last = b.finish().unwrap();
        assert_eq!(last.chunks.len(), 2);
        assert_eq!(last.partial, None, "the last batch completes the page");
        assert_eq!(last.done.len(), 1);
        assert!(b.finish().is_none());
    }

    #[test]
    fn small_pages_share_a_batch_and_tokens_cap_it_too() {
        let mut b = Batcher::new(Cap {
            chunks: 100,
            tokens: 10,
            chunk_tokens: 3,
        });
        assert!(b
            .page(pc(1, PageSource::Text, chunks(2), 0), false)
            .is_empty());
        // 6 tokens stored so far; two more chunks reach 12, over the cap of 10.
        let ready = b.page(pc(2, PageSource::Text, chunks(2), 0), false);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].chunks.len(), 3);
        assert_eq!(ready[0].tokens, 9);
        assert_eq!(
            ready[0].done.iter().map(|d| d.page).collect::<Vec<_>>(),
            [1],
            "page 1 is complete in the first batch"
        );
        assert_eq!(ready[0].partial, Some(PartialPage { page: 2, chunks: 1 }));
        let last = b.finish().unwrap();
        assert_eq!(last.done[0].page, 2);
    }

    #[test]
    fn a_resumed_page_goes_on_from_its_stored_chunks_and_a_scanned_page_goes_alone() {
        let mut b = Batcher::new(Cap {
            chunks: 3,
            tokens: 1000,
            chunk_tokens: 1,
        });
        let ready = b.page(pc(2, PageSource::Text, chunks(4), 6), false);
        assert_eq!(ready[0].chunks[0].position, 6);
        assert_eq!(ready[0].partial, Some(PartialPage { page: 2, chunks: 9 }));
        let scanned = PageSource::Ocr {
            engine: "tesseract".into(),
        };
        let ready = b.page(pc(3, scanned.clone(), chunks(1), 0), true);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].done.len(), 2, "pages 2 and 3 complete");
        assert_eq!(ready[0].done[1].source, scanned);
        // A page with no chunks (blank, failed or all data) is still completed.
        let failed = PageSource::Failed {
            reason: "unreadable".into(),
        };
        let ready = b.page(pc(4, failed, Vec::new(), 0), true);
        assert_eq!(ready.len(), 1);
        assert!(ready[0].chunks.is_empty());
    }

    #[test]
    fn a_heading_is_embedded_with_its_chunk_unless_the_chunk_holds_it() {
        let mut c = PageChunk {
            text: "Rent is due monthly.".into(),
            offset: 0,
            heading: Some("Payment".into()),
        };
        assert_eq!(input(&c), "Payment\nRent is due monthly.");
        assert_eq!(bound(&c, 96), 96 + 8, "the heading and its line break");
        c.text = "# Payment\nRent is due monthly.".into();
        assert_eq!(input(&c), c.text);
        assert_eq!(bound(&c, 96), 96);
    }
}
