//! Report-card PDFs: a demo student's card read back with `pdftotext` (names with diacritics
//! and in Cyrillic print as written), under 50 KB, and another school's student unreachable; a
//! parent asking in the chat gets a signed link that downloads the card over HTTP, and altered,
//! expired, guessed or other schools' links get nothing; a class batch's combined PDF.
//! `pdftotext` comes from poppler-utils (`.ci/run` installs it); without it the text checks
//! are skipped with a note.

mod common;

use std::process::Command;

use chatbot::demo;
use chatbot::domain::{SchemaName, StudentId};
use chatbot::reports::{self, card};
use chatbot::school::{calendar, students};
use chatbot::tenancy;
use common::{TestApp, Variant};
use unicode_normalization::UnicodeNormalization;

/// The text of a PDF, NFC-normalised, or `None` without pdftotext.
fn pdf_text(pdf: &[u8]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = match Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            eprintln!("skipped: pdftotext not found (apt-get install poppler-utils)");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().nfc().collect())
}

fn nfc(s: &str) -> String {
    s.nfc().collect()
}

variants!(
    a_demo_students_card_reads_back_and_other_schools_are_unreachable,
    a_parent_asks_in_the_chat_and_downloads_the_card,
    a_class_batch_is_one_pdf_with_a_page_per_student,
    the_cleanup_job_deletes_old_cards_only,
);

/// The application with the demo schools, and the main demo school's context.
async fn demo_app(v: Variant) -> Option<(TestApp, demo::DemoCredentials, tenancy::TenantCtx)> {
    let app = TestApp::spawn(v).await?;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    let ctx = tenancy::by_schema_name(&app.state.db, &SchemaName::parse("demo").unwrap())
        .await
        .unwrap();
    Some((app, creds, ctx))
}

