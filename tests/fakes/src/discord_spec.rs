//! Discord's HTTP API as its published OpenAPI 3.1 file describes it, checked on every REST
//! request the fake Discord receives.
//!
//! The rulebook is `tests/fixtures/specs/discord-openapi.json` (discord/discord-api-spec, API
//! v10), parsed once. For each request below `/api/v10`:
//! - the route exists: its method and path match one of the spec's paths, `{param}` segments
//!   matching any segment (a literal segment such as `@me` or `@original` wins over a
//!   parameter);
//! - the path and query parameters are valid for their schemas (a snowflake is digits), and the
//!   required ones are present;
//! - a body is sent only where the operation takes one, with a content type its `requestBody`
//!   lists, and a required body is not missing;
//! - a JSON body validates against the operation's request schema (JSON Schema 2020-12, with
//!   every `#/components/...` reference resolved against the whole document). Each schema is
//!   compiled the first time its route is used, then kept.
//!
//! [`check`] returns the route template the spec names and every rule broken, worded so that a
//! test failure says which rule and where it comes from. The limits the spec gives only in
//! prose (components, the interaction deadline, installation contexts) are checked by the fake
//! itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::Value;

/// Discord's OpenAPI file, as vendored.
const SPEC: &str = include_str!("../../fixtures/specs/discord-openapi.json");
/// The spec's file name, for rule texts.
const SPEC_FILE: &str = "discord-openapi.json";
/// The URI the document is registered under, so that a compiled schema's references resolve
/// against the whole document.
const DOC_URI: &str = "urn:discord-openapi";

/// One path segment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must be exactly this.
    Literal(String),
    /// `{name}`: any non-empty segment.
    Param(String),
}

/// A parameter an operation declares.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    /// `path` or `query`.
    place: String,
    required: bool,
    /// JSON pointer to its schema in the document.
    schema: String,
}

/// What one operation accepts.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    /// The path as the spec writes it, e.g. `/channels/{channel_id}/messages`.
    template: String,
    segments: Vec<Segment>,
    params: Vec<Param>,
    /// Content types of the request body, and JSON pointers to their schemas.
    body: Vec<(String, String)>,
    body_required: bool,
}

/// The parsed spec, its operations, and the schema registry built from it.
struct Spec {
    operations: Vec<Operation>,
    registry: jsonschema::Registry<'static>,
    /// Compiled schemas by JSON pointer.
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The spec, loaded on first use.
fn spec() -> &'static Spec {
    static SPEC_CELL: OnceLock<Spec> = OnceLock::new();
    SPEC_CELL.get_or_init(|| {
        let doc: Value = serde_json::from_str(SPEC).expect("the vendored Discord spec is JSON");
        let operations = operations(&doc);
        let registry = jsonschema::Registry::new()
            .add(DOC_URI, doc)
            .expect("the spec registers as a schema resource")
            .prepare()
            .expect("the spec's references resolve");
        Spec {
            operations,
            registry,
            compiled: Mutex::new(HashMap::new()),
        }
    })
}

/// A JSON pointer token (`~` and `/` escaped).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Every operation of the document's `paths`.
fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    let Some(paths) = doc["paths"].as_object() else {
        return out;
    };
    for (template, item) in paths {
        let item_ptr = format!("/paths/{}", escape(template));
        let shared = params_of(&item["parameters"], &format!("{item_ptr}/parameters"));
        let Some(ops) = item.as_object() else {
            continue;
        };
        for (method, op) in ops {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
            ) {
                continue;
            }
            let op_ptr = format!("{item_ptr}/{method}");
            let mut params = shared.clone();
            for p in params_of(&op["parameters"], &format!("{op_ptr}/parameters")) {
                // An operation's parameter overrides the path item's of the same name and place.
                params.retain(|q| !(q.name == p.name && q.place == p.place));
                params.push(p);
            }
            let body = op["requestBody"]["content"]
                .as_object()
                .map(|c| {
                    c.keys()
                        .map(|ct| {
                            let ptr = format!("{op_ptr}/requestBody/content/{}/schema", escape(ct));
                            (ct.clone(), ptr)
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Operation {
                method: method.to_ascii_uppercase(),
                template: template.clone(),
                segments: segments(template),
                params,
                body,
                body_required: op["requestBody"]["required"] == true,
            });
        }
    }
    out
}

/// The parameters in `list` (at JSON pointer `ptr`).
fn params_of(list: &Value, ptr: &str) -> Vec<Param> {
    list.as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| {
            Some(Param {
                name: p["name"].as_str()?.to_string(),
                place: p["in"].as_str()?.to_string(),
                required: p["required"] == true,
                schema: format!("{ptr}/{i}/schema"),
            })
        })
        .collect()
}

