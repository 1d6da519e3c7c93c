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

use std::collections::HashMap;
use std::io::{BufReader, Read};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::extract::{Cancel, ReadLimit, ReadLimits};
use super::DocError;

/// The part of a DOCX package that holds the body text.
const BODY: &str = "word/document.xml";

/// Most relationships one part may list (a real deck or workbook has hundreds).
const MAX_RELATIONSHIPS: usize = 100_000;

/// Events parsed between checks of the cancel flag.
const EVENTS_PER_CHECK: u32 = 256;

fn corrupt(reason: String) -> DocError {
    DocError::Corrupt { reason }
}

fn over(limit: ReadLimit) -> DocError {
    DocError::OverLimit { limit }
}

/// A part's inflated bytes, counted against what is left of the package's budget.
struct Metered<R> {
    inner: R,
    left: u64,
    over: bool,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // Anything more is over the budget.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.over = true;
                return Err(std::io::Error::other("over the XML budget"));
            }
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// One part being parsed: events one at a time, checked against the budget and the cancel.
struct Xml<'c, R> {
    reader: Reader<BufReader<Metered<R>>>,
    buf: Vec<u8>,
    part: String,
    cap: u64,
    cancel: &'c Cancel,
    events: u32,
}

impl<R: Read> Xml<'_, R> {
    /// The next event.
    fn next(&mut self) -> Result<Event<'_>, DocError> {
        self.events = self.events.wrapping_add(1);
        if self.events % EVENTS_PER_CHECK == 1 {
            self.cancel.check()?;
        }
        self.buf.clear();
        let at = self.reader.buffer_position();
        match self.reader.read_event_into(&mut self.buf) {
            Ok(event) => Ok(event),
            Err(_) if self.reader.get_ref().get_ref().over => Err(corrupt(format!(
                "its XML expands beyond {} MB, far beyond the file's size",
                self.cap >> 20
            ))),
            Err(e) => Err(corrupt(format!("{} at byte {at}: {e}", self.part))),
        }
    }
}

/// An opened package with a budget for the bytes its parts may inflate to.
struct Package<'a, 'c> {
    zip: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    budget: u64,
    cap: u64,
    cancel: &'c Cancel,
}

