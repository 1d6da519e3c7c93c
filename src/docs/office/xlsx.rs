//! Excel (XLSX): one page per sheet, in workbook order, each row as `a | b | c`.

use std::io::Read;

use quick_xml::events::Event;

use super::zip::{corrupt, listed_parts, over, Package, Xml};
use super::{text_of, val, OfficePage, Produced};
use crate::docs::extract::{Cancel, ReadLimit, ReadLimits};
use crate::docs::DocError;

/// Extracts one page per sheet of an XLSX, in workbook order.
pub fn xlsx_pages(
    bytes: &[u8],
    limits: &ReadLimits,
    cancel: &Cancel,
) -> Result<Vec<OfficePage>, DocError> {
    let mut pkg = Package::open(bytes, limits.xml_bytes, cancel)?;
    let sheets = listed_parts(&mut pkg, "xl/workbook.xml", b"sheet", limits)?;
    let shared = pkg
        .read("xl/sharedStrings.xml", |xml| shared_strings(xml, limits))?
        .unwrap_or_default();
    let mut sheet = SheetLimits::new(limits);
    let mut pages = Vec::with_capacity(sheets.len());
    for (name, part) in sheets {
        let title = name.unwrap_or_else(|| format!("Sheet {}", pages.len() + 1));
        let mut text = format!("## {title}\n\n");
        pkg.required(&part, |xml| sheet_rows(xml, &shared, &mut sheet, &mut text))?;
        pages.push(OfficePage {
            text: text.trim_end().to_string(),
            label: Some(format!("sheet {title}")),
        });
    }
    if pages.is_empty() {
        return Err(DocError::Empty);
    }
    Ok(pages)
}

/// A workbook's shared strings: one text, with where each string ends in it (8 bytes a
/// string, not a `String` each).
#[derive(Debug, Default)]
pub(super) struct Shared {
    text: String,
    ends: Vec<usize>,
}

impl Shared {
    pub(super) fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
        self.text.get(start..end)
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The shared strings table of a workbook. Phonetic guides (`rPh`) are left out. Its text
/// counts against the character limit, and its entries against the cell limit (a string no
/// cell can use is not kept).
pub(super) fn shared_strings<R: Read>(
    xml: &mut Xml<'_, R>,
    limits: &ReadLimits,
) -> Result<Shared, DocError> {
    let mut produced = Produced::new(limits);
    let mut out = Shared::default();
    let (mut in_text, mut in_phonetic) = (false, false);
    let part = xml.part.clone();
    loop {
        let event = xml.next()?;
        let ended = match &event {
            Event::Start(e) => {
                match e.local_name().as_ref() {
                    b"t" => in_text = true,
                    b"rPh" => in_phonetic = true,
                    _ => {}
                }
                false
            }
            Event::Empty(e) => e.local_name().as_ref() == b"si",
            Event::End(e) => match e.local_name().as_ref() {
                b"si" => true,
                b"t" => {
                    in_text = false;
                    false
                }
                b"rPh" => {
                    in_phonetic = false;
                    false
                }
                _ => false,
            },
            Event::Eof => break,
            other if in_text && !in_phonetic => {
                if let Some(t) = text_of(other).map_err(|e| corrupt(format!("{part}: {e}")))? {
                    produced.add(&t)?;
                    out.text.push_str(&t);
                }
                false
            }
            _ => false,
        };
        if ended {
            out.ends.push(out.text.len());
            if out.len() as u64 > limits.cells {
                return Err(over(ReadLimit::Cells(limits.cells)));
            }
        }
    }
    Ok(out)
}

/// Cells, rows and characters produced by a workbook's sheets so far, against the limits.
pub(super) struct SheetLimits<'l> {
    limits: &'l ReadLimits,
    produced: Produced<'l>,
    cells: u64,
    rows: u64,
}

impl<'l> SheetLimits<'l> {
    pub(super) fn new(limits: &'l ReadLimits) -> Self {
        Self {
            limits,
            produced: Produced::new(limits),
            cells: 0,
            rows: 0,
        }
    }
}

/// Empty cells written between two filled ones so columns line up; a wider gap is not
/// padded, and the cell after it names its column.
pub(super) const MAX_PAD: usize = 8;

