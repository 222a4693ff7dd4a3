//! A school sees only its own rows: tenant resolution and every query path that exists, checked
//! from both sides with two schools that share natural keys.

mod common;

use chatbot::domain::{PhoneNumber, Pin, SchemaName, StudentId};
use chatbot::entities::{self, TenantOwned};
use chatbot::error::Error;
use chatbot::pipeline::cleanup::delete_expired_sessions;
use chatbot::school::{attendance, calendar, notices, results, students, welcome};
use chatbot::tenancy::{self, Provider, TenantCtx};
use chrono::Utc;
use common::fixture::{SHARED_PHONE, STUDENT_ID};
use common::{TestApp, Variant};
use sea_orm::{DatabaseConnection, EntityTrait, ModelTrait, PaginatorTrait, Value};

variants!(
    resolution_rules_find_the_right_school,
    query_paths_never_cross_tenants,
    every_table_is_scoped,
    deleting_a_tenant_removes_only_its_rows,
    one_welcome_message_per_tenant,
);

async fn resolution_rules_find_the_right_school(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let db = &app.state.db;
    let (a, b) = app.two_schools().await;
    for s in [&a, &b] {
        let name = SchemaName::parse(s.ctx.schema_name()).unwrap();
        assert_eq!(tenancy::by_schema_name(db, &name).await.unwrap(), s.ctx);
        let upper = SchemaName::parse(&s.ctx.schema_name().to_uppercase()).unwrap();
        assert_eq!(
            tenancy::by_schema_name(db, &upper).await.unwrap(),
            s.ctx,
            "slug is case-insensitive"
        );
        assert_eq!(
            tenancy::by_domain(db, &format!("{}:8443", s.domain.to_uppercase()))
                .await
                .unwrap(),
            s.ctx
        );
        let (ctx, number) = tenancy::by_business_number(db, Provider::Meta, &s.phone_number_id)
            .await
            .unwrap();
        assert_eq!(ctx, s.ctx);
        assert_eq!(number.tenant_id, s.ctx.id());
        let (ctx, _) = tenancy::by_business_number(
            db,
            Provider::Twilio,
            &format!("whatsapp:{}", s.twilio_number),
        )
        .await
        .unwrap();
        assert_eq!(ctx, s.ctx);
        let key = tenancy::by_api_key(db, &s.api_key).await.unwrap();
        assert_eq!(key.tenant, s.ctx);
        assert_eq!(key.scopes, vec!["admin"]);
    }
    // A Meta phone_number_id is not a Twilio number, and vice versa.
    assert!(
        tenancy::by_business_number(db, Provider::Twilio, &a.phone_number_id)
            .await
            .is_err()
    );
    assert!(
        tenancy::by_business_number(db, Provider::Meta, &a.twilio_number)
            .await
            .is_err()
    );

    // The phone linked to both schools resolves to both, oldest link first.
    let shared = PhoneNumber::parse(SHARED_PHONE).unwrap();
    assert_eq!(
        tenancy::for_sender(db, &shared).await.unwrap(),
        vec![(a.ctx.clone(), true), (b.ctx.clone(), true)]
    );
    let stranger = PhoneNumber::parse("+2348011112222").unwrap();
    assert!(tenancy::for_sender(db, &stranger).await.unwrap().is_empty());

    // Unknown things are clear errors, not someone else's school.
    let unknown = SchemaName::parse("gamma").unwrap();
    assert!(
        matches!(tenancy::by_schema_name(db, &unknown).await, Err(Error::NotFound(m)) if m.contains("gamma"))
    );
    assert!(matches!(
        tenancy::by_domain(db, "evil.test").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        tenancy::by_api_key(db, "cbk_wrong").await,
        Err(Error::Unauthorized(_))
    ));

    // A revoked key stops working at once.
    use sea_orm::{ActiveModelTrait, Set};
    let row = a
        .ctx
        .find::<entities::api_key::Entity>()
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let mut active: entities::api_key::ActiveModel = row.into();
    active.revoked_at = Set(Some(Utc::now()));
    active.update(db).await.unwrap();
    assert!(matches!(
        tenancy::by_api_key(db, &a.api_key).await,
        Err(Error::Unauthorized(_))
    ));
    assert!(tenancy::by_api_key(db, &b.api_key).await.is_ok());

    // A second tenant with a taken slug or domain is refused.
    let dup = tenancy::create(
        db,
        tenancy::NewTenant {
            schema_name: SchemaName::parse("alpha").unwrap(),
            name: "x".into(),
            time_zone: "UTC".into(),
            default_language: "en".into(),
            publish_position: false,
            address: None,
            contact_phone: None,
            contact_email: None,
            motto: None,
            domains: vec![],
        },
    )
    .await;
    assert!(matches!(dup, Err(Error::Conflict(_))));
    app.stop().await.unwrap();
}

