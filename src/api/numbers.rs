//! `whatsapp-numbers/`: a school registers its own WhatsApp business numbers and their provider
//! secrets (write-only: sealed at rest, never returned, only their last four characters shown),
//! rotates them, removes a number. The answer says where to point the provider's webhook.

use chrono::{DateTime, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Union};
use secrecy::SecretString;

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiResult, Deleted, Page, slice_of};
use crate::crypto::SealedColumn;
use crate::domain::PhoneNumber;
use crate::entities::whatsapp_number;
use crate::state::AppState;
use crate::tenancy::Provider;
use crate::tenancy::numbers::{
    self, BroadcastTemplate, MetaNumber, NewNumber, NewSecrets, TemplateField, TwilioNumber,
};

/// A notice field that fills a template parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TemplateFieldName {
    /// The school's name.
    SchoolName,
    /// The notice's title.
    NoticeTitle,
    /// The notice's first words (at most 100 characters, one line).
    NoticeSummary,
    /// The whole notice on one line (at most 1000 characters).
    NoticeBody,
}

impl From<TemplateFieldName> for TemplateField {
    fn from(f: TemplateFieldName) -> Self {
        match f {
            TemplateFieldName::SchoolName => Self::SchoolName,
            TemplateFieldName::NoticeTitle => Self::NoticeTitle,
            TemplateFieldName::NoticeSummary => Self::NoticeSummary,
            TemplateFieldName::NoticeBody => Self::NoticeBody,
        }
    }
}

impl From<TemplateField> for TemplateFieldName {
    fn from(f: TemplateField) -> Self {
        match f {
            TemplateField::SchoolName => Self::SchoolName,
            TemplateField::NoticeTitle => Self::NoticeTitle,
            TemplateField::NoticeSummary => Self::NoticeSummary,
            TemplateField::NoticeBody => Self::NoticeBody,
        }
    }
}

/// The approved template a number's broadcasts go as outside WhatsApp's 24-hour window (inside
/// it a notice goes as free text). Meta: `name` and `language`; Twilio: `content_sid`. Each of
/// `parameters` fills the template's next placeholder ({{1}}, {{2}}, ...) from the notice.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BroadcastTemplateDoc {
    /// Meta: the template's name, as approved in WhatsApp Manager.
    #[oai(validator(pattern = "^[a-z0-9_]{1,512}$"))]
    pub name: Option<String>,
    /// Meta: the template's language code, e.g. `en` or `en_US`.
    #[oai(validator(pattern = "^[a-z]{2,3}(_[A-Z]{2})?$"))]
    pub language: Option<String>,
    /// Twilio: the Content SID (`HX` and 32 hexadecimal digits).
    #[oai(validator(pattern = "^HX[0-9a-fA-F]{32}$"))]
    pub content_sid: Option<String>,
    /// The notice field of each placeholder, in order (at most 10).
    #[oai(default, validator(max_items = 10))]
    pub parameters: Vec<TemplateFieldName>,
}

