//! The postings store: a sorted term dictionary and CSR postings (the frozen part), a small
//! hash-keyed pending part for rows pushed since, and their merge.

use rustc_hash::FxHashMap;

use super::analysis::*;
use super::LexicalIndex;

/// Pending postings merged into the frozen arrays at the latest at this count (or an eighth
/// of the frozen postings, if more), so a few pushes don't rewrite the whole index.
pub(super) const PENDING_MIN: usize = 1 << 15;

/// No slot: a stop word, or a pending term not in the frozen dictionary.
pub(super) const NONE: u32 = u32::MAX;

/// Sorted terms in one string arena.
#[derive(Clone, Default)]
pub(super) struct Dict {
    pub(super) text: String,
    /// Start of each term in `text`, and the end of the last one (empty when no terms).
    pub(super) starts: Vec<u32>,
}

impl Dict {
    pub(super) fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub(super) fn get(&self, i: usize) -> &str {
        &self.text[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// Appends a term (callers keep the order sorted).
    pub(super) fn push(&mut self, term: &str) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.text.push_str(term);
        self.starts.push(self.text.len() as u32);
    }

    pub(super) fn find(&self, term: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.starts.capacity() * 4
    }
}

/// A map from token text to a slot. Short tokens (nearly all) are packed into a `u128`
/// key, so that a lookup compares integers instead of following a pointer to the text:
/// building is bound by cache misses, and this saves one per token.
#[derive(Clone, Default)]
pub(super) struct TokenMap {
    pub(super) short: FxHashMap<u128, u32>,
    pub(super) long: FxHashMap<Box<str>, u32>,
}

impl TokenMap {
    /// Packs a token of at most 15 bytes: the bytes, then the length in the last byte.
    pub(super) fn pack(token: &str) -> Option<u128> {
        let bytes = token.as_bytes();
        let mut key = [0u8; 16];
        key.get_mut(..bytes.len())
            .filter(|_| bytes.len() < 16)?
            .copy_from_slice(bytes);
        key[15] = bytes.len() as u8;
        Some(u128::from_le_bytes(key))
    }

    pub(super) fn unpack(key: u128) -> Option<Box<str>> {
        let bytes = key.to_le_bytes();
        let text = bytes.get(..usize::from(bytes[15]))?;
        std::str::from_utf8(text).ok().map(Box::from)
    }

    pub(super) fn get(&self, token: &str) -> Option<u32> {
        match Self::pack(token) {
            Some(key) => self.short.get(&key).copied(),
            None => self.long.get(token).copied(),
        }
    }

    pub(super) fn insert(&mut self, token: &str, slot: u32) {
        match Self::pack(token) {
            Some(key) => self.short.insert(key, slot),
            None => self.long.insert(token.into(), slot),
        };
    }

    /// The tokens and their slots, in no order.
    pub(super) fn into_entries(self) -> impl Iterator<Item = (Box<str>, u32)> {
        let short = self
            .short
            .into_iter()
            .filter_map(|(key, slot)| Some((Self::unpack(key)?, slot)));
        short.chain(self.long)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        // An entry and its control byte, at a load of at most 7/8; a long key's text is a
        // heap block of its own.
        let entry = |size: usize| size + 1;
        self.short.capacity() * 8 / 7 * entry(std::mem::size_of::<(u128, u32)>())
            + self.long.capacity() * 8 / 7 * entry(std::mem::size_of::<(Box<str>, u32)>())
            + self.long.keys().map(|k| k.len()).sum::<usize>()
    }
}

/// One term's postings in the pending part.
#[derive(Clone)]
pub(super) struct Slot {
    /// The term's id in the frozen dictionary, or [`NONE`] for a new term.
    pub(super) frozen: u32,
    /// Row and term frequency, rows ascending.
    pub(super) postings: Vec<(u32, u8)>,
}

/// Rows not yet merged into the frozen arrays.
#[derive(Clone, Default)]
pub(super) struct Pending {
    /// Term → slot.
    pub(super) by_term: TokenMap,
    /// Raw word → slot ([`NONE`] for a stop word), so each distinct word is stemmed once.
    pub(super) by_word: TokenMap,
    pub(super) slots: Vec<Slot>,
    pub(super) postings: usize,
}

impl Pending {
    /// The slot of a raw token, creating it if new; [`NONE`] for a stop word.
    pub(super) fn slot(&mut self, raw: &str, kind: Kind, dict: &Dict) -> u32 {
        if kind == Kind::Word {
            if let Some(s) = self.by_word.get(raw) {
                return s;
            }
        }
        let slot = match term(raw, kind) {
            None => NONE,
            Some(t) => match self.by_term.get(&t) {
                Some(s) => s,
                None => {
                    let s = self.slots.len() as u32;
                    let frozen = dict.find(&t).map_or(NONE, |i| i as u32);
                    self.slots.push(Slot {
                        frozen,
                        postings: Vec::new(),
                    });
                    self.by_term.insert(&t, s);
                    s
                }
            },
        };
        if kind == Kind::Word {
            self.by_word.insert(raw, slot);
        }
        slot
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.by_term.heap_bytes()
            + self.by_word.heap_bytes()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self
                .slots
                .iter()
                .map(|s| s.postings.capacity() * std::mem::size_of::<(u32, u8)>())
                .sum::<usize>()
    }
}

/// Where one query term's postings are.
pub(super) struct TermPostings<'a> {
    pub(super) rows: &'a [u32],
    pub(super) tfs: &'a [u8],
    pub(super) pending: &'a [(u32, u8)],
}

