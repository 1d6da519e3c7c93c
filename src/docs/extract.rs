//! Getting text out of files, within bounds. PDFs go through Debian's poppler-utils
//! (`pdfinfo`, `pdftotext`, `pdftoppm`) as subprocesses, each with its own time limit and a cap
//! on what it prints, so a hostile file can crash or hang only a child process, never the bot.
//! Text, Markdown, CSV, code and HTML (UTF-8, or UTF-16 with a byte-order mark) are decoded
//! here.
//!
//! What reading may produce is capped while it is read ([`ReadLimits`]), and blocking work runs
//! off the async workers ([`blocking`]) with a [`Cancel`] its loops check, so a time limit
//! really stops it.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::DocError;
use crate::settings::DocumentSettings;

/// Tells blocking work to stop: at its deadline, or when the side waiting for it gives up.
/// The loops doing the work call [`Cancel::check`] between steps.
#[derive(Debug, Clone)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
    secs: u64,
}

impl Cancel {
    /// Stops work `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            deadline: Instant::now().checked_add(limit),
            secs: limit.as_secs(),
        }
    }

    /// Never stops on its own (only [`Cancel::cancel`] stops it).
    pub fn never() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            deadline: None,
            secs: 0,
        }
    }

    /// Stops the work now.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// `Err(Timeout)` once the work should stop.
    pub fn check(&self) -> Result<(), DocError> {
        let late = self.deadline.is_some_and(|d| Instant::now() >= d);
        if late || self.flag.load(Ordering::Relaxed) {
            return Err(DocError::Timeout { secs: self.secs });
        }
        Ok(())
    }
}

/// Cancels on drop: when the future awaiting blocking work is dropped, the work stops too.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `work` on the blocking pool, so parsing never stalls the async workers that stream
/// answers. After `limit` it is told to stop (its loops check the [`Cancel`]) and the caller
/// gets [`DocError::Timeout`] at once.
pub async fn blocking<T, F>(limit: Duration, work: F) -> Result<T, DocError>
where
    T: Send + 'static,
    F: FnOnce(&Cancel) -> Result<T, DocError> + Send + 'static,
{
    let cancel = Cancel::after(limit);
    let guard = CancelOnDrop(cancel.clone());
    let task = tokio::task::spawn_blocking(move || work(&cancel));
    match tokio::time::timeout(limit, task).await {
        Err(_) => {
            guard.0.cancel();
            Err(DocError::Timeout {
                secs: limit.as_secs(),
            })
        }
        Ok(Err(e)) => Err(DocError::ReaderStopped(e)),
        Ok(Ok(result)) => result,
    }
}

/// A limit on what reading one file may produce; a refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Characters of text in the whole file.
    Chars(u64),
    /// Filled cells in a workbook.
    Cells(u64),
    /// Rows with content in a workbook.
    Rows(u64),
    /// Columns in one row of a sheet.
    Columns(u64),
    /// Pages, slides or sheets.
    Pages(u64),
}

impl fmt::Display for ReadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, what) = match *self {
            ReadLimit::Chars(n) => (n, "characters of text"),
            ReadLimit::Cells(n) => (n, "filled cells"),
            ReadLimit::Rows(n) => (n, "rows with content"),
            ReadLimit::Columns(n) => (n, "columns in a row"),
            ReadLimit::Pages(n) => (n, "pages"),
        };
        write!(f, "{} {what}", grouped(n))
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What reading one file may produce. Checked while reading, so a small file that expands
/// (one shared string in 40,000 cells, a cell in the last of 16,384 columns) is refused before
/// it fills memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Characters of text.
    pub chars: u64,
    /// Filled cells in a workbook.
    pub cells: u64,
    /// Rows with content in a workbook.
    pub rows: u64,
    /// Columns in a row (Excel's own limit: column XFD).
    pub columns: u64,
    /// Pages, slides or sheets.
    pub pages: u64,
    /// Bytes of XML an Office package may inflate to.
    pub xml_bytes: u64,
}