impl From<BroadcastTemplateDoc> for BroadcastTemplate {
    fn from(t: BroadcastTemplateDoc) -> Self {
        Self {
            name: t.name,
            language: t.language,
            content_sid: t.content_sid,
            parameters: t.parameters.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<BroadcastTemplate> for BroadcastTemplateDoc {
    fn from(t: BroadcastTemplate) -> Self {
        Self {
            name: t.name,
            language: t.language,
            content_sid: t.content_sid,
            parameters: t.parameters.into_iter().map(Into::into).collect(),
        }
    }
}

/// A Meta (WhatsApp Cloud API) number, as WhatsApp Manager shows it under API Setup.
#[derive(Debug, Object)]
pub struct MetaNumberIn {
    /// The number parents write to, in international format, e.g. `+2348012345678`.
    #[oai(validator(pattern = r"^\+[1-9][0-9]{7,14}$"))]
    pub phone_number: String,
    /// Meta's id of the number ("Phone number ID").
    #[oai(validator(pattern = "^[0-9]{5,32}$"))]
    pub phone_number_id: String,
    /// A permanent (system user) access token with `whatsapp_business_messaging`.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub access_token: String,
    /// The Meta app's secret (App settings, Basic), which signs every webhook.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub app_secret: String,
    /// A token of your choosing (16 or more characters) that Meta sends back when you
    /// subscribe the webhook.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub verify_token: String,
    /// The template broadcasts go as outside the 24-hour window (`name`, `language`).
    pub broadcast_template: Option<BroadcastTemplateDoc>,
}

/// A Twilio WhatsApp sender.
#[derive(Debug, Object)]
pub struct TwilioNumberIn {
    /// The sender's number, in international format, e.g. `+14155238886`.
    #[oai(validator(pattern = r"^\+[1-9][0-9]{7,14}$"))]
    pub phone_number: String,
    /// The Twilio account SID (`AC` and 32 hexadecimal digits).
    #[oai(validator(pattern = "^AC[0-9a-fA-F]{32}$"))]
    pub account_sid: String,
    /// The account's auth token, which signs every webhook and authenticates sending.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub auth_token: String,
    /// The template broadcasts go as outside the 24-hour window (`content_sid`).
    pub broadcast_template: Option<BroadcastTemplateDoc>,
}

/// A number to register: `provider` says which fields it needs.
#[derive(Debug, Union)]
#[oai(discriminator_name = "provider", one_of)]
pub enum WhatsAppNumberIn {
    /// Meta's WhatsApp Cloud API.
    #[oai(mapping = "meta")]
    Meta(MetaNumberIn),
    /// Twilio.
    #[oai(mapping = "twilio")]
    Twilio(TwilioNumberIn),
}

/// What to change of a number: secrets to replace (rotation; the number's provider's only)
/// and its broadcast template; what is left out stays.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WhatsAppNumberSecretsIn {
    /// Meta: a new access token.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub access_token: Option<String>,
    /// Meta: the app's new secret.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub app_secret: Option<String>,
    /// Meta: a new webhook verify token.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub verify_token: Option<String>,
    /// Twilio: another account SID.
    #[oai(validator(pattern = "^AC[0-9a-fA-F]{32}$"))]
    pub account_sid: Option<String>,
    /// Twilio: a new auth token.
    #[oai(validator(pattern = "^[!-~]{16,1024}$"))]
    pub auth_token: Option<String>,
    /// A new broadcast template.
    pub broadcast_template: Option<BroadcastTemplateDoc>,
}

/// A registered number. Secrets are never returned: only the last four characters of each
/// one that is set.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WhatsAppNumberOut {
    /// Id, for the item paths.
    pub id: i64,
    /// `meta` or `twilio`.
    pub provider: String,
    /// The number parents write to.
    pub phone_number: String,
    /// Meta's id of the number.
    pub phone_number_id: Option<String>,
    /// Twilio's account SID.
    pub account_sid: Option<String>,
    /// The platform's shared number (several schools; changed by its operator only).
    pub shared: bool,
    /// Meta: last four characters of the access token.
    pub access_token_last4: Option<String>,
    /// Meta: last four characters of the app secret.
    pub app_secret_last4: Option<String>,
    /// Meta: last four characters of the verify token.
    pub verify_token_last4: Option<String>,
    /// Twilio: last four characters of the auth token.
    pub auth_token_last4: Option<String>,
    /// The URL to paste into the provider's console as the webhook (callback) URL.
    pub webhook_url: String,
    /// Where to paste it.
    pub webhook_setup: String,
    /// When the number was registered.
    pub created_at: DateTime<Utc>,
    /// When its secrets were last set.
    pub secrets_updated_at: Option<DateTime<Utc>>,
    /// The template broadcasts go as outside the 24-hour window; without one, they reach
    /// only parents who wrote in the last 24 hours.
    pub broadcast_template: Option<BroadcastTemplateDoc>,
}

fn out(state: &AppState, req: &Request, n: whatsapp_number::Model) -> WhatsAppNumberOut {
    let key = &state.secret;
    let provider = Provider::named(&n.provider);
    let webhook_url = format!(
        "{}{}",
        crate::channels::public_base(state.settings.server.public_url.as_deref(), req),
        numbers::webhook_path(provider)
    );
    let webhook_setup = match provider {
        Provider::Meta => {
            "Meta App Dashboard > WhatsApp > Configuration > Webhook: Callback URL \
                           = webhook_url, Verify token = this number's verify token; then \
                           subscribe to the `messages` field."
        }
        Provider::Twilio => {
            "Twilio Console > Messaging > Senders > WhatsApp senders > this \
                             number: Webhook URL for incoming messages = webhook_url (HTTP \
                             POST); Status callback URL = webhook_url."
        }
    };
    WhatsAppNumberOut {
        broadcast_template: BroadcastTemplate::of(&n).map(Into::into),
        access_token_last4: numbers::last4(key, &n, SealedColumn::AccessToken),
        app_secret_last4: numbers::last4(key, &n, SealedColumn::AppSecret),
        verify_token_last4: numbers::last4(key, &n, SealedColumn::VerifyToken),
        auth_token_last4: numbers::last4(key, &n, SealedColumn::AuthToken),
        id: n.id,
        provider: n.provider,
        phone_number: n.phone_number,
        phone_number_id: n.phone_number_id,
        account_sid: n.account_sid,
        shared: n.shared,
        webhook_url,
        webhook_setup: webhook_setup.to_string(),
        created_at: n.created_at,
        secrets_updated_at: n.secrets_updated_at,
    }
}

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

#[derive(ApiResponse)]
enum Created {
    /// Registered; its secrets are sealed and will not be shown again.
    #[oai(status = 201)]
    Created(Json<WhatsAppNumberOut>),
}

/// `whatsapp-numbers/`.
pub struct NumbersApi;

#[OpenApi(tag = "ApiTags::School")]
impl NumbersApi {
    /// The school's WhatsApp numbers, oldest first.
    #[oai(
        path = "/whatsapp-numbers/",
        method = "get",
        operation_id = "list_whatsapp_numbers"
    )]
    async fn list(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        req: &Request,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: poem_openapi::param::Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: poem_openapi::param::Query<Option<u64>>,
    ) -> ApiResult<Json<Page<WhatsAppNumberOut>>> {
        let ctx = caller.require("admin")?;
        let rows = numbers::of_school(&state.db, ctx).await?;
        let slice = slice_of(rows, page.0, page_size.0)?;
        let results = slice
            .rows
            .iter()
            .cloned()
            .map(|n| out(&state, req, n))
            .collect();
        Ok(Json(slice.page(results)))
    }

    /// Register one of the school's numbers with its provider secrets. A number (or Meta
    /// phone number id) that any school has registered already is a 409.
    #[oai(
        path = "/whatsapp-numbers/",
        method = "post",
        operation_id = "create_whatsapp_number"
    )]
    async fn create(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        req: &Request,
        body: Json<WhatsAppNumberIn>,
    ) -> ApiResult<Created> {
        let ctx = caller.require("admin")?;
        let (provider, template) = match &body.0 {
            WhatsAppNumberIn::Meta(m) => (Provider::Meta, m.broadcast_template.clone()),
            WhatsAppNumberIn::Twilio(t) => (Provider::Twilio, t.broadcast_template.clone()),
        };
        // Checked before anything is stored.
        let template = template
            .map(|t| BroadcastTemplate::from(t).checked(provider))
            .transpose()?;
        let new = match body.0 {
            WhatsAppNumberIn::Meta(m) => NewNumber::Meta(MetaNumber {
                phone_number: PhoneNumber::parse(&m.phone_number)?,
                phone_number_id: m.phone_number_id,
                access_token: secret(m.access_token),
                app_secret: secret(m.app_secret),
                verify_token: secret(m.verify_token),
            }),
            WhatsAppNumberIn::Twilio(t) => NewNumber::Twilio(TwilioNumber {
                phone_number: PhoneNumber::parse(&t.phone_number)?,
                account_sid: t.account_sid,
                auth_token: secret(t.auth_token),
            }),
        };
        let mut n =
            numbers::register(&state.db, &state.secret, ctx, new, false, Utc::now()).await?;
        if template.is_some() {
            n = numbers::set_template(&state.db, ctx, n.id, template, false).await?;
        }
        state.forget_app_secrets();
        Ok(Created::Created(Json(out(&state, req, n))))
    }

    /// One of the school's numbers.
    #[oai(
        path = "/whatsapp-numbers/:id/",
        method = "get",
        operation_id = "get_whatsapp_number"
    )]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        req: &Request,
        id: Path<i64>,
    ) -> ApiResult<Json<WhatsAppNumberOut>> {
        let ctx = caller.require("admin")?;
        let n = numbers::one(&state.db, ctx, id.0).await?;
        Ok(Json(out(&state, req, n)))
    }

    /// Replace some of a number's secrets (rotation), or its broadcast template; what is left
    /// out stays. A secret of the other provider is a 400; the platform's shared number is a
    /// 409.
    #[oai(
        path = "/whatsapp-numbers/:id/",
        method = "put",
        operation_id = "update_whatsapp_number"
    )]
    async fn update(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        req: &Request,
        id: Path<i64>,
        body: Json<WhatsAppNumberSecretsIn>,
    ) -> ApiResult<Json<WhatsAppNumberOut>> {
        let ctx = caller.require("admin")?;
        let b = body.0;
        let secrets = NewSecrets {
            access_token: b.access_token.map(secret),
            app_secret: b.app_secret.map(secret),
            verify_token: b.verify_token.map(secret),
            account_sid: b.account_sid,
            auth_token: b.auth_token.map(secret),
        };
        let mut n = numbers::one(&state.db, ctx, id.0).await?;
        // The template is checked first: a refused one changes nothing.
        let template = b
            .broadcast_template
            .map(|t| BroadcastTemplate::from(t).checked(Provider::named(&n.provider)))
            .transpose()?;
        if !secrets.is_empty() || template.is_none() {
            n = numbers::replace_secrets(
                &state.db,
                &state.secret,
                ctx,
                id.0,
                secrets,
                false,
                Utc::now(),
            )
            .await?;
        }
        if template.is_some() {
            n = numbers::set_template(&state.db, ctx, id.0, template, false).await?;
        }
        state.forget_app_secrets();
        Ok(Json(out(&state, req, n)))
    }

    /// Remove a number from the school: its webhooks are refused from then on.
    #[oai(
        path = "/whatsapp-numbers/:id/",
        method = "delete",
        operation_id = "delete_whatsapp_number"
    )]
    async fn delete(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        numbers::remove(&state.db, ctx, id.0, false).await?;
        state.forget_app_secrets();
        Ok(Deleted::NoContent)
    }
}
