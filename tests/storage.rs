//! The storage seam's contract, written once and run on every backend: each scenario is an
//! `async fn(&dyn Backend)`, and `backend_tests!` makes one test per scenario for a backend.
//! PostgreSQL runs on a fresh database per test (`common::pg`) and is skipped without a
//! cluster; the PostgreSQL-only checks (schema versions, TLS, what errors show) follow.

mod common;

use std::sync::Arc;

use anchorbot::storage::postgres::{PgStore, SCHEMA_VERSION};
use anchorbot::storage::{ChunkRow, ConvSize, DocRow, Durability, Location, Storage, StorageError};
use async_trait::async_trait;
use serde_json::{json, Value};

/// A backend under test: opens stores on one set of data, as often as a scenario asks (a
/// reopen is how a scenario checks what survives).
#[async_trait]
trait Backend: Send + Sync {
    /// A store on this backend's data. The previous one is dropped first by the scenarios.
    async fn open(&self) -> Storage;
    /// A text that must never appear in what the store shows (a password), if it has one.
    fn secret(&self) -> Option<String>;
}

// ---- helpers ------------------------------------------------------------------------------

const CONV: &str = "slack:T1/C2/1712345678.000100";
const OTHER: &str = "console:team";

fn bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("json")
}

fn value(b: &[u8]) -> Value {
    serde_json::from_slice(b).expect("stored json")
}

/// Adds one to the anchor's `n` (a new anchor gets 1).
fn increment(current: Option<&[u8]>) -> Result<Vec<u8>, StorageError> {
    let n = match current {
        None => 0,
        Some(b) => serde_json::from_slice::<Value>(b).map_err(|e| StorageError::Corrupt {
            what: "anchor".into(),
            reason: e.to_string(),
        })?["n"]
            .as_u64()
            .unwrap_or(0),
    };
    Ok(bytes(json!({ "n": n + 1 })))
}

/// An edit that fails, as a decoder would on an unreadable anchor.
fn refuse(_: Option<&[u8]>) -> Result<Vec<u8>, StorageError> {
    Err(StorageError::Corrupt {
        what: "anchor".into(),
        reason: "refused by the test".into(),
    })
}

/// A document row; its record carries the same `ingested_at_ms` (the sled backend reads the
/// time from the record, as the document store writes it).
fn doc(id: &str, ingested_ms: u64, status: &str) -> DocRow {
    DocRow {
        doc: id.into(),
        ingested_ms,
        record: bytes(json!({ "id": id, "status": status, "ingested_at_ms": ingested_ms })),
    }
}

