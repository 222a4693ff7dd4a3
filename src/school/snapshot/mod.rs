//! One school's data as the conversation reads it, loaded once and shared ([`SchoolSnapshot`]):
//! the profile and welcome message, students and the phones linked to them, classes, the
//! newest released exam sessions with every student's marks and class position, attendance
//! summaries per term, and the notices. The engine and the LLM context read only this, so a
//! turn does no database read of school data; [`cache::SnapshotCache`] keeps one per school and
//! replaces it when the school's data version ([`load::version`]) moves.
//!
//! A snapshot is built from one school's rows only, through its [`TenantCtx`](crate::tenancy::TenantCtx):
//! nothing of another school can be in it.

pub mod cache;
#[cfg(test)]
pub mod fixture;
pub mod load;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::conversation::input::{canonical_id, id_example};
use crate::domain::PhoneNumber;
use crate::entities::{class, exam_session, notice, student, tenant, term};
use crate::school::attendance::AttendanceSummary;
use crate::school::notices::audience;
use crate::school::results::{StudentResults, SubjectResult};

/// Most choices offered in one list (WhatsApp's limit): released exam sessions and attendance
/// terms kept per school and student.
pub const MAX_ROWS: usize = 10;

/// A student as the conversation shows them.
#[derive(Debug, Clone)]
pub struct Child {
    /// The row.
    pub model: student::Model,
    /// Full name.
    pub name: String,
    /// Class name, if any.
    pub class: Option<String>,
}

/// One mark of one student in one exam session; texts shared between marks.
#[derive(Debug, Clone)]
struct MarkLine {
    subject: i64,
    ca: Option<f64>,
    exam: Option<f64>,
    total: Option<f64>,
    grade: Option<Arc<str>>,
    remark: Option<Arc<str>>,
}

/// The rows a snapshot is made of (see [`load::load`]).
#[derive(Debug, Default)]
pub struct Rows {
    /// The school's welcome message.
    pub welcome: Option<String>,
    /// Every student, active or not.
    pub students: Vec<student::Model>,
    /// (phone, student primary key) of every phone link.
    pub links: Vec<(String, i64)>,
    /// Every class.
    pub classes: Vec<class::Model>,
    /// (id, code, name) of every subject.
    pub subjects: Vec<(i64, String, String)>,
    /// Released exam sessions, newest first.
    pub exams: Vec<exam_session::Model>,
    /// Marks of those sessions: (exam, student, subject, ca, exam score, total, grade, remark).
    #[allow(clippy::type_complexity)]
    pub marks: Vec<(
        i64,
        i64,
        i64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<String>,
        Option<String>,
    )>,
    /// Every term, newest first.
    pub terms: Vec<term::Model>,
    /// (student, term, status, days) counts of attendance.
    pub attendance: Vec<(i64, i64, String, i64)>,
    /// Every notice, newest publication first.
    pub notices: Vec<notice::Model>,
}

