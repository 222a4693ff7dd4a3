//! Where report PDFs live and how they are fetched: files under `<reports dir>/<school
//! id>/<report id>.pdf` (`CHATBOT_REPORTS_DIR`, default `<data dir>/reports`), never listed, downloaded only through a signed, expiring link
//! (`/files/reports/{id}?expires=...&sig=...`, an HMAC of the school, the report and the
//! expiry under a key derived from the server secret). A guessed id, an altered link or an
//! expired one gets nothing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, Set};
use sha2::Sha256;

use crate::crypto::SecretKey;
use crate::entities::report;
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// What rendering, storing and serving report cards needs: the database, the server secret
/// (signed links) and the settings (where files live, link lifetimes, the public URL). Cheap
/// to clone.
#[derive(Clone, Debug)]
pub struct Reports {
    /// Data database.
    pub db: sea_orm::DatabaseConnection,
    /// Server secret (link signatures).
    pub secret: crate::crypto::SecretKey,
    /// Settings in force.
    pub settings: std::sync::Arc<crate::config::Settings>,
}

/// Path of the download route.
pub const ROUTE: &str = "/files/reports";

/// Kinds of `reports` rows.
pub mod kind {
    /// One student's card.
    pub const STUDENT: &str = "student";
    /// Several students' cards in one file.
    pub const COMBINED: &str = "combined";
}

/// The MAC of a link: school, report and expiry under the links' subkey.
fn mac(secret: &SecretKey, tenant_id: i64, report_id: i64, expires: i64) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&secret.subkey("report-links")).expect("any key length");
    mac.update(format!("{tenant_id}:{report_id}:{expires}").as_bytes());
    mac
}

fn signature(secret: &SecretKey, tenant_id: i64, report_id: i64, expires: i64) -> String {
    hex::encode(
        mac(secret, tenant_id, report_id, expires)
            .finalize()
            .into_bytes(),
    )
}

/// The query string of a link to `report_id` valid until `expires`.
pub fn signed_query(
    secret: &SecretKey,
    tenant_id: i64,
    report_id: i64,
    expires: DateTime<Utc>,
) -> String {
    let e = expires.timestamp();
    format!(
        "t={tenant_id}&expires={e}&sig={}",
        signature(secret, tenant_id, report_id, e)
    )
}

/// A full download link, valid for the configured time.
pub fn link(state: &Reports, tenant_id: i64, report_id: i64, now: DateTime<Utc>) -> String {
    let base = state
        .settings
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.settings.server.listen));
    let expires = now + Duration::minutes(state.settings.reports.link_ttl_minutes.into());
    format!(
        "{base}{ROUTE}/{report_id}?{}",
        signed_query(&state.secret, tenant_id, report_id, expires)
    )
}

/// The report a download link made by [`link`] points at.
pub fn report_in_link(url: &str) -> Option<i64> {
    let (_, rest) = url.split_once(&format!("{ROUTE}/"))?;
    rest.split(['?', '#', '/']).next()?.parse().ok()
}

/// Why a link is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not signed by us for this report (altered, guessed, or for another report).
    BadSignature,
    /// Signed, but past its expiry.
    Expired,
}

/// Check a link's parameters; `Ok(tenant id)` when it was signed by us and has not expired.
pub fn verify(
    secret: &SecretKey,
    report_id: i64,
    tenant_id: i64,
    expires: i64,
    sig: &str,
    now: DateTime<Utc>,
) -> std::result::Result<i64, Refusal> {
    let Ok(given) = hex::decode(sig) else {
        return Err(Refusal::BadSignature);
    };
    if mac(secret, tenant_id, report_id, expires)
        .verify_slice(&given)
        .is_err()
    {
        return Err(Refusal::BadSignature);
    }
    if now.timestamp() > expires {
        return Err(Refusal::Expired);
    }
    Ok(tenant_id)
}

