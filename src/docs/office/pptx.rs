//! PowerPoint (PPTX): one page per slide, in presentation order, its title as a `#` line.

use std::io::Read;

use quick_xml::events::{BytesStart, Event};

use super::zip::{corrupt, listed_parts, Package, Xml};
use super::{text_of, val, OfficePage, Produced};
use crate::docs::extract::{Cancel, ReadLimits};
use crate::docs::DocError;

/// Extracts one page per slide of a PPTX, in presentation order.
pub fn pptx_pages(
    bytes: &[u8],
    limits: &ReadLimits,
    cancel: &Cancel,
) -> Result<Vec<OfficePage>, DocError> {
    let mut pkg = Package::open(bytes, limits.xml_bytes, cancel)?;
    let slides = listed_parts(&mut pkg, "ppt/presentation.xml", b"sldId", limits)?;
    let mut produced = Produced::new(limits);
    let mut pages = Vec::with_capacity(slides.len());
    for (_, part) in slides {
        let text = pkg.required(&part, |xml| slide_text(xml, &mut produced))?;
        pages.push(OfficePage {
            label: Some(format!("slide {}", pages.len() + 1)),
            text,
        });
    }
    if pages.is_empty() {
        return Err(DocError::Empty);
    }
    Ok(pages)
}

/// The text of one slide: a line per paragraph, the title as a `#` line, table rows as
/// `a | b`.
pub(super) fn slide_text<R: Read>(
    xml: &mut Xml<'_, R>,
    produced: &mut Produced<'_>,
) -> Result<String, DocError> {
    let mut out = String::new();
    let mut para = String::new();
    let mut in_text = false;
    let mut title = false;
    // Cells of the current table row, when inside a table.
    let mut row: Option<Vec<String>> = None;
    let part = xml.part.clone();
    loop {
        let event = xml.next()?;
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
                if let Some(t) = text_of(other).map_err(|e| corrupt(format!("{part}: {e}")))? {
                    produced.add(&t)?;
                    para.push_str(&t);
                }
            }
            _ => {}
        }
    }
    Ok(out.trim_end().to_string())
}

/// Whether a `p:ph` placeholder is the slide's title.
pub(super) fn is_title_placeholder(e: &BytesStart<'_>) -> bool {
    matches!(val(e, b"type").as_deref(), Some("title" | "ctrTitle"))
}
