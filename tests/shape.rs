//! The shape of the source tree, checked: [`the_source_tree_keeps_its_shape`] reads `src/` and
//! `adapters/*/src/` from `CARGO_MANIFEST_DIR` and fails with one message that lists every
//! violation of these rules:
//!
//! 1. **File size.** The production part of a `.rs` file is at most 900 lines.
//! 2. **Storage names.** Production code outside `src/storage/` names no sled or PostgreSQL
//!    item: no identifier `sled`, `sqlx`, `postgres`, `Sled` or `Postgres`, and none that
//!    starts with `Sled`, `Postgres` or `Pg` followed by a capital (`SledStore`, `PgPool`).
//!    Identifiers are read from the code with comments and literals removed, so a comment or a
//!    message that says "sled" is fine, and so is an identifier that only contains the word
//!    (`database_url_selects_postgres`): it names nothing of the backend's.
//! 3. **Platform names in the core.** Production code in `src/`, outside the wiring
//!    (`settings.rs`, `app.rs`, `adapters.rs`, `main.rs`), does not contain `slack` or
//!    `discord` in any case. Comments are removed; string literals stay, since a `"slack"` in
//!    the core is platform knowledge.
//! 4. **Import cycles.** In each crate (the library in `src/`, the binary `src/main.rs`, each
//!    `adapters/*/src/`), the top-level modules that the crate root declares (`mod x;`, file
//!    `x.rs` or folder `x/`) form a graph with an edge x → y when x's production code has a
//!    path `crate::y`, `crate::{y, …}` (groups read nested), or a `super::y` that climbs to
//!    the crate root. A cycle fails, printed as `a → b → a` with where each edge comes from.
//!
//! 5. **The engine holds services.** Production code in `src/engine/` names none of the
//!    concrete document types (`Documents`, `DocStore`, `DocRecord`, anything from
//!    `docs::store`) nor a storage backend (rule 2's names, `Location`): it reaches documents
//!    through `Arc<dyn DocumentService>` and memory through the storage traits.
//!
//! What counts as production code:
//! - a file's production part is its lines before the first line that starts with
//!   `#[cfg(test)]` at column 0 (a test item indented inside production code still counts);
//! - a file that is a test module counts wholly as test code and is not checked: one named
//!   `tests.rs`, one under a `tests/` folder, or one declared (`mod x;`) in its parent's test
//!   part or right under a `#[cfg(test)]`; and every file below such a module.
//!
//! Modules written inline (`mod x { … }`) and `#[path]` attributes are not followed: a `super`
//! inside an inline module is read as if the module were not there.
//!
//! The checks are small pure functions, each tested below on inline samples.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Production lines a file may have.
const MAX_LINES: usize = 900;
/// The core files that may name a platform: they wire the adapters in.
const WIRING: [&str; 4] = [
    "src/settings.rs",
    "src/app.rs",
    "src/adapters.rs",
    "src/main.rs",
];
/// Where the storage backends live.
const STORAGE: &str = "src/storage/";
/// The engine, which holds services behind traits.
const ENGINE: &str = "src/engine/";
/// How many cycles are listed per crate at most (a dense knot has very many).
const MAX_CYCLES: usize = 50;

