//! The rules-first state machine every parent message goes through.
//!
//! [`handle`] is a pure function: from the session, one inbound message and a [`World`] (one
//! school's [`SchoolSnapshot`], the texts, the settings, the phone, the time) it returns the
//! next session, the replies and the effects to carry out. It does no I/O, reads no clock and
//! is table-tested without a database (`engine/tests.rs`). Two facts cannot be in a snapshot:
//! whether this guesser's PIN entry is paused, and whether a PIN matches (checked and counted
//! atomically in the database). The engine asks for them in [`Outcome::need`]; the caller
//! (`conversation::Settle`) finds out and runs the turn again with them in [`Facts`].
//! Whatever the rules cannot place comes back as `unhandled` (with a short helpful reply and
//! the menu, never silence).

use chrono::{DateTime, Duration, Utc};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::input::{choice_named, id_token, menu_number, normalize, pin_in, pin_shaped};
use super::reply::{Choice, MAX_LIST_ROWS, Reply};
use super::texts::Texts;
use crate::domain::{PhoneNumber, Pin, StudentId};
use crate::error::Result;
use crate::school::pin_limits::{PinCheck, PinLimits, minutes_left};
use crate::school::snapshot::{Child, SchoolSnapshot};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Idle time after which the next message starts again at the menu.
    pub idle_timeout: Duration,
    /// Wrong PINs a student's PIN may take, and a phone may make, per `lockout` window.
    pub max_pin_failures: u32,
    /// How long a PIN window (and so a lock) lasts.
    pub lockout: Duration,
}

impl EngineConfig {
    /// The PIN limits these settings give.
    pub fn pin_limits(&self) -> PinLimits {
        PinLimits {
            max_failures: self.max_pin_failures,
            window: self.lockout,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::minutes(30),
            max_pin_failures: 5,
            lockout: Duration::minutes(15),
        }
    }
}

/// What the parent wants once a child is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Released results.
    Results,
    /// Attendance for a term.
    Attendance,
    /// Current notices.
    Notices,
    /// A report card PDF.
    Report,
}

impl Purpose {
    fn from_intent(intent: &str) -> Option<Self> {
        match intent {
            "results" => Some(Self::Results),
            "attendance" => Some(Self::Attendance),
            "notices" => Some(Self::Notices),
            "report" => Some(Self::Report),
            _ => None,
        }
    }
}

/// Where the conversation stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum State {
    /// No conversation yet (or ended): the next message is greeted.
    #[default]
    Start,
    /// The main menu was shown.
    MainMenu,
    /// Waiting for a student ID.
    AwaitingStudentId {
        /// What to do once verified.
        purpose: Purpose,
    },
    /// Waiting for the PIN of `student_id`.
    AwaitingPin {
        /// Canonical student ID typed.
        student_id: String,
        /// What to do once verified.
        purpose: Purpose,
    },
    /// Several children: which one?
    ChoosingChild {
        /// What to do once chosen.
        purpose: Purpose,
    },
    /// Which exam session?
    ChoosingExam {
        /// Student primary key.
        student: i64,
        /// Results or report.
        purpose: Purpose,
    },
    /// Results shown.
    ViewingResults {
        /// Student primary key.
        student: i64,
        /// Exam session id.
        exam: i64,
    },
    /// Which term (attendance)?
    ChoosingTerm {
        /// Student primary key.
        student: i64,
    },
    /// Attendance shown.
    ViewingAttendance {
        /// Student primary key.
        student: i64,
        /// Term id.
        term: i64,
    },
    /// Notices shown.
    ViewingNotices,
    /// Language list shown.
    ChoosingLanguage,
    /// Help shown.
    Help,
}

impl State {
    /// Stable name, stored in `chat_sessions.state`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::MainMenu => "main_menu",
            Self::AwaitingStudentId { .. } => "awaiting_student_id",
            Self::AwaitingPin { .. } => "awaiting_pin",
            Self::ChoosingChild { .. } => "choosing_child",
            Self::ChoosingExam { .. } => "choosing_exam",
            Self::ViewingResults { .. } => "viewing_results",
            Self::ChoosingTerm { .. } => "choosing_term",
            Self::ViewingAttendance { .. } => "viewing_attendance",
            Self::ViewingNotices => "viewing_notices",
            Self::ChoosingLanguage => "choosing_language",
            Self::Help => "help",
        }
    }
}

/// Everything remembered between two messages of one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Current state.
    #[serde(default)]
    pub state: State,
    /// Language the user chose, if any.
    #[serde(default)]
    pub lang: Option<String>,
    /// Students proven with ID + PIN in this conversation.
    #[serde(default)]
    pub verified: Vec<i64>,
    /// Choices of the last reply: a numbered or typed answer refers to them.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Time of the last message.
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    /// Messages in a row that neither the rules nor the model could answer.
    #[serde(default)]
    pub unanswered: u8,
}

/// One message from the user.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    /// What they typed (or the title of what they tapped).
    pub text: String,
    /// The id of a tapped button or list row, when the channel reports it.
    pub choice: Option<String>,
    /// Set for messages the rules cannot read (image, voice note, location...): their type.
    pub unsupported: Option<String>,
    /// The provider's id of this message (`wamid...`), recorded in the message log.
    pub provider_id: Option<String>,
}

