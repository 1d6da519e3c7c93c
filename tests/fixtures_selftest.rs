//! Checks the document generators in `anchorbot_fakes::fixtures` against the real Debian tools
//! (`pdfinfo`, `pdftotext`, `pdftoppm` from poppler-utils, `tesseract`, `qpdf`).

use std::process::{Command, Output};

use anchorbot_fakes::fixtures::*;

fn tool(prog: &str, args: &[&str], dir: &TempDir) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(dir.path())
        .env("OMP_THREAD_LIMIT", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tool failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn page_text(dir: &TempDir, file: &str, page: u32) -> String {
    let p = page.to_string();
    let out = tool(
        "pdftotext",
        &["-layout", "-f", &p, "-l", &p, file, "-"],
        dir,
    );
    assert!(
        out.stderr.is_empty(),
        "pdftotext warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&out)
}

fn ocr_png(dir: &TempDir, png: &str) -> String {
    ok(&tool("tesseract", &[png, "-", "-l", "eng"], dir)).to_lowercase()
}

#[test]
fn text_pdf_pages_are_separate_and_clean() {
    let pdf = text_pdf(&[
        vec![
            "Fact one: the capital of Atlantis is Poseidonia.",
            "Population 1200.",
        ],
        vec![
            "Fact two: the vault code is 8841.",
            "Escapes: (paren) back\\slash",
        ],
        vec!["Fact three: the ferry leaves at 06:45."],
    ]);
    let dir = TempDir::new("selftest-text");
    dir.write("doc.pdf", &pdf);

    let info = tool("pdfinfo", &["doc.pdf"], &dir);
    assert!(
        info.stderr.is_empty(),
        "pdfinfo warned: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info = ok(&info);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.trim_end().ends_with(" 3")),
        "{info}"
    );
    assert!(info.contains("612 x 792"), "{info}");

    let p1 = page_text(&dir, "doc.pdf", 1);
    let p2 = page_text(&dir, "doc.pdf", 2);
    let p3 = page_text(&dir, "doc.pdf", 3);
    assert!(
        p1.contains("Poseidonia") && p1.contains("Population 1200."),
        "{p1:?}"
    );
    assert!(p2.contains("the vault code is 8841."), "{p2:?}");
    assert!(p2.contains("Escapes: (paren) back\\slash"), "{p2:?}");
    assert!(
        !p2.contains("Poseidonia") && !p2.contains("ferry"),
        "{p2:?}"
    );
    assert!(p3.contains("06:45") && !p3.contains("8841"), "{p3:?}");
    // Lines go down the page in order.
    assert!(p1.find("Fact one").unwrap() < p1.find("Population").unwrap());

    // qpdf agrees the structure (xref offsets etc.) is sound.
    let check = tool("qpdf", &["--check", "doc.pdf"], &dir);
    let text = ok(&check);
    assert!(
        text.contains("No syntax or stream encoding errors"),
        "{text}"
    );
}

#[test]
fn text_pdf_many_is_large_and_deterministic() {
    let a = text_pdf_many(200, 45, 7);
    assert_eq!(a, text_pdf_many(200, 45, 7));
    assert_ne!(a, text_pdf_many(200, 45, 8));
    let dir = TempDir::new("selftest-many");
    dir.write("big.pdf", &a);
    let info = ok(&tool("pdfinfo", &["big.pdf"], &dir));
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.trim_end().ends_with(" 200")),
        "{info}"
    );
    let t = page_text(&dir, "big.pdf", 137);
    assert!(t.contains("Section 137"), "{t:?}");
    let words = t.split_whitespace().count();
    assert!(words > 300, "only {words} words on page 137");
    let all = ok(&tool("pdftotext", &["big.pdf", "-"], &dir));
    assert_eq!(all.matches('\u{c}').count(), 200);
}

#[test]
fn scanned_page_has_no_text_layer_but_ocr_reads_it() {
    let (w, h, gray) = render_text_to_gray(&["INVOICE 4711", "TOTAL 99 EUR"]);
    assert_eq!((w, h), (1275, 1650));
    assert_eq!(gray.len(), (w * h) as usize);
    assert!(
        gray.iter().any(|&v| v < 64) && gray.iter().filter(|&&v| v == 255).count() > gray.len() / 2
    );

    let dir = TempDir::new("selftest-scan");
    dir.write("scan.pdf", &gray_image_pdf(w, h, &gray));
    let info = ok(&tool("pdfinfo", &["scan.pdf"], &dir));
    assert!(
        info.contains("Pages:") && info.contains("612 x 792"),
        "{info}"
    );
    let text = page_text(&dir, "scan.pdf", 1);
    assert!(
        !text.chars().any(|c| c.is_alphanumeric()),
        "text layer found: {text:?}"
    );
    assert!(text.trim().is_empty(), "{text:?}"); // poppler 22.12 prints exactly "\u{c}"

    ok(&tool(
        "pdftoppm",
        &["-r", "150", "-png", "-singlefile", "scan.pdf", "page"],
        &dir,
    ));
    let ocr = ocr_png(&dir, "page.png");
    assert!(
        ocr.contains("invoice") && ocr.contains("4711"),
        "OCR: {ocr:?}"
    );
    assert!(ocr.contains("total") && ocr.contains("99"), "OCR: {ocr:?}");
}

