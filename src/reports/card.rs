//! One report card as an A4 PDF page, drawn with printpdf operations and an embedded Unicode
//! font (DejaVu Sans, subset on save), so names in any Latin script and in Cyrillic print as
//! written. Bold is the same face filled and outlined: a second face would double the bytes
//! of every card.
//!
//! [`Card`] is the card's content, already formatted; [`render`] lays it out. Rendering is
//! synchronous and CPU-bound: call it from a worker or `spawn_blocking`.

use std::sync::LazyLock;

use printpdf::{
    Color, FontId, Line, LinePoint, Mm, Op, PaintMode, ParsedFont, PdfDocument, PdfFontHandle,
    PdfPage, PdfSaveOptions, Point, Pt, Rect, Rgb, TextItem, TextRenderingMode,
};
use serde::Serialize;

static FONT_TTF: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// The face, parsed once per process.
static FONT: LazyLock<ParsedFont> = LazyLock::new(|| {
    ParsedFont::from_bytes(FONT_TTF, 0, &mut Vec::new()).expect("the bundled font parses")
});

/// Outline added to glyphs drawn bold, in points per point of font size.
const BOLD_STROKE: f32 = 0.045;

/// Parse the bundled font now (a few milliseconds), not on the first card.
pub fn warm_up() {
    LazyLock::force(&FONT);
}

/// One subject's line, formatted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubjectLine {
    /// Subject name.
    pub subject: String,
    /// Continuous assessment.
    pub ca: String,
    /// Exam.
    pub exam: String,
    /// Total.
    pub total: String,
    /// Grade.
    pub grade: String,
    /// Teacher's remark.
    pub remark: String,
}

/// Attendance for the term, formatted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttendanceLine {
    /// Days present.
    pub present: u32,
    /// Days late.
    pub late: u32,
    /// Days absent.
    pub absent: u32,
    /// Days recorded.
    pub days: u32,
    /// Share attended, e.g. `94.5%`.
    pub percentage: String,
}

/// Everything printed on a card.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Card {
    /// School name.
    pub school: String,
    /// Motto.
    pub motto: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Phone and e-mail, one line.
    pub contact: Option<String>,
    /// Student's full name.
    pub student_name: String,
    /// Student ID.
    pub student_id: String,
    /// Class.
    pub class: Option<String>,
    /// Exam session, e.g. "Third Term Examination".
    pub exam: String,
    /// Term, e.g. "Third Term (2026-04-20 to 2026-07-24)".
    pub term: String,
    /// Academic session, e.g. "2025/2026".
    pub session: String,
    /// Subject lines.
    pub subjects: Vec<SubjectLine>,
    /// Sum of totals.
    pub total: String,
    /// Average.
    pub average: Option<String>,
    /// Position and class size, when the school publishes positions.
    pub position: Option<(u32, u32)>,
    /// Attendance, when recorded.
    pub attendance: Option<AttendanceLine>,
    /// Overall remark.
    pub remark: Option<String>,
    /// Grading key, e.g. "A 70-100 Excellent".
    pub grading_key: Vec<String>,
    /// Date printed in the footer.
    pub generated_on: String,
}

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.5;
const INK: Rgb = Rgb {
    r: 0.1,
    g: 0.1,
    b: 0.12,
    icc_profile: None,
};
const ACCENT: Rgb = Rgb {
    r: 0.12,
    g: 0.32,
    b: 0.55,
    icc_profile: None,
};
const SHADE: Rgb = Rgb {
    r: 0.9,
    g: 0.93,
    b: 0.97,
    icc_profile: None,
};

/// Table columns: (x from the left margin, width) of subject, CA, exam, total, grade, remark.
const COLUMNS: [(f32, f32); 6] = [
    (0.0, 170.0),
    (170.0, 48.0),
    (218.0, 48.0),
    (266.0, 52.0),
    (318.0, 44.0),
    (362.0, 148.28),
];

struct Page {
    ops: Vec<Op>,
    font: FontId,
}

