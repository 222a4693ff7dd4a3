//! Running one turn of a conversation: the school's snapshot and the parent's session read,
//! the pure engine applied (finding out the facts it asks for), the model asked when the rules
//! could not place the message, the report card a parent asked for rendered, and the new
//! session and transcript committed with the other turns finishing at the same time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, NotSet, Set};

use crate::config::Settings;
use crate::conversation::{
    Effect, EngineConfig, Facts, Inbound, Need, Outcome, Reply, State, World, engine, handoff,
    input, store, texts, transcript, writes,
};
use crate::crypto::SecretKey;
use crate::domain::{PhoneNumber, StudentId};
use crate::entities::message_log;
use crate::error::{Error, Result};
use crate::llm::{Llm, Trace};
use crate::metrics::Metrics;
use crate::reports::Reports;
use crate::school::pin_limits::{Guesser, PinCheck};
use crate::school::snapshot::SchoolSnapshot;
use crate::school::snapshot::cache::SnapshotCache;
use crate::tenancy::TenantCtx;

/// What running a turn needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Turns {
    /// Data database.
    pub db: DatabaseConnection,
    /// Server secret (PIN hashes, the parent's tag for the model provider).
    pub secret: SecretKey,
    /// Settings in force (the engine's tunables).
    pub settings: Arc<Settings>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The model fallback; `None` when no endpoint is configured (rules only).
    pub llm: Option<Arc<Llm>>,
    /// Snapshots of the schools in use, replaced when a school's data version moves.
    pub snapshots: Arc<SnapshotCache>,
    /// Where the turns of this process commit their writes together (group commit).
    pub turn_writes: Arc<writes::TurnWriter>,
    /// Report cards, for a parent who asks for one.
    pub reports: Reports,
}

/// A turn's outcome, with what the model fallback did when the rules could not place the
/// message (logs, metrics and the eval harness read it).
#[derive(Debug, Clone)]
pub struct Turn {
    /// The engine's outcome.
    pub outcome: Outcome,
    /// The model fallback's trace, when it ran.
    pub llm: Option<Trace>,
}

impl std::ops::Deref for Turn {
    type Target = Outcome;

    fn deref(&self) -> &Outcome {
        &self.outcome
    }
}

/// An opaque, stable id of a parent for the LLM provider (HMAC of the phone number with a key
/// derived from the server secret): abuse monitoring without the number.
fn llm_user_tag(turns: &Turns, phone: &PhoneNumber) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&turns.secret.subkey("llm-user"))
        .expect("any key length");
    mac.update(phone.as_str().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// What a turn of the pure engine runs against, beside the session and the message.
pub struct Settle<'a> {
    /// Where facts are found out: the database.
    pub db: &'a DatabaseConnection,
    /// The server secret (PIN hashes).
    pub secret: &'a SecretKey,
    /// The school.
    pub ctx: &'a TenantCtx,
    /// Its snapshot.
    pub school: &'a SchoolSnapshot,
    /// Tunables.
    pub config: &'a EngineConfig,
    /// The parent's phone.
    pub phone: &'a PhoneNumber,
    /// Who PIN attempts are counted against, beside the student.
    pub guesser: &'a Guesser,
    /// The message's time.
    pub now: DateTime<Utc>,
}

impl Settle<'_> {
    /// Run the pure engine (`run`, given the world) until it needs no more facts: find out
    /// each fact it asks for (is this guesser's PIN entry paused? does this PIN match, counted
    /// within the limits?) and run it again with it. At most three facts a turn.
    pub async fn run(&self, run: impl Fn(&World<'_>) -> Result<Outcome>) -> Result<Outcome> {
        let (db, limits) = (self.db, self.config.pin_limits());
        let mut facts = Facts::default();
        for _ in 0..4 {
            let world = World {
                school: self.school,
                texts: texts(),
                config: self.config,
                phone: self.phone,
                facts: &facts,
                now: self.now,
            };
            let outcome = run(&world)?;
            let Some(need) = outcome.need.clone() else {
                return Ok(outcome);
            };
            match need {
                Need::PinPause => {
                    let until = limits.paused_until(db, self.guesser, self.now).await?;
                    facts.pin_paused_until = Some(until);
                }
                Need::CheckPin { student_id, pin } => {
                    let id = StudentId::parse(&student_id)?;
                    let (ctx, secret) = (self.ctx, self.secret);
                    let proof = async || {
                        crate::school::students::verify_pin(db, ctx, secret, &id, &pin).await
                    };
                    let check = limits
                        .check(db, ctx, self.guesser, &id, proof, self.now)
                        .await?;
                    facts.pin_check = Some(match check {
                        PinCheck::Verified(student) => PinCheck::Verified(student.id),
                        PinCheck::Wrong { remaining } => PinCheck::Wrong { remaining },
                        PinCheck::Locked { until } => PinCheck::Locked { until },
                    });
                }
            }
        }
        Err(Error::Internal(anyhow::anyhow!(
            "the conversation engine kept asking for facts"
        )))
    }
}

