//! A school's conversations counted per day (UTC): messages either way, distinct parents,
//! what they asked (the state their conversation reached), who answered (the rules, the model,
//! nobody, staff), LLM calls and tokens, deliveries by status and failures by reason,
//! broadcasts and their recipients, escalations and the time to the first staff reply.
//!
//! Counted from the message log, the record of staff actions, the LLM usage counters and the
//! broadcast jobs, one day at a time (each query a range of one day on an index). A day older
//! than [`SETTLE_DAYS`] no longer changes (late delivery statuses and staff replies have come
//! in): its figures are kept in `analytics_days`, so they outlive the transcripts (deleted
//! after `CHATBOT_TRANSCRIPT_RETENTION_DAYS`) and a year reads back in one query. The cleanup
//! job keeps them ([`settle`]); a range asked for counts what is missing on the way.

use crate::error::ErrorCode;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use crate::entities::{analytics_day, background_job, conversation_action, llm_usage, message_log};
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// Days after which a day's figures no longer change and are kept.
pub const SETTLE_DAYS: i64 = 7;
/// The longest range one request may ask for.
pub const MAX_DAYS: i64 = 366;
/// The background job kind of a broadcast (`pipeline::work::kind::BROADCAST`).
const BROADCAST: &str = "broadcast";

/// One day's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// Messages from parents.
    pub inbound: u64,
    /// Messages to parents (the bot's, staff's, broadcasts).
    pub outbound: u64,
    /// Distinct phones that wrote.
    pub parents: u64,
    /// Parents' messages by who answered them: `rules`, `model`, `refused` (the model would
    /// not), `nobody`, `staff` (while staff had the conversation), `unrecorded` (before this
    /// was recorded).
    pub answered: BTreeMap<String, u64>,
    /// Parents' messages by the state their conversation reached (`viewing_results`...).
    pub topics: BTreeMap<String, u64>,
    /// Messages to parents by delivery status (`sent`, `delivered`, `read`, `failed`...).
    pub deliveries: BTreeMap<String, u64>,
    /// Failed deliveries by reason.
    pub failures: BTreeMap<String, u64>,
    /// Calls to the model, and those that brought no usable answer.
    pub llm_requests: u64,
    /// Calls that failed.
    pub llm_failures: u64,
    /// Tokens sent to the model.
    pub prompt_tokens: u64,
    /// Tokens the model wrote.
    pub completion_tokens: u64,
    /// Broadcasts started.
    pub broadcasts: u64,
    /// Their recipients.
    pub broadcast_recipients: u64,
    /// Conversations handed to staff.
    pub escalations: u64,
    /// Of those, answered by staff (within [`SETTLE_DAYS`]).
    pub first_replies: u64,
    /// Minutes from escalation to the first staff reply, summed over `first_replies`.
    pub first_reply_minutes: f64,
}

impl Day {
    /// Add `other`'s figures to these.
    pub fn add(&mut self, other: &Day) {
        fn merge(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
            for (k, v) in b {
                *a.entry(k.clone()).or_default() += v;
            }
        }
        self.inbound += other.inbound;
        self.outbound += other.outbound;
        self.parents += other.parents;
        merge(&mut self.answered, &other.answered);
        merge(&mut self.topics, &other.topics);
        merge(&mut self.deliveries, &other.deliveries);
        merge(&mut self.failures, &other.failures);
        self.llm_requests += other.llm_requests;
        self.llm_failures += other.llm_failures;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.broadcasts += other.broadcasts;
        self.broadcast_recipients += other.broadcast_recipients;
        self.escalations += other.escalations;
        self.first_replies += other.first_replies;
        self.first_reply_minutes += other.first_reply_minutes;
    }
}

/// A count of messages by direction, status, who answered and topic.
type Group = (String, String, Option<String>, Option<String>, i64);

