//! The school's profile and settings: name, time zone, reply language, contact details (told
//! to parents), motto (printed on report cards), whether class positions are published, office
//! hours (told to a parent whose conversation goes to staff) and whether a parent's `menu` is
//! answered while staff have the conversation. Read and changed through `school/`; the
//! operator's CLI creates schools with the same checks.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

use crate::domain::PhoneNumber;
use crate::entities::tenant;
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// A language code as the reply templates are named (`en`, `fr`...).
pub fn language(code: &str) -> Result<String> {
    let code = code.trim().to_ascii_lowercase();
    if (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_lowercase()) {
        Ok(code)
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidLanguage,
            format!("`{code}` is not a language code such as `en` or `fr`"),
        ))
    }
}

/// An IANA time zone name in its usual shape (`Africa/Lagos`, `UTC`).
pub fn time_zone(name: &str) -> Result<String> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidTimeZone,
            format!("`{name}` is not a time zone name such as `Africa/Lagos`"),
        ))
    }
}

/// A name of 1 to `max` characters once trimmed; `what` names it in the error.
pub fn bounded_name(name: &str, max: usize, what: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(Error::invalid(
            ErrorCode::InvalidName,
            format!("{what} is 1 to {max} characters"),
        ));
    }
    Ok(name.to_string())
}

/// Optional text of at most `max` characters: blank clears it.
fn optional_text(text: Option<String>, max: usize, field: &str) -> Result<Option<String>> {
    let Some(text) = text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > max {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            format!("`{field}` is at most {max} characters"),
        ));
    }
    Ok(Some(text))
}

/// A change to the profile: `None` leaves a field as it is; for the optional fields,
/// `Some(None)` (or blank text) clears it.
#[derive(Debug, Default, Clone)]
pub struct Change {
    /// Display name (1 to 200 characters).
    pub name: Option<String>,
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// Reply language for parents who have not chosen one.
    pub default_language: Option<String>,
    /// Whether class positions are shown to parents.
    pub publish_position: Option<bool>,
    /// Postal address.
    pub address: Option<Option<String>>,
    /// Phone parents may call.
    pub contact_phone: Option<Option<String>>,
    /// E-mail parents may write to.
    pub contact_email: Option<Option<String>>,
    /// Printed on report cards.
    pub motto: Option<Option<String>>,
    /// When staff answer.
    pub office_hours: Option<Option<String>>,
    /// Whether a parent's `menu` is answered while staff have the conversation.
    pub menu_during_handoff: Option<bool>,
}

/// Apply `change` to the profile of school `ctx`, every field checked first (nothing is
/// written when one is wrong). Parents see it from their next message (the school's data
/// version moves with the row).
pub async fn update(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    change: Change,
    now: DateTime<Utc>,
) -> Result<tenant::Model> {
    let mut row: tenant::ActiveModel = ctx.profile(db).await?.into();
    if let Some(name) = change.name {
        row.name = Set(bounded_name(&name, 200, "a school's name")?);
    }
    if let Some(zone) = change.time_zone {
        row.time_zone = Set(time_zone(&zone)?);
    }
    if let Some(lang) = change.default_language {
        let lang = language(&lang)?;
        let texts = crate::conversation::texts();
        if !texts.languages().contains(&lang) {
            return Err(Error::invalid(
                ErrorCode::InvalidLanguage,
                format!(
                    "replies are written in {}, not `{lang}`",
                    texts.languages().join(", ")
                ),
            ));
        }
        row.default_language = Set(lang);
    }
    if let Some(publish) = change.publish_position {
        row.publish_position = Set(publish);
    }
    if let Some(address) = change.address {
        row.address = Set(optional_text(address, 500, "address")?);
    }
    if let Some(phone) = change.contact_phone {
        let phone = optional_text(phone, 32, "contact_phone")?
            .map(|p| PhoneNumber::parse(&p).map(|p| p.as_str().to_string()))
            .transpose()?;
        row.contact_phone = Set(phone);
    }
    if let Some(email) = change.contact_email {
        let email = optional_text(email, 254, "contact_email")?;
        if let Some(e) = &email
            && !looks_like_email(e)
        {
            return Err(Error::invalid(
                ErrorCode::InvalidEmail,
                format!("`{e}` is not an e-mail address"),
            ));
        }
        row.contact_email = Set(email);
    }
    if let Some(motto) = change.motto {
        row.motto = Set(optional_text(motto, 200, "motto")?);
    }
    if let Some(hours) = change.office_hours {
        row.office_hours = Set(optional_text(hours, 200, "office_hours")?);
    }
    if let Some(menu) = change.menu_during_handoff {
        row.menu_during_handoff = Set(menu);
    }
    if !row.is_changed() {
        return ctx.profile(db).await;
    }
    row.updated_at = Set(now);
    let saved = row.update(db).await?;
    tracing::info!(tenant = ctx.schema_name(), "school profile changed");
    Ok(saved)
}

/// `name@domain.tld`, without spaces: enough to catch a slip, not a validator of RFC 5322.
fn looks_like_email(e: &str) -> bool {
    let Some((user, domain)) = e.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_that_are_slips_are_caught() {
        for ok in ["office@school.ng", "a.b+c@x.co.uk"] {
            assert!(looks_like_email(ok), "{ok}");
        }
        for bad in [
            "office",
            "office@school",
            "@school.ng",
            "a b@x.ng",
            "a@b@c.ng",
            "a@.ng",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }

    #[test]
    fn blank_text_clears_and_long_text_is_refused() {
        assert_eq!(optional_text(Some("  ".into()), 5, "f").unwrap(), None);
        assert_eq!(
            optional_text(Some(" ab ".into()), 5, "f").unwrap(),
            Some("ab".into())
        );
        assert!(optional_text(Some("abcdef".into()), 5, "f").is_err());
    }
}