/// Characters per token, generously: text that would fit `max_chunks` never reaches the
/// character limit first.
const CHARS_PER_TOKEN: u64 = 6;

/// The character limit is never lower: reading this much is cheap.
pub const MIN_CHARS: u64 = 1_000_000;

impl ReadLimits {
    /// The limits for `cfg`: as many characters as `max_chunks` chunks can hold, and at least
    /// [`MIN_CHARS`] (below that, the chunk limit's refusal is the more precise one).
    pub fn for_documents(cfg: &DocumentSettings) -> Self {
        let tokens = cfg.max_chunks as u64 * cfg.chunk_tokens.max(1) as u64;
        Self {
            chars: tokens.saturating_mul(CHARS_PER_TOKEN).max(MIN_CHARS),
            pages: cfg.max_pages.into(),
            ..Self::default()
        }
    }

    /// `Err` once `used` characters are over the limit.
    pub fn check_chars(&self, used: u64) -> Result<(), DocError> {
        if used > self.chars {
            return Err(DocError::OverLimit {
                limit: ReadLimit::Chars(self.chars),
            });
        }
        Ok(())
    }
}

impl Default for ReadLimits {
    /// The default settings' limits: 30,720,000 characters, a million cells, 500,000 rows,
    /// 500 pages.
    fn default() -> Self {
        Self {
            chars: 20_000 * 256 * CHARS_PER_TOKEN,
            cells: 1_000_000,
            rows: 500_000,
            columns: 16_384,
            pages: 500,
            xml_bytes: MAX_TOOL_OUTPUT,
        }
    }
}

/// What `pdfinfo` says about a PDF.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfInfo {
    /// Page count.
    pub pages: u32,
    /// Largest page side in points (1/72 inch), for the rasterizing cap.
    pub max_side_pts: f64,
}

/// Runs a tool with its own time limit, keeping at most `cap` bytes of what it prints: the
/// child is killed when the limit passes ([`DocError::Timeout`]) or when it prints more (the
/// error `over_cap` makes).
pub(crate) async fn run_tool(
    program: &str,
    args: &[&std::ffi::OsStr],
    limit: Duration,
    cap: u64,
    over_cap: impl FnOnce() -> DocError,
) -> Result<std::process::Output, DocError> {
    use tokio::io::AsyncReadExt;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DocError::ToolMissing {
                tool: program.to_string(),
            },
            _ => DocError::Io(e),
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        // Read at most the cap (and one byte more, to notice): a small file whose streams
        // decompress to gigabytes of text is stopped here.
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut out_capped = (&mut stdout).take(cap + 1);
        let errors = async {
            // Keep the start of stderr, drain the rest so the tool never blocks on it.
            (&mut stderr).take(64 * 1024).read_to_end(&mut err).await?;
            tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await
        };
        let (o, e) = tokio::join!(out_capped.read_to_end(&mut out), errors);
        o.and(e).map_err(DocError::Io)?;
        if out.len() as u64 > cap {
            return Err(over_cap());
        }
        let status = child.wait().await.map_err(DocError::Io)?;
        Ok(std::process::Output {
            status,
            stdout: out,
            stderr: err,
        })
    };
    match tokio::time::timeout(limit, work).await {
        Err(_) => Err(DocError::Timeout {
            secs: limit.as_secs(),
        }),
        Ok(r) => r,
    }
}

/// Most bytes a tool may print (text of all pages), and most bytes of XML an Office package
/// may inflate to.
pub(crate) const MAX_TOOL_OUTPUT: u64 = 256 << 20;

/// Most bytes of a report a tool prints about a file (`pdfinfo`) or of messages.
const MAX_REPORT: u64 = 4 << 20;

/// Most bytes of one rendered page (a 2,200-pixel grey PNG is well under 10 MB).
const MAX_RENDERED_PAGE: u64 = 64 << 20;

