//! The demo schools: a realistic tenant (`demo`, about 300 students) and a small second one
//! (`demo-north`) that shares one parent's phone with the first.
//!
//! Everything is generated from a fixed seed, so the printed credentials are the same on every
//! run and can be printed again after the first seeding (PINs and keys are stored hashed).
//! The demo credentials are public: never run `--demo` against a production database.

mod data;

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate, Utc, Weekday};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set, TransactionTrait,
};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::crypto::{SecretKey, api_key_from};
use crate::domain::SchemaName;
use crate::entities::{
    academic_session, api_key, attendance, class, exam_session, mark, notice, student,
    student_mapping, subject, tenant, term, welcome_message, whatsapp_contact, whatsapp_number,
};
use crate::error::Result;
use crate::school::notices::audience;
use crate::tenancy::{self, NewTenant, TenantCtx};
use data::Rng;

/// A phone registered with both demo schools (a parent with a child in each).
pub const SHARED_PARENT_PHONE: &str = "+2348031234567";

/// The demo's shared platform number (Meta `phone_number_id`): one number for every demo
/// school, where the sender's phone picks the school. Owned by the first demo school, signed
/// with its app secret (one Meta app, several numbers).
pub const SHARED_NUMBER_ID: &str = "100000000000000";
/// Its display number.
pub const SHARED_NUMBER: &str = "+15550100000";

/// The school whose report catalogue `serve --demo` serves on the website chat by default.
pub const ENGAGEMENT_TENANT: &str = "demo";
/// The hash secret `serve --demo` uses when none is configured (public: demo only).
pub const REPORT_HASH_SECRET: &str = "demo-report-hash-secret-not-for-production";

/// Rows per multi-row INSERT (well under SQLite's bound-parameter limit).
const CHUNK: usize = 400;

/// What `seed-demo --json` prints.
#[derive(Debug, Serialize)]
pub struct DemoCredentials {
    /// `true` when this run created the schools, `false` when they already existed.
    pub created: bool,
    /// The demo schools.
    pub tenants: Vec<DemoTenant>,
    /// The shared platform number serving every demo school.
    pub shared_number: DemoSharedNumber,
}

/// A Meta number shared by several schools (see [`SHARED_NUMBER_ID`]).
#[derive(Debug, Serialize)]
pub struct DemoSharedNumber {
    /// Meta Cloud API `phone_number_id`.
    pub phone_number_id: String,
    /// Display number, E.164.
    pub display_phone_number: String,
    /// The school that owns it (its app secret signs the webhooks, its token sends).
    pub owner: String,
}

/// One demo school and how to reach it.
#[derive(Debug, Serialize)]
pub struct DemoTenant {
    /// Slug for `X-Schema-Name`.
    pub schema_name: String,
    /// School name.
    pub name: String,
    /// API key (`X-API-KEY`), all scopes.
    pub api_key: String,
    /// Domains that resolve to the school.
    pub domains: Vec<String>,
    /// WhatsApp business numbers and their secrets.
    pub whatsapp: DemoWhatsapp,
    /// Parents' phones and the students mapped to them.
    pub parents: Vec<DemoParent>,
    /// Students, with PINs in clear text (demo only).
    pub students: Vec<DemoStudent>,
}

impl DemoTenant {
    /// The first parent with exactly `n` children.
    pub fn parent_with_children(&self, n: usize) -> Option<&DemoParent> {
        self.parents.iter().find(|p| p.student_ids.len() == n)
    }

    /// Students with no phone on file: their parents verify with student ID + PIN.
    pub fn students_without_phone(&self) -> impl Iterator<Item = &DemoStudent> {
        self.students.iter().filter(|s| {
            !self
                .parents
                .iter()
                .any(|p| p.student_ids.contains(&s.student_id))
        })
    }

    /// A student by student ID.
    pub fn student(&self, student_id: &str) -> Option<&DemoStudent> {
        self.students.iter().find(|s| s.student_id == student_id)
    }
}

