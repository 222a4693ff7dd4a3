//! Table tests of the pure engine over an in-memory school: no database, no server.

use super::*;
use crate::school::snapshot::fixture::{self, ONE_CHILD, STRANGER, TWO_CHILDREN, ZAINAB};

/// One conversation with the fixture school. PIN facts are answered as the database would:
/// Zainab's PIN is 4821; a wrong PIN leaves `remaining` attempts.
struct Chat {
    school: SchoolSnapshot,
    phone: PhoneNumber,
    session: Session,
    now: DateTime<Utc>,
    paused: Option<DateTime<Utc>>,
    remaining: u32,
}

impl Chat {
    fn new(phone: &str) -> Self {
        Self {
            school: fixture::school(),
            phone: PhoneNumber::parse(phone).unwrap(),
            session: Session::default(),
            now: fixture::now(),
            paused: None,
            remaining: 5,
        }
    }

    /// Send `text`; the outcome, and every reply as plain text.
    fn send(&mut self, text: &str) -> (Outcome, String) {
        let config = EngineConfig::default();
        let texts = crate::conversation::texts();
        let mut facts = Facts::default();
        loop {
            let world = World {
                school: &self.school,
                texts,
                config: &config,
                phone: &self.phone,
                facts: &facts,
                now: self.now,
            };
            let outcome = handle(&world, self.session.clone(), &Inbound::text(text)).unwrap();
            match outcome.need.clone() {
                None => {
                    self.session = outcome.session.clone();
                    self.now += Duration::minutes(1);
                    let shown = outcome
                        .replies
                        .iter()
                        .map(Reply::to_plain)
                        .collect::<Vec<_>>()
                        .join("\n");
                    return (outcome, shown);
                }
                Some(Need::PinPause) => facts.pin_paused_until = Some(self.paused),
                Some(Need::CheckPin { student_id, pin }) => {
                    facts.pin_check = Some(if let Some(until) = self.paused {
                        PinCheck::Locked { until }
                    } else if student_id == ZAINAB && pin.as_str() == "4821" {
                        PinCheck::Verified(50)
                    } else {
                        self.remaining -= 1;
                        PinCheck::Wrong {
                            remaining: self.remaining,
                        }
                    });
                }
            }
        }
    }

    /// Send each (text, words the replies hold, state afterwards).
    fn play(&mut self, turns: &[(&str, &[&str], &str)]) {
        for (text, words, state) in turns {
            let (outcome, shown) = self.send(text);
            for w in *words {
                assert!(shown.contains(w), "{text:?}: {w:?} not in\n{shown}");
            }
            assert_eq!(outcome.session.state.name(), *state, "{text:?}:\n{shown}");
        }
    }
}

/// One turn of `phone` from `session`, with no facts known.
fn once(phone: &str, session: Session, inbound: &Inbound) -> Outcome {
    in_world(phone, |world| handle(world, session, inbound).unwrap())
}

