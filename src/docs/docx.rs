//! DOCX text: `word/document.xml` read from the zip with a decompression cap, turned into
//! Markdown-flavoured text (headings become `#` lines, list items `- `, table rows `a | b`).
//!
//! Word records where it last broke pages (`w:lastRenderedPageBreak`) and explicit page breaks
//! (`w:br w:type="page"`); both start a new page, so citations can name the page a reader sees.
//! A document written by a tool that never rendered it has one page.

use std::io::Read;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::DocError;

/// The part of a DOCX package that holds the body text.
const BODY: &str = "word/document.xml";

/// Extracts the pages of a DOCX. `max_xml` caps the decompressed body, so a small file that
/// inflates to gigabytes (a zip bomb) is refused instead of read.
pub fn pages(bytes: &[u8], max_xml: u64) -> Result<Vec<String>, DocError> {
    let corrupt = |reason: String| DocError::Corrupt { reason };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| corrupt(format!("not a readable DOCX package: {e}")))?;
    let entry = zip.by_name(BODY);
    let entry = match entry {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(corrupt(format!("the package has no {BODY}")))
        }
        Err(zip::result::ZipError::UnsupportedArchive(m)) if m.contains("assword") => {
            return Err(DocError::Encrypted)
        }
        Err(e) => return Err(corrupt(format!("{BODY}: {e}"))),
    };
    if entry.encrypted() {
        return Err(DocError::Encrypted);
    }
    let mut xml = Vec::new();
    entry
        .take(max_xml + 1)
        .read_to_end(&mut xml)
        .map_err(|e| corrupt(format!("{BODY}: {e}")))?;
    if xml.len() as u64 > max_xml {
        return Err(corrupt(format!(
            "its text expands beyond {} MB; the file expands far beyond its size",
            max_xml >> 20
        )));
    }
    let xml = String::from_utf8(xml).map_err(|_| corrupt(format!("{BODY} is not UTF-8")))?;
    body_pages(&xml).map_err(corrupt)
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
            Event::Text(t) if in_text => {
                let text = t.xml10_content().map_err(|e| format!("{BODY}: {e}"))?;
                para.text.push_str(&text);
            }
            Event::GeneralRef(r) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    para.text.push(c);
                } else {
                    let name = r.decode().map_err(|e| format!("{BODY}: {e}"))?;
                    if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                        para.text.push_str(s);
                    }
                }
            }
            Event::CData(c) if in_text => para.text.push_str(&String::from_utf8_lossy(&c)),
            Event::Eof => break,
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

/// The value of the attribute whose local name is `name`.
fn val(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// `Heading1`..`Heading9` (any case, with or without a space) and `Title` become levels.
fn heading_level(style: &str) -> Option<usize> {
    let s = style.to_ascii_lowercase().replace(' ', "");
    if s == "title" {
        return Some(1);
    }
    let n = s.strip_prefix("heading")?.parse::<usize>().ok()?;
    (1..=6).contains(&n).then_some(n)
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
        let pages = pages(bytes, 1 << 20).unwrap();
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
        let err = pages(bytes, 1024).unwrap_err();
        assert!(
            matches!(&err, DocError::Corrupt { reason } if reason.contains("expands")),
            "{err}"
        );
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(body_pages("<w:document><w:body><w:p></w:body>").is_err());
        assert!(matches!(
            pages(b"PK\x03\x04 not really a zip", 1 << 20),
            Err(DocError::Corrupt { .. })
        ));
    }
}