fn vector(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn chunk(doc: &str, page: u32, position: u32) -> ChunkRow {
    ChunkRow {
        doc: doc.into(),
        page,
        position,
        record: bytes(json!({ "doc_id": doc, "page": page, "position": position, "text": "t" })),
        vector: vector(&[
            page as f32,
            position as f32,
            -0.0,
            f32::MIN_POSITIVE,
            -1.25e-7,
        ]),
    }
}

/// (doc, page, position) of each row.
fn places(rows: &[ChunkRow]) -> Vec<(String, u32, u32)> {
    rows.iter()
        .map(|c| (c.doc.clone(), c.page, c.position))
        .collect()
}

async fn scan(s: &Storage, conv: &str) -> Vec<ChunkRow> {
    let mut out = Vec::new();
    s.documents
        .scan_chunks(conv, &mut |c| out.push(c))
        .await
        .expect("scan");
    out
}

async fn sorted_records(s: &Storage, conv: &str) -> Vec<DocRow> {
    let mut r = s.documents.records(conv).await.unwrap();
    r.sort_by(|a, b| a.doc.cmp(&b.doc));
    r
}

/// Stores an anchor, a mark, two documents (three chunks) and a kept file in `conv`.
async fn fill(s: &Storage, conv: &str) {
    s.conversations
        .update_anchor(conv, Some("ev1"), Durability::Flushed, &increment)
        .await
        .unwrap();
    s.documents
        .commit(
            conv,
            &doc("d1", 5, "ready"),
            &[chunk("d1", 1, 0), chunk("d1", 1, 1)],
        )
        .await
        .unwrap();
    s.documents
        .commit(conv, &doc("d2", 9, "partial"), &[chunk("d2", 0, 0)])
        .await
        .unwrap();
    s.documents
        .put_source(conv, "d2", b"%PDF-1.7")
        .await
        .unwrap();
}

// ---- scenarios ----------------------------------------------------------------------------

async fn anchors_round_trip_and_survive_reopen(b: &dyn Backend) {
    {
        let s = b.open().await;
        assert_eq!(s.conversations.anchor(CONV).await.unwrap(), None);
        let first = s
            .conversations
            .update_anchor(CONV, None, Durability::Flushed, &increment)
            .await
            .unwrap();
        assert_eq!(value(&first), json!({ "n": 1 }));
        let second = s
            .conversations
            .update_anchor(CONV, None, Durability::Lazy, &increment)
            .await
            .unwrap();
        assert_eq!(value(&second), json!({ "n": 2 }));
        s.conversations
            .update_anchor(OTHER, None, Durability::Lazy, &increment)
            .await
            .unwrap();
        s.conversations.flush().await.unwrap();
        assert_eq!(s.conversations.anchor(CONV).await.unwrap(), Some(second));
    }
    let s = b.open().await;
    assert_eq!(
        s.conversations
            .anchor(CONV)
            .await
            .unwrap()
            .map(|b| value(&b)),
        Some(json!({ "n": 2 }))
    );
    // Byte order: `console:` before `slack:`.
    assert_eq!(s.conversations.anchored().await.unwrap(), vec![OTHER, CONV]);
    s.conversations.remove_anchor(CONV).await.unwrap();
    assert_eq!(s.conversations.anchor(CONV).await.unwrap(), None);
    assert_eq!(s.conversations.anchored().await.unwrap(), vec![OTHER]);
    drop(s);
    let s = b.open().await;
    assert_eq!(s.conversations.anchor(CONV).await.unwrap(), None);
    assert_eq!(s.conversations.anchored().await.unwrap(), vec![OTHER]);
}

async fn an_update_with_an_event_marks_both_or_neither(b: &dyn Backend) {
    let s = b.open().await;
    s.conversations
        .update_anchor(CONV, Some("ev1"), Durability::Flushed, &increment)
        .await
        .unwrap();
    assert!(s.conversations.was_handled(CONV, "ev1").await.unwrap());

    let err = s
        .conversations
        .update_anchor(CONV, Some("ev2"), Durability::Flushed, &refuse)
        .await
        .expect_err("the edit fails");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(!s.conversations.was_handled(CONV, "ev2").await.unwrap());
    let anchor = s.conversations.anchor(CONV).await.unwrap().expect("kept");
    assert_eq!(value(&anchor), json!({ "n": 1 }));

    // A failed first edit leaves no trace of the conversation.
    let err = s
        .conversations
        .update_anchor(OTHER, Some("ev3"), Durability::Flushed, &refuse)
        .await
        .expect_err("the edit fails");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(s.conversations.anchor(OTHER).await.unwrap(), None);
    assert!(!s.conversations.was_handled(OTHER, "ev3").await.unwrap());
    assert_eq!(s.conversations.anchored().await.unwrap(), vec![CONV]);
    assert_eq!(
        s.maintenance.size_of(OTHER).await.unwrap(),
        ConvSize {
            conv: OTHER.into(),
            ..ConvSize::default()
        }
    );
}

async fn events_are_deduplicated_per_conversation(b: &dyn Backend) {
    {
        let s = b.open().await;
        let c = &s.conversations;
        assert!(!c.was_handled(CONV, "ev1").await.unwrap());
        c.mark_handled(CONV, "ev1").await.unwrap();
        c.mark_handled(CONV, "ev1").await.unwrap();
        assert!(c.was_handled(CONV, "ev1").await.unwrap());
        assert!(!c.was_handled(OTHER, "ev1").await.unwrap());
        assert!(!c.was_handled(CONV, "ev2").await.unwrap());
        c.flush().await.unwrap();
    }
    let s = b.open().await;
    assert!(s.conversations.was_handled(CONV, "ev1").await.unwrap());
    assert!(!s.conversations.was_handled(OTHER, "ev1").await.unwrap());
    // Marks make no anchor.
    assert!(s.conversations.anchored().await.unwrap().is_empty());
}

async fn an_event_is_claimed_once_journaled_until_its_turn_commits(b: &dyn Backend) {
    use anchorbot::storage::Claim;
    {
        let s = b.open().await;
        let j = &s.journal;
        assert_eq!(
            j.claim(CONV, "ev1", "r1", b"first").await.unwrap(),
            Claim::New
        );
        // A redelivery, or its twin reaching the same store: taken.
        assert_eq!(
            j.claim(CONV, "ev1", "r1", b"again").await.unwrap(),
            Claim::Taken
        );
        assert_eq!(
            j.claim(OTHER, "ev1", "r1", b"other").await.unwrap(),
            Claim::New
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(
            j.claim(CONV, "ev2", "r1", b"second").await.unwrap(),
            Claim::New
        );
    }
    // Claims survive a restart (a crash before the answer), oldest first, with their events.
    let s = b.open().await;
    let pending = s.journal.pending().await.unwrap();
    let seen: Vec<(&str, &str, &[u8])> = pending
        .iter()
        .map(|p| (p.conv.as_str(), p.event.as_str(), p.payload.as_slice()))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2], (CONV, "ev2", &b"second"[..]));
    assert!(seen.contains(&(CONV, "ev1", &b"first"[..])), "{seen:?}");
    assert!(seen.contains(&(OTHER, "ev1", &b"other"[..])), "{seen:?}");
    assert!(pending[0].at_ms <= pending[2].at_ms);
    assert!(pending.iter().all(|p| p.owner == "r1"));
    // Another process takes over an event of one that died: only from its owner, once.
    let j = &s.journal;
    assert!(!j.adopt(CONV, "ev2", "r9", "r2").await.unwrap());
    assert!(j.adopt(CONV, "ev2", "r1", "r2").await.unwrap());
    assert!(!j.adopt(CONV, "ev2", "r1", "r3").await.unwrap());
    assert!(!j.adopt(CONV, "nothing", "r1", "r2").await.unwrap());
    let ev2 = j
        .pending()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.event == "ev2")
        .unwrap();
    assert_eq!(
        (ev2.owner.as_str(), ev2.payload.as_slice()),
        ("r2", &b"second"[..])
    );
    // The turn's commit marks it done, in the same transaction.
    s.conversations
        .update_anchor(CONV, Some("ev1"), Durability::Flushed, &|_| {
            Ok(bytes(json!({ "turns": 1 })))
        })
        .await
        .unwrap();
    // A failure told to the user marks it done too.
    s.conversations.mark_handled(OTHER, "ev1").await.unwrap();
    let left: Vec<String> = s
        .journal
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.event)
        .collect();
    assert_eq!(left, vec!["ev2"]);
    // Done events stay taken.
    assert_eq!(
        s.journal.claim(CONV, "ev1", "r1", b"late").await.unwrap(),
        Claim::Taken
    );
    assert_eq!(
        s.journal.claim(OTHER, "ev1", "r1", b"late").await.unwrap(),
        Claim::Taken
    );
    assert!(s.conversations.was_handled(CONV, "ev1").await.unwrap());
    // A failed turn leaves the claim pending.
    s.conversations
        .update_anchor(CONV, Some("ev2"), Durability::Flushed, &refuse)
        .await
        .unwrap_err();
    assert_eq!(s.journal.pending().await.unwrap().len(), 1);
    // Forgetting the conversation takes its journal too.
    s.maintenance.erase(CONV).await.unwrap();
    assert!(s.journal.pending().await.unwrap().is_empty());
}