/// WhatsApp business numbers of a demo school.
#[derive(Debug, Serialize)]
pub struct DemoWhatsapp {
    /// Meta Cloud API `phone_number_id`.
    pub phone_number_id: String,
    /// Meta business number, E.164.
    pub display_phone_number: String,
    /// Meta app secret (signs webhooks).
    pub app_secret: String,
    /// Meta webhook verify token.
    pub verify_token: String,
    /// Meta Graph API access token (for sending).
    pub access_token: String,
    /// Twilio WhatsApp number, E.164.
    pub twilio_number: String,
    /// Twilio account SID.
    pub twilio_account_sid: String,
    /// Twilio auth token (signs webhooks).
    pub twilio_auth_token: String,
}

/// A parent's phone and their children.
#[derive(Debug, Serialize)]
pub struct DemoParent {
    /// E.164 phone.
    pub phone: String,
    /// Student IDs mapped to the phone.
    pub student_ids: Vec<String>,
}

/// A demo student.
#[derive(Debug, Serialize)]
pub struct DemoStudent {
    /// The school's student ID.
    pub student_id: String,
    /// PIN, in clear text only here.
    pub pin: String,
    /// Full name.
    pub name: String,
    /// Class name.
    pub class: String,
}

struct SchoolPlan {
    schema_name: &'static str,
    name: &'static str,
    id_prefix: &'static str,
    domain: &'static str,
    motto: &'static str,
    address: &'static str,
    /// (form, level, class names)
    classes: &'static [(&'static str, i16, &'static [&'static str])],
    students_per_class: usize,
    subjects: usize,
    /// Index of the student whose parent uses [`SHARED_PARENT_PHONE`].
    shared_parent_student: usize,
    /// First digits of parents' phones.
    phone_base: u64,
    meta_number: &'static str,
    twilio_number: &'static str,
    full_calendar: bool,
    /// Its website's report catalogue (`prompts/engagement/<slug>.yaml`).
    engagement_reports: &'static [&'static str],
}

const PLANS: &[SchoolPlan] = &[
    SchoolPlan {
        schema_name: "demo",
        name: "Greenfield Academy",
        id_prefix: "GFA",
        domain: "demo.localhost",
        motto: "Knowledge, Character, Service",
        address: "14 Adeola Odeku Street, Victoria Island, Lagos",
        classes: &[
            ("JSS 1", 1, &["JSS 1A", "JSS 1B"]),
            ("JSS 2", 2, &["JSS 2A", "JSS 2B"]),
            ("JSS 3", 3, &["JSS 3A", "JSS 3B"]),
            ("SS 1", 4, &["SS 1A", "SS 1B"]),
            ("SS 2", 5, &["SS 2A", "SS 2B"]),
            ("SS 3", 6, &["SS 3A", "SS 3B"]),
        ],
        students_per_class: 25,
        subjects: 10,
        shared_parent_student: 2,
        phone_base: 2_348_030_000_000,
        meta_number: "+15550100001",
        twilio_number: "+15550100002",
        full_calendar: true,
        engagement_reports: &["newjob", "love"],
    },
    SchoolPlan {
        schema_name: "demo-north",
        name: "Northbridge College",
        id_prefix: "NBC",
        domain: "north.localhost",
        motto: "Strive to Excel",
        address: "3 Ahmadu Bello Way, Kaduna",
        classes: &[("SS 1", 4, &["SS 1 Gold", "SS 1 Blue"])],
        students_per_class: 15,
        subjects: 6,
        shared_parent_student: 0,
        phone_base: 2_348_060_000_000,
        meta_number: "+15550100011",
        twilio_number: "+15550100012",
        full_calendar: false,
        engagement_reports: &["love"],
    },
];

struct PlannedStudent {
    student_id: String,
    pin: String,
    first: &'static str,
    last: &'static str,
    other: Option<&'static str>,
    gender: &'static str,
    class_idx: usize,
    parent: Option<String>,
    ability: f64,
}

struct Generated {
    credentials: DemoTenant,
    api_key_hash: String,
    api_key_prefix: String,
    students: Vec<PlannedStudent>,
    class_names: Vec<(String, String, i16)>,
}