/// Rendering one page for OCR: its own limit, inside the parse limit. An ordinary page
/// renders in about a second; one whose content stream inflates to a gigabyte takes a minute.
pub const RENDER_LIMIT: Duration = Duration::from_secs(30);

/// Page sizes are read for at most this many pages (more is refused as too many pages).
const MAX_SIZED_PAGES: u32 = 5_000;

/// A tool printed far more than a file of its size should make it print.
pub(crate) fn expands(program: &str) -> DocError {
    DocError::Corrupt {
        reason: format!("{program} output expands far beyond the file's size"),
    }
}

/// Maps a poppler failure to a clear error.
fn poppler_error(tool: &str, out: &std::process::Output) -> DocError {
    let err = String::from_utf8_lossy(&out.stderr);
    if err.to_ascii_lowercase().contains("password") {
        DocError::Encrypted
    } else {
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no details");
        DocError::Corrupt {
            reason: format!("{tool}: {first}"),
        }
    }
}

/// Page count and the largest page size of a PDF (every page's size, not only the first's,
/// so one huge page cannot make a rendering that fills memory).
pub async fn pdf_info(path: &Path, limit: Duration) -> Result<PdfInfo, DocError> {
    let last = MAX_SIZED_PAGES.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "-f".as_ref(),
        "1".as_ref(),
        "-l".as_ref(),
        last.as_ref(),
        path.as_os_str(),
    ];
    let out = run_tool("pdfinfo", &args, limit, MAX_REPORT, || expands("pdfinfo")).await?;
    if !out.status.success() {
        return Err(poppler_error("pdfinfo", &out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut pages = None;
    let mut max_side_pts: f64 = 0.0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Pages:") {
            pages = v.trim().parse().ok();
        }
        // "Page    1 size:  612 x 792 pts (letter)" per page with -f/-l; "Page size:" without.
        let size = line
            .strip_prefix("Page")
            .and_then(|rest| rest.split_once("size:"))
            .map(|(_, v)| v);
        if let Some(v) = size {
            let nums: Vec<f64> = v
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect();
            if let [w, h, ..] = nums[..] {
                max_side_pts = max_side_pts.max(w).max(h);
            }
        }
    }
    let pages = pages.ok_or_else(|| DocError::Corrupt {
        reason: "pdfinfo reported no page count".into(),
    })?;
    if pages == 0 {
        return Err(DocError::Corrupt {
            reason: "the PDF has no pages".into(),
        });
    }
    Ok(PdfInfo {
        pages,
        max_side_pts: if max_side_pts > 0.0 {
            max_side_pts
        } else {
            792.0
        },
    })
}

