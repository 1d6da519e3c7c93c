//! Office Open XML documents: Word (DOCX), PowerPoint (PPTX) and Excel (XLSX). Each is a zip
//! package of XML parts, streamed here part by part, never held whole. Reading is bounded by
//! what it reads and by what it produces: the decompressed XML has a budget (a zip bomb is
//! refused), and the text, cells, rows, columns and pages produced are counted as they are
//! produced ([`ReadLimits`]), so a small file that expands (one long shared string in 40,000
//! cells) is refused before it fills memory. The event loops check a [`Cancel`], so a time
//! limit stops them.
//!
//! - DOCX: the body as Markdown-flavoured text (headings become `#` lines, list items `- `,
//!   table rows `a | b`). Word records where it last broke pages (`w:lastRenderedPageBreak`)
//!   and explicit page breaks (`w:br w:type="page"`); both start a new page, so citations name
//!   the page a reader sees. A document written by a tool that never rendered it has one page.
//! - PPTX: one page per slide, in presentation order; the title becomes a `#` line.
//! - XLSX: one page per sheet, in workbook order, headed by the sheet's name; each row becomes
//!   `a | b | c`. A few empty cells between filled ones are kept so columns line up; past a
//!   wider gap a cell is written with its column (`XFD: total`) instead of padding the row.
//!   Numbers are shown as stored (a date is its serial number).

mod docx;
mod pptx;
#[cfg(test)]
mod tests;
mod xlsx;
mod zip;

use quick_xml::events::{BytesStart, Event};

use super::extract::ReadLimits;
use super::DocError;
pub use docx::docx_pages;
pub use pptx::pptx_pages;
pub use xlsx::xlsx_pages;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficePage {
    /// How a citation names it (`slide 3`, `sheet Costs`); `None`: by page number.
    pub label: Option<String>,
    /// Its text.
    pub text: String,
}

/// Characters produced so far, against the limit.
struct Produced<'l> {
    limits: &'l ReadLimits,
    chars: u64,
}

impl<'l> Produced<'l> {
    fn new(limits: &'l ReadLimits) -> Self {
        Self { limits, chars: 0 }
    }

    /// Counts `text` as produced.
    fn add(&mut self, text: &str) -> Result<(), DocError> {
        self.chars += text.chars().count() as u64;
        self.limits.check_chars(self.chars)
    }
}

/// The value of the first attribute that `wanted` accepts.
pub(super) fn attr(
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
pub(super) fn val(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    attr(e, |a| a.key.local_name().as_ref() == name)
}

/// The relationship id of an element: the namespaced `r:id`, not a plain `id` (slide ids
/// in `p:sldId` are plain `id` attributes too).
pub(super) fn rel_id(e: &BytesStart<'_>) -> Option<String> {
    attr(e, |a| {
        a.key.local_name().as_ref() == b"id" && a.key.prefix().is_some()
    })
}

/// Decoded text of a text or entity event, for the event loops below.
pub(super) fn text_of(event: &Event<'_>) -> Result<Option<String>, String> {
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
