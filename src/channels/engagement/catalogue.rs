//! The report catalogue: which report ids a school sells, with their dialogue. Sessions read it
//! through a short cache, so 10,000 visitors opening a chat do not each query the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder, Set};

use super::script::{Script, check_slug};
use crate::entities::engagement_report;
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// How long a looked-up report (or its absence) is reused before the database is asked again.
/// Changes through the API of this process apply at once; other processes see them after this.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries kept at most (unknown ids are cached too, so a scan of random ids stays bounded).
const CACHE_MAX: usize = 10_000;

/// A report ready to serve.
#[derive(Debug)]
pub struct Report {
    /// Its id in URLs.
    pub slug: String,
    /// Its dialogue.
    pub script: Script,
}

type Entry = (Instant, Option<Arc<Report>>);

/// Active reports by (school, slug), briefly cached.
#[derive(Debug, Default)]
pub struct Catalogue {
    cache: Mutex<HashMap<(i64, String), Entry>>,
    /// The school of a request's host (or of the configured default, under `""`).
    schools: Mutex<HashMap<String, (Instant, Option<TenantCtx>)>>,
}

fn remember<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, (Instant, V)>, key: K, value: V) {
    if map.len() >= CACHE_MAX {
        map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
    }
    map.insert(key, (Instant::now(), value));
}

impl Catalogue {
    /// The active report `slug` of `ctx`'s school, if it sells one.
    pub async fn find(
        &self,
        db: &impl ConnectionTrait,
        ctx: &TenantCtx,
        slug: &str,
    ) -> Result<Option<Arc<Report>>> {
        if check_slug(slug).is_err() {
            return Ok(None);
        }
        let key = (ctx.id(), slug.to_string());
        if let Some((at, found)) = self.cache.lock().expect("catalogue cache").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(found.clone());
        }
        let row = ctx
            .find::<engagement_report::Entity>()
            .filter(engagement_report::Column::Slug.eq(slug))
            .filter(engagement_report::Column::Active.eq(true))
            .one(db)
            .await?;
        let found = match row {
            Some(row) => Some(Arc::new(Report {
                script: parse_stored(&row)?,
                slug: row.slug,
            })),
            None => None,
        };
        remember(
            &mut self.cache.lock().expect("catalogue cache"),
            key,
            found.clone(),
        );
        Ok(found)
    }

    /// The school whose catalogue a request for `host` sees: the school serving that domain,
    /// else the configured default school (`CHATBOT_ENGAGEMENT_TENANT`), else none.
    pub async fn school(
        &self,
        db: &impl ConnectionTrait,
        host: Option<&str>,
        default: Option<&str>,
    ) -> Result<Option<TenantCtx>> {
        let host = host.map(crate::tenancy::normalise_host);
        if let Some(host) = host.filter(|h| !h.is_empty() && h.len() <= 253) {
            let found = match self.cached_school(&host) {
                Some(found) => found,
                None => {
                    let found = match crate::tenancy::by_domain(db, &host).await {
                        Ok(ctx) => Some(ctx),
                        Err(Error::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    };
                    remember(
                        &mut self.schools.lock().expect("school cache"),
                        host,
                        found.clone(),
                    );
                    found
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        let Some(default) = default else {
            return Ok(None);
        };
        if let Some(found) = self.cached_school("") {
            return Ok(found);
        }
        let name = crate::domain::SchemaName::parse(default)?;
        let found = match crate::tenancy::by_schema_name(db, &name).await {
            Ok(ctx) => Some(ctx),
            Err(Error::NotFound(_)) => {
                tracing::warn!(
                    school = default,
                    "CHATBOT_ENGAGEMENT_TENANT names no school: every report id is invalid"
                );
                None
            }
            Err(e) => return Err(e),
        };
        remember(
            &mut self.schools.lock().expect("school cache"),
            String::new(),
            found.clone(),
        );
        Ok(found)
    }

    fn cached_school(&self, key: &str) -> Option<Option<TenantCtx>> {
        let schools = self.schools.lock().expect("school cache");
        let (at, found) = schools.get(key)?;
        (at.elapsed() < CACHE_TTL).then(|| found.clone())
    }

    /// Forget what is cached of `slug` in `ctx`'s school (after it changed).
    pub fn forget(&self, ctx: &TenantCtx, slug: &str) {
        self.cache
            .lock()
            .expect("catalogue cache")
            .remove(&(ctx.id(), slug.to_string()));
    }
}

/// The stored script of a row.
pub fn parse_stored(row: &engagement_report::Model) -> Result<Script> {
    serde_json::from_str(&row.script).map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "engagement report {} of school {}: stored script unreadable: {e}",
            row.slug,
            row.tenant_id
        ))
    })
}

