//! Typed settings: built-in defaults < an optional TOML file < environment variables, merged
//! by figment.
//!
//! Each setting is declared once, in `config/groups.rs`: its field, its TOML key, its
//! variable, its default and what it means. From that one declaration come the group structs,
//! the keys the file and the environment may set, `chatbot config`, the variables `--help`
//! lists and the reference table of `src/config/README.md` (a test keeps that table equal to
//! [`reference`]). Each group is checked, and normalised, by the module that owns it, through
//! [`Check`]; this module imports nothing of the crate.
//!
//! Secrets (database and Redis passwords, the server secret key, tokens) are wrapped so that
//! neither `Debug`, logs nor `chatbot config` ever show them.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

/// The TOML key of a setting: its field's name, or the name given after `as`.
macro_rules! key_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:literal) => {
        $key
    };
}

/// Declares the groups of settings, each setting once (see `config/groups.rs`).
macro_rules! settings {
    ($(
        $(#[doc = $gdoc:literal])*
        $group:ident: $Group:ident, checked in $owner:literal {
            $(
                $(#[doc = $doc:literal])*
                $field:ident $(as $key:literal)?: $ty:ty = $default:expr, $var:literal;
            )*
        }
    )*) => {
        /// Every setting the service reads, grouped by concern, after merging all sources.
        #[derive(Debug, Clone, Default)]
        pub struct Settings {
            $( $(#[doc = $gdoc])* pub $group: $Group, )*
        }

        $(
            $(#[doc = $gdoc])*
            #[derive(Debug, Clone, ::serde::Deserialize)]
            #[serde(default)]
            pub struct $Group {
                $(
                    $(#[doc = $doc])*
                    $(#[serde(rename = $key)])?
                    pub $field: $ty,
                )*
            }

            impl Default for $Group {
                fn default() -> Self {
                    Self { $( $field: $default, )* }
                }
            }
        )*

        /// Where each setting is spelled: `keys::server::listen` is the `listen` setting.
        #[allow(non_upper_case_globals)]
        pub mod keys {
                        $(
                $(#[doc = $gdoc])*
                pub mod $group {
                                        $(
                        $(#[doc = $doc])*
                        pub const $field: $crate::config::Key = $crate::config::Key {
                            group: stringify!($group),
                            owner: $owner,
                            name: key_name!($field $($key)?),
                            variable: $var,
                            doc: concat!($($doc, "\n",)*),
                        };
                    )*
                }
            )*
            /// Every setting, in the order they are declared.
            pub const ALL: &[$crate::config::Key] = &[ $( $( $group::$field, )* )* ];
        }

        impl Settings {
            /// Each setting with its value as people may see it (secrets as `***`).
            pub(super) fn shown(&self) -> Vec<($crate::config::Key, String)> {
                vec![ $( $( (keys::$group::$field, $crate::config::Show::show(&self.$group.$field)), )* )* ]
            }

            // figment's own error, on a path run once at start-up.
            #[allow(clippy::result_large_err)]
            pub(super) fn extract(figment: &::figment::Figment) -> Result<Self, ::figment::Error> {
                Ok(Self { $( $group: figment.extract_lossy()?, )* })
            }

            pub(super) fn check(&mut self) -> Result<(), $crate::config::Problem> {
                $( $crate::config::Check::check(&mut self.$group)?; )*
                Ok(())
            }
        }
    };
}

mod groups;
mod values;

pub use groups::*;
use values::Show;
#[cfg(test)]
use values::redact_url;
pub use values::{Check, Key, LogFormat, OriginList, Problem, SecretUrl};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Environment(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Environment(name) => write!(f, "environment {name}"),
        }
    }
}

/// A setting that could not be read; says which key, which variable and which source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has a key that is no setting.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The merged sources do not have the shape of the settings (not one setting's fault).
    #[error("invalid configuration: {0}")]
    Shape(String),
    /// A setting's value has the wrong shape, or its owner refuses it.
    #[error("invalid value for {}: {message}", where_set(key, origin))]
    Invalid {
        /// The setting.
        key: &'static Key,
        /// Where its value came from.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
}

/// A setting as an error names it: as it was set, and how else it could be.
fn where_set(key: &Key, origin: &Origin) -> String {
    match origin {
        Origin::Environment(variable) => format!("{variable} (in the environment)"),
        Origin::File(path) => format!(
            "`{}` in config file {} (or {})",
            key.name,
            path.display(),
            key.variable
        ),
        Origin::Default => format!("{} (`{}`, unset: its default)", key.variable, key.name),
    }
}

/// The metadata name of the environment layer (how [`Origin`] tells it from the file's).
const ENVIRONMENT: &str = "environment";

/// The variables that are set (and not blank), as a figment layer.
struct Environment(Dict);

impl Environment {
    fn read(env: &impl Fn(&str) -> Option<String>) -> Self {
        let mut dict = Dict::new();
        for key in keys::ALL {
            if let Some(value) = env(key.variable).filter(|v| !v.trim().is_empty()) {
                dict.insert(key.name.to_string(), Value::from(value.trim().to_string()));
            }
        }
        Self(dict)
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT).interpolater(|_: &Profile, path: &[&str]| {
            let name = path.first().copied().unwrap_or_default();
            find(name).map_or_else(|| name.to_string(), |key| key.variable.to_string())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// The TOML file's keys, each one a setting (checked before it is merged).
struct File {
    path: PathBuf,
    dict: Dict,
}

impl File {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let dict: Dict = toml::from_str(&text).map_err(|e| parse(e.to_string()))?;
        if let Some(unknown) = dict.keys().find(|name| find(name).is_none()) {
            return Err(parse(format!(
                "`{unknown}` is no setting{}",
                suggest(unknown).map_or_else(String::new, |k| format!(" (did you mean `{k}`?)"))
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            dict,
        })
    }
}

impl Provider for File {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", self.path.as_path())
            .interpolater(|_: &Profile, path: &[&str]| path.join("."))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The setting whose TOML key is `name`.
fn find(name: &str) -> Option<&'static Key> {
    keys::ALL.iter().find(|key| key.name == name)
}

/// The setting a mistyped key most likely meant: at most two edits away.
fn suggest(name: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let next = (row[j + 1] + 1)
                    .min(row[j] + 1)
                    .min(diagonal + usize::from(ca != *cb));
                diagonal = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
    keys::ALL
        .iter()
        .map(|key| (distance(name, key.name), key.name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, name)| name)
}

/// The merged configuration, with where each value came from.
pub struct Effective {
    /// The settings, checked.
    pub settings: Settings,
    figment: Figment,
    file: Option<PathBuf>,
}

impl Effective {
    /// Load with an explicit environment lookup (tests pass a map instead of mutating the process).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            figment = figment.merge(File::read(path)?);
        }
        figment = figment.merge(Environment::read(&env));
        let mut settings = Settings::extract(&figment).map_err(|e| refused(&figment, e))?;
        settings.check().map_err(|p| ConfigError::Invalid {
            key: find(p.key.name).expect("a declared setting"),
            origin: origin(&figment, p.key),
            message: p.message,
        })?;
        Ok(Self {
            settings,
            figment,
            file: file.map(Path::to_path_buf),
        })
    }

    /// Where this setting's value came from.
    pub fn origin(&self, key: Key) -> Origin {
        origin(&self.figment, key)
    }

    /// The effective configuration as `chatbot config` prints it: by group, each setting's key,
    /// value (secrets as `***`) and origin.
    pub fn render(&self) -> String {
        let rows: Vec<(Key, String, String)> = self
            .settings
            .shown()
            .into_iter()
            .map(|(key, value)| (key, value, self.origin(key).to_string()))
            .collect();
        let width = |f: fn(&(Key, String, String)) -> usize| rows.iter().map(f).max().unwrap_or(0);
        let (key_width, value_width) = (width(|r| r.0.name.len()), width(|r| r.1.chars().count()));
        let file = self
            .file
            .as_ref()
            .map_or_else(|| "no config file".to_string(), |p| p.display().to_string());
        let mut out = format!(
            "# setting, value, where it came from: defaults < {file} < environment\n\
             # (secrets and passwords in URLs shown as ***)\n"
        );
        let mut group = "";
        for (key, value, origin) in rows {
            if key.group != group {
                group = key.group;
                out.push_str(&format!("\n# {group} (checked in {})\n", key.owner));
            }
            out.push_str(&format!(
                "{:key_width$}  {value:value_width$}  {origin}\n",
                key.name
            ));
        }
        let settings = &self.settings;
        let queue = settings.queue.redis_url.as_ref().map_or_else(
            || format!("SQLite {}", settings.queue_sqlite_path().display()),
            SecretUrl::redacted,
        );
        out.push_str(&format!(
            "\n# what the service uses\ndatabase  {}\nqueue     {queue}\nreports   {}\n",
            settings.database_url().redacted(),
            settings.reports_dir().display()
        ));
        out
    }
}

/// A figment extraction error, said with the setting's key, variable and source.
fn refused(figment: &Figment, error: figment::Error) -> ConfigError {
    match error.path.first().and_then(|name| find(name)) {
        Some(key) => ConfigError::Invalid {
            key,
            origin: error
                .metadata
                .as_ref()
                .map_or_else(|| origin(figment, *key), |m| origin_of(m, *key)),
            message: error.kind.to_string(),
        },
        None => ConfigError::Shape(error.to_string()),
    }
}

fn origin(figment: &Figment, key: Key) -> Origin {
    figment
        .find_metadata(key.name)
        .map_or(Origin::Default, |m| origin_of(m, key))
}

fn origin_of(metadata: &Metadata, key: Key) -> Origin {
    match &metadata.source {
        Some(figment::Source::File(path)) => Origin::File(path.clone()),
        _ if metadata.name == ENVIRONMENT => Origin::Environment(key.variable),
        _ => Origin::Default,
    }
}

/// The reference table of every setting (variable, TOML key, default, meaning), by group, as
/// `src/config/README.md` holds it.
pub fn reference() -> String {
    let mut out = String::new();
    let mut group = "";
    for (key, default) in Settings::default().shown() {
        if key.group != group {
            group = key.group;
            out.push_str(&format!(
                "\n**{group}** (checked in `{}`)\n\n| variable | TOML key | default | meaning |\n| --- | --- | --- | --- |\n",
                key.owner
            ));
        }
        let default = if default == "unset" {
            default
        } else {
            format!("`{default}`")
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {default} | {} |\n",
            key.variable,
            key.name,
            key.meaning()
        ));
    }
    out
}

/// The variables by group, for `--help`.
pub fn variables() -> String {
    let mut out = String::new();
    let (mut group, mut line) = ("", 0);
    for key in keys::ALL {
        if key.group != group {
            group = key.group;
            out.push_str(&format!("\n  {group}:"));
            line = group.len() + 3;
        }
        if line + 1 + key.variable.len() > 100 {
            out.push_str("\n   ");
            line = 3;
        }
        out.push(' ');
        out.push_str(key.variable);
        line += 1 + key.variable.len();
    }
    out
}

impl Settings {
    /// Load from the process environment and, if given, a TOML file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Load with an explicit environment lookup (tests pass a map instead of mutating the process).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Effective::load(file, env).map(|effective| effective.settings)
    }

    /// The data database URL: `DATABASE_URL`, or the SQLite file in the data dir.
    pub fn database_url(&self) -> SecretUrl {
        self.storage.database_url.clone().unwrap_or_else(|| {
            SecretUrl::new(format!(
                "sqlite://{}?mode=rwc",
                self.storage.data_dir.join("chatbot.sqlite").display()
            ))
        })
    }

    /// The report-card folder: `CHATBOT_REPORTS_DIR`, or `<data dir>/reports`.
    pub fn reports_dir(&self) -> PathBuf {
        self.reports
            .dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("reports"))
    }

    /// Path of the embedded job queue database (used when `REDIS_URL` is unset).
    pub fn queue_sqlite_path(&self) -> PathBuf {
        self.storage.data_dir.join("jobs.sqlite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let p = dir.path().join("chatbot.toml");
            std::fs::write(&p, text).unwrap();
            p
        });
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(path.as_deref(), |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_then_file_then_env() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.storage.data_dir, PathBuf::from("./data"));
        assert!(
            s.database_url()
                .expose()
                .starts_with("sqlite://./data/chatbot.sqlite")
        );
        assert!(s.queue.redis_url.is_none());

        let file = "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/chatbot\"\nbody_limit = 2048\n";
        let s = load(Some(file), &[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.storage.data_dir, PathBuf::from("/srv/chatbot"));
        assert_eq!(s.server.body_limit, 2048);

        let s = load(Some(file), &[("CHATBOT_LISTEN", "127.0.0.1:7000")]).unwrap();
        assert_eq!(
            s.server.listen.to_string(),
            "127.0.0.1:7000",
            "env beats file"
        );
        assert_eq!(
            s.storage.data_dir,
            PathBuf::from("/srv/chatbot"),
            "file beats default"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = load(None, &[("CHATBOT_LISTEN", "not-an-address")]).unwrap_err();
        assert!(e.to_string().contains("CHATBOT_LISTEN"), "{e}");
        let e = load(Some("lisen = \"x\"\n"), &[]).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = load(None, &[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        let e = load(None, &[("CHATBOT_SECRET_KEY", "short")]).unwrap_err();
        assert!(e.to_string().contains("CHATBOT_SECRET_KEY"), "{e}");
    }

    #[test]
    fn jwt_settings_are_checked_when_loaded() {
        let secret = (
            "CHATBOT_JWT_SECRET",
            "jwt-secret-0123456789abcdef-0123456789",
        );
        let issuer = ("CHATBOT_JWT_ISSUER", "https://auth.example");
        let s = load(None, &[secret, issuer]).unwrap();
        assert_eq!(s.auth.jwt_algorithm, "HS256");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        for (vars, names) in [
            (vec![secret], "CHATBOT_JWT_ISSUER"),
            (
                vec![("CHATBOT_JWT_SECRET", "short"), issuer],
                "CHATBOT_JWT_SECRET",
            ),
            (
                vec![secret, issuer, ("CHATBOT_JWT_ALGORITHM", "none")],
                "CHATBOT_JWT_ALGORITHM",
            ),
            (
                vec![secret, issuer, ("CHATBOT_JWT_ALGORITHM", "RS256")],
                "CHATBOT_JWT_SECRET",
            ),
            (
                vec![("CHATBOT_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem"), issuer],
                "CHATBOT_JWT_PUBLIC_KEY_FILE",
            ),
            (
                vec![("CHATBOT_API_RATE_PER_MINUTE", "0")],
                "CHATBOT_API_RATE_PER_MINUTE",
            ),
        ] {
            let e = load(None, &vars).unwrap_err();
            assert!(e.to_string().contains(names), "{vars:?}: {e}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = load(
            None,
            &[
                (
                    "DATABASE_URL",
                    "postgres://app:hunter2-db@db.internal:5432/chatbot",
                ),
                ("REDIS_URL", "redis://:hunter2-redis@cache:6379/0"),
                (
                    "CHATBOT_SECRET_KEY",
                    "hunter2-hunter2-hunter2-hunter2-hunter2",
                ),
            ],
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/chatbot"),
            "{shown}"
        );
        assert!(shown.contains("redis://:***@cache:6379/0"), "{shown}");
        assert_eq!(
            redact_url("sqlite://./data/x.sqlite?mode=rwc"),
            "sqlite://./data/x.sqlite?mode=rwc"
        );
        assert_eq!(redact_url("redis://token@host"), "redis://***@host");
    }

    fn effective(file: &str, vars: &[(&str, &str)]) -> Result<Effective, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatbot.toml");
        std::fs::write(&path, file).unwrap();
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Effective::load(Some(&path), |k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn errors_say_the_key_the_variable_and_the_source() {
        let e = effective("body_limit = \"lots\"\n", &[]).err().unwrap();
        let text = e.to_string();
        assert!(text.contains("CHATBOT_BODY_LIMIT"), "{text}");
        assert!(text.contains("`body_limit`"), "{text}");
        assert!(text.contains("chatbot.toml"), "{text}");
        let e = effective("", &[("CHATBOT_BODY_LIMIT", "12")])
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(
            text.contains("CHATBOT_BODY_LIMIT (in the environment)"),
            "{text}"
        );
        assert!(text.contains("at least 1024"), "{text}");
        let e = effective("jwt_secret = \"x\"\n", &[]).err().unwrap();
        assert!(e.to_string().contains("`jwt_secret` in config file"), "{e}");
        let e = effective("[server]\nlisten = \"0.0.0.0:1\"\n", &[])
            .err()
            .unwrap();
        assert!(e.to_string().contains("`server` is no setting"), "{e}");
        let e = effective("lisen = \"0.0.0.0:1\"\n", &[]).err().unwrap();
        assert!(e.to_string().contains("did you mean `listen`"), "{e}");
        let e = effective("listen = ", &[]).err().unwrap();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn the_effective_configuration_says_where_each_value_came_from() {
        let loaded = effective(
            "data_dir = \"/srv/chatbot\"\nllm_model = \"m-1\"\n",
            &[
                ("CHATBOT_LLM_MODEL", "m-2"),
                (
                    "CHATBOT_SECRET_KEY",
                    "hunter2-hunter2-hunter2-hunter2-hunter2",
                ),
                ("REDIS_URL", "redis://:hunter2@cache:6379/0"),
                ("CHATBOT_LOG_FORMAT", " JSON "),
            ],
        )
        .unwrap();
        assert_eq!(loaded.settings.llm.model, "m-2");
        assert_eq!(loaded.settings.server.log_format, LogFormat::Json);
        assert_eq!(
            loaded.origin(keys::llm::model),
            Origin::Environment("CHATBOT_LLM_MODEL")
        );
        assert!(matches!(
            loaded.origin(keys::storage::data_dir),
            Origin::File(_)
        ));
        assert_eq!(loaded.origin(keys::server::listen), Origin::Default);
        let shown = loaded.render();
        assert!(!shown.contains("hunter2"), "{shown}");
        let line = |name: &str| {
            shown
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no line for {name} in\n{shown}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("llm_model"),
            "llm_model m-2 environment CHATBOT_LLM_MODEL"
        );
        assert!(
            line("data_dir").starts_with("data_dir /srv/chatbot file "),
            "{shown}"
        );
        assert_eq!(line("listen"), "listen 127.0.0.1:8080 default");
        assert_eq!(
            line("secret_key"),
            "secret_key *** environment CHATBOT_SECRET_KEY"
        );
        assert_eq!(
            line("redis_url"),
            "redis_url redis://:***@cache:6379/0 environment REDIS_URL"
        );
        assert_eq!(line("jwt_secret"), "jwt_secret unset default");
        assert_eq!(line("reports"), "reports /srv/chatbot/reports");
        assert!(line("database").starts_with("database sqlite:///srv/chatbot/chatbot.sqlite"));
        assert_eq!(line("queue"), "queue redis://:***@cache:6379/0");
    }

    #[test]
    fn each_setting_is_declared_once() {
        for (i, key) in keys::ALL.iter().enumerate() {
            for other in &keys::ALL[i + 1..] {
                assert_ne!(key.name, other.name, "two settings with one key");
                assert_ne!(
                    key.variable, other.variable,
                    "two settings with one variable"
                );
            }
            assert!(!key.meaning().is_empty(), "{} says nothing", key.name);
        }
    }

    #[test]
    fn the_readme_holds_the_reference_table() {
        let readme = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/README.md"),
        )
        .unwrap();
        let table = reference();
        assert!(
            readme.contains(table.trim()),
            "src/config/README.md's table differs from the settings; write `chatbot config --reference` into it:\n{table}"
        );
    }
}
