//! The demo schools: realistic content, stable credentials, idempotent seeding, clean removal.

mod common;

use std::collections::HashSet;

use chatbot::demo::{self, SHARED_PARENT_PHONE};
use chatbot::domain::{PhoneNumber, Pin, SchemaName, StudentId};
use chatbot::entities::{self, mark, student};
use chatbot::school::{attendance, calendar, notices, results, students, welcome};
use chatbot::tenancy;
use chrono::Utc;
use common::{TestApp, Variant};
use sea_orm::{EntityTrait, PaginatorTrait};

variants!(demo_school_is_realistic_and_reseeding_is_stable);

async fn demo_school_is_realistic_and_reseeding_is_stable(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (db, key) = (&app.state.db, &app.state.secret);
    assert!(demo::database_is_empty(db).await.unwrap());
    let creds = demo::seed(db, key).await.unwrap();
    assert!(creds.created);
    assert!(!demo::database_is_empty(db).await.unwrap());
    let names: Vec<&str> = creds
        .tenants
        .iter()
        .map(|t| t.schema_name.as_str())
        .collect();
    assert_eq!(names, ["demo", "demo-north"]);

    let main = &creds.tenants[0];
    let ctx = tenancy::by_schema_name(db, &SchemaName::parse("demo").unwrap())
        .await
        .unwrap();
    assert_eq!(ctx.find::<student::Entity>().count(db).await.unwrap(), 300);
    assert_eq!(main.students.len(), 300);
    let classes = students::classes(db, &ctx).await.unwrap();
    assert_eq!(classes.len(), 12);
    assert_eq!(
        classes
            .iter()
            .map(|c| c.form.as_str())
            .collect::<HashSet<_>>()
            .len(),
        6,
        "six forms"
    );
    assert!(
        main.students.iter().any(|s| !s.name.is_ascii()),
        "names with diacritics"
    );

    // Every listed parent's students are listed, with a PIN that verifies.
    let listed: HashSet<&str> = main
        .students
        .iter()
        .map(|s| s.student_id.as_str())
        .collect();
    for p in &main.parents {
        for id in &p.student_ids {
            assert!(
                listed.contains(id.as_str()),
                "{id} of {} is listed",
                p.phone
            );
        }
    }
    for s in main.students.iter().step_by(37) {
        let id = StudentId::parse(&s.student_id).unwrap();
        let ok = students::verify_pin(db, &ctx, key, &id, &Pin::parse(&s.pin).unwrap())
            .await
            .unwrap();
        assert!(ok.is_some(), "PIN of {} verifies", s.student_id);
    }

    // A parent with two children, mapped in the database.
    let two = main
        .parent_with_children(2)
        .expect("a parent with two children");
    let linked = students::linked_to_phone(db, &ctx, &PhoneNumber::parse(&two.phone).unwrap())
        .await
        .unwrap();
    assert_eq!(linked.len(), 2);
    assert_ne!(
        linked[0].class_id, linked[1].class_id,
        "siblings in different classes"
    );
    // Some students have no phone on file (ID + PIN path).
    assert!(
        main.students.len()
            > main
                .parents
                .iter()
                .map(|p| p.student_ids.len())
                .sum::<usize>()
    );

    // One phone linked to both schools.
    let shared = PhoneNumber::parse(SHARED_PARENT_PHONE).unwrap();
    let schools = tenancy::for_sender(db, &shared).await.unwrap();
    assert_eq!(
        schools
            .iter()
            .map(|c| c.0.schema_name())
            .collect::<Vec<_>>(),
        ["demo", "demo-north"]
    );
    assert_eq!(demo::shared_parent_children(&creds).len(), 2);

    // Two released terms of marks in ten subjects; the mid-term test is not released.
    let released = calendar::released_exam_sessions(db, &ctx).await.unwrap();
    assert_eq!(released.len(), 2);
    assert!(released.iter().all(|e| !e.name.contains("Mid-Term")));
    let kid = &linked[0];
    for exam in &released {
        let r = results::for_student(db, &ctx, kid, exam.id, true)
            .await
            .unwrap()
            .expect("results");
        assert_eq!(r.subjects.len(), 10);
        let (pos, size) = r.position.expect("position published");
        assert!(pos >= 1 && pos <= size && size == 25, "{pos}/{size}");
        assert!(
            r.subjects
                .iter()
                .all(|s| s.total == Some(s.ca.unwrap() + s.exam.unwrap()))
        );
    }
    assert_eq!(
        ctx.find::<mark::Entity>().count(db).await.unwrap(),
        300 * 10 * 3
    );

    // Attendance for two terms.
    let terms = calendar::terms(db, &ctx).await.unwrap();
    let with_attendance = {
        let mut n = 0;
        for t in &terms {
            let a = attendance::summary(db, &ctx, kid.id, t.id).await.unwrap();
            if a.days > 0 {
                n += 1;
                assert_eq!(a.present + a.absent + a.late, a.days);
                assert!(a.percentage.is_some());
            }
        }
        n
    };
    assert_eq!(with_attendance, 2);

    // Notices: current ones visible, expired and scheduled ones not; form/class targeting.
    let now = Utc::now();
    let current: Vec<String> = notices::current(db, &ctx, now)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.title)
        .collect();
    assert!(current.contains(&"Mid-term break".to_string()));
    assert!(
        !current.contains(&"Inter-house sports results".to_string()),
        "expired"
    );
    assert!(
        !current.contains(&"Next term's fees schedule".to_string()),
        "not yet published"
    );
    let jss1 = students::in_class(db, &ctx, classes[0].id).await.unwrap();
    let ss3 = students::in_class(db, &ctx, classes[11].id).await.unwrap();
    let for_jss1: Vec<String> = notices::current_for_student(db, &ctx, &jss1[0], now)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.title)
        .collect();
    let for_ss3: Vec<String> = notices::current_for_student(db, &ctx, &ss3[0], now)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.title)
        .collect();
    assert!(for_jss1.contains(&"Excursion to the National Museum".to_string()));
    assert!(!for_ss3.contains(&"Excursion to the National Museum".to_string()));
    assert!(for_ss3.contains(&"Chemistry practical".to_string()));
    assert!(!for_jss1.contains(&"Chemistry practical".to_string()));
    assert!(welcome::get(db, &ctx).await.unwrap().is_some());

    // The demo API key and business numbers resolve to the right schools.
    for t in &creds.tenants {
        assert_eq!(
            tenancy::by_api_key(db, &t.api_key)
                .await
                .unwrap()
                .tenant
                .schema_name(),
            t.schema_name
        );
        let (c, _) =
            tenancy::by_business_number(db, tenancy::Provider::Meta, &t.whatsapp.phone_number_id)
                .await
                .unwrap();
        assert_eq!(c.schema_name(), t.schema_name);
    }

    // Seeding again changes nothing and prints the same credentials.
    let rows = student::Entity::find().count(db).await.unwrap();
    let again = demo::seed(db, key).await.unwrap();
    assert!(!again.created);
    assert_eq!(
        serde_json::to_value(&again.tenants).unwrap(),
        serde_json::to_value(&creds.tenants).unwrap()
    );
    assert_eq!(student::Entity::find().count(db).await.unwrap(), rows);

    // Removing the demo removes every row it owned.
    demo::remove(db).await.unwrap();
    assert!(demo::database_is_empty(db).await.unwrap());
    assert_eq!(mark::Entity::find().count(db).await.unwrap(), 0);
    assert_eq!(
        entities::attendance::Entity::find()
            .count(db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        entities::whatsapp_contact::Entity::find()
            .count(db)
            .await
            .unwrap(),
        0
    );
    app.stop().await.unwrap();
}
