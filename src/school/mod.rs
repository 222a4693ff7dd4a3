//! School data, read through a [`TenantCtx`](crate::tenancy::TenantCtx): students, calendar,
//! results, attendance, notices and the welcome message.

pub mod attendance;
pub mod calendar;
pub mod contacts;
pub mod curriculum;
pub mod notices;
pub mod pin_limits;
pub mod privacy;
pub mod profile;
pub mod results;
pub mod setup;
pub mod snapshot;
pub mod students;
pub mod welcome;