/// A student row by the school's student ID.
async fn student_row(
    db: &sea_orm::DatabaseConnection,
    ctx: &tenancy::TenantCtx,
    id: &str,
) -> chatbot::entities::student::Model {
    students::by_student_id(db, ctx, &StudentId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The path and query of an absolute link (the test server's port is not the configured one).
fn local(link: &str) -> String {
    let url = url::Url::parse(link).unwrap();
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

async fn a_parent_asks_in_the_chat_and_downloads_the_card(v: Variant) {
    use chatbot::conversation::{Inbound, Reply};
    use chatbot::domain::PhoneNumber;
    use chatbot::reports::store;
    let Some((app, creds, ctx)) = demo_app(v).await else {
        return;
    };
    let db = &app.state.db;
    let parent = creds.tenants[0].parent_with_children(1).unwrap();
    let child = creds.tenants[0].student(&parent.student_ids[0]).unwrap();
    let phone = PhoneNumber::parse(&parent.phone).unwrap();
    let mut last = None;
    for text in ["hi", "report card", "1"] {
        last = Some(
            chatbot::pipeline::converse(
                app.state.turns(),
                &ctx,
                "terminal",
                &phone,
                &Inbound::text(text),
                chrono::Utc::now(),
            )
            .await
            .unwrap(),
        );
    }
    let outcome = last.unwrap();
    let (url, filename, caption) = outcome
        .replies
        .iter()
        .find_map(|r| match r {
            Reply::Document {
                url,
                filename,
                caption,
            } => Some((url.clone(), filename.clone(), caption.clone())),
            _ => None,
        })
        .expect("a document reply");
    assert!(caption.contains(&child.name), "{caption}");
    assert!(filename.ends_with(".pdf"));
    let path = local(&url);
    let response = app.get(&path).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&filename)
    );
    let pdf = response.bytes().await.unwrap();
    if let Some(text) = pdf_text(&pdf) {
        assert!(text.contains(&nfc(&child.name)), "{text}");
        assert!(text.contains(&child.student_id));
    }

    // The signed parts: altered, for another report, expired, or missing.
    let id: i64 = path
        .trim_start_matches(&format!("{}/", store::ROUTE))
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut tampered = path.clone();
    let flipped = if tampered.ends_with('0') { '1' } else { '0' };
    tampered.pop();
    tampered.push(flipped);
    let other_id = path.replacen(&format!("/{id}?"), &format!("/{}?", id + 1), 1);
    let expired = format!(
        "{}/{id}?{}",
        store::ROUTE,
        store::signed_query(
            &app.state.secret,
            ctx.id(),
            id,
            chrono::Utc::now() - chrono::Duration::minutes(1)
        )
    );
    for (link, status, code) in [
        (tampered, 403, "invalid_link"),
        (other_id, 403, "invalid_link"),
        (expired, 403, "link_expired"),
    ] {
        let r = app.get(&link).await;
        assert_eq!(r.status(), status, "{link}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], code, "{link}");
    }
    assert_eq!(
        app.get(&format!("{}/{id}", store::ROUTE)).await.status(),
        400
    );
    assert_eq!(app.get(store::ROUTE).await.status(), 404, "no listing");
    // A link we signed for another school does not reach this school's report.
    let north = tenancy::by_schema_name(db, &SchemaName::parse("demo-north").unwrap())
        .await
        .unwrap();
    let cross = format!(
        "{}/{id}?{}",
        store::ROUTE,
        store::signed_query(
            &app.state.secret,
            north.id(),
            id,
            chrono::Utc::now() + chrono::Duration::minutes(5)
        )
    );
    assert_eq!(app.get(&cross).await.status(), 404);
    app.stop().await.unwrap();
}

async fn a_class_batch_is_one_pdf_with_a_page_per_student(v: Variant) {
    let Some((app, creds, ctx)) = demo_app(v).await else {
        return;
    };
    let db = &app.state.db;
    let main = &creds.tenants[0];
    let class = students::classes(db, &ctx).await.unwrap()[0].clone();
    let exam = calendar::released_exam_sessions(db, &ctx).await.unwrap()[0].clone();
    let pupils = students::in_class(db, &ctx, class.id).await.unwrap();
    let (status, job) = app
        .api(
            &main.api_key,
            reqwest::Method::POST,
            "/batch-reports/",
            Some(serde_json::json!({"class_id": class.id, "exam_session_id": exam.id})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_i64().unwrap();
    let done = common::eventually(
        "batch finished",
        std::time::Duration::from_secs(60),
        || async {
            let (_, j) = app
                .api(
                    &main.api_key,
                    reqwest::Method::GET,
                    &format!("/jobs/{id}/"),
                    None,
                )
                .await;
            matches!(j["status"].as_str(), Some("done" | "failed")).then_some(j)
        },
    )
    .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["total"].as_u64(), Some(pupils.len() as u64), "{done}");
    assert_eq!(done["result"]["count"].as_u64(), Some(pupils.len() as u64));
    for r in done["result"]["reports"].as_array().unwrap() {
        assert!(r["bytes"].as_u64().unwrap() < 50 * 1024, "{r}");
    }
    let combined = app
        .get(&local(done["result"]["combined"]["url"].as_str().unwrap()))
        .await;
    assert_eq!(combined.status(), 200);
    let pdf = combined.bytes().await.unwrap();
    if let Some(text) = pdf_text(&pdf) {
        assert_eq!(
            text.matches('\u{c}').count(),
            pupils.len(),
            "a page per student"
        );
        for p in &pupils {
            assert!(
                text.contains(&nfc(&students::full_name(p))),
                "{}",
                students::full_name(p)
            );
        }
    }
    app.stop().await.unwrap();
}

async fn a_demo_students_card_reads_back_and_other_schools_are_unreachable(v: Variant) {
    let Some((app, creds, ctx)) = demo_app(v).await else {
        return;
    };
    let db = &app.state.db;
    let north = tenancy::by_schema_name(db, &SchemaName::parse("demo-north").unwrap())
        .await
        .unwrap();
    let demo_student = &creds.tenants[0].students[0];
    let student = student_row(db, &ctx, &demo_student.student_id).await;
    let exam = calendar::released_exam_sessions(db, &ctx).await.unwrap()[0].clone();
    let c = reports::card_for(db, &ctx, &student, &exam)
        .await
        .unwrap()
        .expect("a card");
    assert_eq!(c.student_name, demo_student.name);
    assert!(!c.subjects.is_empty());
    let pdf = card::render(&c);
    // To look at it: CHATBOT_KEEP_CARD=/tmp/card.pdf cargo test --test reports
    if let Ok(path) = std::env::var("CHATBOT_KEEP_CARD") {
        std::fs::write(path, &pdf).unwrap();
    }
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.len() < 50 * 1024, "{} bytes", pdf.len());
    if let Some(text) = pdf_text(&pdf) {
        for expected in [
            "Greenfield Academy",
            "REPORT CARD",
            &demo_student.name,
            &demo_student.student_id,
            &demo_student.class,
            &exam.name,
            "Grading key",
            "Attendance",
        ] {
            assert!(
                text.contains(&nfc(expected)),
                "{expected:?} not in:\n{text}"
            );
        }
        for s in &c.subjects {
            assert!(text.contains(&nfc(&s.subject)), "{}", s.subject);
            assert!(text.contains(&s.total), "{}", s.total);
        }
    }

    // Another school's student or exam: no card.
    let north_student = &creds.tenants[1].students[0];
    let theirs = student_row(db, &north, &north_student.student_id).await;
    assert!(
        reports::card_for(db, &ctx, &theirs, &exam)
            .await
            .unwrap()
            .is_none()
    );
    let their_exam = calendar::released_exam_sessions(db, &north).await.unwrap()[0].clone();
    assert!(
        reports::card_for(db, &ctx, &student, &their_exam)
            .await
            .unwrap()
            .is_none()
    );
    app.stop().await.unwrap();
}

#[test]
fn names_in_any_latin_script_and_cyrillic_print_as_written() {
    let names = [
        "Chiamaka Ọ̀kọ̀ Adébáyọ̀",
        "Łukasz Żółkiewski-Nowak",
        "Дмитрий Иванович Смирнов",
        "Zoë Øvergård Ñúñez",
    ];
    for name in names {
        let c = card::Card {
            school: "Школа № 5 / Szkoła Podstawowa".into(),
            motto: Some("Знание — сила".into()),
            address: None,
            contact: None,
            student_name: name.into(),
            student_id: "X/2026/0001".into(),
            class: Some("5Б".into()),
            exam: "Итоговая аттестация".into(),
            term: "Third Term".into(),
            session: "2025/2026".into(),
            subjects: vec![card::SubjectLine {
                subject: "Русский язык".into(),
                ca: "28".into(),
                exam: "55".into(),
                total: "83".into(),
                grade: "A".into(),
                remark: "Отлично".into(),
            }],
            total: "83".into(),
            average: Some("83".into()),
            position: Some((1, 30)),
            attendance: None,
            remark: None,
            grading_key: reports::grading_key(),
            generated_on: "2026-11-23".into(),
        };
        let pdf = card::render(&c);
        assert!(pdf.len() < 50 * 1024);
        if let Some(text) = pdf_text(&pdf) {
            for expected in [name, "Школа № 5", "Русский язык", "Отлично", "5Б"]
            {
                assert!(
                    text.contains(&nfc(expected)),
                    "{expected:?} not in:\n{text}"
                );
            }
        }
    }
}

async fn the_cleanup_job_deletes_old_cards_only(v: Variant) {
    use chatbot::entities::report;
    use chatbot::pipeline::cleanup::CleanupJob;
    use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, Set};
    let Some((app, creds, ctx)) = demo_app(v).await else {
        return;
    };
    let db = &app.state.db;
    let exam = calendar::released_exam_sessions(db, &ctx).await.unwrap()[0].clone();
    let mut made = Vec::new();
    for s in creds.tenants[0].students.iter().take(2) {
        let student = student_row(db, &ctx, &s.student_id).await;
        made.push(
            reports::generate(app.state.reports(), &ctx, &student, &exam)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let path = |r: &report::Model| {
        app.settings()
            .reports_dir()
            .join(r.file_path.as_ref().unwrap())
    };
    let (old, recent) = (made[0].clone(), made[1].clone());
    assert!(path(&old).exists() && path(&recent).exists());
    let mut aged: report::ActiveModel = old.clone().into();
    aged.created_at = Set(chrono::Utc::now() - chrono::Duration::days(31));
    aged.update(db).await.unwrap();
    app.state
        .queue
        .push(CleanupJob {
            expired_before: None,
        })
        .await
        .unwrap();
    common::eventually(
        "the old card deleted",
        std::time::Duration::from_secs(30),
        || async {
            let left = ctx
                .find::<report::Entity>()
                .filter(report::Column::Id.eq(old.id))
                .one(db)
                .await
                .unwrap();
            left.is_none().then_some(())
        },
    )
    .await;
    assert!(!path(&old).exists(), "its file too");
    assert!(path(&recent).exists(), "a recent card stays");
    app.stop().await.unwrap();
}

#[test]
fn the_cli_renders_a_class_with_progress_and_cleans_up() {
    let bin = env!("CARGO_BIN_EXE_chatbot");
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("CHATBOT_DATA_DIR", data.path())
            .env("CHATBOT_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .output()
            .unwrap()
    };
    assert!(run(&["seed-demo"]).status.success());
    let o = run(&[
        "reports",
        "generate",
        "--tenant",
        "demo",
        "--exam",
        "Third Term Examination",
        "--class",
        "JSS 1A",
        "--combined",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() > 2, "{stdout}");
    assert!(lines.last().unwrap().starts_with("combined\t"), "{stdout}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("/files/reports/") && l.contains("sig=")),
        "{stdout}"
    );
    let cards = lines.len() - 1;
    assert!(
        stderr.contains(&format!("{cards}/{cards} cards")),
        "{stderr}"
    );
    let stored = |dir: &std::path::Path| {
        walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
            .count()
    };
    assert_eq!(stored(&data.path().join("reports")), cards + 1);

    for bad in [
        vec![
            "reports",
            "generate",
            "--tenant",
            "demo",
            "--exam",
            "No Such Exam",
            "--class",
            "JSS 1A",
        ],
        vec![
            "reports",
            "generate",
            "--tenant",
            "demo",
            "--exam",
            "Third Term Examination",
            "--class",
            "ZZZ",
        ],
        vec!["reports", "cleanup", "--older-than", "30x"],
    ] {
        let o = run(&bad);
        assert!(!o.status.success(), "{bad:?}");
    }
    let o = run(&["reports", "cleanup", "--older-than", "0s"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{} report(s)", cards + 1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stored(&data.path().join("reports")), 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
