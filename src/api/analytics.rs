//! `analytics/`: how the school's conversations went, per day: messages, parents, what they
//! asked, who answered, the model's use, deliveries, broadcasts, escalations.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::respond::ApiResult;
use crate::conversation::analytics::{self, Day};
use crate::state::AppState;

/// One day's figures (or the range's, summed).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AnalyticsDayOut {
    /// The day (UTC); absent on the total.
    pub day: Option<NaiveDate>,
    /// Messages from parents.
    pub inbound: u64,
    /// Messages to parents (the bot's, staff's, broadcasts).
    pub outbound: u64,
    /// Distinct phones that wrote that day (the total sums the days).
    pub parents: u64,
    /// Parents' messages by who answered them: `rules`, `model`, `refused` (the model would
    /// not), `nobody`, `staff` (staff had the conversation), `unrecorded` (older messages).
    pub answered: BTreeMap<String, u64>,
    /// Share of parents' messages the rules answered (0 to 1), when there were any.
    pub rules_share: Option<f64>,
    /// Share the model answered.
    pub model_share: Option<f64>,
    /// Share nobody answered (the model refused or failed, or none is configured).
    pub unanswered_share: Option<f64>,
    /// Parents' messages by where the conversation went (`viewing_results`,
    /// `choosing_child`, `main_menu`...).
    pub topics: BTreeMap<String, u64>,
    /// Messages to parents by delivery status.
    pub deliveries: BTreeMap<String, u64>,
    /// Failed deliveries by reason.
    pub failures: BTreeMap<String, u64>,
    /// Calls to the model.
    pub llm_requests: u64,
    /// Calls that brought no usable answer.
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
    /// Of those, answered by staff within a week.
    pub escalations_answered: u64,
    /// Mean minutes from an escalation to the first staff reply.
    pub first_reply_minutes_mean: Option<f64>,
}

impl AnalyticsDayOut {
    fn of(day: Option<NaiveDate>, d: Day) -> Self {
        let share = |keys: &[&str]| {
            (d.inbound > 0).then(|| {
                keys.iter()
                    .map(|k| d.answered.get(*k).copied().unwrap_or(0))
                    .sum::<u64>() as f64
                    / d.inbound as f64
            })
        };
        Self {
            day,
            inbound: d.inbound,
            outbound: d.outbound,
            parents: d.parents,
            rules_share: share(&["rules"]),
            model_share: share(&["model"]),
            unanswered_share: share(&["refused", "nobody"]),
            topics: d.topics,
            deliveries: d.deliveries,
            failures: d.failures,
            llm_requests: d.llm_requests,
            llm_failures: d.llm_failures,
            prompt_tokens: d.prompt_tokens,
            completion_tokens: d.completion_tokens,
            broadcasts: d.broadcasts,
            broadcast_recipients: d.broadcast_recipients,
            escalations: d.escalations,
            escalations_answered: d.first_replies,
            first_reply_minutes_mean: (d.first_replies > 0)
                .then(|| d.first_reply_minutes / d.first_replies as f64),
            answered: d.answered,
        }
    }
}

/// The figures of a range of days.
#[derive(Debug, Object)]
pub struct AnalyticsOut {
    /// First day (UTC).
    pub from: NaiveDate,
    /// Last day (UTC), included.
    pub to: NaiveDate,
    /// Each day, oldest first.
    pub days: Vec<AnalyticsDayOut>,
    /// The whole range.
    pub total: AnalyticsDayOut,
}

/// `analytics/`.
pub struct AnalyticsApi;

#[OpenApi(tag = "ApiTags::Inbox")]
impl AnalyticsApi {
    /// The school's conversations counted per day (UTC), from `from` to `to` (both included;
    /// at most 366 days; by default the last 30). Days older than a week are kept once counted
    /// and outlive the transcripts.
    #[oai(path = "/analytics/", method = "get", operation_id = "get_analytics")]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// First day, `YYYY-MM-DD` (default: 29 days before `to`).
        from: Query<Option<NaiveDate>>,
        /// Last day, `YYYY-MM-DD` (default: today).
        to: Query<Option<NaiveDate>>,
    ) -> ApiResult<Json<AnalyticsOut>> {
        let ctx = caller.require("staff")?;
        let now = Utc::now();
        let to = to.0.unwrap_or_else(|| now.date_naive());
        let from = from.0.unwrap_or(to - Duration::days(29));
        let days = analytics::days(&state.db, ctx, from, to, now).await?;
        let mut total = Day::default();
        for (_, d) in &days {
            total.add(d);
        }
        Ok(Json(AnalyticsOut {
            from,
            to,
            days: days
                .into_iter()
                .map(|(day, d)| AnalyticsDayOut::of(Some(day), d))
                .collect(),
            total: AnalyticsDayOut::of(None, total),
        }))
    }
}