/// One school's data, read-only (see the module documentation).
#[derive(Debug)]
pub struct SchoolSnapshot {
    version: i64,
    profile: tenant::Model,
    welcome: Option<String>,
    children: HashMap<i64, Child>,
    by_student_id: HashMap<String, i64>,
    roster: Vec<(String, String)>,
    links: HashMap<String, Vec<i64>>,
    classes: HashMap<i64, class::Model>,
    id_samples: Vec<String>,
    exams: Vec<exam_session::Model>,
    subjects: HashMap<i64, (Arc<str>, Arc<str>)>,
    marks: HashMap<(i64, i64), Vec<MarkLine>>,
    positions: HashMap<(i64, i64), (u32, u32)>,
    terms: Vec<term::Model>,
    attendance: HashMap<(i64, i64), AttendanceSummary>,
    attendance_terms: HashMap<i64, Vec<i64>>,
    notices: Vec<notice::Model>,
    heap: usize,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl SchoolSnapshot {
    /// Build from one school's rows, labelled with the data version they were read at.
    pub fn new(version: i64, profile: tenant::Model, rows: Rows) -> Self {
        let classes: HashMap<i64, class::Model> =
            rows.classes.into_iter().map(|c| (c.id, c)).collect();
        let roster = rows
            .students
            .iter()
            .map(|s| (crate::school::students::full_name(s), s.student_id.clone()))
            .collect();
        // The newest students' IDs show the format typed IDs are read in.
        let mut by_newest: Vec<&student::Model> = rows.students.iter().collect();
        by_newest.sort_by_key(|s| std::cmp::Reverse(s.id));
        let id_samples = by_newest
            .iter()
            .take(200)
            .map(|s| s.student_id.clone())
            .collect();
        let class_of: HashMap<i64, Option<i64>> =
            rows.students.iter().map(|s| (s.id, s.class_id)).collect();
        let mut children = HashMap::new();
        let mut by_student_id = HashMap::new();
        for mut model in rows.students.into_iter().filter(|s| s.active) {
            // PINs are checked in the database, never against a copy.
            model.pin_hash = String::new();
            by_student_id.insert(model.student_id.clone(), model.id);
            let class = model
                .class_id
                .and_then(|id| classes.get(&id))
                .map(|c| c.name.clone());
            let name = crate::school::students::full_name(&model);
            children.insert(model.id, Child { model, name, class });
        }
        let mut links: HashMap<String, Vec<i64>> = HashMap::new();
        for (phone, pk) in rows.links {
            if children.contains_key(&pk) {
                let list = links.entry(phone).or_default();
                if !list.contains(&pk) {
                    list.push(pk);
                }
            }
        }
        for list in links.values_mut() {
            list.sort_by(|a, b| {
                let (a, b) = (&children[a].model, &children[b].model);
                a.first_name.cmp(&b.first_name).then(a.id.cmp(&b.id))
            });
        }
        let subjects = rows
            .subjects
            .into_iter()
            .map(|(id, code, name)| (id, (Arc::from(code), Arc::from(name))))
            .collect();
        let mut exams = rows.exams;
        exams.truncate(MAX_ROWS);
        // Marks, with grades and remarks shared: a school has few distinct ones.
        let mut texts: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |s: Option<String>| {
            s.map(|s| {
                texts
                    .entry(s)
                    .or_insert_with_key(|k| Arc::from(k.as_str()))
                    .clone()
            })
        };
        let mut marks: HashMap<(i64, i64), Vec<MarkLine>> = HashMap::new();
        for (exam, student, subject, ca, exam_score, total, grade, remark) in rows.marks {
            if !exams.iter().any(|e| e.id == exam) {
                continue;
            }
            marks.entry((student, exam)).or_default().push(MarkLine {
                subject,
                ca,
                exam: exam_score,
                total,
                grade: intern(grade),
                remark: intern(remark),
            });
        }
        // Class positions: every classmate with marks in the session (active or not), ranked
        // by the sum of their totals, as `results::for_student` ranks them.
        let mut class_totals: HashMap<(i64, i64), Vec<f64>> = HashMap::new();
        let mut totals: HashMap<(i64, i64), f64> = HashMap::new();
        for ((student, exam), lines) in &marks {
            let total: f64 = lines.iter().map(|m| m.total.unwrap_or(0.0)).sum();
            totals.insert((*student, *exam), total);
            if let Some(Some(class)) = class_of.get(student) {
                class_totals.entry((*class, *exam)).or_default().push(total);
            }
        }
        let mut positions = HashMap::new();
        if profile.publish_position {
            for ((student, exam), mine) in &totals {
                if let Some(Some(class)) = class_of.get(student)
                    && let Some(all) = class_totals.get(&(*class, *exam))
                {
                    let better = all.iter().filter(|t| **t > *mine).count() as u32;
                    positions.insert((*student, *exam), (better + 1, all.len() as u32));
                }
            }
        }
        let mut attendance: HashMap<(i64, i64), AttendanceSummary> = HashMap::new();
        for (student, term, status, days) in rows.attendance {
            let a = attendance
                .entry((student, term))
                .or_insert(AttendanceSummary {
                    present: 0,
                    absent: 0,
                    late: 0,
                    days: 0,
                    percentage: None,
                });
            let days = u32::try_from(days).unwrap_or(u32::MAX);
            match status.as_str() {
                "present" => a.present += days,
                "absent" => a.absent += days,
                "late" => a.late += days,
                _ => {}
            }
            a.days += days;
        }
        let mut attendance_terms: HashMap<i64, Vec<i64>> = HashMap::new();
        for ((student, term), a) in attendance.iter_mut() {
            a.percentage = (a.days > 0)
                .then(|| ((a.present + a.late) as f64 * 1000.0 / a.days as f64).round() / 10.0);
            attendance_terms.entry(*student).or_default().push(*term);
        }
        let order: HashMap<i64, usize> = rows
            .terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        for list in attendance_terms.values_mut() {
            list.retain(|t| order.contains_key(t));
            list.sort_by_key(|t| order[t]);
            list.truncate(MAX_ROWS);
        }
        let mut snapshot = Self {
            version,
            profile,
            welcome: rows.welcome,
            children,
            by_student_id,
            roster,
            links,
            classes,
            id_samples,
            exams,
            subjects,
            marks,
            positions,
            terms: rows.terms,
            attendance,
            attendance_terms,
            notices: rows.notices,
            heap: 0,
        };
        snapshot.heap = snapshot.measure();
        snapshot
    }

    /// The school's data version it was built at.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The school's profile.
    pub fn profile(&self) -> &tenant::Model {
        &self.profile
    }

    /// The school's primary key.
    pub fn school_id(&self) -> i64 {
        self.profile.id
    }

    /// The school's welcome message.
    pub fn welcome(&self) -> Option<&str> {
        self.welcome.as_deref()
    }

    /// An active student by primary key.
    pub fn student(&self, pk: i64) -> Option<&Child> {
        self.children.get(&pk)
    }

    /// An active student by the school's student ID (canonical).
    pub fn by_student_id(&self, id: &str) -> Option<&Child> {
        self.by_student_id
            .get(id)
            .and_then(|pk| self.children.get(pk))
    }

    /// Active students linked to `phone`, by first name.
    pub fn linked(&self, phone: &PhoneNumber) -> Vec<&Child> {
        self.links
            .get(phone.as_str())
            .map(|pks| pks.iter().filter_map(|pk| self.children.get(pk)).collect())
            .unwrap_or_default()
    }

    /// A typed student ID in this school's format, when it has that shape
    /// (`gfa-2026-0012` -> `GFA/2026/0012`).
    pub fn canonical_id(&self, typed: &str) -> Option<String> {
        canonical_id(typed, &self.id_samples)
    }

    /// A made-up student ID in this school's format, for "for example ...".
    pub fn id_example(&self) -> String {
        id_example(&self.id_samples)
    }

    /// Every student of the school as (full name, student ID), for checking LLM answers.
    pub fn roster(&self) -> &[(String, String)] {
        &self.roster
    }

    /// Released exam sessions, newest first, at most [`MAX_ROWS`].
    pub fn released_exams(&self) -> &[exam_session::Model] {
        &self.exams
    }

    /// A released exam session kept in the snapshot.
    pub fn exam(&self, id: i64) -> Option<&exam_session::Model> {
        self.exams.iter().find(|e| e.id == id)
    }

    /// Results of an active student for a released exam session of the snapshot.
    pub fn results(&self, student: i64, exam_id: i64) -> Option<StudentResults> {
        let exam = self.exam(exam_id)?;
        self.children.get(&student)?;
        let mut subjects: Vec<SubjectResult> = self
            .marks
            .get(&(student, exam_id))
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|m| {
                        let (code, name) = self.subjects.get(&m.subject)?;
                        Some(SubjectResult {
                            code: code.to_string(),
                            subject: name.to_string(),
                            ca: m.ca,
                            exam: m.exam,
                            total: m.total,
                            grade: m.grade.as_deref().map(str::to_string),
                            remark: m.remark.as_deref().map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
        let totals: Vec<f64> = subjects.iter().filter_map(|l| l.total).collect();
        // Not `sum()`: an empty float sum is -0.0, which would show as "-0".
        let total: f64 = totals.iter().fold(0.0, |a, b| a + b);
        let average = (!totals.is_empty()).then(|| round2(total / totals.len() as f64));
        Some(StudentResults {
            exam_session_id: exam.id,
            exam_session: exam.name.clone(),
            subjects,
            total: round2(total),
            average,
            position: self.positions.get(&(student, exam_id)).copied(),
        })
    }

    /// Terms in which the student has attendance records, newest first, at most [`MAX_ROWS`].
    pub fn attendance_terms(&self, student: i64) -> Vec<&term::Model> {
        self.attendance_terms
            .get(&student)
            .map(|ids| ids.iter().filter_map(|id| self.term(*id)).collect())
            .unwrap_or_default()
    }

    /// A term of this school.
    pub fn term(&self, id: i64) -> Option<&term::Model> {
        self.terms.iter().find(|t| t.id == id)
    }

    /// Attendance summary of a student for a term (zeros when nothing is recorded).
    pub fn attendance(&self, student: i64, term: i64) -> AttendanceSummary {
        self.attendance
            .get(&(student, term))
            .cloned()
            .unwrap_or(AttendanceSummary {
                present: 0,
                absent: 0,
                late: 0,
                days: 0,
                percentage: None,
            })
    }

    /// Notices current at `now` that concern any of `children` (whole school, their form or
    /// class); whole-school notices when there are no children. Newest first.
    pub fn notices_for(&self, children: &[&Child], now: DateTime<Utc>) -> Vec<&notice::Model> {
        self.notices
            .iter()
            .filter(|n| n.publish_at <= now && n.expires_at.is_none_or(|e| e > now))
            .filter(|n| match n.audience.as_str() {
                audience::SCHOOL => true,
                audience::CLASS => children
                    .iter()
                    .any(|c| c.model.class_id.is_some() && c.model.class_id == n.audience_class_id),
                audience::FORM => children.iter().any(|c| {
                    c.model
                        .class_id
                        .and_then(|id| self.classes.get(&id))
                        .is_some_and(|class| Some(&class.form) == n.audience_form.as_ref())
                }),
                _ => false,
            })
            .collect()
    }

    /// Estimated heap bytes held, for the cache's bound.
    pub fn heap_size(&self) -> usize {
        self.heap
    }

    fn measure(&self) -> usize {
        use std::mem::size_of;
        let s = |x: &String| x.capacity();
        let o = |x: &Option<String>| x.as_ref().map_or(0, String::capacity);
        let student = |m: &student::Model| {
            size_of::<student::Model>()
                + s(&m.student_id)
                + s(&m.first_name)
                + s(&m.last_name)
                + o(&m.other_names)
                + s(&m.pin_hash)
        };
        let map_entry = 16;
        let mut n = size_of::<Self>();
        n += self
            .children
            .values()
            .map(|c| size_of::<Child>() + map_entry + student(&c.model) + s(&c.name) + o(&c.class))
            .sum::<usize>();
        n += self
            .by_student_id
            .keys()
            .map(|k| k.capacity() + 8 + map_entry)
            .sum::<usize>();
        n += self
            .roster
            .iter()
            .map(|(a, b)| 48 + a.capacity() + b.capacity())
            .sum::<usize>();
        n += self
            .links
            .iter()
            .map(|(k, v)| 48 + k.capacity() + v.capacity() * 8 + map_entry)
            .sum::<usize>();
        n += self
            .classes
            .values()
            .map(|c| size_of::<class::Model>() + s(&c.name) + s(&c.form) + map_entry)
            .sum::<usize>();
        n += self
            .id_samples
            .iter()
            .map(|x| 24 + x.capacity())
            .sum::<usize>();
        n += self.exams.len() * size_of::<exam_session::Model>();
        n += self
            .subjects
            .values()
            .map(|(a, b)| 48 + a.len() + b.len() + map_entry)
            .sum::<usize>();
        let mut texts = std::collections::HashSet::new();
        for lines in self.marks.values() {
            n += 16 + 24 + map_entry + lines.capacity() * size_of::<MarkLine>();
            for m in lines {
                for t in [&m.grade, &m.remark].into_iter().flatten() {
                    if texts.insert(Arc::as_ptr(t) as *const u8 as usize) {
                        n += t.len() + 16;
                    }
                }
            }
        }
        n += self.positions.len() * (16 + 8 + map_entry);
        n += self.terms.len() * size_of::<term::Model>();
        n += self.attendance.len() * (16 + size_of::<AttendanceSummary>() + map_entry);
        n += self
            .attendance_terms
            .values()
            .map(|v| 8 + 24 + v.capacity() * 8 + map_entry)
            .sum::<usize>();
        n += self
            .notices
            .iter()
            .map(|x| size_of::<notice::Model>() + s(&x.title) + s(&x.body) + o(&x.audience_form))
            .sum::<usize>();
        n
    }
}
