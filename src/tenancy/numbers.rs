//! A school's own WhatsApp business numbers: registering one with its provider secrets (sealed
//! at rest at once), replacing the secrets, removing it. The `whatsapp-numbers/` API and
//! `chatbot number` share these, so both check the same rules.
//!
//! A number belongs to one school: registering a number (or a Meta phone number id) that any
//! school already has, the platform's shared number included, is a conflict. The shared number
//! is an operator's setting: only the CLI touches it.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};

use super::{Provider, TenantCtx};
use crate::crypto::{SealedColumn, SecretKey};
use crate::domain::PhoneNumber;
use crate::entities::whatsapp_number;
use crate::error::{Error, Result};

/// Shortest provider secret accepted: Meta's app secrets and Twilio's auth tokens are 32
/// characters, access tokens far longer; a verify token is the school's own choice, and a
/// short one could be guessed.
pub const MIN_SECRET_CHARS: usize = 16;
/// Longest provider secret accepted.
pub const MAX_SECRET_CHARS: usize = 1024;

/// A Meta (WhatsApp Cloud API) number to register.
pub struct MetaNumber {
    pub phone_number: PhoneNumber,
    pub phone_number_id: String,
    pub access_token: SecretString,
    pub app_secret: SecretString,
    pub verify_token: SecretString,
}

/// A Twilio WhatsApp sender to register.
pub struct TwilioNumber {
    pub phone_number: PhoneNumber,
    pub account_sid: String,
    pub auth_token: SecretString,
}

/// A number to register, with every secret its provider needs.
pub enum NewNumber {
    Meta(MetaNumber),
    Twilio(TwilioNumber),
}

impl NewNumber {
    fn phone(&self) -> &PhoneNumber {
        match self {
            Self::Meta(m) => &m.phone_number,
            Self::Twilio(t) => &t.phone_number,
        }
    }
}

/// Secrets to replace; those left `None` stay as they are.
#[derive(Default)]
pub struct NewSecrets {
    pub access_token: Option<SecretString>,
    pub app_secret: Option<SecretString>,
    pub verify_token: Option<SecretString>,
    pub account_sid: Option<String>,
    pub auth_token: Option<SecretString>,
}

impl NewSecrets {
    /// Nothing to replace.
    pub fn is_empty(&self) -> bool {
        self.access_token.is_none()
            && self.app_secret.is_none()
            && self.verify_token.is_none()
            && self.account_sid.is_none()
            && self.auth_token.is_none()
    }
}

/// `secret` as stored: trimmed, 16 to 1024 printable characters without spaces.
pub fn check_secret(field: &str, secret: &SecretString) -> Result<SecretString> {
    let value = secret.expose_secret().trim();
    let chars = value.chars().count();
    if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) {
        return Err(Error::invalid(
            ErrorCode::InvalidSecret,
            format!("{field} must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            ErrorCode::InvalidSecret,
            format!("{field} must not contain spaces or control characters"),
        ));
    }
    Ok(SecretString::from(value.to_string()))
}

/// Meta's id of a phone number (digits, as the Cloud API's console shows it).
pub fn check_phone_number_id(id: &str) -> Result<String> {
    let id = id.trim();
    if (5..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_string())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidPhoneNumberId,
            "phone_number_id is Meta's id of the number: 5 to 32 digits (WhatsApp Manager, \
             API Setup)",
        ))
    }
}

/// A Twilio account SID: `AC` and 32 hexadecimal digits.
pub fn check_account_sid(sid: &str) -> Result<String> {
    let sid = sid.trim();
    let ok =
        sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(sid.to_string())
    } else {
        Err(Error::invalid(
            ErrorCode::InvalidAccountSid,
            "account_sid is a Twilio account SID: AC followed by 32 hexadecimal digits",
        ))
    }
}

