//! The conversation engine as tables of turns over the demo school: (user says, bot says,
//! state after), on SQLite and PostgreSQL.

mod common;

use chatbot::conversation::{self, Facts, Inbound, Outcome, Session, State, World, engine};
use chatbot::demo::{self, DemoCredentials, SHARED_PARENT_PHONE};
use chatbot::domain::{PhoneNumber, SchemaName};
use chatbot::state::AppState;
use chatbot::tenancy::{self, TenantCtx};
use chrono::{DateTime, Duration, Utc};
use common::{TestApp, Variant};

variants!(
    parent_with_two_children_reaches_results_attendance_and_notices,
    stranger_verifies_with_student_id_and_pin,
    wrong_pins_lock_the_phone_out,
    sessions_expire_and_survive_a_restart,
    a_phone_never_sees_another_schools_children,
    text_the_rules_cannot_place_is_unhandled_but_answered,
    a_phone_linked_to_two_schools_chooses_one,
    a_parent_adds_another_child_with_id_and_pin,
    a_change_through_the_api_is_seen_by_the_next_message_in_another_process,
    a_snapshot_holds_only_its_own_schools_rows,
    turns_of_many_parents_at_once_are_committed_together_each_to_its_own,
);

/// One turn: what the user sends, phrases the bot's replies must contain, the state after.
struct Turn<'a> {
    say: &'a str,
    expect: Vec<&'a str>,
    state: &'a str,
}

fn t<'a>(say: &'a str, expect: &[&'a str], state: &'a str) -> Turn<'a> {
    Turn {
        say,
        expect: expect.to_vec(),
        state,
    }
}

struct Chat<'a> {
    state: &'a AppState,
    ctx: TenantCtx,
    phone: PhoneNumber,
    now: DateTime<Utc>,
}

impl Chat<'_> {
    async fn send(&mut self, text: &str) -> (Outcome, String) {
        self.now += Duration::seconds(20);
        let outcome = chatbot::pipeline::converse(
            self.state.turns(),
            &self.ctx,
            "terminal",
            &self.phone,
            &Inbound::text(text),
            self.now,
        )
        .await
        .unwrap();
        let shown = outcome
            .replies
            .iter()
            .map(|r| r.to_plain())
            .collect::<Vec<_>>()
            .join("\n---\n");
        (outcome.outcome, shown)
    }

    async fn play(&mut self, turns: &[Turn<'_>]) -> String {
        let mut transcript = String::new();
        for turn in turns {
            let (outcome, shown) = self.send(turn.say).await;
            transcript.push_str(&format!("you> {}\n{shown}\n", turn.say));
            for phrase in &turn.expect {
                assert!(
                    shown.contains(phrase),
                    "after {:?} expected {phrase:?} in:\n{shown}",
                    turn.say
                );
            }
            assert_eq!(
                outcome.session.state.name(),
                turn.state,
                "state after {:?}:\n{shown}",
                turn.say
            );
        }
        transcript
    }
}

async fn demo_app(v: Variant) -> Option<(TestApp, DemoCredentials)> {
    let app = TestApp::spawn(v).await?;
    let creds = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    Some((app, creds))
}

async fn ctx(app: &TestApp, slug: &str) -> TenantCtx {
    tenancy::by_schema_name(&app.state.db, &SchemaName::parse(slug).unwrap())
        .await
        .unwrap()
}

/// Today at 09:00 UTC. Not a fixed date: the demo school's notices are dated from the real
/// clock when it is seeded (a notice published three days ago was not yet out on a fixed
/// date a week back).
fn start() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .expect("a valid time")
        .and_utc()
}

