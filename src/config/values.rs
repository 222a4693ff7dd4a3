//! The pieces a setting is made of: its [`Key`], the [`Check`] its owner runs, the value
//! types of its own (log format, secret URLs, origin lists), and how a value is shown.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// One setting: its group, the module that checks it, its TOML key, its environment variable
/// and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The group (concern) it belongs to.
    pub group: &'static str,
    /// The module that checks the group.
    pub owner: &'static str,
    /// Its key in the TOML file.
    pub name: &'static str,
    /// Its environment variable.
    pub variable: &'static str,
    /// What it means (its doc comment).
    pub doc: &'static str,
}

impl Key {
    /// What it means, on one line.
    pub fn meaning(self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// A problem with this setting's value.
    pub fn problem(self, message: impl Into<String>) -> Problem {
        Problem {
            key: self,
            message: message.into(),
        }
    }

    /// `Ok` when `ok`, else this setting's problem `message`.
    pub fn require(self, ok: bool, message: &str) -> Result<(), Problem> {
        if ok {
            Ok(())
        } else {
            Err(self.problem(message))
        }
    }

    /// `Ok` when `value` is within `range`, else `must be between LOW and HIGH UNIT`.
    pub fn require_within<T: PartialOrd + fmt::Display>(
        self,
        value: T,
        range: std::ops::RangeInclusive<T>,
        unit: &str,
    ) -> Result<(), Problem> {
        if range.contains(&value) {
            Ok(())
        } else {
            Err(self.problem(format!(
                "must be between {} and {} {unit}",
                range.start(),
                range.end()
            )))
        }
    }

    /// `Ok` when the connection URL starts with one of `schemes`, else `expected WHAT URL, got
    /// ...` with its password hidden.
    pub fn require_scheme(
        self,
        url: &SecretUrl,
        schemes: &[&str],
        what: &str,
    ) -> Result<(), Problem> {
        if schemes
            .iter()
            .any(|scheme| url.expose().starts_with(scheme))
        {
            Ok(())
        } else {
            Err(self.problem(format!("expected {what} URL, got `{}`", url.redacted())))
        }
    }

    /// `Ok` when the URL is `http://` or `https://`.
    pub fn require_http_url(self, url: &str) -> Result<(), Problem> {
        self.require(
            url.starts_with("http://") || url.starts_with("https://"),
            "must be an http:// or https:// URL",
        )
    }

    /// `Ok` when the secret has at least `min` characters.
    pub fn require_secret_length(self, secret: &SecretString, min: usize) -> Result<(), Problem> {
        if secret.expose_secret().len() >= min {
            Ok(())
        } else {
            Err(self.problem(format!("must be at least {min} characters")))
        }
    }
}

impl fmt::Display for Key {
    /// The variable, as messages name a setting (`set CHATBOT_JWT_SECRET or ...`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.variable)
    }
}

/// A setting whose value its owner refuses.
#[derive(Debug)]
pub struct Problem {
    /// The setting.
    pub key: Key,
    /// What is wrong, e.g. `must be at least 1024 bytes`.
    pub message: String,
}

/// Checks, and normalises, one group of settings once all sources are merged. Each group's
/// check lives in the module that owns the group (the key's `owner`), so this module imports
/// none of them.
pub trait Check {
    /// `Err` names the first setting at fault.
    fn check(&mut self) -> Result<(), Problem>;
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `text` or `json`, got `{other}`")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// A connection URL that may carry a password; `Debug` and `Display` hide the password.
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct SecretUrl(SecretString);

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(SecretString::from(url))
    }
}

impl SecretUrl {
    /// Wrap a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }
    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Hide the password in `scheme://user:password@host/...`; other URLs are returned unchanged.
pub(super) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let user = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None if userinfo.is_empty() => String::new(),
        None => "***".to_string(),
    };
    format!("{}://{}@{}", &url[..scheme_end], user, &rest[at + 1..])
}

/// A comma-separated list of origins, each `scheme://host[:port]` without a path.
#[derive(Debug, Clone, Default)]
pub struct OriginList(pub Vec<String>);

impl std::str::FromStr for OriginList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut origins = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let rest = item
                .strip_prefix("https://")
                .or_else(|| item.strip_prefix("http://"))
                .ok_or_else(|| format!("`{item}` is not an http:// or https:// origin"))?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "`{item}` is not an origin: write scheme://host[:port], without a path"
                ));
            }
            origins.push(item.to_ascii_lowercase());
        }
        Ok(Self(origins))
    }
}

/// Types read from text, in the file as in the environment, through their `FromStr`.
macro_rules! deserialize_from_str {
    ($($ty:ty),*) => {
        $(impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        })*
    };
}
deserialize_from_str!(LogFormat, OriginList);

/// A value as `chatbot config` and the reference table show it: secrets as `***`, passwords
/// in URLs as `***`, an unset option as `unset`.
pub(super) trait Show {
    /// The value for people.
    fn show(&self) -> String;
}

macro_rules! show_as_displayed {
    ($($ty:ty),*) => {
        $(impl Show for $ty {
            fn show(&self) -> String {
                self.to_string()
            }
        })*
    };
}
show_as_displayed!(SocketAddr, String, u32, u64, usize, SecretUrl, LogFormat);

impl Show for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Show for SecretString {
    fn show(&self) -> String {
        "***".to_string()
    }
}

impl Show for OriginList {
    fn show(&self) -> String {
        if self.0.is_empty() {
            "unset".to_string()
        } else {
            self.0.join(",")
        }
    }
}

impl<T: Show> Show for Option<T> {
    fn show(&self) -> String {
        self.as_ref()
            .map_or_else(|| "unset".to_string(), Show::show)
    }
}
