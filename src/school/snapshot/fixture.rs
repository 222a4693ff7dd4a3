//! A small school built in memory, for table tests of the engine: no database.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use super::{Rows, SchoolSnapshot};
use crate::entities::{class, exam_session, notice, student, tenant, term};

/// A phone linked to two children (Tèmítọ́pẹ́ and Aminu).
pub const TWO_CHILDREN: &str = "+2348030000001";
/// A phone linked to one child (Chiamaka).
pub const ONE_CHILD: &str = "+2348030000002";
/// A phone linked to no child.
pub const STRANGER: &str = "+2348039999999";
/// Zainab's student ID; her parent's phone is not on file (PIN 4821).
pub const ZAINAB: &str = "GFA/2026/0050";

/// The time the fixture is seen at.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 10, 9, 0, 0).unwrap()
}

fn student(
    id: i64,
    sid: &str,
    first: &str,
    last: &str,
    class: i64,
    active: bool,
) -> student::Model {
    student::Model {
        id,
        tenant_id: 1,
        student_id: sid.to_string(),
        pin_hash: "not-kept".to_string(),
        first_name: first.to_string(),
        last_name: last.to_string(),
        other_names: None,
        gender: None,
        date_of_birth: None,
        class_id: Some(class),
        active,
        created_at: now(),
        updated_at: now(),
    }
}

fn notice(
    id: i64,
    title: &str,
    body: &str,
    audience: (&str, Option<&str>, Option<i64>),
    days: (i64, Option<i64>),
) -> notice::Model {
    notice::Model {
        id,
        tenant_id: 1,
        title: title.to_string(),
        body: body.to_string(),
        audience: audience.0.to_string(),
        audience_form: audience.1.map(str::to_string),
        audience_class_id: audience.2,
        publish_at: now() + Duration::days(days.0),
        expires_at: days.1.map(|d| now() + Duration::days(d)),
        created_at: now(),
        updated_at: now(),
    }
}

/// Grace Field Academy: two classes, four active students and one who left, two released
/// exam sessions, three terms of attendance, notices current, future, expired and for one class.
pub fn school() -> SchoolSnapshot {
    let profile = tenant::Model {
        id: 1,
        schema_name: "gfa".to_string(),
        name: "Grace Field Academy".to_string(),
        time_zone: "Africa/Lagos".to_string(),
        default_language: "en".to_string(),
        publish_position: true,
        address: Some("1 School Road, Ibadan".to_string()),
        contact_phone: Some("+2348000000100".to_string()),
        contact_email: Some("office@gracefield.example".to_string()),
        motto: Some("Knowledge and grace".to_string()),
        llm_daily_tokens: None,
        office_hours: None,
        menu_during_handoff: true,
        created_at: now(),
        updated_at: now(),
    };
    let class = |id: i64, name: &str, form: &str| class::Model {
        id,
        tenant_id: 1,
        name: name.to_string(),
        form: form.to_string(),
        level: 1,
        created_at: now(),
    };
    let exam = |id: i64, term_id: i64, name: &str, released: bool| exam_session::Model {
        id,
        tenant_id: 1,
        term_id,
        name: name.to_string(),
        released,
        released_at: released.then(now),
        created_at: now(),
    };
    let term = |id: i64, name: &str, starts: (i32, u32, u32)| term::Model {
        id,
        tenant_id: 1,
        academic_session_id: 1,
        name: name.to_string(),
        ordinal: 1,
        starts_on: NaiveDate::from_ymd_opt(starts.0, starts.1, starts.2).unwrap(),
        ends_on: NaiveDate::from_ymd_opt(starts.0, starts.1, starts.2).unwrap()
            + Duration::days(90),
        created_at: now(),
    };
    let mark = |exam: i64, student: i64, subject: i64, ca: f64, score: f64, grade: &str| {
        (
            exam,
            student,
            subject,
            Some(ca),
            Some(score),
            Some(ca + score),
            Some(grade.to_string()),
            None,
        )
    };
    let rows = Rows {
        welcome: Some("Welcome to Grace Field Academy's parent line.".to_string()),
        students: vec![
            student(1, "GFA/2026/0001", "Tèmítọ́pẹ́", "Adéyẹmí", 1, true),
            student(2, "GFA/2026/0002", "Aminu", "Bello", 2, true),
            student(3, "GFA/2026/0003", "Chiamaka", "Okafor", 1, true),
            student(4, "GFA/2025/0004", "Ngozi", "Eze", 1, false),
            student(50, ZAINAB, "Zainab", "Musa", 1, true),
        ],
        links: vec![
            (TWO_CHILDREN.to_string(), 1),
            (TWO_CHILDREN.to_string(), 2),
            (ONE_CHILD.to_string(), 3),
            (ONE_CHILD.to_string(), 4),
        ],
        classes: vec![class(1, "JSS 1A", "JSS 1"), class(2, "JSS 2B", "JSS 2")],
        subjects: vec![
            (1, "MTH".to_string(), "Mathematics".to_string()),
            (2, "ENG".to_string(), "English Language".to_string()),
        ],
        exams: vec![
            exam(11, 21, "Third Term Examination", true),
            exam(10, 20, "Second Term Examination", true),
        ],
        marks: vec![
            mark(11, 1, 1, 30.0, 50.0, "A"),
            mark(11, 1, 2, 25.0, 40.0, "B"),
            mark(11, 3, 1, 20.0, 30.0, "C"),
            mark(11, 3, 2, 28.0, 45.0, "A"),
            mark(11, 50, 1, 35.0, 55.0, "A"),
            mark(10, 1, 1, 20.0, 40.0, "B"),
            mark(10, 3, 1, 22.0, 41.0, "B"),
            mark(11, 2, 1, 10.0, 20.0, "F"),
        ],
        terms: vec![
            term(21, "Third Term", (2026, 4, 20)),
            term(20, "Second Term", (2026, 1, 5)),
            term(19, "First Term", (2025, 9, 8)),
        ],
        attendance: vec![
            (1, 21, "present".to_string(), 50),
            (1, 21, "absent".to_string(), 3),
            (1, 21, "late".to_string(), 2),
            (1, 20, "present".to_string(), 55),
            (3, 21, "present".to_string(), 60),
            (3, 20, "present".to_string(), 58),
            (3, 20, "absent".to_string(), 2),
            (2, 21, "present".to_string(), 40),
        ],
        notices: vec![
            notice(
                1,
                "Mid-term break",
                "Grace Field Academy closes for mid-term break on Friday; classes resume the following Wednesday.",
                ("school", None, None),
                (-3, Some(10)),
            ),
            notice(
                2,
                "Chemistry practical",
                "JSS 2B: bring lab coats on Tuesday.",
                ("class", None, Some(2)),
                (-2, None),
            ),
            notice(
                3,
                "Excursion to the museum",
                "JSS 1 visits the National Museum next Thursday.",
                ("form", Some("JSS 1"), None),
                (-1, Some(14)),
            ),
            notice(
                4,
                "Next term's fees",
                "The fees schedule will be shared after the PTA meeting.",
                ("school", None, None),
                (7, None),
            ),
            notice(
                5,
                "Sports day results",
                "Blue House won.",
                ("school", None, None),
                (-40, Some(-20)),
            ),
        ],
    };
    SchoolSnapshot::new(1, profile, rows)
}