async fn parent_with_two_children_reaches_results_attendance_and_notices(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let parent = creds.tenants[0].parent_with_children(2).unwrap();
    let kids: Vec<_> = creds.tenants[0]
        .students
        .iter()
        .filter(|s| parent.student_ids.contains(&s.student_id))
        .collect();
    let mut chat = Chat {
        state: &app.state,
        ctx: ctx(&app, "demo").await,
        phone: PhoneNumber::parse(&parent.phone).unwrap(),
        now: start(),
    };
    let first = kids[0].name.split(' ').next().unwrap();
    let transcript = chat
        .play(&[
            t(
                "Hello",
                &["Welcome to Greenfield Academy", "1. Results", "6. Language"],
                "main_menu",
            ),
            t("1", &["Which child?", "Another child"], "choosing_child"),
            t(
                &first.to_lowercase(),
                &["Which results", "Third Term Examination"],
                "choosing_exam",
            ),
            t(
                "2",
                &[
                    "Second Term Examination",
                    "Mathematics",
                    "Total",
                    "Position",
                    "of 25",
                ],
                "viewing_results",
            ),
            t("back", &["Which results"], "choosing_exam"),
            t("menu", &["How can I help you today?"], "main_menu"),
            t("atendance", &["Which child?"], "choosing_child"),
            t("2", &["which term"], "choosing_term"),
            t(
                "1",
                &["Present:", "Absent:", "Attendance:", "school days"],
                "viewing_attendance",
            ),
            t("other term", &["which term"], "choosing_term"),
            t(
                "noticez",
                &["Mid-term break", "Anything else?"],
                "viewing_notices",
            ),
            t("REPORT CARD", &["Which child?"], "choosing_child"),
            t("help", &["BACK", "STOP"], "help"),
            t("language", &["Français"], "choosing_language"),
            t("francais", &["français", "Résultats"], "main_menu"),
            t("résultats", &["Quel enfant"], "choosing_child"),
            t("stop", &["ne recevrez plus", "START"], "choosing_child"),
            t("Start", &["de nouveau"], "choosing_child"),
            t("annuler", &["Au revoir"], "start"),
            t("bonjour", &["Greenfield Academy", "Résultats"], "main_menu"),
        ])
        .await;
    // Notices for the two children's forms only; expired and scheduled ones never.
    assert!(!transcript.contains("Inter-house sports results"));
    assert!(!transcript.contains("fees schedule"));
    app.stop().await.unwrap();
}

async fn stranger_verifies_with_student_id_and_pin(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let unmapped = demo.students_without_phone().next().unwrap();
    let typed_id = format!(
        " {} ",
        unmapped.student_id.to_lowercase().replace('/', " / ")
    );
    let typed_id = typed_id.as_str();
    let pin = unmapped.pin.as_str();
    let wrong = if pin == "1111" { "2222" } else { "1111" };
    let name = unmapped.name.as_str();
    let mut chat = Chat {
        state: &app.state,
        ctx: ctx(&app, "demo").await,
        phone: PhoneNumber::parse("+2348099887766").unwrap(),
        now: start(),
    };
    chat.play(&[
        t(
            "results please",
            &["Welcome to Greenfield Academy", "student ID"],
            "awaiting_student_id",
        ),
        t(
            "???",
            &["does not look like a student ID"],
            "awaiting_student_id",
        ),
        t(typed_id, &["PIN for"], "awaiting_pin"),
        t("12", &["4 to 8 digits"], "awaiting_pin"),
        // A wrong PIN keeps the PIN prompt of that student; the ID sent again starts over.
        t(wrong, &["not right for", "4 attempts left"], "awaiting_pin"),
        t(typed_id, &["PIN for"], "awaiting_pin"),
        t(
            pin,
            &["verified for", name, "Which results"],
            "choosing_exam",
        ),
        t(
            "1",
            &["Third Term Examination", "Position"],
            "viewing_results",
        ),
        t("report card", &["preparing", "report card"], "main_menu"),
    ])
    .await;
    // The report request is an effect for the verified child.
    let (outcome, _) = chat.send("4").await;
    assert!(outcome.session.verified.len() == 1);

    // Another phone cannot ride on that verification.
    let mut other = Chat {
        state: &app.state,
        ctx: chat.ctx.clone(),
        phone: PhoneNumber::parse("+2348011110000").unwrap(),
        now: start(),
    };
    let transcript = other
        .play(&[
            t("hi", &["Welcome"], "main_menu"),
            t("results", &["student ID"], "awaiting_student_id"),
        ])
        .await;
    assert!(!transcript.contains(name));
    app.stop().await.unwrap();
}

