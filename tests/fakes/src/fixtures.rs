//! Generators for test documents: minimal text PDFs, "scanned" image-only PDFs, PNG renderings
//! of text, encrypted PDFs, PNG headers claiming huge dimensions, and broken files.
//!
//! Plain `std` only. The pure generators (`text_pdf*`, `gray_image_pdf`,
//! `png_header_with_dimensions`, `truncated`, `corrupt_pdf`) need nothing external; the
//! rasterising/encrypting ones shell out to the Debian tools `pdftoppm` (poppler-utils) and
//! `qpdf`, and panic with a clear message when they are missing or fail.
//!
//! Used by the integration tests (through `tests/common`) and the benchmarks as
//! `anchorbot_fakes::fixtures`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// US Letter width in PDF points.
pub const LETTER_WIDTH: f32 = 612.0;
/// US Letter height in PDF points.
pub const LETTER_HEIGHT: f32 = 792.0;
/// Body font size used by [`text_pdf`].
pub const DEFAULT_FONT_SIZE: f32 = 12.0;
/// Font size used by [`render_text_to_gray`] and [`png_of_text`] so OCR reads it reliably.
pub const RENDER_FONT_SIZE: f32 = 24.0;
/// Resolution (DPI) used for every rasterisation in this module.
pub const RENDER_DPI: u32 = 150;
/// User password set by [`encrypted_pdf`] (needed to open the document).
pub const USER_PASSWORD: &str = "user-pass";
/// Owner password set by [`encrypted_pdf`].
pub const OWNER_PASSWORD: &str = "owner-pass";

const MARGIN: f32 = 72.0;

// ---------------------------------------------------------------------------------------------
// Text PDFs
// ---------------------------------------------------------------------------------------------

/// A valid PDF 1.4 with one US Letter page per entry of `pages`; each line is drawn top-down
/// in Helvetica 12pt (standard Type1 font, not embedded, WinAnsiEncoding). `(`, `)` and `\`
/// are escaped; characters outside WinAnsi become `?`. `pdftotext -f N -l N` returns page N.
pub fn text_pdf(pages: &[Vec<&str>]) -> Vec<u8> {
    text_pdf_sized(pages, DEFAULT_FONT_SIZE)
}

/// Like [`text_pdf`] but with the given font size in points (line spacing is 1.25x that).
/// Lines that do not fit on the page are simply drawn off-page; keep the input reasonable.
pub fn text_pdf_sized(pages: &[Vec<&str>], font_size: f32) -> Vec<u8> {
    let mut pdf = PdfWriter::new();
    // 1: catalog, 2: pages, 3: font; then (page, content) pairs.
    let n = pages.len();
    let page_ids: Vec<usize> = (0..n).map(|i| 4 + 2 * i).collect();
    pdf.obj(1, b"<< /Type /Catalog /Pages 2 0 R >>");
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    pdf.obj(
        2,
        format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).as_bytes(),
    );
    pdf.obj(
        3,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    );
    for (i, lines) in pages.iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = page_id + 1;
        pdf.obj(
            page_id,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>",
                num(LETTER_WIDTH),
                num(LETTER_HEIGHT)
            )
            .as_bytes(),
        );
        pdf.stream(content_id, "", &text_content(lines, font_size));
    }
    pdf.finish(1)
}

/// A large, realistic multi-page text PDF for benchmarks: `n_pages` pages of `lines_per_page`
/// lines of varied English-like sentences (deterministic for a given `seed`), each page headed
/// "Section N". Helvetica 12pt, shrunk only if `lines_per_page` would not fit on the page.
pub fn text_pdf_many(n_pages: usize, lines_per_page: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed ^ 0x5EED_F1C7_0000_0001);
    let usable = LETTER_HEIGHT - 2.0 * MARGIN;
    let font_size = if lines_per_page == 0 {
        DEFAULT_FONT_SIZE
    } else {
        (usable / ((lines_per_page + 1) as f32 * 1.25)).min(DEFAULT_FONT_SIZE)
    };
    // ~0.5em average Helvetica glyph width; keep a safety margin.
    let max_chars = ((LETTER_WIDTH - 2.0 * MARGIN) / (font_size * 0.55)) as usize;
    let pages: Vec<Vec<String>> = (0..n_pages)
        .map(|p| {
            let mut lines = vec![format!("Section {}", p + 1)];
            let mut current = String::new();
            while lines.len() < lines_per_page + 1 {
                let sentence = random_sentence(&mut rng);
                for word in sentence.split(' ') {
                    if !current.is_empty() && current.len() + 1 + word.len() > max_chars {
                        lines.push(std::mem::take(&mut current));
                        if lines.len() == lines_per_page + 1 {
                            break;
                        }
                    }
                    if !current.is_empty() {
                        current.push(' ');
                    }
                    current.push_str(word);
                }
            }
            lines
        })
        .collect();
    let borrowed: Vec<Vec<&str>> = pages
        .iter()
        .map(|p| p.iter().map(String::as_str).collect())
        .collect();
    text_pdf_sized(&borrowed, font_size)
}