async fn twenty_claims_of_one_event_at_once_make_one_winner(b: &dyn Backend) {
    use anchorbot::storage::Claim;
    let s = b.open().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.journal
                    .claim(CONV, "twin", "r1", format!("copy {i}").as_bytes())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() == Claim::New {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.journal.pending().await.unwrap().len(), 1);
}

async fn a_lease_is_held_by_one_until_released_or_expired(b: &dyn Backend) {
    use std::time::Duration;
    let s = b.open().await;
    let l = &s.leases;
    let long = Duration::from_secs(30);
    assert_eq!(l.holder("turn:a").await.unwrap(), None);
    assert!(l.try_acquire("turn:a", "replica-1", long).await.unwrap());
    assert!(!l.try_acquire("turn:a", "replica-2", long).await.unwrap());
    // The holder renews.
    assert!(l.try_acquire("turn:a", "replica-1", long).await.unwrap());
    assert_eq!(
        l.holder("turn:a").await.unwrap().as_deref(),
        Some("replica-1")
    );
    // Another name is another lease.
    assert!(l.try_acquire("jobs", "replica-2", long).await.unwrap());
    // Only the holder releases.
    l.release("turn:a", "replica-2").await.unwrap();
    assert_eq!(
        l.holder("turn:a").await.unwrap().as_deref(),
        Some("replica-1")
    );
    l.release("turn:a", "replica-1").await.unwrap();
    assert_eq!(l.holder("turn:a").await.unwrap(), None);
    assert!(l.try_acquire("turn:a", "replica-2", long).await.unwrap());
    // A holder that stops renewing loses it at expiry.
    assert!(l
        .try_acquire("gateway", "replica-1", Duration::from_millis(200))
        .await
        .unwrap());
    assert!(!l.try_acquire("gateway", "replica-2", long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(l.holder("gateway").await.unwrap(), None);
    assert!(l.try_acquire("gateway", "replica-2", long).await.unwrap());
    // Leases are not conversations.
    assert!(s.maintenance.sizes().await.unwrap().is_empty());
}

async fn leases_are_counted_by_prefix_while_unexpired(b: &dyn Backend) {
    use std::time::Duration;
    let s = b.open().await;
    let l = &s.leases;
    let long = Duration::from_secs(30);
    assert_eq!(l.count("replica:").await.unwrap(), 0);
    assert!(l.try_acquire("replica:a", "a", long).await.unwrap());
    assert!(l.try_acquire("replica:b", "b", long).await.unwrap());
    assert!(l
        .try_acquire("replica:c", "c", Duration::from_millis(200))
        .await
        .unwrap());
    // Other names, including one that merely contains the prefix, are not counted.
    assert!(l.try_acquire("role:gateway", "a", long).await.unwrap());
    assert!(l.try_acquire("x-replica:d", "d", long).await.unwrap());
    assert_eq!(l.count("replica:").await.unwrap(), 3);
    assert_eq!(l.count("role:").await.unwrap(), 1);
    // An expired lease is no longer counted, nor one given up.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(l.count("replica:").await.unwrap(), 2);
    l.release("replica:b", "b").await.unwrap();
    assert_eq!(l.count("replica:").await.unwrap(), 1);
    // A renewal is still one lease.
    assert!(l.try_acquire("replica:a", "a", long).await.unwrap());
    assert_eq!(l.count("replica:").await.unwrap(), 1);
}

async fn rate_holds_are_shared_until_they_expire(b: &dyn Backend) {
    use std::time::Duration;
    let s = b.open().await;
    let h = &s.holds;
    assert!(h.active().await.unwrap().is_empty());
    h.hold(
        r#"["slack","T1","chat.update",null]"#,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    h.hold(r#"["slack","T1","*",null]"#, Duration::from_secs(30))
        .await
        .unwrap();
    // A shorter hold of a held key leaves the longer one.
    h.hold(r#"["slack","T1","*",null]"#, Duration::from_secs(1))
        .await
        .unwrap();
    let mut active = h.active().await.unwrap();
    active.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = active.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            r#"["slack","T1","*",null]"#,
            r#"["slack","T1","chat.update",null]"#
        ]
    );
    assert!(
        active[0].left > Duration::from_secs(25) && active[0].left <= Duration::from_secs(30),
        "{:?}",
        active[0].left
    );
    assert!(
        active[1].left <= Duration::from_millis(300),
        "{:?}",
        active[1].left
    );
    // Past its expiry a hold is gone; a longer hold replaces a shorter one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let active = h.active().await.unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    h.hold(r#"["slack","T1","*",null]"#, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(h.active().await.unwrap()[0].left > Duration::from_secs(55));
    // Holds are not conversations.
    assert!(s.maintenance.sizes().await.unwrap().is_empty());
}

async fn concurrent_updates_of_one_anchor_lose_nothing(b: &dyn Backend) {
    let s = b.open().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.conversations
                    .update_anchor(
                        CONV,
                        Some(&format!("ev{i}")),
                        Durability::Flushed,
                        &increment,
                    )
                    .await
                    .expect("update")
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let anchor = s
        .conversations
        .anchor(CONV)
        .await
        .unwrap()
        .expect("written");
    assert_eq!(value(&anchor), json!({ "n": 20 }));
    for i in 0..20 {
        assert!(s
            .conversations
            .was_handled(CONV, &format!("ev{i}"))
            .await
            .unwrap());
    }
}

async fn documents_chunks_and_vectors_round_trip_in_key_order(b: &dyn Backend) {
    {
        let s = b.open().await;
        let d = &s.documents;
        d.put_record(CONV, &doc("B-doc", 10, "ingesting"))
            .await
            .unwrap();
        // Pages and positions past 255, so byte order and number order would differ.
        let b_chunks = [
            chunk("B-doc", 300, 0),
            chunk("B-doc", 1, 256),
            chunk("B-doc", 2, 0),
            chunk("B-doc", 1, 0),
            chunk("B-doc", 1, 1),
        ];
        d.commit(CONV, &doc("B-doc", 20, "ready"), &b_chunks)
            .await
            .unwrap();
        // `B` sorts before `a` in byte order (and after it in natural-language collations).
        let a_chunks = [
            chunk("a-doc", 0, 2),
            chunk("a-doc", 0, 0),
            chunk("a-doc", 0, 1),
        ];
        d.commit(CONV, &doc("a-doc", 30, "ready"), &a_chunks)
            .await
            .unwrap();
        d.commit(OTHER, &doc("a-doc", 40, "ready"), &[chunk("a-doc", 0, 0)])
            .await
            .unwrap();
        // Committing a chunk again replaces it.
        let mut again = chunk("a-doc", 0, 1);
        again.record = bytes(json!({ "text": "rewritten" }));
        d.commit(CONV, &doc("a-doc", 31, "ready"), &[again])
            .await
            .unwrap();
    }
    let s = b.open().await;
    let d = &s.documents;
    assert_eq!(
        sorted_records(&s, CONV).await,
        vec![doc("B-doc", 20, "ready"), doc("a-doc", 31, "ready")]
    );
    let mut all = d.all_records().await.unwrap();
    all.sort_by(|x, y| (&x.0, &x.1.doc).cmp(&(&y.0, &y.1.doc)));
    assert_eq!(
        all,
        vec![
            (OTHER.to_string(), doc("a-doc", 40, "ready")),
            (CONV.to_string(), doc("B-doc", 20, "ready")),
            (CONV.to_string(), doc("a-doc", 31, "ready")),
        ]
    );

    assert_eq!(
        d.chunk(CONV, "B-doc", 1, 256).await.unwrap(),
        Some(chunk("B-doc", 1, 256).record)
    );
    assert_eq!(
        d.chunk(CONV, "a-doc", 0, 1)
            .await
            .unwrap()
            .map(|r| value(&r)),
        Some(json!({ "text": "rewritten" }))
    );
    assert_eq!(d.chunk(CONV, "B-doc", 1, 2).await.unwrap(), None);
    assert_eq!(d.chunk(OTHER, "B-doc", 1, 0).await.unwrap(), None);

    let pages = d.document_chunks(CONV, "B-doc").await.unwrap();
    let b = |p, q| ("B-doc".to_string(), p, q);
    assert_eq!(
        places(&pages),
        vec![b(1, 0), b(1, 1), b(1, 256), b(2, 0), b(300, 0)]
    );
    assert_eq!(
        pages.iter().map(|c| c.vector.clone()).collect::<Vec<_>>(),
        [(1, 0), (1, 1), (1, 256), (2, 0), (300, 0)]
            .iter()
            .map(|&(p, q)| chunk("B-doc", p, q).vector)
            .collect::<Vec<_>>(),
        "each chunk comes with its vector"
    );
    assert_eq!(pages[2].record, chunk("B-doc", 1, 256).record);

    let scanned = scan(&s, CONV).await;
    let a = |q| ("a-doc".to_string(), 0, q);
    assert_eq!(
        places(&scanned),
        // Byte order of the document id, then page and position as numbers.
        vec![
            b(1, 0),
            b(1, 1),
            b(1, 256),
            b(2, 0),
            b(300, 0),
            a(0),
            a(1),
            a(2)
        ]
    );
    for c in &scanned {
        assert_eq!(c.vector, chunk(&c.doc, c.page, c.position).vector, "{c:?}");
    }
    assert_eq!(scanned[0], chunk("B-doc", 1, 0));
    assert_eq!(places(&scan(&s, OTHER).await), vec![a(0)]);
    assert!(scan(&s, "console:nobody").await.is_empty());

    assert_eq!(d.counts(CONV).await.unwrap(), (2, 8, 8));
    assert_eq!(d.counts(OTHER).await.unwrap(), (1, 1, 1));
    assert_eq!(d.counts("console:nobody").await.unwrap(), (0, 0, 0));
}

async fn clear_page_drops_one_page_and_writes_the_record(b: &dyn Backend) {
    let s = b.open().await;
    let d = &s.documents;
    let chunks = [
        chunk("d1", 1, 0),
        chunk("d1", 1, 1),
        chunk("d1", 1, 2),
        chunk("d1", 2, 0),
        chunk("d1", 2, 1),
    ];
    d.commit(CONV, &doc("d1", 1, "ingesting"), &chunks)
        .await
        .unwrap();
    d.commit(CONV, &doc("d2", 1, "ready"), &[chunk("d2", 1, 0)])
        .await
        .unwrap();
    d.clear_page(CONV, &doc("d1", 2, "ingesting again"), 1)
        .await
        .unwrap();
    let at = |p, q| ("d1".to_string(), p, q);
    assert_eq!(
        places(&d.document_chunks(CONV, "d1").await.unwrap()),
        vec![at(2, 0), at(2, 1)]
    );
    assert_eq!(d.chunk(CONV, "d1", 1, 0).await.unwrap(), None);
    assert_eq!(
        places(&d.document_chunks(CONV, "d2").await.unwrap()),
        vec![("d2".to_string(), 1, 0)]
    );
    assert_eq!(
        sorted_records(&s, CONV).await,
        vec![doc("d1", 2, "ingesting again"), doc("d2", 1, "ready")]
    );
    assert_eq!(d.counts(CONV).await.unwrap(), (2, 3, 3));
}

async fn remove_document_takes_its_chunks_and_file(b: &dyn Backend) {
    let s = b.open().await;
    let d = &s.documents;
    for id in ["d1", "d2"] {
        d.commit(
            CONV,
            &doc(id, 1, "ready"),
            &[chunk(id, 1, 0), chunk(id, 2, 0)],
        )
        .await
        .unwrap();
        d.put_source(CONV, id, id.as_bytes()).await.unwrap();
    }
    d.commit(OTHER, &doc("d1", 1, "ready"), &[chunk("d1", 1, 0)])
        .await
        .unwrap();
    d.remove_document(CONV, "d1").await.unwrap();
    assert_eq!(sorted_records(&s, CONV).await, vec![doc("d2", 1, "ready")]);
    assert!(d.document_chunks(CONV, "d1").await.unwrap().is_empty());
    assert_eq!(d.source(CONV, "d1").await.unwrap(), None);
    assert_eq!(d.source(CONV, "d2").await.unwrap(), Some(b"d2".to_vec()));
    assert_eq!(d.counts(CONV).await.unwrap(), (1, 2, 2));
    assert_eq!(d.counts(OTHER).await.unwrap(), (1, 1, 1));
    // Removing what is not there is not an error.
    d.remove_document(CONV, "d1").await.unwrap();
}

async fn sources_are_kept_replaced_and_pruned(b: &dyn Backend) {
    let s = b.open().await;
    let d = &s.documents;
    d.put_record(CONV, &doc("d1", 1, "partial")).await.unwrap();
    d.put_source(CONV, "d1", b"first").await.unwrap();
    d.put_source(CONV, "d1", b"second").await.unwrap();
    // No record in its conversation: an orphan, pruned.
    d.put_source(CONV, "gone", b"x").await.unwrap();
    d.put_source(OTHER, "d1", b"y").await.unwrap();
    assert_eq!(
        d.source(CONV, "d1").await.unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(d.prune_sources().await.unwrap(), 2);
    assert_eq!(
        d.source(CONV, "d1").await.unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(d.source(CONV, "gone").await.unwrap(), None);
    assert_eq!(d.source(OTHER, "d1").await.unwrap(), None);
    assert_eq!(d.prune_sources().await.unwrap(), 0);
    d.remove_source(CONV, "d1").await.unwrap();
    assert_eq!(d.source(CONV, "d1").await.unwrap(), None);
}

async fn clear_keeps_the_marks_and_other_conversations(b: &dyn Backend) {
    let s = b.open().await;
    fill(&s, CONV).await;
    fill(&s, OTHER).await;
    let other_before = s.maintenance.size_of(OTHER).await.unwrap();
    assert_eq!(s.maintenance.clear(CONV).await.unwrap(), (2, 3));
    assert_eq!(s.conversations.anchor(CONV).await.unwrap(), None);
    assert!(s.documents.records(CONV).await.unwrap().is_empty());
    assert_eq!(s.documents.counts(CONV).await.unwrap(), (0, 0, 0));
    assert_eq!(s.documents.source(CONV, "d2").await.unwrap(), None);
    assert!(scan(&s, CONV).await.is_empty());
    assert!(s.conversations.was_handled(CONV, "ev1").await.unwrap());
    let left = s.maintenance.size_of(CONV).await.unwrap();
    assert_eq!(left.records, 1, "only the mark: {left:?}");
    assert_eq!(s.maintenance.size_of(OTHER).await.unwrap(), other_before);
    assert_eq!(s.conversations.anchored().await.unwrap(), vec![OTHER]);
    assert_eq!(s.maintenance.clear(CONV).await.unwrap(), (0, 0));
}

async fn erase_removes_the_marks_too_and_reports_what_went(b: &dyn Backend) {
    let s = b.open().await;
    fill(&s, CONV).await;
    fill(&s, OTHER).await;
    let before = s.maintenance.size_of(CONV).await.unwrap();
    let other_before = s.maintenance.size_of(OTHER).await.unwrap();
    let erased = s.maintenance.erase(CONV).await.unwrap();
    assert_eq!(erased, before);
    // Anchor, mark, two documents, three chunks and their vectors, one kept file.
    assert_eq!(
        (
            erased.records,
            erased.documents,
            erased.chunks,
            erased.vectors
        ),
        (11, 2, 3, 3)
    );
    assert_eq!(erased.last_ingested_ms, 9);
    assert_eq!(
        s.maintenance.size_of(CONV).await.unwrap(),
        ConvSize {
            conv: CONV.into(),
            ..ConvSize::default()
        }
    );
    assert!(!s.conversations.was_handled(CONV, "ev1").await.unwrap());
    assert_eq!(s.maintenance.size_of(OTHER).await.unwrap(), other_before);
    assert_eq!(s.maintenance.sizes().await.unwrap(), vec![other_before]);
    let again = s.maintenance.erase(CONV).await.unwrap();
    assert_eq!(again.records, 0);
    drop(s);
    let s = b.open().await;
    assert_eq!(s.maintenance.size_of(CONV).await.unwrap().records, 0);
}

async fn sizes_count_every_kind_of_row_as_sled_does(b: &dyn Backend) {
    let s = b.open().await;
    let (marks, anchor, docs) = ("console:marks", "console:anchor", "console:docs");
    s.conversations.mark_handled(marks, "ev1").await.unwrap();
    s.conversations
        .update_anchor(anchor, None, Durability::Flushed, &increment)
        .await
        .unwrap();
    let (d1, d2, c) = (
        doc("d1", 42, "ready"),
        doc("d2", 7, "ready"),
        chunk("d1", 1, 0),
    );
    s.documents
        .commit(docs, &d1, std::slice::from_ref(&c))
        .await
        .unwrap();
    s.documents.put_record(docs, &d2).await.unwrap();
    s.documents.put_source(docs, "d2", b"file").await.unwrap();
    s.conversations.flush().await.unwrap();

    // The bytes of sled's keys and values: `conv\0event` and 8 bytes of time; `conv` and
    // the anchor; `conv\0doc` and the record (or the kept file); `conv\0doc\0` plus 8 bytes
    // of page and position, once with the chunk and once with its vector.
    let len = |s: &str| s.len() as u64;
    let expected = vec![
        ConvSize {
            conv: anchor.into(),
            records: 1,
            bytes: len(anchor) + len(r#"{"n":1}"#),
            ..ConvSize::default()
        },
        ConvSize {
            conv: docs.into(),
            records: 5,
            bytes: (len(docs) + 3) * 3
                + d1.record.len() as u64
                + d2.record.len() as u64
                + 4
                + (len(docs) + 4 + 8) * 2
                + c.record.len() as u64
                + c.vector.len() as u64,
            documents: 2,
            chunks: 1,
            vectors: 1,
            last_ingested_ms: 42,
        },
        ConvSize {
            conv: marks.into(),
            records: 1,
            bytes: len(marks) + 1 + 3 + 8,
            ..ConvSize::default()
        },
    ];
    let mut sizes = s.maintenance.sizes().await.unwrap();
    sizes.sort_by(|a, b| a.conv.cmp(&b.conv));
    assert_eq!(sizes, expected);
    for e in &expected {
        assert_eq!(&s.maintenance.size_of(&e.conv).await.unwrap(), e);
    }
    assert_eq!(
        s.maintenance.size_of("console:nothing").await.unwrap(),
        ConvSize {
            conv: "console:nothing".into(),
            ..ConvSize::default()
        }
    );
}

async fn ready_and_described_without_secrets(b: &dyn Backend) {
    let s = b.open().await;
    s.maintenance.ready().await.unwrap();
    let described = s.maintenance.describe();
    let debugged = format!("{s:?}");
    assert!(!described.is_empty());
    assert!(debugged.contains(&described), "{debugged}");
    if let Some(secret) = b.secret() {
        assert!(!described.contains(&secret), "{described}");
        assert!(!debugged.contains(&secret), "{debugged}");
    }
}

/// One test per scenario for a backend: `backend_tests!(name, open)`, where `open` is an
/// `async fn() -> Option<impl Backend>` (`None` skips, e.g. without a database).
macro_rules! backend_tests {
    ($backend:ident, $open:ident) => {
        mod $backend {
            backend_tests!(@each $open;
                anchors_round_trip_and_survive_reopen,
                an_update_with_an_event_marks_both_or_neither,
                events_are_deduplicated_per_conversation,
                an_event_is_claimed_once_journaled_until_its_turn_commits,
                twenty_claims_of_one_event_at_once_make_one_winner,
                a_lease_is_held_by_one_until_released_or_expired,
                leases_are_counted_by_prefix_while_unexpired,
                rate_holds_are_shared_until_they_expire,
                concurrent_updates_of_one_anchor_lose_nothing,
                documents_chunks_and_vectors_round_trip_in_key_order,
                clear_page_drops_one_page_and_writes_the_record,
                remove_document_takes_its_chunks_and_file,
                sources_are_kept_replaced_and_pruned,
                clear_keeps_the_marks_and_other_conversations,
                erase_removes_the_marks_too_and_reports_what_went,
                sizes_count_every_kind_of_row_as_sled_does,
                ready_and_described_without_secrets,
            );
        }
    };
    (@each $open:ident; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let Some(backend) = super::$open().await else {
                    return;
                };
                super::$scenario(&backend).await;
            }
        )*
    };
}

// Every backend runs every scenario: a backend is one line here.
backend_tests!(sled, sled_backend);
backend_tests!(postgres, pg_backend);

// ---- sled ---------------------------------------------------------------------------------

/// sled in a fresh data directory.
struct SledBackend {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Backend for SledBackend {
    async fn open(&self) -> Storage {
        // The previous handle was just dropped; sled may hold its lock for a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Location::Sled(self.dir.path().to_path_buf()).open().await {
                Ok(s) => return s,
                Err(StorageError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(e) => panic!("cannot open the sled store: {e}"),
            }
        }
    }

    fn secret(&self) -> Option<String> {
        None
    }
}

async fn sled_backend() -> Option<SledBackend> {
    Some(SledBackend {
        dir: tempfile::tempdir().expect("temp dir"),
    })
}

// ---- PostgreSQL ---------------------------------------------------------------------------

/// PostgreSQL on a fresh database of the test cluster.
struct PgBackend {
    db: common::pg::TestDb,
}

#[async_trait]
impl Backend for PgBackend {
    async fn open(&self) -> Storage {
        Storage::of(Arc::new(
            PgStore::connect(&self.db.url).await.expect("connect"),
        ))
    }

    fn secret(&self) -> Option<String> {
        Some(self.db.password())
    }
}

async fn pg_backend() -> Option<PgBackend> {
    common::pg::database().await.map(|db| PgBackend { db })
}

/// What only PostgreSQL has: its schema versions, URLs, TLS, and what its errors show.
mod postgres_only {
    use super::*;
    use secrecy::SecretString;
    use sqlx::Row;

    use super::common::pg;

    fn secret(url: &str) -> SecretString {
        SecretString::from(url.to_string())
    }

    /// The schema versions recorded, with when each was applied.
    async fn versions(db: &pg::TestDb) -> Vec<(i64, i64)> {
        let mut conn = db.connection().await;
        sqlx::query("SELECT version, applied_ms FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("version"), r.get("applied_ms")))
            .collect()
    }

    #[tokio::test]
    async fn describe_names_the_database_without_the_password() {
        let Some(db) = pg::database().await else {
            return;
        };
        let store = PgStore::connect(&db.url).await.unwrap();
        let url = url::Url::parse(&db.url_text()).unwrap();
        let expected = format!(
            "PostgreSQL at postgres://{}@{}:{}/{}",
            url.username(),
            url.host_str().unwrap(),
            url.port().unwrap(),
            db.name
        );
        assert_eq!(
            Storage::of(Arc::new(store.clone())).maintenance.describe(),
            expected
        );
        assert!(!format!("{store:?}").contains(&db.password()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_run_once_even_when_replicas_start_together() {
        let Some(db) = pg::database().await else {
            return;
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { PgStore::connect(&url).await })
            })
            .collect();
        for s in starts {
            s.await.unwrap().expect("every replica starts");
        }
        let first = versions(&db).await;
        assert_eq!(
            first.iter().map(|v| v.0).collect::<Vec<_>>(),
            (1..=SCHEMA_VERSION).collect::<Vec<_>>()
        );
        PgStore::connect(&db.url).await.expect("reconnect");
        assert_eq!(versions(&db).await, first, "nothing ran again");
    }

    #[tokio::test]
    async fn a_schema_newer_than_the_binary_is_refused() {
        let Some(db) = pg::database().await else {
            return;
        };
        PgStore::connect(&db.url).await.unwrap().close().await;
        let mut conn = db.connection().await;
        sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, 0)")
            .bind(SCHEMA_VERSION + 1)
            .execute(&mut conn)
            .await
            .unwrap();
        let err = PgStore::connect(&db.url).await.expect_err("refused");
        assert!(
            matches!(err, StorageError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade anchorbot"), "{err}");
    }

    #[tokio::test]
    async fn marks_older_than_a_day_are_pruned_at_connect() {
        let Some(db) = pg::database().await else {
            return;
        };
        let store = Storage::of(Arc::new(PgStore::connect(&db.url).await.unwrap()));
        store.conversations.mark_handled(CONV, "new").await.unwrap();
        store.conversations.mark_handled(CONV, "old").await.unwrap();
        let mut conn = db.connection().await;
        let day_and_a_bit = 25 * 3600 * 1000_i64;
        sqlx::query("UPDATE seen SET at_ms = at_ms - $1 WHERE event_id = 'old'")
            .bind(day_and_a_bit)
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(store.conversations.was_handled(CONV, "old").await.unwrap());
        let store = Storage::of(Arc::new(PgStore::connect(&db.url).await.unwrap()));
        assert!(!store.conversations.was_handled(CONV, "old").await.unwrap());
        assert!(store.conversations.was_handled(CONV, "new").await.unwrap());
    }

    #[tokio::test]
    async fn a_wrong_password_is_unavailable_and_neither_password_nor_url_is_shown() {
        let Some(db) = pg::database().await else {
            return;
        };
        let mut url = url::Url::parse(&db.url_text()).unwrap();
        url.set_password(Some("Wr0ng-pass-2f1b")).unwrap();
        let err = PgStore::connect(&secret(url.as_str()))
            .await
            .expect_err("refused");
        let shown = format!("{err} / {err:?}");
        assert!(matches!(err, StorageError::Unavailable { .. }), "{shown}");
        assert!(shown.contains("password authentication failed"), "{shown}");
        assert!(
            shown.contains(&format!("/{}", db.name)),
            "names the database: {shown}"
        );
        for hidden in [
            "Wr0ng-pass-2f1b",
            url.as_str(),
            &db.password(),
            &db.url_text(),
        ] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }

    #[tokio::test]
    async fn tls_is_used_with_sslmode_require_and_verified_with_verify_full() {
        let Some(db) = pg::database().await else {
            return;
        };
        let Ok(ca) = std::env::var(pg::CA_VAR) else {
            assert!(
                !pg::required(),
                "{} is not set: .ci/postgres.sh sets it",
                pg::CA_VAR
            );
            eprintln!("TLS test skipped: {} is not set", pg::CA_VAR);
            return;
        };
        let with = |query: &str| secret(&format!("{}?{query}", db.url_text()));
        let store = PgStore::connect(&with("sslmode=require"))
            .await
            .expect("TLS");
        Storage::of(Arc::new(store))
            .maintenance
            .ready()
            .await
            .unwrap();
        let verified = PgStore::connect(&with(&format!("sslmode=verify-full&sslrootcert={ca}")))
            .await
            .expect("the server's certificate is signed by the test CA");
        Storage::of(Arc::new(verified))
            .maintenance
            .ready()
            .await
            .unwrap();
        // Against the public roots, the test CA is unknown: verification really happens.
        let err = PgStore::connect(&with("sslmode=verify-full"))
            .await
            .expect_err("an unknown CA is refused");
        let shown = format!("{err} / {err:?}");
        assert!(matches!(err, StorageError::Unavailable { .. }), "{shown}");
        assert!(!shown.contains(&db.password()), "{shown}");
    }

    #[tokio::test]
    async fn the_cluster_reports_tls_for_a_require_connection() {
        // What `sslmode=require` asks of the driver, checked from the server's side.
        let Some(db) = pg::database().await else {
            return;
        };
        if std::env::var(pg::CA_VAR).is_err() && !pg::required() {
            return;
        }
        use sqlx::{Connection, PgConnection};
        let mut conn = PgConnection::connect(&format!("{}?sslmode=require", db.url_text()))
            .await
            .unwrap();
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(ssl);
        let mut plain = PgConnection::connect(&format!("{}?sslmode=disable", db.url_text()))
            .await
            .unwrap();
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut plain)
                .await
                .unwrap();
        assert!(!ssl);
    }

    #[tokio::test]
    async fn a_url_that_is_not_postgres_is_refused_without_echoing_it() {
        let err = PgStore::connect(&secret("mysql://root:hunter2@db.example/bot"))
            .await
            .expect_err("refused");
        let shown = format!("{err} / {err:?}");
        assert!(shown.contains("must be a postgres:// URL"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn an_unreachable_database_is_unavailable() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let err = PgStore::connect(&secret("postgres://anchorbot:hunter2@127.0.0.1:1/bot"))
            .await
            .expect_err("nothing listens");
        let shown = format!("{err} / {err:?}");
        assert!(matches!(err, StorageError::Unavailable { .. }), "{shown}");
        assert!(
            shown.contains("postgres://anchorbot@127.0.0.1:1/bot"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