/// Run `f` in the fixture school's world, for `phone`, at the fixture's time.
fn in_world<T>(phone: &str, f: impl FnOnce(&World<'_>) -> T) -> T {
    let school = fixture::school();
    let phone = PhoneNumber::parse(phone).unwrap();
    let world = World {
        school: &school,
        texts: crate::conversation::texts(),
        config: &EngineConfig::default(),
        phone: &phone,
        facts: &Facts::default(),
        now: fixture::now(),
    };
    f(&world)
}

#[test]
fn a_child_named_in_a_run_on_first_message_goes_straight_to_their_results() {
    let mut chat = Chat::new(TWO_CHILDREN);
    chat.play(&[
        (
            "Good afternoon, I want to check Temitope result",
            &["Welcome to Grace Field Academy", "Tèmítọ́pẹ́"],
            "choosing_exam",
        ),
        (
            "third term",
            &["Third Term Examination", "Mathematics", "Position: 1"],
            "viewing_results",
        ),
        ("thank you", &["welcome"], "viewing_results"),
        ("2", &["Which results", "Tèmítọ́pẹ́"], "choosing_exam"),
        (
            "the blue one",
            &["choose one of these", "1. Third Term"],
            "choosing_exam",
        ),
        ("last exam", &["Third Term Examination"], "viewing_results"),
    ]);
}

#[test]
fn attendance_asked_as_a_question_with_a_partial_term() {
    let mut chat = Chat::new(ONE_CHILD);
    chat.play(&[
        ("hi", &["Welcome"], "main_menu"),
        (
            "was she in school today?",
            &["Chiamaka", "which term"],
            "choosing_term",
        ),
        (
            "2nd term",
            &["Second Term 2026", "58", "2"],
            "viewing_attendance",
        ),
    ]);
}

#[test]
fn a_phone_sees_only_its_active_children() {
    let school = fixture::school();
    let session = Session::default();
    let names = |phone: &str| -> Vec<String> {
        children(&school, &PhoneNumber::parse(phone).unwrap(), &session)
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(names(TWO_CHILDREN), ["Aminu Bello", "Tèmítọ́pẹ́ Adéyẹmí"]);
    assert_eq!(names(ONE_CHILD), ["Chiamaka Okafor"], "Ngozi has left");
    assert!(names(STRANGER).is_empty());
    // One child: results go straight to her, not to a choice.
    let mut chat = Chat::new(ONE_CHILD);
    chat.play(&[
        ("hi", &[], "main_menu"),
        ("results", &["Chiamaka"], "choosing_exam"),
    ]);
}

#[test]
fn pin_entry_forgives_slips_and_stays_on_the_student() {
    let mut chat = Chat::new(STRANGER);
    chat.play(&[
        ("hi", &[], "main_menu"),
        ("results", &["student ID"], "awaiting_student_id"),
        (
            "4821",
            &["looks like a PIN", "GFA/2026/0001"],
            "awaiting_student_id",
        ),
        ("gfa-2026-0050", &["PIN for GFA/2026/0050"], "awaiting_pin"),
        ("48a", &["did not count"], "awaiting_pin"),
        (
            "1234",
            &["not right for GFA/2026/0050", "4 attempts left"],
            "awaiting_pin",
        ),
        (
            "my pin is 4821",
            &["verified", "Zainab Musa"],
            "choosing_exam",
        ),
    ]);
    assert_eq!(
        chat.remaining, 4,
        "one attempt spent, on the wrong PIN only"
    );
    assert_eq!(chat.session.verified, [50]);
}

#[test]
fn a_paused_guesser_is_told_and_nothing_is_checked() {
    let mut chat = Chat::new(STRANGER);
    chat.paused = Some(fixture::now() + Duration::minutes(10));
    chat.play(&[
        ("hi", &[], "main_menu"),
        ("results", &["paused"], "main_menu"),
    ]);
    assert_eq!(chat.remaining, 5);
    // Without the fact, the engine asks for it instead of guessing.
    let session = Session {
        state: State::MainMenu,
        last_seen: Some(fixture::now()),
        ..Session::default()
    };
    let outcome = once(STRANGER, session, &Inbound::text("add child"));
    assert_eq!(outcome.need, Some(Need::PinPause));
}

#[test]
fn notices_are_current_and_for_the_childs_class_or_form() {
    let mut chat = Chat::new(ONE_CHILD);
    let (_, shown) = chat.send("notices");
    assert!(
        shown.contains("Mid-term break") && shown.contains("Excursion"),
        "{shown}"
    );
    for hidden in ["Chemistry practical", "fees", "Sports day"] {
        assert!(!shown.contains(hidden), "{hidden}: {shown}");
    }
    chat.play(&[
        (
            "when does school resume?",
            &["Mid-term break", "Wednesday"],
            "viewing_notices",
        ),
        (
            "how much are the fees",
            &["No current notice", "+2348000000100"],
            "main_menu",
        ),
    ]);
    // A stranger sees whole-school notices only.
    let mut chat = Chat::new(STRANGER);
    let (_, shown) = chat.send("notices");
    assert!(
        shown.contains("Mid-term break") && !shown.contains("Excursion"),
        "{shown}"
    );
}

#[test]
fn help_seeking_and_courtesy_get_a_line_not_the_menu() {
    let mut chat = Chat::new(TWO_CHILDREN);
    chat.play(&[
        ("hello", &["Welcome"], "main_menu"),
        (
            "I want to speak to a teacher",
            &["+2348000000100", "office@gracefield.example"],
            "main_menu",
        ),
        (
            "my child was sick yesterday",
            &["tell the school directly"],
            "main_menu",
        ),
        ("God bless you", &["welcome"], "main_menu"),
        ("en français svp", &["français"], "main_menu"),
    ]);
    let (outcome, shown) = chat.send("ok");
    assert!(!shown.contains("1."), "no menu dump: {shown}");
    assert!(outcome.unhandled.is_none());
}

fn escalated(outcome: &Outcome) -> Option<&str> {
    outcome.effects.iter().find_map(|e| match e {
        Effect::Escalate { reason } => Some(reason.as_str()),
        _ => None,
    })
}

#[test]
fn asking_for_a_person_hands_the_conversation_to_staff() {
    for (phone, said) in [
        (TWO_CHILDREN, "can I talk to a real person please"),
        (STRANGER, "hi, I want to speak to a human"),
        (ONE_CHILD, "je veux parler a une personne"),
    ] {
        let mut chat = Chat::new(phone);
        let (outcome, shown) = chat.send(said);
        assert_eq!(escalated(&outcome), Some("asked"), "{said}: {shown}");
        assert!(
            shown.contains("+2348000000100"),
            "the school's contact too: {shown}"
        );
        assert!(outcome.unhandled.is_none());
    }
    // Asking for the school's number is not asking for a person.
    let mut chat = Chat::new(TWO_CHILDREN);
    chat.send("hi");
    let (outcome, _) = chat.send("what is the school phone number");
    assert_eq!(escalated(&outcome), None);
}

#[test]
fn two_messages_in_a_row_nothing_placed_go_to_staff() {
    let mut chat = Chat::new(TWO_CHILDREN);
    chat.send("hi");
    let (first, _) = chat.send("blorptastic zimzam");
    assert_eq!((escalated(&first), first.session.unanswered), (None, 1));
    // Answered in between: the count starts again.
    let (menu, _) = chat.send("menu");
    assert_eq!(menu.session.unanswered, 0);
    chat.send("quixotic flumph");
    let (second, shown) = chat.send("wibblewobble snark");
    assert_eq!(escalated(&second), Some("unanswered"), "{shown}");
    assert_eq!(second.replies.len(), 1, "the handoff alone: {shown}");
    assert!(shown.contains("someone from"), "{shown}");
    assert_eq!(second.session.unanswered, 0);
    // The model that could not answer either counts the same (`follow` with a canned reply).
    let one = Session {
        unanswered: 1,
        ..first.session.clone()
    };
    let canned = in_world(TWO_CHILDREN, |world| {
        follow(world, one.clone(), Followup::Canned("llm_unavailable")).unwrap()
    });
    assert_eq!(escalated(&canned), Some("unanswered"));
    let answered = in_world(TWO_CHILDREN, |world| {
        follow(
            world,
            one,
            Followup::Answer("Term starts on Monday.".into()),
        )
        .unwrap()
    });
    assert_eq!(
        (escalated(&answered), answered.session.unanswered),
        (None, 0)
    );
}

#[test]
fn what_the_rules_cannot_place_is_one_line_and_the_menu() {
    let mut chat = Chat::new(TWO_CHILDREN);
    chat.send("hi");
    let (outcome, shown) = chat.send("did she improve compared to last term?");
    assert_eq!(
        outcome.unhandled.as_deref(),
        Some("did she improve compared to last term?")
    );
    assert_eq!(outcome.replies.len(), 1, "{shown}");
    assert!(shown.contains("did not understand") && shown.contains("1. Results"));
}

#[test]
fn a_verified_child_of_another_phone_is_never_shown() {
    // The stranger names a child of another family: nothing of them is shown.
    let mut chat = Chat::new(STRANGER);
    chat.send("hi");
    let (_, shown) = chat.send("Temitope result");
    assert!(
        !shown.contains("Tèmítọ́pẹ́") && !shown.contains("GFA/2026/0001"),
        "{shown}"
    );
    assert_eq!(chat.session.state.name(), "awaiting_student_id");
    // A forged choice id of another family's child is refused.
    let session = Session {
        state: State::ChoosingChild {
            purpose: Purpose::Results,
        },
        last_seen: Some(fixture::now()),
        choices: vec![Choice {
            id: "child:1".into(),
            label: "x".into(),
        }],
        ..Session::default()
    };
    let inbound = Inbound {
        choice: Some("child:1".into()),
        ..Inbound::text("x")
    };
    let outcome = once(STRANGER, session, &inbound);
    let shown: String = outcome.replies.iter().map(Reply::to_plain).collect();
    assert!(!shown.contains("Tèmítọ́pẹ́"), "{shown}");
}