#[test]
fn the_source_tree_keeps_its_shape() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sizes = Vec::new();
    let mut storage = Vec::new();
    let mut platform = Vec::new();
    let mut cycles = Vec::new();
    let mut concrete = Vec::new();
    for (folder, files) in folders(root) {
        for file in files.iter().filter(|f| !f.test) {
            let lines = production_lines(&file.text);
            if lines > MAX_LINES {
                sizes.push(format!(
                    "{}: {lines} production lines (at most {MAX_LINES})",
                    file.path
                ));
            }
            let production = production_part(&file.text);
            if !file.path.starts_with(STORAGE) {
                for (line, name) in storage_names(production_part(&file.code)) {
                    storage.push(format!("{}:{line}: `{name}`", file.path));
                }
            }
            if file.path.starts_with(ENGINE) {
                for (line, name) in concrete_names(production_part(&file.code)) {
                    concrete.push(format!("{}:{line}: `{name}`", file.path));
                }
            }
            if file.path.starts_with("src/") && !WIRING.contains(&file.path.as_str()) {
                for line in platform_lines(&mask(production, true)) {
                    let shown = production.lines().nth(line - 1).unwrap_or("").trim();
                    platform.push(format!("{}:{line}: {}", file.path, clip(shown, 100)));
                }
            }
        }
        // The library (`lib.rs`) and the binary (`main.rs`) of a folder are two crates.
        for crate_root in ["lib.rs", "main.rs"] {
            let Some(root_file) = files.iter().find(|f| f.rel == crate_root) else {
                continue;
            };
            let name = if crate_root == "main.rs" {
                root_file.path.clone()
            } else {
                folder.clone()
            };
            let graph = import_graph(&files, root_file);
            let found = find_cycles(&graph.edges(), MAX_CYCLES);
            for cycle in &found {
                cycles.push(format!("{name}: {}", graph.describe(cycle)));
            }
            if found.len() == MAX_CYCLES {
                cycles.push(format!("{name}: … (only the first {MAX_CYCLES})"));
            }
        }
    }
    let mut report = String::new();
    for (title, list) in [
        ("files over 900 production lines", &sizes),
        ("sled or PostgreSQL named outside src/storage/", &storage),
        ("a platform named in the core outside the wiring", &platform),
        ("import cycles between top-level modules", &cycles),
        (
            "a concrete store or document type named in the engine",
            &concrete,
        ),
    ] {
        if !list.is_empty() {
            report.push_str(&format!("\n{title} ({}):\n", list.len()));
            for v in list {
                report.push_str(&format!("  {v}\n"));
            }
        }
    }
    assert!(
        report.is_empty(),
        "the source tree breaks its shape (see tests/shape.rs):\n{report}"
    );
}

/// One source file.
#[derive(Debug)]
struct SourceFile {
    /// Relative to the workspace root, with `/`.
    path: String,
    /// Relative to its `src/` folder, with `/`.
    rel: String,
    text: String,
    /// The text with comments and literals masked ([`mask`]).
    code: String,
    /// Whether the file is a test module (wholly test code).
    test: bool,
}

/// The source folders whose shape is checked (`src`, then each `adapters/*/src`), read.
fn folders(root: &Path) -> Vec<(String, Vec<SourceFile>)> {
    let mut names = vec!["src".to_string()];
    let mut adapters: Vec<String> = fs::read_dir(root.join("adapters"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("src").is_dir())
                .map(|e| format!("adapters/{}/src", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    adapters.sort();
    names.extend(adapters);
    names
        .into_iter()
        .map(|name| {
            let files = read_tree(&root.join(&name), &name);
            (name, files)
        })
        .collect()
}

/// Every `.rs` file under `dir`, read, with test modules marked.
fn read_tree(dir: &Path, prefix: &str) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect(dir, &mut paths);
    paths.sort();
    let mut files: Vec<SourceFile> = paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            SourceFile {
                path: format!("{prefix}/{rel}"),
                code: mask(&text, false),
                text,
                rel,
                test: false,
            }
        })
        .collect();
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.rel.clone(), f.code.clone()))
        .collect();
    let tests = test_modules(&texts);
    for f in &mut files {
        f.test = tests.contains(&f.rel);
    }
    files
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The files (paths relative to a crate's `src/`) that are test modules: named `tests.rs`,
/// under a `tests/` folder, declared in a parent's test part or right under `#[cfg(test)]`,
/// or below such a module. `files` are paths and masked texts.
fn test_modules(files: &[(String, String)]) -> BTreeSet<String> {
    // Module folders whose files are all test code.
    let mut test_dirs = BTreeSet::new();
    let mut tests = BTreeSet::new();
    for (rel, text) in files {
        let dir = module_dir(rel);
        for name in test_declarations(text) {
            tests.insert(format!("{dir}{name}.rs"));
            test_dirs.insert(format!("{dir}{name}/"));
        }
    }
    for (rel, _) in files {
        let named = rel == "tests.rs" || rel.ends_with("/tests.rs");
        let in_tests = rel.starts_with("tests/") || rel.contains("/tests/");
        if named || in_tests || test_dirs.iter().any(|d| rel.starts_with(d.as_str())) {
            tests.insert(rel.clone());
        }
    }
    tests
}

/// The folder (ending in `/`, or empty) where the modules a file declares live:
/// `a/mod.rs` and `lib.rs` declare into their own folder, `a/b.rs` into `a/b/`.
fn module_dir(rel: &str) -> String {
    let (dir, file) = match rel.rsplit_once('/') {
        Some((d, f)) => (format!("{d}/"), f),
        None => (String::new(), rel),
    };
    if matches!(file, "mod.rs" | "lib.rs" | "main.rs") {
        dir
    } else {
        format!("{dir}{}/", file.trim_end_matches(".rs"))
    }
}

/// The modules masked `code` declares as test code: `mod x;` in its test part, or right under a
/// `#[cfg(test)]` line.
fn test_declarations(code: &str) -> Vec<String> {
    let production = production_lines(code);
    let mut out = Vec::new();
    let mut after_cfg_test = false;
    for (i, line) in code.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = declared_module(t) {
            if i >= production || after_cfg_test {
                out.push(name);
            }
        }
        if !t.is_empty() {
            after_cfg_test = t == "#[cfg(test)]";
        }
    }
    out
}

