//! Property: no sequence of inputs makes the engine fail, leave its states, or reference or show
//! a student the phone is not verified for.

mod common;

use std::collections::HashSet;

use chatbot::conversation::{Effect, Inbound, State, store};
use chatbot::demo::{self, DemoCredentials};
use chatbot::domain::{PhoneNumber, SchemaName, StudentId};
use chatbot::entities::chat_session;
use chatbot::tenancy;
use chrono::{Duration, Utc};
use common::{TestApp, Variant};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sea_orm::{ColumnTrait, QueryFilter};

variants!(arbitrary_inputs_never_break_the_engine_or_leak);

#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Choice(String),
    Idle(i64),
}

fn steps(
    vocab: Vec<String>,
    ids: Vec<String>,
    pins: Vec<String>,
) -> impl Strategy<Value = Vec<Step>> {
    let word = proptest::sample::select(vocab).prop_map(Step::Text);
    let number = (1u32..13).prop_map(|n| Step::Text(n.to_string()));
    let random = "\\PC{0,40}".prop_map(Step::Text);
    let forged = (
        proptest::sample::select(vec![
            "child", "exam", "term", "nav", "menu", "lang", "add", "x",
        ]),
        proptest::sample::select(vec![
            "1", "2", "3", "7", "42", "300", "330", "report", "exams", "terms", "results", "fr",
            "child", "",
        ]),
    )
        .prop_map(|(k, v)| Step::Choice(format!("{k}:{v}")));
    let idle = (25i64..40).prop_map(Step::Idle);
    let single = prop_oneof![4 => word, 3 => number, 2 => random, 2 => forged, 1 => idle]
        .prop_map(|s| vec![s]);
    // A verification attempt: ask for a child, then an ID and a PIN from own, foreign and
    // unmapped students and garbage; random steps alone rarely line these three up.
    let attempt = (
        proptest::sample::select(vec![
            "results",
            "attendance",
            "another child",
            "report card",
        ]),
        proptest::sample::select(ids),
        proptest::sample::select(pins),
    )
        .prop_map(|(ask, id, pin)| vec![Step::Text(ask.into()), Step::Text(id), Step::Text(pin)]);
    proptest::collection::vec(prop_oneof![5 => single, 2 => attempt], 1..20)
        .prop_map(|chunks| chunks.into_iter().flatten().collect())
}