fn text_content(lines: &[&str], font_size: f32) -> Vec<u8> {
    let leading = font_size * 1.25;
    let top = LETTER_HEIGHT - MARGIN - font_size;
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "BT\n/F1 {} Tf\n{} TL\n{} {} Td\n",
            num(font_size),
            num(leading),
            num(MARGIN),
            num(top)
        )
        .as_bytes(),
    );
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"T*\n");
        }
        out.push(b'(');
        out.extend_from_slice(&pdf_string_bytes(line));
        out.extend_from_slice(b") Tj\n");
    }
    out.extend_from_slice(b"ET\n");
    out
}

/// Encodes `s` as the body of a PDF literal string in WinAnsiEncoding, escaping `(`, `)`, `\`.
fn pdf_string_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        let b = match c {
            '(' | ')' | '\\' => {
                out.push(b'\\');
                c as u8
            }
            ' '..='~' => c as u8,
            '\t' | '\r' | '\n' => b' ',
            '\u{A0}'..='\u{FF}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '™' => 0x99,
            _ => b'?',
        };
        out.push(b);
    }
    out
}

const WORDS: &[&str] = &[
    "the",
    "report",
    "shows",
    "that",
    "our",
    "team",
    "delivered",
    "a",
    "new",
    "release",
    "in",
    "March",
    "and",
    "customers",
    "were",
    "happy",
    "with",
    "faster",
    "search",
    "results",
    "while",
    "support",
    "tickets",
    "dropped",
    "by",
    "nearly",
    "half",
    "budget",
    "for",
    "next",
    "quarter",
    "includes",
    "two",
    "engineers",
    "one",
    "designer",
    "migration",
    "of",
    "legacy",
    "database",
    "to",
    "cloud",
    "storage",
    "is",
    "planned",
    "after",
    "review",
    "invoice",
    "total",
    "was",
    "paid",
    "on",
    "time",
    "contract",
    "renewal",
    "requires",
    "legal",
    "approval",
    "before",
    "Friday",
    "meeting",
    "notes",
    "mention",
    "risks",
    "around",
    "vendor",
    "pricing",
    "latency",
    "improved",
    "across",
    "all",
    "regions",
    "except",
    "Europe",
    "where",
    "traffic",
    "grew",
    "quickly",
    "summary",
    "table",
    "lists",
    "every",
    "open",
    "issue",
    "owner",
    "deadline",
    "policy",
    "update",
    "applies",
    "from",
    "April",
    "security",
    "audit",
    "found",
    "no",
    "critical",
    "problems",
    "backup",
    "schedule",
    "runs",
    "nightly",
    "at",
    "midnight",
    "server",
];

fn random_sentence(rng: &mut SplitMix64) -> String {
    let len = 5 + rng.below(9) as usize;
    let mut s = String::new();
    for i in 0..len {
        if i > 0 {
            s.push(' ');
        }
        if rng.below(12) == 0 {
            let _ = write!(s, "{}", rng.below(10_000));
        } else {
            let w = WORDS[rng.below(WORDS.len() as u64) as usize];
            if i == 0 {
                let mut cs = w.chars();
                if let Some(f) = cs.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(cs.as_str());
                }
            } else {
                s.push_str(w);
            }
        }
    }
    s.push(if rng.below(8) == 0 { '?' } else { '.' });
    s
}

/// SplitMix64: tiny deterministic PRNG.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Image-only ("scanned") PDFs
// ---------------------------------------------------------------------------------------------

