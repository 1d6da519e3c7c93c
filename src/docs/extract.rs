//! Getting text out of files. PDFs go through Debian's poppler-utils (`pdfinfo`, `pdftotext`,
//! `pdftoppm`) as subprocesses with a time limit, so a hostile file can crash or hang only a
//! child process, never the bot. Text, Markdown, CSV, code and HTML are decoded here.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use super::DocError;

/// What `pdfinfo` says about a PDF.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfInfo {
    /// Page count.
    pub pages: u32,
    /// Largest page side in points (1/72 inch), for the rasterizing cap.
    pub max_side_pts: f64,
}

/// Runs a tool with a time limit; the child is killed when the limit passes.
async fn run_tool(
    program: &str,
    args: &[&std::ffi::OsStr],
    limit: Duration,
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
            _ => DocError::Io(e.to_string()),
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        // Read at most the cap (and one byte more, to notice): a small file whose streams
        // decompress to gigabytes of text is stopped here.
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut out_capped = (&mut stdout).take(MAX_TOOL_OUTPUT + 1);
        let errors = async {
            // Keep the start of stderr, drain the rest so the tool never blocks on it.
            (&mut stderr).take(64 * 1024).read_to_end(&mut err).await?;
            tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await
        };
        let (o, e) = tokio::join!(out_capped.read_to_end(&mut out), errors);
        o.and(e).map_err(|e| DocError::Io(e.to_string()))?;
        if out.len() as u64 > MAX_TOOL_OUTPUT {
            return Err(DocError::Corrupt {
                reason: format!(
                    "{program} output exceeds {} MB; the file expands far beyond its size",
                    MAX_TOOL_OUTPUT >> 20
                ),
            });
        }
        let status = child
            .wait()
            .await
            .map_err(|e| DocError::Io(e.to_string()))?;
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

/// Most bytes a tool may print (text of all pages, or one rendered page).
pub(crate) const MAX_TOOL_OUTPUT: u64 = 256 << 20;

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

/// Page count and size of a PDF.
pub async fn pdf_info(path: &Path, limit: Duration) -> Result<PdfInfo, DocError> {
    let out = run_tool("pdfinfo", &[path.as_os_str()], limit).await?;
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
        if let Some(v) = line.strip_prefix("Page size:") {
            // "612 x 792 pts (letter)"
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

/// The text layer of pages `first..=last`, one string per page.
pub async fn pdf_text(
    path: &Path,
    first: u32,
    last: u32,
    limit: Duration,
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
    let out = run_tool("pdftotext", &args, limit).await?;
    if !out.status.success() {
        return Err(poppler_error("pdftotext", &out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
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
/// pixels.
pub async fn pdf_render_page(
    path: &Path,
    page: u32,
    dpi: u32,
    max_side_px: u32,
    info: &PdfInfo,
    limit: Duration,
) -> Result<Vec<u8>, DocError> {
    let dir = tempfile::tempdir().map_err(|e| DocError::Io(e.to_string()))?;
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
    let out = run_tool("pdftoppm", &args, limit).await?;
    if !out.status.success() {
        return Err(poppler_error("pdftoppm", &out));
    }
    std::fs::read(dir.path().join("page.png")).map_err(|e| DocError::Io(e.to_string()))
}

/// Decodes a text file: UTF-8 (lossy), without a byte-order mark.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

/// Reduces HTML to readable text: drops scripts, styles and tags, breaks lines at block
/// elements, decodes the common entities.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
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
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_text() {
        let t = html_to_text(
            "<html><head><style>p{}</style><script>alert(1)</script></head><body><h1>Title</h1><p>A &amp; B</p><!-- c --><ul><li>one</li><li>two</li></ul></body></html>",
        );
        assert_eq!(t, "Title\n\nA & B\n\none\ntwo");
    }

    #[test]
    fn text_layer_detection() {
        assert!(!has_text_layer("\u{c}"));
        assert!(!has_text_layer("  . , -  \n"));
        assert!(has_text_layer("The notice period is three months."));
    }

    #[test]
    fn decode_strips_bom_and_crlf() {
        assert_eq!(decode_text(b"\xef\xbb\xbfa\r\nb"), "a\nb");
    }
}
