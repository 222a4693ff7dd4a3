//! Operator commands: schools (`chatbot tenant create|list`) and their API keys
//! (`chatbot apikey create|list|revoke`). The CLI prints what these return.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, PaginatorTrait,
    QueryFilter, QueryOrder, Set, TransactionTrait,
};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::crypto::generate_api_key;
use crate::domain::SchemaName;
use crate::entities::{api_key, tenant_domain};
use crate::error::{Error, Result};
use crate::school::profile::{bounded_name, language, time_zone};
use crate::tenancy::{self, NewTenant, TenantCtx};

/// Scopes an API key can carry, and the roles a JWT can name: `admin` is every scope (the
/// school's settings: welcome message, imports); `staff` reads and edits school data (students,
/// results, notices, reports, broadcasts); `messages` talks to the bot as a parent's phone.
pub const SCOPES: &[&str] = &["admin", "staff", "messages"];

/// A school as `tenant list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRow {
    /// Slug clients send as `X-Schema-Name`.
    pub schema_name: String,
    /// Display name.
    pub name: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Default reply language.
    pub default_language: String,
    /// Domains that resolve to it.
    pub domains: Vec<String>,
    /// API keys not revoked.
    pub active_api_keys: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The school with this schema name.
async fn school(db: &impl ConnectionTrait, schema_name: &str) -> Result<TenantCtx> {
    tenancy::by_schema_name(db, &SchemaName::parse(schema_name)?).await
}

/// Create a school with its domains, all or nothing (a taken slug or domain is a conflict).
pub async fn create_tenant(
    db: &DatabaseConnection,
    schema_name: &str,
    name: &str,
    zone: &str,
    lang: &str,
    domains: Vec<String>,
) -> Result<TenantRow> {
    let new = NewTenant {
        schema_name: SchemaName::parse(schema_name)?,
        name: bounded_name(name, 200, "a school's name")?,
        time_zone: time_zone(zone)?,
        default_language: language(lang)?,
        publish_position: false,
        address: None,
        contact_phone: None,
        contact_email: None,
        motto: None,
        domains,
    };
    let txn = db.begin().await?;
    let ctx = tenancy::create(&txn, new).await?;
    let row = describe(&txn, &ctx).await?;
    txn.commit().await?;
    Ok(row)
}

/// Every school, by schema name.
pub async fn list_tenants(db: &impl ConnectionTrait) -> Result<Vec<TenantRow>> {
    let mut rows = Vec::new();
    for ctx in tenancy::all(db).await? {
        rows.push(describe(db, &ctx).await?);
    }
    rows.sort_by(|a, b| a.schema_name.cmp(&b.schema_name));
    Ok(rows)
}

async fn describe(db: &impl ConnectionTrait, ctx: &TenantCtx) -> Result<TenantRow> {
    let profile = ctx.profile(db).await?;
    let domains = ctx
        .find::<tenant_domain::Entity>()
        .order_by_asc(tenant_domain::Column::Domain)
        .all(db)
        .await?
        .into_iter()
        .map(|d| d.domain)
        .collect();
    let active_api_keys = ctx
        .find::<api_key::Entity>()
        .filter(api_key::Column::RevokedAt.is_null())
        .count(db)
        .await?;
    Ok(TenantRow {
        schema_name: profile.schema_name,
        name: profile.name,
        time_zone: profile.time_zone,
        default_language: profile.default_language,
        domains,
        active_api_keys,
        created_at: profile.created_at,
    })
}

/// An API key as `apikey list` shows it (never the key itself).
#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    /// Its id (for `apikey revoke`).
    pub id: i64,
    /// What it is for.
    pub name: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for KeyRow {
    fn from(k: api_key::Model) -> Self {
        Self {
            scopes: k.scope_list(),
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new key: its row, and the key itself, shown this once (only its hash is stored).
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    /// The school.
    pub tenant: String,
    /// The stored row.
    #[serde(flatten)]
    pub row: KeyRow,
    /// The `X-API-KEY` value.
    pub key: String,
}

/// Create an API key for the school `schema_name` with `scopes` (known ones only).
pub async fn create_api_key(
    db: &impl ConnectionTrait,
    schema_name: &str,
    name: &str,
    scopes: &[String],
) -> Result<CreatedKey> {
    let ctx = school(db, schema_name).await?;
    let name = bounded_name(name, 100, "an API key's name")?;
    let mut granted: Vec<String> = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split([',', ' '])) {
        let scope = scope.trim();
        if scope.is_empty() || granted.iter().any(|g| g == scope) {
            continue;
        }
        if !SCOPES.contains(&scope) {
            return Err(Error::invalid(
                ErrorCode::InvalidScope,
                format!("unknown scope `{scope}`; known: {}", SCOPES.join(", ")),
            ));
        }
        granted.push(scope.to_string());
    }
    if granted.is_empty() {
        return Err(Error::invalid(
            ErrorCode::InvalidScope,
            format!("name at least one scope: {}", SCOPES.join(", ")),
        ));
    }
    let key = generate_api_key();
    let model = api_key::ActiveModel {
        tenant_id: Set(ctx.id()),
        name: Set(name),
        prefix: Set(key.prefix.clone()),
        key_hash: Set(key.hash.clone()),
        scopes: Set(granted.join(" ")),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(CreatedKey {
        tenant: ctx.schema_name().to_string(),
        row: model.into(),
        key: key.plaintext.expose_secret().to_string(),
    })
}

/// The school's API keys, revoked ones included, oldest first.
pub async fn list_api_keys(db: &impl ConnectionTrait, schema_name: &str) -> Result<Vec<KeyRow>> {
    let ctx = school(db, schema_name).await?;
    Ok(ctx
        .find::<api_key::Entity>()
        .order_by_asc(api_key::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(KeyRow::from)
        .collect())
}

/// Revoke the school's key `which` (its id or its prefix); it stops working at once. A key of
/// another school is not found.
pub async fn revoke_api_key(
    db: &impl ConnectionTrait,
    schema_name: &str,
    which: &str,
) -> Result<KeyRow> {
    let ctx = school(db, schema_name).await?;
    let which = which.trim();
    let query = ctx.find::<api_key::Entity>();
    let query = match which.parse::<i64>() {
        Ok(id) => query.filter(api_key::Column::Id.eq(id)),
        Err(_) => query.filter(api_key::Column::Prefix.eq(which)),
    };
    let found = query.all(db).await?;
    let key = match found.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Error::NotFound(format!(
                "school `{}` has no API key `{which}`",
                ctx.schema_name()
            )));
        }
        _ => {
            return Err(Error::Conflict(format!(
                "several keys of `{}` start with `{which}`; give the id",
                ctx.schema_name()
            )));
        }
    };
    if key.revoked_at.is_some() {
        return Ok(key.into());
    }
    let mut active: api_key::ActiveModel = key.into();
    active.revoked_at = Set(Some(Utc::now()));
    Ok(active.update(db).await?.into())
}