/// A one-page PDF with no text layer whose only content is an uncompressed 8-bit DeviceGray
/// image XObject (`gray` = `width*height` bytes, row-major, top row first) filling the page.
/// The page is sized so the image is 150 DPI (`width*72/150` x `height*72/150` pt); rendering
/// it back with `pdftoppm -r 150` reproduces the raster. Panics if `gray` has the wrong length.
pub fn gray_image_pdf(width: u32, height: u32, gray: &[u8]) -> Vec<u8> {
    assert_eq!(
        gray.len(),
        width as usize * height as usize,
        "gray_image_pdf: expected width*height bytes"
    );
    let pw = width as f32 * 72.0 / RENDER_DPI as f32;
    let ph = height as f32 * 72.0 / RENDER_DPI as f32;
    let mut pdf = PdfWriter::new();
    pdf.obj(1, b"<< /Type /Catalog /Pages 2 0 R >>");
    pdf.obj(2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
    pdf.obj(
        3,
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] \
             /Resources << /XObject << /Im1 5 0 R >> >> /Contents 4 0 R >>",
            num(pw),
            num(ph)
        )
        .as_bytes(),
    );
    pdf.stream(
        4,
        "",
        format!("q\n{} 0 0 {} 0 0 cm\n/Im1 Do\nQ\n", num(pw), num(ph)).as_bytes(),
    );
    pdf.stream(
        5,
        &format!(
            "/Type /XObject /Subtype /Image /Width {width} /Height {height} \
             /ColorSpace /DeviceGray /BitsPerComponent 8"
        ),
        gray,
    );
    pdf.finish(1)
}

// ---------------------------------------------------------------------------------------------
// Rasterised text (via pdftoppm)
// ---------------------------------------------------------------------------------------------

/// Renders `lines` (Helvetica 24pt, US Letter, 150 DPI, grayscale) with `pdftoppm`, with
/// `format` being `-png` or nothing (binary PGM); returns the output file's bytes.
fn render_text(lines: &[&str], format: Option<&str>, ext: &str) -> Vec<u8> {
    let dir = TempDir::new("render");
    let pdf = dir.write(
        "in.pdf",
        &text_pdf_sized(&[lines.to_vec()], RENDER_FONT_SIZE),
    );
    let prefix = dir.path().join("out");
    run(Command::new("pdftoppm")
        .args(format)
        .args([
            "-r",
            &RENDER_DPI.to_string(),
            "-gray",
            "-singlefile",
            "-f",
            "1",
            "-l",
            "1",
        ])
        .arg(&pdf)
        .arg(&prefix));
    read(&dir.path().join(format!("out.{ext}")))
}

/// Renders `lines` (Helvetica 24pt on a US Letter page) to an 8-bit grayscale raster at
/// 150 DPI via `pdftoppm -gray`, returning `(width, height, pixels)` (1275 x 1650, row-major,
/// 0 = black). Legible to tesseract; feed it to [`gray_image_pdf`] for a "scanned" page.
pub fn render_text_to_gray(lines: &[&str]) -> (u32, u32, Vec<u8>) {
    let pgm = render_text(lines, None, "pgm");
    parse_pgm(&pgm).unwrap_or_else(|e| panic!("render_text_to_gray: bad PGM from pdftoppm: {e}"))
}

/// A grayscale PNG (150 DPI, US Letter, Helvetica 24pt) of `lines`, via
/// `pdftoppm -png -gray`. Legible to tesseract.
pub fn png_of_text(lines: &[&str]) -> Vec<u8> {
    render_text(lines, Some("-png"), "png")
}

