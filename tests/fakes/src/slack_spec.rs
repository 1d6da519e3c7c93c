//! The Slack Web API's published rules, checked on every request the fake Slack receives.
//!
//! The rulebook is Slack's own OpenAPI v2 file (`tests/fixtures/specs/slack-web-openapi-v2.json`,
//! 2021), with `slack-newer-methods.toml` beside it for the methods that file predates and for
//! the required arguments it leaves unmarked on the read methods. For each request:
//! - the method exists;
//! - the HTTP method is one it takes: the spec's verb, or POST (Slack takes a POST form for
//!   every method);
//! - a body's content type is one the method `consumes`. Read methods consume only
//!   `application/x-www-form-urlencoded`: they take GET query parameters or a POST form, and
//!   Slack does not read the arguments of a JSON body sent to them, so neither does the fake;
//! - every required argument is there, `token` included (an `Authorization: Bearer` header or
//!   a form argument; Slack never reads a token from a JSON body, nor, for apps made since
//!   2021, from the query string);
//! - the limits Slack's method pages give in prose: `text` 40,000 characters, `markdown_text`
//!   and a message's `markdown` blocks together 12,000, 50 blocks, a `section`'s text 3,000 and
//!   a `header`'s 150.
//!
//! [`check`] returns the arguments as Slack reads them and every rule broken, worded so a test
//! failure names the rule and where it comes from.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, Method, Uri};
use serde_json::Value;

use crate::rules::Violations;
use crate::slack::{parse_args, MAX_BLOCKS, MAX_MARKDOWN_CHARS, MAX_SECTION_CHARS, MAX_TEXT_CHARS};

/// Slack's Web API spec, as vendored.
const SPEC: &str = include_str!("../../fixtures/specs/slack-web-openapi-v2.json");
/// The table of newer methods and of the read methods' required arguments.
const NEWER: &str = include_str!("../../fixtures/specs/slack-newer-methods.toml");
/// The spec's file name, for rule texts.
const SPEC_FILE: &str = "slack-web-openapi-v2.json";
/// The table's file name, for rule texts.
const TABLE_FILE: &str = "slack-newer-methods.toml";

/// A form body (and what GET query parameters are).
pub const FORM: &str = "application/x-www-form-urlencoded";
/// A JSON body.
pub const JSON: &str = "application/json";
/// Characters of a `header` block's text.
const MAX_HEADER_CHARS: usize = 150;

/// What one Web API method accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRules {
    /// HTTP methods, upper case.
    pub http: Vec<String>,
    /// Body content types (`consumes`).
    pub consumes: Vec<String>,
    /// Arguments that must be present, `token` aside.
    pub required: Vec<String>,
    /// Arguments of which at least one must be present (empty: no such rule).
    pub one_of: Vec<String>,
    /// Where the rules come from, for rule texts.
    pub source: String,
}

impl MethodRules {
    /// Whether the method reads a JSON body.
    pub fn takes_json(&self) -> bool {
        self.consumes.iter().any(|c| c == JSON)
    }
}

/// Every method's rules, from the spec and the table.
#[derive(Debug)]
pub struct SlackSpec {
    /// Rules by method name (`conversations.replies`).
    methods: HashMap<String, MethodRules>,
}

/// The rules, parsed once per process (the spec is about 1 MB).
pub fn spec() -> &'static SlackSpec {
    static SPEC_RULES: OnceLock<SlackSpec> = OnceLock::new();
    SPEC_RULES.get_or_init(|| SlackSpec::parse(SPEC, NEWER))
}

