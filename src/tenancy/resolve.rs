//! The seed's tenant resolution rules: `X-Schema-Name` slug, domain, WhatsApp business number,
//! sender phone (WhatsApp contacts) and API key.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::ctx::{TenantCtx, normalise_host};
use crate::crypto::hash_api_key;
use crate::domain::{PhoneNumber, SchemaName};
use crate::entities::{api_key, tenant, tenant_domain, whatsapp_contact, whatsapp_number};
use crate::error::{Error, Result};

/// Which provider a business number is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Meta's WhatsApp Cloud API.
    Meta,
    /// Twilio's WhatsApp API.
    Twilio,
}

impl Provider {
    /// The provider a job names: `twilio`, or Meta (jobs queued before the field existed name
    /// none and were all Meta's).
    pub fn named(name: &str) -> Self {
        if name == Self::Twilio.as_str() {
            Self::Twilio
        } else {
            Self::Meta
        }
    }

    /// Name stored in `whatsapp_numbers.provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Twilio => "twilio",
        }
    }
}

fn unknown_tenant(what: impl std::fmt::Display) -> Error {
    Error::NotFound(format!("unknown tenant: {what}"))
}

pub(super) async fn by_pk(db: &impl ConnectionTrait, id: i64) -> Result<TenantCtx> {
    tenant::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|t| TenantCtx::from_model(&t))
        .ok_or_else(|| unknown_tenant(id))
}

/// Resolve by slug (`X-Schema-Name`).
pub async fn by_schema_name(db: &impl ConnectionTrait, name: &SchemaName) -> Result<TenantCtx> {
    tenant::Entity::find()
        .filter(tenant::Column::SchemaName.eq(name.as_str()))
        .one(db)
        .await?
        .map(|t| TenantCtx::from_model(&t))
        .ok_or_else(|| unknown_tenant(format!("no school with schema name `{name}`")))
}