impl Inbound {
    /// A typed message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            choice: None,
            unsupported: None,
            provider_id: None,
        }
    }
}

/// Work the caller carries out after the turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// Render a report card and send it to this user.
    GenerateReport {
        /// Student primary key.
        student_id: i64,
        /// Exam session id.
        exam_session_id: i64,
        /// Language of the covering message.
        language: String,
    },
    /// The parent sent STOP (`false`) or START (`true`): the school's broadcasts skip this
    /// phone, or reach it again.
    SetOptIn {
        /// Whether broadcasts reach the phone from now on.
        opted_in: bool,
    },
    /// Hand the conversation to the school's staff: the bot stops answering until they give
    /// it back.
    Escalate {
        /// `asked` (the parent asked for a person) or `unanswered` (neither the rules nor the
        /// model could answer [`UNANSWERED_TO_ESCALATE`] messages in a row).
        reason: String,
    },
}

/// Messages in a row that neither the rules nor the model could answer before the
/// conversation goes to staff.
pub const UNANSWERED_TO_ESCALATE: u8 = 2;

/// The result of one turn.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Session to store.
    pub session: Session,
    /// Replies to send, in order.
    pub replies: Vec<Reply>,
    /// Effects to carry out.
    pub effects: Vec<Effect>,
    /// The user's text when no rule could place it (the LLM fallback's input).
    pub unhandled: Option<String>,
    /// A fact the turn needs and the world did not hold: find it out, put it in [`Facts`]
    /// and run the turn again (the rest of this outcome is then meaningless).
    pub need: Option<Need>,
}

/// A fact outside the snapshot that a turn needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// When this conversation's guesser may try PINs again, if paused now.
    PinPause,
    /// Check this PIN for this student ID within the PIN limits (counts an attempt).
    CheckPin {
        /// Canonical student ID.
        student_id: String,
        /// The PIN typed.
        pin: Pin,
    },
}

/// Facts found out for a turn (see [`Need`]).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `Some(None)`: not paused; `Some(Some(t))`: paused until `t`; `None`: not known yet.
    pub pin_paused_until: Option<Option<DateTime<Utc>>>,
    /// The PIN check's verdict, with the student's primary key when verified.
    pub pin_check: Option<PinCheck<i64>>,
}

/// Everything a turn reads besides the session and the message.
#[derive(Debug, Clone, Copy)]
pub struct World<'w> {
    /// The school.
    pub school: &'w SchoolSnapshot,
    /// The bot's words.
    pub texts: &'w Texts,
    /// Tunables.
    pub config: &'w EngineConfig,
    /// The parent's phone.
    pub phone: &'w PhoneNumber,
    /// Facts found out for this turn.
    pub facts: &'w Facts,
    /// The message's time.
    pub now: DateTime<Utc>,
}

/// Why a turn stopped early: a fact is needed, or a template failed.
enum Halt {
    Need(Need),
    Failed(crate::error::Error),
}

impl From<crate::error::Error> for Halt {
    fn from(e: crate::error::Error) -> Self {
        Self::Failed(e)
    }
}

type Step = std::result::Result<(), Halt>;

/// What the LLM fallback decided about a message the rules could not place; the rules carry
/// it out ("rules first, LLM second, rules again").
#[derive(Debug, Clone, PartialEq)]
pub enum Followup {
    /// Send this checked answer, then the menu.
    Answer(String),
    /// Carry out this action, within the phone's verified scope.
    Act(Action),
    /// Say this reply template (e.g. `llm_unavailable`), then the menu.
    Canned(&'static str),
}

/// A menu flow the LLM may start for the parent (its tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Released results of a child (a student ID or name the model gave; `None`: ask which).
    Results(Option<String>),
    /// Attendance of a child.
    Attendance(Option<String>),
    /// A report card of a child.
    Report(Option<String>),
    /// Current notices.
    Notices,
    /// Verify another child (student ID and PIN).
    AddChild,
    /// The main menu.
    Menu,
}

/// Students `phone` may see in this conversation: mapped to it, or proven with ID + PIN.
pub fn children<'s>(
    school: &'s SchoolSnapshot,
    phone: &PhoneNumber,
    session: &Session,
) -> Vec<&'s Child> {
    let mut out = school.linked(phone);
    for pk in &session.verified {
        if !out.iter().any(|c| c.model.id == *pk)
            && let Some(child) = school.student(*pk)
        {
            out.push(child);
        }
    }
    out
}

/// The one child whose name `said` (normalized) holds: a word of a child's name that no other
/// child shares ("Temitope result", "results for aminu").
fn named_child<'s>(children: &[&'s Child], said: &str) -> Option<&'s Child> {
    if said.is_empty() || children.is_empty() {
        return None;
    }
    let names: Vec<Vec<String>> = children
        .iter()
        .map(|c| {
            normalize(&c.name)
                .split(' ')
                .filter(|w| w.len() >= 3)
                .map(str::to_string)
                .collect()
        })
        .collect();
    let said_words: Vec<&str> = said.split(' ').collect();
    let found: Vec<usize> = (0..children.len())
        .filter(|&i| {
            names[i].iter().any(|w| {
                let shared = names
                    .iter()
                    .enumerate()
                    .any(|(j, other)| j != i && other.contains(w));
                !shared && said_words.iter().any(|s| super::input::matches(s, w))
            })
        })
        .collect();
    match found.as_slice() {
        [one] => Some(children[*one]),
        _ => None,
    }
}

