//! Report-card rendering, printed as figures (run in release: `cargo bench --bench reports`):
//! - one card: the median render time over 200 renders of demo cards;
//! - 1,000 cards, each its own PDF as a class batch stores them, over the machine's cores;
//! - bytes per card (mean and largest);
//! - the same card rendered by WeasyPrint from HTML written to match the layout
//!   (`benches/weasyprint_card.py`, installed from PyPI into a virtualenv under `/var/tmp` by
//!   this benchmark), timed in the same run, and the ratio.
//!
//! Set `BENCH_SKIP_WEASYPRINT=1` to skip the comparison (no network, no Python).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chatbot::app;
use chatbot::config::Settings;
use chatbot::demo;
use chatbot::domain::SchemaName;
use chatbot::reports::{self, card};
use chatbot::school::{calendar, students};
use chatbot::tenancy;
use secrecy::SecretString;

const CARDS: usize = 1000;
const VENV: &str = "/var/tmp/chatbot-bench-venv";
const WEASYPRINT: &str = "weasyprint==66.0";

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    settings.secrets.secret_key = Some(SecretString::from(
        "bench-secret-key-0123456789abcdef-0123456789".to_string(),
    ));
    let cards: Vec<card::Card> = rt.block_on(async {
        let state = app::build_state(settings).await.unwrap();
        demo::seed(&state.db, &state.secret).await.unwrap();
        let ctx = tenancy::by_schema_name(&state.db, &SchemaName::parse("demo").unwrap())
            .await
            .unwrap();
        let exam = calendar::released_exam_sessions(&state.db, &ctx)
            .await
            .unwrap()[0]
            .clone();
        let mut cards = Vec::new();
        for class in students::classes(&state.db, &ctx).await.unwrap() {
            for pupil in students::in_class(&state.db, &ctx, class.id).await.unwrap() {
                if let Some(c) = reports::card_for(&state.db, &ctx, &pupil, &exam)
                    .await
                    .unwrap()
                {
                    cards.push(c);
                }
            }
        }
        cards
    });
    println!(
        "{} distinct demo cards (one exam session, every class)",
        cards.len()
    );

    // Warm up: the font is parsed once per process.
    let started = Instant::now();
    card::warm_up();
    println!(
        "font parsed once per process: {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    for c in cards.iter().take(20) {
        card::render(c);
    }

    let one: Vec<Duration> = cards
        .iter()
        .cycle()
        .take(200)
        .map(|c| {
            let t = Instant::now();
            std::hint::black_box(card::render(c));
            t.elapsed()
        })
        .collect();
    let one = median(one);
    println!(
        "one card: {:.2} ms (median of 200)",
        one.as_secs_f64() * 1000.0
    );

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = Vec::new();
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    let cards = &cards;
                    s.spawn(move || {
                        (0..CARDS)
                            .filter(|i| i % threads == k)
                            .map(|i| card::render(&cards[i % cards.len()]).len())
                            .collect::<Vec<usize>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        runs.push(t.elapsed());
        sizes = per_thread.into_iter().flatten().collect();
    }
    let batch = median(runs);
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let largest = *sizes.iter().max().unwrap();
    println!(
        "{CARDS} cards, each its own PDF, on {threads} threads: {:.2} s (median of 3; aim < 2 s)",
        batch.as_secs_f64()
    );
    println!(
        "bytes per card: mean {:.1} KB, largest {:.1} KB (aim <= 20 KB)",
        mean / 1024.0,
        largest as f64 / 1024.0
    );

    if std::env::var_os("BENCH_SKIP_WEASYPRINT").is_some() {
        println!("WeasyPrint comparison skipped (BENCH_SKIP_WEASYPRINT)");
        return;
    }
    match weasyprint(&cards[0]) {
        Ok(ms) => println!(
            "WeasyPrint ({WEASYPRINT}), the same card from HTML: {ms:.1} ms (median of 20); \
             printpdf is {:.0}x faster (aim >= 20x)",
            ms / (one.as_secs_f64() * 1000.0)
        ),
        Err(e) => println!("WeasyPrint comparison not run: {e}"),
    }
}

/// Install WeasyPrint into a virtualenv (once) and time it on `card`'s HTML.
fn weasyprint(c: &card::Card) -> Result<f64, String> {
    let python = common::venv(
        VENV,
        &[WEASYPRINT],
        "import weasyprint; print(weasyprint.__version__)",
        "66.0",
    )?;
    let input = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(input.path(), serde_json::to_vec(c).unwrap()).map_err(|e| e.to_string())?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/weasyprint_card.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(input.path())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("median_ms "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("unexpected output: {text}"))
}