/// Resolve by the request's host name (port ignored).
pub async fn by_domain(db: &impl ConnectionTrait, host: &str) -> Result<TenantCtx> {
    let host = normalise_host(host);
    let row = tenant_domain::Entity::find()
        .filter(tenant_domain::Column::Domain.eq(host.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| unknown_tenant(format!("no school serves domain `{host}`")))?;
    by_pk(db, row.tenant_id).await
}

/// Resolve by the business number a message was sent to: Meta's `phone_number_id`, or the
/// number itself (Twilio's `To`).
pub async fn by_business_number(
    db: &impl ConnectionTrait,
    provider: Provider,
    number_or_id: &str,
) -> Result<(TenantCtx, whatsapp_number::Model)> {
    let mut query = whatsapp_number::Entity::find()
        .filter(whatsapp_number::Column::Provider.eq(provider.as_str()));
    query = match (provider, PhoneNumber::parse(number_or_id)) {
        (Provider::Meta, _) => {
            query.filter(whatsapp_number::Column::PhoneNumberId.eq(number_or_id))
        }
        (Provider::Twilio, Ok(phone)) => {
            query.filter(whatsapp_number::Column::PhoneNumber.eq(phone.as_str()))
        }
        (Provider::Twilio, Err(e)) => return Err(e),
    };
    let number = query.one(db).await?.ok_or_else(|| {
        unknown_tenant(format!(
            "no school owns {} number `{number_or_id}`",
            provider.as_str()
        ))
    })?;
    Ok((by_pk(db, number.tenant_id).await?, number))
}

/// The schools a conversation between `number` and `sender` can belong to: the number's owner,
/// or, for a shared (platform) number, every school the sender is a contact of (none for a
/// stranger).
pub async fn schools_on(
    db: &impl ConnectionTrait,
    owner: &TenantCtx,
    number: &whatsapp_number::Model,
    sender: &PhoneNumber,
) -> Result<Vec<TenantCtx>> {
    if number.shared {
        Ok(for_sender(db, sender)
            .await?
            .into_iter()
            .map(|(ctx, _)| ctx)
            .collect())
    } else {
        Ok(vec![owner.clone()])
    }
}

/// Every school this phone is a registered WhatsApp contact of, oldest link first, each with
/// whether the parent has written to it ([`contact_seen`]). A parent with children in two
/// schools gets two contexts and must choose; a school that only imported the phone is not
/// offered on a shared number until the parent names it.
pub async fn for_sender(
    db: &impl ConnectionTrait,
    phone: &PhoneNumber,
) -> Result<Vec<(TenantCtx, bool)>> {
    let contacts: Vec<(i64, Option<chrono::DateTime<chrono::Utc>>)> =
        whatsapp_contact::Entity::find()
            .select_only()
            .column(whatsapp_contact::Column::TenantId)
            .column(whatsapp_contact::Column::LastSeenAt)
            .filter(whatsapp_contact::Column::Phone.eq(phone.as_str()))
            .order_by_asc(whatsapp_contact::Column::Id)
            .into_tuple()
            .all(db)
            .await?;
    let mut out = Vec::with_capacity(contacts.len());
    for (id, seen) in contacts {
        out.push((by_pk(db, id).await?, seen.is_some()));
    }
    Ok(out)
}

/// The parent at `phone` wrote to this school: mark the contact (if the school has one) as
/// seen, at most once an hour.
pub async fn contact_seen(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    ctx.update_many::<whatsapp_contact::Entity>()
        .col_expr(
            whatsapp_contact::Column::LastSeenAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(whatsapp_contact::Column::Phone.eq(phone.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(whatsapp_contact::Column::LastSeenAt.is_null())
                .add(whatsapp_contact::Column::LastSeenAt.lt(now - chrono::Duration::hours(1))),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// An authenticated API key: its tenant, name and scopes.
#[derive(Debug, Clone)]
pub struct ApiKeyIdentity {
    /// The tenant the key belongs to.
    pub tenant: TenantCtx,
    /// Key id.
    pub key_id: i64,
    /// Key name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// Resolve an `X-API-KEY`; revoked and unknown keys are both `unauthorized`.
pub async fn by_api_key(db: &impl ConnectionTrait, plaintext: &str) -> Result<ApiKeyIdentity> {
    let key = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash_api_key(plaintext.trim())))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await?
        .ok_or_else(|| Error::Unauthorized("invalid API key".to_string()))?;
    Ok(ApiKeyIdentity {
        tenant: by_pk(db, key.tenant_id).await?,
        key_id: key.id,
        scopes: key.scope_list(),
        name: key.name,
    })
}

/// A tenant by id (e.g. from a signed link, whose signature already vouches for it).
pub async fn by_id(db: &impl ConnectionTrait, id: i64) -> Result<TenantCtx> {
    tenant::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|t| TenantCtx::from_model(&t))
        .ok_or_else(|| Error::NotFound(format!("no school with id {id}")))
}

/// Every tenant, for maintenance jobs that visit each school in turn.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<TenantCtx>> {
    Ok(tenant::Entity::find()
        .order_by_asc(tenant::Column::Id)
        .all(db)
        .await?
        .iter()
        .map(TenantCtx::from_model)
        .collect())
}

/// The number a school's own messages (broadcasts) go out from: its own Meta number with an
/// access token, else its own Twilio number with credentials, else a shared (platform) number
/// of any school it is served on. `None` when it has no way to send.
pub async fn sending_number(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Option<(Provider, whatsapp_number::Model)>> {
    let own = whatsapp_number::Entity::find()
        .filter(whatsapp_number::Column::TenantId.eq(ctx.id()))
        .order_by_asc(whatsapp_number::Column::Id)
        .all(db)
        .await?;
    let usable = |n: &whatsapp_number::Model| match Provider::named(&n.provider) {
        Provider::Meta => n.phone_number_id.is_some() && n.access_token.is_some(),
        Provider::Twilio => n.account_sid.is_some() && n.auth_token.is_some(),
    };
    let pick = |rows: Vec<whatsapp_number::Model>| {
        let meta = rows
            .iter()
            .find(|n| n.provider == Provider::Meta.as_str() && usable(n));
        let twilio = rows
            .iter()
            .find(|n| n.provider == Provider::Twilio.as_str() && usable(n));
        meta.or(twilio)
            .map(|n| (Provider::named(&n.provider), n.clone()))
    };
    if let Some(found) = pick(own.into_iter().filter(|n| !n.shared).collect()) {
        return Ok(Some(found));
    }
    let shared = whatsapp_number::Entity::find()
        .filter(whatsapp_number::Column::Shared.eq(true))
        .order_by_asc(whatsapp_number::Column::Id)
        .all(db)
        .await?;
    Ok(pick(shared))
}
