//! Office Open XML documents: Word (DOCX), PowerPoint (PPTX) and Excel (XLSX). Each is a zip
//! package of XML parts, read here with a cap on the total decompressed size, so a small file
//! that inflates to gigabytes (a zip bomb) is refused instead of read.
//!
//! - DOCX: the body as Markdown-flavoured text (headings become `#` lines, list items `- `,
//!   table rows `a | b`). Word records where it last broke pages (`w:lastRenderedPageBreak`)
//!   and explicit page breaks (`w:br w:type="page"`); both start a new page, so citations name
//!   the page a reader sees. A document written by a tool that never rendered it has one page.
//! - PPTX: one page per slide, in presentation order; the title becomes a `#` line.
//! - XLSX: one page per sheet, in workbook order, headed by the sheet's name; each row becomes
//!   `a | b | c`, with empty cells kept so columns line up. Numbers are shown as stored (a date
//!   is its serial number).

use std::collections::HashMap;
use std::io::Read;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::DocError;

/// The part of a DOCX package that holds the body text.
const BODY: &str = "word/document.xml";

fn corrupt(reason: String) -> DocError {
    DocError::Corrupt { reason }
}

/// An opened package with a budget for the bytes its parts may inflate to.
struct Package<'a> {
    zip: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    budget: u64,
    cap: u64,
}