async fn arbitrary_inputs_never_break_the_engine_or_leak(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let creds: DemoCredentials = demo::seed(&app.state.db, &app.state.secret).await.unwrap();
    let demo_school = &creds.tenants[0];
    let ctx = tenancy::by_schema_name(&app.state.db, &SchemaName::parse("demo").unwrap())
        .await
        .unwrap();
    let parent = demo_school.parent_with_children(1).unwrap();
    let unmapped = demo_school.students_without_phone().next().unwrap();
    let north_child = &creds.tenants[1].students[0];

    let pk_of = |id: String| {
        let (db, ctx) = (&app.state.db, &ctx);
        async move {
            chatbot::school::students::by_student_id(db, ctx, &StudentId::parse(&id).unwrap())
                .await
                .unwrap()
                .unwrap()
                .id
        }
    };
    let own_pk = pk_of(parent.student_ids[0].clone()).await;
    // Students whose real ID and PIN are both among the inputs: the only ones that may verify.
    let first = &demo_school.students[0];
    let mut verifiable: Vec<(i64, String)> = Vec::new();
    for s in [unmapped, first] {
        verifiable.push((pk_of(s.student_id.clone()).await, s.name.clone()));
    }
    let verifiable_pks: Vec<i64> = verifiable.iter().map(|(pk, _)| *pk).collect();

    let mut vocab: Vec<String> = [
        "hi",
        "menu",
        "back",
        "help",
        "stop",
        "language",
        "results",
        "resluts",
        "attendance",
        "notices",
        "report card",
        "another child",
        "francais",
        "english",
        "bonjour",
        "retour",
        "",
        "   ",
        "0",
        "99",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    vocab.extend([
        unmapped.student_id.clone(),
        unmapped.student_id.to_lowercase(),
        unmapped.pin.clone(),
        "0000".into(),
        "123456".into(),
        north_child.student_id.clone(),
        north_child.pin.clone(),
        parent.student_ids[0].clone(),
    ]);

    // Names that must never appear unless that student was verified in the sequence.
    let own_name = demo_school
        .student(&parent.student_ids[0])
        .unwrap()
        .name
        .clone();
    let forbidden: Vec<String> = demo_school
        .students
        .iter()
        .chain(creds.tenants[1].students.iter())
        .map(|s| s.name.clone())
        .filter(|n| {
            let exempt = std::iter::once(&own_name).chain(verifiable.iter().map(|(_, name)| name));
            !exempt.into_iter().any(|e| e.contains(n.as_str()))
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();

    let handle = tokio::runtime::Handle::current();
    let cases = if v == Variant::Embedded { 64 } else { 24 };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ids = vec![
        unmapped.student_id.clone(),
        unmapped.student_id.to_lowercase(),
        parent.student_ids[0].clone(),
        north_child.student_id.clone(),
        demo_school.students[0].student_id.clone(),
        "NOPE/1".into(),
    ];
    let pins = vec![
        unmapped.pin.clone(),
        north_child.pin.clone(),
        demo_school.students[0].pin.clone(),
        "0000".into(),
        "12".into(),
    ];
    let result = runner.run(&steps(vocab, ids, pins), |sequence| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for phone in [parent.phone.as_str(), "+2348055500000"] {
                    let phone = PhoneNumber::parse(phone).unwrap();
                    ctx.delete_many::<chat_session::Entity>()
                        .filter(chat_session::Column::UserId.eq(phone.as_str()))
                        .exec(&app.state.db)
                        .await
                        .unwrap();
                    let mapped = phone.as_str() == parent.phone;
                    // Today (the demo's notices are dated from the real clock).
                    let mut now = Utc::now()
                        .date_naive()
                        .and_hms_opt(8, 0, 0)
                        .expect("a valid time")
                        .and_utc();
                    let mut with_staff = false;
                    for step in &sequence {
                        let inbound = match step {
                            Step::Text(t) => Inbound::text(t.clone()),
                            Step::Choice(c) => Inbound {
                                text: String::new(),
                                choice: Some(c.clone()),
                                unsupported: None,
                                provider_id: None,
                            },
                            Step::Idle(minutes) => {
                                now += Duration::minutes(*minutes);
                                continue;
                            }
                        };
                        now += Duration::seconds(5);
                        // The demo schools let `menu` through to the bot while staff have
                        // the conversation: it goes back to the bot.
                        let asks_for_menu = inbound.choice.as_deref() == Some("menu:menu")
                            || chatbot::conversation::texts()
                                .intent(&chatbot::conversation::input::normalize(&inbound.text))
                                == Some("menu");
                        if asks_for_menu {
                            with_staff = false;
                        }
                        let out = chatbot::pipeline::converse(
                            app.state.turns(),
                            &ctx,
                            "prop",
                            &phone,
                            &inbound,
                            now,
                        )
                        .await
                        .map_err(|e| TestCaseError::fail(format!("{step:?}: {e}")))?;
                        // Allowed: the phone's mapped child, and a child verified by ID + PIN.
                        let mut allowed: Vec<i64> = out.session.verified.clone();
                        if mapped {
                            allowed.push(own_pk);
                        }
                        prop_assert!(
                            out.session
                                .verified
                                .iter()
                                .all(|pk| verifiable_pks.contains(pk)),
                            "only a right ID + PIN verifies: {:?}",
                            out.session.verified
                        );
                        let referenced = match &out.session.state {
                            State::ChoosingExam { student, .. }
                            | State::ViewingResults { student, .. }
                            | State::ChoosingTerm { student }
                            | State::ViewingAttendance { student, .. } => Some(*student),
                            _ => None,
                        };
                        if let Some(pk) = referenced {
                            prop_assert!(allowed.contains(&pk), "state references student {pk}");
                        }
                        for e in &out.effects {
                            if let Effect::GenerateReport { student_id, .. } = e {
                                prop_assert!(
                                    allowed.contains(student_id),
                                    "report for student {student_id}"
                                );
                            }
                        }
                        // Once handed to staff, the bot says nothing (but to `menu`); until then,
                        // always something.
                        if with_staff {
                            prop_assert!(
                                out.replies.is_empty(),
                                "the bot answered {step:?} while staff are awaited"
                            );
                        } else {
                            prop_assert!(!out.replies.is_empty(), "never silence after {step:?}");
                        }
                        with_staff |= out
                            .effects
                            .iter()
                            .any(|e| matches!(e, Effect::Escalate { .. }));
                        let shown: String = out.replies.iter().map(|r| r.to_plain()).collect();
                        for name in &forbidden {
                            prop_assert!(
                                !shown.contains(name.as_str()),
                                "{name} shown after {step:?}:\n{shown}"
                            );
                        }
                        for (pk, name) in &verifiable {
                            let may_show = out.session.verified.contains(pk)
                                || (mapped && *pk == own_pk)
                                || own_name.contains(name.as_str());
                            if !may_show {
                                prop_assert!(
                                    !shown.contains(name.as_str()),
                                    "unverified {name} shown:\n{shown}"
                                );
                            }
                        }
                        if !mapped {
                            prop_assert!(
                                !shown.contains(own_name.as_str())
                                    || out.session.verified.contains(&own_pk)
                            );
                        }
                        // The stored session is the returned one.
                        let key = store::SessionKey {
                            channel: "prop",
                            user: phone.as_str(),
                        };
                        let (row, stored) = store::load(&app.state.db, &ctx, key).await.unwrap();
                        prop_assert_eq!(&stored, &out.session);
                        prop_assert_eq!(row.unwrap().state, out.session.state.name());
                    }
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    app.stop().await.unwrap();
}