/// A score as people write it: `72`, `72.5`.
pub fn score(x: f64) -> String {
    let rounded = (x * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded}")
    }
}

/// Run one turn.
pub fn handle(world: &World<'_>, session: Session, inbound: &Inbound) -> Result<Outcome> {
    let mut turn = Turn::new(world, session);
    let step = turn.run(inbound);
    turn.finish(step)
}

/// Run the turn of a message the rules could not place (`session` as it was before that
/// message) with what the LLM fallback decided.
pub fn follow(world: &World<'_>, session: Session, followup: Followup) -> Result<Outcome> {
    let mut turn = Turn::new(world, session);
    let step = turn.follow(followup);
    turn.finish(step)
}

struct Turn<'w> {
    school: &'w SchoolSnapshot,
    texts: &'w Texts,
    config: &'w EngineConfig,
    phone: &'w PhoneNumber,
    facts: &'w Facts,
    now: DateTime<Utc>,
    session: Session,
    replies: Vec<Reply>,
    effects: Vec<Effect>,
    unhandled: Option<String>,
    /// The last choices stay answerable ("thanks", "I forgot my PIN" in the middle of a flow).
    keep_choices: bool,
    /// Neither the rules nor the model answered this message.
    unanswered: bool,
}

impl<'w> Turn<'w> {
    fn new(world: &World<'w>, session: Session) -> Self {
        Self {
            school: world.school,
            texts: world.texts,
            config: world.config,
            phone: world.phone,
            facts: world.facts,
            now: world.now,
            session,
            replies: Vec::new(),
            effects: Vec::new(),
            unhandled: None,
            keep_choices: false,
            unanswered: false,
        }
    }