/// The text layer of pages `first..=last`, one string per page; at most `limits.chars`
/// characters of it are read ([`DocError::OverLimit`] beyond).
pub async fn pdf_text(
    path: &Path,
    first: u32,
    last: u32,
    limit: Duration,
    limits: &ReadLimits,
) -> Result<Vec<String>, DocError> {
    let f = first.to_string();
    let l = last.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "-layout".as_ref(),
        "-enc".as_ref(),
        "UTF-8".as_ref(),
        "-f".as_ref(),
        f.as_ref(),
        "-l".as_ref(),
        l.as_ref(),
        path.as_os_str(),
        "-".as_ref(),
    ];
    // A character is at most 4 bytes of UTF-8.
    let cap = MAX_TOOL_OUTPUT.min(limits.chars.saturating_mul(4));
    let too_much = || DocError::OverLimit {
        limit: ReadLimit::Chars(limits.chars),
    };
    let out = run_tool("pdftotext", &args, limit, cap, too_much).await?;
    if !out.status.success() {
        return Err(poppler_error("pdftotext", &out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    limits.check_chars(text.chars().count() as u64)?;
    // pdftotext ends every page with a form feed.
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
    pages.truncate((last - first + 1) as usize);
    while pages.len() < (last - first + 1) as usize {
        pages.push(String::new());
    }
    Ok(pages)
}

/// True when a page's text layer carries real text (not just whitespace or stray marks).
pub fn has_text_layer(text: &str) -> bool {
    text.chars().filter(|c| c.is_alphanumeric()).count() >= 16
}

/// Renders page `page` to PNG at `dpi`, capped so the longest side stays within `max_side`
/// pixels. The rendering has its own time limit (`limit`, at most [`RENDER_LIMIT`]) and the
/// image its own size cap.
pub async fn pdf_render_page(
    path: &Path,
    page: u32,
    dpi: u32,
    max_side_px: u32,
    info: &PdfInfo,
    limit: Duration,
) -> Result<Vec<u8>, DocError> {
    let dir = tempfile::tempdir().map_err(DocError::Io)?;
    let prefix = dir.path().join("page");
    let p = page.to_string();
    let scale = ((info.max_side_pts / 72.0) * f64::from(dpi)) as u32;
    let r = dpi.to_string();
    let cap = max_side_px.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-png".as_ref(),
        "-singlefile".as_ref(),
        "-f".as_ref(),
        p.as_ref(),
        "-l".as_ref(),
        p.as_ref(),
    ];
    if scale > max_side_px {
        args.extend(["-scale-to".as_ref(), cap.as_ref() as &std::ffi::OsStr]);
    } else {
        args.extend(["-r".as_ref(), r.as_ref() as &std::ffi::OsStr]);
    }
    args.push(path.as_os_str());
    args.push(prefix.as_os_str());
    let limit = limit.min(RENDER_LIMIT);
    let out = run_tool("pdftoppm", &args, limit, MAX_REPORT, || expands("pdftoppm")).await?;
    if !out.status.success() {
        return Err(poppler_error("pdftoppm", &out));
    }
    let png = dir.path().join("page.png");
    let size = std::fs::metadata(&png).map_err(DocError::Io)?.len();
    if size > MAX_RENDERED_PAGE {
        return Err(DocError::Corrupt {
            reason: format!(
                "page {page} renders to {} MB, over {} MB",
                size >> 20,
                MAX_RENDERED_PAGE >> 20
            ),
        });
    }
    std::fs::read(png).map_err(DocError::Io)
}

/// The encoding a text file declares with its byte-order mark (UTF-8 without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8, with or without a mark.
    Utf8,
    /// UTF-16, little-endian (what Windows Notepad writes as "Unicode").
    Utf16Le,
    /// UTF-16, big-endian.
    Utf16Be,
}

impl TextEncoding {
    /// The encoding `bytes` declare, and where the text starts after the mark.
    pub fn of(bytes: &[u8]) -> (Self, usize) {
        if bytes.starts_with(b"\xef\xbb\xbf") {
            (TextEncoding::Utf8, 3)
        } else if bytes.starts_with(b"\xff\xfe") {
            (TextEncoding::Utf16Le, 2)
        } else if bytes.starts_with(b"\xfe\xff") {
            (TextEncoding::Utf16Be, 2)
        } else {
            (TextEncoding::Utf8, 0)
        }
    }
}

/// Bytes decoded between checks of the limits and the cancel flag.
const DECODE_BLOCK: usize = 1 << 20;

