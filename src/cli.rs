//! The `chatbot` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::{admin, api, db, demo, telemetry};

/// The configuration part of `--help`: every variable, by group, from the settings' one
/// declaration.
fn env_help() -> String {
    format!(
        "Configuration (defaults < --config file < environment; `chatbot config` prints the \
         effective values and where each came from, `chatbot config --reference` what each \
         means):{}\n  logs: CHATBOT_LOG or RUST_LOG (a tracing filter; default: info)",
        crate::config::variables()
    )
}

/// Rules-first WhatsApp chatbot for schools: parents get results, attendance, notices and
/// report cards; staff drive it through a REST API.
#[derive(Debug, Parser)]
#[command(name = "chatbot", version)]
pub struct Cli {
    /// TOML configuration file: top-level keys, one per setting (`chatbot config --reference`
    /// lists them), e.g. `listen = "0.0.0.0:8080"`.
    #[arg(long, global = true, env = "CHATBOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the job workers in one process (migrates first).
    Serve {
        /// On an empty database, first create the demo schools and print their credentials.
        #[arg(long)]
        demo: bool,
        /// Serve HTTP only; run `chatbot worker` processes for the jobs.
        #[arg(long)]
        no_workers: bool,
    },
    /// Run the job workers only, no HTTP (scale them out as separate processes).
    Worker,
    /// Apply database migrations, seal any provider secret not yet sealed under the server
    /// secret (or sealed under CHATBOT_PREVIOUS_SECRET_KEY), and exit.
    Migrate,
    /// Create the demo schools (if absent) and print their credentials.
    SeedDemo {
        /// Print one JSON object on stdout (for scripts and benchmarks).
        #[arg(long)]
        json: bool,
        /// Delete the demo schools first, then create them again.
        #[arg(long)]
        reset: bool,
    },
    /// Chat with the bot in the terminal as a parent's phone, against the real database.
    Chat {
        /// The school: its schema name, e.g. `demo`. Without it the phone decides, as on a
        /// shared WhatsApp number (a phone linked to several schools is asked to choose).
        #[arg(long)]
        tenant: Option<String>,
        /// The parent's phone number, e.g. `+2348030000002` (a demo parent) or any other.
        #[arg(long)]
        phone: String,
    },
    /// Run a mock of Meta's Graph API and Twilio's Messages API that prints every message sent
    /// to it (point CHATBOT_WHATSAPP_API_BASE and CHATBOT_TWILIO_API_BASE at it to watch the
    /// bot's WhatsApp replies locally).
    MockWhatsapp {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Answer the first requests with these HTTP statuses, e.g. `429,500` (to watch the
        /// bot retry), then normally.
        #[arg(long, value_delimiter = ',', value_name = "STATUS,...")]
        fail: Vec<u16>,
    },
    /// Run a mock OpenAI-compatible LLM server (chat completions, plain and streamed) that
    /// answers from a YAML script of rules, can inject faults, and prints every request (point
    /// the LLM base URL at it; the script format is in src/llm/mock.rs).
    MockLlm {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: std::net::SocketAddr,
        /// The YAML script; without it every request gets a fixed sentence.
        #[arg(long, value_name = "FILE")]
        script: Option<std::path::PathBuf>,
    },
    /// Run eval suites (YAML conversations in evals/) through the real engine and LLM path,
    /// against the mock model (each suite's script) or a real endpoint (--base-url), on a fresh
    /// embedded database with the demo schools. Prints a Markdown summary; exit code 0 when
    /// every case passes, 1 on failures (with --fail-on-regression: on regressions against the
    /// baseline), 2 when the harness cannot run.
    Eval {
        /// Suite files or folders.
        #[arg(default_value = "evals")]
        paths: Vec<std::path::PathBuf>,
        /// Only cases whose `suite/case` name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Cases run at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Runs of each case (a fresh conversation each); the report gives each case's flip rate.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// A prompt or model variant, run side by side with the others:
        /// `NAME[:prompts=DIR][,model=MODEL]` (repeatable; default: one `default` variant with
        /// the embedded prompts).
        #[arg(long = "variant", value_name = "SPEC")]
        variants: Vec<crate::eval::Variant>,
        /// An OpenAI-compatible endpoint to evaluate instead of the mock (key: CHATBOT_LLM_API_KEY).
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Model name [default: mock-1 with the mock, else CHATBOT_LLM_MODEL].
        #[arg(long)]
        model: Option<String>,
        /// Answer repeated requests from this folder (keyed by the rendered request).
        #[arg(long, value_name = "DIR")]
        cache: Option<std::path::PathBuf>,
        /// Baseline to compare with: a case that passes there and fails now is a regression.
        #[arg(long, value_name = "FILE", default_value = "evals/baseline.json")]
        baseline: std::path::PathBuf,
        /// Write the baseline from this run instead of comparing.
        #[arg(long)]
        write_baseline: bool,
        /// Exit 1 only for regressions against the baseline (known failures recorded there
        /// do not fail the run).
        #[arg(long)]
        fail_on_regression: bool,
        /// Write report.json, junit.xml and summary.md into this folder.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// USD per million prompt tokens, for the cost estimate.
        #[arg(long, default_value_t = 0.15)]
        price_in: f64,
        /// USD per million completion tokens.
        #[arg(long, default_value_t = 0.60)]
        price_out: f64,
    },
    /// Report cards: render a class or a form now (with a progress bar), or delete old ones.
    Reports {
        #[command(subcommand)]
        action: ReportsAction,
    },
    /// Manage schools (tenants): create one, list them.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Manage a school's API keys (`X-API-KEY`): create (printed once), list, revoke.
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
    },
    /// Manage a school's WhatsApp business numbers and their provider secrets (sealed at rest,
    /// never printed): register, list, rotate secrets, remove. Schools do the same through
    /// the API (whatsapp-numbers/); only operators register the platform's shared number.
    Number {
        #[command(subcommand)]
        action: NumberAction,
    },
    /// Print the effective configuration (defaults < --config file < environment): each
    /// setting by group, its value (secrets and passwords as ***) and where it came from.
    /// Exit code 2, with the setting named, when a value is refused.
    Config {
        /// Print instead the reference of every setting (variable, TOML key, default,
        /// meaning) as the Markdown table of src/config/README.md.
        #[arg(long)]
        reference: bool,
    },
    /// Print the OpenAPI document (JSON), or write it to a file.
    Openapi {
        /// Write to this file instead of stdout (the committed copy is openapi/openapi.json).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `chatbot tenant ...`.
#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a school. Its schema name is what API clients send as `X-Schema-Name`.
    Create {
        /// Schema name: a-z, 0-9, - and _, starting with a letter, e.g. `greenfield`.
        #[arg(long = "schema")]
        schema_name: String,
        /// Display name, e.g. "Greenfield Academy".
        #[arg(long)]
        name: String,
        /// IANA time zone of the school.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Language the bot answers in by default.
        #[arg(long, default_value = "en")]
        language: String,
        /// A domain that resolves to this school (repeat for several).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the schools.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print a school's go-live checklist (what setup-status/ answers): each step done or
    /// missing, with the API call that does it.
    Status {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Set a school's own daily cap of LLM tokens (or go back to CHATBOT_LLM_DAILY_TOKENS),
    /// and show today's usage.
    LlmCap {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// Tokens per day (UTC); 0 turns the LLM fallback off for the school.
        #[arg(long, conflicts_with = "default")]
        tokens: Option<i64>,
        /// Use the service's cap again.
        #[arg(long)]
        default: bool,
    },
}

/// `chatbot reports ...`.
#[derive(Debug, Subcommand)]
pub enum ReportsAction {
    /// Render and store the cards of a class or a form for an exam session, printing a
    /// progress bar on stderr and each card's signed link (or the combined PDF's) on stdout.
    Generate {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// The exam session: its id, or its name (e.g. "Third Term Examination").
        #[arg(long)]
        exam: String,
        /// The class: its id or its name (e.g. "JSS 1A").
        #[arg(long, conflicts_with = "form", required_unless_present = "form")]
        class: Option<String>,
        /// Or a form (e.g. "JSS 1"): every class in it.
        #[arg(long)]
        form: Option<String>,
        /// Also one PDF with every card, a page each.
        #[arg(long)]
        combined: bool,
    },
    /// Delete report cards (files and rows) older than a duration, in every school or one
    /// (the periodic cleanup job does the same with CHATBOT_REPORT_RETENTION_DAYS).
    Cleanup {
        /// Age, e.g. `30d`, `12h`, `90m`.
        #[arg(long, value_parser = parse_age)]
        older_than: chrono::Duration,
        /// Only this school.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// `30d`, `12h`, `90m`, `45s` as a duration.
fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit, e.g. 30d"))?;
    match unit {
        "d" => Ok(chrono::Duration::days(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        "m" => Ok(chrono::Duration::minutes(n)),
        "s" => Ok(chrono::Duration::seconds(n)),
        _ => Err(format!("`{s}`: the unit is d, h, m or s")),
    }
}

/// `chatbot apikey ...`.
#[derive(Debug, Subcommand)]
pub enum ApikeyAction {
    /// Create a key and print it once: only its hash is stored.
    Create {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// What the key is for, e.g. "results import".
        #[arg(long)]
        name: String,
        /// Scopes (repeat, or comma-separated): admin (every scope), staff (school data), messages (talk to the bot).
        #[arg(long = "scope", default_value = "admin")]
        scopes: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a school's keys (prefixes, never the keys).
    List {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once, by its id or its prefix.
    Revoke {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// The key's id or prefix (as `apikey list` shows).
        key: String,
    },
}

/// Provider secrets on the command line. Prefer the environment variables: arguments show in
/// `ps` and in shell history.
#[derive(Debug, clap::Args)]
pub struct NumberSecretArgs {
    /// Meta: a permanent (system user) access token.
    #[arg(long, env = "CHATBOT_NUMBER_ACCESS_TOKEN", hide_env_values = true)]
    access_token: Option<String>,
    /// Meta: the app's secret (it signs the webhooks).
    #[arg(long, env = "CHATBOT_NUMBER_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Meta: the webhook verify token (16 characters or more, your choice).
    #[arg(long, env = "CHATBOT_NUMBER_VERIFY_TOKEN", hide_env_values = true)]
    verify_token: Option<String>,
    /// Twilio: the auth token.
    #[arg(long, env = "CHATBOT_NUMBER_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

/// `chatbot number ...`.
#[derive(Debug, Subcommand)]
pub enum NumberAction {
    /// Register a number: `--meta --phone +234... --phone-number-id ID` with the access token,
    /// app secret and verify token, or `--twilio --phone +1... --account-sid AC...` with the
    /// auth token. Prints the webhook URL to paste into the provider's console.
    #[command(group(clap::ArgGroup::new("provider").required(true).args(["meta", "twilio"])))]
    Add {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// A Meta (WhatsApp Cloud API) number.
        #[arg(long)]
        meta: bool,
        /// A Twilio WhatsApp sender.
        #[arg(long)]
        twilio: bool,
        /// The number parents write to, e.g. +2348012345678.
        #[arg(long)]
        phone: String,
        /// Meta: the number's "Phone number ID".
        #[arg(long, required_if_eq("meta", "true"))]
        phone_number_id: Option<String>,
        /// Twilio: the account SID (AC...).
        #[arg(long, required_if_eq("twilio", "true"))]
        account_sid: Option<String>,
        #[command(flatten)]
        secrets: NumberSecretArgs,
        /// The platform's shared number: several schools, the sender's phone decides.
        #[arg(long)]
        shared: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a school's numbers (the last four characters of each secret, never more).
    List {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Replace some of a number's secrets (those given; the others stay).
    Rotate {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// The number's id (as `number list` shows) or the number itself.
        number: String,
        /// Twilio: another account SID.
        #[arg(long)]
        account_sid: Option<String>,
        #[command(flatten)]
        secrets: NumberSecretArgs,
    },
    /// Remove a number: its webhooks are refused from then on.
    Remove {
        /// The school's schema name.
        #[arg(long)]
        tenant: String,
        /// The number's id (as `number list` shows) or the number itself.
        number: String,
    },
}

/// A command's own exit code, after it has said why.
#[derive(Debug)]
struct ExitWith(u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// Parse arguments and run; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let matches = Cli::command().after_help(env_help()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Config { reference } = cli.command {
        return show_config(cli.config.as_deref(), reference);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatbot: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.server.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatbot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ExitWith>().is_some() => {
            ExitCode::from(e.downcast_ref::<ExitWith>().map_or(1, |x| x.0))
        }
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("chatbot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `chatbot config`: the effective configuration and its sources, or the reference table.
fn show_config(file: Option<&Path>, reference: bool) -> ExitCode {
    if reference {
        print!("{}", crate::config::reference());
        return ExitCode::SUCCESS;
    }
    match crate::config::Effective::load(file, |name| std::env::var(name).ok()) {
        Ok(effective) => {
            print!("{}", effective.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatbot: configuration error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve { demo, no_workers } => serve(settings, demo, no_workers).await,
        Command::Worker => {
            let state = app::build_state(settings).await?;
            run_until_signal(Application::workers_only(state, Instant::now())).await
        }
        Command::Migrate => {
            let url = settings.database_url();
            let database = db::connect_and_migrate(&url).await?;
            let sealed =
                crate::tenancy::seal_provider_secrets(&database, &secret_key(&settings)?).await?;
            eprintln!(
                "migrations applied to {url}; provider secrets of {sealed} number(s) sealed again"
            );
            Ok(())
        }
        Command::SeedDemo { json, reset } => {
            let url = settings.database_url();
            let database = db::connect_and_migrate(&url).await?;
            let key = secret_key(&settings)?;
            if reset {
                demo::remove(&database).await?;
            }
            let creds = demo::seed(&database, &key).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&creds)?);
            } else {
                print!(
                    "{}",
                    demo::describe(&creds, &format!("http://{}", settings.server.listen))
                );
            }
            Ok(())
        }
        Command::Chat { tenant, phone } => chat(settings, tenant.as_deref(), &phone).await,
        Command::MockWhatsapp { listen, fail } => mock_whatsapp(listen, &fail).await,
        Command::MockLlm { listen, script } => mock_llm(listen, script.as_deref()).await,
        Command::Eval {
            paths,
            filter,
            concurrency,
            repeat,
            variants,
            base_url,
            model,
            cache,
            baseline,
            write_baseline,
            fail_on_regression,
            out,
            price_in,
            price_out,
        } => {
            let model = model.unwrap_or_else(|| match base_url {
                Some(_) => settings.llm.model.clone(),
                None => "mock-1".into(),
            });
            let options = crate::eval::Options {
                paths,
                filter,
                concurrency,
                repeat,
                variants,
                api_key: settings
                    .llm
                    .api_key
                    .as_ref()
                    .map(|k| secrecy::ExposeSecret::expose_secret(k).to_string()),
                base_url,
                model,
                cache_dir: cache,
                baseline: Some(baseline),
                write_baseline,
                fail_on_regression,
                out_dir: out,
                price_in,
                price_out,
            };
            match crate::eval::run(options).await {
                Ok(done) => {
                    print!("{}", done.report.markdown());
                    Err(ExitWith(done.exit_code).into())
                }
                Err(e) => {
                    eprintln!("chatbot eval: {e}");
                    Err(ExitWith(2).into())
                }
            }
        }
        Command::Reports { action } => reports_command(settings, action).await,
        Command::Tenant { action } => {
            let database = db::connect_and_migrate(&settings.database_url()).await?;
            tenant_command(&database, action).await
        }
        Command::Apikey { action } => {
            let database = db::connect_and_migrate(&settings.database_url()).await?;
            apikey_command(&database, action).await
        }
        Command::Number { action } => {
            let key = secret_key(&settings)?;
            let database = db::connect_and_migrate(&settings.database_url()).await?;
            number_command(&database, &key, &settings, action).await
        }
        Command::Config { .. } => unreachable!("`chatbot config` runs before the settings load"),
        Command::Openapi { output } => {
            let spec = api::spec_json();
            match output {
                Some(path) => write_file(&path, &spec)?,
                None => print!("{spec}"),
            }
            Ok(())
        }
    }
}

async fn reports_command(settings: Settings, action: ReportsAction) -> anyhow::Result<()> {
    use crate::domain::SchemaName;
    use crate::reports::{self, store};
    use crate::school::{calendar, students};
    let state = app::build_state(settings).await?;
    let school = |name: &str| {
        let db = state.db.clone();
        let name = name.to_string();
        async move { crate::tenancy::by_schema_name(&db, &SchemaName::parse(&name)?).await }
    };
    match action {
        ReportsAction::Generate {
            tenant,
            exam,
            class,
            form,
            combined,
        } => {
            let ctx = school(&tenant).await?;
            let sessions = calendar::exam_sessions(&state.db, &ctx).await?;
            let exam = sessions
                .into_iter()
                .find(|e| e.id.to_string() == exam || e.name.eq_ignore_ascii_case(&exam))
                .ok_or_else(|| anyhow::anyhow!("no exam session `{exam}` in {tenant}"))?;
            let class_id = match &class {
                Some(c) => Some(
                    students::classes(&state.db, &ctx)
                        .await?
                        .into_iter()
                        .find(|k| k.id.to_string() == *c || k.name.eq_ignore_ascii_case(c))
                        .ok_or_else(|| anyhow::anyhow!("no class `{c}` in {tenant}"))?
                        .id,
                ),
                None => None,
            };
            let group = reports::Group::find(&state.db, &ctx, class_id, form.as_deref())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no such form in {tenant}"))?;
            let started = Instant::now();
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut bar = |done: usize, total: usize| {
                const WIDTH: usize = 30;
                let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
                let line = format!(
                    "[{}{}] {done}/{total} cards",
                    "#".repeat(filled),
                    " ".repeat(WIDTH - filled)
                );
                if tty {
                    eprint!("\r{line}");
                } else if done == total || done.is_multiple_of(10) {
                    eprintln!("{line}");
                }
            };
            let made = reports::batch(
                state.reports(),
                &ctx,
                &exam,
                &group,
                combined,
                None,
                None,
                &mut bar,
            )
            .await?;
            if tty {
                eprintln!();
            }
            let now = chrono::Utc::now();
            for (pupil, stored) in &made.cards {
                println!(
                    "{}\t{}\t{} bytes\t{}",
                    pupil.student_id,
                    students::full_name(pupil),
                    stored.size_bytes.unwrap_or_default(),
                    store::link(state.reports(), ctx.id(), stored.id, now)
                );
            }
            if let Some(c) = &made.combined {
                println!(
                    "combined\t{}, {}\t{} bytes\t{}",
                    group.name,
                    exam.name,
                    c.size_bytes.unwrap_or_default(),
                    store::link(state.reports(), ctx.id(), c.id, now)
                );
            }
            eprintln!(
                "{} cards for {} ({}) in {:.2} s; links valid for {} minutes",
                made.cards.len(),
                group.name,
                exam.name,
                started.elapsed().as_secs_f64(),
                state.settings.reports.link_ttl_minutes
            );
            Ok(())
        }
        ReportsAction::Cleanup { older_than, tenant } => {
            let cutoff = chrono::Utc::now() - older_than;
            let schools = match &tenant {
                Some(t) => vec![school(t).await?],
                None => crate::tenancy::all(&state.db).await?,
            };
            let mut total = 0;
            for ctx in &schools {
                let n =
                    store::delete_older_than(&state.db, ctx, &state.settings.reports_dir(), cutoff)
                        .await?;
                if n > 0 {
                    eprintln!("{}: {n} report(s) deleted", ctx.schema_name());
                }
                total += n;
            }
            eprintln!("{total} report(s) created before {cutoff} deleted");
            Ok(())
        }
    }
}

async fn tenant_command(
    database: &sea_orm::DatabaseConnection,
    action: TenantAction,
) -> anyhow::Result<()> {
    match action {
        TenantAction::Create {
            schema_name,
            name,
            time_zone,
            language,
            domains,
            json,
        } => {
            let row = admin::create_tenant(
                database,
                &schema_name,
                &name,
                &time_zone,
                &language,
                domains,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&row)?);
            } else {
                println!(
                    "created school `{}` ({}); next: chatbot apikey create --tenant {} --name <what for>",
                    row.schema_name, row.name, row.schema_name
                );
            }
        }
        TenantAction::LlmCap {
            tenant,
            tokens,
            default,
        } => {
            let ctx = crate::tenancy::by_schema_name(
                database,
                &crate::domain::SchemaName::parse(&tenant)?,
            )
            .await?;
            if let Some(n) = tokens
                && n < 0
            {
                anyhow::bail!("--tokens must be 0 or more");
            }
            if tokens.is_some() || default {
                crate::llm::usage::set_cap(database, &ctx, tokens).await?;
            }
            let profile = ctx.profile(database).await?;
            let today = chrono::Utc::now().date_naive();
            let used = crate::llm::usage::on(database, &ctx, today).await?;
            println!(
                "{}: daily cap {}; today {} tokens in {} calls ({} failed)",
                ctx.schema_name(),
                profile.llm_daily_tokens.map_or(
                    "the service's (CHATBOT_LLM_DAILY_TOKENS)".to_string(),
                    |n| format!("{n} tokens")
                ),
                used.as_ref()
                    .map_or(0, |u| u.prompt_tokens + u.completion_tokens),
                used.as_ref().map_or(0, |u| u.requests),
                used.as_ref().map_or(0, |u| u.failures),
            );
        }
        TenantAction::Status { tenant, json } => {
            let ctx = crate::tenancy::by_schema_name(
                database,
                &crate::domain::SchemaName::parse(&tenant)?,
            )
            .await?;
            let steps = crate::school::setup::status(database, &ctx, chrono::Utc::now()).await?;
            let ready = steps.iter().all(|s| s.done);
            if json {
                let doc = serde_json::json!({"ready": ready, "steps": steps});
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                for s in &steps {
                    let mark = if s.done { "done   " } else { "MISSING" };
                    println!("{mark} {:<22} {}", s.step, s.detail);
                    if !s.done {
                        println!("        {:<22} -> {}", "", s.endpoint);
                    }
                }
                println!(
                    "{}",
                    if ready {
                        format!("`{tenant}` is ready for parents")
                    } else {
                        format!("`{tenant}` is not live yet")
                    }
                );
            }
        }
        TenantAction::List { json } => {
            let rows = admin::list_tenants(database).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("SCHEMA\tNAME\tTIME ZONE\tLANGUAGE\tAPI KEYS\tDOMAINS");
                for r in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        r.schema_name,
                        r.name,
                        r.time_zone,
                        r.default_language,
                        r.active_api_keys,
                        r.domains.join(",")
                    );
                }
            }
        }
    }
    Ok(())
}

async fn apikey_command(
    database: &sea_orm::DatabaseConnection,
    action: ApikeyAction,
) -> anyhow::Result<()> {
    match action {
        ApikeyAction::Create {
            tenant,
            name,
            scopes,
            json,
        } => {
            let created = admin::create_api_key(database, &tenant, &name, &scopes).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "API key {} (id {}, scopes: {}) for `{}`: shown this once, only its hash is stored",
                    created.row.prefix,
                    created.row.id,
                    created.row.scopes.join(" "),
                    created.tenant
                );
            }
        }
        ApikeyAction::List { tenant, json } => {
            let rows = admin::list_api_keys(database, &tenant).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("ID\tPREFIX\tNAME\tSCOPES\tCREATED\tREVOKED");
                for k in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        k.id,
                        k.prefix,
                        k.name,
                        k.scopes.join(" "),
                        k.created_at.format("%Y-%m-%d %H:%M"),
                        k.revoked_at
                            .map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
                    );
                }
            }
        }
        ApikeyAction::Revoke { tenant, key } => {
            let row = admin::revoke_api_key(database, &tenant, &key).await?;
            println!(
                "revoked API key {} (id {}) of `{tenant}`",
                row.prefix, row.id
            );
        }
    }
    Ok(())
}

/// One number as `number list` and `number add` print it.
fn number_json(
    key: &SecretKey,
    settings: &Settings,
    n: &crate::entities::whatsapp_number::Model,
) -> serde_json::Value {
    use crate::crypto::SealedColumn;
    use crate::tenancy::{Provider, numbers};
    let base = settings
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| "<CHATBOT_PUBLIC_URL>".to_string());
    let mut secrets = serde_json::Map::new();
    for column in SealedColumn::ALL {
        if let Some(last4) = numbers::last4(key, n, column) {
            secrets.insert(format!("{}_last4", column.name()), last4.into());
        }
    }
    serde_json::json!({
        "id": n.id,
        "provider": n.provider,
        "phone_number": n.phone_number,
        "phone_number_id": n.phone_number_id,
        "account_sid": n.account_sid,
        "shared": n.shared,
        "secrets": secrets,
        "webhook_url": format!("{base}{}", numbers::webhook_path(Provider::named(&n.provider))),
        "created_at": n.created_at,
        "secrets_updated_at": n.secrets_updated_at,
    })
}

async fn number_command(
    database: &sea_orm::DatabaseConnection,
    key: &SecretKey,
    settings: &Settings,
    action: NumberAction,
) -> anyhow::Result<()> {
    use crate::domain::{PhoneNumber, SchemaName};
    use crate::tenancy::numbers::{self, MetaNumber, NewNumber, NewSecrets, TwilioNumber};
    use secrecy::SecretString;
    let school = |name: String| async move {
        crate::tenancy::by_schema_name(database, &SchemaName::parse(&name)?).await
    };
    let required = |value: Option<String>, flag: &str| {
        value.map(SecretString::from).ok_or_else(|| {
            anyhow::anyhow!(
                "--{flag} is required (or CHATBOT_NUMBER_{})",
                flag.replace('-', "_").to_ascii_uppercase()
            )
        })
    };
    let now = chrono::Utc::now();
    match action {
        NumberAction::Add {
            tenant,
            meta,
            twilio: _,
            phone,
            phone_number_id,
            account_sid,
            secrets,
            shared,
            json,
        } => {
            let ctx = school(tenant.clone()).await?;
            let phone_number = PhoneNumber::parse(&phone)?;
            let new = if meta {
                NewNumber::Meta(MetaNumber {
                    phone_number,
                    phone_number_id: phone_number_id.unwrap_or_default(),
                    access_token: required(secrets.access_token, "access-token")?,
                    app_secret: required(secrets.app_secret, "app-secret")?,
                    verify_token: required(secrets.verify_token, "verify-token")?,
                })
            } else {
                NewNumber::Twilio(TwilioNumber {
                    phone_number,
                    account_sid: account_sid.unwrap_or_default(),
                    auth_token: required(secrets.auth_token, "auth-token")?,
                })
            };
            let n = numbers::register(database, key, &ctx, new, shared, now).await?;
            let view = number_json(key, settings, &n);
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!(
                    "registered {} number {} (id {}) for `{tenant}`; secrets sealed",
                    n.provider, n.phone_number, n.id
                );
                println!(
                    "webhook URL: {}",
                    view["webhook_url"].as_str().unwrap_or("")
                );
            }
        }
        NumberAction::List { tenant, json } => {
            let ctx = school(tenant).await?;
            let rows = numbers::of_school(database, &ctx).await?;
            let views: Vec<_> = rows.iter().map(|n| number_json(key, settings, n)).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!("ID\tPROVIDER\tNUMBER\tMETA ID / SID\tSHARED\tSECRETS (last 4)\tWEBHOOK");
                for (n, v) in rows.iter().zip(&views) {
                    let secrets = v["secrets"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    format!(
                                        "{}=…{}",
                                        k.trim_end_matches("_last4"),
                                        v.as_str().unwrap_or("")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default();
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        n.id,
                        n.provider,
                        n.phone_number,
                        n.phone_number_id
                            .as_deref()
                            .or(n.account_sid.as_deref())
                            .unwrap_or("-"),
                        if n.shared { "yes" } else { "no" },
                        secrets,
                        v["webhook_url"].as_str().unwrap_or("")
                    );
                }
            }
        }
        NumberAction::Rotate {
            tenant,
            number,
            account_sid,
            secrets,
        } => {
            let ctx = school(tenant).await?;
            let n = numbers::named(database, &ctx, &number).await?;
            let changes = NewSecrets {
                access_token: secrets.access_token.map(SecretString::from),
                app_secret: secrets.app_secret.map(SecretString::from),
                verify_token: secrets.verify_token.map(SecretString::from),
                account_sid,
                auth_token: secrets.auth_token.map(SecretString::from),
            };
            let n = numbers::replace_secrets(database, key, &ctx, n.id, changes, true, now).await?;
            println!(
                "replaced the secrets of {} number {} (id {}); sealed",
                n.provider, n.phone_number, n.id
            );
        }
        NumberAction::Remove { tenant, number } => {
            let ctx = school(tenant.clone()).await?;
            let n = numbers::named(database, &ctx, &number).await?;
            let n = numbers::remove(database, &ctx, n.id, true).await?;
            println!(
                "removed {} number {} (id {}) from `{tenant}`",
                n.provider, n.phone_number, n.id
            );
        }
    }
    Ok(())
}

