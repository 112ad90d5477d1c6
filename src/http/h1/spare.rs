//! Read buffers kept for reuse on each worker thread.
//!
//! A connection holds a read buffer only while a request is on its way in: once a request is
//! read and nothing follows it, the buffer goes, so an idle or streaming connection holds none.
//! Freeing a 4 KiB buffer after every request and allocating it again for the next cost a
//! keep-alive publisher two trips through the allocator per request (glibc consolidates its
//! small free lists on every allocation that size, which showed as 2–3% of a publish's CPU).
//! So a freed buffer goes to a small stack on the thread that freed it, and the next request
//! read on that thread takes it from there. The stack is bounded ([`KEPT_PER_THREAD`] buffers of
//! [`READ_SIZE`] bytes), so what it keeps does not grow with connections.

use std::cell::RefCell;

/// The size of a read buffer: what one read for a request asks for at most.
pub(crate) const READ_SIZE: usize = 4096;

/// Spare buffers kept per thread: 64 KiB at most.
const KEPT_PER_THREAD: usize = 16;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for [`READ_SIZE`] bytes: a spare one when this thread has one.
pub(crate) fn take() -> Vec<u8> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(READ_SIZE))
}

/// Gives `buffer` up: kept for [`take`] when it is a read buffer's size and this thread has room
/// for it, freed otherwise (a buffer a large body grew is not kept).
pub(crate) fn give_back(mut buffer: Vec<u8>) {
    if !(READ_SIZE..=2 * READ_SIZE).contains(&buffer.capacity()) {
        return;
    }
    buffer.clear();
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT_PER_THREAD {
            spare.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_back_buffer_is_taken_again_empty_and_the_stack_is_bounded() {
        let mut buffer = take();
        assert!(buffer.capacity() >= READ_SIZE);
        buffer.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let address = buffer.as_ptr();
        give_back(buffer);
        let again = take();
        assert_eq!(again.as_ptr(), address, "the spare buffer is reused");
        assert!(again.is_empty());

        for _ in 0..KEPT_PER_THREAD + 10 {
            give_back(Vec::with_capacity(READ_SIZE));
        }
        let kept = SPARE.with(|spare| spare.borrow().len());
        assert_eq!(kept, KEPT_PER_THREAD);
    }

    #[test]
    fn buffers_of_another_size_are_freed_not_kept() {
        SPARE.with(|spare| spare.borrow_mut().clear());
        give_back(Vec::new());
        give_back(Vec::with_capacity(64));
        give_back(Vec::with_capacity(64 * 1024));
        assert_eq!(SPARE.with(|spare| spare.borrow().len()), 0);
    }
}
