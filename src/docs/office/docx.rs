//! Word (DOCX): the body as Markdown-flavoured text, split into the pages a reader sees.

use std::io::Read;

use quick_xml::events::{BytesStart, Event};

use super::zip::{corrupt, over, Package, Xml};
use super::{text_of, val, OfficePage, Produced};
use crate::docs::extract::{Cancel, ReadLimit, ReadLimits};
use crate::docs::DocError;

/// The part of a DOCX package that holds the body text.
pub(super) const BODY: &str = "word/document.xml";

/// Extracts the pages of a DOCX.
pub fn docx_pages(
    bytes: &[u8],
    limits: &ReadLimits,
    cancel: &Cancel,
) -> Result<Vec<OfficePage>, DocError> {
    let mut pkg = Package::open(bytes, limits.xml_bytes, cancel)?;
    let pages = pkg.required(BODY, |xml| body_pages(xml, limits))?;
    Ok(pages
        .into_iter()
        .map(|text| OfficePage { label: None, text })
        .collect())
}

/// Paragraph being assembled.
#[derive(Default)]
pub(super) struct Para {
    text: String,
    heading: Option<usize>,
    list: bool,
}

/// Walks the body XML. Text only counts inside `w:t`; deleted revisions (`w:delText`) and
/// field instructions (`w:instrText`) are other elements and so are skipped.
pub(super) fn body_pages<R: Read>(
    xml: &mut Xml<'_, R>,
    limits: &ReadLimits,
) -> Result<Vec<String>, DocError> {
    let mut produced = Produced::new(limits);
    let mut pages = vec![String::new()];
    let mut para = Para::default();
    let mut in_text = false;
    // The cells of the current row, one entry per open (possibly nested) table.
    let mut tables: Vec<Vec<String>> = Vec::new();
    let part = xml.part.clone();
    loop {
        match xml.next()? {
            Event::Start(e) => match e.local_name().as_ref() {
                b"t" => in_text = true,
                b"p" => para = Para::default(),
                b"tbl" => tables.push(Vec::new()),
                b"tc" => {
                    if let Some(row) = tables.last_mut() {
                        row.push(String::new());
                    }
                }
                _ => empty_element(&e, &mut para, &mut pages, limits)?,
            },
            Event::Empty(e) => empty_element(&e, &mut para, &mut pages, limits)?,
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
                if let Some(t) = text_of(&other).map_err(|e| corrupt(format!("{part}: {e}")))? {
                    produced.add(&t)?;
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
pub(super) fn empty_element(
    e: &BytesStart<'_>,
    para: &mut Para,
    pages: &mut Vec<String>,
    limits: &ReadLimits,
) -> Result<(), DocError> {
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
                page_break(para, pages, limits)?;
            } else {
                para.text.push('\n');
            }
        }
        b"lastRenderedPageBreak" => page_break(para, pages, limits)?,
        _ => {}
    }
    Ok(())
}

/// Closes the current page: what the paragraph holds so far stays on it.
pub(super) fn page_break(
    para: &mut Para,
    pages: &mut Vec<String>,
    limits: &ReadLimits,
) -> Result<(), DocError> {
    let before = std::mem::take(&mut para.text);
    push_block(pages, before.trim());
    if pages.len() as u64 >= limits.pages {
        return Err(over(ReadLimit::Pages(limits.pages)));
    }
    pages.push(String::new());
    Ok(())
}

/// Appends a block to the current page, followed by a blank line (Markdown paragraph
/// separation). An empty block only ends a preceding table row run with a blank line.
pub(super) fn push_block(pages: &mut [String], block: &str) {
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

/// `Heading1`..`Heading6` (any case, with or without a space) and `Title` become levels;
/// deeper headings stay plain paragraphs (Markdown has six levels).
pub(super) fn heading_level(style: &str) -> Option<usize> {
    let s = style.to_ascii_lowercase().replace(' ', "");
    if s == "title" {
        return Some(1);
    }
    let n = s.strip_prefix("heading")?.parse::<usize>().ok()?;
    (1..=6).contains(&n).then_some(n)
}