/// `x` when `line` declares a module from its own file: `mod x;` or `pub(crate) mod x;`.
fn declared_module(line: &str) -> Option<String> {
    let rest = line.strip_suffix(';')?.trim_end();
    let before_mod = rest.find("mod ")?;
    let vis = rest[..before_mod].trim();
    if !(vis.is_empty() || vis.starts_with("pub")) {
        return None;
    }
    let name = rest[before_mod + 4..].trim();
    (!name.is_empty() && name.chars().all(is_ident)).then(|| name.to_string())
}

/// Lines before the first line that starts with `#[cfg(test)]`.
fn production_lines(text: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with("#[cfg(test)]"))
        .unwrap_or_else(|| text.lines().count())
}

/// The text of the production lines.
fn production_part(text: &str) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        end += line.len();
    }
    &text[..end]
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with comments (line, block, nested block, doc) blanked, and, unless `keep_strings`,
/// the contents of string, byte string, raw string and char literals blanked too. Line breaks
/// stay, so line numbers stay; a blanked character becomes one space.
fn mask(src: &str, keep_strings: bool) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let literal = |out: &mut String, ch: char| {
        if keep_strings {
            out.push(ch)
        } else {
            blank(out, ch)
        }
    };
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && raw_string_start(&c, i).is_some() {
            let (open, hashes) = raw_string_start(&c, i).unwrap();
            // The prefix (`r`, `br`, `cr`), the hashes and the quote are kept.
            for &ch in &c[i..=open] {
                out.push(ch);
            }
            i = open + 1;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    for &ch in &c[i..=i + hashes] {
                        out.push(ch);
                    }
                    i += hashes + 1;
                    break;
                }
                literal(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    literal(&mut out, c[i]);
                    i += 1;
                }
                literal(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() {
                out.push('"');
                i += 1;
            }
        } else if c[i] == '\'' && (at(i + 1) == '\\' || (at(i + 1) != '\'' && at(i + 2) == '\'')) {
            // A char literal ('a', '"', '\n', '\u{1F600}'); otherwise a lifetime or a label.
            out.push('\'');
            i += 1;
            if c[i] == '\\' {
                literal(&mut out, c[i]);
                i += 1;
                if i < c.len() {
                    literal(&mut out, c[i]);
                    i += 1;
                }
            }
            while i < c.len() && c[i] != '\'' && c[i] != '\n' {
                literal(&mut out, c[i]);
                i += 1;
            }
            if i < c.len() && c[i] == '\'' {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// When a raw string (`r"…"`, `r#"…"#`, `br"…"`, `cr#"…"#`) starts at `i`: the index of its
/// opening quote and its number of hashes. `r#ident` (a raw identifier) is not one.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((j, hashes))
}

/// The identifiers of masked code, with their line numbers (from 1).
fn identifiers(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut start = None;
        for (k, ch) in line.char_indices().chain([(line.len(), ' ')]) {
            match (start, is_ident(ch)) {
                (None, true) => start = Some(k),
                (Some(s), false) => {
                    let word = &line[s..k];
                    if !word.starts_with(|c: char| c.is_ascii_digit()) {
                        out.push((n + 1, word));
                    }
                    start = None;
                }
                _ => {}
            }
        }
    }
    out
}

/// Rule 2 on masked code: the identifiers that name sled or PostgreSQL, with their lines.
fn storage_names(code: &str) -> Vec<(usize, String)> {
    let camel = |w: &str, prefix: &str| {
        w.strip_prefix(prefix)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
    };
    identifiers(code)
        .into_iter()
        .filter(|(_, w)| {
            matches!(*w, "sled" | "sqlx" | "postgres" | "Sled" | "Postgres")
                || camel(w, "Sled")
                || camel(w, "Postgres")
                || camel(w, "Pg")
        })
        .map(|(n, w)| (n, w.to_string()))
        .collect()
}

