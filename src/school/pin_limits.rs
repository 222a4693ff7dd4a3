//! PIN limits: how many wrong PINs a student's PIN may take, and a guesser may make.
//!
//! Two counters are kept in the database, so every process (web, workers) shares them:
//! - per student (within its school): at most `max_failures` wrong PINs per window, whoever
//!   guesses, on any channel, phone or API credential;
//! - per guesser (a phone on WhatsApp and the terminal, an API credential on the API): the same
//!   number of wrong PINs per window across every student and school, so a phone guessing
//!   across many students is paused.
//!
//! An attempt is reserved before the PIN is checked (an atomic increment, then a compare), so
//! concurrent guesses cannot pass the limit; a correct PIN gives its own reservation back and
//! resets nothing else. A window begins with the first attempt after the last one ended and
//! lasts `window`; a lock lasts only what remains of it. Phones linked to a student never need
//! the PIN, so a lock set off by someone who knows the student ID never keeps them out.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::domain::StudentId;
use crate::entities::{pin_attempt, student};
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// The limit: wrong PINs per window.
#[derive(Debug, Clone, Copy)]
pub struct PinLimits {
    /// Wrong PINs allowed per window.
    pub max_failures: u32,
    /// How long a window (and so a lock) lasts.
    pub window: Duration,
}

/// Who is guessing: the guesser's counter key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guesser(String);

impl Guesser {
    /// A phone, whatever channel or school it writes to.
    pub fn phone(phone: &crate::domain::PhoneNumber) -> Self {
        Self(format!("phone:{}", phone.as_str()))
    }

    /// An API credential (a key id, a token subject), whatever phone it claims.
    pub fn credential(id: &str) -> Self {
        Self(format!("api:{id}"))
    }
}

/// What a PIN check found.
#[derive(Debug, Clone)]
pub enum PinCheck<T = student::Model> {
    /// ID and PIN match this active student.
    Verified(T),
    /// Wrong ID or PIN; `remaining` more wrong PINs are allowed in this window.
    Wrong {
        /// Wrong PINs left before the lock.
        remaining: u32,
    },
    /// Not checked: the student or the guesser has had its wrong PINs for now.
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
}

/// Whole minutes until a lock ends, at least one.
pub fn minutes_left(until: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    std::cmp::max(((until - now).num_seconds() + 59).div_euclid(60), 1)
}

impl<T> PinCheck<T> {
    /// The same check, with the verified student turned into something else.
    pub async fn map<U>(self, f: impl AsyncFnOnce(T) -> Result<U>) -> Result<PinCheck<U>> {
        Ok(match self {
            Self::Verified(t) => PinCheck::Verified(f(t).await?),
            Self::Wrong { remaining } => PinCheck::Wrong { remaining },
            Self::Locked { until } => PinCheck::Locked { until },
        })
    }
}

/// One reserved attempt on one counter.
#[derive(Debug)]
struct Reserved {
    key: String,
    window_start: i64,
    attempts: i64,
}

fn student_key(ctx: &TenantCtx, id: &StudentId) -> String {
    format!("student:{}:{}", ctx.id(), id.as_str())
}

fn guesser_key(guesser: &Guesser) -> String {
    format!("guesser:{}", guesser.0)
}

/// Count one more event on `key` in its window of `window` (a new window when the last one
/// ended), atomically, whichever process counts: the counter after this event. Shared by the
/// PIN limits and other per-phone limits (report cards); `tenant` ties the row to a school.
pub async fn count_in_window(
    db: &impl ConnectionTrait,
    key: String,
    tenant: Option<i64>,
    window: Duration,
    now: i64,
) -> Result<i64> {
    Ok(reserve(db, key, tenant, window, now).await?.attempts)
}