impl Page {
    /// Width of `text` at `size`, from the font's advances (bold adds its outline).
    fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let font = &*FONT;
        let per_em = f32::from(font.pdf_font_metrics.units_per_em.max(1));
        let units: u32 = text
            .chars()
            .map(|c| {
                font.lookup_glyph_index(c as u32)
                    .map_or(0, |g| u32::from(font.get_horizontal_advance(g)))
            })
            .sum();
        let outline = if bold {
            BOLD_STROKE * size * text.chars().count() as f32 * 0.5
        } else {
            0.0
        };
        units as f32 * size / per_em + outline
    }

    /// `text` cut (with an ellipsis) to fit `max` points.
    fn fit(&self, text: &str, size: f32, bold: bool, max: f32) -> String {
        if self.width(text, size, bold) <= max {
            return text.to_string();
        }
        let mut out: String = text.to_string();
        while !out.is_empty() && self.width(&format!("{out}…"), size, bold) > max {
            out.pop();
        }
        format!("{}…", out.trim_end())
    }

    /// Fill colour, and the outline of bold glyphs.
    fn color(&mut self, col: Rgb) {
        self.ops.push(Op::SetFillColor {
            col: Color::Rgb(col.clone()),
        });
        self.ops.push(Op::SetOutlineColor {
            col: Color::Rgb(col),
        });
    }

    /// Text with its baseline at `y` points from the top, starting `x` points from the left.
    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        let mode = if bold {
            TextRenderingMode::FillStroke
        } else {
            TextRenderingMode::Fill
        };
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFont {
                font: PdfFontHandle::External(self.font.clone()),
                size: Pt(size),
            },
            Op::SetTextRenderingMode { mode },
            Op::SetOutlineThickness {
                pt: Pt(BOLD_STROKE * size),
            },
            Op::SetTextCursor {
                pos: Point {
                    x: Pt(x),
                    y: Pt(PAGE_H - y),
                },
            },
            Op::ShowText {
                items: vec![TextItem::Text(text.to_string())],
            },
            Op::EndTextSection,
        ]);
    }

    fn text_right(&mut self, right: f32, y: f32, size: f32, bold: bool, text: &str) {
        let w = self.width(text, size, bold);
        self.text(right - w, y, size, bold, text);
    }

    fn rule(&mut self, y: f32, thickness: f32) {
        self.ops.extend([
            Op::SetOutlineThickness { pt: Pt(thickness) },
            Op::SetOutlineColor {
                col: Color::Rgb(ACCENT),
            },
            Op::DrawLine {
                line: Line {
                    points: vec![
                        LinePoint {
                            p: Point {
                                x: Pt(MARGIN),
                                y: Pt(PAGE_H - y),
                            },
                            bezier: false,
                        },
                        LinePoint {
                            p: Point {
                                x: Pt(PAGE_W - MARGIN),
                                y: Pt(PAGE_H - y),
                            },
                            bezier: false,
                        },
                    ],
                    is_closed: false,
                },
            },
            Op::SetOutlineColor {
                col: Color::Rgb(INK),
            },
        ]);
    }

    fn band(&mut self, y_top: f32, height: f32, col: Rgb) {
        self.color(col);
        self.ops.push(Op::DrawRectangle {
            rectangle: Rect {
                mode: Some(PaintMode::Fill),
                ..Rect::from_xywh(
                    Pt(MARGIN),
                    Pt(PAGE_H - y_top - height),
                    Pt(PAGE_W - 2.0 * MARGIN),
                    Pt(height),
                )
            },
        });
        self.color(INK);
    }
}

/// The card as PDF bytes (A4, font subset).
pub fn render(card: &Card) -> Vec<u8> {
    render_many(
        std::slice::from_ref(card),
        &format!("Report card: {}", card.student_name),
    )
}

/// Several cards, a page each, in one PDF (one subset font for all of them).
pub fn render_many(cards: &[Card], title: &str) -> Vec<u8> {
    let mut doc = PdfDocument::new(title);
    let font = doc.add_font(&FONT);
    let pages = cards.iter().map(|c| page(c, &font)).collect();
    doc.with_pages(pages)
        .save(&PdfSaveOptions::default(), &mut Vec::new())
}

