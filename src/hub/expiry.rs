//! Closing streams whose token expires: one hub-wide queue ordered by expiry and one ticker,
//! not a timer per connection.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Weak;

use parking_lot::Mutex;

use super::Subscriber;

/// Subscribers with an expiry, soonest first.
#[derive(Default)]
pub struct ExpiryQueue {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
}

struct Entry {
    expires_at: u64,
    subscriber: Weak<Subscriber>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.expires_at == other.expires_at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.expires_at.cmp(&other.expires_at)
    }
}

impl ExpiryQueue {
    /// Remembers that `subscriber` must be closed at `expires_at` (Unix seconds).
    pub fn insert(&self, expires_at: u64, subscriber: Weak<Subscriber>) {
        self.heap.lock().push(Reverse(Entry {
            expires_at,
            subscriber,
        }));
    }

    /// Closes every subscriber whose expiry is at or before `now`; returns how many.
    pub fn close_expired(&self, now: u64) -> usize {
        let mut expired = Vec::new();
        {
            let mut heap = self.heap.lock();
            while heap
                .peek()
                .is_some_and(|Reverse(entry)| entry.expires_at <= now)
            {
                if let Some(Reverse(entry)) = heap.pop() {
                    expired.push(entry.subscriber);
                }
            }
        }
        expired
            .into_iter()
            .filter_map(|subscriber| subscriber.upgrade())
            .inspect(|subscriber| subscriber.mailbox.close())
            .count()
    }

    /// Entries waiting (including ones whose subscriber already left).
    pub fn len(&self) -> usize {
        self.heap.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