async fn wrong_pins_lock_the_phone_out(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let s = &creds.tenants[0].students[11];
    let id = s.student_id.as_str();
    let pin = s.pin.as_str();
    let wrong = if pin == "0000" { "9999" } else { "0000" };
    let mut chat = Chat {
        state: &app.state,
        ctx: ctx(&app, "demo").await,
        phone: PhoneNumber::parse("+2348077770000").unwrap(),
        now: start(),
    };
    chat.play(&[
        t("hi", &["Welcome"], "main_menu"),
        t("attendance", &["student ID"], "awaiting_student_id"),
    ])
    .await;
    for left in ["4 attempts", "3 attempts", "2 attempts", "1 attempt left"] {
        chat.play(&[t(id, &["PIN for"], "awaiting_pin")]).await;
        let (outcome, shown) = chat.send(wrong).await;
        assert!(shown.contains(left), "{shown}");
        // Still that student's PIN prompt (sending the ID again starts over, at no cost).
        assert_eq!(
            outcome.session.state,
            State::AwaitingPin {
                student_id: id.to_string(),
                purpose: conversation::Purpose::Attendance
            }
        );
    }
    chat.play(&[
        t(id, &["PIN for"], "awaiting_pin"),
        t(wrong, &["paused for 15 minutes"], "main_menu"),
    ])
    .await;
    // Even the right PIN is refused while locked, and "cancel" does not lift the lock.
    chat.play(&[
        t("results", &["paused"], "main_menu"),
        t("cancel", &["Goodbye"], "start"),
        t("hi", &["Welcome"], "main_menu"),
        t("results", &["paused"], "main_menu"),
    ])
    .await;
    // After the lockout the right PIN works.
    chat.now += Duration::minutes(16);
    chat.play(&[
        t("results", &["student ID"], "awaiting_student_id"),
        t(id, &["PIN for"], "awaiting_pin"),
        t(pin, &["verified for"], "choosing_exam"),
    ])
    .await;
    app.stop().await.unwrap();
}

async fn sessions_expire_and_survive_a_restart(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let parent = creds.tenants[0].parent_with_children(1).unwrap();
    let mut chat = Chat {
        state: &app.state,
        ctx: ctx(&app, "demo").await,
        phone: PhoneNumber::parse(&parent.phone).unwrap(),
        now: start(),
    };
    chat.play(&[
        t("hi", &["Welcome"], "main_menu"),
        t("results", &["Which results"], "choosing_exam"),
    ])
    .await;

    // A second process on the same database picks the conversation up where it was.
    let restarted = chatbot::app::build_state(app.settings().clone())
        .await
        .unwrap();
    let mut again = Chat {
        state: &restarted,
        ctx: chat.ctx.clone(),
        phone: chat.phone.clone(),
        now: chat.now,
    };
    again
        .play(&[t(
            "1",
            &["Third Term Examination", "Total"],
            "viewing_results",
        )])
        .await;

    // 31 idle minutes later the conversation starts again at the menu, and says so.
    again.now += Duration::minutes(31);
    again
        .play(&[t(
            "2",
            &["timed out", "How can I help you today?"],
            "main_menu",
        )])
        .await;
    app.stop().await.unwrap();
}