fn bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    (start, start + Duration::days(1))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Count school `ctx`'s day `day` from the log.
pub async fn count_day(db: &impl ConnectionTrait, ctx: &TenantCtx, day: NaiveDate) -> Result<Day> {
    let (start, end) = bounds(day);
    let mut out = Day::default();
    let in_day = |q: sea_orm::Select<message_log::Entity>| {
        q.filter(message_log::Column::CreatedAt.gte(start))
            .filter(message_log::Column::CreatedAt.lt(end))
    };
    let groups: Vec<Group> = in_day(ctx.find::<message_log::Entity>())
        .select_only()
        .column(message_log::Column::Direction)
        .column(message_log::Column::Status)
        .column(message_log::Column::AnsweredBy)
        .column(message_log::Column::Topic)
        .column_as(Expr::col(message_log::Column::Id).count(), "n")
        .group_by(message_log::Column::Direction)
        .group_by(message_log::Column::Status)
        .group_by(message_log::Column::AnsweredBy)
        .group_by(message_log::Column::Topic)
        .into_tuple()
        .all(db)
        .await?;
    for (direction, status, answered_by, topic, n) in groups {
        let n = count(n);
        if direction == "in" {
            out.inbound += n;
            let by = answered_by.unwrap_or_else(|| "unrecorded".into());
            *out.answered.entry(by).or_default() += n;
            if let Some(topic) = topic {
                *out.topics.entry(topic).or_default() += n;
            }
        } else {
            out.outbound += n;
            *out.deliveries.entry(status).or_default() += n;
        }
    }
    let failures: Vec<(Option<String>, i64)> = in_day(ctx.find::<message_log::Entity>())
        .filter(message_log::Column::Direction.eq("out"))
        .filter(message_log::Column::Status.eq("failed"))
        .select_only()
        .column(message_log::Column::Error)
        .column_as(Expr::col(message_log::Column::Id).count(), "n")
        .group_by(message_log::Column::Error)
        .into_tuple()
        .all(db)
        .await?;
    for (error, n) in failures {
        let reason = error.unwrap_or_else(|| "unknown".into());
        *out.failures.entry(reason).or_default() += count(n);
    }
    let parents: Option<i64> = in_day(ctx.find::<message_log::Entity>())
        .filter(message_log::Column::Direction.eq("in"))
        .select_only()
        .column_as(Expr::cust("COUNT(DISTINCT user_id)"), "n")
        .into_tuple()
        .one(db)
        .await?;
    out.parents = count(parents.unwrap_or(0));

    if let Some(usage) = ctx
        .find::<llm_usage::Entity>()
        .filter(llm_usage::Column::Day.eq(day))
        .one(db)
        .await?
    {
        out.llm_requests = count(usage.requests);
        out.llm_failures = count(usage.failures);
        out.prompt_tokens = count(usage.prompt_tokens);
        out.completion_tokens = count(usage.completion_tokens);
    }
    let broadcasts = ctx
        .find::<background_job::Entity>()
        .filter(background_job::Column::Kind.eq(BROADCAST))
        .filter(background_job::Column::CreatedAt.gte(start))
        .filter(background_job::Column::CreatedAt.lt(end))
        .all(db)
        .await?;
    out.broadcasts = broadcasts.len() as u64;
    out.broadcast_recipients = broadcasts.iter().map(|b| count(b.total)).sum();

    // Escalations of the day, and the first staff reply to each (within the settle window).
    let escalations = ctx
        .find::<conversation_action::Entity>()
        .filter(conversation_action::Column::Action.eq("escalated"))
        .filter(conversation_action::Column::CreatedAt.gte(start))
        .filter(conversation_action::Column::CreatedAt.lt(end))
        .all(db)
        .await?;
    out.escalations = escalations.len() as u64;
    if !escalations.is_empty() {
        let replies = ctx
            .find::<conversation_action::Entity>()
            .filter(conversation_action::Column::Action.eq("reply"))
            .filter(conversation_action::Column::CreatedAt.gte(start))
            .filter(conversation_action::Column::CreatedAt.lt(end + Duration::days(SETTLE_DAYS)))
            .filter(
                conversation_action::Column::UserId
                    .is_in(escalations.iter().map(|e| e.user_id.clone())),
            )
            .order_by_asc(conversation_action::Column::CreatedAt)
            .all(db)
            .await?;
        let mut by_user: HashMap<(&str, &str), Vec<DateTime<Utc>>> = HashMap::new();
        for r in &replies {
            by_user
                .entry((r.channel.as_str(), r.user_id.as_str()))
                .or_default()
                .push(r.created_at);
        }
        for e in &escalations {
            let first = by_user
                .get(&(e.channel.as_str(), e.user_id.as_str()))
                .and_then(|at| at.iter().find(|t| **t >= e.created_at));
            if let Some(at) = first {
                out.first_replies += 1;
                out.first_reply_minutes += (*at - e.created_at).num_seconds() as f64 / 60.0;
            }
        }
    }
    Ok(out)
}