/// Decodes a text file (UTF-8, lossy, or UTF-16 with a byte-order mark) with `\n` line ends.
/// Stops with [`DocError::OverLimit`] once the text is over `limits.chars`, and with
/// [`DocError::Timeout`] once `cancel` fires.
pub fn decode_text(bytes: &[u8], limits: &ReadLimits, cancel: &Cancel) -> Result<String, DocError> {
    let (encoding, start) = TextEncoding::of(bytes);
    let mut rest = &bytes[start..];
    let mut out = String::with_capacity(rest.len().min(limits.chars as usize));
    let mut chars = 0u64;
    while !rest.is_empty() {
        cancel.check()?;
        let piece = match encoding {
            TextEncoding::Utf8 => {
                let mut end = rest.len().min(DECODE_BLOCK);
                // Never cut a character: back up to the start of the one that crosses the end.
                while end < rest.len() && end > 0 && (rest[end] & 0xC0) == 0x80 {
                    end -= 1;
                }
                if end == 0 {
                    end = rest.len().min(DECODE_BLOCK);
                }
                let piece = String::from_utf8_lossy(&rest[..end]).into_owned();
                rest = &rest[end..];
                piece
            }
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => {
                // An even number of bytes; a surrogate pair cut at the end is decoded whole.
                let mut end = rest.len().min(DECODE_BLOCK) & !1;
                if end >= 2 && end < rest.len() {
                    let last = unit(encoding, &rest[end - 2..end]);
                    if (0xD800..0xDC00).contains(&last) {
                        end -= 2;
                    }
                }
                if end == 0 {
                    // A lone trailing byte.
                    rest = &[];
                    "\u{fffd}".to_string()
                } else {
                    let units = rest[..end].chunks_exact(2).map(|b| unit(encoding, b));
                    let piece: String = char::decode_utf16(units)
                        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                        .collect();
                    rest = &rest[end..];
                    piece
                }
            }
        };
        chars += piece.chars().count() as u64;
        limits.check_chars(chars)?;
        // A CR LF pair split between two pieces is still one line end.
        let piece = match piece.strip_prefix('\n') {
            Some(_) if out.ends_with('\r') => {
                out.pop();
                &piece[..]
            }
            _ => &piece[..],
        };
        out.push_str(&piece.replace("\r\n", "\n"));
    }
    Ok(out)
}

/// One UTF-16 code unit of `pair`.
fn unit(encoding: TextEncoding, pair: &[u8]) -> u16 {
    match encoding {
        TextEncoding::Utf16Be => u16::from_be_bytes([pair[0], pair[1]]),
        _ => u16::from_le_bytes([pair[0], pair[1]]),
    }
}