async fn a_phone_never_sees_another_schools_children(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let shared = PhoneNumber::parse(SHARED_PARENT_PHONE).unwrap();
    let children = demo::shared_parent_children(&creds);
    let name_of = |school: usize, id: &str| {
        creds.tenants[school]
            .students
            .iter()
            .find(|s| s.student_id == id)
            .unwrap()
            .name
            .clone()
    };
    let demo_child = name_of(0, &children[0].1[0]);
    let north_child = name_of(1, &children[1].1[0]);
    for (slug, mine, theirs) in [
        ("demo", &demo_child, &north_child),
        ("demo-north", &north_child, &demo_child),
    ] {
        let mut chat = Chat {
            state: &app.state,
            ctx: ctx(&app, slug).await,
            phone: shared.clone(),
            now: start(),
        };
        let transcript = chat
            .play(&[
                t("hi", &["Welcome"], "main_menu"),
                if slug == "demo" {
                    t(
                        "results",
                        &["Which results", "Third Term Examination"],
                        "choosing_exam",
                    )
                } else {
                    t(
                        "results",
                        &["Third Term Examination", "Total"],
                        "viewing_results",
                    )
                },
            ])
            .await;
        assert!(
            transcript.contains(mine.as_str()),
            "{slug}: own child shown:\n{transcript}"
        );
        assert!(
            !transcript.contains(theirs.as_str()),
            "{slug}: other school's child leaked:\n{transcript}"
        );
    }

    // A forged choice naming the other school's student (even planted in the session) is refused.
    let demo_ctx = ctx(&app, "demo").await;
    let north_ctx = ctx(&app, "demo-north").await;
    let north_pk = chatbot::school::students::by_student_id(
        &app.state.db,
        &north_ctx,
        &chatbot::domain::StudentId::parse(&children[1].1[0]).unwrap(),
    )
    .await
    .unwrap()
    .unwrap()
    .id;
    let school = app
        .state
        .pipeline
        .turns
        .snapshots
        .get(&app.state.db, &demo_ctx)
        .await
        .unwrap();
    let facts = Facts::default();
    let config = Default::default();
    let world = World {
        school: &school,
        texts: conversation::texts(),
        config: &config,
        phone: &shared,
        facts: &facts,
        now: start(),
    };
    let forged = Session {
        state: State::ChoosingExam {
            student: north_pk,
            purpose: conversation::Purpose::Results,
        },
        choices: (1..=4)
            .map(|i| conversation::Choice {
                id: format!("exam:{i}"),
                label: format!("Exam {i}"),
            })
            .collect(),
        last_seen: Some(start()),
        ..Session::default()
    };
    for choice in ["exam:1", "exam:2", "exam:3", "exam:4"] {
        let inbound = Inbound {
            text: "x".into(),
            choice: Some(choice.into()),
            unsupported: None,
            provider_id: None,
        };
        let out = engine::handle(&world, forged.clone(), &inbound).unwrap();
        let shown = out.replies.iter().map(|r| r.to_plain()).collect::<String>();
        assert!(shown.contains("no longer available"), "{shown}");
        assert!(
            !shown.contains(&north_child) && !shown.contains("Total"),
            "{shown}"
        );
        assert!(out.effects.is_empty());
    }
    app.stop().await.unwrap();
}

async fn text_the_rules_cannot_place_is_unhandled_but_answered(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let mut chat = Chat {
        state: &app.state,
        ctx: ctx(&app, "demo").await,
        phone: PhoneNumber::parse(&creds.tenants[0].parents[0].phone).unwrap(),
        now: start(),
    };
    chat.play(&[t("hi", &["Welcome"], "main_menu")]).await;
    let (outcome, shown) = chat.send("did she improve compared to last term?").await;
    assert_eq!(
        outcome.unhandled.as_deref(),
        Some("did she improve compared to last term?")
    );
    assert!(
        shown.contains("did not understand") && shown.contains("1. Results"),
        "{shown}"
    );
    let (outcome, _) = chat.send("2").await;
    assert!(
        outcome.unhandled.is_none(),
        "numbered answer to the menu shown with the fallback"
    );
    app.stop().await.unwrap();
}