/// Whether day `day` no longer changes at `now`.
fn settled(day: NaiveDate, now: DateTime<Utc>) -> bool {
    day < now.date_naive() - Duration::days(SETTLE_DAYS)
}

/// Keep day `day`'s figures.
async fn keep(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    day: NaiveDate,
    figures: &Day,
    now: DateTime<Utc>,
) -> Result<()> {
    let row = analytics_day::ActiveModel {
        tenant_id: Set(ctx.id()),
        day: Set(day),
        stats: Set(serde_json::to_value(figures).map_err(|e| Error::Internal(e.into()))?),
        computed_at: Set(now),
    };
    analytics_day::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([analytics_day::Column::TenantId, analytics_day::Column::Day])
                .update_columns([
                    analytics_day::Column::Stats,
                    analytics_day::Column::ComputedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// School `ctx`'s figures for each day from `from` to `to` (both included), at `now`: kept
/// days read back, the others counted (and kept when settled).
pub async fn days(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<(NaiveDate, Day)>> {
    if to < from {
        return Err(Error::invalid(
            ErrorCode::InvalidRange,
            "`to` is before `from`",
        ));
    }
    if (to - from).num_days() + 1 > MAX_DAYS {
        return Err(Error::invalid(
            ErrorCode::InvalidRange,
            format!("at most {MAX_DAYS} days at once"),
        ));
    }
    let mut kept: HashMap<NaiveDate, Day> = ctx
        .find::<analytics_day::Entity>()
        .filter(analytics_day::Column::Day.gte(from))
        .filter(analytics_day::Column::Day.lte(to))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.day, serde_json::from_value(r.stats).ok()?)))
        .collect();
    let today = now.date_naive();
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        let figures = match kept.remove(&day) {
            Some(d) => d,
            None if day > today => Day::default(),
            None => {
                let d = count_day(db, ctx, day).await?;
                if settled(day, now) {
                    keep(db, ctx, day, &d, now).await?;
                }
                d
            }
        };
        out.push((day, figures));
        day += Duration::days(1);
    }
    Ok(out)
}

/// Keep the figures of every settled day of school `ctx` not kept yet, from its first message
/// on (at most `MAX_DAYS` back); returns how many days were counted. Run by the cleanup before
/// it deletes old transcripts.
pub async fn settle(db: &impl ConnectionTrait, ctx: &TenantCtx, now: DateTime<Utc>) -> Result<u64> {
    let first: Option<DateTime<Utc>> = ctx
        .find::<message_log::Entity>()
        .select_only()
        .column(message_log::Column::CreatedAt)
        .order_by_asc(message_log::Column::CreatedAt)
        .into_tuple()
        .one(db)
        .await?;
    let Some(first) = first else {
        return Ok(0);
    };
    let last = now.date_naive() - Duration::days(SETTLE_DAYS + 1);
    let from = std::cmp::Ord::max(first.date_naive(), last - Duration::days(MAX_DAYS - 1));
    if last < from {
        return Ok(0);
    }
    let kept: Vec<NaiveDate> = ctx
        .find::<analytics_day::Entity>()
        .select_only()
        .column(analytics_day::Column::Day)
        .filter(analytics_day::Column::Day.gte(from))
        .into_tuple()
        .all(db)
        .await?;
    let mut counted = 0;
    let mut day = from;
    while day <= last {
        if !kept.contains(&day) {
            let d = count_day(db, ctx, day).await?;
            keep(db, ctx, day, &d, now).await?;
            counted += 1;
        }
        day += Duration::days(1);
    }
    Ok(counted)
}