fn generate(plan: &SchoolPlan) -> Generated {
    let mut rng = Rng::from_label(plan.schema_name);
    let key = api_key_from(|| rng.next_u64() as u32);
    let whatsapp = DemoWhatsapp {
        phone_number_id: format!("1{:014}", rng.range(0, 99_999_999_999_999)),
        display_phone_number: plan.meta_number.to_string(),
        app_secret: rng.hex(16),
        verify_token: format!("verify-{}", rng.hex(8)),
        access_token: format!("demo-access-{}", rng.hex(16)),
        twilio_number: plan.twilio_number.to_string(),
        twilio_account_sid: format!("AC{}", rng.hex(16)),
        twilio_auth_token: rng.hex(16),
    };
    let class_names: Vec<(String, String, i16)> = plan
        .classes
        .iter()
        .flat_map(|(form, level, names)| {
            names
                .iter()
                .map(move |n| (n.to_string(), form.to_string(), *level))
        })
        .collect();
    let mut students = Vec::new();
    let mut next_phone = plan.phone_base + 1;
    for (class_idx, (_, _, level)) in class_names.iter().enumerate() {
        for _ in 0..plan.students_per_class {
            let n = students.len();
            let (first, gender) = *rng.pick(data::FIRST_NAMES);
            let admitted = 2026 - (*level as i32 - 1);
            let other = (rng.range(0, 3) == 0).then(|| *rng.pick(data::OTHER_NAMES));
            // Every twelfth student has no phone on file and must verify with ID + PIN.
            let parent = if n == plan.shared_parent_student {
                Some(SHARED_PARENT_PHONE.to_string())
            } else if n % 12 == 11 {
                None
            } else {
                next_phone += 1;
                Some(format!("+{next_phone}"))
            };
            students.push(PlannedStudent {
                student_id: format!("{}/{admitted}/{:04}", plan.id_prefix, n + 1),
                pin: format!("{:04}", rng.range(1000, 9999)),
                first,
                last: rng.pick::<&str>(data::LAST_NAMES),
                other,
                gender,
                class_idx,
                parent,
                ability: rng.range(30, 92) as f64,
            });
        }
    }
    // Siblings: the first student of each class shares a parent with the second student of the
    // next class, so those parents have two children in different classes.
    let per = plan.students_per_class;
    for c in 0..class_names.len().saturating_sub(1) {
        let (a, b) = (c * per, (c + 1) * per + 1);
        if a != plan.shared_parent_student && b != plan.shared_parent_student && b < students.len()
        {
            let phone = students[a].parent.clone();
            if phone.is_some() {
                students[b].parent = phone;
            }
        }
    }

    let mut parents: Vec<DemoParent> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for s in &students {
        if let Some(p) = &s.parent {
            let i = *index.entry(p.clone()).or_insert_with(|| {
                parents.push(DemoParent {
                    phone: p.clone(),
                    student_ids: Vec::new(),
                });
                parents.len() - 1
            });
            parents[i].student_ids.push(s.student_id.clone());
        }
    }
    let credentials = DemoTenant {
        schema_name: plan.schema_name.to_string(),
        name: plan.name.to_string(),
        api_key: key.plaintext.expose_secret().to_string(),
        domains: vec![plan.domain.to_string()],
        whatsapp,
        parents,
        students: students
            .iter()
            .map(|s| DemoStudent {
                student_id: s.student_id.clone(),
                pin: s.pin.clone(),
                name: full_name(s),
                class: class_names[s.class_idx].0.clone(),
            })
            .collect(),
    };
    Generated {
        credentials,
        api_key_hash: key.hash,
        api_key_prefix: key.prefix,
        students,
        class_names,
    }
}

fn full_name(s: &PlannedStudent) -> String {
    match s.other {
        Some(o) => format!("{} {} {}", s.first, o, s.last),
        None => format!("{} {}", s.first, s.last),
    }
}

/// `true` when no tenant exists yet.
pub async fn database_is_empty(db: &DatabaseConnection) -> Result<bool> {
    Ok(tenant::Entity::find().one(db).await?.is_none())
}