/// Parses a binary PGM (`P5`): header tokens separated by whitespace, `#` comments allowed,
/// exactly one whitespace byte before the raster. 16-bit samples (maxval > 255) are reduced to
/// their high byte; other maxvals are rescaled to 0..=255.
pub fn parse_pgm(data: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let mut pos = 0usize;
    let token = |pos: &mut usize| -> Result<String, String> {
        loop {
            match data.get(*pos) {
                Some(b'#') => {
                    while !matches!(data.get(*pos), None | Some(b'\n') | Some(b'\r')) {
                        *pos += 1;
                    }
                }
                Some(c) if c.is_ascii_whitespace() => *pos += 1,
                Some(_) => break,
                None => return Err("unexpected end of header".into()),
            }
        }
        let start = *pos;
        while matches!(data.get(*pos), Some(c) if !c.is_ascii_whitespace() && *c != b'#') {
            *pos += 1;
        }
        Ok(String::from_utf8_lossy(&data[start..*pos]).into_owned())
    };
    let magic = token(&mut pos)?;
    if magic != "P5" {
        return Err(format!("not a binary PGM (magic {magic:?})"));
    }
    let number = |what: &str, pos: &mut usize| -> Result<u32, String> {
        let t = token(pos)?;
        t.parse().map_err(|_| format!("bad {what}: {t:?}"))
    };
    let w = number("width", &mut pos)?;
    let h = number("height", &mut pos)?;
    let maxval = number("maxval", &mut pos)?;
    if maxval == 0 || maxval > 65535 {
        return Err(format!("bad maxval {maxval}"));
    }
    // Exactly one whitespace byte separates the header from the raster.
    if !matches!(data.get(pos), Some(c) if c.is_ascii_whitespace()) {
        return Err("missing whitespace after maxval".into());
    }
    pos += 1;
    let n = w as usize * h as usize;
    let raster = &data[pos..];
    let pixels: Vec<u8> = if maxval > 255 {
        if raster.len() < 2 * n {
            return Err(format!("raster too short: {} < {}", raster.len(), 2 * n));
        }
        raster[..2 * n].chunks_exact(2).map(|c| c[0]).collect()
    } else {
        if raster.len() < n {
            return Err(format!("raster too short: {} < {n}", raster.len()));
        }
        if maxval == 255 {
            raster[..n].to_vec()
        } else {
            raster[..n]
                .iter()
                .map(|&v| ((v as u32 * 255 + maxval / 2) / maxval).min(255) as u8)
                .collect()
        }
    };
    Ok((w, h, pixels))
}

// ---------------------------------------------------------------------------------------------
// Encrypted PDFs (via qpdf)
// ---------------------------------------------------------------------------------------------

/// `plain` encrypted with AES-256 by `qpdf --encrypt user-pass owner-pass 256`; opening it
/// requires [`USER_PASSWORD`] (or [`OWNER_PASSWORD`]).
pub fn encrypted_pdf(plain: &[u8]) -> Vec<u8> {
    let dir = TempDir::new("encrypt");
    let input = dir.write("in.pdf", plain);
    let output = dir.path().join("out.pdf");
    let out = Command::new("qpdf")
        .args(["--encrypt", USER_PASSWORD, OWNER_PASSWORD, "256", "--"])
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap_or_else(|e| panic!("cannot run qpdf (apt-get install qpdf): {e}"));
    // qpdf exits 3 for "succeeded with warnings".
    if !matches!(out.status.code(), Some(0) | Some(3)) {
        panic!(
            "qpdf --encrypt failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    read(&output)
}

// ---------------------------------------------------------------------------------------------
// PNG with huge claimed dimensions
// ---------------------------------------------------------------------------------------------

/// A tiny, syntactically valid PNG (signature, IHDR, IDAT, IEND, all CRCs correct) whose IHDR
/// claims `w` x `h` 8-bit grayscale. The IDAT holds a valid zlib stream of only one
/// (filter byte + 8 pixel) fragment, so decoders that trust the header try to allocate
/// `w*h` bytes (decompression-bomb-like) and then fail on missing data. Width/height sit
/// big-endian at bytes 16..20 / 20..24.
pub fn png_header_with_dimensions(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // depth 8, grayscale, deflate, filter 0, no interlace
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &zlib_stored(&[0u8; 9]));
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream holding `data` in a single stored (uncompressed) deflate block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 0xFFFF);
    let len = data.len() as u16;
    let mut out = vec![0x78, 0x01, 0x01]; // CMF/FLG (no dict, fastest), BFINAL=1 BTYPE=00
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as used by PNG and zip.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

// ---------------------------------------------------------------------------------------------
// Broken files
// ---------------------------------------------------------------------------------------------

/// The first 40% of `bytes` (rounded down): a file cut off mid-way, e.g. a PDF without xref.
pub fn truncated(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len() * 2 / 5].to_vec()
}

