//! `docs/configuration.md` against the code. The key set comes from `Settings::default()`
//! serialized to JSON (an unset `Option` serializes as `null`, so it is there too), not from a
//! hand-written list: a key added to `Settings` without a row fails here, and so does a row
//! whose key, default or environment variable is not the code's.
//!
//! The doc's format: Markdown tables whose rows start with the dotted key in backticks, then
//! the environment variable in backticks (or `none`), the default in backticks (`unset` for an
//! unset `Option`), and the meaning.

#![allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.

use std::collections::BTreeMap;
use std::path::Path;

use anchorbot::settings::Settings;
use serde_json::Value;

const DOC: &str = "docs/configuration.md";

/// One row of the reference.
struct Row {
    key: String,
    env: Option<String>,
    default: String,
    line: usize,
}

/// Every key of `Settings` (dotted), with its default as JSON.
fn settings_keys() -> BTreeMap<String, Value> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
        match v {
            // A section recurses; an empty map (none today) would be a key of its own.
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &key, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &serde_json::to_value(Settings::default()).expect("Settings serializes"),
        "",
        &mut out,
    );
    out
}

/// The text between the first pair of backticks.
fn code(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(&cell[start..start + len])
}

fn doc_rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{DOC} must exist ({}): {e}", path.display()));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 4,
            "{DOC}:{}: a row has four cells (key, environment, default, meaning): {line}",
            i + 1
        );
        let key = code(cells[0]).unwrap_or_else(|| panic!("{DOC}:{}: no key", i + 1));
        let default =
            code(cells[2]).unwrap_or_else(|| panic!("{DOC}:{}: default not in backticks", i + 1));
        rows.push(Row {
            key: key.to_string(),
            env: code(cells[1]).map(str::to_string),
            default: default.to_string(),
            line: i + 1,
        });
    }
    assert!(!rows.is_empty(), "{DOC} has no key rows");
    rows
}

/// The value at a dotted key, or `None` when the key is not there.
fn at<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

#[test]
fn every_settings_key_has_a_row_and_every_row_names_a_real_key() {
    let keys = settings_keys();
    let rows = doc_rows();
    let mut problems = Vec::new();
    for key in keys.keys() {
        if !rows.iter().any(|r| &r.key == key) {
            problems.push(format!(
                "key {key} is in Settings but not in {DOC}: add a row (key, environment, default, meaning)"
            ));
        }
    }
    let mut seen = BTreeMap::new();
    for r in &rows {
        if !keys.contains_key(&r.key) {
            problems.push(format!(
                "{DOC}:{} names key {}, which Settings does not have",
                r.line, r.key
            ));
        }
        if let Some(first) = seen.insert(r.key.clone(), r.line) {
            problems.push(format!(
                "{DOC}:{} repeats key {} (first on line {first})",
                r.line, r.key
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn documented_defaults_are_the_codes() {
    let keys = settings_keys();
    let mut problems = Vec::new();
    for r in doc_rows() {
        // A key that does not exist is reported by the test above.
        let Some(expected) = keys.get(&r.key) else {
            continue;
        };
        let d = r.default.as_str();
        let same = match expected {
            Value::Null => d == "unset",
            Value::String(s) => d == s,
            Value::Number(n) => {
                let want = n.as_f64().expect("a JSON number is an f64");
                d.parse::<f64>()
                    .is_ok_and(|got| (got - want).abs() <= 1e-6 * want.abs().max(1.0))
            }
            other => serde_json::from_str::<Value>(d).is_ok_and(|got| &got == other),
        };
        if !same {
            problems.push(format!(
                "{DOC}:{}: the default of {} is {} in the code, but the doc says `{d}`{}",
                r.line,
                r.key,
                expected,
                if expected.is_null() {
                    " (write `unset`)"
                } else {
                    ""
                }
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// What setting `name` to values unlike `default` does to `key`: `true` when the variable
/// reaches the key (its value changes, or loading fails naming the key because the value does
/// not fit its type, e.g. an enum), `false` when the variable is ignored.
fn variable_reaches_key(name: &str, key: &str, default: &Value) -> bool {
    let candidates: Vec<String> = match default {
        Value::Bool(b) => vec![(!b).to_string()],
        Value::Number(n) => match n.as_u64() {
            Some(u) => vec![(u + 1).to_string()],
            None => vec![(n.as_f64().expect("number") + 1.0).to_string()],
        },
        Value::Null => vec!["7".into(), "http://marker.invalid/v1".into()],
        _ => vec!["http://marker.invalid/v1".into()],
    };
    let field = key.rsplit('.').next().expect("a key has a last part");
    let mut reached = false;
    for value in candidates {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(name, &value);
            reached |= match Settings::load(None) {
                Ok(s) => {
                    let loaded = serde_json::to_value(&s).expect("Settings serializes");
                    at(&loaded, key) != Some(default)
                }
                // figment names the key in upper case.
                Err(e) => e.to_string().to_lowercase().contains(field),
            };
            Ok(())
        });
        if reached {
            break;
        }
    }
    reached
}

#[test]
fn documented_environment_variables_set_their_keys() {
    let keys = settings_keys();
    let mut problems = Vec::new();
    for r in doc_rows() {
        let Some(default) = keys.get(&r.key) else {
            continue;
        };
        match &r.env {
            Some(name) => {
                if !variable_reaches_key(name, &r.key, default) {
                    problems.push(format!(
                        "{DOC}:{}: {name} does not set {} (Settings::load ignores it)",
                        r.line, r.key
                    ));
                }
            }
            None => {
                // "none": the conventional name must then really be ignored.
                let name = format!("ANCHORBOT_{}", r.key.replace('.', "_").to_uppercase());
                if variable_reaches_key(&name, &r.key, default) {
                    problems.push(format!(
                        "{DOC}:{}: the doc gives {} no environment variable, but {name} sets it",
                        r.line, r.key
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