async fn query_paths_never_cross_tenants(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let (db, key) = (&app.state.db, &app.state.secret);
    let (a, b) = app.two_schools().await;
    let sid = StudentId::parse("stu / 001").unwrap();
    assert_eq!(sid.as_str(), STUDENT_ID);
    let shared = PhoneNumber::parse(SHARED_PHONE).unwrap();
    let now = Utc::now();

    for (me, other) in [(&a, &b), (&b, &a)] {
        let ctx = &me.ctx;
        let mine = students::by_student_id(db, ctx, &sid)
            .await
            .unwrap()
            .expect("own student");
        assert_eq!((mine.id, mine.tenant_id), (me.student.id, ctx.id()));
        assert!(
            students::by_pk(db, ctx, other.student.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            students::by_pk(db, ctx, me.student.id)
                .await
                .unwrap()
                .is_some()
        );

        let my_pin = Pin::parse(&me.pin).unwrap();
        let their_pin = Pin::parse(&other.pin).unwrap();
        assert_eq!(
            students::verify_pin(db, ctx, key, &sid, &my_pin)
                .await
                .unwrap()
                .map(|s| s.id),
            Some(me.student.id)
        );
        assert!(
            students::verify_pin(db, ctx, key, &sid, &their_pin)
                .await
                .unwrap()
                .is_none(),
            "other school's PIN"
        );

        let linked = students::linked_to_phone(db, ctx, &shared).await.unwrap();
        assert_eq!(
            linked.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![me.student.id]
        );

        let classes = students::classes(db, ctx).await.unwrap();
        assert_eq!(
            classes.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![me.class_id]
        );
        assert!(
            students::class(db, ctx, other.class_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            students::in_class(db, ctx, other.class_id)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            students::in_class(db, ctx, me.class_id)
                .await
                .unwrap()
                .len(),
            1
        );

        assert!(
            calendar::academic_sessions(db, ctx)
                .await
                .unwrap()
                .iter()
                .all(|s| s.tenant_id == ctx.id())
        );
        assert_eq!(
            calendar::terms(db, ctx)
                .await
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>(),
            vec![me.term_id]
        );
        assert!(
            calendar::term(db, ctx, other.term_id)
                .await
                .unwrap()
                .is_none()
        );
        let released = calendar::released_exam_sessions(db, ctx).await.unwrap();
        assert_eq!(
            released.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![me.exam_id],
            "only released, only mine"
        );
        assert!(
            calendar::exam_session(db, ctx, other.exam_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            calendar::exam_session(db, ctx, me.unreleased_exam_id)
                .await
                .unwrap()
                .is_some()
        );

        let r = results::for_student(db, ctx, &mine, me.exam_id, true)
            .await
            .unwrap()
            .expect("own results");
        assert_eq!(r.subjects.len(), 1);
        assert_eq!(r.subjects[0].total, Some(me.maths_total));
        assert_eq!(r.subjects[0].subject, me.subject_name);
        assert_eq!(r.position, Some((1, 1)));
        assert!(
            results::for_student(db, ctx, &mine, other.exam_id, true)
                .await
                .unwrap()
                .is_none(),
            "foreign exam id"
        );
        assert!(
            results::for_student(db, ctx, &other.student, me.exam_id, true)
                .await
                .unwrap()
                .is_none(),
            "foreign student"
        );
        assert!(
            results::for_student(db, ctx, &mine, me.unreleased_exam_id, true)
                .await
                .unwrap()
                .is_none(),
            "unreleased"
        );

        let att = attendance::summary(db, ctx, me.student.id, me.term_id)
            .await
            .unwrap();
        assert_eq!((att.days, att.absent), (me.attendance_days, 1));
        assert_eq!(
            attendance::summary(db, ctx, other.student.id, other.term_id)
                .await
                .unwrap()
                .days,
            0
        );

        let titles: Vec<String> = notices::current(db, ctx, now)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.title)
            .collect();
        assert_eq!(titles, vec![me.notice_title.clone()]);
        let for_other: Vec<String> = notices::current_for_student(db, ctx, &other.student, now)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.title)
            .collect();
        assert_eq!(
            for_other,
            vec![me.notice_title.clone()],
            "never the other school's notices"
        );

        assert_eq!(
            welcome::get(db, ctx).await.unwrap().map(|w| w.body),
            Some(me.welcome.clone())
        );
    }

    // Maintenance through one context deletes only that school's sessions.
    assert_eq!(delete_expired_sessions(db, &a.ctx, now).await.unwrap(), 1);
    assert_eq!(
        b.ctx
            .find::<entities::chat_session::Entity>()
            .count(db)
            .await
            .unwrap(),
        1
    );
    app.stop().await.unwrap();
}

/// All rows a context reaches carry its tenant id, and the other school's rows exist (so the
/// filter had something to exclude).
async fn sweep<E>(db: &DatabaseConnection, ctx: &TenantCtx, table: &str)
where
    E: TenantOwned,
    E::Model: ModelTrait<Entity = E> + Sync,
{
    let scoped = ctx.find::<E>().all(db).await.unwrap();
    let total = E::find().count(db).await.unwrap() as usize;
    assert!(
        !scoped.is_empty(),
        "{table}: fixture has rows for this tenant"
    );
    assert!(
        total > scoped.len(),
        "{table}: the other tenant has rows too"
    );
    for row in &scoped {
        assert_eq!(
            row.get(E::tenant_column()),
            Value::BigInt(Some(ctx.id())),
            "{table}"
        );
    }
}

async fn every_table_is_scoped(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let db = &app.state.db;
    let (a, b) = app.two_schools().await;
    for ctx in [&a.ctx, &b.ctx] {
        use entities::*;
        sweep::<academic_session::Entity>(db, ctx, "academic_sessions").await;
        sweep::<api_key::Entity>(db, ctx, "api_keys").await;
        sweep::<attendance::Entity>(db, ctx, "attendance").await;
        sweep::<chat_session::Entity>(db, ctx, "chat_sessions").await;
        sweep::<class::Entity>(db, ctx, "classes").await;
        sweep::<exam_session::Entity>(db, ctx, "exam_sessions").await;
        sweep::<mark::Entity>(db, ctx, "marks").await;
        sweep::<message_log::Entity>(db, ctx, "message_log").await;
        sweep::<notice::Entity>(db, ctx, "notices").await;
        sweep::<report::Entity>(db, ctx, "reports").await;
        sweep::<student::Entity>(db, ctx, "students").await;
        sweep::<student_mapping::Entity>(db, ctx, "whatsapp_student_mappings").await;
        sweep::<subject::Entity>(db, ctx, "subjects").await;
        sweep::<tenant_domain::Entity>(db, ctx, "tenant_domains").await;
        sweep::<term::Entity>(db, ctx, "terms").await;
        sweep::<welcome_message::Entity>(db, ctx, "welcome_messages").await;
        sweep::<whatsapp_contact::Entity>(db, ctx, "whatsapp_contacts").await;
        sweep::<whatsapp_number::Entity>(db, ctx, "whatsapp_numbers").await;
    }
    app.stop().await.unwrap();
}

async fn deleting_a_tenant_removes_only_its_rows(v: Variant) {
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let db = &app.state.db;
    let (a, b) = app.two_schools().await;
    let before = entities::mark::Entity::find().count(db).await.unwrap();
    tenancy::delete(db, a.ctx.clone()).await.unwrap();
    assert_eq!(
        entities::mark::Entity::find().count(db).await.unwrap(),
        before / 2
    );
    assert_eq!(
        entities::student::Entity::find().count(db).await.unwrap(),
        1
    );
    assert_eq!(
        a.ctx
            .find::<entities::student::Entity>()
            .count(db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        b.ctx
            .find::<entities::student::Entity>()
            .count(db)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        entities::welcome_message::Entity::find()
            .count(db)
            .await
            .unwrap(),
        1
    );
    app.stop().await.unwrap();
}

async fn one_welcome_message_per_tenant(v: Variant) {
    use sea_orm::{ActiveModelTrait, Set};
    let Some(app) = TestApp::spawn(v).await else {
        return;
    };
    let db = &app.state.db;
    let (a, b) = app.two_schools().await;
    let second = |tenant_id: i64| entities::welcome_message::ActiveModel {
        tenant_id: Set(tenant_id),
        body: Set("another".into()),
        created_at: Set(Utc::now()),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    assert!(
        second(a.ctx.id()).insert(db).await.is_err(),
        "the database refuses a second one"
    );
    assert_eq!(
        welcome::get(db, &a.ctx).await.unwrap().unwrap().body,
        a.welcome
    );
    assert_eq!(
        welcome::get(db, &b.ctx).await.unwrap().unwrap().body,
        b.welcome
    );
    app.stop().await.unwrap();
}
