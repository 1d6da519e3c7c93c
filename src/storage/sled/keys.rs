//! The sled key layout, in one place. A few fixed trees with conversation-prefixed keys (never
//! a tree per conversation: sled grows badly with many trees):
//!
//! | tree      | key                                           | value                      |
//! |-----------|-----------------------------------------------|----------------------------|
//! | `anchors` | `conversation`                                | anchor JSON                |
//! | `seen`    | `conversation \0 event id`                    | time seen (Unix ms, BE)    |
//! | `docs`    | `conversation \0 document`                    | document record JSON       |
//! | `chunks`  | `conversation \0 document \0 page position`   | chunk record JSON          |
//! | `vectors` | same as `chunks`                              | little-endian `f32`s       |
//! | `sources` | `conversation \0 document`                    | the kept file              |
//! | `journal` | `conversation \0 event id`                    | at, owner, reply, event    |
//! | `leases`  | lease name                                    | expiry (BE) + holder       |
//! | `meta`    | `schema_version`                              | the schema version         |
//!
//! Page and position are 4 bytes each, big-endian, so a document's chunks scan in order.

pub use anchorbot_migrations::{ANCHORS_TREE, META_TREE, SEEN_TREE};

/// Document records.
pub const DOCS_TREE: &str = "docs";
/// Chunk records.
pub const CHUNKS_TREE: &str = "chunks";
/// Chunk vectors.
pub const VECTORS_TREE: &str = "vectors";
/// Kept files.
pub const SOURCES_TREE: &str = "sources";
/// Accepted events not answered yet (`conversation \0 event id` → claimed at, Unix ms BE, the
/// owner's length, BE u16, and owner, the noted reply's length, BE u32, and reply, then the
/// journaled event).
pub const JOURNAL_TREE: &str = "journal";
/// Leases by name (→ expiry, Unix ms BE, then the holder). Holds no conversation's data.
pub const LEASES_TREE: &str = "leases";
/// sled's own default tree, which holds no conversation.
pub const DEFAULT_TREE: &[u8] = b"__sled__default";

/// The key of `conv`'s anchor.
pub fn anchor(conv: &str) -> Vec<u8> {
    conv.as_bytes().to_vec()
}

/// The prefix of everything stored for `conv` outside the anchors (`conv\0`).
pub fn conv_prefix(conv: &str) -> Vec<u8> {
    let mut p = conv.as_bytes().to_vec();
    p.push(0);
    p
}

/// The de-duplication mark of `event` in `conv`.
pub fn seen(conv: &str, event: &str) -> Vec<u8> {
    let mut k = conv_prefix(conv);
    k.extend_from_slice(event.as_bytes());
    k
}

/// A document's record (and kept file).
pub fn doc(conv: &str, doc: &str) -> Vec<u8> {
    let mut k = conv_prefix(conv);
    k.extend_from_slice(doc.as_bytes());
    k
}

/// The prefix of a document's chunks.
pub fn doc_chunks(conv: &str, doc_id: &str) -> Vec<u8> {
    let mut k = doc(conv, doc_id);
    k.push(0);
    k
}

/// The prefix of one page's chunks.
pub fn page(conv: &str, doc_id: &str, page: u32) -> Vec<u8> {
    let mut k = doc_chunks(conv, doc_id);
    k.extend_from_slice(&page.to_be_bytes());
    k
}

/// One chunk (and its vector).
pub fn chunk(conv: &str, doc_id: &str, page_no: u32, position: u32) -> Vec<u8> {
    let mut k = page(conv, doc_id, page_no);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// The document, page and position of a chunk key of `conv`.
pub fn split_chunk(conv: &str, key: &[u8]) -> Option<(String, u32, u32)> {
    let start = conv.len() + 1;
    let end = key.len().checked_sub(9)?;
    if end < start || key.get(end) != Some(&0) {
        return None;
    }
    let doc = String::from_utf8_lossy(&key[start..end]).into_owned();
    let page = u32::from_be_bytes(key[end + 1..end + 5].try_into().ok()?);
    let position = u32::from_be_bytes(key[end + 5..end + 9].try_into().ok()?);
    Some((doc, page, position))
}

/// The document id of a record key of `conv`.
pub fn split_doc(conv: &str, key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(conv.len() + 1..).unwrap_or_default()).into_owned()
}

/// The conversation part of any key: all of an anchor key, the part before the first `\0`
/// elsewhere.
pub fn conversation_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_split_back_and_sort_by_page_then_position() {
        let k = chunk("slack:T/C/1.2", "doc\u{e9}", 3, 7);
        assert_eq!(
            split_chunk("slack:T/C/1.2", &k),
            Some(("doc\u{e9}".to_string(), 3, 7))
        );
        assert!(chunk("c", "d", 1, 9) < chunk("c", "d", 2, 0));
        assert_eq!(conversation_of(&k), b"slack:T/C/1.2");
        assert_eq!(conversation_of(&anchor("console:a")), b"console:a");
        assert_eq!(split_doc("c", &doc("c", "abc")), "abc");
    }
}
