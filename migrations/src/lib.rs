//! Forward-only schema migrations for the anchorbot sled store.
//!
//! The schema version lives under `schema_version` in the `meta` tree. [`migrate`] runs at open
//! and applies every step above the stored version, in order. Each step rewrites its records
//! and bumps the version in one transaction, so a crash mid-migration leaves the previous
//! version intact. A store written by a newer anchorbot is refused, never touched.
//!
//! To add a migration: write `fn vN(db) -> Result<(), MigrationError>`, append it to [`STEPS`],
//! commit a fixture written at version N-1 under `tests/fixtures/`, and test the upgrade.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

/// Tree holding store metadata.
pub const META_TREE: &str = "meta";
/// Tree holding one context anchor per conversation, keyed by the conversation's stable key.
pub const ANCHORS_TREE: &str = "anchors";
/// Tree holding processed platform event ids, for de-duplication.
pub const SEEN_TREE: &str = "seen";
/// Key of the schema version in [`META_TREE`].
pub const VERSION_KEY: &[u8] = b"schema_version";

/// One forward step: the version it produces and the function that gets there.
pub struct Step {
    /// Version after this step.
    pub to: u32,
    /// What the step does, for logs.
    pub name: &'static str,
    /// The step itself.
    pub run: fn(&sled::Db) -> Result<(), MigrationError>,
}

/// Every migration, oldest first.
pub const STEPS: &[Step] = &[
    Step {
        to: 1,
        name: "initial layout: meta and anchors trees",
        run: v1_initial,
    },
    Step {
        to: 2,
        name: "exchanges with authors, summary list, counters, documents, seen-events tree",
        run: v2_exchanges,
    },
];

/// The version this build reads and writes.
pub const CURRENT_VERSION: u32 = 2;

/// Why a migration could not run.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The store was written by a newer anchorbot.
    #[error("the store is at schema version {found}, newer than this anchorbot supports ({supported}); upgrade anchorbot")]
    TooNew {
        /// Version on disk.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// A record could not be read as the schema it claims.
    #[error("record {key:?} in tree {tree} is not valid at schema version {version}: {reason}")]
    BadRecord {
        /// Tree name.
        tree: &'static str,
        /// Record key, lossily decoded.
        key: String,
        /// Version being migrated from.
        version: u32,
        /// What is wrong.
        reason: String,
    },
    /// sled failed.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Version found on disk (0 for a new store).
    pub from: u32,
    /// Version after the run.
    pub to: u32,
}

/// Reads the stored schema version; 0 means a store that has never been migrated.
pub fn stored_version(db: &sled::Db) -> Result<u32, MigrationError> {
    let meta = db.open_tree(META_TREE)?;
    Ok(match meta.get(VERSION_KEY)? {
        Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
        Some(v) => {
            return Err(MigrationError::BadRecord {
                tree: META_TREE,
                key: "schema_version".into(),
                version: 0,
                reason: format!("{} bytes instead of 4", v.len()),
            })
        }
        None => 0,
    })
}

/// Brings `db` up to [`CURRENT_VERSION`], then flushes it.
pub fn migrate(db: &sled::Db) -> Result<Report, MigrationError> {
    migrate_to(db, CURRENT_VERSION)
}

/// Brings `db` up to `target` (used by tests to write fixtures at older versions).
pub fn migrate_to(db: &sled::Db, target: u32) -> Result<Report, MigrationError> {
    let from = stored_version(db)?;
    if from > CURRENT_VERSION {
        return Err(MigrationError::TooNew {
            found: from,
            supported: CURRENT_VERSION,
        });
    }
    for step in STEPS.iter().filter(|s| s.to > from && s.to <= target) {
        tracing::info!(to = step.to, name = step.name, "migrating store");
        (step.run)(db)?;
    }
    db.flush()?;
    Ok(Report {
        from,
        to: stored_version(db)?,
    })
}

