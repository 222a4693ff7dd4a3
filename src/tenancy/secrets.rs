//! Business numbers' provider secrets, sealed at rest under the server secret (see
//! [`crate::crypto`]): sealing what is not sealed yet (or sealed under the previous server
//! secret), and opening them where they are used.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};

use super::Provider;
use crate::crypto::{Opened, SealedColumn, SecretKey};
use crate::entities::whatsapp_number;
use crate::error::Result;

/// What a row stores in `column`.
fn stored(n: &whatsapp_number::Model, column: SealedColumn) -> Option<&str> {
    match column {
        SealedColumn::AppSecret => n.app_secret.as_deref(),
        SealedColumn::VerifyToken => n.verify_token.as_deref(),
        SealedColumn::AccessToken => n.access_token.as_deref(),
        SealedColumn::AuthToken => n.auth_token.as_deref(),
    }
    .filter(|v| !v.is_empty())
}

/// The opened secret in `column` of a business number; `None` when it has none, or when it
/// does not open (logged: sealed under another server secret, or tampered with).
pub fn secret(
    key: &SecretKey,
    n: &whatsapp_number::Model,
    column: SealedColumn,
) -> Option<SecretString> {
    let value = stored(n, column)?;
    match key.open(column, n.tenant_id, value) {
        Ok(opened) => Some(opened.secret()),
        Err(e) => {
            tracing::error!(number = n.id, "{e}");
            None
        }
    }
}

/// Seal every provider secret that is stored in clear (written by an older version) or sealed
/// under the previous server secret, under the current one. Run at start-up and by
/// `chatbot migrate`; returns how many numbers were sealed again. A value that opens under
/// neither key is left as it is and logged.
pub async fn seal_provider_secrets(db: &impl ConnectionTrait, key: &SecretKey) -> Result<usize> {
    let numbers = whatsapp_number::Entity::find()
        .order_by_asc(whatsapp_number::Column::Id)
        .all(db)
        .await?;
    let mut sealed = 0;
    for n in numbers {
        let mut row = whatsapp_number::ActiveModel {
            id: Set(n.id),
            ..Default::default()
        };
        let mut changed = false;
        for column in SealedColumn::ALL {
            let Some(value) = stored(&n, column) else {
                continue;
            };
            let plain = match key.open(column, n.tenant_id, value) {
                Ok(Opened::Current(_)) => continue,
                Ok(Opened::Stale(plain)) => plain,
                Err(e) => {
                    tracing::error!(number = n.id, "{e}; left as it is");
                    continue;
                }
            };
            let value = Set(Some(key.seal(column, n.tenant_id, plain.expose_secret())));
            match column {
                SealedColumn::AppSecret => row.app_secret = value,
                SealedColumn::VerifyToken => row.verify_token = value,
                SealedColumn::AccessToken => row.access_token = value,
                SealedColumn::AuthToken => row.auth_token = value,
            }
            changed = true;
        }
        if changed {
            row.update(db).await?;
            sealed += 1;
        }
    }
    if sealed > 0 {
        tracing::info!(
            numbers = sealed,
            "provider secrets sealed under the server secret"
        );
    }
    Ok(sealed)
}

fn meta_numbers(
    db: &impl ConnectionTrait,
) -> impl Future<Output = std::result::Result<Vec<whatsapp_number::Model>, sea_orm::DbErr>> {
    whatsapp_number::Entity::find()
        .filter(whatsapp_number::Column::Provider.eq(Provider::Meta.as_str()))
        .order_by_asc(whatsapp_number::Column::Id)
        .all(db)
}

/// Every Meta business number's app secret (webhooks are signed with one): (the number's
/// Graph API id, its secret), numbers without a secret (or one that does not open) left out.
pub async fn meta_app_secrets(
    db: &impl ConnectionTrait,
    key: &SecretKey,
) -> Result<Vec<(String, SecretString)>> {
    Ok(meta_numbers(db)
        .await?
        .iter()
        .filter_map(|n| {
            let secret = secret(key, n, SealedColumn::AppSecret)?;
            Some((n.phone_number_id.clone().unwrap_or_default(), secret))
        })
        .collect())
}

/// Is `token` the webhook verify token of some school's Meta number? Each is opened and
/// compared in constant time (Meta asks this once, when a webhook is subscribed).
pub async fn meta_verify_token_known(
    db: &impl ConnectionTrait,
    key: &SecretKey,
    token: &str,
) -> Result<bool> {
    if token.is_empty() {
        return Ok(false);
    }
    let mut known = false;
    for n in meta_numbers(db).await? {
        if let Some(stored) = secret(key, &n, SealedColumn::VerifyToken) {
            known |=
                crate::crypto::secrets_equal(stored.expose_secret().as_bytes(), token.as_bytes());
        }
    }
    Ok(known)
}