impl SlackSpec {
    /// Parses the spec (Swagger 2) and the table. Panics on a malformed file: they are
    /// committed fixtures, and a fake without its rulebook must not run.
    pub fn parse(spec: &str, table: &str) -> Self {
        let spec: Value = serde_json::from_str(spec).expect("the vendored Slack spec is JSON");
        let default_consumes = strings(&spec["consumes"]);
        let mut methods = HashMap::new();
        for (path, item) in spec["paths"].as_object().expect("the Slack spec has paths") {
            let name = path.trim_start_matches('/').to_string();
            for (verb, op) in item.as_object().into_iter().flatten() {
                if !matches!(verb.as_str(), "get" | "post") {
                    continue;
                }
                let mut consumes = strings(&op["consumes"]);
                if consumes.is_empty() {
                    consumes = default_consumes.clone();
                }
                if consumes.is_empty() {
                    consumes.push(FORM.to_string());
                }
                let required = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["required"] == true && p["name"] != "token")
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                let mut http = vec![verb.to_ascii_uppercase()];
                if verb != "post" {
                    http.push("POST".into());
                }
                methods.insert(
                    name.clone(),
                    MethodRules {
                        http,
                        consumes,
                        required,
                        one_of: Vec::new(),
                        source: SPEC_FILE.to_string(),
                    },
                );
            }
        }
        let table: toml::Table = table.parse().expect("slack-newer-methods.toml is TOML");
        for (name, m) in table
            .get("methods")
            .and_then(|m| m.as_table())
            .into_iter()
            .flatten()
        {
            let list = |k: &str| -> Vec<String> {
                m.get(k)
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            methods.insert(
                name.clone(),
                MethodRules {
                    http: list("http"),
                    consumes: list("consumes"),
                    required: list("required"),
                    one_of: list("one_of"),
                    source: format!(
                        "{TABLE_FILE}: {}",
                        m.get("source").and_then(|s| s.as_str()).unwrap_or("")
                    ),
                },
            );
        }
        for (name, m) in table
            .get("supplements")
            .and_then(|m| m.as_table())
            .into_iter()
            .flatten()
        {
            let rules = methods
                .get_mut(name)
                .unwrap_or_else(|| panic!("{TABLE_FILE} supplements {name}, which the spec lacks"));
            for r in m
                .get("required")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(r) = r
                    .as_str()
                    .filter(|r| !rules.required.iter().any(|x| x == r))
                {
                    rules.required.push(r.to_string());
                }
            }
            rules.source = format!(
                "{SPEC_FILE} and {TABLE_FILE}: {}",
                m.get("source").and_then(|s| s.as_str()).unwrap_or("")
            );
        }
        Self { methods }
    }

    /// The rules of `method`; `None` when Slack has no such method.
    pub fn rules(&self, method: &str) -> Option<&MethodRules> {
        self.methods.get(method)
    }
}

/// Fails the test, listing the rules broken, when the test's last [`crate::slack::FakeSlack`]
/// handle is dropped.
#[derive(Debug)]
pub(crate) struct RulesCheck(pub(crate) Violations);

impl Drop for RulesCheck {
    fn drop(&mut self) {
        self.0.assert_none("Slack");
    }
}

/// A request as Slack reads it, and the rules it broke.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The arguments Slack reads: query parameters, and the body when the method reads it.
    pub args: Value,
    /// Whether a token came with it (bearer header or a form argument).
    pub has_token: bool,
    /// Every rule broken, worded as `slack: …` with its source.
    pub broken: Vec<String>,
}

/// Checks one request to `/api/{method}` against the rules and returns what Slack reads of it.
pub fn check(
    method: &str,
    http_method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Checked {
    let mut broken = Vec::new();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    let Some(rules) = spec().rules(method) else {
        broken.push(format!(
            "slack: `{method}` is not a Web API method (neither {SPEC_FILE} nor {TABLE_FILE} has it)"
        ));
        let args = parse_args(uri, headers, body);
        let has_token = bearer || args.get("token").is_some();
        return Checked {
            args,
            has_token,
            broken,
        };
    };
    let verb = http_method.as_str();
    if !rules.http.iter().any(|h| h == verb) {
        broken.push(format!(
            "slack: {method} is called with {}, not {verb} ({})",
            rules.http.join(" or "),
            rules.source
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let reads_body = if verb == "GET" {
        if !body.is_empty() {
            broken.push(format!(
                "slack: a GET to {method} carries its arguments in the query string; its body is not read"
            ));
        }
        false
    } else {
        match content_type.as_deref() {
            None if body.is_empty() => false,
            None => {
                broken.push(format!(
                    "slack: a body without a Content-Type is not read ({method} consumes {})",
                    rules.consumes.join(", ")
                ));
                false
            }
            Some(ct) if rules.consumes.iter().any(|c| c == ct) => true,
            Some(ct) => {
                broken.push(format!(
                    "slack: {method} consumes {}, not {ct} ({}); Slack does not read the arguments of such a body",
                    rules.consumes.join(", "),
                    rules.source
                ));
                false
            }
        }
    };
    let mut args = if reads_body {
        parse_args(uri, headers, body)
    } else {
        parse_args(uri, &HeaderMap::new(), &[])
    };
    if reads_body && content_type.as_deref() == Some(JSON) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => {
                if o.contains_key("token") {
                    broken.push(format!(
                        "slack: a JSON body's `token` is not read; {method} needs Authorization: Bearer"
                    ));
                    // Query parameters are read, a JSON body's token is not.
                    let from_query = parse_args(uri, &HeaderMap::new(), &[]);
                    if let Some(o) = args.as_object_mut() {
                        o.remove("token");
                        if let Some(t) = from_query.get("token") {
                            o.insert("token".into(), t.clone());
                        }
                    }
                }
            }
            _ => broken.push(format!(
                "slack: the JSON body to {method} is not a JSON object"
            )),
        }
    }
    // Slack stopped reading tokens from query strings for apps created after 24 February 2021
    // (docs.slack.dev changelog, "Deprecating token query parameters"): the header or a form
    // body only.
    let query_token = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("token=")));
    if query_token {
        broken.push(format!(
            "slack: a token in the query string is not read; {method} needs Authorization: Bearer or a form body"
        ));
        let in_body = reads_body
            && content_type.as_deref() == Some(FORM)
            && parse_args(&Uri::from_static("/"), headers, body)
                .get("token")
                .is_some();
        if !in_body {
            if let Some(o) = args.as_object_mut() {
                o.remove("token");
            }
        }
    }
    let has_token = bearer || args.get("token").is_some();
    if !has_token {
        broken.push(format!(
            "slack: {method} requires `token` (Authorization: Bearer, or a form argument)"
        ));
    }
    for r in &rules.required {
        if args.get(r).is_none() {
            broken.push(format!(
                "slack: {method} requires argument `{r}` ({})",
                rules.source
            ));
        }
    }
    if !rules.one_of.is_empty() && !rules.one_of.iter().any(|r| args.get(r).is_some()) {
        broken.push(format!(
            "slack: {method} requires one of {} ({})",
            rules.one_of.join(", "),
            rules.source
        ));
    }
    limits(method, &args, &mut broken);
    Checked {
        args,
        has_token,
        broken,
    }
}