fn page(card: &Card, font: &FontId) -> PdfPage {
    let mut p = Page {
        ops: Vec::with_capacity(512),
        font: font.clone(),
    };
    p.color(INK);
    let right = PAGE_W - MARGIN;
    let usable = PAGE_W - 2.0 * MARGIN;

    // School header.
    let mut y = MARGIN + 16.0;
    p.color(ACCENT);
    let name = p.fit(&card.school, 18.0, true, usable);
    p.text(MARGIN, y, 18.0, true, &name);
    p.color(INK);
    for line in [&card.motto, &card.address, &card.contact]
        .into_iter()
        .flatten()
    {
        y += 13.0;
        let line = p.fit(line, 9.0, false, usable);
        p.text(MARGIN, y, 9.0, false, &line);
    }
    y += 10.0;
    p.rule(y, 1.2);

    // Title and student details.
    y += 22.0;
    p.text(MARGIN, y, 13.0, true, "REPORT CARD");
    p.text_right(right, y, 10.0, false, &format!("Session {}", card.session));
    let details: [(&str, String); 5] = [
        ("Student", card.student_name.clone()),
        ("Student ID", card.student_id.clone()),
        ("Class", card.class.clone().unwrap_or_else(|| "-".into())),
        ("Examination", card.exam.clone()),
        ("Term", card.term.clone()),
    ];
    y += 8.0;
    for (label, value) in &details {
        y += 15.0;
        p.text(MARGIN, y, 10.0, true, label);
        let value = p.fit(value, 10.0, false, usable - 95.0);
        p.text(MARGIN + 95.0, y, 10.0, false, &value);
    }

    // Subjects.
    y += 22.0;
    let row_h = 17.0;
    p.band(y - 12.0, row_h, SHADE);
    let headers = ["Subject", "CA", "Exam", "Total", "Grade", "Remark"];
    for (i, h) in headers.iter().enumerate() {
        let (x, _) = COLUMNS[i];
        p.text(MARGIN + x + 4.0, y, 9.5, true, h);
    }
    for (n, s) in card.subjects.iter().enumerate() {
        y += row_h;
        if n % 2 == 1 {
            p.band(y - 12.0, row_h, SHADE);
        }
        let cells = [&s.subject, &s.ca, &s.exam, &s.total, &s.grade, &s.remark];
        for (i, cell) in cells.iter().enumerate() {
            let (x, w) = COLUMNS[i];
            let text = p.fit(cell, 9.5, i == 3, w - 8.0);
            p.text(MARGIN + x + 4.0, y, 9.5, i == 3, &text);
        }
    }
    y += 9.0;
    p.rule(y, 0.6);

    // Totals.
    y += 18.0;
    let mut summary = vec![format!("Total {}", card.total)];
    if let Some(a) = &card.average {
        summary.push(format!("Average {a}"));
    }
    if let Some((pos, of)) = card.position {
        summary.push(format!("Position {pos} of {of}"));
    }
    summary.push(format!("Subjects {}", card.subjects.len()));
    p.text(MARGIN, y, 10.5, true, &summary.join("    "));

    // Attendance.
    y += 24.0;
    p.text(MARGIN, y, 10.5, true, "Attendance");
    y += 15.0;
    let attendance = match &card.attendance {
        Some(a) => format!(
            "Present {}, late {}, absent {} of {} school days ({} attended)",
            a.present, a.late, a.absent, a.days, a.percentage
        ),
        None => "No attendance recorded for this term.".to_string(),
    };
    p.text(MARGIN, y, 10.0, false, &attendance);

    // Remarks.
    if let Some(remark) = &card.remark {
        y += 24.0;
        p.text(MARGIN, y, 10.5, true, "Remarks");
        y += 15.0;
        let remark = p.fit(remark, 10.0, false, usable);
        p.text(MARGIN, y, 10.0, false, &remark);
    }

    // Grading key.
    y += 24.0;
    p.text(MARGIN, y, 10.5, true, "Grading key");
    y += 15.0;
    let key = p.fit(&card.grading_key.join("   "), 9.0, false, usable);
    p.text(MARGIN, y, 9.0, false, &key);

    // Footer.
    p.rule(PAGE_H - MARGIN - 14.0, 0.6);
    let footer = format!("{} · generated {}", card.school, card.generated_on);
    let footer = p.fit(&footer, 8.0, false, usable);
    p.text(MARGIN, PAGE_H - MARGIN, 8.0, false, &footer);

    PdfPage::new(Mm(210.0), Mm(297.0), p.ops)
}
