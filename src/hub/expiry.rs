//! Closing streams whose token expires: one hub-wide queue ordered by expiry and one ticker,
//! not a timer per connection. A subscription leaves the queue when it is dropped, so the
//! queue holds live subscribers only, however long their tokens last.

use std::collections::BTreeMap;
use std::sync::Weak;

use parking_lot::Mutex;

use super::Subscriber;

/// Subscribers with an expiry, soonest first, keyed by (expiry, subscriber id).
#[derive(Default)]
pub(crate) struct ExpiryQueue {
    entries: Mutex<BTreeMap<(u64, u64), Weak<Subscriber>>>,
}

impl ExpiryQueue {
    /// Remembers that subscriber `id` must be closed at `expires_at` (Unix seconds).
    pub(crate) fn insert(&self, expires_at: u64, id: u64, subscriber: Weak<Subscriber>) {
        self.entries.lock().insert((expires_at, id), subscriber);
    }

    /// Forgets the entry [`ExpiryQueue::insert`] made (the subscriber left first).
    pub(crate) fn remove(&self, expires_at: u64, id: u64) {
        self.entries.lock().remove(&(expires_at, id));
    }

    /// Closes every subscriber whose expiry is at or before `now`; returns how many.
    pub(crate) fn close_expired(&self, now: u64) -> usize {
        let expired = {
            let mut entries = self.entries.lock();
            let later = entries.split_off(&(now.saturating_add(1), 0));
            std::mem::replace(&mut *entries, later)
        };
        expired
            .into_values()
            .filter_map(|subscriber| subscriber.upgrade())
            .inspect(|subscriber| subscriber.mailbox.close())
            .count()
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// True when nothing waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
