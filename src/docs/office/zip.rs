//! The package: a zip of XML parts, each streamed and parsed event by event against the
//! package's budget of inflated bytes and the cancel, and the relationships between parts.

use std::collections::HashMap;
use std::io::{BufReader, Read};

use quick_xml::events::Event;
use quick_xml::Reader;

use super::{rel_id, val};
use crate::docs::extract::{Cancel, ReadLimit, ReadLimits};
use crate::docs::DocError;

/// Most relationships one part may list (a real deck or workbook has hundreds).
const MAX_RELATIONSHIPS: usize = 100_000;

/// Events parsed between checks of the cancel flag.
pub(super) const EVENTS_PER_CHECK: u32 = 256;

pub(super) fn corrupt(reason: String) -> DocError {
    DocError::Corrupt { reason }
}

pub(super) fn over(limit: ReadLimit) -> DocError {
    DocError::OverLimit { limit }
}

/// A part's inflated bytes, counted against what is left of the package's budget.
pub(super) struct Metered<R> {
    pub(super) inner: R,
    pub(super) left: u64,
    pub(super) over: bool,
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
pub(super) struct Xml<'c, R> {
    pub(super) reader: Reader<BufReader<Metered<R>>>,
    pub(super) buf: Vec<u8>,
    pub(super) part: String,
    pub(super) cap: u64,
    pub(super) cancel: &'c Cancel,
    pub(super) events: u32,
}

impl<R: Read> Xml<'_, R> {
    /// The next event.
    pub(super) fn next(&mut self) -> Result<Event<'_>, DocError> {
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
pub(super) struct Package<'a, 'c> {
    zip: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    budget: u64,
    cap: u64,
    cancel: &'c Cancel,
}

impl<'a, 'c> Package<'a, 'c> {
    pub(super) fn open(bytes: &'a [u8], cap: u64, cancel: &'c Cancel) -> Result<Self, DocError> {
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
    pub(super) fn read<T>(
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
    pub(super) fn required<T>(
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
    pub(super) fn rels(&mut self, part: &str) -> Result<HashMap<String, String>, DocError> {
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
pub(super) fn resolve(dir: &str, target: &str) -> String {
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
pub(super) fn listed_parts(
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