async fn reserve(
    db: &impl ConnectionTrait,
    key: String,
    tenant: Option<i64>,
    window: Duration,
    now: i64,
) -> Result<Reserved> {
    use pin_attempt::Column as C;
    let ended = Expr::col((pin_attempt::Entity, C::WindowStart)).lte(now - window.num_seconds());
    let mut on_conflict = OnConflict::column(C::Key);
    on_conflict
        .value(
            C::Attempts,
            Expr::case(ended.clone(), 1)
                .finally(Expr::col((pin_attempt::Entity, C::Attempts)).add(1)),
        )
        .value(
            C::WindowStart,
            Expr::case(ended, now).finally(Expr::col((pin_attempt::Entity, C::WindowStart))),
        );
    let row = pin_attempt::Entity::insert(pin_attempt::ActiveModel {
        key: Set(key),
        tenant_id: Set(tenant),
        window_start: Set(now),
        attempts: Set(1),
    })
    .on_conflict(on_conflict)
    .exec_with_returning(db)
    .await?;
    Ok(Reserved {
        key: row.key,
        window_start: row.window_start,
        attempts: row.attempts,
    })
}

impl PinLimits {
    /// Reserve one attempt on `key`: a new window when the last one ended, then one more.
    async fn reserve(
        &self,
        db: &impl ConnectionTrait,
        key: String,
        tenant: Option<i64>,
        now: i64,
    ) -> Result<Reserved> {
        reserve(db, key, tenant, self.window, now).await
    }

    /// Give an attempt back (the PIN was right, or never checked), in its window only.
    async fn give_back(&self, db: &impl ConnectionTrait, r: &Reserved) -> Result<()> {
        use pin_attempt::Column as C;
        pin_attempt::Entity::update_many()
            .col_expr(C::Attempts, Expr::col(C::Attempts).sub(1))
            .filter(C::Key.eq(r.key.as_str()))
            .filter(C::WindowStart.eq(r.window_start))
            .filter(C::Attempts.gt(0))
            .exec(db)
            .await?;
        Ok(())
    }

    fn ends(&self, window_start: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(window_start, 0).unwrap_or_default() + self.window
    }

    /// When `guesser`'s pause ends, if it is paused now (its wrong PINs are used up).
    pub async fn paused_until(
        &self,
        db: &impl ConnectionTrait,
        guesser: &Guesser,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let row = pin_attempt::Entity::find_by_id(guesser_key(guesser))
            .one(db)
            .await?;
        Ok(row
            .filter(|r| r.attempts >= i64::from(self.max_failures))
            .map(|r| self.ends(r.window_start))
            .filter(|until| *until > now))
    }

    /// Check `pin` for student `id` of school `ctx`, counted against the student and against
    /// `guesser`: an attempt is reserved on both first, and the PIN is checked only when both
    /// are within the limit.
    pub async fn check(
        &self,
        db: &impl ConnectionTrait,
        ctx: &TenantCtx,
        guesser: &Guesser,
        id: &StudentId,
        proof: impl AsyncFnOnce() -> Result<Option<student::Model>>,
        now: DateTime<Utc>,
    ) -> Result<PinCheck> {
        let at = now.timestamp();
        let reserved = [
            self.reserve(db, student_key(ctx, id), Some(ctx.id()), at)
                .await?,
            self.reserve(db, guesser_key(guesser), None, at).await?,
        ];
        let max = i64::from(self.max_failures);
        let over = reserved.iter().filter(|r| r.attempts > max);
        if let Some(until) = over.map(|r| self.ends(r.window_start)).max() {
            for r in &reserved {
                self.give_back(db, r).await?;
            }
            return Ok(PinCheck::Locked { until });
        }
        match proof().await? {
            Some(student) => {
                for r in &reserved {
                    self.give_back(db, r).await?;
                }
                Ok(PinCheck::Verified(student))
            }
            None => {
                let used = reserved.iter().map(|r| r.attempts).max().unwrap_or(max);
                Ok(PinCheck::Wrong {
                    remaining: u32::try_from(max - used).unwrap_or(0),
                })
            }
        }
    }
}
