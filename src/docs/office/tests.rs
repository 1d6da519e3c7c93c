//! The Office readers' tests.

use std::io::{BufReader, Write};

use quick_xml::Reader;

use crate::docs::extract::{Cancel, ReadLimit, ReadLimits};

use super::docx::*;
use super::pptx::*;
use super::xlsx::*;
use super::zip::*;
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
    let mut zip = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = ::zip::write::SimpleFileOptions::default()
        .compression_method(::zip::CompressionMethod::Deflated);
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
        vec![
            "## Terms\n\nPayment is due in 30 days <net>.\n\n- first item\n\nTab\tbed & split run"
        ]
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
    assert!(
        matches!(
            err,
            DocError::OverLimit {
                limit: ReadLimit::Pages(10)
            }
        ),
        "{err}"
    );
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
    let bytes = include_bytes!("../../../tests/fixtures/handbook.docx");
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
    let bytes = include_bytes!("../../../tests/fixtures/handbook.docx");
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
    let bytes = include_bytes!("../../../tests/fixtures/handbook.docx");
    let limits = ReadLimits {
        chars: 100,
        ..ReadLimits::default()
    };
    let err = docx_pages(bytes, &limits, &Cancel::never()).unwrap_err();
    assert!(
        matches!(
            err,
            DocError::OverLimit {
                limit: ReadLimit::Chars(100)
            }
        ),
        "{err}"
    );
}

#[test]
fn a_cancelled_read_stops() {
    let bytes = include_bytes!("../../../tests/fixtures/deck.pptx");
    let cancel = Cancel::never();
    cancel.cancel();
    let err = pptx_pages(bytes, &ReadLimits::default(), &cancel).unwrap_err();
    assert!(matches!(err, DocError::Timeout { .. }), "{err}");
}

#[test]
fn slides_follow_the_presentation_order_with_titles_and_tables() {
    let pages = pptx_pages(
        include_bytes!("../../../tests/fixtures/deck.pptx"),
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
        include_bytes!("../../../tests/fixtures/budget.xlsx"),
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
            format!(r#"<row r="{r}"><c r="A{r}"><v>{r}</v></c><c r="XFD{r}"><v>end</v></c></row>"#)
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
    assert!(
        matches!(
            err,
            DocError::OverLimit {
                limit: ReadLimit::Columns(16_384)
            }
        ),
        "{err}"
    );
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
    assert!(
        matches!(
            err,
            DocError::OverLimit {
                limit: ReadLimit::Chars(100_000)
            }
        ),
        "{err}"
    );
    // Within the limits, the same workbook reads.
    let pages = xlsx_pages(&bytes, &ReadLimits::default(), &Cancel::never()).unwrap();
    assert_eq!(pages[0].text.matches(&long).count(), 2000);
}

#[test]
fn cells_and_rows_are_counted_while_reading() {
    let sheet: String = (1..=50)
        .map(|r| format!(r#"<row r="{r}"><c r="A{r}"><v>1</v></c><c r="B{r}"><v>2</v></c></row>"#))
        .collect();
    let cells = ReadLimits {
        cells: 30,
        ..ReadLimits::default()
    };
    assert!(matches!(
        rows(&sheet, &Shared::default(), &cells).unwrap_err(),
        DocError::OverLimit {
            limit: ReadLimit::Cells(30)
        }
    ));
    let rows_limit = ReadLimits {
        rows: 20,
        ..ReadLimits::default()
    };
    assert!(matches!(
        rows(&sheet, &Shared::default(), &rows_limit).unwrap_err(),
        DocError::OverLimit {
            limit: ReadLimit::Rows(20)
        }
    ));
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
