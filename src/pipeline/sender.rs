//! In front of the engine when the school is not known from the number the parent wrote to
//! (a shared number): the sender's phone decides, and a phone linked to several schools
//! chooses one (remembered per channel while the conversation is active; `switch school`
//! asks again).

use chrono::{DateTime, Utc};
use minijinja::context;

use super::converse::{Turn, Turns, converse};
use crate::conversation::input::{matches, menu_number, normalize};
use crate::conversation::{Choice, Inbound, Reply, texts};
use crate::domain::PhoneNumber;
use crate::error::Result;
use crate::tenancy::{self, TenantCtx, routes};

/// The result of a turn routed by sender.
#[derive(Debug)]
pub struct SenderTurn {
    /// The school the turn ran in, once known.
    pub school: Option<TenantCtx>,
    /// `choosing_school`, `naming_school`, `unknown_sender`, or the engine's turns.
    pub state: String,
    /// Replies to send.
    pub replies: Vec<Reply>,
    /// The turn, when it reached a school.
    pub outcome: Option<Turn>,
}

impl SenderTurn {
    fn engine(school: TenantCtx, outcome: Turn) -> Self {
        Self {
            school: Some(school),
            state: outcome.session.state.name().to_string(),
            replies: outcome.replies.clone(),
            outcome: Some(outcome),
        }
    }
}

/// The one school of `schools` whose name the message says: one word of it longer than three
/// letters (`every_word` false), or every such word (true: how a parent reaches a school that
/// imported their phone but that they never wrote to, without an everyday word taking them
/// there); typos forgiven.
fn named_school(
    said: &str,
    schools: &[(TenantCtx, crate::entities::tenant::Model)],
    every_word: bool,
) -> Option<usize> {
    let hits: Vec<usize> = schools
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| {
            let name = normalize(&p.name);
            let mut words = name.split(' ').filter(|w| w.len() > 3).peekable();
            match every_word {
                true => words.peek().is_some() && words.all(|w| matches(said, w)),
                false => words.any(|w| matches(said, w)),
            }
        })
        .map(|(i, _)| i)
        .collect();
    (hits.len() == 1).then(|| hits[0])
}

/// The parent chose `ctx`: remember it and answer with that school's menu, logged under the
/// message that chose it (so a re-run of that message finds its turn).
async fn enter(
    turns: &Turns,
    ctx: &TenantCtx,
    channel: &str,
    phone: &PhoneNumber,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<SenderTurn> {
    let idle = crate::conversation::EngineConfig::from(&turns.settings.conversation).idle_timeout;
    routes::choose(&turns.db, channel, phone, ctx, now + idle, now).await?;
    let chosen = Inbound {
        provider_id: inbound.provider_id.clone(),
        ..Inbound::text("menu")
    };
    let outcome = converse(turns, ctx, channel, phone, &chosen, now).await?;
    Ok(SenderTurn::engine(ctx.clone(), outcome))
}

/// Run one turn for a message whose school must be found from the sender's phone.
pub async fn converse_as_sender(
    turns: &Turns,
    channel: &str,
    phone: &PhoneNumber,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<SenderTurn> {
    let db = &turns.db;
    let idle = crate::conversation::EngineConfig::from(&turns.settings.conversation).idle_timeout;
    let said = normalize(&inbound.text);
    let contacts = tenancy::for_sender(db, phone).await?;
    // Only schools the parent has written to are offered: any school can import any phone.
    let schools: Vec<TenantCtx> = contacts
        .iter()
        .filter(|(_, seen)| *seen)
        .map(|(ctx, _)| ctx.clone())
        .collect();
    let switching = texts().intent(&said) == Some("switch_school");
    if switching {
        routes::forget(db, channel, phone).await?;
    }
    if !switching
        && let Some(ctx) = routes::chosen(db, channel, phone, now).await?
        && schools.contains(&ctx)
    {
        routes::touch(db, channel, phone, now + idle).await?;
        let outcome = converse(turns, &ctx, channel, phone, inbound, now).await?;
        return Ok(SenderTurn::engine(ctx, outcome));
    }
    // A school that imported this phone but was never written to is reached by naming it.
    let mut unseen = Vec::new();
    for (ctx, _) in contacts.iter().filter(|(_, seen)| !seen) {
        unseen.push((ctx.clone(), ctx.profile(db).await?));
    }
    if !switching && let Some(i) = named_school(&said, &unseen, true) {
        let ctx = unseen[i].0.clone();
        tenancy::contact_seen(db, &ctx, phone, now).await?;
        return enter(turns, &ctx, channel, phone, inbound, now).await;
    }
    match schools.as_slice() {
        [] => {
            let (name, lang) = match unseen.first() {
                Some((_, p)) => ("name_school", texts().language(&p.default_language)),
                None => (
                    "unknown_sender",
                    crate::conversation::texts::FALLBACK_LANGUAGE,
                ),
            };
            let text = texts().render(lang, name, context! {})?;
            Ok(SenderTurn {
                school: None,
                state: if unseen.is_empty() {
                    "unknown_sender"
                } else {
                    "naming_school"
                }
                .into(),
                replies: vec![Reply::text(text)],
                outcome: None,
            })
        }
        [only] => {
            let outcome = converse(turns, only, channel, phone, inbound, now).await?;
            Ok(SenderTurn::engine(only.clone(), outcome))
        }
        several => {
            let mut named = Vec::with_capacity(several.len());
            for ctx in several {
                named.push((ctx.clone(), ctx.profile(db).await?));
            }
            let picked = named.iter().position(|(ctx, _)| {
                inbound.choice.as_deref() == Some(&format!("school:{}", ctx.schema_name()))
            });
            let picked = picked
                .or_else(|| {
                    (!switching)
                        .then(|| menu_number(&said))
                        .flatten()
                        .map(|n| n - 1)
                        .filter(|i| *i < named.len())
                })
                .or_else(|| named_school(&said, &named, false));
            if let Some(i) = picked.filter(|_| !switching) {
                return enter(turns, &named[i].0, channel, phone, inbound, now).await;
            }
            let lang = texts().language(&named[0].1.default_language).to_string();
            let reply = Reply::Choices {
                text: texts().render(&lang, "choose_school", context! {})?,
                button: texts().label(&lang, "options")?,
                choices: named
                    .iter()
                    .map(|(ctx, p)| Choice {
                        id: format!("school:{}", ctx.schema_name()),
                        label: p.name.clone(),
                    })
                    .collect(),
            };
            Ok(SenderTurn {
                school: None,
                state: "choosing_school".into(),
                replies: vec![reply],
                outcome: None,
            })
        }
    }
}