/// The limits Slack's method pages and Block Kit reference give in prose.
fn limits(method: &str, args: &Value, broken: &mut Vec<String>) {
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    if chars(&args["text"]) > MAX_TEXT_CHARS {
        broken.push(format!(
            "slack: {method} `text` is limited to {MAX_TEXT_CHARS} characters (got {})",
            chars(&args["text"])
        ));
    }
    if chars(&args["markdown_text"]) > MAX_MARKDOWN_CHARS {
        broken.push(format!(
            "slack: {method} `markdown_text` is limited to {MAX_MARKDOWN_CHARS} characters (got {})",
            chars(&args["markdown_text"])
        ));
    }
    let Some(blocks) = args["blocks"].as_array() else {
        return;
    };
    if blocks.len() > MAX_BLOCKS {
        broken.push(format!(
            "slack: {method} `blocks` holds at most {MAX_BLOCKS} blocks (got {})",
            blocks.len()
        ));
    }
    let markdown: usize = blocks
        .iter()
        .filter(|b| b["type"] == "markdown")
        .map(|b| chars(&b["text"]))
        .sum();
    if markdown > MAX_MARKDOWN_CHARS {
        broken.push(format!(
            "slack: {method} `markdown` blocks hold at most {MAX_MARKDOWN_CHARS} characters per message together (got {markdown})"
        ));
    }
    for (i, b) in blocks.iter().enumerate() {
        let (max, kind) = match b["type"].as_str() {
            Some("section") => (MAX_SECTION_CHARS, "section"),
            Some("header") => (MAX_HEADER_CHARS, "header"),
            _ => continue,
        };
        let len = chars(&b["text"]["text"]);
        if len > max {
            broken.push(format!(
                "slack: {method} a `{kind}` block's text holds at most {max} characters (block {i} has {len})"
            ));
        }
    }
}

/// The strings of a JSON array (empty for anything else).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_form_only_and_writes_also_take_json() {
        for read in [
            "conversations.replies",
            "conversations.history",
            "conversations.info",
            "users.info",
            "files.info",
        ] {
            let r = spec().rules(read).expect(read);
            assert_eq!(r.consumes, [FORM], "{read}");
            assert!(r.http.contains(&"GET".to_string()), "{read}");
        }
        for write in [
            "chat.postMessage",
            "chat.update",
            "reactions.add",
            "chat.startStream",
        ] {
            assert!(spec().rules(write).expect(write).takes_json(), "{write}");
        }
        assert_eq!(
            spec().rules("conversations.replies").unwrap().required,
            ["channel", "ts"]
        );
        assert_eq!(spec().rules("users.info").unwrap().required, ["user"]);
        assert_eq!(
            spec().rules("chat.update").unwrap().required,
            ["channel", "ts"]
        );
        assert!(spec().rules("chat.nonsense").is_none());
    }

    #[test]
    fn every_newer_method_is_in_the_table() {
        for m in [
            "chat.startStream",
            "chat.appendStream",
            "chat.stopStream",
            "assistant.threads.setStatus",
            "assistant.threads.setSuggestedPrompts",
            "assistant.threads.setTitle",
            "apps.connections.open",
        ] {
            let r = spec().rules(m).expect(m);
            assert!(r.source.contains(TABLE_FILE), "{m}: {}", r.source);
            assert_eq!(r.http, ["POST"], "{m}");
        }
        assert_eq!(
            spec()
                .rules("assistant.threads.setStatus")
                .unwrap()
                .required,
            ["channel_id", "thread_ts", "status"]
        );
    }
}