/// A `%PDF-1.4` header followed by 4 KiB of deterministic garbage (no objects, no xref).
pub fn corrupt_pdf() -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut rng = SplitMix64(0xBAD_F11E);
    while out.len() < 9 + 4096 {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Temp files and process helpers
// ---------------------------------------------------------------------------------------------

/// A uniquely named directory under `std::env::temp_dir()`, removed (recursively) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/anchorbot-fixtures-<tag>-<pid>-<nanos>-<counter>`.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "anchorbot-fixtures-{tag}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` inside the directory and returns the file's path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd`, panicking with its stderr unless it exits 0; returns the output.
pub fn run(cmd: &mut Command) -> Output {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {prog} (apt-get install poppler-utils tesseract-ocr qpdf): {e}")
    });
    if !out.status.success() {
        panic!(
            "{prog} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// Minimal PDF writer
// ---------------------------------------------------------------------------------------------

/// Formats a PDF number without exponent and without a trailing `.0`.
fn num(v: f32) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Collects numbered objects and writes header, body, xref table and trailer.
struct PdfWriter {
    buf: Vec<u8>,
    offsets: Vec<Option<usize>>, // index = object number
}

impl PdfWriter {
    fn new() -> Self {
        // The binary comment marks the file as binary for transfer tools.
        PdfWriter {
            buf: b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec(),
            offsets: vec![None],
        }
    }

    fn begin(&mut self, id: usize) {
        if self.offsets.len() <= id {
            self.offsets.resize(id + 1, None);
        }
        assert!(self.offsets[id].is_none(), "object {id} written twice");
        self.offsets[id] = Some(self.buf.len());
        self.buf
            .extend_from_slice(format!("{id} 0 obj\n").as_bytes());
    }

    fn obj(&mut self, id: usize, body: &[u8]) {
        self.begin(id);
        self.buf.extend_from_slice(body);
        self.buf.extend_from_slice(b"\nendobj\n");
    }

    /// A stream object; `dict_extra` goes inside the dictionary next to `/Length`.
    fn stream(&mut self, id: usize, dict_extra: &str, data: &[u8]) {
        self.begin(id);
        let sep = if dict_extra.is_empty() { "" } else { " " };
        self.buf.extend_from_slice(
            format!("<< {dict_extra}{sep}/Length {} >>\nstream\n", data.len()).as_bytes(),
        );
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\nendstream\nendobj\n");
    }

    fn finish(mut self, root: usize) -> Vec<u8> {
        let xref = self.buf.len();
        let size = self.offsets.len();
        let mut t = format!("xref\n0 {size}\n0000000000 65535 f \n");
        for off in &self.offsets[1..] {
            match off {
                Some(o) => {
                    let _ = writeln!(t, "{o:010} 00000 n ");
                }
                None => t.push_str("0000000000 65535 f \n"),
            }
        }
        let _ = write!(
            t,
            "trailer\n<< /Size {size} /Root {root} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
        );
        self.buf.extend_from_slice(t.as_bytes());
        self.buf
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile files: small on disk, huge when read
// ---------------------------------------------------------------------------------------------

/// A one-page PDF whose content stream is `inflated` bytes of spaces, FlateDecode-compressed
/// (about 1000:1, so 1 GiB is a 1 MB file). Nothing is drawn, but every reader inflates and
/// scans the whole stream. Compressed by `python3`'s zlib in 1 MB blocks, so it never holds
/// the inflated bytes.
pub fn inflating_pdf(inflated: u64) -> Vec<u8> {
    let script = "import sys, zlib\n\
        n = int(sys.argv[1]); block = b' ' * (1 << 20); c = zlib.compressobj(9)\n\
        out = sys.stdout.buffer\n\
        for _ in range(n >> 20): out.write(c.compress(block))\n\
        out.write(c.compress(b' ' * (n & ((1 << 20) - 1)))); out.write(c.flush())\n";
    let deflated = run(Command::new("python3")
        .args(["-c", script])
        .arg(inflated.to_string()))
    .stdout;
    let mut w = PdfWriter::new();
    w.obj(1, b"<< /Type /Catalog /Pages 2 0 R >>");
    w.obj(2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
    w.obj(
        3,
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] /Contents 4 0 R /Resources << >> >>",
            num(LETTER_WIDTH),
            num(LETTER_HEIGHT)
        )
        .as_bytes(),
    );
    w.stream(4, "/Filter /FlateDecode", &deflated);
    w.finish(1)
}

/// A zip package of `parts` (name, content), deflated, written by `python3`'s zipfile as
/// Office writes them.
pub fn office_zip(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = TempDir::new("office-zip");
    let mut names = Vec::new();
    for (i, (name, bytes)) in parts.iter().enumerate() {
        let file = dir.write(&format!("part{i}"), bytes);
        names.push(file.display().to_string());
        names.push(name.to_string());
    }
    let out = dir.path().join("package.zip");
    let script = "import sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n\
        args = sys.argv[2:]\n\
        for i in range(0, len(args), 2): z.write(args[i], args[i + 1])\n\
        z.close()\n";
    run(Command::new("python3")
        .args(["-c", script])
        .arg(&out)
        .args(&names));
    read(&out)
}

/// A workbook of one sheet named `Data` with shared strings `shared` and `<sheetData>`
/// content `rows`.
pub fn xlsx(shared: &[&str], rows: &str) -> Vec<u8> {
    let workbook = r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    let rels = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#;
    let mut sst = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{0}" uniqueCount="{0}">"#,
        shared.len()
    );
    for s in shared {
        let _ = write!(sst, "<si><t>{s}</t></si>");
    }
    sst.push_str("</sst>");
    let sheet = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>"#
    );
    office_zip(&[
        ("[Content_Types].xml", types.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", rels.as_bytes()),
        ("xl/sharedStrings.xml", sst.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
    ])
}

/// One shared string of `len` characters referenced by `cells` cells (one a row): a small
/// file whose text is `cells × len` characters.
pub fn xlsx_one_string_everywhere(cells: usize, len: usize) -> Vec<u8> {
    let long = "budget ".repeat(len / 7 + 1)[..len].to_string();
    let mut rows = String::with_capacity(cells * 40);
    for r in 1..=cells {
        let _ = write!(rows, r#"<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>"#);
    }
    xlsx(&[&long], &rows)
}

/// `rows` rows whose only cell is in the last column, XFD: padded to width, each row would
/// be 16,384 cells.
pub fn xlsx_last_column(rows: usize) -> Vec<u8> {
    let mut xml = String::with_capacity(rows * 48);
    for r in 1..=rows {
        let _ = write!(xml, r#"<row r="{r}"><c r="XFD{r}"><v>{r}</v></c></row>"#);
    }
    xlsx(&[], &xml)
}

/// One line of `len` letters with no whitespace, digit or punctuation (pseudo-random from
/// `seed`): to a tokenizer one piece, to a word splitter one word.
pub fn one_long_word(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
}

/// About `len` bytes of English-like prose (pseudo-random sentences from `seed`), in
/// paragraphs of four to eight sentences: a text page of any size that reads like text.
pub fn prose(len: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed ^ 0x9805_E000_0000_0001);
    let mut s = String::with_capacity(len + 200);
    while s.len() < len {
        for i in 0..4 + rng.below(5) {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&random_sentence(&mut rng));
        }
        s.push_str("\n\n");
    }
    s
}

/// About `len` bytes of Chinese text with no spaces (pseudo-random sentences from `seed`,
/// each ending in "。"), in paragraphs: prose in a script written without spaces.
pub fn chinese_prose(len: usize, seed: u64) -> String {
    const WORDS: &[&str] = &[
        "合同",
        "租金",
        "每月",
        "支付",
        "逾期",
        "收取",
        "滞纳金",
        "房东",
        "租客",
        "维修",
        "押金",
        "退还",
        "期限",
        "通知",
        "终止",
        "条款",
        "双方",
        "同意",
        "费用",
        "电费",
        "水费",
        "物业",
        "管理",
        "规定",
        "办公室",
        "会议",
        "预算",
        "项目",
        "报告",
        "季度",
    ];
    let mut rng = SplitMix64(seed ^ 0xC41_0000_0000_0001);
    let mut s = String::with_capacity(len + 200);
    while s.len() < len {
        for _ in 0..3 + rng.below(4) {
            for i in 0..4 + rng.below(8) {
                if i > 0 && rng.below(4) == 0 {
                    s.push('，');
                }
                s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            }
            s.push('。');
        }
        s.push_str("\n\n");
    }
    s
}

/// One PDF made of `pages` (each a whole PDF, usually one page), joined in order with qpdf.
pub fn join_pdfs(pages: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (i, pdf) in pages.iter().enumerate() {
        let p = dir.path().join(format!("p{i}.pdf"));
        std::fs::write(&p, pdf).unwrap();
        inputs.push(p);
    }
    let out = dir.path().join("all.pdf");
    let status = std::process::Command::new("qpdf")
        .arg("--empty")
        .arg("--pages")
        .args(&inputs)
        .arg("--")
        .arg(&out)
        .status()
        .unwrap();
    // qpdf exits 3 for warnings.
    assert!(status.success() || status.code() == Some(3));
    std::fs::read(out).unwrap()
}