impl<'a> Package<'a> {
    fn open(bytes: &'a [u8], cap: u64) -> Result<Self, DocError> {
        let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| corrupt(format!("not a readable Office package: {e}")))?;
        Ok(Self {
            zip,
            budget: cap,
            cap,
        })
    }

    /// The text of part `name`; `None` if the package has no such part.
    fn part(&mut self, name: &str) -> Result<Option<String>, DocError> {
        let entry = match self.zip.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(zip::result::ZipError::UnsupportedArchive(m)) if m.contains("assword") => {
                return Err(DocError::Encrypted)
            }
            Err(e) => return Err(corrupt(format!("{name}: {e}"))),
        };
        if entry.encrypted() {
            return Err(DocError::Encrypted);
        }
        let mut xml = Vec::new();
        entry
            .take(self.budget + 1)
            .read_to_end(&mut xml)
            .map_err(|e| corrupt(format!("{name}: {e}")))?;
        if xml.len() as u64 > self.budget {
            return Err(corrupt(format!(
                "its XML expands beyond {} MB, far beyond the file's size",
                self.cap >> 20
            )));
        }
        self.budget -= xml.len() as u64;
        String::from_utf8(xml)
            .map(Some)
            .map_err(|_| corrupt(format!("{name} is not UTF-8")))
    }

    /// A part that must exist.
    fn required(&mut self, name: &str) -> Result<String, DocError> {
        self.part(name)?
            .ok_or_else(|| corrupt(format!("the package has no {name}")))
    }

    /// The relationships of `part`: id → target part name, resolved against the part's folder.
    fn rels(&mut self, part: &str) -> Result<HashMap<String, String>, DocError> {
        let (dir, file) = part.rsplit_once('/').unwrap_or(("", part));
        let rels_name = if dir.is_empty() {
            format!("_rels/{file}.rels")
        } else {
            format!("{dir}/_rels/{file}.rels")
        };
        let Some(xml) = self.part(&rels_name)? else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        let mut reader = Reader::from_str(&xml);
        loop {
            match reader
                .read_event()
                .map_err(|e| corrupt(format!("{rels_name}: {e}")))?
            {
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"Relationship" => {
                    if let (Some(id), Some(target)) = (val(&e, b"Id"), val(&e, b"Target")) {
                        out.insert(id, resolve(dir, &target));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A relationship target as a part name: absolute (`/ppt/...`) or relative to `dir`.
fn resolve(dir: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if let Some(abs) = target.strip_prefix('/') {
        return abs.to_string();
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for seg in target.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// The parts listed by `list_part`'s `element` entries (`r:id` attributes), in order, with
/// the entry's `name` attribute when it has one.
fn listed_parts(
    pkg: &mut Package<'_>,
    list_part: &str,
    element: &[u8],
) -> Result<Vec<(Option<String>, String)>, DocError> {
    let xml = pkg.required(list_part)?;
    let rels = pkg.rels(list_part)?;
    let mut out = Vec::new();
    let mut reader = Reader::from_str(&xml);
    loop {
        match reader
            .read_event()
            .map_err(|e| corrupt(format!("{list_part}: {e}")))?
        {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == element => {
                let target = rel_id(&e).and_then(|id| rels.get(&id).cloned());
                if let Some(target) = target {
                    out.push((val(&e, b"name"), target));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// One page of an Office document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficePage {
    /// How a citation names it (`slide 3`, `sheet Costs`); `None`: by page number.
    pub label: Option<String>,
    /// Its text.
    pub text: String,
}

/// Extracts the pages of a DOCX. `max_xml` caps the decompressed XML.
pub fn docx_pages(bytes: &[u8], max_xml: u64) -> Result<Vec<OfficePage>, DocError> {
    let xml = Package::open(bytes, max_xml)?.required(BODY)?;
    let pages = body_pages(&xml).map_err(corrupt)?;
    Ok(pages
        .into_iter()
        .map(|text| OfficePage { label: None, text })
        .collect())
}

/// Extracts one page per slide of a PPTX, in presentation order.
pub fn pptx_pages(bytes: &[u8], max_xml: u64) -> Result<Vec<OfficePage>, DocError> {
    let mut pkg = Package::open(bytes, max_xml)?;
    let slides = listed_parts(&mut pkg, "ppt/presentation.xml", b"sldId")?;
    let mut pages = Vec::with_capacity(slides.len());
    for (_, part) in slides {
        let xml = pkg.required(&part)?;
        pages.push(OfficePage {
            label: Some(format!("slide {}", pages.len() + 1)),
            text: slide_text(&xml).map_err(|e| corrupt(format!("{part}: {e}")))?,
        });
    }
    if pages.is_empty() {
        return Err(DocError::Empty);
    }
    Ok(pages)
}

/// Extracts one page per sheet of an XLSX, in workbook order.
pub fn xlsx_pages(bytes: &[u8], max_xml: u64) -> Result<Vec<OfficePage>, DocError> {
    let mut pkg = Package::open(bytes, max_xml)?;
    let sheets = listed_parts(&mut pkg, "xl/workbook.xml", b"sheet")?;
    let shared = match pkg.part("xl/sharedStrings.xml")? {
        Some(xml) => shared_strings(&xml).map_err(|e| corrupt(format!("sharedStrings: {e}")))?,
        None => Vec::new(),
    };
    let mut pages = Vec::with_capacity(sheets.len());
    for (name, part) in sheets {
        let xml = pkg.required(&part)?;
        let rows = sheet_rows(&xml, &shared).map_err(|e| corrupt(format!("{part}: {e}")))?;
        let title = name.unwrap_or_else(|| format!("Sheet {}", pages.len() + 1));
        pages.push(OfficePage {
            text: format!("## {title}\n\n{rows}").trim_end().to_string(),
            label: Some(format!("sheet {title}")),
        });
    }
    if pages.is_empty() {
        return Err(DocError::Empty);
    }
    Ok(pages)
}

/// Paragraph being assembled.
#[derive(Default)]
struct Para {
    text: String,
    heading: Option<usize>,
    list: bool,
}

/// Walks the body XML. Text only counts inside `w:t`; deleted revisions (`w:delText`) and
/// field instructions (`w:instrText`) are other elements and so are skipped.
fn body_pages(xml: &str) -> Result<Vec<String>, String> {
    let mut reader = Reader::from_str(xml);
    let mut pages = vec![String::new()];
    let mut para = Para::default();
    let mut in_text = false;
    // The cells of the current row, one entry per open (possibly nested) table.
    let mut tables: Vec<Vec<String>> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{BODY} at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"t" => in_text = true,
                b"p" => para = Para::default(),
                b"tbl" => tables.push(Vec::new()),
                b"tc" => {
                    if let Some(row) = tables.last_mut() {
                        row.push(String::new());
                    }
                }
                _ => empty_element(&e, &mut para, &mut pages),
            },
            Event::Empty(e) => empty_element(&e, &mut para, &mut pages),
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let p = std::mem::take(&mut para);
                    let text = p.text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    match tables.last_mut().and_then(|row| row.last_mut()) {
                        // Paragraphs inside a cell are joined with spaces.
                        Some(cell) => {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(text);
                        }
                        None => {
                            let line = match (p.heading, p.list) {
                                (Some(level), _) => format!("{} {text}", "#".repeat(level)),
                                (None, true) => format!("- {text}"),
                                (None, false) => text.to_string(),
                            };
                            push_block(&mut pages, &line);
                        }
                    }
                }
                b"tr" => {
                    let Some(row) = tables.last_mut().map(std::mem::take) else {
                        continue;
                    };
                    if row.iter().all(|c| c.trim().is_empty()) {
                        continue;
                    }
                    let line = row.iter().map(|c| c.trim()).collect::<Vec<_>>().join(" | ");
                    // A nested table's row lands in the enclosing table's current cell.
                    let outer = tables.len().checked_sub(2);
                    match outer.and_then(|i| tables[i].last_mut()) {
                        Some(cell) => {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(&line);
                        }
                        None => {
                            let page = pages.last_mut().expect("at least one page");
                            page.push_str(&line);
                            page.push('\n');
                        }
                    }
                }
                b"tbl" => {
                    tables.pop();
                    if tables.is_empty() {
                        push_block(&mut pages, "");
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            other if in_text => {
                if let Some(t) = text_of(&other).map_err(|e| format!("{BODY}: {e}"))? {
                    para.text.push_str(&t);
                }
            }
            _ => {}
        }
    }
    // Drop trailing empty pages (a break at the very end), keep inner ones so numbers match.
    while pages.len() > 1 && pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    Ok(pages
        .into_iter()
        .map(|p| p.trim_end().to_string())
        .collect())
}

/// Handles the elements that matter whether or not they have content: paragraph style and
/// numbering, tabs, line breaks and page breaks.
fn empty_element(e: &BytesStart<'_>, para: &mut Para, pages: &mut Vec<String>) {
    match e.local_name().as_ref() {
        b"pStyle" => {
            if let Some(style) = val(e, b"val") {
                para.heading = heading_level(&style);
                // "List Bullet", "List Number", "List Paragraph": numbering set by the style.
                para.list |= style.to_ascii_lowercase().starts_with("list");
            }
        }
        b"numPr" => para.list = true,
        b"tab" => para.text.push('\t'),
        b"cr" => para.text.push('\n'),
        b"br" => {
            if val(e, b"type").as_deref() == Some("page") {
                page_break(para, pages);
            } else {
                para.text.push('\n');
            }
        }
        b"lastRenderedPageBreak" => page_break(para, pages),
        _ => {}
    }
}

/// Closes the current page: what the paragraph holds so far stays on it.
fn page_break(para: &mut Para, pages: &mut Vec<String>) {
    let before = std::mem::take(&mut para.text);
    push_block(pages, before.trim());
    pages.push(String::new());
}

/// Appends a block to the current page, followed by a blank line (Markdown paragraph
/// separation). An empty block only ends a preceding table row run with a blank line.
fn push_block(pages: &mut [String], block: &str) {
    let page = pages.last_mut().expect("at least one page");
    if block.is_empty() {
        if !page.is_empty() && !page.ends_with("\n\n") {
            page.push('\n');
        }
        return;
    }
    page.push_str(block);
    page.push_str("\n\n");
}

/// The value of the first attribute that `wanted` accepts.
fn attr(
    e: &BytesStart<'_>,
    wanted: impl Fn(&quick_xml::events::attributes::Attribute<'_>) -> bool,
) -> Option<String> {
    e.attributes().flatten().find(wanted).and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

/// The value of the attribute whose local name is `name`.
fn val(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    attr(e, |a| a.key.local_name().as_ref() == name)
}

/// `Heading1`..`Heading6` (any case, with or without a space) and `Title` become levels;
/// deeper headings stay plain paragraphs (Markdown has six levels).
fn heading_level(style: &str) -> Option<usize> {
    let s = style.to_ascii_lowercase().replace(' ', "");
    if s == "title" {
        return Some(1);
    }
    let n = s.strip_prefix("heading")?.parse::<usize>().ok()?;
    (1..=6).contains(&n).then_some(n)
}

/// The relationship id of an element: the namespaced `r:id`, not a plain `id` (slide ids
/// in `p:sldId` are plain `id` attributes too).
fn rel_id(e: &BytesStart<'_>) -> Option<String> {
    attr(e, |a| {
        a.key.local_name().as_ref() == b"id" && a.key.prefix().is_some()
    })
}

/// Decoded text of a text or entity event, for the event loops below.
fn text_of(event: &Event<'_>) -> Result<Option<String>, String> {
    Ok(match event {
        Event::Text(t) => Some(t.xml10_content().map_err(|e| e.to_string())?.into_owned()),
        Event::CData(c) => Some(String::from_utf8_lossy(c).into_owned()),
        Event::GeneralRef(r) => match r.resolve_char_ref() {
            Ok(Some(c)) => Some(c.to_string()),
            _ => {
                let name = r.decode().map_err(|e| e.to_string())?;
                quick_xml::escape::resolve_predefined_entity(&name).map(str::to_string)
            }
        },
        _ => None,
    })
}

/// The text of one slide: a line per paragraph, the title as a `#` line, table rows as
/// `a | b`.
fn slide_text(xml: &str) -> Result<String, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut para = String::new();
    let mut in_text = false;
    let mut title = false;
    // Cells of the current table row, when inside a table.
    let mut row: Option<Vec<String>> = None;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match &event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"sp" => title = false,
                b"t" => in_text = true,
                b"p" => para.clear(),
                b"tr" => row = Some(Vec::new()),
                b"tc" => row.get_or_insert_with(Vec::new).push(String::new()),
                b"ph" => title |= is_title_placeholder(e),
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                b"ph" => title |= is_title_placeholder(e),
                b"br" => para.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let text = para.trim();
                    if text.is_empty() {
                        continue;
                    }
                    match row.as_mut().and_then(|r| r.last_mut()) {
                        Some(cell) => {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(text);
                        }
                        None if title => {
                            out.push_str("# ");
                            out.push_str(text);
                            out.push_str("\n\n");
                        }
                        None => {
                            out.push_str(text);
                            out.push('\n');
                        }
                    }
                }
                b"tr" => {
                    if let Some(cells) = row.take() {
                        if cells.iter().any(|c| !c.trim().is_empty()) {
                            out.push_str(&cells.join(" | "));
                            out.push('\n');
                        }
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            other if in_text => {
                if let Some(t) = text_of(other)? {
                    para.push_str(&t);
                }
            }
            _ => {}
        }
    }
    Ok(out.trim_end().to_string())
}

/// Whether a `p:ph` placeholder is the slide's title.
fn is_title_placeholder(e: &BytesStart<'_>) -> bool {
    matches!(val(e, b"type").as_deref(), Some("title" | "ctrTitle"))
}

/// The shared strings table of a workbook. Phonetic guides (`rPh`) are left out.
fn shared_strings(xml: &str) -> Result<Vec<String>, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_text, mut in_phonetic) = (false, false);
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match &event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"si" => cur.clear(),
                b"t" => in_text = true,
                b"rPh" => in_phonetic = true,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == b"si" => out.push(String::new()),
            Event::End(e) => match e.local_name().as_ref() {
                b"si" => out.push(std::mem::take(&mut cur)),
                b"t" => in_text = false,
                b"rPh" => in_phonetic = false,
                _ => {}
            },
            Event::Eof => break,
            other if in_text && !in_phonetic => {
                if let Some(t) = text_of(other)? {
                    cur.push_str(&t);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The rows of one worksheet as `a | b | c` lines; a cell's column comes from its reference
/// (`C7`), so empty cells keep their place.
fn sheet_rows(xml: &str, shared: &[String]) -> Result<String, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut cells: Vec<String> = Vec::new();
    // The current cell: its column, type, and raw value.
    let mut col = 0usize;
    let mut kind: Option<String> = None;
    let mut value = String::new();
    let mut in_value = false;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match &event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"row" => cells.clear(),
                b"c" => {
                    col = val(e, b"r").and_then(|r| column(&r)).unwrap_or(cells.len());
                    kind = val(e, b"t");
                    value.clear();
                }
                // `v` holds the value; `t` inside `is` an inline string.
                b"v" | b"t" => in_value = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                b"v" | b"t" => in_value = false,
                b"c" => {
                    let shown = match kind.as_deref() {
                        Some("s") => value
                            .trim()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| shared.get(i).cloned())
                            .unwrap_or_default(),
                        Some("b") => match value.trim() {
                            "1" => "TRUE".into(),
                            _ => "FALSE".into(),
                        },
                        _ => std::mem::take(&mut value),
                    };
                    // Guard against a hostile column reference far to the right.
                    if col < MAX_COLUMNS && !shown.trim().is_empty() {
                        if cells.len() <= col {
                            cells.resize(col + 1, String::new());
                        }
                        cells[col] = shown.replace(['\n', '\r'], " ");
                    }
                }
                b"row" if cells.iter().any(|c| !c.trim().is_empty()) => {
                    out.push_str(&cells.join(" | "));
                    out.push('\n');
                }
                _ => {}
            },
            Event::Eof => break,
            other if in_value => {
                if let Some(t) = text_of(other)? {
                    value.push_str(&t);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Columns beyond this are ignored (Excel's own limit is 16,384).
const MAX_COLUMNS: usize = 16_384;

/// The zero-based column of a cell reference: `A1` → 0, `AB12` → 27.
fn column(reference: &str) -> Option<usize> {
    let letters: String = reference
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let n = letters.chars().fold(0usize, |n, c| {
        n * 26 + (c.to_ascii_uppercase() as usize - 'A' as usize + 1)
    });
    Some(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    fn doc(body: &str) -> String {
        format!(r#"<?xml version="1.0"?><w:document {W}><w:body>{body}</w:body></w:document>"#)
    }

    fn p(text: &str) -> String {
        format!("<w:p><w:r><w:t>{text}</w:t></w:r></w:p>")
    }

    #[test]
    fn headings_lists_and_entities_become_markdown() {
        let xml = doc(&format!(
            r#"<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Terms</w:t></w:r></w:p>
            {}<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr><w:r><w:t>first item</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Tab</w:t><w:tab/><w:t>bed &amp; split </w:t></w:r><w:r><w:t>run</w:t></w:r></w:p>"#,
            p("Payment is due in 30 days &lt;net&gt;.")
        ));
        let pages = body_pages(&xml).unwrap();
        assert_eq!(
            pages,
            vec!["## Terms\n\nPayment is due in 30 days <net>.\n\n- first item\n\nTab\tbed & split run"]
        );
    }

    #[test]
    fn rendered_and_explicit_page_breaks_start_pages() {
        let xml = doc(&format!(
            r#"{}<w:p><w:r><w:lastRenderedPageBreak/><w:t>second page</w:t></w:r></w:p>
            <w:p><w:r><w:t>end of two</w:t><w:br w:type="page"/><w:t>third page</w:t></w:r></w:p>
            <w:p><w:r><w:br w:type="page"/></w:r></w:p>"#,
            p("first page")
        ));
        let pages = body_pages(&xml).unwrap();
        assert_eq!(
            pages,
            vec!["first page", "second page\n\nend of two", "third page"]
        );
    }

    #[test]
    fn tables_become_rows_and_deleted_text_is_skipped() {
        let cell = |t: &str| format!("<w:tc>{}</w:tc>", p(t));
        let xml = doc(&format!(
            "<w:tbl><w:tr>{}{}</w:tr><w:tr>{}<w:tc><w:p/></w:tc></w:tr></w:tbl>{}\
             <w:p><w:del><w:r><w:delText>gone</w:delText></w:r></w:del><w:r><w:t>kept</w:t></w:r></w:p>",
            cell("Item"),
            cell("Price"),
            cell("Widget"),
            p("after")
        ));
        let pages = body_pages(&xml).unwrap();
        assert_eq!(pages, vec!["Item | Price\nWidget | \n\nafter\n\nkept"]);
    }

    #[test]
    fn a_third_party_docx_reads_with_its_pages_list_and_table() {
        let bytes = include_bytes!("../../tests/fixtures/handbook.docx");
        let pages: Vec<String> = docx_pages(bytes, 1 << 20)
            .unwrap()
            .into_iter()
            .map(|p| p.text)
            .collect();
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert!(pages[0].starts_with("# Employee handbook\n\n# Working hours\n\nCore hours"));
        assert!(pages[0].ends_with("- Remote work is allowed on Mondays and Fridays."));
        assert!(pages[1].contains("flights need approval"));
        assert!(pages[1].contains("Per diem | Amount\nDomestic | 45 EUR"));
        assert!(pages[2].starts_with("# Equipment"));
    }

    #[test]
    fn a_body_over_the_cap_is_refused() {
        let bytes = include_bytes!("../../tests/fixtures/handbook.docx");
        let err = docx_pages(bytes, 1024).unwrap_err();
        assert!(
            matches!(&err, DocError::Corrupt { reason } if reason.contains("expands")),
            "{err}"
        );
    }

    #[test]
    fn slides_follow_the_presentation_order_with_titles_and_tables() {
        let pages = pptx_pages(include_bytes!("../../tests/fixtures/deck.pptx"), 1 << 24).unwrap();
        let labels: Vec<_> = pages.iter().map(|p| p.label.as_deref().unwrap()).collect();
        assert_eq!(labels, vec!["slide 1", "slide 2", "slide 3"]);
        assert_eq!(
            pages.into_iter().map(|p| p.text).collect::<Vec<_>>(),
            vec![
                "# Risks\n\nThe data center contract expires in October.",
                "# Quarterly review\n\nRevenue grew 12 percent over the last quarter.",
                "# Hiring plan\n\nWe will hire four support engineers in Lisbon.\nRole | Count\nSupport | 4",
            ]
        );
    }

    #[test]
    fn sheets_become_pages_of_aligned_rows() {
        let pages =
            xlsx_pages(include_bytes!("../../tests/fixtures/budget.xlsx"), 1 << 24).unwrap();
        let labels: Vec<_> = pages.iter().map(|p| p.label.as_deref().unwrap()).collect();
        assert_eq!(labels, vec!["sheet Costs", "sheet People"]);
        assert_eq!(
            pages.into_iter().map(|p| p.text).collect::<Vec<_>>(),
            vec![
                "## Costs\n\nItem | Amount | Approved\nVenue rental | 4200 | TRUE\nCatering | 1850.5 | FALSE\nTravel |  | pending",
                "## People\n\nName | Role\nAda | Project lead",
            ]
        );
    }

    #[test]
    fn shared_strings_resolve_and_phonetic_guides_are_dropped() {
        let shared = shared_strings(
            r#"<sst><si><t>Plain</t></si><si><r><t>Rich </t></r><r><t>text</t></r></si>
            <si><t>東京</t><rPh sb="0" eb="2"><t>トウキョウ</t></rPh></si><si/></sst>"#,
        )
        .unwrap();
        assert_eq!(shared, vec!["Plain", "Rich text", "東京", ""]);
        let rows = sheet_rows(
            r#"<worksheet><sheetData><row r="1"><c r="B1" t="s"><v>2</v></c><c r="D1" t="s"><v>1</v></c>
            <c r="E1" t="e"><v>#DIV/0!</v></c><c r="F1" t="s"><v>99</v></c></row>
            <row r="2"><c r="XFE2"><v>far</v></c></row></sheetData></worksheet>"#,
            &shared,
        )
        .unwrap();
        assert_eq!(rows, " | 東京 |  | Rich text | #DIV/0!\n");
    }

    #[test]
    fn relationship_targets_resolve_like_paths() {
        assert_eq!(resolve("ppt", "slides/slide1.xml"), "ppt/slides/slide1.xml");
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/n1.xml"),
            "ppt/notesSlides/n1.xml"
        );
        assert_eq!(
            resolve("xl", "/xl/worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(column("A1"), Some(0));
        assert_eq!(column("AB12"), Some(27));
        assert_eq!(column("12"), None);
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(body_pages("<w:document><w:body><w:p></w:body>").is_err());
        assert!(matches!(
            docx_pages(b"PK\x03\x04 not really a zip", 1 << 20),
            Err(DocError::Corrupt { .. })
        ));
    }
}