impl<'a, 'c> Package<'a, 'c> {
    fn open(bytes: &'a [u8], cap: u64, cancel: &'c Cancel) -> Result<Self, DocError> {
        let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| corrupt(format!("not a readable Office package: {e}")))?;
        Ok(Self {
            zip,
            budget: cap,
            cap,
            cancel,
        })
    }

    /// Parses part `name` with `parse`, streaming it; `None` if the package has no such part.
    fn read<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(
            &mut Xml<'c, zip::read::ZipFile<'_, std::io::Cursor<&'a [u8]>>>,
        ) -> Result<T, DocError>,
    ) -> Result<Option<T>, DocError> {
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
        let metered = Metered {
            inner: entry,
            left: self.budget,
            over: false,
        };
        let mut xml = Xml {
            reader: Reader::from_reader(BufReader::new(metered)),
            buf: Vec::new(),
            part: name.to_string(),
            cap: self.cap,
            cancel: self.cancel,
            events: 0,
        };
        let parsed = parse(&mut xml)?;
        self.budget = xml.reader.get_ref().get_ref().left;
        Ok(Some(parsed))
    }

    /// A part that must exist.
    fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(
            &mut Xml<'c, zip::read::ZipFile<'_, std::io::Cursor<&'a [u8]>>>,
        ) -> Result<T, DocError>,
    ) -> Result<T, DocError> {
        self.read(name, parse)?
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
        let rels = self.read(&rels_name, |xml| {
            let mut out = HashMap::new();
            loop {
                match xml.next()? {
                    Event::Start(e) | Event::Empty(e)
                        if e.local_name().as_ref() == b"Relationship" =>
                    {
                        if let (Some(id), Some(target)) = (val(&e, b"Id"), val(&e, b"Target")) {
                            out.insert(id, resolve(dir, &target));
                        }
                        if out.len() > MAX_RELATIONSHIPS {
                            return Err(corrupt(format!(
                                "{rels_name} lists more than {MAX_RELATIONSHIPS} relationships"
                            )));
                        }
                    }
                    Event::Eof => break,
                    _ => {}
                }
            }
            Ok(out)
        })?;
        Ok(rels.unwrap_or_default())
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
/// the entry's `name` attribute when it has one; at most `limits.pages` of them.
fn listed_parts(
    pkg: &mut Package<'_, '_>,
    list_part: &str,
    element: &[u8],
    limits: &ReadLimits,
) -> Result<Vec<(Option<String>, String)>, DocError> {
    let rels = pkg.rels(list_part)?;
    pkg.required(list_part, |xml| {
        let mut out = Vec::new();
        loop {
            match xml.next()? {
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == element => {
                    let target = rel_id(&e).and_then(|id| rels.get(&id).cloned());
                    if let Some(target) = target {
                        out.push((val(&e, b"name"), target));
                    }
                    if out.len() as u64 > limits.pages {
                        return Err(over(ReadLimit::Pages(limits.pages)));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(out)
    })
}

/// One page of an Office document.
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

/// Paragraph being assembled.
#[derive(Default)]
struct Para {
    text: String,
    heading: Option<usize>,
    list: bool,
}

/// Walks the body XML. Text only counts inside `w:t`; deleted revisions (`w:delText`) and
/// field instructions (`w:instrText`) are other elements and so are skipped.
fn body_pages<R: Read>(xml: &mut Xml<'_, R>, limits: &ReadLimits) -> Result<Vec<String>, DocError> {
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
fn empty_element(
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
fn page_break(
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
fn slide_text<R: Read>(
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
fn is_title_placeholder(e: &BytesStart<'_>) -> bool {
    matches!(val(e, b"type").as_deref(), Some("title" | "ctrTitle"))
}

/// A workbook's shared strings: one text, with where each string ends in it (8 bytes a
/// string, not a `String` each).
#[derive(Debug, Default)]
struct Shared {
    text: String,
    ends: Vec<usize>,
}

impl Shared {
    fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
        self.text.get(start..end)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The shared strings table of a workbook. Phonetic guides (`rPh`) are left out. Its text
/// counts against the character limit, and its entries against the cell limit (a string no
/// cell can use is not kept).
fn shared_strings<R: Read>(xml: &mut Xml<'_, R>, limits: &ReadLimits) -> Result<Shared, DocError> {
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
struct SheetLimits<'l> {
    limits: &'l ReadLimits,
    produced: Produced<'l>,
    cells: u64,
    rows: u64,
}

impl<'l> SheetLimits<'l> {
    fn new(limits: &'l ReadLimits) -> Self {
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
const MAX_PAD: usize = 8;

/// Appends one row as `a | b | c` (filled cells in column order; see [`MAX_PAD`]).
fn push_row(out: &mut String, cells: &mut [(usize, String)]) {
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
fn sheet_rows<R: Read>(
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
fn column_name(mut col: usize) -> String {
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
    use std::io::Write;

    use super::*;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    fn doc(body: &str) -> String {
        format!(r#"<?xml version="1.0"?><w:document {W}><w:body>{body}</w:body></w:document>"#)
    }

    fn p(text: &str) -> String {
        format!("<w:p><w:r><w:t>{text}</w:t></w:r></w:p>")
    }

    /// A parser over `text`, with no budget and no deadline.
    fn xml<'c>(text: &'c str, cancel: &'c Cancel) -> Xml<'c, &'c [u8]> {
        Xml {
            reader: Reader::from_reader(BufReader::new(Metered {
                inner: text.as_bytes(),
                left: u64::MAX,
                over: false,
            })),
            buf: Vec::new(),
            part: "test.xml".into(),
            cap: u64::MAX,
            cancel,
            events: 0,
        }
    }

    fn body(text: &str) -> Result<Vec<String>, DocError> {
        body_pages(&mut xml(text, &Cancel::never()), &ReadLimits::default())
    }

    fn rows(text: &str, shared: &Shared, limits: &ReadLimits) -> Result<String, DocError> {
        let mut out = String::new();
        sheet_rows(
            &mut xml(text, &Cancel::never()),
            shared,
            &mut SheetLimits::new(limits),
            &mut out,
        )?;
        Ok(out)
    }

    /// A workbook of one sheet, zipped.
    fn xlsx(shared: &str, sheet: &str) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let parts = [
            (
                "xl/workbook.xml",
                r#"<workbook xmlns:r="r"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                r#"<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
            ),
            ("xl/sharedStrings.xml", format!("<sst>{shared}</sst>")),
            (
                "xl/worksheets/sheet1.xml",
                format!("<worksheet><sheetData>{sheet}</sheetData></worksheet>"),
            ),
        ];
        for (name, text) in parts {
            zip.start_file(name, opts).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn headings_lists_and_entities_become_markdown() {
        let xml = doc(&format!(
            r#"<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Terms</w:t></w:r></w:p>
            {}<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr><w:r><w:t>first item</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Tab</w:t><w:tab/><w:t>bed &amp; split </w:t></w:r><w:r><w:t>run</w:t></w:r></w:p>"#,
            p("Payment is due in 30 days &lt;net&gt;.")
        ));
        assert_eq!(
            body(&xml).unwrap(),
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
        assert_eq!(
            body(&xml).unwrap(),
            vec!["first page", "second page\n\nend of two", "third page"]
        );
    }

    #[test]
    fn page_breaks_past_the_page_limit_are_refused_while_reading() {
        let xml = doc(&r#"<w:p><w:r><w:br w:type="page"/></w:r></w:p>"#.repeat(1000));
        let limits = ReadLimits {
            pages: 10,
            ..ReadLimits::default()
        };
        let err = body_pages(&mut self::xml(&xml, &Cancel::never()), &limits).unwrap_err();
        assert_eq!(err, over(ReadLimit::Pages(10)));
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
        assert_eq!(
            body(&xml).unwrap(),
            vec!["Item | Price\nWidget | \n\nafter\n\nkept"]
        );
    }

    #[test]
    fn a_third_party_docx_reads_with_its_pages_list_and_table() {
        let bytes = include_bytes!("../../tests/fixtures/handbook.docx");
        let pages: Vec<String> = docx_pages(bytes, &ReadLimits::default(), &Cancel::never())
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
        let limits = ReadLimits {
            xml_bytes: 1024,
            ..ReadLimits::default()
        };
        let err = docx_pages(bytes, &limits, &Cancel::never()).unwrap_err();
        assert!(
            matches!(&err, DocError::Corrupt { reason } if reason.contains("expands")),
            "{err}"
        );
    }

    #[test]
    fn text_over_the_character_limit_is_refused_while_reading() {
        let bytes = include_bytes!("../../tests/fixtures/handbook.docx");
        let limits = ReadLimits {
            chars: 100,
            ..ReadLimits::default()
        };
        let err = docx_pages(bytes, &limits, &Cancel::never()).unwrap_err();
        assert_eq!(err, over(ReadLimit::Chars(100)));
    }

    #[test]
    fn a_cancelled_read_stops() {
        let bytes = include_bytes!("../../tests/fixtures/deck.pptx");
        let cancel = Cancel::never();
        cancel.cancel();
        let err = pptx_pages(bytes, &ReadLimits::default(), &cancel).unwrap_err();
        assert!(matches!(err, DocError::Timeout { .. }), "{err}");
    }

    #[test]
    fn slides_follow_the_presentation_order_with_titles_and_tables() {
        let pages = pptx_pages(
            include_bytes!("../../tests/fixtures/deck.pptx"),
            &ReadLimits::default(),
            &Cancel::never(),
        )
        .unwrap();
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
        let pages = xlsx_pages(
            include_bytes!("../../tests/fixtures/budget.xlsx"),
            &ReadLimits::default(),
            &Cancel::never(),
        )
        .unwrap();
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
        let cancel = Cancel::never();
        let shared = shared_strings(
            &mut xml(
                r#"<sst><si><t>Plain</t></si><si><r><t>Rich </t></r><r><t>text</t></r></si>
                <si><t>東京</t><rPh sb="0" eb="2"><t>トウキョウ</t></rPh></si><si/></sst>"#,
                &cancel,
            ),
            &ReadLimits::default(),
        )
        .unwrap();
        let all: Vec<_> = (0..shared.len()).map(|i| shared.get(i).unwrap()).collect();
        assert_eq!(all, vec!["Plain", "Rich text", "東京", ""]);
        let out = rows(
            r#"<worksheet><sheetData><row r="1"><c r="B1" t="s"><v>2</v></c><c r="D1" t="s"><v>1</v></c>
            <c r="E1" t="e"><v>#DIV/0!</v></c><c r="F1" t="s"><v>99</v></c></row></sheetData></worksheet>"#,
            &shared,
            &ReadLimits::default(),
        )
        .unwrap();
        assert_eq!(out, " | 東京 |  | Rich text | #DIV/0!\n");
    }

    #[test]
    fn far_cells_are_not_padded_to_their_column() {
        let sheet: String = (1..=3)
            .map(|r| {
                format!(
                    r#"<row r="{r}"><c r="A{r}"><v>{r}</v></c><c r="XFD{r}"><v>end</v></c></row>"#
                )
            })
            .collect();
        let out = rows(&sheet, &Shared::default(), &ReadLimits::default()).unwrap();
        assert_eq!(out, "1 | XFD: end\n2 | XFD: end\n3 | XFD: end\n");
        let err = rows(
            r#"<row r="1"><c r="XFE1"><v>far</v></c></row>"#,
            &Shared::default(),
            &ReadLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err, over(ReadLimit::Columns(16_384)));
        assert!(err.to_string().contains("16,384 columns in a row"), "{err}");
    }

    #[test]
    fn one_shared_string_in_many_cells_is_refused_while_reading() {
        let long = "x".repeat(1000);
        let sheet: String = (1..=2000)
            .map(|r| format!(r#"<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>"#))
            .collect();
        let bytes = xlsx(&format!("<si><t>{long}</t></si>"), &sheet);
        let limits = ReadLimits {
            chars: 100_000,
            ..ReadLimits::default()
        };
        let err = xlsx_pages(&bytes, &limits, &Cancel::never()).unwrap_err();
        assert_eq!(err, over(ReadLimit::Chars(100_000)));
        // Within the limits, the same workbook reads.
        let pages = xlsx_pages(&bytes, &ReadLimits::default(), &Cancel::never()).unwrap();
        assert_eq!(pages[0].text.matches(&long).count(), 2000);
    }

    #[test]
    fn cells_and_rows_are_counted_while_reading() {
        let sheet: String = (1..=50)
            .map(|r| {
                format!(r#"<row r="{r}"><c r="A{r}"><v>1</v></c><c r="B{r}"><v>2</v></c></row>"#)
            })
            .collect();
        let cells = ReadLimits {
            cells: 30,
            ..ReadLimits::default()
        };
        assert_eq!(
            rows(&sheet, &Shared::default(), &cells).unwrap_err(),
            over(ReadLimit::Cells(30))
        );
        let rows_limit = ReadLimits {
            rows: 20,
            ..ReadLimits::default()
        };
        assert_eq!(
            rows(&sheet, &Shared::default(), &rows_limit).unwrap_err(),
            over(ReadLimit::Rows(20))
        );
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
        for (i, name) in [(0, "A"), (25, "Z"), (26, "AA"), (27, "AB"), (16_383, "XFD")] {
            assert_eq!(column_name(i), name);
            assert_eq!(column(&format!("{name}1")), Some(i));
        }
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        assert!(body("<w:document><w:body><w:p></w:body>").is_err());
        assert!(matches!(
            docx_pages(
                b"PK\x03\x04 not really a zip",
                &ReadLimits::default(),
                &Cancel::never()
            ),
            Err(DocError::Corrupt { .. })
        ));
    }
}