/// A path's segments.
fn segments(path: &str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

/// The operation for `method path`, with its path parameters' values; the one with the most
/// literal segments when several match.
fn find<'a>(method: &str, path: &str) -> Option<(&'a Operation, Vec<(String, String)>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut best: Option<(&Operation, usize)> = None;
    for op in &spec().operations {
        if op.method != method || op.segments.len() != parts.len() {
            continue;
        }
        let fits = op.segments.iter().zip(&parts).all(|(s, p)| match s {
            Segment::Literal(l) => l == p,
            Segment::Param(_) => !p.is_empty(),
        });
        if !fits {
            continue;
        }
        let literals = op
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        if best.is_none_or(|(_, n)| literals > n) {
            best = Some((op, literals));
        }
    }
    let (op, _) = best?;
    let values = op
        .segments
        .iter()
        .zip(&parts)
        .filter_map(|(s, p)| match s {
            Segment::Param(name) => Some((name.clone(), (*p).to_string())),
            Segment::Literal(_) => None,
        })
        .collect();
    Some((op, values))
}

/// The compiled schema at `pointer`.
fn validator(pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
    let spec = spec();
    if let Some(v) = spec
        .compiled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pointer)
    {
        return Ok(v.clone());
    }
    // A URI fragment: the pointer's braces must be percent-encoded.
    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
    let schema = serde_json::json!({ "$ref": format!("{DOC_URI}#{fragment}") });
    let compiled = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_registry(&spec.registry)
        .build(&schema)
        .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))?;
    let compiled = Arc::new(compiled);
    spec.compiled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pointer.to_string(), compiled.clone());
    Ok(compiled)
}

/// Why `value` does not fit the schema at `pointer` (empty when it does).
fn schema_errors(pointer: &str, value: &Value) -> Vec<String> {
    match validator(pointer) {
        Ok(v) => v
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect(),
        Err(e) => vec![e],
    }
}

/// A parameter's text as JSON: the number or boolean it spells, else the string.
fn candidates(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(n) = text.parse::<i64>() {
        out.push(Value::from(n));
    } else if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() {
            out.push(Value::from(f));
        }
    }
    if let Ok(b) = text.parse::<bool>() {
        out.push(Value::Bool(b));
    }
    out.push(Value::String(text.to_string()));
    out
}

/// What the spec says about one request.
#[derive(Debug, Clone, Default)]
pub struct SpecCheck {
    /// The route as the spec names it, e.g. `POST /channels/{channel_id}/messages`; `None` when
    /// the spec has no such route.
    pub route: Option<String>,
    /// Every rule the request broke.
    pub broken: Vec<String>,
}