async fn a_phone_linked_to_two_schools_chooses_one(v: Variant) {
    use chatbot::pipeline::converse_as_sender;
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let shared = PhoneNumber::parse(SHARED_PARENT_PHONE).unwrap();
    let children = demo::shared_parent_children(&creds);
    let north_child = creds.tenants[1]
        .student(&children[1].1[0])
        .unwrap()
        .name
        .clone();
    let demo_child = creds.tenants[0]
        .student(&children[0].1[0])
        .unwrap()
        .name
        .clone();
    let mut now = start();
    async fn turn(
        state: &AppState,
        phone: &PhoneNumber,
        text: &str,
        at: DateTime<Utc>,
    ) -> (String, Option<String>, String) {
        let turn = chatbot::pipeline::converse_as_sender(
            state.turns(),
            "whatsapp",
            phone,
            &Inbound::text(text),
            at,
        )
        .await
        .unwrap();
        let shown = turn
            .replies
            .iter()
            .map(|r| r.to_plain())
            .collect::<Vec<_>>()
            .join("\n");
        (
            turn.state,
            turn.school.map(|s| s.schema_name().to_string()),
            shown,
        )
    }
    let mut say = async |text: &str| {
        now += Duration::seconds(30);
        turn(&app.state, &shared, text, now).await
    };
    let (state, school, shown) = say("hello").await;
    assert_eq!((state.as_str(), school), ("choosing_school", None));
    assert!(
        shown.contains("1. Greenfield Academy") && shown.contains("2. Northbridge College"),
        "{shown}"
    );
    let (state, school, shown) = say("2").await;
    assert_eq!(
        (state.as_str(), school.as_deref()),
        ("main_menu", Some("demo-north"))
    );
    assert!(shown.contains("Welcome to Northbridge College"), "{shown}");
    let (_, school, shown) = say("results").await;
    assert_eq!(school.as_deref(), Some("demo-north"));
    assert!(
        shown.contains(&north_child) && !shown.contains(&demo_child),
        "{shown}"
    );
    let (state, _, shown) = say("switch school").await;
    assert_eq!(state, "choosing_school", "{shown}");
    let (state, school, _) = say("greenfeild").await;
    assert_eq!(
        (state.as_str(), school.as_deref()),
        ("main_menu", Some("demo"))
    );
    let (_, _, shown) = say("results").await;
    assert!(
        shown.contains(&demo_child) && !shown.contains(&north_child),
        "{shown}"
    );

    // A phone no school knows gets told so, not a school's menu.
    let stranger = PhoneNumber::parse("+2348012340000").unwrap();
    let turn = converse_as_sender(
        app.state.turns(),
        "whatsapp",
        &stranger,
        &Inbound::text("hi"),
        start(),
    )
    .await
    .unwrap();
    assert_eq!((turn.state.as_str(), turn.school), ("unknown_sender", None));
    assert!(turn.replies[0].to_plain().contains("not registered"));
    app.stop().await.unwrap();
}

async fn a_parent_adds_another_child_with_id_and_pin(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let parent = demo.parent_with_children(2).unwrap();
    let other = demo.students_without_phone().next().unwrap();
    let mut chat = Chat {
        state: &app.state,
        ctx: ctx(&app, "demo").await,
        phone: PhoneNumber::parse(&parent.phone).unwrap(),
        now: start(),
    };
    chat.play(&[
        t("hi", &["Welcome"], "main_menu"),
        t("4", &["Which child?", "3. Another child"], "choosing_child"),
        t("3", &["student ID"], "awaiting_student_id"),
        t(&other.student_id, &["PIN for"], "awaiting_pin"),
        t("back", &["student ID"], "awaiting_student_id"),
        t(&other.student_id, &["PIN for"], "awaiting_pin"),
        t(
            &other.pin,
            &["verified for", &other.name, "Which results"],
            "choosing_exam",
        ),
        t("1", &["preparing", &other.name], "main_menu"),
        t(
            "results",
            &["Which child?", &other.name, "4. Another child"],
            "choosing_child",
        ),
        // Out of range for this list of four: the same list again, not the whole menu.
        t(
            "6",
            &["choose one of these", "4. Another child"],
            "choosing_child",
        ),
        t("menu", &["6. Language"], "main_menu"),
        t("6", &["1. English", "2. Français"], "choosing_language"),
        t("2", &["français"], "main_menu"),
        t("1", &["Quel enfant", "Autre enfant"], "choosing_child"),
    ])
    .await;
    app.stop().await.unwrap();
}

/// A second `chatbot serve` process on the same database, answering parents over the API.
struct OtherProcess {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
}