/// Rule 5 on masked code: the identifiers that name a concrete document type, the document
/// store's module or a storage backend, with their lines.
fn concrete_names(code: &str) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = identifiers(code)
        .into_iter()
        .filter(|(_, w)| matches!(*w, "Documents" | "DocStore" | "DocRecord" | "Location"))
        .map(|(n, w)| (n, w.to_string()))
        .collect();
    for (n, line) in code.lines().enumerate() {
        if line.contains("docs::store") {
            found.push((n + 1, "docs::store".to_string()));
        }
    }
    found.extend(storage_names(code));
    found.sort();
    found
}

/// Rule 3 on code with comments masked: the lines (from 1) that contain `slack` or `discord`.
fn platform_lines(code: &str) -> Vec<usize> {
    code.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.to_lowercase();
            l.contains("slack") || l.contains("discord")
        })
        .map(|(n, _)| n + 1)
        .collect()
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// The top-level modules a path that starts right after `crate::` names: `y` for `y::…`,
/// each group item's first segment for `{y, z::{…}}`.
fn path_heads(after: &str) -> Vec<String> {
    let s = after.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut heads = Vec::new();
        let mut depth = 0;
        let mut item_start = 0;
        for (k, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    heads.extend(group_item_head(&group[item_start..k]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    heads.extend(group_item_head(&group[item_start..k]));
                    item_start = k + 1;
                }
                _ => {}
            }
        }
        heads
    } else {
        let word: String = s.chars().take_while(|&c| is_ident(c)).collect();
        if word.is_empty() || word == "self" {
            Vec::new()
        } else {
            vec![word]
        }
    }
}

/// The first segment of one item of a `{…}` group (a nested group gives all of its heads).
fn group_item_head(item: &str) -> Vec<String> {
    let t = item.trim_start();
    if t.starts_with('{') {
        path_heads(t)
    } else {
        path_heads(t)
            .into_iter()
            .filter(|w| w != "self" && w != "super")
            .collect()
    }
}

/// The top-level modules that masked production code of the module at `depth` (1 for
/// `x.rs` and `x/mod.rs`, 2 for `x/y.rs`, …) names, with the line of each first mention:
/// through `crate::`, or through as many `super::` as climb to the crate root.
fn named_modules(code: &str, depth: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let bytes = code.as_bytes();
    let word_at = |pos: usize, w: &str| {
        code[pos..].starts_with(w)
            && (pos == 0 || !is_ident(code[..pos].chars().next_back().unwrap()))
            && !code[pos + w.len()..].starts_with(is_ident)
    };
    // After `word` at `pos` (and optional spaces): the rest after `::`, if there is one.
    let after_colons = |pos: usize| {
        let rest = code[pos..].trim_start();
        rest.strip_prefix("::")
    };
    let mut pos = 0;
    while pos < bytes.len() {
        if !code.is_char_boundary(pos) {
            pos += 1;
            continue;
        }
        if word_at(pos, "crate") {
            if let Some(rest) = after_colons(pos + 5) {
                for head in path_heads(rest) {
                    out.entry(head).or_insert_with(|| line_of(pos));
                }
            }
            pos += 5;
        } else if word_at(pos, "super") && !preceded_by_colons(&code[..pos]) {
            let mut climbed = 0;
            let mut at = pos;
            let mut rest = "";
            while word_at(at, "super") {
                let Some(r) = after_colons(at + 5) else {
                    break;
                };
                climbed += 1;
                rest = r.trim_start();
                at = code.len() - rest.len();
            }
            if climbed == depth && climbed > 0 {
                for head in path_heads(rest) {
                    if head != "super" {
                        out.entry(head).or_insert_with(|| line_of(pos));
                    }
                }
            }
            pos += 5;
        } else {
            pos += 1;
        }
    }
    out
}

fn preceded_by_colons(before: &str) -> bool {
    before.trim_end().ends_with("::")
}

/// A crate's module graph, with where each edge was seen.
#[derive(Debug, Default)]
struct Graph {
    /// x → y → (file, line) of the first mention.
    edges: BTreeMap<String, BTreeMap<String, (String, usize)>>,
}

impl Graph {
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.edges
            .iter()
            .map(|(x, ys)| (x.clone(), ys.keys().cloned().collect()))
            .collect()
    }

    /// `a → b → a (a → b: src/a.rs:3; b → a: src/b/mod.rs:7)`.
    fn describe(&self, cycle: &[String]) -> String {
        let mut shown = cycle.join(" → ");
        shown.push_str(&format!(" → {}", cycle[0]));
        let whence: Vec<String> = cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(x, y)| {
                let (file, line) = &self.edges[x][y];
                format!("{x} → {y}: {file}:{line}")
            })
            .collect();
        format!("{shown}  ({})", whence.join("; "))
    }
}