#[test]
fn png_of_text_is_readable_by_tesseract() {
    let png = png_of_text(&["Meeting moved to Thursday", "Room 42B"]);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dir = TempDir::new("selftest-png");
    dir.write("t.png", &png);
    let ocr = ocr_png(&dir, "t.png");
    assert!(ocr.contains("meeting moved to thursday"), "OCR: {ocr:?}");
    assert!(ocr.contains("42b"), "OCR: {ocr:?}");
}

#[test]
fn encrypted_pdf_needs_the_user_password() {
    let enc = encrypted_pdf(&text_pdf(&[vec!["Top secret: launch codes 0000."]]));
    let dir = TempDir::new("selftest-enc");
    dir.write("enc.pdf", &enc);

    let info = tool("pdfinfo", &["enc.pdf"], &dir);
    let out = String::from_utf8_lossy(&info.stdout);
    assert!(!info.status.success() || encrypted_yes(&out), "{out}");
    let text = tool("pdftotext", &["enc.pdf", "-"], &dir);
    assert!(
        !text.status.success(),
        "pdftotext opened it without a password"
    );
    assert!(!String::from_utf8_lossy(&text.stdout).contains("launch codes"));

    let text = ok(&tool(
        "pdftotext",
        &["-upw", USER_PASSWORD, "enc.pdf", "-"],
        &dir,
    ));
    assert!(text.contains("launch codes 0000."), "{text:?}");
    let info = ok(&tool("pdfinfo", &["-upw", USER_PASSWORD, "enc.pdf"], &dir));
    assert!(encrypted_yes(&info), "{info}");
}

/// `pdfinfo` prints e.g. `Encrypted:       yes (print:yes ... algorithm:AES-256)`.
fn encrypted_yes(info: &str) -> bool {
    info.lines().any(|l| {
        l.strip_prefix("Encrypted:")
            .is_some_and(|v| v.trim_start().starts_with("yes"))
    })
}

#[test]
fn png_header_claims_huge_dimensions_with_valid_crcs() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let png = png_header_with_dimensions(100_000, 70_000);
    assert!(png.len() < 100, "{} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 100_000);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 70_000);
    // Walk the chunks and verify every CRC.
    let mut pos = 8;
    let mut kinds = Vec::new();
    while pos < png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let body = &png[pos + 4..pos + 8 + len];
        let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
        assert_eq!(
            crc32(body),
            crc,
            "bad CRC in {:?}",
            String::from_utf8_lossy(&body[..4])
        );
        kinds.push(String::from_utf8_lossy(&body[..4]).into_owned());
        pos += 12 + len;
    }
    assert_eq!(pos, png.len());
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
}

#[test]
fn broken_pdfs_are_rejected() {
    let good = text_pdf(&[vec!["hello"]]);
    let cut = truncated(&good);
    assert_eq!(cut.len(), good.len() * 2 / 5);
    assert!(cut.starts_with(b"%PDF-1.4"));
    let bad = corrupt_pdf();
    assert!(bad.starts_with(b"%PDF-1.4\n") && bad.len() > 1000);

    let dir = TempDir::new("selftest-broken");
    dir.write("bad.pdf", &bad);
    dir.write("cut.pdf", &cut);
    assert!(!tool("pdfinfo", &["bad.pdf"], &dir).status.success());
    assert!(!tool("pdftotext", &["bad.pdf", "-"], &dir).status.success());
    // A truncated file may be "repaired" by poppler, but never yields the text.
    let t = tool("pdftotext", &["cut.pdf", "-"], &dir);
    assert!(!String::from_utf8_lossy(&t.stdout).contains("hello"));
}

#[test]
fn pgm_parser_handles_comments_and_whitespace() {
    let mut pgm = b"P5\n# made by hand\n 3  # width\n2\n255\n".to_vec();
    pgm.extend_from_slice(&[0, 128, 255, 1, 2, 3]);
    assert_eq!(parse_pgm(&pgm).unwrap(), (3, 2, vec![0, 128, 255, 1, 2, 3]));
    assert!(parse_pgm(b"P6\n1 1\n255\n\0\0\0").is_err());
    assert!(parse_pgm(b"P5\n2 2\n255\n\0").is_err());
}