    fn finish(mut self, step: Step) -> Result<Outcome> {
        let need = match step {
            Ok(()) => None,
            Err(Halt::Need(need)) => Some(need),
            Err(Halt::Failed(e)) => return Err(e),
        };
        // A message nothing placed counts towards staff; any other starts the count again.
        let escalated = self
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Escalate { .. }));
        if need.is_none() && !escalated {
            if self.unanswered || self.unhandled.is_some() {
                self.session.unanswered = self.session.unanswered.saturating_add(1);
                if self.session.unanswered >= UNANSWERED_TO_ESCALATE
                    && let Err(Halt::Failed(e)) = self.escalate("unanswered")
                {
                    return Err(e);
                }
            } else {
                self.session.unanswered = 0;
            }
        }
        let Turn {
            mut session,
            replies,
            effects,
            unhandled,
            now,
            keep_choices,
            ..
        } = self;
        session.choices = match replies.last() {
            Some(Reply::Choices { choices, .. }) => choices.clone(),
            _ if keep_choices => session.choices,
            _ => Vec::new(),
        };
        session.last_seen = Some(now);
        Ok(Outcome {
            session,
            replies,
            effects,
            unhandled,
            need,
        })
    }

    fn lang(&self) -> String {
        let wanted = self
            .session
            .lang
            .as_deref()
            .unwrap_or(&self.school.profile().default_language);
        self.texts.language(wanted).to_string()
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String> {
        let profile = self.school.profile();
        let ctx = context! {
            school => profile.name.clone(),
            contact_phone => profile.contact_phone.clone(),
            contact_email => profile.contact_email.clone(),
            office_hours => profile.office_hours.clone(),
            ..ctx
        };
        self.texts.render(&self.lang(), name, ctx)
    }

    fn say(&mut self, name: &str, ctx: Value) -> Step {
        let text = self.render(name, ctx)?;
        self.replies.push(Reply::text(text));
        Ok(())
    }

    fn label(&self, name: &str) -> Result<String> {
        self.texts.label(&self.lang(), name)
    }

    fn choice(&self, id: &str, label: &str) -> Result<Choice> {
        Ok(Choice {
            id: id.to_string(),
            label: self.label(label)?,
        })
    }

    fn offer(&mut self, name: &str, ctx: Value, choices: Vec<Choice>, state: State) -> Step {
        let text = self.render(name, ctx)?;
        self.offer_text(text, choices, state)
    }

    /// A reply with choices whose text is already rendered; the conversation moves to `state`.
    fn offer_text(&mut self, text: String, mut choices: Vec<Choice>, state: State) -> Step {
        choices.truncate(MAX_LIST_ROWS);
        let button = self.label("options")?;
        self.replies.push(Reply::Choices {
            text,
            button,
            choices,
        });
        self.session.state = state;
        Ok(())
    }

    /// Minutes until this conversation's guesser may try PINs again, when it is paused.
    fn paused_minutes(&self) -> std::result::Result<Option<i64>, Halt> {
        match self.facts.pin_paused_until {
            Some(until) => Ok(until.map(|until| minutes_left(until, self.now))),
            None => Err(Halt::Need(Need::PinPause)),
        }
    }

    fn run(&mut self, inbound: &Inbound) -> Step {
        let said = normalize(&inbound.text);
        // STOP / START, whole and in any state: WhatsApp's opt-out, honoured before anything
        // else; the conversation itself goes on where it was.
        if inbound.choice.is_none()
            && let Some(opted_in) = self.texts.opt_change(&said)
        {
            self.say(if opted_in { "opted_in" } else { "opted_out" }, context! {})?;
            self.effects.push(Effect::SetOptIn { opted_in });
            return Ok(());
        }
        let expired = self
            .session
            .last_seen
            .is_some_and(|seen| self.now - seen > self.config.idle_timeout);
        if expired {
            self.session = Session {
                lang: self.session.lang.clone(),
                ..Session::default()
            };
            self.say("session_expired", context! {})?;
            return self.greet_then(&said);
        }
        if self.session.state == State::Start {
            let welcome = self.school.welcome().map(str::to_string);
            self.say("welcome", context! { welcome })?;
            return self.greet_then(&said);
        }
        if inbound.unsupported.is_some() {
            self.say("unsupported_message", context! {})?;
            return self.menu();
        }
        // 1. A tapped choice, a number, or (part of) the label of one of the last choices.
        if let Some(id) = self.picked(inbound, &said) {
            return self.pick(&id);
        }
        // 2. What the PIN and student ID prompts expect, before any keyword: a PIN is never
        // read as a student ID, and a student ID at the PIN prompt starts over with it.
        match self.session.state.clone() {
            State::AwaitingPin {
                student_id,
                purpose,
            } => {
                if let Some(pin) = pin_in(&said) {
                    return self.pin(&student_id, &pin, purpose);
                }
                let token = id_token(&inbound.text);
                if StudentId::parse(token).is_ok() && self.school.canonical_id(token).is_some() {
                    return self.student_id(token, purpose);
                }
            }
            State::AwaitingStudentId { purpose } => {
                if pin_shaped(&said) && self.school.canonical_id(&said).is_none() {
                    let example = self.school.id_example();
                    return self.say("id_looks_like_pin", context! { example });
                }
                let token = id_token(&inbound.text);
                if token.chars().any(|c| c.is_ascii_digit())
                    && self.school.canonical_id(token).is_some()
                {
                    return self.student_id(token, purpose);
                }
            }
            _ => {}
        }
        // 3. Words that mean the same in every state; outside the prompts, an emoji ("👍",
        // "🙏") is an acknowledgement and a lone "?" asks what the bot can do.
        let prompting = matches!(
            self.session.state,
            State::AwaitingPin { .. } | State::AwaitingStudentId { .. }
        );
        let bare = inbound.text.trim();
        let symbol = if !said.is_empty() || inbound.choice.is_some() || prompting {
            None
        } else if bare.chars().all(|c| c == '?') && !bare.is_empty() {
            Some("help")
        } else if !bare.is_ascii() {
            Some("thanks")
        } else {
            None
        };
        if let Some(intent) = symbol
            .or_else(|| self.texts.intent(&said))
            .map(str::to_string)
        {
            return self.intent(&intent, &said);
        }
        // 4. What this state expects.
        match self.session.state.clone() {
            State::AwaitingStudentId { purpose } => {
                return self.student_id(id_token(&inbound.text), purpose);
            }
            State::AwaitingPin { student_id, .. } => {
                // A format slip ("482", "48a1") costs no attempt.
                return self.say("invalid_pin", context! { student_id });
            }
            State::ChoosingChild { purpose } => {
                let children = self.children();
                if let Some(child) = named_child(&children, &said) {
                    return self.with_child(purpose, child);
                }
            }
            State::ChoosingLanguage => {
                if let Some(lang) = self.texts.language_named(&said).map(str::to_string) {
                    return self.set_language(&lang);
                }
            }
            _ => {}
        }
        // An out-of-range number is not a question for the model.
        if menu_number(&said).is_none() {
            self.unhandled = Some(inbound.text.clone());
        }
        // 5. A list was offered: offer it again rather than the whole menu.
        let choosing = matches!(
            self.session.state,
            State::ChoosingChild { .. }
                | State::ChoosingExam { .. }
                | State::ChoosingTerm { .. }
                | State::ChoosingLanguage
        );
        if choosing && !self.session.choices.is_empty() {
            let text = self.render("not_a_choice", context! {})?;
            let (choices, state) = (self.session.choices.clone(), self.session.state.clone());
            return self.offer_text(text, choices, state);
        }
        // 6. Nothing placed it: what the bot can do, in one line, with the menu's buttons.
        let text = self.render("not_understood", context! {})?;
        let choices = self.menu_choices()?;
        self.offer_text(text, choices, State::MainMenu)
    }

    /// The choice a message picks: a tapped id, a number, a label or part of one.
    fn picked(&self, inbound: &Inbound, said: &str) -> Option<String> {
        let offered = &self.session.choices;
        if let Some(c) = inbound
            .choice
            .clone()
            .filter(|c| offered.iter().any(|o| &o.id == c) || c.starts_with("menu:"))
        {
            return Some(c);
        }
        if let Some(c) = menu_number(said).and_then(|n| offered.get(n - 1)) {
            return Some(c.id.clone());
        }
        if said.is_empty() {
            return None;
        }
        // A label typed (or nearly): no more words than the label has, so "Temitope result"
        // is not the menu's "Results" but a request naming a child.
        let words = said.split(' ').count();
        let named: Vec<&Choice> = offered
            .iter()
            .filter(|c| {
                let label = normalize(&c.label);
                words <= label.split(' ').count() && super::input::matches(said, &label)
            })
            .collect();
        if let [one] = named.as_slice() {
            return Some(one.id.clone());
        }
        // "third term", "2nd term", "last exam": part of a label where a list was offered.
        let newest_first = matches!(
            self.session.state,
            State::ChoosingExam { .. } | State::ChoosingTerm { .. }
        );
        let listed = newest_first || matches!(self.session.state, State::ChoosingChild { .. });
        if listed && self.texts.intent(said).is_none_or(|i| i == "results") {
            let labels: Vec<String> = offered.iter().map(|c| c.label.clone()).collect();
            return choice_named(said, &labels, newest_first).map(|i| offered[i].id.clone());
        }
        None
    }

    /// After a greeting: act on a recognisable request, else show the menu.
    fn greet_then(&mut self, said: &str) -> Step {
        match self.texts.intent(said).map(str::to_string) {
            Some(intent)
                if !matches!(
                    intent.as_str(),
                    "menu" | "back" | "stop" | "greeting" | "thanks" | "help"
                ) =>
            {
                self.intent(&intent, said)
            }
            _ => self.menu(),
        }
    }

    fn intent(&mut self, intent: &str, said: &str) -> Step {
        if let Some(purpose) = Purpose::from_intent(intent) {
            // "Temitope result": straight to the child named, when the phone may see them.
            if purpose != Purpose::Notices
                && let Some(child) = named_child(&self.children(), said)
            {
                return self.with_child(purpose, child);
            }
            return self.start(purpose);
        }
        if intent.starts_with(super::texts::TOPIC_PREFIX) {
            return self.notices_about(intent);
        }
        if let Some(lang) = intent.strip_prefix(super::texts::LANG_PREFIX) {
            return self.set_language(lang);
        }
        match intent {
            "greeting" => self.menu(),
            "thanks" => {
                self.keep_choices = true;
                self.say("thanks", context! {})
            }
            "forgot_pin" => {
                self.keep_choices = true;
                self.say("forgot_pin", context! {})
            }
            "person" => self.escalate("asked"),
            "contact" | "absence" => {
                let text = self.render(intent, context! {})?;
                let choices = self.menu_choices()?;
                self.offer_text(text, choices, State::MainMenu)
            }
            "back" => self.back(),
            "help" => self.help(),
            "stop" => self.stop(),
            "language" => self.choose_language(),
            "add_child" => {
                let purpose = match &self.session.state {
                    State::ChoosingChild { purpose } | State::ChoosingExam { purpose, .. } => {
                        *purpose
                    }
                    _ => Purpose::Results,
                };
                self.ask_student_id(purpose)
            }
            _ => self.menu(),
        }
    }

    fn menu_choices(&self) -> Result<Vec<Choice>> {
        Ok(vec![
            self.choice("menu:results", "results")?,
            self.choice("menu:attendance", "attendance")?,
            self.choice("menu:notices", "notices")?,
            self.choice("menu:report", "report")?,
            self.choice("menu:help", "help")?,
            self.choice("menu:language", "language")?,
        ])
    }

    fn menu(&mut self) -> Step {
        let choices = self.menu_choices()?;
        self.offer("menu", context! {}, choices, State::MainMenu)
    }

    /// A question the notices may answer ("when does school resume?"): the current notices
    /// this phone may see that speak of it, or who to ask.
    fn notices_about(&mut self, topic: &str) -> Step {
        let children = self.children();
        let words = self.texts.topic_words(topic);
        let notices: Vec<Value> = self
            .school
            .notices_for(&children, self.now)
            .into_iter()
            .filter(|n| {
                let text = normalize(&format!("{} {}", n.title, n.body));
                let text = super::input::Words::new(&text);
                words.iter().any(|w| w.said_in_words(&text))
            })
            .map(|n| context! { title => n.title.clone(), body => n.body.clone() })
            .collect();
        if notices.is_empty() {
            let text = self.render("no_notice_about", context! {})?;
            let choices = self.menu_choices()?;
            return self.offer_text(text, choices, State::MainMenu);
        }
        self.say("notices_found", context! { notices })?;
        let choices = vec![
            self.choice("menu:notices", "notices")?,
            self.choice("menu:menu", "menu")?,
        ];
        self.offer("anything_else", context! {}, choices, State::ViewingNotices)
    }

    fn help(&mut self) -> Step {
        self.say("help", context! {})?;
        self.menu()?;
        self.session.state = State::Help;
        Ok(())
    }

    fn stop(&mut self) -> Step {
        self.say("goodbye", context! {})?;
        self.session = Session {
            lang: self.session.lang.clone(),
            ..Session::default()
        };
        Ok(())
    }

    fn choose_language(&mut self) -> Step {
        let mut choices = Vec::new();
        for lang in self.texts.languages() {
            let label = self.texts.label(lang, "language_name")?;
            choices.push(Choice {
                id: format!("lang:{lang}"),
                label,
            });
        }
        self.offer(
            "choose_language",
            context! {},
            choices,
            State::ChoosingLanguage,
        )
    }

    fn set_language(&mut self, lang: &str) -> Step {
        self.session.lang = Some(self.texts.language(lang).to_string());
        self.say("language_set", context! {})?;
        self.menu()
    }

    /// Students this phone may see: mapped to it, or proven with ID + PIN in this conversation.
    fn children(&self) -> Vec<&'w Child> {
        children(self.school, self.phone, &self.session)
    }

    fn follow(&mut self, followup: Followup) -> Step {
        match followup {
            Followup::Answer(text) => {
                self.replies.push(Reply::text(text));
                self.menu()
            }
            Followup::Canned(name) => {
                // The model could not answer it either.
                self.unanswered = true;
                self.say(name, context! {})?;
                self.menu()
            }
            Followup::Act(action) => self.act(action),
        }
    }

    /// Hand the conversation to staff, telling the parent someone will answer here.
    fn escalate(&mut self, reason: &str) -> Step {
        self.replies.clear();
        self.say("handoff", context! {})?;
        self.effects.push(Effect::Escalate {
            reason: reason.to_string(),
        });
        self.session.unanswered = 0;
        self.session.state = State::MainMenu;
        Ok(())
    }

    /// A flow the LLM chose. A child it names must be one this phone may see.
    fn act(&mut self, action: Action) -> Step {
        let (purpose, wanted) = match action {
            Action::Results(w) => (Purpose::Results, w),
            Action::Attendance(w) => (Purpose::Attendance, w),
            Action::Report(w) => (Purpose::Report, w),
            Action::Notices => return self.start(Purpose::Notices),
            Action::AddChild => return self.ask_student_id(Purpose::Results),
            Action::Menu => return self.menu(),
        };
        let Some(wanted) = wanted.filter(|w| !w.trim().is_empty()) else {
            return self.start(purpose);
        };
        let children = self.children();
        let id = StudentId::parse(&wanted).ok();
        let name = normalize(&wanted);
        let found: Vec<&'w Child> = children
            .into_iter()
            .filter(|c| {
                id.as_ref()
                    .is_some_and(|id| c.model.student_id == id.as_str())
                    || normalize(&c.name) == name
                    || normalize(&c.model.first_name) == name
            })
            .collect();
        match found.as_slice() {
            [child] => self.with_child(purpose, child),
            [] => {
                tracing::warn!(
                    tenant = self.school.profile().schema_name.as_str(),
                    "LLM asked for a child outside this phone's verified scope; refused"
                );
                self.say("not_in_scope", context! {})?;
                self.menu()
            }
            _ => self.start(purpose),
        }
    }

    fn allowed_child(&self, pk: i64) -> Option<&'w Child> {
        self.children().into_iter().find(|c| c.model.id == pk)
    }

    fn start(&mut self, purpose: Purpose) -> Step {
        let children = self.children();
        if purpose == Purpose::Notices {
            let notices: Vec<_> = self
                .school
                .notices_for(&children, self.now)
                .into_iter()
                .map(|n| context! { title => n.title.clone(), body => n.body.clone() })
                .collect();
            if notices.is_empty() {
                self.say("no_notices", context! {})?;
            } else {
                self.say("notices", context! { notices })?;
            }
            let choices = vec![self.choice("menu:menu", "menu")?];
            return self.offer("anything_else", context! {}, choices, State::ViewingNotices);
        }
        match children.len() {
            0 => self.ask_student_id(purpose),
            1 => {
                let child = children.into_iter().next().expect("one child");
                self.with_child(purpose, child)
            }
            _ => {
                let mut choices: Vec<Choice> = children
                    .iter()
                    .take(MAX_LIST_ROWS - 1)
                    .map(|c| Choice {
                        id: format!("child:{}", c.model.id),
                        label: match &c.class {
                            Some(class) => format!("{} ({class})", c.name),
                            None => c.name.clone(),
                        },
                    })
                    .collect();
                choices.push(self.choice("add:child", "add_child")?);
                self.offer(
                    "choose_child",
                    context! {},
                    choices,
                    State::ChoosingChild { purpose },
                )
            }
        }
    }

    fn with_child(&mut self, purpose: Purpose, child: &'w Child) -> Step {
        let student = child.model.id;
        match purpose {
            Purpose::Results | Purpose::Report => {
                let exams = self.school.released_exams();
                match exams {
                    [] => {
                        self.say("no_exams", context! {})?;
                        self.menu()
                    }
                    [exam] => self.exam_chosen(purpose, child, exam.id),
                    _ => {
                        let choices = exams
                            .iter()
                            .map(|e| Choice {
                                id: format!("exam:{}", e.id),
                                label: e.name.clone(),
                            })
                            .collect();
                        self.offer(
                            "choose_exam",
                            context! { student => child.name.clone() },
                            choices,
                            State::ChoosingExam { student, purpose },
                        )
                    }
                }
            }
            Purpose::Attendance => {
                let terms = self.school.attendance_terms(student);
                match terms.as_slice() {
                    [] => {
                        self.say("no_terms", context! { student => child.name.clone() })?;
                        self.menu()
                    }
                    [term] => self.show_attendance(child, term.id),
                    _ => {
                        let choices = terms
                            .iter()
                            .map(|t| Choice {
                                id: format!("term:{}", t.id),
                                label: format!("{} {}", t.name, t.starts_on.format("%Y")),
                            })
                            .collect();
                        self.offer(
                            "choose_term",
                            context! { student => child.name.clone() },
                            choices,
                            State::ChoosingTerm { student },
                        )
                    }
                }
            }
            Purpose::Notices => self.start(Purpose::Notices),
        }
    }

    fn exam_chosen(&mut self, purpose: Purpose, child: &'w Child, exam_id: i64) -> Step {
        if purpose == Purpose::Report {
            return self.request_report(child, exam_id);
        }
        let Some(results) = self.school.results(child.model.id, exam_id) else {
            self.say("unknown_choice", context! {})?;
            return self.menu();
        };
        let (position, class_size) = match results.position {
            Some((p, n)) => (Some(p), Some(n)),
            None => (None, None),
        };
        let subjects: Vec<Value> = results
            .subjects
            .iter()
            .map(|s| {
                context! {
                    subject => s.subject.clone(),
                    ca => s.ca.map(score),
                    exam => s.exam.map(score),
                    total => s.total.map(score),
                    grade => s.grade.clone(),
                }
            })
            .collect();
        let text = self.render(
            "results",
            context! {
                student => child.name.clone(),
                exam => results.exam_session.clone(),
                subjects,
                total => score(results.total),
                average => results.average.map(score),
                position,
                class_size,
            },
        )?;
        let choices = vec![
            self.choice("nav:report", "report")?,
            self.choice("nav:exams", "another_exam")?,
            self.choice("menu:menu", "menu")?,
        ];
        self.offer_text(
            text,
            choices,
            State::ViewingResults {
                student: child.model.id,
                exam: exam_id,
            },
        )
    }

    fn request_report(&mut self, child: &'w Child, exam_id: i64) -> Step {
        let Some(exam) = self.school.exam(exam_id) else {
            self.say("unknown_choice", context! {})?;
            return self.menu();
        };
        self.effects.push(Effect::GenerateReport {
            student_id: child.model.id,
            exam_session_id: exam.id,
            language: self.lang(),
        });
        self.say(
            "report_requested",
            context! { student => child.name.clone(), exam => exam.name.clone() },
        )?;
        self.menu()
    }

    fn show_attendance(&mut self, child: &'w Child, term_id: i64) -> Step {
        let Some(term) = self.school.term(term_id) else {
            self.say("unknown_choice", context! {})?;
            return self.menu();
        };
        let a = self.school.attendance(child.model.id, term_id);
        let text = self.render(
            "attendance",
            context! {
                student => child.name.clone(),
                term => format!("{} {}", term.name, term.starts_on.format("%Y")),
                present => a.present,
                late => a.late,
                absent => a.absent,
                days => a.days,
                percentage => a.percentage.map(score),
            },
        )?;
        let choices = vec![
            self.choice("nav:terms", "another_term")?,
            self.choice("menu:menu", "menu")?,
        ];
        self.offer_text(
            text,
            choices,
            State::ViewingAttendance {
                student: child.model.id,
                term: term_id,
            },
        )
    }

    fn ask_student_id(&mut self, purpose: Purpose) -> Step {
        if let Some(minutes) = self.paused_minutes()? {
            self.say("pin_locked", context! { minutes })?;
            return self.menu();
        }
        self.say("ask_student_id", context! {})?;
        self.session.state = State::AwaitingStudentId { purpose };
        Ok(())
    }

    fn student_id(&mut self, text: &str, purpose: Purpose) -> Step {
        let typed = self.school.canonical_id(text);
        let Ok(id) = StudentId::parse(typed.as_deref().unwrap_or(text)) else {
            let example = self.school.id_example();
            return self.say("invalid_student_id", context! { example });
        };
        // A child linked to this phone needs no PIN (and no lock on its PIN keeps them out).
        if let Some(child) = self
            .children()
            .into_iter()
            .find(|c| c.model.student_id == id.as_str())
        {
            return self.with_child(purpose, child);
        }
        self.say("ask_pin", context! { student_id => id.as_str() })?;
        self.session.state = State::AwaitingPin {
            student_id: id.as_str().to_string(),
            purpose,
        };
        Ok(())
    }

    fn pin(&mut self, student_id: &str, text: &str, purpose: Purpose) -> Step {
        let Ok(pin) = Pin::parse(text) else {
            return self.say("invalid_pin", context! { student_id });
        };
        let id = StudentId::parse(student_id)?;
        let Some(check) = self.facts.pin_check.clone() else {
            return Err(Halt::Need(Need::CheckPin {
                student_id: id.as_str().to_string(),
                pin,
            }));
        };
        let (minutes, remaining) = match check {
            PinCheck::Verified(pk) => {
                let Some(child) = self.school.student(pk) else {
                    return self.unknown_choice();
                };
                if !self.session.verified.contains(&pk) {
                    self.session.verified.push(pk);
                }
                self.say(
                    "verified",
                    context! { student => child.name.clone(), class => child.class.clone() },
                )?;
                return self.with_child(purpose, child);
            }
            PinCheck::Locked { until } => (minutes_left(until, self.now), 0),
            PinCheck::Wrong { remaining: 0 } => (self.config.lockout.num_minutes(), 0),
            PinCheck::Wrong { remaining } => (0, remaining),
        };
        if remaining == 0 {
            self.say("pin_locked", context! { minutes })?;
            return self.menu();
        }
        // Still this student's PIN: a retyped PIN is read as a PIN, not as a student ID.
        self.say("pin_wrong", context! { remaining, student_id })?;
        self.session.state = State::AwaitingPin {
            student_id: student_id.to_string(),
            purpose,
        };
        Ok(())
    }

    fn pick(&mut self, id: &str) -> Step {
        let (kind, value) = id.split_once(':').unwrap_or((id, ""));
        let number = value.parse::<i64>().ok();
        match (kind, value, self.session.state.clone()) {
            ("menu", "menu", _) => self.menu(),
            ("menu", "help", _) => self.help(),
            ("menu", "language", _) => self.choose_language(),
            ("menu", intent, _) if Purpose::from_intent(intent).is_some() => {
                self.start(Purpose::from_intent(intent).expect("checked"))
            }
            ("lang", lang, _) if self.texts.languages().iter().any(|l| l == lang) => {
                self.set_language(lang)
            }
            ("add", "child", state) => {
                let purpose = match state {
                    State::ChoosingChild { purpose } => purpose,
                    _ => Purpose::Results,
                };
                self.ask_student_id(purpose)
            }
            ("child", _, State::ChoosingChild { purpose }) => {
                match self.allowed_child(number.unwrap_or(-1)) {
                    Some(child) => self.with_child(purpose, child),
                    None => self.unknown_choice(),
                }
            }
            ("exam", _, State::ChoosingExam { student, purpose }) => {
                let released = self.school.released_exams();
                match (
                    self.allowed_child(student),
                    number.filter(|n| released.iter().any(|e| e.id == *n)),
                ) {
                    (Some(child), Some(exam)) => self.exam_chosen(purpose, child, exam),
                    _ => self.unknown_choice(),
                }
            }
            ("term", _, State::ChoosingTerm { student }) => {
                let terms = self.school.attendance_terms(student);
                match (
                    self.allowed_child(student),
                    number.filter(|n| terms.iter().any(|t| t.id == *n)),
                ) {
                    (Some(child), Some(term)) => self.show_attendance(child, term),
                    _ => self.unknown_choice(),
                }
            }
            ("nav", "report", State::ViewingResults { student, exam }) => {
                match self.allowed_child(student) {
                    Some(child) => self.request_report(child, exam),
                    None => self.unknown_choice(),
                }
            }
            ("nav", "exams", State::ViewingResults { student, .. }) => {
                match self.allowed_child(student) {
                    Some(child) => self.with_child(Purpose::Results, child),
                    None => self.unknown_choice(),
                }
            }
            ("nav", "terms", State::ViewingAttendance { student, .. }) => {
                match self.allowed_child(student) {
                    Some(child) => self.with_child(Purpose::Attendance, child),
                    None => self.unknown_choice(),
                }
            }
            _ => self.unknown_choice(),
        }
    }

    fn unknown_choice(&mut self) -> Step {
        self.say("unknown_choice", context! {})?;
        self.menu()
    }

    /// One step back; where that lands on the same screen (one child, one exam...), the menu.
    fn back(&mut self) -> Step {
        let before = self.session.state.clone();
        match before.clone() {
            State::AwaitingPin { purpose, .. } => self.ask_student_id(purpose)?,
            State::ViewingResults { student, .. } => self.reopen(student, Purpose::Results)?,
            State::ViewingAttendance { student, .. } => {
                self.reopen(student, Purpose::Attendance)?
            }
            State::ChoosingExam { purpose, .. } => self.start(purpose)?,
            State::ChoosingTerm { .. } => self.start(Purpose::Attendance)?,
            _ => self.menu()?,
        }
        if self.session.state == before && before != State::MainMenu {
            self.replies.clear();
            self.menu()?;
        }
        Ok(())
    }

    fn reopen(&mut self, student: i64, purpose: Purpose) -> Step {
        match self.allowed_child(student) {
            Some(child) => self.with_child(purpose, child),
            None => self.menu(),
        }
    }
}

/// The conversation settings, checked when the configuration is loaded.
impl crate::config::Check for crate::config::Conversation {
    fn check(&mut self) -> Result<(), crate::config::Problem> {
        use crate::config::keys::conversation as key;
        for (key, value) in [
            (key::session_idle_minutes, self.session_idle_minutes),
            (key::pin_max_failures, self.pin_max_failures),
            (key::pin_lockout_minutes, self.pin_lockout_minutes),
        ] {
            key.require(value > 0, "must be at least 1")?;
        }
        key::snapshot_cache_mb.require_within(
            self.snapshot_cache_mb,
            1..=65_536,
            "megabytes (64 GiB)",
        )
    }
}

/// The engine's tunables, from the conversation settings.
impl From<&crate::config::Conversation> for EngineConfig {
    fn from(settings: &crate::config::Conversation) -> Self {
        Self {
            idle_timeout: chrono::Duration::minutes(settings.session_idle_minutes.into()),
            max_pin_failures: settings.pin_max_failures,
            lockout: chrono::Duration::minutes(settings.pin_lockout_minutes.into()),
        }
    }
}

#[cfg(test)]
mod tests;
