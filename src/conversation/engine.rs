//! The rules-first state machine every parent message goes through.
//!
//! [`handle`] takes the session, one inbound message, a read-only view of one school and the
//! time, and returns the next session, the replies and the effects to carry out. It does no
//! HTTP, no queueing and reads no clock. Whatever it cannot place comes back as `unhandled`
//! (with a short helpful reply and the menu, never silence).

use chrono::{DateTime, Duration, Utc};
use minijinja::{Value, context};
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};

use super::input::{
    canonical_id, choice_named, id_example, id_token, menu_number, normalize, pin_in, pin_shaped,
};
use super::reply::{Choice, MAX_LIST_ROWS, Reply};
use super::texts::Texts;
use super::view::{Child, SchoolView};
use crate::domain::{PhoneNumber, Pin, StudentId};
use crate::error::Result;
use crate::school::pin_limits::{Guesser, PinCheck, PinLimits, minutes_left};

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
}

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
    /// What the LLM fallback did with it, when it ran.
    pub llm: Option<crate::llm::Trace>,
}

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
pub async fn children<C: ConnectionTrait>(
    view: &SchoolView<'_, C>,
    phone: &PhoneNumber,
    session: &Session,
) -> Result<Vec<Child>> {
    let mut out: Vec<Child> = Vec::new();
    for model in view.linked(phone).await? {
        if let Some(child) = view.student(model.id).await? {
            out.push(child);
        }
    }
    for pk in &session.verified {
        if !out.iter().any(|c| c.model.id == *pk)
            && let Some(child) = view.student(*pk).await?
        {
            out.push(child);
        }
    }
    Ok(out)
}

