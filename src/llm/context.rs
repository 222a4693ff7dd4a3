//! What the model may know about one message: one school's profile and current notices, the
//! children this phone is verified for with their released results and attendance, and the
//! last turns of this conversation. Nothing else is read, so nothing else can reach a prompt.
//!
//! Every text that comes from a parent or from the school is untrusted: its `<` and `>` are
//! replaced, so it cannot close the delimiters the prompt wraps it in.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::conversation::engine::score;
use crate::school::snapshot::{Child, SchoolSnapshot};

/// Exam sessions per child given in full (newest first).
pub const EXAMS_PER_CHILD: usize = 3;
/// Terms of attendance per child (newest first).
pub const TERMS_PER_CHILD: usize = 2;

/// Make untrusted text inert inside the prompt's delimiters.
pub fn untrusted(text: &str) -> String {
    text.replace('<', "‹").replace('>', "›")
}

/// The school's profile.
#[derive(Debug, Clone, Serialize)]
pub struct School {
    /// Name.
    pub name: String,
    /// Motto.
    pub motto: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// One subject line.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// Subject name.
    pub subject: String,
    /// Continuous assessment.
    pub ca: Option<String>,
    /// Exam.
    pub exam: Option<String>,
    /// Total.
    pub total: Option<String>,
    /// Grade.
    pub grade: Option<String>,
    /// Teacher's remark.
    pub remark: Option<String>,
}

/// A child's results for one released exam session.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Exam session name.
    pub exam: String,
    /// Subject lines.
    pub subjects: Vec<Subject>,
    /// Sum of totals.
    pub total: String,
    /// Average.
    pub average: Option<String>,
    /// Position in class, when the school publishes it.
    pub position: Option<u32>,
    /// Class size, with the position.
    pub class_size: Option<u32>,
}

/// A child's attendance for one term.
#[derive(Debug, Clone, Serialize)]
pub struct Attendance {
    /// Term name and year.
    pub term: String,
    /// Days present.
    pub present: u32,
    /// Days late.
    pub late: u32,
    /// Days absent.
    pub absent: u32,
    /// Days recorded.
    pub days: u32,
    /// Percentage attended.
    pub percentage: Option<String>,
}

/// A child the phone is verified for.
#[derive(Debug, Clone, Serialize)]
pub struct ChildFacts {
    /// Full name.
    pub name: String,
    /// The school's student ID.
    pub student_id: String,
    /// Class.
    pub class: Option<String>,
    /// Released results, newest first.
    pub results: Vec<Results>,
    /// Attendance, newest term first.
    pub attendance: Vec<Attendance>,
}

/// A current notice.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Publication date.
    pub published: String,
}

/// One earlier message of the conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    /// `user` or `assistant`.
    pub role: &'static str,
    /// Text.
    pub text: String,
}

/// Everything a prompt may hold for one message.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The school.
    pub school: School,
    /// Today's date.
    pub today: String,
    /// Language code of the reply.
    pub language: String,
    /// Children in scope.
    pub children: Vec<ChildFacts>,
    /// Current notices, newest first.
    pub notices: Vec<Notice>,
    /// Earlier turns, oldest first.
    pub history: Vec<Turn>,
    /// The parent's message.
    pub message: String,
}

/// Gather the context of `message` from the school's snapshot for `children` (the phone's
/// verified scope). Reads nothing else.
pub fn gather(
    school: &SchoolSnapshot,
    children: &[&Child],
    history: Vec<(String, String)>,
    message: &str,
    language: &str,
    now: DateTime<Utc>,
) -> Context {
    let p = school.profile();
    let opt = |s: &Option<String>| s.as_deref().map(untrusted);
    let profile = School {
        name: untrusted(&p.name),
        motto: opt(&p.motto),
        address: opt(&p.address),
        phone: opt(&p.contact_phone),
        email: opt(&p.contact_email),
    };
    let exams = school.released_exams();
    let mut facts = Vec::with_capacity(children.len());
    for child in children {
        let mut results = Vec::new();
        for exam in exams.iter().take(EXAMS_PER_CHILD) {
            let Some(r) = school.results(child.model.id, exam.id) else {
                continue;
            };
            if r.subjects.is_empty() {
                continue;
            }
            results.push(Results {
                exam: untrusted(&r.exam_session),
                subjects: r
                    .subjects
                    .iter()
                    .map(|s| Subject {
                        subject: untrusted(&s.subject),
                        ca: s.ca.map(score),
                        exam: s.exam.map(score),
                        total: s.total.map(score),
                        grade: s.grade.as_deref().map(untrusted),
                        remark: s.remark.as_deref().map(untrusted),
                    })
                    .collect(),
                total: score(r.total),
                average: r.average.map(score),
                position: r.position.map(|(p, _)| p),
                class_size: r.position.map(|(_, n)| n),
            });
        }
        let mut attendance = Vec::new();
        for term in school
            .attendance_terms(child.model.id)
            .into_iter()
            .take(TERMS_PER_CHILD)
        {
            let a = school.attendance(child.model.id, term.id);
            attendance.push(Attendance {
                term: untrusted(&format!("{} {}", term.name, term.starts_on.format("%Y"))),
                present: a.present,
                late: a.late,
                absent: a.absent,
                days: a.days,
                percentage: a.percentage.map(score),
            });
        }
        facts.push(ChildFacts {
            name: untrusted(&child.name),
            student_id: untrusted(&child.model.student_id),
            class: child.class.as_deref().map(untrusted),
            results,
            attendance,
        });
    }
    let notices = school
        .notices_for(children, now)
        .into_iter()
        .map(|n| Notice {
            title: untrusted(&n.title),
            body: untrusted(&n.body),
            published: n.publish_at.format("%Y-%m-%d").to_string(),
        })
        .collect();
    let history = history
        .into_iter()
        .map(|(direction, text)| {
            let inbound = direction == "in";
            // Transcripts written before PINs were withheld may still hold one.
            let text = if inbound && crate::domain::Pin::parse(&text).is_ok() {
                "[PIN withheld]".to_string()
            } else {
                untrusted(&text)
            };
            Turn {
                role: if inbound { "user" } else { "assistant" },
                text,
            }
        })
        .collect();
    Context {
        school: profile,
        today: now.format("%A %Y-%m-%d").to_string(),
        language: language.to_string(),
        children: facts,
        notices,
        history,
        message: untrusted(message),
    }
}

impl Context {
    /// Drop the least important remaining piece: the oldest turn, then older terms of
    /// attendance, older exam sessions, the oldest notice, the last attendance, the last
    /// results, the school's details. `false` when nothing is left to drop.
    pub fn drop_least_important(&mut self) -> bool {
        if !self.history.is_empty() {
            self.history.remove(0);
            return true;
        }
        if let Some(c) = self.children.iter_mut().find(|c| c.attendance.len() > 1) {
            c.attendance.pop();
            return true;
        }
        if let Some(c) = self.children.iter_mut().find(|c| c.results.len() > 1) {
            c.results.pop();
            return true;
        }
        if self.notices.pop().is_some() {
            return true;
        }
        if let Some(c) = self.children.iter_mut().find(|c| !c.attendance.is_empty()) {
            c.attendance.clear();
            return true;
        }
        if let Some(c) = self.children.iter_mut().find(|c| !c.results.is_empty()) {
            c.results.clear();
            return true;
        }
        let s = &mut self.school;
        if s.motto.is_some() || s.address.is_some() || s.phone.is_some() || s.email.is_some() {
            s.motto = None;
            s.address = None;
            s.phone = None;
            s.email = None;
            return true;
        }
        false
    }
}
