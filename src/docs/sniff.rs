//! Content sniffing: what a file really is, from its bytes first and its name second. A file
//! called `report.pdf` that holds a PNG is treated as a PNG; a binary file with a `.txt` name
//! is unsupported. Text is UTF-8, or UTF-16 with a byte-order mark (as Windows Notepad saves
//! it).

use super::extract::TextEncoding;

/// The kinds of file anchorbot can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PDF: text layer per page, OCR for pages without one.
    Pdf,
    /// An image for OCR.
    Image(ImageKind),
    /// Text of some flavour.
    Text(TextKind),
    /// An Office Open XML document.
    Office(OfficeKind),
}

/// Office Open XML flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficeKind {
    /// Word.
    Docx,
    /// PowerPoint.
    Pptx,
    /// Excel.
    Xlsx,
}

impl OfficeKind {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            OfficeKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            OfficeKind::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            OfficeKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }

    /// The package's main part, which identifies the flavour, and the usual extension.
    fn main_part(self) -> (&'static [u8], &'static str) {
        match self {
            OfficeKind::Docx => (b"word/document.xml", "docx"),
            OfficeKind::Pptx => (b"ppt/presentation.xml", "pptx"),
            OfficeKind::Xlsx => (b"xl/workbook.xml", "xlsx"),
        }
    }
}

/// Image formats sent to OCR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
    /// GIF (the first frame is read).
    Gif,
}

impl ImageKind {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Webp => "image/webp",
            ImageKind::Gif => "image/gif",
        }
    }
}

/// Text flavours; Markdown keeps its headings for chunking, HTML is reduced to text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Plain text, CSV, source code.
    Plain,
    /// Markdown.
    Markdown,
    /// HTML.
    Html,
}

impl Kind {
    /// The MIME type anchorbot records.
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Pdf => "application/pdf",
            Kind::Image(i) => i.mime(),
            Kind::Text(TextKind::Plain) => "text/plain",
            Kind::Text(TextKind::Markdown) => "text/markdown",
            Kind::Text(TextKind::Html) => "text/html",
            Kind::Office(o) => o.mime(),
        }
    }
}

/// Why a file is not readable, said so a person understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The best guess at what it is.
    pub mime: String,
    /// A password-protected Office document (an OLE container holding an
    /// `EncryptedPackage` stream): the reply should ask for an unprotected copy.
    pub encrypted: bool,
}

/// Decides what `bytes` are; `name` only refines text flavours.
pub fn sniff(bytes: &[u8], name: &str) -> Result<Kind, Unsupported> {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    // Some PDF writers put junk before the header; the spec allows it within 1 KiB.
    if bytes.len() >= 5
        && bytes[..bytes.len().min(1024)]
            .windows(5)
            .any(|w| w == b"%PDF-")
    {
        return Ok(Kind::Pdf);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Kind::Image(ImageKind::Png));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Kind::Image(ImageKind::Jpeg));
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Kind::Image(ImageKind::Webp));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(Kind::Image(ImageKind::Gif));
    }
    // A zip package whose parts include an Office main part (part names are stored
    // uncompressed, anywhere in the file), or one named so: a damaged one is then reported as
    // damaged rather than unsupported.
    if bytes.starts_with(b"PK\x03\x04") {
        for office in [OfficeKind::Docx, OfficeKind::Pptx, OfficeKind::Xlsx] {
            let (part, office_ext) = office.main_part();
            if ext == office_ext || contains(bytes, part) {
                return Ok(Kind::Office(office));
            }
        }
    }
    if let Some(mime) = known_binary(bytes, ext) {
        // Stream names in an OLE directory are UTF-16LE.
        let encrypted_package: Vec<u8> = "EncryptedPackage"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        return Err(Unsupported {
            mime: mime.into(),
            encrypted: mime == "application/x-ole-storage" && contains(bytes, &encrypted_package),
        });
    }
    if let Some(head) = text_head(bytes) {
        let head = head.to_ascii_lowercase();
        let kind = if matches!(ext, "html" | "htm" | "xhtml")
            || head.trim_start().starts_with("<!doctype html")
            || head.trim_start().starts_with("<html")
        {
            TextKind::Html
        } else if matches!(ext, "md" | "markdown" | "mdx") {
            TextKind::Markdown
        } else {
            TextKind::Plain
        };
        return Ok(Kind::Text(kind));
    }
    Err(Unsupported {
        mime: "application/octet-stream".into(),
        encrypted: false,
    })
}