/// Appends one row as `a | b | c` (filled cells in column order; see [`MAX_PAD`]).
pub(super) fn push_row(out: &mut String, cells: &mut [(usize, String)]) {
    // Cells come in column order; stable, so a repeated reference keeps its last value.
    cells.sort_by_key(|(col, _)| *col);
    let mut next = 0usize;
    let mut first = true;
    for (i, (col, text)) in cells.iter().enumerate() {
        if cells.get(i + 1).is_some_and(|(c, _)| c == col) {
            continue;
        }
        let gap = col - next.min(*col);
        if gap <= MAX_PAD {
            for _ in 0..gap {
                if !first {
                    out.push_str(" | ");
                }
                first = false;
            }
            if !first {
                out.push_str(" | ");
            }
            out.push_str(text);
        } else {
            if !first {
                out.push_str(" | ");
            }
            out.push_str(&column_name(*col));
            out.push_str(": ");
            out.push_str(text);
        }
        first = false;
        next = col + 1;
    }
    out.push('\n');
}

/// The rows of one worksheet as `a | b | c` lines, appended to `out`; a cell's column comes
/// from its reference (`C7`). Only filled cells are kept, and they, the rows and the text
/// count against the limits as they are read.
pub(super) fn sheet_rows<R: Read>(
    xml: &mut Xml<'_, R>,
    shared: &Shared,
    sheet: &mut SheetLimits<'_>,
    out: &mut String,
) -> Result<(), DocError> {
    let limits = sheet.limits;
    // The filled cells of the current row: column and text.
    let mut cells: Vec<(usize, String)> = Vec::new();
    // The current cell: its column, type, and raw value.
    let mut col = 0usize;
    let mut next_col = 0usize;
    let mut kind: Option<String> = None;
    let mut value = String::new();
    let mut in_value = false;
    let part = xml.part.clone();
    loop {
        let event = xml.next()?;
        match &event {
            Event::Start(e) => match e.local_name().as_ref() {
                b"row" => {
                    cells.clear();
                    next_col = 0;
                }
                b"c" => {
                    col = val(e, b"r").and_then(|r| column(&r)).unwrap_or(next_col);
                    if col as u64 >= limits.columns {
                        return Err(over(ReadLimit::Columns(limits.columns)));
                    }
                    next_col = col + 1;
                    kind = val(e, b"t");
                    value.clear();
                }
                // `v` holds the value; `t` inside `is` an inline string.
                b"v" | b"t" => in_value = true,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == b"c" => {
                // An empty cell (formatting only) still takes its column.
                let c = val(e, b"r").and_then(|r| column(&r)).unwrap_or(next_col);
                if c as u64 >= limits.columns {
                    return Err(over(ReadLimit::Columns(limits.columns)));
                }
                next_col = c + 1;
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"v" | b"t" => in_value = false,
                b"c" => {
                    let shown = match kind.as_deref() {
                        Some("s") => value
                            .trim()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| shared.get(i))
                            .unwrap_or_default()
                            .to_string(),
                        Some("b") => match value.trim() {
                            "1" => "TRUE".into(),
                            _ => "FALSE".into(),
                        },
                        _ => std::mem::take(&mut value),
                    };
                    if !shown.trim().is_empty() {
                        sheet.cells += 1;
                        if sheet.cells > limits.cells {
                            return Err(over(ReadLimit::Cells(limits.cells)));
                        }
                        // The separator and the text, counted before they are kept.
                        sheet.produced.add(&shown)?;
                        sheet.produced.add(" | ")?;
                        cells.push((col, shown.replace(['\n', '\r'], " ")));
                    }
                }
                b"row" if !cells.is_empty() => {
                    sheet.rows += 1;
                    if sheet.rows > limits.rows {
                        return Err(over(ReadLimit::Rows(limits.rows)));
                    }
                    push_row(out, &mut cells);
                }
                _ => {}
            },
            Event::Eof => break,
            other if in_value => {
                if let Some(t) = text_of(other).map_err(|e| corrupt(format!("{part}: {e}")))? {
                    value.push_str(&t);
                    // One cell's text alone may not pass the limit either.
                    limits.check_chars(value.len() as u64)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The letters of a zero-based column: 0 → `A`, 27 → `AB`, 16383 → `XFD`.
pub(super) fn column_name(mut col: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    letters.iter().rev().map(|&b| b as char).collect()
}

/// The zero-based column of a cell reference: `A1` → 0, `AB12` → 27.
pub(super) fn column(reference: &str) -> Option<usize> {
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
