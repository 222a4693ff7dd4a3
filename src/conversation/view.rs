//! The read-only, tenant-scoped view of one school that the engine reads through. It only calls
//! the `school` queries, all of which go through the tenant context.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect};

use crate::crypto::SecretKey;
use crate::domain::{PhoneNumber, Pin, StudentId};
use crate::entities::{
    attendance as attendance_entity, exam_session, notice, student, tenant, term,
};
use crate::error::Result;
use crate::school::attendance::AttendanceSummary;
use crate::school::pin_limits::{Guesser, PinCheck, PinLimits};
use crate::school::results::StudentResults;
use crate::school::{attendance, calendar, notices, results, students, welcome};
use crate::tenancy::TenantCtx;

/// Most choices offered in one list (WhatsApp's limit).
const MAX_ROWS: usize = 10;

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

/// One school, seen by the engine.
pub struct SchoolView<'a, C: ConnectionTrait> {
    db: &'a C,
    ctx: &'a TenantCtx,
    key: &'a SecretKey,
    /// The school's profile.
    pub profile: tenant::Model,
    /// Who PIN attempts are counted against, beside the student: the conversation's phone
    /// when `None`; an API credential on the API.
    pub guesser: Option<Guesser>,
}

impl<'a, C: ConnectionTrait> SchoolView<'a, C> {
    /// Open the view for `ctx`.
    pub async fn load(db: &'a C, ctx: &'a TenantCtx, key: &'a SecretKey) -> Result<Self> {
        let profile = ctx.profile(db).await?;
        Ok(Self {
            db,
            ctx,
            key,
            profile,
            guesser: None,
        })
    }

    /// The tenant this view is scoped to.
    pub fn tenant(&self) -> &TenantCtx {
        self.ctx
    }

    async fn child(&self, model: student::Model) -> Result<Child> {
        let class = match model.class_id {
            Some(id) => students::class(self.db, self.ctx, id)
                .await?
                .map(|c| c.name),
            None => None,
        };
        Ok(Child {
            name: students::full_name(&model),
            class,
            model,
        })
    }

    /// The school's welcome message.
    pub async fn welcome(&self) -> Result<Option<String>> {
        Ok(welcome::get(self.db, self.ctx).await?.map(|w| w.body))
    }

    /// Students mapped to this phone.
    pub async fn linked(&self, phone: &PhoneNumber) -> Result<Vec<student::Model>> {
        students::linked_to_phone(self.db, self.ctx, phone).await
    }

    /// An active student of this school by primary key.
    pub async fn student(&self, pk: i64) -> Result<Option<Child>> {
        match students::by_pk(self.db, self.ctx, pk).await? {
            Some(s) if s.active => Ok(Some(self.child(s).await?)),
            _ => Ok(None),
        }
    }

    /// Check a student ID and PIN within the PIN limits (see `school::pin_limits`).
    pub async fn check_pin(
        &self,
        limits: &PinLimits,
        guesser: &Guesser,
        id: &StudentId,
        pin: &Pin,
        now: DateTime<Utc>,
    ) -> Result<PinCheck<Child>> {
        let proof = async || students::verify_pin(self.db, self.ctx, self.key, id, pin).await;
        let check = limits
            .check(self.db, self.ctx, guesser, id, proof, now)
            .await?;
        check.map(async |s| self.child(s).await).await
    }

    /// When `guesser` may try PINs again, if it is paused now.
    pub async fn pin_paused_until(
        &self,
        limits: &PinLimits,
        guesser: &Guesser,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        limits.paused_until(self.db, guesser, now).await
    }

    /// Released exam sessions, newest first, at most ten.
    pub async fn released_exams(&self) -> Result<Vec<exam_session::Model>> {
        let mut exams = calendar::released_exam_sessions(self.db, self.ctx).await?;
        exams.truncate(MAX_ROWS);
        Ok(exams)
    }

    /// Results of a student for a released exam session.
    pub async fn results(&self, child: &Child, exam_id: i64) -> Result<Option<StudentResults>> {
        results::for_student(
            self.db,
            self.ctx,
            &child.model,
            exam_id,
            self.profile.publish_position,
        )
        .await
    }

    /// Terms in which the student has attendance records, newest first, at most ten.
    pub async fn attendance_terms(&self, student_pk: i64) -> Result<Vec<term::Model>> {
        let ids: Vec<i64> = self
            .ctx
            .find::<attendance_entity::Entity>()
            .select_only()
            .column(attendance_entity::Column::TermId)
            .distinct()
            .filter(attendance_entity::Column::StudentId.eq(student_pk))
            .into_tuple()
            .all(self.db)
            .await?;
        let mut terms: Vec<term::Model> = calendar::terms(self.db, self.ctx)
            .await?
            .into_iter()
            .filter(|t| ids.contains(&t.id))
            .collect();
        terms.truncate(MAX_ROWS);
        Ok(terms)
    }

    /// A term of this school.
    pub async fn term(&self, id: i64) -> Result<Option<term::Model>> {
        calendar::term(self.db, self.ctx, id).await
    }

    /// Attendance summary of a student for a term.
    pub async fn attendance(&self, student_pk: i64, term_id: i64) -> Result<AttendanceSummary> {
        attendance::summary(self.db, self.ctx, student_pk, term_id).await
    }

    /// Current notices concerning any of `children`; whole-school notices when there are none.
    pub async fn notices_for(
        &self,
        children: &[Child],
        now: DateTime<Utc>,
    ) -> Result<Vec<notice::Model>> {
        let mut out: Vec<notice::Model> = Vec::new();
        if children.is_empty() {
            out = notices::current(self.db, self.ctx, now)
                .await?
                .into_iter()
                .filter(|n| n.audience == notices::audience::SCHOOL)
                .collect();
        }
        for child in children {
            for n in notices::current_for_student(self.db, self.ctx, &child.model, now).await? {
                if !out.iter().any(|o| o.id == n.id) {
                    out.push(n);
                }
            }
        }
        out.sort_by_key(|n| std::cmp::Reverse(n.publish_at));
        Ok(out)
    }

    /// Student IDs of this school (up to 200), whose format typed IDs are read in
    /// ([`super::input::canonical_id`]).
    pub async fn id_samples(&self) -> Result<Vec<String>> {
        use sea_orm::QueryOrder;
        Ok(self
            .ctx
            .find::<student::Entity>()
            .select_only()
            .column(student::Column::StudentId)
            .order_by_desc(student::Column::Id)
            .limit(200)
            .into_tuple()
            .all(self.db)
            .await?)
    }

    /// Every student of the school as (full name, student ID), for checking LLM answers.
    pub async fn roster(&self) -> Result<Vec<(String, String)>> {
        students::roster(self.db, self.ctx).await
    }
}
