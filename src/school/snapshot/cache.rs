//! Snapshots of the schools in use, one per school, shared (`Arc`) and bounded in memory.
//!
//! Each message reads the school's data version (one primary-key lookup); when the cached
//! snapshot is older, it is rebuilt, once per school at a time (other messages of that school
//! wait for it rather than reading the school again). The least recently used snapshots go
//! when the total passes the bound (`CHATBOT_SNAPSHOT_CACHE_MB`); the one in use always stays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::ConnectionTrait;

use super::{SchoolSnapshot, load};
use crate::error::Result;
use crate::tenancy::TenantCtx;

struct Entry {
    snapshot: Arc<SchoolSnapshot>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<i64, Entry>,
    clock: u64,
    bytes: usize,
}

/// The per-process snapshot cache.
pub struct SnapshotCache {
    bound: usize,
    inner: Mutex<Inner>,
    building: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (schools, bytes) = self.usage();
        f.debug_struct("SnapshotCache")
            .field("bound", &self.bound)
            .field("schools", &schools)
            .field("bytes", &bytes)
            .finish()
    }
}

impl SnapshotCache {
    /// A cache holding at most about `bound_bytes` of snapshots.
    pub fn new(bound_bytes: usize) -> Self {
        Self {
            bound: bound_bytes,
            inner: Mutex::new(Inner::default()),
            building: Mutex::new(HashMap::new()),
        }
    }

    /// Schools cached and their estimated bytes.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("cache lock");
        (inner.entries.len(), inner.bytes)
    }

    fn cached(&self, school: i64, version: i64) -> Option<Arc<SchoolSnapshot>> {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.clock += 1;
        let clock = inner.clock;
        let entry = inner.entries.get_mut(&school)?;
        if entry.snapshot.version() != version {
            return None;
        }
        entry.used = clock;
        Some(entry.snapshot.clone())
    }

    fn store(&self, snapshot: Arc<SchoolSnapshot>) {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.clock += 1;
        let school = snapshot.school_id();
        let entry = Entry {
            used: inner.clock,
            snapshot,
        };
        inner.bytes += entry.snapshot.heap_size();
        if let Some(old) = inner.entries.insert(school, entry) {
            inner.bytes -= old.snapshot.heap_size();
        }
        while inner.bytes > self.bound && inner.entries.len() > 1 {
            let Some(oldest) = inner
                .entries
                .iter()
                .filter(|(id, _)| **id != school)
                .min_by_key(|(_, e)| e.used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.snapshot.heap_size();
            }
        }
    }

    /// The snapshot of `ctx`'s school at its current data version.
    pub async fn get(
        &self,
        db: &impl ConnectionTrait,
        ctx: &TenantCtx,
    ) -> Result<Arc<SchoolSnapshot>> {
        let version = load::version(db, ctx).await?;
        if let Some(hit) = self.cached(ctx.id(), version) {
            return Ok(hit);
        }
        let lock = self
            .building
            .lock()
            .expect("cache lock")
            .entry(ctx.id())
            .or_default()
            .clone();
        let _building = lock.lock().await;
        // Built by another message while this one waited?
        let version = load::version(db, ctx).await?;
        if let Some(hit) = self.cached(ctx.id(), version) {
            return Ok(hit);
        }
        let started = std::time::Instant::now();
        let snapshot = Arc::new(load::load(db, ctx, version).await?);
        tracing::debug!(
            tenant = ctx.schema_name(),
            version,
            bytes = snapshot.heap_size(),
            ms = started.elapsed().as_millis() as u64,
            "school snapshot built"
        );
        self.store(snapshot.clone());
        Ok(snapshot)
    }
}