fn secret_key(settings: &Settings) -> anyhow::Result<SecretKey> {
    Ok(crate::app::server_secret(settings)?)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

async fn serve(mut settings: Settings, with_demo: bool, no_workers: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let listen = settings.server.listen;
    if with_demo {
        // The website chat serves the demo school's catalogue, and the demo plays the payment
        // system too: its success page carries parameters signed with this public secret.
        settings
            .engagement
            .tenant
            .get_or_insert_with(|| demo::ENGAGEMENT_TENANT.to_string());
        if settings.engagement.hash_secret.is_none() {
            settings.engagement.hash_secret = Some(demo::REPORT_HASH_SECRET.into());
        }
    }
    let state = app::build_state(settings).await?;
    if with_demo {
        if demo::database_is_empty(&state.db).await? {
            let creds = demo::seed(&state.db, &state.secret).await?;
            print!("{}", demo::describe(&creds, &format!("http://{listen}")));
        } else {
            tracing::warn!(
                "--demo: the database already has schools; leaving it as it is \
                 (`chatbot seed-demo` prints the demo credentials)"
            );
        }
    }
    let mut application = Application::bind(state, listen, started).await?;
    if no_workers {
        application = application.without_workers();
    }
    run_until_signal(application).await
}

/// Run until SIGINT/SIGTERM, then stop gracefully.
async fn run_until_signal(application: Application) -> anyhow::Result<()> {
    let token = application.shutdown_token();
    tokio::spawn(async move {
        app::shutdown_signal().await;
        token.cancel();
    });
    application.run().await?;
    Ok(())
}

async fn chat(settings: Settings, tenant: Option<&str>, phone: &str) -> anyhow::Result<()> {
    use crate::conversation::{Effect, Inbound};
    use crate::domain::{PhoneNumber, SchemaName};
    use crate::pipeline::{converse, converse_as_sender};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let phone = PhoneNumber::parse(phone)?;
    let state = app::build_state(settings).await?;
    let ctx = match tenant {
        Some(slug) => {
            Some(crate::tenancy::by_schema_name(&state.db, &SchemaName::parse(slug)?).await?)
        }
        None => None,
    };
    let with = tenant.unwrap_or("the school(s) of this phone");
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(
            format!("Chatting with {with} as {phone}. Type a message; Ctrl-D ends.\n").as_bytes(),
        )
        .await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        stdout.write_all(b"you> ").await?;
        stdout.flush().await?;
        let Some(line) = lines.next_line().await? else {
            break;
        };
        if line.trim().is_empty() {
            continue;
        }
        let (inbound, now) = (Inbound::text(line), chrono::Utc::now());
        let (replies, effects) = match &ctx {
            Some(ctx) => {
                let turn = converse(state.turns(), ctx, "terminal", &phone, &inbound, now).await?;
                (turn.outcome.replies, turn.outcome.effects)
            }
            None => {
                let turn =
                    converse_as_sender(state.turns(), "terminal", &phone, &inbound, now).await?;
                (
                    turn.replies,
                    turn.outcome.map(|t| t.outcome.effects).unwrap_or_default(),
                )
            }
        };
        let mut out = String::new();
        for reply in &replies {
            for (i, line) in reply.to_plain().lines().enumerate() {
                out.push_str(if i == 0 { "bot> " } else { "     " });
                out.push_str(line);
                out.push('\n');
            }
        }
        for effect in &effects {
            match effect {
                Effect::GenerateReport { student_id, exam_session_id, .. } => out.push_str(&format!(
                    "     [report card requested: student {student_id}, exam session {exam_session_id}]\n"
                )),
                Effect::SetOptIn { opted_in } => out.push_str(if *opted_in {
                    "     [opted in to the school's broadcasts]\n"
                } else {
                    "     [opted out of the school's broadcasts]\n"
                }),
                Effect::Escalate { reason } => out.push_str(&format!(
                    "     [handed to the school's staff: {reason}]\n"
                )),
            }
        }
        stdout.write_all(out.as_bytes()).await?;
    }
    stdout.write_all(b"\n").await?;
    Ok(())
}

