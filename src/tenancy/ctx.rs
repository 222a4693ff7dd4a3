//! The tenant context every data access goes through, and creating and deleting a school.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DeleteMany, EntityTrait, QueryFilter, Select,
    Set, UpdateMany,
};

use crate::domain::SchemaName;
use crate::entities::{TenantOwned, tenant, tenant_domain};
use crate::error::{Error, Result};

/// Proof that the caller is acting for one tenant; the only way to build tenant queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantCtx {
    id: i64,
    schema_name: String,
}

impl TenantCtx {
    pub(super) fn from_model(t: &tenant::Model) -> Self {
        Self {
            id: t.id,
            schema_name: t.schema_name.clone(),
        }
    }

    /// The tenant's primary key, for `tenant_id` columns of new rows.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The tenant's slug (the seed's `schema_name`).
    pub fn schema_name(&self) -> &str {
        &self.schema_name
    }

    /// `SELECT ... WHERE tenant_id = <this tenant>`.
    pub fn find<E: TenantOwned>(&self) -> Select<E> {
        E::find().filter(E::tenant_column().eq(self.id))
    }

    /// `UPDATE ... WHERE tenant_id = <this tenant>`.
    pub fn update_many<E: TenantOwned>(&self) -> UpdateMany<E> {
        E::update_many().filter(E::tenant_column().eq(self.id))
    }

    /// `DELETE ... WHERE tenant_id = <this tenant>`.
    pub fn delete_many<E: TenantOwned>(&self) -> DeleteMany<E> {
        E::delete_many().filter(E::tenant_column().eq(self.id))
    }

    /// The tenant's own row (profile: name, time zone, language...).
    pub async fn profile(&self, db: &impl ConnectionTrait) -> Result<tenant::Model> {
        tenant::Entity::find_by_id(self.id)
            .one(db)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("tenant `{}` no longer exists", self.schema_name))
            })
    }
}

/// What it takes to create a tenant.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Slug.
    pub schema_name: SchemaName,
    /// Display name of the school.
    pub name: String,
    /// IANA time zone, e.g. `Africa/Lagos`.
    pub time_zone: String,
    /// Default reply language, e.g. `en`.
    pub default_language: String,
    /// Whether class positions are shown to parents.
    pub publish_position: bool,
    /// Postal address.
    pub address: Option<String>,
    /// Contact phone.
    pub contact_phone: Option<String>,
    /// Contact e-mail.
    pub contact_email: Option<String>,
    /// Motto, printed on reports.
    pub motto: Option<String>,
    /// Domains that resolve to this tenant.
    pub domains: Vec<String>,
}

/// Create a tenant; a taken slug or domain is a conflict.
pub async fn create(db: &impl ConnectionTrait, new: NewTenant) -> Result<TenantCtx> {
    if tenant::Entity::find()
        .filter(tenant::Column::SchemaName.eq(new.schema_name.as_str()))
        .one(db)
        .await?
        .is_some()
    {
        return Err(Error::Conflict(format!(
            "a tenant with schema name `{}` already exists",
            new.schema_name
        )));
    }
    let now = Utc::now();
    let model = tenant::ActiveModel {
        schema_name: Set(new.schema_name.as_str().to_string()),
        name: Set(new.name),
        time_zone: Set(new.time_zone),
        default_language: Set(new.default_language),
        publish_position: Set(new.publish_position),
        address: Set(new.address),
        contact_phone: Set(new.contact_phone),
        contact_email: Set(new.contact_email),
        motto: Set(new.motto),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let ctx = TenantCtx::from_model(&model);
    for domain in new.domains {
        let domain = normalise_host(&domain);
        if tenant_domain::Entity::find()
            .filter(tenant_domain::Column::Domain.eq(domain.as_str()))
            .one(db)
            .await?
            .is_some()
        {
            return Err(Error::Conflict(format!(
                "domain `{domain}` belongs to another tenant"
            )));
        }
        tenant_domain::ActiveModel {
            tenant_id: Set(ctx.id),
            domain: Set(domain),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(ctx)
}

/// Delete a tenant and, through cascading keys, every row it owns.
pub async fn delete(db: &impl ConnectionTrait, ctx: TenantCtx) -> Result<()> {
    tenant::Entity::delete_by_id(ctx.id).exec(db).await?;
    Ok(())
}

/// Lower-case, no port, no trailing dot.
pub fn normalise_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => {
            h.to_string()
        }
        _ => host,
    };
    host.trim_end_matches('.').to_string()
}