impl LexicalIndex {
    /// Adds a row to the pending part.
    pub(super) fn add(&mut self, text: &str) {
        let row = self.lens.len() as u32;
        let mut slots = Vec::new();
        let (pending, dict) = (&mut self.pending, &self.dict);
        tokenize(text, &mut |raw, kind| {
            let s = pending.slot(raw, kind, dict);
            if s != NONE {
                slots.push(s);
            }
        });
        slots.sort_unstable();
        let mut rest = &slots[..];
        while let Some(&s) = rest.first() {
            let run = rest.iter().take_while(|&&x| x == s).count();
            let tf = run.min(u8::MAX as usize) as u8;
            self.pending.slots[s as usize].postings.push((row, tf));
            self.pending.postings += 1;
            rest = &rest[run..];
        }
        let len = slots.len().min(u16::MAX as usize) as u16;
        self.lens.push(len);
        self.total_len += u64::from(len);
        self.max_len = self.max_len.max(len);
    }

    /// Merges the pending part into the frozen arrays.
    pub(super) fn compact(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        // Building pushes rows one by one; the row lengths are kept for good.
        self.lens.shrink_to_fit();
        if pending.slots.is_empty() {
            return;
        }
        let slots = pending.slots;
        let mut fresh: Vec<(Box<str>, u32)> = pending
            .by_term
            .into_entries()
            .filter(|(_, s)| slots[*s as usize].frozen == NONE)
            .collect();
        fresh.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let old_terms = self.dict.len();
        let mut extra = vec![NONE; old_terms];
        for (s, slot) in slots.iter().enumerate() {
            if let Some(e) = extra.get_mut(slot.frozen as usize) {
                *e = s as u32;
            }
        }

        let total = self.rows.len() + pending.postings;
        let terms = old_terms + fresh.len();
        let fresh_text: usize = fresh.iter().map(|(t, _)| t.len()).sum();
        let mut dict = Dict {
            text: String::with_capacity(self.dict.text.len() + fresh_text),
            starts: Vec::with_capacity(terms + 1),
        };
        let mut offsets = Vec::with_capacity(terms + 1);
        let mut rows = Vec::with_capacity(total);
        let mut tfs = Vec::with_capacity(total);
        offsets.push(0u32);
        let append = |rows: &mut Vec<u32>, tfs: &mut Vec<u8>, s: u32| {
            if let Some(slot) = slots.get(s as usize) {
                rows.extend(slot.postings.iter().map(|p| p.0));
                tfs.extend(slot.postings.iter().map(|p| p.1));
            }
        };
        let (mut i, mut j) = (0, 0);
        while i < old_terms || j < fresh.len() {
            // Fresh terms are not in the old dictionary, so the two never compare equal.
            let old_first = j == fresh.len() || (i < old_terms && self.dict.get(i) < &*fresh[j].0);
            if old_first {
                dict.push(self.dict.get(i));
                let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
                rows.extend_from_slice(&self.rows[a..b]);
                tfs.extend_from_slice(&self.tfs[a..b]);
                append(&mut rows, &mut tfs, extra[i]);
                i += 1;
            } else {
                dict.push(&fresh[j].0);
                append(&mut rows, &mut tfs, fresh[j].1);
                j += 1;
            }
            offsets.push(rows.len() as u32);
        }
        self.dict = dict;
        self.offsets = offsets;
        self.rows = rows;
        self.tfs = tfs;
    }

    /// The postings of one analysed query term, if it occurs at all.
    pub(super) fn postings(&self, term: &str) -> Option<TermPostings<'_>> {
        let (rows, tfs) = match self.dict.find(term) {
            Some(t) => {
                let (a, b) = (self.offsets[t] as usize, self.offsets[t + 1] as usize);
                (&self.rows[a..b], &self.tfs[a..b])
            }
            None => (&[][..], &[][..]),
        };
        let pending = self
            .pending
            .by_term
            .get(term)
            .and_then(|s| self.pending.slots.get(s as usize))
            .map_or(&[][..], |s| &s.postings[..]);
        (!rows.is_empty() || !pending.is_empty()).then_some(TermPostings { rows, tfs, pending })
    }
}

/// The first index in `from..len` whose row is at least `target` (or `len`), where
/// `row(i)` ascends with `i`. A long list's rows are spread over the index, so the search
/// starts where interpolation puts `target`, then gallops to a bracket and bisects it: a
/// few probes, where bisecting a long list costs a cache miss per step.
pub(super) fn seek(len: usize, from: usize, target: u32, row: impl Fn(usize) -> u32) -> usize {
    if from >= len || row(from) >= target {
        return from.min(len);
    }
    let last = len - 1;
    if row(last) < target {
        return len;
    }
    // Now row(from) < target <= row(last): find lo < hi with row(lo) < target <= row(hi).
    let (first, end) = (u64::from(row(from)), u64::from(row(last)));
    let offset = (u64::from(target) - first) * (last - from) as u64 / (end - first).max(1);
    let guess = (from + offset as usize).clamp(from + 1, last);
    let (mut lo, mut hi);
    if row(guess) < target {
        lo = guess;
        hi = guess;
        let mut step = 1;
        loop {
            hi = (hi + step).min(last);
            if row(hi) >= target {
                break;
            }
            lo = hi;
            step *= 2;
        }
    } else {
        hi = guess;
        lo = guess;
        let mut step = 1;
        loop {
            lo = lo.saturating_sub(step).max(from);
            if row(lo) < target {
                break;
            }
            hi = lo;
            step *= 2;
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if row(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}