/// Binary formats worth naming in the "unsupported" reply.
fn known_binary(bytes: &[u8], ext: &str) -> Option<&'static str> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(match ext {
            "odt" => "application/vnd.oasis.opendocument.text",
            "ods" => "application/vnd.oasis.opendocument.spreadsheet",
            "odp" => "application/vnd.oasis.opendocument.presentation",
            _ => "application/zip",
        });
    }
    let table: &[(&[u8], &str)] = &[
        (b"\x7fELF", "application/x-executable"),
        (b"MZ", "application/x-msdownload"),
        (b"\x1f\x8b", "application/gzip"),
        (b"\xd0\xcf\x11\xe0", "application/x-ole-storage"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
        (b"BM", "image/bmp"),
        (b"7z\xbc\xaf", "application/x-7z-compressed"),
        (b"Rar!", "application/vnd.rar"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
        (b"\x00\x00\x00", "video/mp4"),
    ];
    table
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, m)| *m)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The first 2 KB of `bytes` as text if they look like text: UTF-8, or UTF-16 with a
/// byte-order mark, with few control characters in the first 64 KB.
fn text_head(bytes: &[u8]) -> Option<String> {
    const SAMPLE: usize = 64 * 1024;
    const HEAD: usize = 2048;
    let (encoding, start) = TextEncoding::of(bytes);
    let body = &bytes[start..];
    if body.is_empty() {
        return None;
    }
    let sample = &body[..body.len().min(SAMPLE)];
    let text = match encoding {
        TextEncoding::Utf8 => match std::str::from_utf8(sample) {
            Ok(s) => s.to_string(),
            // A multi-byte character may be cut at the sample's end.
            Err(e) if e.error_len().is_none() && e.valid_up_to() + 4 >= sample.len() => {
                String::from_utf8_lossy(&sample[..e.valid_up_to()]).into_owned()
            }
            Err(_) => return None,
        },
        TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
            let mut units: Vec<u16> = sample
                .chunks_exact(2)
                .map(|b| match encoding {
                    TextEncoding::Utf16Be => u16::from_be_bytes([b[0], b[1]]),
                    _ => u16::from_le_bytes([b[0], b[1]]),
                })
                .collect();
            // A surrogate pair may be cut at the sample's end; elsewhere a lone one is binary.
            if sample.len() < body.len()
                && units.last().is_some_and(|u| (0xD800..0xDC00).contains(u))
            {
                units.pop();
            }
            match char::decode_utf16(units).collect::<Result<String, _>>() {
                Ok(text) => text,
                Err(_) => return None,
            }
        }
    };
    let total = text.chars().count();
    let control = text
        .chars()
        .filter(|&c| c < '\u{20}' && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
        .count();
    if total == 0 || control * 100 > total {
        return None;
    }
    Some(text.chars().take(HEAD).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_wins_over_the_name() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\nrest", "report.pdf"),
            Ok(Kind::Image(ImageKind::Png))
        );
        assert_eq!(sniff(b"%PDF-1.7\n...", "scan.png"), Ok(Kind::Pdf));
        assert_eq!(
            sniff(b"PK\x03\x04..word/document.xml..", "minutes.zip"),
            Ok(Kind::Office(OfficeKind::Docx))
        );
        assert_eq!(
            sniff(b"PK\x03\x04..ppt/presentation.xml..", "deck"),
            Ok(Kind::Office(OfficeKind::Pptx))
        );
        assert_eq!(
            sniff(b"PK\x03\x04..xl/workbook.xml..", "book.bin"),
            Ok(Kind::Office(OfficeKind::Xlsx))
        );
        assert_eq!(
            sniff(b"# Title\n\ntext", "notes.md"),
            Ok(Kind::Text(TextKind::Markdown))
        );
        assert_eq!(
            sniff(b"<!DOCTYPE html><p>hi</p>", "page.txt"),
            Ok(Kind::Text(TextKind::Html))
        );
        assert_eq!(
            sniff(b"a,b\n1,2\n", "data.csv"),
            Ok(Kind::Text(TextKind::Plain))
        );
        assert_eq!(
            sniff(b"fn main() {}\n", "main.rs"),
            Ok(Kind::Text(TextKind::Plain))
        );
    }

    #[test]
    fn binaries_and_empty_files_are_unsupported() {
        assert_eq!(
            sniff(b"\x7fELF\x02\x01", "notes.txt").unwrap_err().mime,
            "application/x-executable"
        );
        assert!(sniff(b"PK\x03\x04....", "notes.odt")
            .unwrap_err()
            .mime
            .contains("opendocument"));
        assert!(sniff(b"", "empty.txt").is_err());
        let ole_encrypted = [
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".as_slice(),
            &"EncryptedPackage"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
        ]
        .concat();
        assert!(sniff(&ole_encrypted, "minutes.docx").unwrap_err().encrypted);
        assert!(
            !sniff(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old.doc")
                .unwrap_err()
                .encrypted
        );
        assert!(sniff(&[0u8, 1, 2, 3, 4, 5, 6, 7, 200, 201], "x.bin").is_err());
        // A byte-order mark does not make binary data text.
        assert!(sniff(&[0xFF, 0xFE, 0, 0, 1, 0, 2, 0, 3, 0, 0x00, 0xD8], "x.txt").is_err());
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_text() {
        let utf16 = |text: &str, le: bool| -> Vec<u8> {
            let bom: [u8; 2] = if le { [0xFF, 0xFE] } else { [0xFE, 0xFF] };
            bom.into_iter()
                .chain(text.encode_utf16().flat_map(|u| {
                    if le {
                        u.to_le_bytes()
                    } else {
                        u.to_be_bytes()
                    }
                }))
                .collect()
        };
        assert_eq!(
            sniff(
                &utf16("Meeting notes\r\nBudget: 10k\r\n", true),
                "notes.txt"
            ),
            Ok(Kind::Text(TextKind::Plain))
        );
        assert_eq!(
            sniff(&utf16("<!DOCTYPE html><p>hi</p>", false), "page"),
            Ok(Kind::Text(TextKind::Html))
        );
        assert_eq!(
            sniff(&utf16("# Title", true), "notes.md"),
            Ok(Kind::Text(TextKind::Markdown))
        );
    }
}
