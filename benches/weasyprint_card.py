"""Render one report card with WeasyPrint, from HTML written to match the printpdf layout
(src/reports/card.rs), and print the median time of 20 renders: `median_ms <ms>`.

Usage: python weasyprint_card.py CARD.json   (the card as `benches/reports.rs` writes it)
Run by `cargo bench --bench reports`, which installs WeasyPrint into a virtualenv first.
"""

import html
import json
import statistics
import sys
import time

from weasyprint import HTML

CSS = """
@page { size: A4; margin: 15mm; }
body { font-family: 'DejaVu Sans', sans-serif; font-size: 10pt; color: #1a1a1f; }
h1 { color: #1f528c; font-size: 18pt; margin: 0; }
.small { font-size: 9pt; margin: 2pt 0; }
hr { border: 0; border-top: 1.2pt solid #1f528c; margin: 8pt 0; }
.title { display: flex; justify-content: space-between; font-weight: bold; font-size: 13pt; }
.title span { font-weight: normal; font-size: 10pt; }
table.details td { padding: 1pt 12pt 1pt 0; }
table.details td:first-child { font-weight: bold; width: 95pt; }
table.subjects { width: 100%; border-collapse: collapse; margin-top: 14pt; font-size: 9.5pt; }
table.subjects th { text-align: left; background: #e6edf7; padding: 3pt 4pt; }
table.subjects td { padding: 3pt 4pt; }
table.subjects tr:nth-child(even) td { background: #e6edf7; }
table.subjects td.total { font-weight: bold; }
h2 { font-size: 10.5pt; margin: 14pt 0 4pt 0; }
.footer { position: fixed; bottom: 0; font-size: 8pt; border-top: 0.6pt solid #1f528c; width: 100%; padding-top: 4pt; }
"""


def card_html(c):
    e = html.escape
    header = "".join(f'<p class="small">{e(x)}</p>' for x in (c["motto"], c["address"], c["contact"]) if x)
    details = "".join(
        f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>"
        for k, v in (
            ("Student", c["student_name"]),
            ("Student ID", c["student_id"]),
            ("Class", c["class"] or "-"),
            ("Examination", c["exam"]),
            ("Term", c["term"]),
        )
    )
    rows = "".join(
        f"<tr><td>{e(s['subject'])}</td><td>{e(s['ca'])}</td><td>{e(s['exam'])}</td>"
        f"<td class=\"total\">{e(s['total'])}</td><td>{e(s['grade'])}</td><td>{e(s['remark'])}</td></tr>"
        for s in c["subjects"]
    )
    summary = [f"Total {c['total']}"]
    if c["average"]:
        summary.append(f"Average {c['average']}")
    if c["position"]:
        summary.append(f"Position {c['position'][0]} of {c['position'][1]}")
    summary.append(f"Subjects {len(c['subjects'])}")
    a = c["attendance"]
    attendance = (
        f"Present {a['present']}, late {a['late']}, absent {a['absent']} of {a['days']} school days ({a['percentage']} attended)"
        if a
        else "No attendance recorded for this term."
    )
    remark = f"<h2>Remarks</h2><p>{e(c['remark'])}</p>" if c["remark"] else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>{CSS}</style></head><body>
<h1>{e(c['school'])}</h1>{header}<hr>
<div class="title">REPORT CARD <span>Session {e(c['session'])}</span></div>
<table class="details">{details}</table>
<table class="subjects"><tr><th>Subject</th><th>CA</th><th>Exam</th><th>Total</th><th>Grade</th><th>Remark</th></tr>{rows}</table>
<hr><p><b>{e('    '.join(summary))}</b></p>
<h2>Attendance</h2><p>{e(attendance)}</p>{remark}
<h2>Grading key</h2><p class="small">{e('   '.join(c['grading_key']))}</p>
<div class="footer">{e(c['school'])} · generated {e(c['generated_on'])}</div>
</body></html>"""


def main():
    card = json.load(open(sys.argv[1], encoding="utf-8"))
    doc = card_html(card)
    HTML(string=doc).write_pdf()  # warm up: fonts, CSS
    times = []
    size = 0
    for _ in range(20):
        t = time.perf_counter()
        size = len(HTML(string=doc).write_pdf())
        times.append((time.perf_counter() - t) * 1000)
    print(f"bytes {size}")
    print(f"median_ms {statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