/// The one child whose name `said` (normalized) holds: a word of a child's name that no other
/// child shares ("Temitope result", "results for aminu").
fn named_child(children: &[Child], said: &str) -> Option<Child> {
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
        [one] => Some(children[*one].clone()),
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
pub async fn handle<C: ConnectionTrait>(
    view: &SchoolView<'_, C>,
    texts: &Texts,
    config: &EngineConfig,
    phone: &PhoneNumber,
    session: Session,
    inbound: &Inbound,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let mut turn = Turn::new(view, texts, config, phone, session, now);
    turn.run(inbound).await?;
    Ok(turn.finish())
}

/// Run the turn of a message the rules could not place (`session` as it was before that
/// message) with what the LLM fallback decided.
pub async fn follow<C: ConnectionTrait>(
    view: &SchoolView<'_, C>,
    texts: &Texts,
    config: &EngineConfig,
    phone: &PhoneNumber,
    session: Session,
    followup: Followup,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    let mut turn = Turn::new(view, texts, config, phone, session, now);
    turn.follow(followup).await?;
    Ok(turn.finish())
}

struct Turn<'v, 'a, C: ConnectionTrait> {
    view: &'v SchoolView<'a, C>,
    texts: &'v Texts,
    config: &'v EngineConfig,
    phone: &'v PhoneNumber,
    now: DateTime<Utc>,
    session: Session,
    replies: Vec<Reply>,
    effects: Vec<Effect>,
    unhandled: Option<String>,
    /// The last choices stay answerable ("thanks", "I forgot my PIN" in the middle of a flow).
    keep_choices: bool,
}

impl<'v, 'a, C: ConnectionTrait> Turn<'v, 'a, C> {
    fn new(
        view: &'v SchoolView<'a, C>,
        texts: &'v Texts,
        config: &'v EngineConfig,
        phone: &'v PhoneNumber,
        session: Session,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            view,
            texts,
            config,
            phone,
            now,
            session,
            replies: Vec::new(),
            effects: Vec::new(),
            unhandled: None,
            keep_choices: false,
        }
    }

    fn finish(self) -> Outcome {
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
        Outcome {
            session,
            replies,
            effects,
            unhandled,
            llm: None,
        }
    }

    fn lang(&self) -> String {
        let wanted = self
            .session
            .lang
            .as_deref()
            .unwrap_or(&self.view.profile.default_language);
        self.texts.language(wanted).to_string()
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String> {
        let profile = &self.view.profile;
        let ctx = context! {
            school => profile.name.clone(),
            contact_phone => profile.contact_phone.clone(),
            contact_email => profile.contact_email.clone(),
            ..ctx
        };
        self.texts.render(&self.lang(), name, ctx)
    }

    fn say(&mut self, name: &str, ctx: Value) -> Result<()> {
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

    fn offer(&mut self, name: &str, ctx: Value, choices: Vec<Choice>, state: State) -> Result<()> {
        let text = self.render(name, ctx)?;
        self.offer_text(text, choices, state)
    }

    /// A reply with choices whose text is already rendered; the conversation moves to `state`.
    fn offer_text(&mut self, text: String, mut choices: Vec<Choice>, state: State) -> Result<()> {
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

    /// Who this conversation's PIN attempts are counted against, beside the student.
    fn guesser(&self) -> Guesser {
        self.view
            .guesser
            .clone()
            .unwrap_or_else(|| Guesser::phone(self.phone))
    }

    /// Minutes until this guesser may try PINs again, when it is paused.
    async fn paused_minutes(&self) -> Result<Option<i64>> {
        let (limits, guesser) = (self.config.pin_limits(), self.guesser());
        let until = self.view.pin_paused_until(&limits, &guesser, self.now);
        Ok(until.await?.map(|until| minutes_left(until, self.now)))
    }

    async fn run(&mut self, inbound: &Inbound) -> Result<()> {
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
            return self.greet_then(&said).await;
        }
        if self.session.state == State::Start {
            let welcome = self.view.welcome().await?;
            self.say("welcome", context! { welcome })?;
            return self.greet_then(&said).await;
        }
        if inbound.unsupported.is_some() {
            self.say("unsupported_message", context! {})?;
            return self.menu();
        }
        // 1. A tapped choice, a number, or (part of) the label of one of the last choices.
        if let Some(id) = self.picked(inbound, &said) {
            return self.pick(&id).await;
        }
        // 2. What the PIN and student ID prompts expect, before any keyword: a PIN is never
        // read as a student ID, and a student ID at the PIN prompt starts over with it.
        match self.session.state.clone() {
            State::AwaitingPin {
                student_id,
                purpose,
            } => {
                if let Some(pin) = pin_in(&said) {
                    return self.pin(&student_id, &pin, purpose).await;
                }
                let token = id_token(&inbound.text);
                if StudentId::parse(token).is_ok() && self.canonical_id(token).await?.is_some() {
                    return self.student_id(token, purpose).await;
                }
            }
            State::AwaitingStudentId { purpose } => {
                if pin_shaped(&said) && self.canonical_id(&said).await?.is_none() {
                    let example = self.id_example().await?;
                    return self.say("id_looks_like_pin", context! { example });
                }
                let token = id_token(&inbound.text);
                if token.chars().any(|c| c.is_ascii_digit())
                    && self.canonical_id(token).await?.is_some()
                {
                    return self.student_id(token, purpose).await;
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
            return self.intent(&intent, &said).await;
        }
        // 4. What this state expects.
        match self.session.state.clone() {
            State::AwaitingStudentId { purpose } => {
                return self.student_id(id_token(&inbound.text), purpose).await;
            }
            State::AwaitingPin { student_id, .. } => {
                // A format slip ("482", "48a1") costs no attempt.
                return self.say("invalid_pin", context! { student_id });
            }
            State::ChoosingChild { purpose } => {
                let children = self.children().await?;
                if let Some(child) = named_child(&children, &said) {
                    return self.with_child(purpose, child).await;
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
    async fn greet_then(&mut self, said: &str) -> Result<()> {
        match self.texts.intent(said).map(str::to_string) {
            Some(intent)
                if !matches!(
                    intent.as_str(),
                    "menu" | "back" | "stop" | "greeting" | "thanks" | "help"
                ) =>
            {
                self.intent(&intent, said).await
            }
            _ => self.menu(),
        }
    }

    /// A typed student ID in this school's format, when it has that shape.
    async fn canonical_id(&self, typed: &str) -> Result<Option<String>> {
        Ok(canonical_id(typed, &self.view.id_samples().await?))
    }

    /// A made-up student ID in this school's format.
    async fn id_example(&self) -> Result<String> {
        Ok(id_example(&self.view.id_samples().await?))
    }

    async fn intent(&mut self, intent: &str, said: &str) -> Result<()> {
        if let Some(purpose) = Purpose::from_intent(intent) {
            // "Temitope result": straight to the child named, when the phone may see them.
            if purpose != Purpose::Notices
                && let Some(child) = named_child(&self.children().await?, said)
            {
                return self.with_child(purpose, child).await;
            }
            return self.start(purpose).await;
        }
        if intent.starts_with(super::texts::TOPIC_PREFIX) {
            return self.notices_about(intent).await;
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
            "contact" | "absence" => {
                let text = self.render(intent, context! {})?;
                let choices = self.menu_choices()?;
                self.offer_text(text, choices, State::MainMenu)
            }
            "back" => self.back().await,
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
                self.ask_student_id(purpose).await
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

    fn menu(&mut self) -> Result<()> {
        let choices = self.menu_choices()?;
        self.offer("menu", context! {}, choices, State::MainMenu)
    }

    /// A question the notices may answer ("when does school resume?"): the current notices
    /// this phone may see that speak of it, or who to ask.
    async fn notices_about(&mut self, topic: &str) -> Result<()> {
        let children = self.children().await?;
        let words = self.texts.topic_words(topic);
        let notices: Vec<Value> = self
            .view
            .notices_for(&children, self.now)
            .await?
            .into_iter()
            .filter(|n| {
                let text = normalize(&format!("{} {}", n.title, n.body));
                words.iter().any(|w| w.said_in(&text))
            })
            .map(|n| context! { title => n.title, body => n.body })
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

    fn help(&mut self) -> Result<()> {
        self.say("help", context! {})?;
        self.menu()?;
        self.session.state = State::Help;
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.say("goodbye", context! {})?;
        self.session = Session {
            lang: self.session.lang.clone(),
            ..Session::default()
        };
        Ok(())
    }

    fn choose_language(&mut self) -> Result<()> {
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

    fn set_language(&mut self, lang: &str) -> Result<()> {
        self.session.lang = Some(self.texts.language(lang).to_string());
        self.say("language_set", context! {})?;
        self.menu()
    }

    /// Students this phone may see: mapped to it, or proven with ID + PIN in this conversation.
    async fn children(&self) -> Result<Vec<Child>> {
        children(self.view, self.phone, &self.session).await
    }

    async fn follow(&mut self, followup: Followup) -> Result<()> {
        match followup {
            Followup::Answer(text) => {
                self.replies.push(Reply::text(text));
                self.menu()
            }
            Followup::Canned(name) => {
                self.say(name, context! {})?;
                self.menu()
            }
            Followup::Act(action) => self.act(action).await,
        }
    }

    /// A flow the LLM chose. A child it names must be one this phone may see.
    async fn act(&mut self, action: Action) -> Result<()> {
        let (purpose, wanted) = match action {
            Action::Results(w) => (Purpose::Results, w),
            Action::Attendance(w) => (Purpose::Attendance, w),
            Action::Report(w) => (Purpose::Report, w),
            Action::Notices => return self.start(Purpose::Notices).await,
            Action::AddChild => return self.ask_student_id(Purpose::Results).await,
            Action::Menu => return self.menu(),
        };
        let Some(wanted) = wanted.filter(|w| !w.trim().is_empty()) else {
            return self.start(purpose).await;
        };
        let children = self.children().await?;
        let id = StudentId::parse(&wanted).ok();
        let name = normalize(&wanted);
        let found: Vec<&Child> = children
            .iter()
            .filter(|c| {
                id.as_ref()
                    .is_some_and(|id| c.model.student_id == id.as_str())
                    || normalize(&c.name) == name
                    || normalize(&c.model.first_name) == name
            })
            .collect();
        match found.as_slice() {
            [child] => {
                let child = (*child).clone();
                self.with_child(purpose, child).await
            }
            [] => {
                tracing::warn!(
                    tenant = self.view.tenant().schema_name(),
                    "LLM asked for a child outside this phone's verified scope; refused"
                );
                self.say("not_in_scope", context! {})?;
                self.menu()
            }
            _ => self.start(purpose).await,
        }
    }

    async fn allowed_child(&self, pk: i64) -> Result<Option<Child>> {
        Ok(self
            .children()
            .await?
            .into_iter()
            .find(|c| c.model.id == pk))
    }

    async fn start(&mut self, purpose: Purpose) -> Result<()> {
        let children = self.children().await?;
        if purpose == Purpose::Notices {
            let notices = self.view.notices_for(&children, self.now).await?;
            let notices: Vec<_> = notices
                .into_iter()
                .map(|n| context! { title => n.title, body => n.body })
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
            0 => self.ask_student_id(purpose).await,
            1 => {
                let child = children.into_iter().next().expect("one child");
                self.with_child(purpose, child).await
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

    async fn with_child(&mut self, purpose: Purpose, child: Child) -> Result<()> {
        let student = child.model.id;
        match purpose {
            Purpose::Results | Purpose::Report => {
                let exams = self.view.released_exams().await?;
                match exams.as_slice() {
                    [] => {
                        self.say("no_exams", context! {})?;
                        self.menu()
                    }
                    [exam] => self.exam_chosen(purpose, &child, exam.id).await,
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
                let terms = self.view.attendance_terms(student).await?;
                match terms.as_slice() {
                    [] => {
                        self.say("no_terms", context! { student => child.name.clone() })?;
                        self.menu()
                    }
                    [term] => self.show_attendance(&child, term.id).await,
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
            Purpose::Notices => Box::pin(self.start(Purpose::Notices)).await,
        }
    }

    async fn exam_chosen(&mut self, purpose: Purpose, child: &Child, exam_id: i64) -> Result<()> {
        if purpose == Purpose::Report {
            return self.request_report(child, exam_id).await;
        }
        let Some(results) = self.view.results(child, exam_id).await? else {
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

    async fn request_report(&mut self, child: &Child, exam_id: i64) -> Result<()> {
        let Some(exam) = self
            .view
            .released_exams()
            .await?
            .into_iter()
            .find(|e| e.id == exam_id)
        else {
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
            context! { student => child.name.clone(), exam => exam.name },
        )?;
        self.menu()
    }

    async fn show_attendance(&mut self, child: &Child, term_id: i64) -> Result<()> {
        let Some(term) = self.view.term(term_id).await? else {
            self.say("unknown_choice", context! {})?;
            return self.menu();
        };
        let a = self.view.attendance(child.model.id, term_id).await?;
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

    async fn ask_student_id(&mut self, purpose: Purpose) -> Result<()> {
        if let Some(minutes) = self.paused_minutes().await? {
            self.say("pin_locked", context! { minutes })?;
            return self.menu();
        }
        self.say("ask_student_id", context! {})?;
        self.session.state = State::AwaitingStudentId { purpose };
        Ok(())
    }

    async fn student_id(&mut self, text: &str, purpose: Purpose) -> Result<()> {
        let typed = self.canonical_id(text).await?;
        let Ok(id) = StudentId::parse(typed.as_deref().unwrap_or(text)) else {
            let example = self.id_example().await?;
            return self.say("invalid_student_id", context! { example });
        };
        // A child linked to this phone needs no PIN (and no lock on its PIN keeps them out).
        if let Some(child) = self
            .children()
            .await?
            .into_iter()
            .find(|c| c.model.student_id == id.as_str())
        {
            return self.with_child(purpose, child).await;
        }
        self.say("ask_pin", context! { student_id => id.as_str() })?;
        self.session.state = State::AwaitingPin {
            student_id: id.as_str().to_string(),
            purpose,
        };
        Ok(())
    }

    async fn pin(&mut self, student_id: &str, text: &str, purpose: Purpose) -> Result<()> {
        let Ok(pin) = Pin::parse(text) else {
            return self.say("invalid_pin", context! { student_id });
        };
        let id = StudentId::parse(student_id)?;
        let (limits, guesser) = (self.config.pin_limits(), self.guesser());
        let check = self.view.check_pin(&limits, &guesser, &id, &pin, self.now);
        let (minutes, remaining) = match check.await? {
            PinCheck::Verified(child) => {
                if !self.session.verified.contains(&child.model.id) {
                    self.session.verified.push(child.model.id);
                }
                self.say(
                    "verified",
                    context! { student => child.name.clone(), class => child.class.clone() },
                )?;
                return self.with_child(purpose, child).await;
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

    async fn pick(&mut self, id: &str) -> Result<()> {
        let (kind, value) = id.split_once(':').unwrap_or((id, ""));
        let number = value.parse::<i64>().ok();
        match (kind, value, self.session.state.clone()) {
            ("menu", "menu", _) => self.menu(),
            ("menu", "help", _) => self.help(),
            ("menu", "language", _) => self.choose_language(),
            ("menu", intent, _) if Purpose::from_intent(intent).is_some() => {
                self.start(Purpose::from_intent(intent).expect("checked"))
                    .await
            }
            ("lang", lang, _) if self.texts.languages().iter().any(|l| l == lang) => {
                self.set_language(lang)
            }
            ("add", "child", state) => {
                let purpose = match state {
                    State::ChoosingChild { purpose } => purpose,
                    _ => Purpose::Results,
                };
                self.ask_student_id(purpose).await
            }
            ("child", _, State::ChoosingChild { purpose }) => {
                match self.allowed_child(number.unwrap_or(-1)).await? {
                    Some(child) => self.with_child(purpose, child).await,
                    None => self.unknown_choice(),
                }
            }
            ("exam", _, State::ChoosingExam { student, purpose }) => {
                let released = self.view.released_exams().await?;
                match (
                    self.allowed_child(student).await?,
                    number.filter(|n| released.iter().any(|e| e.id == *n)),
                ) {
                    (Some(child), Some(exam)) => self.exam_chosen(purpose, &child, exam).await,
                    _ => self.unknown_choice(),
                }
            }
            ("term", _, State::ChoosingTerm { student }) => {
                let terms = self.view.attendance_terms(student).await?;
                match (
                    self.allowed_child(student).await?,
                    number.filter(|n| terms.iter().any(|t| t.id == *n)),
                ) {
                    (Some(child), Some(term)) => self.show_attendance(&child, term).await,
                    _ => self.unknown_choice(),
                }
            }
            ("nav", "report", State::ViewingResults { student, exam }) => {
                match self.allowed_child(student).await? {
                    Some(child) => self.request_report(&child, exam).await,
                    None => self.unknown_choice(),
                }
            }
            ("nav", "exams", State::ViewingResults { student, .. }) => {
                match self.allowed_child(student).await? {
                    Some(child) => self.with_child(Purpose::Results, child).await,
                    None => self.unknown_choice(),
                }
            }
            ("nav", "terms", State::ViewingAttendance { student, .. }) => {
                match self.allowed_child(student).await? {
                    Some(child) => self.with_child(Purpose::Attendance, child).await,
                    None => self.unknown_choice(),
                }
            }
            _ => self.unknown_choice(),
        }
    }

    fn unknown_choice(&mut self) -> Result<()> {
        self.say("unknown_choice", context! {})?;
        self.menu()
    }

    /// One step back; where that lands on the same screen (one child, one exam...), the menu.
    async fn back(&mut self) -> Result<()> {
        let before = self.session.state.clone();
        match before.clone() {
            State::AwaitingPin { purpose, .. } => self.ask_student_id(purpose).await?,
            State::ViewingResults { student, .. } => self.reopen(student, Purpose::Results).await?,
            State::ViewingAttendance { student, .. } => {
                self.reopen(student, Purpose::Attendance).await?
            }
            State::ChoosingExam { purpose, .. } => self.start(purpose).await?,
            State::ChoosingTerm { .. } => self.start(Purpose::Attendance).await?,
            _ => self.menu()?,
        }
        if self.session.state == before && before != State::MainMenu {
            self.replies.clear();
            self.menu()?;
        }
        Ok(())
    }

    async fn reopen(&mut self, student: i64, purpose: Purpose) -> Result<()> {
        match self.allowed_child(student).await? {
            Some(child) => self.with_child(purpose, child).await,
            None => self.menu(),
        }
    }
}
