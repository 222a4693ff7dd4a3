//! Tenants (schools) and the tenant context every data access goes through.
//!
//! A [`TenantCtx`] can only be obtained by resolving a tenant (by slug, domain, business
//! number, sender phone or API key) or by creating one; its query builders always filter on
//! `tenant_id`, so code holding a context for school A cannot read school B's rows.

mod ctx;
pub mod numbers;
mod resolve;
pub mod routes;
mod secrets;

pub use ctx::*;
pub use resolve::*;
pub use secrets::{meta_app_secrets, meta_verify_token_known, seal_provider_secrets, secret};
