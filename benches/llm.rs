//! The LLM path's own cost per message, without the model: what the service spends before and
//! after the call, on the demo school (SQLite), for a parent of two children.
//! - `llm/context`: gathering the context (profile, notices, children, results, attendance)
//!   from the school's snapshot (no database read);
//! - `llm/render_and_count`: rendering the prompt and counting its tokens (budget 3,000: fits);
//! - `llm/render_and_fit_900`: the same cut to 900 tokens (renders again per piece dropped);
//! - `llm/checks`: checking an answer against the school's roster and ID format;
//! - `llm/overhead`: all of it, as one message pays it, with the snapshot's version check
//!   (one primary-key read).
//!
//! Before them it prints the tokenizer's one-time load and the prompt's size.
//!
//!     cargo bench --bench llm

use std::time::Instant;

use chatbot::app;
use chatbot::config::Settings;
use chatbot::conversation::{Session, engine};
use chatbot::demo;
use chatbot::domain::{PhoneNumber, SchemaName};
use chatbot::llm::{context, guard, prompt};
use chatbot::tenancy;
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;

const MESSAGE: &str = "How did my children do compared to last term?";
const ANSWER: &str = "Tèmítọ́pẹ́ Abdullahi's average went from 37.7 to 38.3; Aminu Oluwadámilọ́lá \
                      Kowalski's from 79.9 to 84.8 in the Third Term Examination.";

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.secrets.secret_key = Some(SecretString::from(
        "bench-secret-key-0123456789abcdef-0123456789".to_string(),
    ));
    let state = rt.block_on(app::build_state(settings)).unwrap();
    let creds = rt.block_on(demo::seed(&state.db, &state.secret)).unwrap();
    let ctx = rt
        .block_on(tenancy::by_schema_name(
            &state.db,
            &SchemaName::parse("demo").unwrap(),
        ))
        .unwrap();
    let parent = creds.tenants[0].parent_with_children(2).unwrap();
    let phone = PhoneNumber::parse(&parent.phone).unwrap();
    let school = rt
        .block_on(state.pipeline.turns.snapshots.get(&state.db, &ctx))
        .unwrap();
    let children = engine::children(&school, &phone, &Session::default());
    let history = vec![
        ("in".to_string(), "hi".to_string()),
        (
            "out".to_string(),
            "Welcome to Greenfield Academy!".to_string(),
        ),
    ];

    let started = Instant::now();
    let tokenizer = prompt::Tokenizer::for_model("gpt-4o-mini");
    tokenizer.count("warm up");
    println!(
        "tokenizer {} loaded in {:.0} ms (once per process)",
        tokenizer.encoding,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let prompts = prompt::Prompts::embedded().unwrap();
    let gather_from = |school: &chatbot::school::snapshot::SchoolSnapshot,
                       children: &[&chatbot::school::snapshot::Child]| {
        context::gather(school, children, history.clone(), MESSAGE, "en", Utc::now())
    };
    let gather = || gather_from(&school, &children);
    let full = prompt::fit(&prompts, &tokenizer, gather(), "ref-0123456789ab", 3000)
        .unwrap()
        .unwrap();
    let tight = prompt::fit(&prompts, &tokenizer, gather(), "ref-0123456789ab", 900)
        .unwrap()
        .unwrap();
    println!(
        "prompt: {} tokens in full, {} bytes; cut to 900 tokens: {} tokens, {} pieces dropped",
        full.tokens,
        full.messages.iter().map(|m| m.content.len()).sum::<usize>(),
        tight.tokens,
        tight.dropped
    );
    let check = || {
        guard::check_answer(
            ANSWER,
            &full.messages,
            "ref-0123456789ab",
            school.roster(),
            900,
        )
    };
    check().expect("the answer passes");

    let mut group = c.benchmark_group("llm");
    group.bench_function("context", |b| b.iter(gather));
    let context = gather();
    group.bench_function("render_and_count", |b| {
        b.iter(|| {
            prompt::fit(
                &prompts,
                &tokenizer,
                context.clone(),
                "ref-0123456789ab",
                3000,
            )
        })
    });
    group.bench_function("render_and_fit_900", |b| {
        b.iter(|| {
            prompt::fit(
                &prompts,
                &tokenizer,
                context.clone(),
                "ref-0123456789ab",
                900,
            )
        })
    });
    group.bench_function("checks", |b| b.iter(check));
    group.bench_function("overhead", |b| {
        b.iter(|| {
            let school = rt
                .block_on(state.pipeline.turns.snapshots.get(&state.db, &ctx))
                .unwrap();
            let children = engine::children(&school, &phone, &Session::default());
            let context = gather_from(&school, &children);
            let fitted = prompt::fit(&prompts, &tokenizer, context, "ref-0123456789ab", 3000)
                .unwrap()
                .unwrap();
            guard::check_answer(
                ANSWER,
                &fitted.messages,
                "ref-0123456789ab",
                school.roster(),
                900,
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = llm_benches;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(llm_benches);