/// Store `pdf` as a new report of school `ctx`: the row first (to get its id), then the file
/// (written beside and renamed, so a reader never sees half of it), then the row completed.
pub async fn save(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    reports_dir: &Path,
    new: report::ActiveModel,
    pdf: &[u8],
) -> Result<report::Model> {
    let row = report::ActiveModel {
        tenant_id: Set(ctx.id()),
        status: Set("rendering".into()),
        created_at: Set(Utc::now()),
        ..new
    }
    .insert(db)
    .await?;
    let relative = format!("{}/{}.pdf", ctx.id(), row.id);
    let path = reports_dir.join(&relative);
    let written = (|| {
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        let partial = path.with_extension("pdf.part");
        std::fs::write(&partial, pdf)?;
        std::fs::rename(&partial, &path)
    })();
    let mut active: report::ActiveModel = row.into();
    match written {
        Ok(()) => {
            active.status = Set("ready".into());
            active.file_path = Set(Some(relative));
            active.size_bytes = Set(Some(pdf.len() as i64));
        }
        Err(e) => {
            active.status = Set("failed".into());
            active.error = Set(Some(format!("cannot write the file: {e}")));
        }
    }
    let row = active.update(db).await?;
    if row.status != "ready" {
        return Err(Error::Internal(anyhow::anyhow!(
            "report {} not stored: {}",
            row.id,
            row.error.clone().unwrap_or_default()
        )));
    }
    Ok(row)
}

/// A ready report of school `ctx` and its file's path.
pub async fn file_of(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    reports_dir: &Path,
    report_id: i64,
) -> Result<Option<(report::Model, PathBuf)>> {
    let Some(row) = ctx
        .find::<report::Entity>()
        .filter(report::Column::Id.eq(report_id))
        .filter(report::Column::Status.eq("ready"))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let base = reports_dir.to_path_buf();
    let Some(path) = row.file_path.as_ref().map(|p| base.join(p)) else {
        return Ok(None);
    };
    // Stored paths are ours, but a row is data: never serve outside the folder.
    if !path.starts_with(&base) || path.components().any(|c| c.as_os_str() == "..") {
        return Ok(None);
    }
    Ok(Some((row, path)))
}

/// Delete these reports of school `ctx`: files first (a row without its file is harmless, a
/// file without its row is a leak), then the rows. Returns how many rows went.
pub async fn delete(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    reports_dir: &Path,
    doomed: Vec<report::Model>,
) -> Result<u64> {
    let base = reports_dir.to_path_buf();
    for r in &doomed {
        if let Some(path) = &r.file_path {
            let path = base.join(path);
            if path.starts_with(&base)
                && let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::Internal(anyhow::anyhow!(
                    "cannot delete {}: {e}",
                    path.display()
                )));
            }
        }
    }
    let ids: Vec<i64> = doomed.iter().map(|r| r.id).collect();
    let mut deleted = 0;
    for chunk in ids.chunks(500) {
        deleted += ctx
            .delete_many::<report::Entity>()
            .filter(report::Column::Id.is_in(chunk.to_vec()))
            .exec(db)
            .await?
            .rows_affected;
    }
    Ok(deleted)
}

/// Delete every report of school `ctx` created before `cutoff`; returns how many.
pub async fn delete_older_than(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    reports_dir: &Path,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    let doomed = ctx
        .find::<report::Entity>()
        .filter(report::Column::CreatedAt.lt(cutoff))
        .all(db)
        .await?;
    delete(db, ctx, reports_dir, doomed).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn a_link_names_its_report() {
        assert_eq!(
            report_in_link("https://s.example/files/reports/42?t=7&e=1&sig=x"),
            Some(42)
        );
        assert_eq!(
            report_in_link("https://s.example/files/reports/x?t=7"),
            None
        );
        assert_eq!(report_in_link("https://s.example/other/42"), None);
    }

    #[test]
    fn links_are_bound_to_school_report_and_expiry() {
        let secret = SecretKey::from_configured(SecretString::from("k".repeat(40)));
        let now = Utc::now();
        let q = signed_query(&secret, 7, 42, now + Duration::minutes(5));
        let sig = q.split("sig=").nth(1).unwrap();
        let e = (now + Duration::minutes(5)).timestamp();
        assert_eq!(verify(&secret, 42, 7, e, sig, now), Ok(7));
        assert_eq!(
            verify(&secret, 43, 7, e, sig, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret, 42, 8, e, sig, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret, 42, 7, e + 60, sig, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret, 42, 7, e, "zz", now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&secret, 42, 7, e, sig, now + Duration::minutes(6)),
            Err(Refusal::Expired)
        );
        let other = SecretKey::from_configured(SecretString::from("j".repeat(40)));
        assert_eq!(
            verify(&other, 42, 7, e, sig, now),
            Err(Refusal::BadSignature)
        );
    }
}