/// Rule 4's graph for the crate whose root is `root` among `files`: the modules the root
/// declares, and the edges between them.
fn import_graph(files: &[SourceFile], root: &SourceFile) -> Graph {
    let modules: BTreeSet<String> = production_part(&root.code)
        .lines()
        .filter_map(|l| declared_module(l.trim()))
        .collect();
    let mut graph = Graph::default();
    for file in files.iter().filter(|f| !f.test) {
        let Some((top, depth)) = module_of(&file.rel).filter(|(m, _)| modules.contains(m)) else {
            continue;
        };
        for (target, line) in named_modules(production_part(&file.code), depth) {
            if target != top && modules.contains(&target) {
                graph
                    .edges
                    .entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| (file.path.clone(), line));
            }
        }
    }
    graph
}

/// The top-level module of a file (relative to `src/`) and the file's module depth:
/// `x.rs` and `x/mod.rs` are `(x, 1)`, `x/y.rs` and `x/y/mod.rs` `(x, 2)`; crate roots none.
fn module_of(rel: &str) -> Option<(String, usize)> {
    let parts: Vec<&str> = rel.split('/').collect();
    let last = *parts.last()?;
    if parts.len() == 1 && matches!(last, "lib.rs" | "main.rs") {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_string();
    let depth = if last == "mod.rs" {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top, depth))
}

/// Every elementary cycle of `graph` (at most `max`), each starting at its smallest node.
fn find_cycles(graph: &BTreeMap<String, BTreeSet<String>>, max: usize) -> Vec<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
        max: usize,
    ) {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flatten() {
            if out.len() >= max {
                return;
            }
            if next == start {
                out.push(path.clone());
            } else if next.as_str() > start && !path.contains(next) {
                path.push(next.clone());
                walk(graph, start, path, out, max);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        walk(graph, start, &mut path, &mut out, max);
    }
    out
}

// The checks on small samples: each can fail, and says so.

#[test]
fn the_production_part_ends_at_the_first_cfg_test_at_column_zero() {
    let text = "fn a() {}\n    #[cfg(test)]\nfn b() {}\n#[cfg(test)]\nmod tests {}\n";
    assert_eq!(production_lines(text), 3);
    assert_eq!(
        production_part(text),
        "fn a() {}\n    #[cfg(test)]\nfn b() {}\n"
    );
    assert_eq!(production_lines("a\nb\n"), 2);
}

#[test]
fn comments_are_masked_and_strings_only_when_asked() {
    let src = "let a = \"// not a comment\"; // sled\n/* outer /* inner */ sled */ let b = 'x';";
    let code = mask(src, false);
    assert!(!code.contains("sled"), "{code}");
    assert!(!code.contains("not a comment"), "{code}");
    assert!(code.contains("let b = ' ';"), "{code}");
    assert_eq!(code.lines().count(), 2);
    let kept = mask(src, true);
    assert!(kept.contains("\"// not a comment\""), "{kept}");
    assert!(!kept.contains("sled"), "{kept}");
}

#[test]
fn raw_strings_chars_and_lifetimes_are_told_apart() {
    let src = "fn f<'a>(x: &'a str) -> char { let q = '\"'; let r = r#\"a \" sled\"#; let s = \
               \"esc \\\" sled\"; sqlx::query(); '\\'' }";
    let code = mask(src, false);
    let names: Vec<String> = storage_names(&code).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["sqlx"], "{code}");
    assert!(code.contains("&'a str"), "{code}");
    // A raw identifier is no raw string.
    assert_eq!(mask("r#type + r\"x\"", false), "r#type + r\" \"");
}

#[test]
fn storage_names_are_backend_identifiers_not_words_that_contain_them() {
    let code = mask(
        "use crate::storage::sled::SledStore;\nlet p: PgPool = x;\nlet database_url_selects_postgres = 1;\n\
         let l = Location::Postgres(u); // PgPool\nlet m = \"sled\";\nlet page = Pages;",
        false,
    );
    assert_eq!(
        storage_names(&code),
        [
            (1, "sled".to_string()),
            (1, "SledStore".to_string()),
            (2, "PgPool".to_string()),
            (4, "Postgres".to_string()),
        ]
    );
}