impl OtherProcess {
    async fn start(app: &TestApp) -> Self {
        let settings = app.settings();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatbot"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CHATBOT_DATA_DIR", &settings.storage.data_dir)
            .env("CHATBOT_LOG", "warn")
            .env("CHATBOT_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "CHATBOT_SECRET_KEY",
                secrecy::ExposeSecret::expose_secret(settings.secrets.secret_key.as_ref().unwrap()),
            )
            .stdout(std::process::Stdio::null());
        if let Some(url) = &settings.storage.database_url {
            cmd.env("DATABASE_URL", url.expose());
        }
        if let Some(url) = &settings.queue.redis_url {
            cmd.env("REDIS_URL", url.expose());
        }
        let child = cmd.args(["serve", "--no-workers"]).spawn().unwrap();
        let me = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        common::eventually(
            "the second process serves",
            std::time::Duration::from_secs(30),
            || async {
                me.http
                    .get(format!("{}/healthz", me.base))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        )
        .await;
        me
    }

    /// A parent's message through this process; every reply as plain text.
    async fn says(&self, key: &str, phone: &str, text: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/chatbot/messages/", self.base))
            .header("X-API-KEY", key)
            .json(&serde_json::json!({"phone": phone, "text": text}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let body: serde_json::Value = r.json().await.unwrap();
        body["replies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut text = r["text"].as_str().unwrap_or_default().to_string();
                for c in r["choices"].as_array().into_iter().flatten() {
                    text.push_str(&format!("\n{}", c["label"].as_str().unwrap_or_default()));
                }
                text
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 30: a notice published, an exam session released and a student imported through the
/// API of one process are seen by the very next message another process answers, though that
/// process had the school's snapshot cached.
async fn a_change_through_the_api_is_seen_by_the_next_message_in_another_process(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let demo = &creds.tenants[0];
    let key = demo.api_key.as_str();
    let parent = demo.parent_with_children(1).unwrap();
    let other = OtherProcess::start(&app).await;
    // The second process caches the school while answering.
    other.says(key, &parent.phone, "hi").await;
    let said = other.says(key, &parent.phone, "notices").await;
    assert!(
        said.contains("Mid-term break") && !said.contains("Inspection day"),
        "{said}"
    );
    let said = other.says(key, &parent.phone, "results").await;
    assert!(!said.contains("Mid-Term Test"), "{said}");
    let said = other.says(key, &parent.phone, "cancel").await;
    assert!(said.contains("Goodbye"), "{said}");

    // A notice through this process's API: the next message there shows it.
    let (status, body) = app
        .api(
            key,
            reqwest::Method::POST,
            "/notices/",
            Some(serde_json::json!({"title": "Inspection day", "body": "Inspectors visit on Monday.", "audience": "school"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    other.says(key, &parent.phone, "hi").await;
    let said = other.says(key, &parent.phone, "notices").await;
    assert!(said.contains("Inspection day"), "{said}");

    // An exam session released: the next results list there has it.
    let (_, sessions) = app
        .api(
            key,
            reqwest::Method::GET,
            "/exam-sessions/?released=false",
            None,
        )
        .await;
    let unreleased = sessions["results"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the demo has an unreleased session: {sessions}"));
    let (status, body) = app
        .api(
            key,
            reqwest::Method::POST,
            &format!("/exam-sessions/{unreleased}/release/"),
            None,
        )
        .await;
    assert!(status.is_success(), "{body}");
    let said = other.says(key, &parent.phone, "results").await;
    assert!(said.contains("Mid-Term Test"), "{said}");

    // A student imported: a stranger verifies them there at once.
    let r = app
        .http
        .post(app.url("/api/v1/chatbot/imports/students/"))
        .header("X-API-KEY", key)
        .header("Content-Type", "text/csv")
        .body("student_id,first_name,last_name,class,pin\nGFA/2026/9001,Kémi,Adéwálé,JSS 1A,2468\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let stranger = "+2348055512345";
    other.says(key, stranger, "hi").await;
    let said = other.says(key, stranger, "results").await;
    assert!(said.contains("student ID"), "{said}");
    other.says(key, stranger, "gfa-2026-9001").await;
    let said = other.says(key, stranger, "2468").await;
    assert!(said.contains("Kémi Adéwálé"), "{said}");
    drop(other);
    app.stop().await.unwrap();
}

/// Issue 30: a school's snapshot holds its own rows and no other school's, whatever they share
/// (a parent's phone linked in both).
async fn a_snapshot_holds_only_its_own_schools_rows(v: Variant) {
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let shared = PhoneNumber::parse(SHARED_PARENT_PHONE).unwrap();
    for (i, slug) in ["demo", "demo-north"].into_iter().enumerate() {
        let mine = &creds.tenants[i];
        let theirs = &creds.tenants[1 - i];
        let school = app
            .state
            .pipeline
            .turns
            .snapshots
            .get(&app.state.db, &ctx(&app, slug).await)
            .await
            .unwrap();
        assert_eq!(school.profile().schema_name, slug);
        let roster: Vec<&str> = school.roster().iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(roster.len(), mine.students.len(), "{slug}");
        for s in &mine.students {
            assert!(
                roster.contains(&s.student_id.as_str()),
                "{slug}: {}",
                s.student_id
            );
        }
        for s in &theirs.students {
            assert!(
                !roster.contains(&s.student_id.as_str()),
                "{slug} holds {}",
                s.student_id
            );
            assert!(school.by_student_id(&s.student_id).is_none());
        }
        // The phone linked in both schools sees, in each, that school's child only.
        let linked: Vec<String> = school
            .linked(&shared)
            .iter()
            .map(|c| c.model.student_id.clone())
            .collect();
        assert_eq!(linked.len(), 1, "{slug}: {linked:?}");
        assert!(mine.students.iter().any(|s| s.student_id == linked[0]));
        for exam in school.released_exams() {
            assert_eq!(exam.tenant_id, school.school_id());
        }
        for n in school.notices_for(&[], Utc::now()) {
            assert_eq!(n.tenant_id, school.school_id());
        }
    }
    app.stop().await.unwrap();
}

/// Group commit: the turns of 24 parents of two schools, all at once, three turns each. Every
/// turn's session and transcript rows are written (none lost, none doubled), each under its
/// own parent, session and school.
async fn turns_of_many_parents_at_once_are_committed_together_each_to_its_own(v: Variant) {
    use chatbot::entities::{chat_session, message_log};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let Some((app, creds)) = demo_app(v).await else {
        return;
    };
    let mut chats = Vec::new();
    for (school, slug) in [(0, "demo"), (1, "demo-north")] {
        let ctx = ctx(&app, slug).await;
        for parent in creds.tenants[school].parents.iter().take(12) {
            chats.push(Chat {
                state: &app.state,
                ctx: ctx.clone(),
                phone: PhoneNumber::parse(&parent.phone).unwrap(),
                now: start(),
            });
        }
    }
    assert_eq!(chats.len(), 24);
    let turns = ["hi", "notices", "menu"];
    let outcomes = futures::future::join_all(chats.iter_mut().map(|chat| async move {
        let mut replies = 0;
        for say in turns {
            replies += chat.send(say).await.0.replies.len();
        }
        replies
    }))
    .await;
    for (chat, replies) in chats.iter().zip(outcomes) {
        let sessions = chat_session::Entity::find()
            .filter(chat_session::Column::UserId.eq(chat.phone.as_str()))
            .filter(chat_session::Column::Channel.eq("terminal"))
            .filter(chat_session::Column::TenantId.eq(chat.ctx.id()))
            .all(&app.state.db)
            .await
            .unwrap();
        assert_eq!(sessions.len(), 1, "one session for {}", chat.phone.as_str());
        let session = &sessions[0];
        assert_eq!(session.state, "main_menu");
        let rows = message_log::Entity::find()
            .filter(message_log::Column::UserId.eq(chat.phone.as_str()))
            .filter(message_log::Column::Channel.eq("terminal"))
            .filter(message_log::Column::TenantId.eq(chat.ctx.id()))
            .order_by_asc(message_log::Column::Id)
            .all(&app.state.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), turns.len() + replies, "{}", chat.phone.as_str());
        assert!(
            rows.iter()
                .all(|r| r.chat_session_id == Some(session.id) && r.tenant_id == chat.ctx.id())
        );
        let said: Vec<_> = rows
            .iter()
            .filter(|r| r.direction == "in")
            .map(|r| r.body.as_str())
            .collect();
        assert_eq!(said, turns, "in order");
    }
    app.stop().await.unwrap();
}