/// Create the demo schools unless they exist; either way return their credentials.
pub async fn seed(db: &DatabaseConnection, key: &SecretKey) -> Result<DemoCredentials> {
    let mut created = false;
    let mut tenants = Vec::new();
    for plan in PLANS {
        let generated = generate(plan);
        let exists = tenancy::by_schema_name(db, &SchemaName::parse(plan.schema_name)?)
            .await
            .is_ok();
        if !exists {
            let txn = db.begin().await?;
            insert_school(&txn, key, plan, &generated).await?;
            txn.commit().await?;
            created = true;
            tracing::info!(
                tenant = plan.schema_name,
                students = generated.students.len(),
                "demo school created"
            );
        }
        tenants.push(generated.credentials);
    }
    Ok(DemoCredentials {
        created,
        tenants,
        shared_number: DemoSharedNumber {
            phone_number_id: SHARED_NUMBER_ID.to_string(),
            display_phone_number: SHARED_NUMBER.to_string(),
            owner: PLANS[0].schema_name.to_string(),
        },
    })
}

/// Remove the demo schools and everything they own.
pub async fn remove(db: &DatabaseConnection) -> Result<()> {
    for plan in PLANS {
        if let Ok(ctx) = tenancy::by_schema_name(db, &SchemaName::parse(plan.schema_name)?).await {
            tenancy::delete(db, ctx).await?;
        }
    }
    Ok(())
}

async fn insert_many<A, C>(db: &C, rows: Vec<A>) -> Result<()>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(CHUNK).collect();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid calendar date")
}

fn school_days(from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    from.iter_days()
        .take_while(move |d| *d <= to)
        .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
}

