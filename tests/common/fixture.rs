//! A small school with a row in every tenant-owned table. Two of them built with different
//! `tag`s share natural keys (student ID, class name, subject codes, parent phone), so any
//! query that forgets its tenant filter returns the other school's rows.
#![allow(dead_code)]

use chatbot::crypto::{SealedColumn, SecretKey, api_key_from};
use chatbot::domain::SchemaName;
use chatbot::entities::*;
use chatbot::tenancy::{self, NewTenant, TenantCtx};
use chrono::{Duration, NaiveDate, Utc};
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};
use secrecy::ExposeSecret;

pub const STUDENT_ID: &str = "STU/001";
pub const SHARED_PHONE: &str = "+2348099990000";

pub struct School {
    pub ctx: TenantCtx,
    pub pin: String,
    pub api_key: String,
    pub phone_number_id: String,
    pub twilio_number: String,
    pub domain: String,
    pub student: student::Model,
    pub class_id: i64,
    pub term_id: i64,
    pub exam_id: i64,
    pub unreleased_exam_id: i64,
    pub maths_total: f64,
    pub subject_name: String,
    pub attendance_days: u32,
    pub welcome: String,
    pub notice_title: String,
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// Build a school; `n` (1, 2, ...) makes its values (scores, PIN, numbers) distinct.
pub async fn school(db: &DatabaseConnection, key: &SecretKey, slug: &str, n: u32) -> School {
    let now = Utc::now();
    let domain = format!("{slug}.school.test");
    let ctx = tenancy::create(
        db,
        NewTenant {
            schema_name: SchemaName::parse(slug).unwrap(),
            name: format!("{slug} school"),
            time_zone: "Africa/Lagos".into(),
            default_language: "en".into(),
            publish_position: true,
            address: None,
            contact_phone: None,
            contact_email: None,
            motto: None,
            domains: vec![domain.clone()],
        },
    )
    .await
    .unwrap();
    let t = ctx.id();
    let mut counter = n;
    let api = api_key_from(|| {
        counter = counter.wrapping_mul(1_103_515_245).wrapping_add(12345);
        counter
    });
    api_key::ActiveModel {
        tenant_id: Set(t),
        name: Set("test".into()),
        prefix: Set(api.prefix.clone()),
        key_hash: Set(api.hash.clone()),
        scopes: Set("admin".into()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let phone_number_id = format!("10000000000000{n}");
    let twilio_number = format!("+1555020000{n}");
    whatsapp_number::ActiveModel {
        tenant_id: Set(t),
        provider: Set("meta".into()),
        phone_number: Set(format!("+1555010000{n}")),
        phone_number_id: Set(Some(phone_number_id.clone())),
        app_secret: Set(Some(key.seal(
            SealedColumn::AppSecret,
            t,
            &format!("secret-{n}"),
        ))),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    whatsapp_number::ActiveModel {
        tenant_id: Set(t),
        provider: Set("twilio".into()),
        phone_number: Set(twilio_number.clone()),
        auth_token: Set(Some(key.seal(
            SealedColumn::AuthToken,
            t,
            &format!("token-{n}"),
        ))),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    whatsapp_contact::ActiveModel {
        tenant_id: Set(t),
        phone: Set(SHARED_PHONE.into()),
        opted_in: Set(true),
        last_seen_at: Set(Some(now)),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let session = academic_session::ActiveModel {
        tenant_id: Set(t),
        name: Set("2025/2026".into()),
        starts_on: Set(d(2025, 9, 8)),
        ends_on: Set(d(2026, 7, 24)),
        is_current: Set(true),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let term = term::ActiveModel {
        tenant_id: Set(t),
        academic_session_id: Set(session.id),
        name: Set("First Term".into()),
        ordinal: Set(1),
        starts_on: Set(d(2025, 9, 8)),
        ends_on: Set(d(2025, 12, 12)),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let class = class::ActiveModel {
        tenant_id: Set(t),
        name: Set("JSS 1A".into()),
        form: Set("JSS 1".into()),
        level: Set(1),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let pin = format!("{0}{0}{0}{0}", n);
    let student = student::ActiveModel {
        tenant_id: Set(t),
        student_id: Set(STUDENT_ID.into()),
        pin_hash: Set(key.hash_pin(&pin)),
        first_name: Set(format!("Ada{n}")),
        last_name: Set("Ọ̀kọ̀".into()),
        class_id: Set(Some(class.id)),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    student_mapping::ActiveModel {
        tenant_id: Set(t),
        phone: Set(SHARED_PHONE.into()),
        student_id: Set(student.id),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let subject_name = format!("Mathematics {n}");
    let subject = subject::ActiveModel {
        tenant_id: Set(t),
        code: Set("MTH".into()),
        name: Set(subject_name.clone()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let mut exams = Vec::new();
    for (name, released) in [("First Term Examination", true), ("Mid-Term Test", false)] {
        exams.push(
            exam_session::ActiveModel {
                tenant_id: Set(t),
                term_id: Set(term.id),
                name: Set(name.into()),
                released: Set(released),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap(),
        );
    }
    let maths_total = 50.0 + n as f64;
    for exam in &exams {
        mark::ActiveModel {
            tenant_id: Set(t),
            exam_session_id: Set(exam.id),
            student_id: Set(student.id),
            subject_id: Set(subject.id),
            ca_score: Set(Some(20.0)),
            exam_score: Set(Some(maths_total - 20.0)),
            total: Set(Some(maths_total)),
            grade: Set(Some("C".into())),
            remark: Set(Some("Good".into())),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let attendance_days = 3 + n;
    for i in 0..attendance_days {
        attendance::ActiveModel {
            tenant_id: Set(t),
            student_id: Set(student.id),
            term_id: Set(term.id),
            date: Set(d(2025, 9, 8) + Duration::days(i as i64)),
            status: Set(if i == 0 { "absent" } else { "present" }.into()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let notice_title = format!("Notice of {slug}");
    notice::ActiveModel {
        tenant_id: Set(t),
        title: Set(notice_title.clone()),
        body: Set("body".into()),
        audience: Set("school".into()),
        publish_at: Set(now - Duration::days(1)),
        expires_at: Set(Some(now + Duration::days(1))),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let welcome = format!("Welcome to {slug}!");
    welcome_message::ActiveModel {
        tenant_id: Set(t),
        body: Set(welcome.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let chat = chat_session(db, t, SHARED_PHONE, now - Duration::minutes(1)).await;
    message_log::ActiveModel {
        tenant_id: Set(t),
        chat_session_id: Set(Some(chat.id)),
        channel: Set("whatsapp".into()),
        direction: Set("in".into()),
        user_id: Set(SHARED_PHONE.into()),
        provider_message_id: Set(Some(format!("wamid.{slug}"))),
        kind: Set("text".into()),
        body: Set("hi".into()),
        status: Set("received".into()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    report::ActiveModel {
        tenant_id: Set(t),
        kind: Set("student".into()),
        student_id: Set(Some(student.id)),
        exam_session_id: Set(Some(exams[0].id)),
        status: Set("queued".into()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    School {
        ctx,
        pin,
        api_key: api.plaintext.expose_secret().to_string(),
        phone_number_id,
        twilio_number,
        domain,
        student,
        class_id: class.id,
        term_id: term.id,
        exam_id: exams[0].id,
        unreleased_exam_id: exams[1].id,
        maths_total,
        subject_name,
        attendance_days,
        welcome,
        notice_title,
    }
}

/// A chat session of `tenant_id` for `user_id` that expires at `expires_at`.
pub async fn chat_session(
    db: &DatabaseConnection,
    tenant_id: i64,
    user_id: &str,
    expires_at: chrono::DateTime<Utc>,
) -> chat_session::Model {
    let now = Utc::now();
    chat_session::ActiveModel {
        tenant_id: Set(tenant_id),
        channel: Set("whatsapp".into()),
        user_id: Set(user_id.into()),
        state: Set("main_menu".into()),
        data: Set(serde_json::json!({})),
        expires_at: Set(expires_at),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap()
}