fn version_bytes(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Writes `records` into `tree` and sets the version, atomically.
fn commit(
    db: &sled::Db,
    tree: &sled::Tree,
    records: Vec<(sled::IVec, Vec<u8>)>,
    version: u32,
) -> Result<(), MigrationError> {
    let meta = db.open_tree(META_TREE)?;
    (tree, &meta)
        .transaction(|(t, m)| {
            for (k, v) in &records {
                t.insert(k.clone(), v.clone())?;
            }
            m.insert(VERSION_KEY, &version_bytes(version))?;
            Ok::<_, ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(e) => MigrationError::Sled(e),
            TransactionError::Abort(()) => unreachable!("migration transactions never abort"),
        })
}

/// Version 1: the `meta` and `anchors` trees. Anchors are JSON objects
/// `{summary, facts, turns: [{role, text, at}], turn_count}`.
fn v1_initial(db: &sled::Db) -> Result<(), MigrationError> {
    let anchors = db.open_tree(ANCHORS_TREE)?;
    commit(db, &anchors, Vec::new(), 1)
}

/// Version 2: a turn becomes an exchange (query with its author, answer, time in ms); the
/// single summary string becomes a list; counters and the document list are added; the
/// `seen` tree records processed event ids.
fn v2_exchanges(db: &sled::Db) -> Result<(), MigrationError> {
    let anchors = db.open_tree(ANCHORS_TREE)?;
    db.open_tree(SEEN_TREE)?;
    let mut records = Vec::new();
    for item in anchors.iter() {
        let (k, v) = item?;
        let bad = |reason: String| MigrationError::BadRecord {
            tree: ANCHORS_TREE,
            key: String::from_utf8_lossy(&k).into_owned(),
            version: 1,
            reason,
        };
        let old: Value = serde_json::from_slice(&v).map_err(|e| bad(e.to_string()))?;
        let new = v1_to_v2(&old).map_err(bad)?;
        records.push((k, serde_json::to_vec(&new).expect("JSON values serialize")));
    }
    commit(db, &anchors, records, 2)
}

/// Converts one version-1 anchor to version 2.
pub fn v1_to_v2(old: &Value) -> Result<Value, String> {
    let turns = old
        .get("turns")
        .and_then(Value::as_array)
        .ok_or("missing turns")?;
    let mut exchanges = Vec::new();
    let mut pending_user: Option<&Value> = None;
    for t in turns {
        let role = t.get("role").and_then(Value::as_str).unwrap_or("");
        let text = t.get("text").and_then(Value::as_str).unwrap_or("");
        let at = t.get("at").and_then(Value::as_u64).unwrap_or(0);
        match role {
            "user" => pending_user = Some(t),
            "assistant" => {
                let (query, q_at) = match pending_user.take() {
                    Some(u) => (
                        u.get("text").and_then(Value::as_str).unwrap_or(""),
                        u.get("at").and_then(Value::as_u64).unwrap_or(at),
                    ),
                    None => ("", at),
                };
                exchanges.push(json!({
                    "author": {"id": "unknown", "display_name": "user"},
                    "query": query,
                    "answer": text,
                    "at_ms": q_at * 1000,
                }));
            }
            other => return Err(format!("unknown role {other:?}")),
        }
    }
    let summary = old.get("summary").and_then(Value::as_str).unwrap_or("");
    let summaries: Vec<Value> = if summary.trim().is_empty() {
        Vec::new()
    } else {
        vec![json!({"text": summary, "covers_turns": 0, "at_ms": 0})]
    };
    let facts = old.get("facts").cloned().unwrap_or_else(|| json!([]));
    let turn_count = old
        .get("turn_count")
        .and_then(Value::as_u64)
        .unwrap_or(exchanges.len() as u64);
    Ok(json!({
        "summaries": summaries,
        "facts": facts,
        "turns": exchanges,
        "counters": {
            "turns_total": turn_count,
            "summarizations": summaries.len(),
            "prompt_tokens_last": 0,
        },
        "documents": [],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_store_reaches_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let r = migrate(&db).unwrap();
        assert_eq!(
            r,
            Report {
                from: 0,
                to: CURRENT_VERSION
            }
        );
        assert_eq!(
            migrate(&db).unwrap(),
            Report {
                from: CURRENT_VERSION,
                to: CURRENT_VERSION
            }
        );
    }

    #[test]
    fn newer_store_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        db.open_tree(META_TREE)
            .unwrap()
            .insert(VERSION_KEY, &99u32.to_be_bytes())
            .unwrap();
        assert!(matches!(
            migrate(&db),
            Err(MigrationError::TooNew { found: 99, .. })
        ));
        assert_eq!(stored_version(&db).unwrap(), 99);
    }

    #[test]
    fn v1_pairs_become_exchanges() {
        let old = json!({
            "summary": "they discussed pricing",
            "facts": ["budget is 10k"],
            "turns": [
                {"role": "user", "text": "hi", "at": 5},
                {"role": "assistant", "text": "hello", "at": 6}
            ],
            "turn_count": 7
        });
        let new = v1_to_v2(&old).unwrap();
        assert_eq!(new["turns"][0]["query"], "hi");
        assert_eq!(new["turns"][0]["answer"], "hello");
        assert_eq!(new["turns"][0]["at_ms"], 5000);
        assert_eq!(new["summaries"][0]["text"], "they discussed pricing");
        assert_eq!(new["facts"][0], "budget is 10k");
        assert_eq!(new["counters"]["turns_total"], 7);
    }
}