/// Checks one request: `method` and `path` below `/api/v10`, its query parameters, its
/// `Content-Type` (if any) and its body.
pub fn check(
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    content_type: Option<&str>,
    body: &[u8],
) -> SpecCheck {
    let method = method.to_ascii_uppercase();
    let Some((op, path_values)) = find(&method, path) else {
        return SpecCheck {
            route: None,
            broken: vec![format!(
                "discord: {method} {path} is not a route of API v10 ({SPEC_FILE} has no such path \
                 and method)"
            )],
        };
    };
    let route = format!("{} {}", op.method, op.template);
    let mut broken = Vec::new();
    for p in &op.params {
        let given = match p.place.as_str() {
            "path" => path_values
                .iter()
                .find(|(n, _)| n == &p.name)
                .map(|(_, v)| v.as_str()),
            "query" => query.get(&p.name).map(String::as_str),
            _ => continue,
        };
        let Some(text) = given else {
            if p.required {
                broken.push(format!(
                    "discord: {route} requires the {} parameter {:?} ({SPEC_FILE})",
                    p.place, p.name
                ));
            }
            continue;
        };
        let fits = candidates(text)
            .iter()
            .any(|v| schema_errors(&p.schema, v).is_empty());
        if !fits {
            let shown: String = text.chars().take(40).collect();
            broken.push(format!(
                "discord: {route}: the {} parameter {:?} = {shown:?} does not fit its schema \
                 ({SPEC_FILE})",
                p.place, p.name
            ));
        }
    }
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty());
    if body.is_empty() {
        if op.body_required {
            broken.push(format!(
                "discord: {route} requires a request body ({SPEC_FILE})"
            ));
        }
        return SpecCheck {
            route: Some(route),
            broken,
        };
    }
    if op.body.is_empty() {
        broken.push(format!(
            "discord: {route} takes no request body, but one of {} bytes was sent ({SPEC_FILE})",
            body.len()
        ));
        return SpecCheck {
            route: Some(route),
            broken,
        };
    }
    let accepted: Vec<&str> = op.body.iter().map(|(c, _)| c.as_str()).collect();
    let Some((ct, pointer)) = op
        .body
        .iter()
        .find(|(c, _)| Some(c.as_str()) == media.as_deref())
    else {
        broken.push(format!(
            "discord: {route} takes a body of {} , not {} ({SPEC_FILE})",
            accepted.join(" or "),
            media.as_deref().unwrap_or("a body without Content-Type")
        ));
        return SpecCheck {
            route: Some(route),
            broken,
        };
    };
    if ct == "application/json" {
        match serde_json::from_slice::<Value>(body) {
            Ok(json) => {
                let errors = schema_errors(pointer, &json);
                if !errors.is_empty() {
                    broken.push(format!(
                        "discord: the JSON body of {route} does not validate against its request \
                         schema ({SPEC_FILE}): {}",
                        errors.join("; ")
                    ));
                }
            }
            Err(e) => broken.push(format!(
                "discord: the body of {route} is sent as application/json but is not JSON: {e}"
            )),
        }
    }
    SpecCheck {
        route: Some(route),
        broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none() -> HashMap<String, String> {
        HashMap::new()
    }

    fn json_check(method: &str, path: &str, body: &Value) -> SpecCheck {
        check(
            method,
            path,
            &none(),
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn routes_match_literal_segments_first() {
        let me = check("GET", "/applications/@me", &none(), None, b"");
        assert_eq!(me.route.as_deref(), Some("GET /applications/@me"));
        assert!(me.broken.is_empty(), "{:?}", me.broken);
        let original = json_check(
            "PATCH",
            "/webhooks/1/tok/messages/@original",
            &json!({"content": "hi"}),
        );
        assert_eq!(
            original.route.as_deref(),
            Some("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original")
        );
        assert!(original.broken.is_empty(), "{:?}", original.broken);
        let unknown = check("GET", "/channels/1/nonsense", &none(), None, b"");
        assert!(unknown.route.is_none());
        assert!(unknown.broken[0].contains("not a route"), "{:?}", unknown);
        let wrong_method = check("PUT", "/channels/1/typing", &none(), None, b"");
        assert!(wrong_method.route.is_none());
    }

    #[test]
    fn parameters_are_checked_against_their_schemas() {
        let ok = check("POST", "/channels/123/typing", &none(), None, b"");
        assert!(ok.broken.is_empty(), "{:?}", ok.broken);
        let bad = check("POST", "/channels/general/typing", &none(), None, b"");
        assert!(bad.broken[0].contains("channel_id"), "{:?}", bad.broken);
        let mut q = HashMap::new();
        q.insert("limit".to_string(), "100".to_string());
        let history = check("GET", "/channels/1/messages", &q, None, b"");
        assert!(history.broken.is_empty(), "{:?}", history.broken);
        q.insert("limit".to_string(), "101".to_string());
        let too_many = check("GET", "/channels/1/messages", &q, None, b"");
        assert!(
            too_many.broken[0].contains("limit"),
            "{:?}",
            too_many.broken
        );
    }

    #[test]
    fn bodies_are_checked_for_content_type_and_schema() {
        let ok = json_check(
            "PUT",
            "/applications/1/commands",
            &json!([{"name": "status", "type": 1, "description": "d",
                      "integration_types": [0], "contexts": [0, 1]}]),
        );
        assert!(ok.broken.is_empty(), "{:?}", ok.broken);
        let bad = json_check(
            "PUT",
            "/applications/1/commands",
            &json!([{"name": "status", "integration_types": [0, 7]}]),
        );
        assert!(
            bad.broken[0].contains("/0/integration_types/1"),
            "{:?}",
            bad.broken
        );
        let form = check(
            "PUT",
            "/applications/1/commands",
            &none(),
            Some("application/x-www-form-urlencoded"),
            b"name=status",
        );
        assert!(form.broken[0].contains("application/json"), "{:?}", form);
        let missing = check("PUT", "/applications/1/commands", &none(), None, b"");
        assert!(missing.broken[0].contains("requires a request body"));
        let typing_body = json_check("POST", "/channels/1/typing", &json!({}));
        assert!(typing_body.broken[0].contains("takes no request body"));
        let callback = json_check(
            "POST",
            "/interactions/1/tok/callback",
            &json!({"type": 5, "data": {"flags": 64}}),
        );
        assert!(callback.broken.is_empty(), "{:?}", callback.broken);
        let bad_callback = json_check("POST", "/interactions/1/tok/callback", &json!({"type": 42}));
        assert_eq!(bad_callback.broken.len(), 1, "{:?}", bad_callback.broken);
    }
}
