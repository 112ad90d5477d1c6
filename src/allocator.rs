//! The global allocator of the `herald` binary, chosen by a cargo feature, and its tuning.
//!
//! The default build keeps the system allocator (glibc malloc). With the `jemalloc` feature the
//! binary uses jemalloc, configured to give freed memory back to the system about a second after
//! it was freed, from its own background threads: once a burst of deliveries has drained, the
//! hub's resident memory falls back towards its idle figure without waiting for more
//! allocations. docs/ARCHITECTURE.md ("The allocator") says why this is not the default, and
//! docs/benchmarks.md ("Memory once a fan-out has drained") has both side by side. This module
//! owns no other state; the library never names it.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long jemalloc keeps freed ("dirty") pages before its background threads give them back,
/// in milliseconds. jemalloc's own default, 10 s, left most of a burst's memory resident when
/// the drained figure was read a second later; 0 gives back each page as it is freed, which
/// left the least memory but cost about 25% more CPU per delivery (docs/benchmarks.md).
#[cfg(feature = "jemalloc")]
const DIRTY_DECAY_MS: isize = 1_000;

/// The environment variable through which an operator configures jemalloc (the `_rjem_` prefix
/// of `tikv-jemallocator`): when it is set, [`tune`] leaves every setting to it.
#[cfg(feature = "jemalloc")]
const OPERATOR_CONFIG: &str = "_RJEM_MALLOC_CONF";

/// Applies the tuning of the allocator in use; call once, first thing in `main`. Returns what
/// could not be applied, for a warning: the allocator then keeps its defaults, which are correct,
/// only slower to give memory back.
pub(crate) fn tune() -> Result<(), String> {
    #[cfg(feature = "jemalloc")]
    {
        if std::env::var_os(OPERATOR_CONFIG).is_some() {
            return Ok(());
        }
        jemalloc_decay(DIRTY_DECAY_MS)
    }
    #[cfg(not(feature = "jemalloc"))]
    Ok(())
}

/// Sets the dirty-page decay of every arena that exists (at startup, the main thread's) and of
/// every arena made later, and makes sure the background threads that purge on time run.
#[cfg(feature = "jemalloc")]
fn jemalloc_decay(decay_ms: isize) -> Result<(), String> {
    use tikv_jemalloc_ctl::{Access, AsName};
    let failed = |what: &str, error: tikv_jemalloc_ctl::Error| format!("jemalloc {what}: {error}");
    b"arenas.dirty_decay_ms\0"
        .name()
        .write(decay_ms)
        .map_err(|error| failed("arenas.dirty_decay_ms", error))?;
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read()
        .map_err(|error| failed("arenas.narenas", error))?;
    for arena in 0..arenas {
        let name = format!("arena.{arena}.dirty_decay_ms\0");
        // An arena no thread has used yet does not exist: it gets the default set above.
        let _ = name.as_bytes().name().write(decay_ms);
    }
    tikv_jemalloc_ctl::background_thread::write(true)
        .map_err(|error| failed("background_thread", error))
}