#[test]
fn the_engine_may_name_the_service_but_not_what_implements_it() {
    let code = mask(
        "use crate::docs::{DocumentService, DocError};\nlet d: Arc<Documents> = x;\n\
         use crate::docs::store::ChunkRecord;\n// DocStore is fine in a comment\n\
         let r: DocRecord = y; let s = \"Documents\";\nlet l = Location::new(a, b);",
        false,
    );
    assert_eq!(
        concrete_names(&code),
        [
            (2, "Documents".to_string()),
            (3, "docs::store".to_string()),
            (5, "DocRecord".to_string()),
            (6, "Location".to_string()),
        ]
    );
}

#[test]
fn platform_names_count_in_strings_but_not_in_comments() {
    let code = mask(
        "// Slack and Discord\nlet a = \"slack\";\nlet b = DiscordConfig;\n/* discord */ let c = 1;",
        true,
    );
    assert_eq!(platform_lines(&code), [2, 3]);
}

#[test]
fn crate_paths_name_their_top_level_modules_through_nested_groups() {
    let code = "use crate::{a::{b, c}, d, self};\nfn f() { crate::e::g(); crate :: h::i; }\n\
                use crate::{\n    j::{k::{l, m}},\n    n,\n};";
    let found: Vec<(String, usize)> = named_modules(code, 1).into_iter().collect();
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "d", "e", "h", "j", "n"]);
    assert_eq!(found[0].1, 1);
    assert_eq!(found[2].1, 2);
}

#[test]
fn super_paths_count_only_when_they_reach_the_crate_root() {
    let code = "use super::{a, b::c};\nuse super::super::d;\nfn f() { x::super::e; }";
    let top: Vec<String> = named_modules(code, 1).into_keys().collect();
    assert_eq!(top, ["a", "b"]);
    let nested: Vec<String> = named_modules(code, 2).into_keys().collect();
    assert_eq!(nested, ["d"]);
}

#[test]
fn files_are_placed_in_their_top_level_module() {
    assert_eq!(module_of("docs.rs"), Some(("docs".into(), 1)));
    assert_eq!(module_of("docs/mod.rs"), Some(("docs".into(), 1)));
    assert_eq!(module_of("docs/search.rs"), Some(("docs".into(), 2)));
    assert_eq!(module_of("docs/office/mod.rs"), Some(("docs".into(), 2)));
    assert_eq!(module_of("lib.rs"), None);
}

#[test]
fn test_modules_are_found_by_name_and_by_declaration() {
    let files = vec![
        (
            "llm/turn.rs".to_string(),
            "mod plan;\n#[cfg(test)]\nmod tests;\n".to_string(),
        ),
        ("llm/turn/tests.rs".to_string(), String::new()),
        ("llm/turn/plan.rs".to_string(), String::new()),
        (
            "lib.rs".to_string(),
            "pub mod llm;\n    #[cfg(test)]\n    mod fixtures;\n".to_string(),
        ),
        ("fixtures.rs".to_string(), String::new()),
        ("fixtures/data.rs".to_string(), String::new()),
        ("tests/mod.rs".to_string(), String::new()),
    ];
    let tests: Vec<String> = test_modules(&files).into_iter().collect();
    assert_eq!(
        tests,
        [
            "fixtures.rs",
            "fixtures/data.rs",
            "llm/turn/tests.rs",
            "tests/mod.rs"
        ]
    );
}

#[test]
fn a_cycle_is_found_and_printed_from_its_smallest_module() {
    let mut graph = Graph::default();
    for (x, y) in [("b", "a"), ("a", "c"), ("c", "b"), ("c", "d"), ("d", "e")] {
        graph
            .edges
            .entry(x.into())
            .or_default()
            .insert(y.into(), (format!("src/{x}.rs"), 1));
    }
    let cycles = find_cycles(&graph.edges(), 10);
    assert_eq!(cycles, [vec!["a", "c", "b"]]);
    assert_eq!(
        graph.describe(&cycles[0]),
        "a → c → b → a  (a → c: src/a.rs:1; c → b: src/c.rs:1; b → a: src/b.rs:1)"
    );
    graph
        .edges
        .entry("e".into())
        .or_default()
        .insert("d".into(), ("src/e.rs".into(), 2));
    assert_eq!(find_cycles(&graph.edges(), 10).len(), 2);
    assert_eq!(find_cycles(&graph.edges(), 1).len(), 1);
    graph.edges.remove("e");
    graph.edges.get_mut("c").unwrap().remove("b");
    assert!(find_cycles(&graph.edges(), 10).is_empty());
}
