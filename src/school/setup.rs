//! The go-live checklist: what a school has entered and what it still lacks before parents can
//! use the bot, each step with the endpoint that does it. Served at `setup-status/` and printed
//! by `chatbot tenant status`.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, PaginatorTrait, QueryFilter};
use serde::Serialize;

use crate::entities::{
    academic_session, class, exam_session, mark, message_log, student, student_mapping, subject,
    term, welcome_message, whatsapp_number,
};
use crate::error::Result;
use crate::tenancy::TenantCtx;
use crate::tenancy::numbers::BroadcastTemplate;

/// One step of going live.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Stable name, e.g. `whatsapp_number`.
    pub step: &'static str,
    /// Whether it is done.
    pub done: bool,
    /// What was found, or what is missing.
    pub detail: String,
    /// The API call that does it.
    pub endpoint: &'static str,
}

/// The checklist of a school: every step, in the order a school goes through them.
pub async fn status(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    now: DateTime<Utc>,
) -> Result<Vec<Step>> {
    let count = |n: u64, one: &str, many: &str| -> String {
        match n {
            0 => format!("no {many} yet"),
            1 => format!("1 {one}"),
            n => format!("{n} {many}"),
        }
    };
    let mut steps = Vec::new();

    let numbers = ctx.find::<whatsapp_number::Entity>().all(db).await?;
    let own: Vec<_> = numbers.iter().filter(|n| !n.shared).collect();
    let heard = ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::Direction.eq("in"))
        .filter(message_log::Column::Channel.eq("whatsapp"))
        .count(db)
        .await?
        > 0;
    steps.push(Step {
        step: "whatsapp_number",
        done: !numbers.is_empty(),
        detail: match (numbers.len(), heard) {
            (0, _) => "no WhatsApp number registered".into(),
            (n, true) => format!("{n} number(s); parents' messages are arriving"),
            (n, false) => format!(
                "{n} number(s); no parent's message has arrived yet: check the webhook URL \
                 (whatsapp-numbers/ gives it) in the provider's console"
            ),
        },
        endpoint: "POST whatsapp-numbers/",
    });

    let today = now.date_naive();
    let current = ctx
        .find::<academic_session::Entity>()
        .filter(academic_session::Column::IsCurrent.eq(true))
        .one(db)
        .await?;
    steps.push(Step {
        step: "current_session",
        done: current.is_some(),
        detail: current.as_ref().map_or_else(
            || "no academic session is marked current".into(),
            |s| format!("{} ({} to {})", s.name, s.starts_on, s.ends_on),
        ),
        endpoint: "POST academic-sessions/ (is_current: true)",
    });
    let current_term = match &current {
        Some(s) => {
            ctx.find::<term::Entity>()
                .filter(term::Column::AcademicSessionId.eq(s.id))
                .filter(term::Column::StartsOn.lte(today))
                .filter(term::Column::EndsOn.gte(today))
                .one(db)
                .await?
        }
        None => None,
    };
    let terms = ctx.find::<term::Entity>().count(db).await?;
    steps.push(Step {
        step: "current_term",
        done: current_term.is_some(),
        detail: match (&current_term, terms) {
            (Some(t), _) => format!("{} ({} to {})", t.name, t.starts_on, t.ends_on),
            (None, 0) => "no terms yet".into(),
            (None, _) => format!("no term of the current session includes today ({today})"),
        },
        endpoint: "POST terms/ or POST imports/terms/",
    });

    let classes = ctx.find::<class::Entity>().count(db).await?;
    steps.push(Step {
        step: "classes",
        done: classes > 0,
        detail: count(classes, "class", "classes"),
        endpoint: "POST classes/ or POST imports/classes/",
    });
    let subjects = ctx.find::<subject::Entity>().count(db).await?;
    steps.push(Step {
        step: "subjects",
        done: subjects > 0,
        detail: count(subjects, "subject", "subjects"),
        endpoint: "POST subjects/ or POST imports/subjects/",
    });
    let students = ctx
        .find::<student::Entity>()
        .filter(student::Column::Active.eq(true))
        .count(db)
        .await?;
    steps.push(Step {
        step: "students",
        done: students > 0,
        detail: count(students, "enrolled student", "enrolled students"),
        endpoint: "POST imports/students/",
    });
    let links = ctx.find::<student_mapping::Entity>().count(db).await?;
    steps.push(Step {
        step: "parents_linked",
        done: links > 0,
        detail: count(
            links,
            "parent phone linked to a student",
            "parent phones linked to students",
        ),
        endpoint: "POST imports/mappings/",
    });
    let marks = ctx.find::<mark::Entity>().count(db).await?;
    steps.push(Step {
        step: "marks",
        done: marks > 0,
        detail: count(marks, "mark", "marks"),
        endpoint: "POST imports/marks/ or POST results/manual-template/",
    });
    let released = ctx
        .find::<exam_session::Entity>()
        .filter(exam_session::Column::Released.eq(true))
        .count(db)
        .await?;
    steps.push(Step {
        step: "released_exam_session",
        done: released > 0,
        detail: count(
            released,
            "exam session released to parents",
            "exam sessions released to parents",
        ),
        endpoint: "POST exam-sessions/{id}/release/",
    });
    let welcome = ctx.find::<welcome_message::Entity>().count(db).await? > 0;
    steps.push(Step {
        step: "welcome_message",
        done: welcome,
        detail: if welcome {
            "set".into()
        } else {
            "not set: parents get the built-in greeting".into()
        },
        endpoint: "POST welcome-messages/",
    });
    let without: Vec<String> = own
        .iter()
        .filter(|n| BroadcastTemplate::of(n).is_none())
        .map(|n| n.phone_number.clone())
        .collect();
    steps.push(Step {
        step: "broadcast_templates",
        done: !own.is_empty() && without.is_empty(),
        detail: if own.is_empty() {
            "no number of the school's own".into()
        } else if without.is_empty() {
            "every number has one".into()
        } else {
            format!(
                "no template for {}: broadcasts reach only parents who wrote in the last 24 hours",
                without.join(", ")
            )
        },
        endpoint: "PUT whatsapp-numbers/{id}/ (broadcast_template)",
    });
    Ok(steps)
}