/// Reduces HTML to readable text: drops scripts, styles and tags, breaks lines at block
/// elements, decodes the common entities. The text is never longer than the HTML; it stops
/// with [`DocError::Timeout`] once `cancel` fires.
pub fn html_to_text(html: &str, cancel: &Cancel) -> Result<String, DocError> {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        cancel.check()?;
        if lower[i..].starts_with("<script") || lower[i..].starts_with("<style") {
            let close = if lower[i..].starts_with("<script") {
                "</script>"
            } else {
                "</style>"
            };
            i = lower[i..]
                .find(close)
                .map(|j| i + j + close.len())
                .unwrap_or(html.len());
            continue;
        }
        if lower[i..].starts_with("<!--") {
            i = lower[i..]
                .find("-->")
                .map(|j| i + j + 3)
                .unwrap_or(html.len());
            continue;
        }
        if html.as_bytes()[i] == b'<' {
            let end = html[i..].find('>').map(|j| i + j + 1).unwrap_or(html.len());
            let closing = lower[i..].starts_with("</");
            let tag = lower[i..end].trim_start_matches(['<', '/']);
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let block = matches!(
                name.as_str(),
                "p" | "div"
                    | "h1"
                    | "h2"
                    | "h3"
                    | "h4"
                    | "h5"
                    | "h6"
                    | "table"
                    | "section"
                    | "article"
                    | "pre"
                    | "blockquote"
            );
            // List items, rows and line breaks start a line; blocks also end one.
            let line = matches!(name.as_str(), "br" | "li" | "tr") && !closing;
            if block || line {
                out.push('\n');
            }
            i = end;
            continue;
        }
        let next = html[i..].find('<').map(|j| i + j).unwrap_or(html.len());
        out.push_str(&html[i..next]);
        i = next;
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    // Collapse runs of blank lines.
    let mut text = String::new();
    let mut blank = 0;
    for line in decoded.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(line);
        text.push('\n');
    }
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_text() {
        let t = html_to_text(
            "<html><head><style>p{}</style><script>alert(1)</script></head><body><h1>Title</h1><p>A &amp; B</p><!-- c --><ul><li>one</li><li>two</li></ul></body></html>",
            &Cancel::never(),
        )
        .unwrap();
        assert_eq!(t, "Title\n\nA & B\n\none\ntwo");
    }

    #[test]
    fn text_layer_detection() {
        assert!(!has_text_layer("\u{c}"));
        assert!(!has_text_layer("  . , -  \n"));
        assert!(has_text_layer("The notice period is three months."));
    }

    fn decode(bytes: &[u8]) -> Result<String, DocError> {
        decode_text(bytes, &ReadLimits::default(), &Cancel::never())
    }

    #[test]
    fn decode_strips_bom_and_crlf() {
        assert_eq!(decode(b"\xef\xbb\xbfa\r\nb").unwrap(), "a\nb");
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_text() {
        let text = "Notepad → 東京 🎉\r\nsecond line";
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let want = "Notepad → 東京 🎉\nsecond line";
        assert_eq!(decode(&le).unwrap(), want);
        assert_eq!(decode(&be).unwrap(), want);
    }

    #[test]
    fn characters_and_line_ends_survive_block_edges() {
        // A multi-byte character, a surrogate pair and a CR LF pair across every block edge.
        let text = format!("{}é\r\n🎉", "x".repeat(DECODE_BLOCK - 1)).repeat(3);
        let want = text.replace("\r\n", "\n");
        assert_eq!(decode(text.as_bytes()).unwrap(), want);
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&utf16).unwrap(), want);
    }

    #[test]
    fn text_over_the_character_limit_is_refused_while_decoding() {
        let limits = ReadLimits {
            chars: 1000,
            ..ReadLimits::default()
        };
        let err = decode_text(&vec![b'a'; 5000], &limits, &Cancel::never()).unwrap_err();
        assert!(
            matches!(
                err,
                DocError::OverLimit {
                    limit: ReadLimit::Chars(1000)
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("1,000 characters"), "{err}");
    }

    #[test]
    fn cancelled_work_stops() {
        let cancel = Cancel::never();
        cancel.cancel();
        assert!(matches!(
            decode_text(b"abc", &ReadLimits::default(), &cancel),
            Err(DocError::Timeout { .. })
        ));
        assert!(matches!(
            html_to_text("<p>abc</p>", &cancel),
            Err(DocError::Timeout { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn blocking_work_past_its_limit_is_stopped_inside() {
        let (tx, rx) = std::sync::mpsc::channel();
        let result = blocking(Duration::from_millis(50), move |cancel| {
            // A loop that would run forever unless the check stops it.
            let stopped = loop {
                if let Err(e) = cancel.check() {
                    break e;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            tx.send(matches!(stopped, DocError::Timeout { .. }))
                .unwrap();
            Err::<(), _>(stopped)
        })
        .await;
        assert!(
            matches!(result, Err(DocError::Timeout { secs: 0 })),
            "{result:?}"
        );
        let inside = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(inside, "the work saw the timeout");
    }

    #[test]
    fn the_character_limit_follows_the_chunk_limit() {
        let mut cfg = DocumentSettings::default();
        assert_eq!(ReadLimits::for_documents(&cfg).chars, 34_560_000);
        assert_eq!(ReadLimits::for_documents(&cfg).pages, 500);
        cfg.max_chunks = 5;
        assert_eq!(ReadLimits::for_documents(&cfg).chars, MIN_CHARS);
    }

    #[test]
    fn limits_read_as_numbers() {
        assert_eq!(
            ReadLimit::Chars(30_720_000).to_string(),
            "30,720,000 characters of text"
        );
        assert_eq!(
            ReadLimit::Columns(16_384).to_string(),
            "16,384 columns in a row"
        );
        assert_eq!(grouped(999), "999");
    }
}