/// The school's numbers, oldest first (the platform's shared number included when the school
/// holds it).
pub async fn of_school(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Vec<whatsapp_number::Model>> {
    Ok(ctx
        .find::<whatsapp_number::Entity>()
        .order_by_asc(whatsapp_number::Column::Id)
        .all(db)
        .await?)
}

/// The school's number `id`, or a 404 (another school's numbers are not found either).
pub async fn one(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<whatsapp_number::Model> {
    ctx.find::<whatsapp_number::Entity>()
        .filter(whatsapp_number::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no WhatsApp number {id} in this school")))
}

/// The school's number `id`, or the one whose number is `phone` (as the CLI names them).
pub async fn named(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id_or_phone: &str,
) -> Result<whatsapp_number::Model> {
    if let Ok(id) = id_or_phone.trim().parse::<i64>()
        && id.to_string().len() < 8
    {
        return one(db, ctx, id).await;
    }
    let phone = PhoneNumber::parse(id_or_phone)?;
    ctx.find::<whatsapp_number::Entity>()
        .filter(whatsapp_number::Column::PhoneNumber.eq(phone.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no WhatsApp number {phone} in this school")))
}

fn taken(ctx: &TenantCtx, row: &whatsapp_number::Model, what: &str) -> Error {
    if row.tenant_id == ctx.id() {
        Error::Conflict(format!(
            "{what} is already registered in this school (WhatsApp number {}); change its \
             secrets with PUT whatsapp-numbers/{}/",
            row.id, row.id
        ))
    } else {
        Error::Conflict(format!(
            "{what} is already registered by another school or as the platform's shared \
             number; a number belongs to one school"
        ))
    }
}

/// Register `new` for the school, its secrets sealed. `shared` marks the platform's shared
/// number (operators only). A number or Meta id any school has already is a 409.
pub async fn register(
    db: &impl ConnectionTrait,
    key: &SecretKey,
    ctx: &TenantCtx,
    new: NewNumber,
    shared: bool,
    now: DateTime<Utc>,
) -> Result<whatsapp_number::Model> {
    let phone = new.phone().clone();
    if let Some(row) = whatsapp_number::Entity::find()
        .filter(whatsapp_number::Column::PhoneNumber.eq(phone.as_str()))
        .one(db)
        .await?
    {
        return Err(taken(ctx, &row, &format!("number {phone}")));
    }
    let tid = ctx.id();
    let seal = |column: SealedColumn, s: &SecretString| {
        Set(Some(key.seal(column, tid, s.expose_secret())))
    };
    let mut row = whatsapp_number::ActiveModel {
        tenant_id: Set(tid),
        phone_number: Set(phone.as_str().to_string()),
        shared: Set(shared),
        created_at: Set(now),
        secrets_updated_at: Set(Some(now)),
        ..Default::default()
    };
    match &new {
        NewNumber::Meta(m) => {
            let id = check_phone_number_id(&m.phone_number_id)?;
            if let Some(row) = whatsapp_number::Entity::find()
                .filter(whatsapp_number::Column::PhoneNumberId.eq(id.as_str()))
                .one(db)
                .await?
            {
                return Err(taken(ctx, &row, &format!("phone_number_id {id}")));
            }
            row.provider = Set(Provider::Meta.as_str().to_string());
            row.phone_number_id = Set(Some(id));
            row.access_token = seal(
                SealedColumn::AccessToken,
                &check_secret("access_token", &m.access_token)?,
            );
            row.app_secret = seal(
                SealedColumn::AppSecret,
                &check_secret("app_secret", &m.app_secret)?,
            );
            row.verify_token = seal(
                SealedColumn::VerifyToken,
                &check_secret("verify_token", &m.verify_token)?,
            );
        }
        NewNumber::Twilio(t) => {
            row.provider = Set(Provider::Twilio.as_str().to_string());
            row.account_sid = Set(Some(check_account_sid(&t.account_sid)?));
            row.auth_token = seal(
                SealedColumn::AuthToken,
                &check_secret("auth_token", &t.auth_token)?,
            );
        }
    }
    match row.insert(db).await {
        Ok(model) => {
            tracing::info!(
                school = ctx.schema_name(),
                number = model.id,
                provider = %model.provider,
                "WhatsApp number registered"
            );
            Ok(model)
        }
        // Registered at the same instant by another request: the unique indexes keep one.
        Err(e) if crate::error::is_unique_violation(&e) => Err(Error::Conflict(format!(
            "number {phone} is already registered; a number belongs to one school"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn refuse_shared(n: &whatsapp_number::Model, operator: bool) -> Result<()> {
    if n.shared && !operator {
        return Err(Error::Conflict(format!(
            "WhatsApp number {} is the platform's shared number: its operator changes it \
             (chatbot number ...)",
            n.id
        )));
    }
    Ok(())
}

/// Replace some of number `id`'s secrets (sealed); a secret of the other provider is a 400.
/// `operator` may change the platform's shared number, the API may not.
pub async fn replace_secrets(
    db: &impl ConnectionTrait,
    key: &SecretKey,
    ctx: &TenantCtx,
    id: i64,
    secrets: NewSecrets,
    operator: bool,
    now: DateTime<Utc>,
) -> Result<whatsapp_number::Model> {
    let n = one(db, ctx, id).await?;
    refuse_shared(&n, operator)?;
    if secrets.is_empty() {
        return Err(Error::invalid(
            ErrorCode::NothingToChange,
            "name at least one secret (or a broadcast_template) to change",
        ));
    }
    let provider = Provider::named(&n.provider);
    let foreign: &[(&str, bool)] = match provider {
        Provider::Meta => &[
            ("account_sid", secrets.account_sid.is_some()),
            ("auth_token", secrets.auth_token.is_some()),
        ],
        Provider::Twilio => &[
            ("access_token", secrets.access_token.is_some()),
            ("app_secret", secrets.app_secret.is_some()),
            ("verify_token", secrets.verify_token.is_some()),
        ],
    };
    if let Some((field, _)) = foreign.iter().find(|(_, given)| *given) {
        return Err(Error::invalid(
            ErrorCode::WrongProvider,
            format!("{field} is not a secret of a {} number", provider.as_str()),
        ));
    }
    let tid = n.tenant_id;
    let mut row = whatsapp_number::ActiveModel {
        id: Set(n.id),
        secrets_updated_at: Set(Some(now)),
        ..Default::default()
    };
    let sealed = |column: SealedColumn, given: &Option<SecretString>| -> Result<_> {
        Ok(match given {
            Some(s) => {
                let s = check_secret(column.name(), s)?;
                Some(Set(Some(key.seal(column, tid, s.expose_secret()))))
            }
            None => None,
        })
    };
    if let Some(v) = sealed(SealedColumn::AccessToken, &secrets.access_token)? {
        row.access_token = v;
    }
    if let Some(v) = sealed(SealedColumn::AppSecret, &secrets.app_secret)? {
        row.app_secret = v;
    }
    if let Some(v) = sealed(SealedColumn::VerifyToken, &secrets.verify_token)? {
        row.verify_token = v;
    }
    if let Some(v) = sealed(SealedColumn::AuthToken, &secrets.auth_token)? {
        row.auth_token = v;
    }
    if let Some(sid) = &secrets.account_sid {
        row.account_sid = Set(Some(check_account_sid(sid)?));
    }
    let model = row.update(db).await?;
    tracing::info!(
        school = ctx.schema_name(),
        number = model.id,
        "WhatsApp number secrets replaced"
    );
    Ok(model)
}

/// Remove number `id` from the school: webhooks naming it are refused from then on.
pub async fn remove(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
    operator: bool,
) -> Result<whatsapp_number::Model> {
    let n = one(db, ctx, id).await?;
    refuse_shared(&n, operator)?;
    ctx.delete_many::<whatsapp_number::Entity>()
        .filter(whatsapp_number::Column::Id.eq(n.id))
        .exec(db)
        .await?;
    tracing::info!(
        school = ctx.schema_name(),
        number = n.id,
        "WhatsApp number removed"
    );
    Ok(n)
}

/// The last four characters of a number's secret in `column`, to tell which one is set
/// without showing it; `None` when there is none (or it does not open).
pub fn last4(key: &SecretKey, n: &whatsapp_number::Model, column: SealedColumn) -> Option<String> {
    let secret = super::secret(key, n, column)?;
    let chars: Vec<char> = secret.expose_secret().chars().collect();
    // Only long secrets are accepted; an old short one shows nothing rather than most of it.
    (chars.len() >= MIN_SECRET_CHARS).then(|| chars[chars.len() - 4..].iter().collect())
}

/// The path a provider posts this number's webhooks to (under the service's public URL).
pub fn webhook_path(provider: Provider) -> &'static str {
    match provider {
        Provider::Meta => "/api/v1/chatbot/webhooks/whatsapp",
        Provider::Twilio => "/api/v1/chatbot/webhooks/twilio",
    }
}

/// A notice field that fills a template parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateField {
    /// The school's name.
    SchoolName,
    /// The notice's title.
    NoticeTitle,
    /// The notice's first words (at most 100 characters, on one line).
    NoticeSummary,
    /// The whole notice, on one line (at most 1000 characters).
    NoticeBody,
}

/// The fields of one notice, as template parameters take them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoticeFields {
    pub school_name: String,
    pub notice_title: String,
    pub notice_body: String,
}

/// One line, whitespace runs folded (Meta refuses newlines, tabs and long runs of spaces in a
/// parameter), at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.chars().count() <= max {
        return folded;
    }
    let mut cut: String = folded.chars().take(max - 1).collect();
    cut = cut.trim_end().to_string();
    cut.push('…');
    cut
}

impl NoticeFields {
    /// The value `field` takes for this notice.
    pub fn value(&self, field: TemplateField) -> String {
        match field {
            TemplateField::SchoolName => one_line(&self.school_name, 200),
            TemplateField::NoticeTitle => one_line(&self.notice_title, 200),
            TemplateField::NoticeSummary => one_line(&self.notice_body, 100),
            TemplateField::NoticeBody => one_line(&self.notice_body, 1000),
        }
    }
}

/// The approved template a number's broadcasts go as outside WhatsApp's 24-hour window: a
/// Meta template (name, language) or a Twilio Content SID, and which notice field fills each
/// of its parameters, in order ({{1}}, {{2}}, ...).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BroadcastTemplate {
    /// Meta: the template's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Meta: its language code, e.g. `en` or `en_US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Twilio: the Content SID (`HX...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sid: Option<String>,
    /// The notice field of each parameter, in order.
    #[serde(default)]
    pub parameters: Vec<TemplateField>,
}

/// Most parameters a template may name.
pub const MAX_TEMPLATE_PARAMETERS: usize = 10;

impl BroadcastTemplate {
    /// Checked for a number of `provider`: a Meta template has a name (lower case, digits and
    /// `_`) and a language; a Twilio one a Content SID.
    pub fn checked(self, provider: Provider) -> Result<Self> {
        let bad = |m: &str| Err(Error::invalid(ErrorCode::InvalidTemplate, m.to_string()));
        if self.parameters.len() > MAX_TEMPLATE_PARAMETERS {
            return bad("a template takes at most 10 parameters");
        }
        match provider {
            Provider::Meta => {
                if self.content_sid.is_some() {
                    return bad(
                        "content_sid is for Twilio numbers; a Meta template has a name and a language",
                    );
                }
                let name_ok = self.name.as_deref().is_some_and(|n| {
                    (1..=512).contains(&n.len())
                        && n.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                });
                if !name_ok {
                    return bad(
                        "name is the approved template's name: lower case letters, digits and _",
                    );
                }
                let lang_ok = self.language.as_deref().is_some_and(|l| {
                    let (code, region) = l.split_once('_').unwrap_or((l, "AA"));
                    (2..=3).contains(&code.len())
                        && code.bytes().all(|b| b.is_ascii_lowercase())
                        && region.len() == 2
                        && region.bytes().all(|b| b.is_ascii_uppercase())
                });
                if !lang_ok {
                    return bad("language is the template's language code, e.g. en or en_US");
                }
            }
            Provider::Twilio => {
                if self.name.is_some() || self.language.is_some() {
                    return bad(
                        "a Twilio template is a content_sid; name and language are for Meta numbers",
                    );
                }
                let sid_ok = self.content_sid.as_deref().is_some_and(|s| {
                    s.len() == 34
                        && s.starts_with("HX")
                        && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
                });
                if !sid_ok {
                    return bad(
                        "content_sid is a Twilio Content SID: HX followed by 32 hexadecimal digits",
                    );
                }
            }
        }
        Ok(self)
    }

    /// The template of a stored number, when it has one that reads.
    pub fn of(n: &whatsapp_number::Model) -> Option<Self> {
        let value = n.broadcast_template.clone()?;
        match serde_json::from_value(value) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(number = n.id, "unreadable broadcast template: {e}");
                None
            }
        }
    }

    /// Each parameter's text for `notice`, in order.
    pub fn values(&self, notice: &NoticeFields) -> Vec<String> {
        self.parameters.iter().map(|f| notice.value(*f)).collect()
    }
}

/// Set (or with `None` remove) the broadcast template of the school's number `id`.
pub async fn set_template(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
    template: Option<BroadcastTemplate>,
    operator: bool,
) -> Result<whatsapp_number::Model> {
    let n = one(db, ctx, id).await?;
    refuse_shared(&n, operator)?;
    let template = match template {
        Some(t) => Some(t.checked(Provider::named(&n.provider))?),
        None => None,
    };
    let row = whatsapp_number::ActiveModel {
        id: Set(n.id),
        broadcast_template: Set(
            template.map(|t| serde_json::to_value(t).expect("a template serialises"))
        ),
        ..Default::default()
    };
    Ok(row.update(db).await?)
}