/// Every report of the school, by slug.
pub async fn list(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Vec<engagement_report::Model>> {
    Ok(ctx
        .find::<engagement_report::Entity>()
        .order_by_asc(engagement_report::Column::Slug)
        .all(db)
        .await?)
}

/// One report of the school, active or not.
pub async fn get(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    slug: &str,
) -> Result<Option<engagement_report::Model>> {
    Ok(ctx
        .find::<engagement_report::Entity>()
        .filter(engagement_report::Column::Slug.eq(slug))
        .one(db)
        .await?)
}

/// Add a report to the school's catalogue (validated; a taken slug is a conflict).
pub async fn insert(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    slug: &str,
    script: &Script,
    active: bool,
) -> Result<engagement_report::Model> {
    check_slug(slug)?;
    script.validate()?;
    let now = Utc::now();
    let inserted = engagement_report::ActiveModel {
        tenant_id: Set(ctx.id()),
        slug: Set(slug.to_string()),
        script: Set(serde_json::to_string(script).map_err(anyhow::Error::from)?),
        active: Set(active),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await;
    match inserted {
        Ok(m) => Ok(m),
        Err(e) if crate::error::is_unique_violation(&e) => Err(Error::Conflict(format!(
            "this school already has a report `{slug}`; change it with PUT"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Replace a report's script and active flag; `None` when the school has no such report.
pub async fn replace(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    slug: &str,
    script: &Script,
    active: bool,
) -> Result<Option<engagement_report::Model>> {
    script.validate()?;
    let updated = ctx
        .update_many::<engagement_report::Entity>()
        .filter(engagement_report::Column::Slug.eq(slug))
        .col_expr(
            engagement_report::Column::Script,
            serde_json::to_string(script)
                .map_err(anyhow::Error::from)?
                .into(),
        )
        .col_expr(engagement_report::Column::Active, active.into())
        .col_expr(engagement_report::Column::UpdatedAt, Utc::now().into())
        .exec_with_returning(db)
        .await?;
    Ok(updated.into_iter().next())
}

/// Delete a report; whether there was one.
pub async fn delete(db: &impl ConnectionTrait, ctx: &TenantCtx, slug: &str) -> Result<bool> {
    let done = ctx
        .delete_many::<engagement_report::Entity>()
        .filter(engagement_report::Column::Slug.eq(slug))
        .exec(db)
        .await?;
    Ok(done.rows_affected > 0)
}

/// The reports every demo school's catalogue starts with: `(slug, YAML)`.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "newjob",
        include_str!("../../../prompts/engagement/newjob.yaml"),
    ),
    (
        "love",
        include_str!("../../../prompts/engagement/love.yaml"),
    ),
];

/// A built-in report's script.
pub fn built_in(slug: &str) -> Result<Script> {
    let (_, yaml) = BUILT_IN
        .iter()
        .find(|(s, _)| *s == slug)
        .ok_or_else(|| Error::NotFound(format!("no built-in engagement report `{slug}`")))?;
    let script: Script = serde_yaml::from_str(yaml)
        .map_err(|e| anyhow::anyhow!("prompts/engagement/{slug}.yaml: {e}"))?;
    script.validate()?;
    Ok(script)
}

#[cfg(test)]
mod tests {
    #[test]
    fn built_in_reports_are_valid() {
        for (slug, _) in super::BUILT_IN {
            super::built_in(slug).unwrap();
        }
    }
}
