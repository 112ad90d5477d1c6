//! The event ids a caller is told or may use as a cursor: every one is the id of an update the
//! caller may see ([`crate::visibility`]), or `earliest`.
//!
//! A resume id that names an update the caller may not see is treated exactly like an id the
//! hub never had, so a caller cannot learn whether a private id exists by resuming from it;
//! the edges of history it is told (`Last-Event-ID`, the `herald-gap` notice) skip what it may
//! not see.

use crate::store::{ReplayFrom, Store, StoreError};
use crate::topic::SelectorSet;
use crate::update::Update;
use crate::visibility::may_see;

/// How many updates [`oldest_visible`] reads at most before it gives up: a caller that may see
/// none of the oldest updates is told no oldest id rather than costing an unbounded scan.
const OLDEST_SCAN_LIMIT: usize = 1024;

/// How many occurrences of a duplicated id [`resolve_visible`] looks at, oldest first, for one
/// the caller may see, before it treats the id as unknown.
const OCCURRENCE_SCAN_LIMIT: usize = 16;

/// Which occurrence of an id a publisher used more than once a resume starts after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occurrence {
    /// The newest kept (Mercure 0.x requests: what Herald has always done).
    Newest,
    /// The earliest kept that the caller may see (Mercure 1.0: "a duplicated id resolves to its
    /// earliest occurrence"; one the caller may not see does not exist for it).
    Earliest,
}

/// Where to resume after `id`, for a caller with `private_access`: `Unknown` when history does
/// not hold it, or holds it but the caller may not see it.
pub(crate) async fn resolve_visible(
    store: &dyn Store,
    id: &str,
    occurrence: Occurrence,
    private_access: Option<&SelectorSet>,
) -> Result<ReplayFrom, StoreError> {
    if occurrence == Occurrence::Earliest {
        let mut after = 0;
        for _ in 0..OCCURRENCE_SCAN_LIMIT {
            let ReplayFrom::After(seq) = store.resolve_earliest(id, after).await? else {
                break;
            };
            if update_at(store, seq)
                .await?
                .is_some_and(|update| may_see(private_access, &update))
            {
                return Ok(ReplayFrom::After(seq));
            }
            after = seq;
        }
        return Ok(ReplayFrom::Unknown);
    }
    let ReplayFrom::After(seq) = store.resolve(id).await? else {
        return Ok(ReplayFrom::Unknown);
    };
    match update_at(store, seq).await? {
        Some(update) if may_see(private_access, &update) => Ok(ReplayFrom::After(seq)),
        _ => Ok(ReplayFrom::Unknown),
    }
}

/// The update stored at `seq`, if history still holds it.
pub(crate) async fn update_at(
    store: &dyn Store,
    seq: u64,
) -> Result<Option<std::sync::Arc<Update>>, StoreError> {
    let found = store.read_after(seq.saturating_sub(1), 1).await?;
    Ok(found.into_iter().next().filter(|update| update.seq == seq))
}

/// The id of the newest update kept (`newest`, from [`Store::bounds`]) when the caller may see
/// it. Found in one read; `None` when history is empty or the newest is not the caller's to see.
pub(crate) async fn newest_if_visible(
    store: &dyn Store,
    newest: Option<u64>,
    private_access: Option<&SelectorSet>,
) -> Result<Option<String>, StoreError> {
    let Some(seq) = newest else { return Ok(None) };
    Ok(update_at(store, seq)
        .await?
        .filter(|update| may_see(private_access, update))
        .map(|update| update.id.clone()))
}

/// The id of the oldest update kept that the caller may see (within a bounded scan).
pub(crate) async fn oldest_visible(
    store: &dyn Store,
    private_access: Option<&SelectorSet>,
) -> Result<Option<String>, StoreError> {
    const PAGE: usize = 256;
    let mut after = 0;
    let mut read = 0;
    while read < OLDEST_SCAN_LIMIT {
        let page = store.read_after(after, PAGE).await?;
        if let Some(update) = page.iter().find(|update| may_see(private_access, update)) {
            return Ok(Some(update.id.clone()));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.seq,
            _ => return Ok(None),
        }
        read += page.len();
    }
    Ok(None)
}