/// Run one turn for `phone` on `channel` in school `ctx`: load the session, apply the engine,
/// and store the new session with the transcript in one write-only transaction, shared with
/// the other turns finishing at the same time ([`writes::TurnWriter`]). One conversation's
/// messages are serialised by its caller, e.g. the per-conversation worker.
pub async fn converse(
    turns: &Turns,
    ctx: &TenantCtx,
    channel: &str,
    phone: &PhoneNumber,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<Turn> {
    converse_as(turns, ctx, channel, phone, inbound, now, None).await
}

/// [`converse`], with PIN attempts counted against `guesser` instead of the phone (the API
/// counts them against the caller's credential, whatever phone it names).
pub async fn converse_as(
    turns: &Turns,
    ctx: &TenantCtx,
    channel: &str,
    phone: &PhoneNumber,
    inbound: &Inbound,
    now: DateTime<Utc>,
    guesser: Option<Guesser>,
) -> Result<Turn> {
    let config = crate::conversation::EngineConfig::from(&turns.settings.conversation);
    let guesser = guesser.unwrap_or_else(|| Guesser::phone(phone));
    let key = store::SessionKey {
        channel,
        user: phone.as_str(),
    };
    // The school as of its data version (one primary-key read, the snapshot itself shared)
    // and the session, read side by side.
    let (school, (stored, session)) = tokio::try_join!(
        turns.snapshots.get(&turns.db, ctx),
        store::load(&turns.db, ctx, key)
    )?;
    // A PIN is a secret: the transcript (and so any prompt built from it) never holds one.
    let typed_pin = matches!(session.state, State::AwaitingPin { .. });
    // A conversation staff answer (or that waits for them): the bot says nothing; the message
    // is logged for them to read.
    let with_staff = stored.as_ref().is_some_and(|r| r.handoff != handoff::BOT);
    // Unless the parent asks for the menu and the school lets them: the conversation goes
    // back to the bot, which answers.
    let back_to_bot = with_staff && school.profile().menu_during_handoff && asks_for_menu(inbound);
    let with_staff = with_staff && !back_to_bot;
    let before = turns.llm.is_some().then(|| session.clone());
    let settle = Settle {
        db: &turns.db,
        secret: &turns.secret,
        ctx,
        school: &school,
        config: &config,
        phone,
        guesser: &guesser,
        now,
    };
    let mut outcome = match with_staff {
        true => Outcome {
            session: session.clone(),
            replies: Vec::new(),
            effects: Vec::new(),
            unhandled: None,
            need: None,
        },
        false => {
            settle
                .run(|world| engine::handle(world, session.clone(), inbound))
                .await?
        }
    };
    let mut trace = None;
    if let (Some(llm), Some(before), Some(text)) = (&turns.llm, before, outcome.unhandled.clone()) {
        // Nor does a prompt: a PIN typed out of turn ("my pin is 1234") is withheld.
        let text = input::withhold_pins(&text).into_owned();
        // Rules first, the model second, the rules again.
        let children = engine::children(&school, phone, &before);
        let history = match &stored {
            Some(r) => {
                transcript::recent(&turns.db, ctx, r.id, llm.limits().history_messages).await?
            }
            None => Vec::new(),
        };
        let lang = texts()
            .language(
                before
                    .lang
                    .as_deref()
                    .unwrap_or(&school.profile().default_language),
            )
            .to_string();
        let user = llm_user_tag(turns, phone);
        let (followup, model) = llm
            .respond(
                &school, ctx, &turns.db, &children, history, &text, &lang, &user, now,
            )
            .await?;
        turns
            .metrics
            .inc("chatbot_llm_requests_total", &[("outcome", model.kind())]);
        tracing::info!(
            tenant = ctx.schema_name(),
            outcome = %model.outcome,
            prompt_tokens = model.prompt_tokens,
            completion_tokens = model.completion_tokens,
            dropped = model.dropped,
            "LLM fallback"
        );
        outcome = settle
            .run(|world| engine::follow(world, before.clone(), followup.clone()))
            .await?;
        outcome.unhandled = Some(text);
        trace = Some(model);
    }
    // The report card a parent asked for: rendered now, sent as a document with its link,
    // just before the menu that follows the "preparing" message.
    let mut moved = back_to_bot.then(|| handoff::Handoff {
        status: handoff::BOT,
        assignee: None,
        action: handoff::action(
            ctx,
            channel,
            phone.as_str(),
            "release",
            "parent",
            stored.as_ref().map(|r| format!("{} (menu)", r.handoff)),
            now,
        ),
    });
    for effect in outcome.effects.clone() {
        let (student_id, exam_session_id, language) = match effect {
            Effect::GenerateReport {
                student_id,
                exam_session_id,
                language,
            } => (student_id, exam_session_id, language),
            Effect::SetOptIn { opted_in } => {
                let by = crate::school::contacts::OptSource::Chat;
                crate::school::contacts::set_opt_in(&turns.db, ctx, phone, opted_in, &by, now)
                    .await?;
                continue;
            }
            Effect::Escalate { reason } => {
                tracing::info!(tenant = ctx.schema_name(), channel, %reason, "conversation handed to staff");
                turns
                    .metrics
                    .inc("chatbot_escalations_total", &[("reason", reason.as_str())]);
                let actor = if reason == "asked" { "parent" } else { "bot" };
                moved = Some(handoff::Handoff {
                    status: handoff::WAITING,
                    assignee: None,
                    action: handoff::action(
                        ctx,
                        channel,
                        phone.as_str(),
                        "escalated",
                        actor,
                        Some(reason),
                        now,
                    ),
                });
                continue;
            }
        };
        if let Some(document) = crate::reports::document_reply(
            &turns.reports,
            ctx,
            student_id,
            exam_session_id,
            phone,
            &language,
            now,
        )
        .await?
        {
            let at = match outcome.replies.last() {
                Some(Reply::Choices { .. }) => outcome.replies.len() - 1,
                _ => outcome.replies.len(),
            };
            outcome.replies.insert(at, document);
        }
    }
    // Who answered the parent, for the school's analytics.
    let answered_by = if with_staff {
        "staff"
    } else if outcome.unhandled.is_none() {
        "rules"
    } else {
        match trace.as_ref().map(|t| t.kind()) {
            Some("answered" | "tool") => "model",
            Some("refused") => "refused",
            _ => "nobody",
        }
    };
    let inbound_body = match &inbound.choice {
        _ if typed_pin => input::PIN_WITHHELD.to_string(),
        Some(choice) => format!("{} [{choice}]", input::withhold_pins(&inbound.text)),
        None => input::withhold_pins(&inbound.text).into_owned(),
    };
    // Every row of the turn in one statement, each with every column set.
    let mut rows = vec![message_log::ActiveModel {
        id: NotSet,
        tenant_id: Set(ctx.id()),
        chat_session_id: Set(None),
        channel: Set(channel.to_string()),
        direction: Set("in".to_string()),
        user_id: Set(phone.as_str().to_string()),
        provider_message_id: Set(inbound.provider_id.clone()),
        reply_to: Set(None),
        kind: Set(inbound.unsupported.as_deref().unwrap_or("text").to_string()),
        body: Set(inbound_body),
        status: Set("received".to_string()),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        payload: Set(None),
        answered_by: Set(Some(answered_by.to_string())),
        topic: Set(Some(outcome.session.state.name().to_string())),
    }];
    // Replies point at the message they answer; the sender stamps each with the provider's
    // id, and delivery statuses update them by that id.
    rows.extend(outcome.replies.iter().map(|reply| {
        transcript::outbound(
            ctx,
            channel,
            phone.as_str(),
            inbound.provider_id.clone(),
            reply,
            now,
        )
    }));
    // Committed with the other turns finishing now (group commit).
    let write = writes::TurnWrite {
        ctx: ctx.clone(),
        channel: channel.to_string(),
        user: phone.as_str().to_string(),
        row: stored.as_ref().map(|r| r.id),
        session: outcome.session.clone(),
        idle: config.idle_timeout,
        now,
        log: rows,
        handoff: moved,
    };
    turns.turn_writes.write(&turns.db, write).await?;
    tracing::debug!(
        tenant = ctx.schema_name(),
        channel,
        state = outcome.session.state.name(),
        replies = outcome.replies.len(),
        unhandled = outcome.unhandled.is_some(),
        "turn"
    );
    Ok(Turn {
        outcome,
        llm: trace,
    })
}

/// Whether the parent asks for the menu (typed in any language the replies speak, or the
/// menu button).
fn asks_for_menu(inbound: &Inbound) -> bool {
    inbound.choice.as_deref() == Some("menu:menu")
        || texts().intent(&input::normalize(&inbound.text)) == Some("menu")
}