async fn insert_school(
    db: &impl ConnectionTrait,
    key: &SecretKey,
    plan: &SchoolPlan,
    g: &Generated,
) -> Result<()> {
    let now = Utc::now();
    let ctx = tenancy::create(
        db,
        NewTenant {
            schema_name: SchemaName::parse(plan.schema_name)?,
            name: plan.name.to_string(),
            time_zone: "Africa/Lagos".to_string(),
            default_language: "en".to_string(),
            publish_position: true,
            address: Some(plan.address.to_string()),
            contact_phone: Some("+2348000000000".to_string()),
            contact_email: Some(format!("office@{}", plan.domain)),
            motto: Some(plan.motto.to_string()),
            domains: vec![plan.domain.to_string()],
        },
    )
    .await?;
    let tid = ctx.id();

    api_key::ActiveModel {
        tenant_id: Set(tid),
        name: Set("demo".to_string()),
        prefix: Set(g.api_key_prefix.clone()),
        key_hash: Set(g.api_key_hash.clone()),
        scopes: Set("admin".to_string()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;

    let wa = &g.credentials.whatsapp;
    use crate::crypto::SealedColumn::{AccessToken, AppSecret, AuthToken, VerifyToken};
    whatsapp_number::ActiveModel {
        tenant_id: Set(tid),
        provider: Set("meta".to_string()),
        phone_number: Set(wa.display_phone_number.clone()),
        phone_number_id: Set(Some(wa.phone_number_id.clone())),
        app_secret: Set(Some(key.seal(AppSecret, tid, &wa.app_secret))),
        verify_token: Set(Some(key.seal(VerifyToken, tid, &wa.verify_token))),
        access_token: Set(Some(key.seal(AccessToken, tid, &wa.access_token))),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    whatsapp_number::ActiveModel {
        tenant_id: Set(tid),
        provider: Set("twilio".to_string()),
        phone_number: Set(wa.twilio_number.clone()),
        account_sid: Set(Some(wa.twilio_account_sid.clone())),
        auth_token: Set(Some(key.seal(AuthToken, tid, &wa.twilio_auth_token))),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    if plan.schema_name == PLANS[0].schema_name {
        whatsapp_number::ActiveModel {
            tenant_id: Set(tid),
            provider: Set("meta".to_string()),
            phone_number: Set(SHARED_NUMBER.to_string()),
            phone_number_id: Set(Some(SHARED_NUMBER_ID.to_string())),
            app_secret: Set(Some(key.seal(AppSecret, tid, &wa.app_secret))),
            access_token: Set(Some(key.seal(AccessToken, tid, &wa.access_token))),
            shared: Set(true),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }

    // Calendar: last session's second and third terms (released exams), and the current
    // session's first term (attendance so far, an unreleased mid-term test).
    let last = academic_session::ActiveModel {
        tenant_id: Set(tid),
        name: Set("2025/2026".to_string()),
        starts_on: Set(date(2025, 9, 8)),
        ends_on: Set(date(2026, 7, 24)),
        is_current: Set(false),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let current = academic_session::ActiveModel {
        tenant_id: Set(tid),
        name: Set("2026/2027".to_string()),
        starts_on: Set(date(2026, 9, 7)),
        ends_on: Set(date(2027, 7, 23)),
        is_current: Set(true),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let term_rows = [
        (
            last.id,
            "First Term",
            1,
            date(2025, 9, 8),
            date(2025, 12, 12),
        ),
        (
            last.id,
            "Second Term",
            2,
            date(2026, 1, 5),
            date(2026, 4, 2),
        ),
        (
            last.id,
            "Third Term",
            3,
            date(2026, 4, 20),
            date(2026, 7, 24),
        ),
        (
            current.id,
            "First Term",
            1,
            date(2026, 9, 7),
            date(2026, 12, 11),
        ),
    ];
    let mut terms = Vec::new();
    for (session_id, name, ordinal, starts, ends) in term_rows {
        terms.push(
            term::ActiveModel {
                tenant_id: Set(tid),
                academic_session_id: Set(session_id),
                name: Set(name.to_string()),
                ordinal: Set(ordinal),
                starts_on: Set(starts),
                ends_on: Set(ends),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?,
        );
    }
    let mut exams: Vec<(exam_session::Model, f64)> = Vec::new();
    let exam_rows: &[(usize, &str, bool, f64)] = if plan.full_calendar {
        &[
            (1, "Second Term Examination", true, 0.0),
            (2, "Third Term Examination", true, 3.0),
            (3, "First Term Mid-Term Test", false, 1.0),
        ]
    } else {
        &[(2, "Third Term Examination", true, 0.0)]
    };
    for (term_idx, name, released, drift) in exam_rows {
        let model = exam_session::ActiveModel {
            tenant_id: Set(tid),
            term_id: Set(terms[*term_idx].id),
            name: Set(name.to_string()),
            released: Set(*released),
            released_at: Set(released.then_some(now)),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
        exams.push((model, *drift));
    }

    let mut classes = Vec::new();
    for (name, form, level) in &g.class_names {
        classes.push(
            class::ActiveModel {
                tenant_id: Set(tid),
                name: Set(name.clone()),
                form: Set(form.clone()),
                level: Set(*level),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?,
        );
    }
    let mut subjects = Vec::new();
    for (code, name) in data::SUBJECTS.iter().take(plan.subjects) {
        subjects.push(
            subject::ActiveModel {
                tenant_id: Set(tid),
                code: Set(code.to_string()),
                name: Set(name.to_string()),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?,
        );
    }

    insert_many(
        db,
        g.students
            .iter()
            .map(|s| student::ActiveModel {
                tenant_id: Set(tid),
                student_id: Set(s.student_id.clone()),
                pin_hash: Set(key.hash_pin(&s.pin)),
                first_name: Set(s.first.to_string()),
                last_name: Set(s.last.to_string()),
                other_names: Set(s.other.map(str::to_string)),
                gender: Set(Some(s.gender.to_string())),
                date_of_birth: Set(None),
                class_id: Set(Some(classes[s.class_idx].id)),
                active: Set(true),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            })
            .collect(),
    )
    .await?;
    let pks: HashMap<String, i64> = ctx
        .find::<student::Entity>()
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.student_id, s.id))
        .collect();
    let pk = |s: &PlannedStudent| pks[&s.student_id];

    let mut contacts: Vec<&str> = g
        .students
        .iter()
        .filter_map(|s| s.parent.as_deref())
        .collect();
    contacts.sort_unstable();
    contacts.dedup();
    insert_many(
        db,
        contacts
            .iter()
            .map(|phone| whatsapp_contact::ActiveModel {
                tenant_id: Set(tid),
                phone: Set(phone.to_string()),
                opted_in: Set(true),
                // Demo parents have written to their schools before.
                last_seen_at: Set(Some(now)),
                created_at: Set(now),
                ..Default::default()
            })
            .collect(),
    )
    .await?;
    insert_many(
        db,
        g.students
            .iter()
            .filter_map(|s| {
                Some(student_mapping::ActiveModel {
                    tenant_id: Set(tid),
                    phone: Set(s.parent.clone()?),
                    student_id: Set(pk(s)),
                    relationship: Set(Some("parent".to_string())),
                    created_at: Set(now),
                    ..Default::default()
                })
            })
            .collect(),
    )
    .await?;

    let mut rng = Rng::from_label(&format!("{}/marks", plan.schema_name));
    let mut marks = Vec::new();
    for (exam, drift) in &exams {
        for s in &g.students {
            for subj in &subjects {
                let noise = rng.range(0, 30) as f64 - 15.0;
                let target = (s.ability + drift + noise).clamp(12.0, 98.0);
                let ca = (target * 0.4).round().min(40.0);
                let exam_score = (target - ca).round().clamp(0.0, 60.0);
                let total = ca + exam_score;
                let (grade, remark) = crate::school::results::grade(total);
                marks.push(mark::ActiveModel {
                    tenant_id: Set(tid),
                    exam_session_id: Set(exam.id),
                    student_id: Set(pk(s)),
                    subject_id: Set(subj.id),
                    ca_score: Set(Some(ca)),
                    exam_score: Set(Some(exam_score)),
                    total: Set(Some(total)),
                    grade: Set(Some(grade.to_string())),
                    remark: Set(Some(remark.to_string())),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
            }
        }
    }
    insert_many(db, marks).await?;

    let attendance_terms: Vec<(&term::Model, NaiveDate)> = if plan.full_calendar {
        vec![
            (&terms[2], terms[2].ends_on),
            (&terms[3], date(2026, 11, 20)),
        ]
    } else {
        vec![(&terms[3], date(2026, 11, 20))]
    };
    let mut rows = Vec::new();
    for s in &g.students {
        let absent_pct = rng.range(0, 10);
        let late_pct = rng.range(0, 8);
        for (t, until) in &attendance_terms {
            for day in school_days(t.starts_on, *until) {
                let roll = rng.range(0, 99);
                let status = if roll < absent_pct {
                    "absent"
                } else if roll < absent_pct + late_pct {
                    "late"
                } else {
                    "present"
                };
                rows.push(attendance::ActiveModel {
                    tenant_id: Set(tid),
                    student_id: Set(pk(s)),
                    term_id: Set(t.id),
                    date: Set(day),
                    status: Set(status.to_string()),
                    created_at: Set(now),
                    ..Default::default()
                });
            }
        }
    }
    insert_many(db, rows).await?;

    insert_notices(db, &ctx, plan, &classes).await?;

    welcome_message::ActiveModel {
        tenant_id: Set(tid),
        body: Set(format!(
            "Welcome to {}! I can show your child's results, attendance and school notices, \
             and send you their report card. Reply MENU at any time.",
            plan.name
        )),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;

    for slug in plan.engagement_reports {
        let script = crate::channels::engagement::catalogue::built_in(slug)?;
        crate::channels::engagement::catalogue::insert(db, &ctx, slug, &script, true).await?;
    }
    Ok(())
}

struct NoticeSeed {
    title: &'static str,
    body: String,
    audience: &'static str,
    form: Option<String>,
    class_id: Option<i64>,
    publish_at: chrono::DateTime<Utc>,
    expires_at: Option<chrono::DateTime<Utc>>,
}

async fn insert_notices(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    plan: &SchoolPlan,
    classes: &[class::Model],
) -> Result<()> {
    let now = Utc::now();
    let day = Duration::days(1);
    let first_class = &classes[0];
    let last_class = &classes[classes.len() - 1];
    let school = |title, body, publish_at, expires_at| NoticeSeed {
        title,
        body,
        audience: audience::SCHOOL,
        form: None,
        class_id: None,
        publish_at,
        expires_at,
    };
    let rows = vec![
        school(
            "Mid-term break",
            format!(
                "{} closes for mid-term break on Friday; classes resume the following Wednesday.",
                plan.name
            ),
            now - day * 3,
            Some(now + day * 10),
        ),
        school(
            "Inter-house sports results",
            "Blue House won the inter-house sports. Thank you to every parent who came."
                .to_string(),
            now - day * 40,
            Some(now - day * 20),
        ),
        NoticeSeed {
            title: "Excursion to the National Museum",
            body: format!(
                "{} students visit the National Museum next Thursday. Consent forms are due Monday.",
                first_class.form
            ),
            audience: audience::FORM,
            form: Some(first_class.form.clone()),
            class_id: None,
            publish_at: now - day,
            expires_at: Some(now + day * 14),
        },
        NoticeSeed {
            title: "Chemistry practical",
            body: format!(
                "{}: bring lab coats on Tuesday for the chemistry practical.",
                last_class.name
            ),
            audience: audience::CLASS,
            form: None,
            class_id: Some(last_class.id),
            publish_at: now - day * 2,
            expires_at: None,
        },
        school(
            "Next term's fees schedule",
            "The fees schedule for next term will be shared after the PTA meeting.".to_string(),
            now + day * 7,
            None,
        ),
    ];
    for NoticeSeed {
        title,
        body,
        audience: aud,
        form,
        class_id,
        publish_at,
        expires_at,
    } in rows
    {
        notice::ActiveModel {
            tenant_id: Set(ctx.id()),
            title: Set(title.to_string()),
            body: Set(body),
            audience: Set(aud.to_string()),
            audience_form: Set(form),
            audience_class_id: Set(class_id),
            publish_at: Set(publish_at),
            expires_at: Set(expires_at),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// Human-readable summary of the credentials, for `serve --demo` and `seed-demo`.
pub fn describe(creds: &DemoCredentials, base_url: &str) -> String {
    let mut out = String::new();
    out.push_str(if creds.created {
        "Demo schools created (public demo credentials: never use --demo in production).\n"
    } else {
        "Demo schools already present (public demo credentials: never use --demo in production).\n"
    });
    for t in &creds.tenants {
        out.push_str(&format!(
            "\n  {} (X-Schema-Name: {})\n    X-API-KEY:        {}\n    students:         {}\n    Meta number:      {} (phone_number_id {}, verify token {}, app secret {})\n    Twilio number:    {} (auth token {})\n",
            t.name,
            t.schema_name,
            t.api_key,
            t.students.len(),
            t.whatsapp.display_phone_number,
            t.whatsapp.phone_number_id,
            t.whatsapp.verify_token,
            t.whatsapp.app_secret,
            t.whatsapp.twilio_number,
            t.whatsapp.twilio_auth_token,
        ));
        if let Some(two) = t.parent_with_children(2) {
            out.push_str(&format!(
                "    parent, 2 children: {} -> {}\n",
                two.phone,
                two.student_ids.join(", ")
            ));
        }
        if let Some(s) = t.students_without_phone().next() {
            out.push_str(&format!(
                "    verify by ID+PIN:   {} / PIN {} ({}, {})\n",
                s.student_id, s.pin, s.name, s.class
            ));
        }
    }
    out.push_str(&format!(
        "\n  Parent in both schools: {SHARED_PARENT_PHONE}\n  Shared number (every school; the sender's phone picks): {} (phone_number_id {}, signed with {}'s app secret)\n  Full list: chatbot seed-demo --json\n  API docs:  {base_url}/docs\n  Website chat (demo school's reports newjob, love): {base_url}/api/chatbot-demo/engagement/newjob/\n",
        creds.shared_number.display_phone_number,
        creds.shared_number.phone_number_id,
        creds.shared_number.owner,
    ));
    out
}

/// Student IDs of the shared parent, per school (used by tests and evals).
pub fn shared_parent_children(creds: &DemoCredentials) -> Vec<(String, Vec<String>)> {
    creds
        .tenants
        .iter()
        .filter_map(|t| {
            t.parents
                .iter()
                .find(|p| p.phone == SHARED_PARENT_PHONE)
                .map(|p| (t.schema_name.clone(), p.student_ids.clone()))
        })
        .collect()
}