/// Print the lines `all()` has added since the last look, every 200 ms, until SIGINT/SIGTERM
/// (what the mock servers received so far, one line each).
async fn print_until_stopped(all: impl Fn() -> Vec<String>) {
    let mut shown = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    let stop = app::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let lines = all();
                for line in &lines[shown..] {
                    println!("{line}");
                }
                shown = lines.len();
            }
        }
    }
}

async fn mock_llm(
    listen: std::net::SocketAddr,
    script: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use crate::llm::mock::{MockLlm, Script};
    let script = match script {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            Script::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("invalid script {}: {e}", path.display()))?
        }
        None => Script::default(),
    };
    let mock = MockLlm::start(listen, script).await?;
    eprintln!(
        "mock LLM on {base} (POST {base}/chat/completions; recorded requests at \
         http://{listen}/mock/requests)",
        base = mock.base_url(),
    );
    print_until_stopped(|| {
        mock.requests()
            .iter()
            .map(|r| format!("{} {}", r.rule.as_deref().unwrap_or("default"), r.body))
            .collect()
    })
    .await;
    mock.stop();
    Ok(())
}

async fn mock_whatsapp(listen: std::net::SocketAddr, fail: &[u16]) -> anyhow::Result<()> {
    let mock = crate::channels::mock_graph::MockGraph::start(listen).await?;
    mock.fail_next(fail);
    eprintln!(
        "mock Graph API and Twilio API on {base}; run the server with \
         CHATBOT_WHATSAPP_API_BASE={base} CHATBOT_TWILIO_API_BASE={base}",
        base = mock.base_url(),
    );
    print_until_stopped(|| {
        mock.received()
            .iter()
            .map(|r| format!("{} {} {}", r.provider, r.phone_number_id, r.body))
            .collect()
    })
    .await;
    mock.stop();
    Ok(())
}
