//! `--store PATH`: durable history in one redb file, `PATH/herald.redb`.
//!
//! This module owns that file: its tables, retention inside the append commit, and the refusal
//! to open a file it cannot trust. It behaves exactly
//! like [`super::memory::MemoryStore`] (same sequences, same retention, same answers), only it
//! survives restarts and crashes.
//!
//! # Tables
//! - `log`: `seq (u64) -> record (bytes)`. The global append-only log. Seqs are contiguous from
//!   the oldest kept to the newest; retention only removes from the front. A record is the
//!   binary encoding of [`super::record`] (every field, the SSE frame included, so a replay
//!   never re-encodes).
//! - `ids`: `event id (str) -> seq (u64)`. Custom ids included; a later update with the same id
//!   takes the entry over, and trimming removes an entry only if it still points at the trimmed
//!   seq.
//! - `duplicate_ids`: `(event id, seq) -> ()` for each kept occurrence of an id appended more
//!   than once (written from the second occurrence on, removed with each trimmed occurrence), so
//!   Mercure 1.0's "a duplicated id resolves to its earliest occurrence" is one range lookup.
//!   Added within schema 1: occurrences an earlier herald appended are not in it, and resolve as
//!   before, to the newest.
//! - `meta`: `str -> u64`: `schema` (this file layout, [`SCHEMA_VERSION`]; another version is
//!   refused, never converted, except schemas 1 and 2, below), `last_seq` and `trimmed`. The
//!   newest seq ever assigned is the log's newest key, or `last_seq` when that is higher: an
//!   append writes `last_seq` only when retention removed the newest update it assigned, so
//!   sequences keep increasing even when retention has removed everything. `trimmed` (the
//!   highest seq retention removed) is written only when it is not below the oldest kept seq
//!   (`--history-per-topic` removes out of order); otherwise the oldest kept seq tells.
//!
//! The per-topic tallies of `GET /topics` (every update kept, and the public ones alone) are not
//! in the file: [`tally`] counts them from `log` on every open (the open already reads the whole
//! file to verify its checksums) and each committed append moves them. Written to the file, they
//! cost each append a random page of each tally table per distinct topic it touched (and as many
//! for the updates its retention removed): with many topics, most of the pages a commit wrote.
//!
//! # Schema 1 (earlier heralds)
//! Schema 1 also had `topics` and `topics_public` (`topic -> (events, newest id)`) and two `meta`
//! keys marking when `topics_public` was last counted. Opening a schema 1 file upgrades it in one
//! commit: both tables and both keys are deleted and `schema` becomes 3 (logged at info). The log
//! and the ids are untouched, so nothing a subscriber can ask for changes. The upgrade is one
//! way: an earlier herald refuses the file ("schema version 3 is not supported"), so going
//! back means restoring a backup taken before. A schema 1 tally table of another type is a
//! foreign file, refused and left untouched.
//!
//! # Schema 2 (earlier heralds)
//! Schema 2 wrote `last_seq` and `trimmed` on every commit: one more table page copied per
//! commit, a third of an append's CPU with small batches (docs/benchmarks.md). Opening a
//! schema 2 file only sets `schema` to 3 (logged at info); its values stay right, since the
//! newest seq is the higher of `last_seq` and the log's newest key. An earlier herald refuses a
//! schema 3 file (it would trust a `last_seq` that no longer moves with every commit).
//!
//! # Durability
//! One [`Store::append`] is one redb write transaction committed with
//! [`Durability::Immediate`]: when it returns, the whole batch (and the retention it applied) is
//! on disk (fsync); after a crash either all of it is there or none of it. The group-commit
//! writer makes that one commit per batch of concurrent publishes, and, since an fsync'd commit
//! costs far more than the updates in it, this store asks it to linger up to 1 ms for more
//! publishes after a batch of several ([`Store::commit_linger`]). Every call runs on tokio's
//! blocking pool, so fsync never stalls the async runtime. Reads use read transactions and never
//! wait for a commit.
//!
//! # What appends keep in memory
//! This store is the file's only writer, so an append does not read back what the previous one
//! wrote: the newest seq, the highest trimmed seq and how many entries `duplicate_ids` holds are
//! kept in memory (read from the file on open, moved only by a committed append). An append
//! opens `meta` only when it writes it, and `duplicate_ids` only when it finds a duplicate or
//! the table holds any.
//! Without an age limit the bounds only change with a commit, so each commit leaves them in
//! memory too and [`Store::bounds`] (asked by every subscribe) answers from there, with no read
//! transaction and no blocking thread: a reconnect storm of 10,000 subscribers no longer grows
//! tokio's blocking pool to dozens of threads. With an age limit they move with the clock, and
//! are read from the file. After a failed append both are read from the file again (a failed
//! commit may or may not have reached the disk), until the next commit.
//!
//! # Retention
//! Count and age limits are applied inside each append's transaction. Between appends, reads
//! hide what has aged out (as the memory ring does), and the next append removes it. A read skips
//! the aged-out updates at the front of what it scans, so like the ring it trusts that
//! `published_at_ms` grows with `seq`.
//!
//! # Opening
//! [`RedbStore::open`] never deletes, truncates or overwrites a file it refuses: a damaged file,
//! a foreign file, another program's redb file and an unknown schema are each reported as an
//! [`OpenError`] that names the file. redb locks the file, so a second hub (or a second open in
//! one process) on the same path is refused. Every open verifies the checksums of the whole file
//! (bounded by retention), so damage is reported at start-up rather than found by a read; after a
//! crash, the same pass is redb's recovery.
//!
//! # Snapshots (online backup)
//! [`Store::snapshot`] copies every table, as one read transaction sees them, into a new redb
//! file beside the store (`herald.redb.backup-<pid>-<n>`), commits it with fsync, opens it and
//! unlinks it at once: the caller streams the open file, and nothing stays on disk. Appends go
//! on meanwhile (a read transaction never blocks a commit); the copy is the store exactly as of
//! one commit, so it opens like any store file (its tallies counted from its log). [`inspect`]
//! reads such a file, or a schema 1 one, without writing to it (`herald backup` checks what it
//! received).
//!
//! This module knows nothing of HTTP, subscribers or the writer; it must not touch any file in
//! the directory other than `herald.redb` and its own short-lived snapshot files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redb::{
    Builder, Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, TableError, TableHandle, Value,
    WriteTransaction,
};
use async_trait::async_trait;
use parking_lot::Mutex;

use super::record::{Record, encode, parse, published_at};
use super::{
    Bounds, ReplayFrom, Retention, Snapshot, SnapshotError, Store, StoreError, TopicHistory,
};
use crate::update::{Update, now_ms};

mod tally;
use tally::TopicTallies;

/// The file inside the store directory.
pub(crate) const FILE_NAME: &str = "herald.redb";

/// The table layout this build reads and writes.
pub(crate) const SCHEMA_VERSION: u64 = 3;
/// The layout before `last_seq` and `trimmed` became derived from the log (module doc, "Schema
/// 2"): upgraded on open.
const SCHEMA_WRITING_META_PER_COMMIT: u64 = 2;
/// The layout of earlier heralds, which this build upgrades on open (module doc, "Schema 1").
const SCHEMA_WITH_TALLY_TABLES: u64 = 1;

const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("log");
const IDS: TableDefinition<'static, &str, u64> = TableDefinition::new("ids");
/// `(event id, seq)` of every kept occurrence of an id appended more than once.
const DUPLICATE_IDS: TableDefinition<'static, (&str, u64), ()> =
    TableDefinition::new("duplicate_ids");
/// Schema 1 only: the per-topic tally of every kept update (now in memory, [`tally`]).
const TOPICS: TableDefinition<'static, &str, (u64, &str)> = TableDefinition::new("topics");
/// Schema 1 only: the per-topic tally of the public updates.
const TOPICS_PUBLIC: TableDefinition<'static, &str, (u64, &str)> =
    TableDefinition::new("topics_public");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
/// With `--history-per-topic`: `(topic, seq)` of every kept update, per distinct topic.
const TOPIC_SEQS: TableDefinition<'static, (&str, u64), ()> = TableDefinition::new("topic_seqs");
/// With `--history-per-topic`: the kept seqs no topic protects (trimmed first, oldest first).
const UNPROTECTED: TableDefinition<'static, u64, ()> = TableDefinition::new("unprotected");

const META_SCHEMA: &str = "schema";
const META_LAST_SEQ: &str = "last_seq";
/// Schema 1 only: `last_seq` when `topics_public` was last written.
const META_PUBLIC_SEQ: &str = "public_tally_seq";
/// Schema 1 only: the oldest seq in `log` (0: none) when `topics_public` was last written.
const META_PUBLIC_FRONT: &str = "public_tally_front";
/// The highest seq retention removed (absent: none, or only removals from the front).
const META_TRIMMED: &str = "trimmed";
/// The `per_topic` that `topic_seqs` / `unprotected` were computed for.
const META_PROTECT_N: &str = "protect_n";
/// `last_seq` when `topic_seqs` / `unprotected` were last written.
const META_PROTECT_SEQ: &str = "protect_seq";

/// How long the group-commit writer may hold a batch open for concurrent publishers
/// ([`Store::commit_linger`]); tokio's timer counts in milliseconds.
const COMMIT_LINGER: Duration = Duration::from_millis(1);

/// redb's page cache. An upper bound, filled only as pages are read.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Why the store cannot be opened. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the store directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open store {}: permission denied", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot open store {}: the file is locked: is another herald using it?", path.display())]
    Locked { path: PathBuf },
    #[error(
        "cannot open store {}: not a herald store ({reason}); left untouched: move it aside or choose another --store",
        path.display()
    )]
    Foreign { path: PathBuf, reason: String },
    #[error(
        "cannot open store {}: the file is damaged ({reason}); left untouched: restore a backup or move it aside",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "cannot open store {}: schema version {found} is not supported by this herald (it reads version {SCHEMA_VERSION}); left untouched",
        path.display()
    )]
    UnknownSchema { path: PathBuf, found: u64 },
    #[error("cannot open store {}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// The redb-backed store. Cheap to share behind an `Arc`; dropping the last handle (and
/// finishing the calls in flight) closes the file and releases its lock.
pub struct RedbStore {
    db: Arc<Database>,
    retention: Retention,
    path: PathBuf,
    commits: Arc<AtomicU64>,
    /// The per-topic tallies of what `log` holds. An append holds the lock from before its
    /// commit until its changes are counted, and `topics` opens its read transaction under it,
    /// so the two always agree.
    tallies: Arc<Mutex<TopicTallies>>,
    /// What the appends know of the file between commits ([`Committed`]); moved only by a
    /// committed append, under the `tallies` lock. `None` after a failed append: whether a
    /// failed commit reached the disk is unknown, so the next append reads it from the file.
    committed: Arc<Mutex<Option<Committed>>>,
    /// The bounds as of the last commit, when they do not change between commits (no age
    /// limit): [`Store::bounds`] answers from here, with no read transaction and no blocking
    /// thread (every subscribe asks for them).
    bounds: Arc<Mutex<Option<Bounds>>>,
}

/// What the one writer of the file knows between its commits, so an append does not read it
/// back from the file (nor open the tables it is kept in) every time.
#[derive(Debug, Clone, Copy)]
struct Committed {
    /// The newest seq ever assigned ([`newest_seq`]).
    last_seq: u64,
    /// The highest seq retention removed (at least `meta`'s `trimmed`).
    trimmed: u64,
    /// Entries in `duplicate_ids`: while it is 0, an append neither opens nor searches it.
    duplicates: u64,
}

impl RedbStore {
    /// Opens `dir/herald.redb`, creating the directory and the file if missing.
    pub fn open(dir: &Path, retention: Retention) -> Result<RedbStore, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        precheck(&path)?;
        // redb may panic on a file altered behind its back; a refusal is the answer, not a crash.
        let opened = std::panic::catch_unwind(|| -> Result<_, OpenError> {
            let db = Builder::new()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(true)
                .create(&path)
                .map_err(|error| classify(&path, error.into()))?;
            let tallies = prepare(&db, &path, retention.per_topic)?;
            let committed = read_committed(&db).map_err(|error| classify(&path, error))?;
            let bounds =
                match retention.max_age {
                    Some(_) => None,
                    None => Some(bounds_blocking(&db, retention).map_err(|error| {
                        OpenError::Damaged {
                            path: path.clone(),
                            reason: error.to_string(),
                        }
                    })?),
                };
            Ok((db, tallies, committed, bounds))
        });
        let (db, tallies, committed, bounds) = match opened {
            Ok(result) => result?,
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "redb could not read it".to_owned())
                    .replace('\n', " ");
                return Err(OpenError::Damaged { path, reason });
            }
        };
        Ok(RedbStore {
            db: Arc::new(db),
            retention,
            path,
            commits: Arc::new(AtomicU64::new(0)),
            tallies: Arc::new(Mutex::new(tallies)),
            committed: Arc::new(Mutex::new(Some(committed))),
            bounds: Arc::new(Mutex::new(bounds)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Durable commits made through this handle (one per successful `append`).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool with the database and the retention limits.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, Retention) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let retention = self.retention;
        tokio::task::spawn_blocking(move || work(&db, retention))
            .await
            .map_err(|error| StoreError::Backend(format!("store task failed: {error}")))?
    }
}

/// What a file holds, as far as herald is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Layout {
    /// No table at all: a new file.
    Fresh,
    /// Herald's schema, with every table.
    Complete,
    /// Herald's schema, some table not created yet.
    Incomplete,
    /// An earlier herald's schema 1, to be upgraded (module doc, "Schema 1").
    Schema1,
    /// An earlier herald's schema 2, to be upgraded (module doc, "Schema 2").
    Schema2,
}

/// Reads which tables the file has and refuses anything that is not herald's current schema.
fn layout(read: &ReadTransaction, path: &Path) -> Result<Layout, OpenError> {
    let fail = |error: ::redb::Error| classify(path, error);
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| fail(e.into()))?
        .map(|handle| handle.name().to_owned())
        .collect();
    let multimaps = read
        .list_multimap_tables()
        .map_err(|e| fail(e.into()))?
        .count();
    if tables.is_empty() && multimaps == 0 {
        return Ok(Layout::Fresh);
    }
    if !tables.iter().any(|name| name == META.name()) {
        return Err(OpenError::Foreign {
            path: path.to_path_buf(),
            reason: "a redb database without herald's tables".into(),
        });
    }
    let meta = read.open_table(META).map_err(|e| fail(e.into()))?;
    match meta.get(META_SCHEMA).map_err(|e| fail(e.into()))? {
        Some(version) if version.value() == SCHEMA_VERSION => {}
        Some(version) if version.value() == SCHEMA_WRITING_META_PER_COMMIT => {
            return Ok(Layout::Schema2);
        }
        Some(version) if version.value() == SCHEMA_WITH_TALLY_TABLES => {
            // The upgrade deletes the tally tables: only herald's own, of herald's types.
            for table in [TOPICS, TOPICS_PUBLIC] {
                match read.open_table(table) {
                    Ok(_) | Err(TableError::TableDoesNotExist(_)) => {}
                    Err(error) => return Err(fail(error.into())),
                }
            }
            return Ok(Layout::Schema1);
        }
        Some(version) => {
            return Err(OpenError::UnknownSchema {
                path: path.to_path_buf(),
                found: version.value(),
            });
        }
        None => {
            return Err(OpenError::Foreign {
                path: path.to_path_buf(),
                reason: "a redb database without a herald schema version".into(),
            });
        }
    }
    let complete = [LOG.name(), IDS.name()]
        .iter()
        .all(|wanted| tables.iter().any(|name| name == wanted));
    Ok(if complete {
        Layout::Complete
    } else {
        Layout::Incomplete
    })
}

/// Looks at an existing file without writing to it, so that a file herald refuses is refused
/// before the writable open (whose integrity pass commits) touches it. A file that needs crash
/// recovery cannot be opened read-only: the writable open recovers it, then checks again.
fn precheck(path: &Path) -> Result<(), OpenError> {
    let non_empty = std::fs::metadata(path).is_ok_and(|meta| meta.len() > 0);
    if !non_empty {
        return Ok(());
    }
    let looked = std::panic::catch_unwind(|| -> Result<(), OpenError> {
        let db = match Builder::new().open_read_only(path) {
            Ok(db) => db,
            Err(error) => {
                return match classify(path, error.into()) {
                    refusal @ (OpenError::Locked { .. }
                    | OpenError::Foreign { .. }
                    | OpenError::PermissionDenied { .. }) => Err(refusal),
                    // Needs recovery, or damaged: the writable open will tell which.
                    _ => Ok(()),
                };
            }
        };
        let read = db.begin_read().map_err(|e| classify(path, e.into()))?;
        layout(&read, path).map(|_| ())
    });
    match looked {
        Ok(Err(
            refusal @ (OpenError::Locked { .. }
            | OpenError::Foreign { .. }
            | OpenError::PermissionDenied { .. }
            | OpenError::UnknownSchema { .. }),
        )) => Err(refusal),
        // Anything else (a panic included) is for the writable open's integrity pass to judge.
        _ => Ok(()),
    }
}

/// Checks the tables of the opened file, creating them in a new one and upgrading a schema 1
/// file, and counts the topic tallies from the log.
fn prepare(db: &Database, path: &Path, per_topic: usize) -> Result<TopicTallies, OpenError> {
    let fail = |error: ::redb::Error| classify(path, error);
    let read = db.begin_read().map_err(|e| fail(e.into()))?;
    let found = layout(&read, path)?;
    drop(read);
    if found != Layout::Complete {
        let mut write = db.begin_write().map_err(|e| fail(e.into()))?;
        write
            .set_durability(Durability::Immediate)
            .map_err(|e| fail(e.into()))?;
        {
            write.open_table(LOG).map_err(|e| fail(e.into()))?;
            write.open_table(IDS).map_err(|e| fail(e.into()))?;
            let mut meta = write.open_table(META).map_err(|e| fail(e.into()))?;
            match found {
                Layout::Fresh => {
                    meta.insert(META_LAST_SEQ, 0).map_err(|e| fail(e.into()))?;
                }
                Layout::Schema1 => {
                    meta.remove(META_PUBLIC_SEQ).map_err(|e| fail(e.into()))?;
                    meta.remove(META_PUBLIC_FRONT).map_err(|e| fail(e.into()))?;
                }
                Layout::Complete | Layout::Incomplete | Layout::Schema2 => {}
            }
            meta.insert(META_SCHEMA, SCHEMA_VERSION)
                .map_err(|e| fail(e.into()))?;
        }
        if found == Layout::Schema1 {
            write.delete_table(TOPICS).map_err(|e| fail(e.into()))?;
            write
                .delete_table(TOPICS_PUBLIC)
                .map_err(|e| fail(e.into()))?;
        }
        write.commit().map_err(|e| fail(e.into()))?;
        if found == Layout::Schema2 {
            tracing::info!(
                path = %path.display(),
                "store: upgraded the file from schema 2 to schema {SCHEMA_VERSION} (the newest sequence is derived from the log); an earlier herald refuses it from now on"
            );
        }
        if found == Layout::Schema1 {
            tracing::info!(
                path = %path.display(),
                "store: upgraded the file from schema 1 to schema {SCHEMA_VERSION} (topic tallies are now counted in memory); an earlier herald refuses it from now on"
            );
        }
    }
    let tallies = count_tallies(db, path)?;
    if per_topic > 0 {
        let read = db.begin_read().map_err(|e| fail(e.into()))?;
        let current = protection_current(&read, per_topic).map_err(fail)?;
        drop(read);
        if !current {
            let records = rebuild_protection(db, path, per_topic)?;
            tracing::info!(
                path = %path.display(),
                records,
                per_topic,
                "store: indexed the log by topic for --history-per-topic"
            );
        }
    }
    Ok(tallies)
}

/// The file is damaged: the log record at `seq` does not decode (found while opening).
fn undecodable_at_open(path: &Path, seq: u64) -> OpenError {
    OpenError::Damaged {
        path: path.to_path_buf(),
        reason: format!("undecodable record at seq {seq}"),
    }
}

/// The topic tallies of everything in `log` (aged out or not: the next append removes that,
/// and `topics` hides it meanwhile). A record that cannot be decoded means a damaged file.
fn count_tallies(db: &Database, path: &Path) -> Result<TopicTallies, OpenError> {
    let fail = |error: ::redb::Error| classify(path, error);
    let read = db.begin_read().map_err(|e| fail(e.into()))?;
    let log = read.open_table(LOG).map_err(|e| fail(e.into()))?;
    let mut tallies = TopicTallies::default();
    for entry in log.iter().map_err(|e| fail(e.into()))? {
        let (key, value) = entry.map_err(|e| fail(e.into()))?;
        let seq = key.value();
        let record = parse(value.value()).ok_or_else(|| undecodable_at_open(path, seq))?;
        tallies.add(record.id, &record.topics, record.private);
    }
    Ok(tallies)
}

/// Do `topic_seqs` and `unprotected` exist and match the log and `per_topic` (nothing appended
/// since they were written, by a run without `--history-per-topic` or an earlier herald)?
fn protection_current(read: &ReadTransaction, per_topic: usize) -> Result<bool, ::redb::Error> {
    for exists in [
        read.open_table(TOPIC_SEQS).map(|_| ()),
        read.open_table(UNPROTECTED).map(|_| ()),
    ] {
        match exists {
            Ok(()) => {}
            Err(TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(error) => return Err(error.into()),
        }
    }
    let meta = read.open_table(META)?;
    let value = |key: &str| -> Result<Option<u64>, ::redb::Error> {
        Ok(meta.get(key)?.map(|guard| guard.value()))
    };
    let last_seq = newest_seq(&meta, &read.open_table(LOG)?)?;
    Ok(value(META_PROTECT_N)? == u64::try_from(per_topic).ok()
        && value(META_PROTECT_SEQ)? == Some(last_seq))
}

/// Rebuilds `topic_seqs` and `unprotected` from the log for `per_topic`, in one write
/// transaction. Returns the records read.
fn rebuild_protection(db: &Database, path: &Path, per_topic: usize) -> Result<u64, OpenError> {
    let fail = |error: ::redb::Error| classify(path, error);
    let mut write = db.begin_write().map_err(|e| fail(e.into()))?;
    write
        .set_durability(Durability::Immediate)
        .map_err(|e| fail(e.into()))?;
    for name in [TOPIC_SEQS.name(), UNPROTECTED.name()] {
        let exists = write
            .list_tables()
            .map_err(|e| fail(e.into()))?
            .any(|handle| handle.name() == name);
        if exists {
            let deleted = if name == TOPIC_SEQS.name() {
                write.delete_table(TOPIC_SEQS)
            } else {
                write.delete_table(UNPROTECTED)
            };
            deleted.map_err(|e| fail(e.into()))?;
        }
    }
    let mut records = 0;
    {
        let log = write.open_table(LOG).map_err(|e| fail(e.into()))?;
        let mut seqs = write.open_table(TOPIC_SEQS).map_err(|e| fail(e.into()))?;
        let mut unprotected = write.open_table(UNPROTECTED).map_err(|e| fail(e.into()))?;
        // Newest first: an update is protected while one of its topics has fewer than
        // `per_topic` newer ones.
        let mut newer: HashMap<String, usize> = HashMap::new();
        for entry in log.iter().map_err(|e| fail(e.into()))?.rev() {
            let (key, value) = entry.map_err(|e| fail(e.into()))?;
            let seq = key.value();
            let record = parse(value.value()).ok_or_else(|| undecodable_at_open(path, seq))?;
            records += 1;
            let mut protected = false;
            for topic in unique(&record.topics) {
                let count = newer.entry((*topic).to_owned()).or_default();
                protected |= *count < per_topic;
                *count += 1;
                seqs.insert((*topic, seq), ()).map_err(|e| fail(e.into()))?;
            }
            if !protected {
                unprotected.insert(seq, ()).map_err(|e| fail(e.into()))?;
            }
        }
        let mut meta = write.open_table(META).map_err(|e| fail(e.into()))?;
        let last_seq = newest_seq(&meta, &log).map_err(fail)?;
        meta.insert(META_PROTECT_N, u64::try_from(per_topic).unwrap_or(u64::MAX))
            .map_err(|e| fail(e.into()))?;
        meta.insert(META_PROTECT_SEQ, last_seq)
            .map_err(|e| fail(e.into()))?;
    }
    write.commit().map_err(|e| fail(e.into()))?;
    Ok(records)
}

/// The newest sequence ever assigned: the log's newest key, or `meta`'s `last_seq` when that is
/// higher (retention removed the newest updates; earlier schemas wrote it on every commit).
fn newest_seq(
    meta: &impl ReadableTable<&'static str, u64>,
    log: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<u64, ::redb::Error> {
    let recorded = meta.get(META_LAST_SEQ)?.map_or(0, |guard| guard.value());
    let in_log = log.last()?.map_or(0, |(key, _)| key.value());
    Ok(recorded.max(in_log))
}

/// What an append needs to know of the file before its first commit ([`Committed`]).
fn read_committed(db: &Database) -> Result<Committed, ::redb::Error> {
    let read = db.begin_read()?;
    let meta = read.open_table(META)?;
    let log = read.open_table(LOG)?;
    let duplicates = match read.open_table(DUPLICATE_IDS) {
        Ok(table) => table.len()?,
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(error) => return Err(error.into()),
    };
    Ok(Committed {
        last_seq: newest_seq(&meta, &log)?,
        trimmed: meta.get(META_TRIMMED)?.map_or(0, |guard| guard.value()),
        duplicates,
    })
}

/// Says what is wrong with the file in terms a person can act on.
fn classify(path: &Path, error: ::redb::Error) -> OpenError {
    let path = path.to_path_buf();
    match error {
        ::redb::Error::DatabaseAlreadyOpen | ::redb::Error::LockProtocolMismatch => {
            OpenError::Locked { path }
        }
        ::redb::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            OpenError::PermissionDenied { path }
        }
        ::redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            OpenError::Foreign {
                path,
                reason: io.to_string(),
            }
        }
        ::redb::Error::Io(io) => OpenError::Io {
            path,
            reason: io.to_string(),
        },
        ::redb::Error::UpgradeRequired(version) => OpenError::Foreign {
            path,
            reason: format!("written in redb file format {version}, which this herald cannot read"),
        },
        error @ (::redb::Error::TableTypeMismatch { .. }
        | ::redb::Error::TableIsMultimap(_)
        | ::redb::Error::TypeDefinitionChanged { .. }) => OpenError::Foreign {
            path,
            reason: error.to_string(),
        },
        other => OpenError::Damaged {
            path,
            reason: other.to_string(),
        },
    }
}

fn backend(error: impl Into<::redb::Error>) -> StoreError {
    StoreError::Backend(format!("redb: {}", error.into()))
}

fn corrupt(seq: u64) -> StoreError {
    StoreError::Backend(format!("redb: undecodable record at seq {seq}"))
}

/// Updates published before this instant have aged out.
fn age_cutoff(retention: Retention) -> Option<u64> {
    retention
        .max_age
        .map(|age| now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
}

/// Each item once, first occurrence first.
fn unique<T: PartialEq>(items: &[T]) -> impl Iterator<Item = &T> {
    items
        .iter()
        .enumerate()
        .filter(|(index, item)| !items[..*index].contains(item))
        .map(|(_, item)| item)
}

/// The record stored at `seq`, or why it cannot be read.
fn parse_at(seq: u64, bytes: &[u8]) -> Result<Record<'_>, StoreError> {
    parse(bytes).ok_or_else(|| corrupt(seq))
}

/// Has this record aged out?
fn expired(seq: u64, bytes: &[u8], cutoff: Option<u64>) -> Result<bool, StoreError> {
    match cutoff {
        None => Ok(false),
        Some(limit) => Ok(published_at(bytes).ok_or_else(|| corrupt(seq))? < limit),
    }
}

// ---------------------------------------------------------------------------------------------
// Appends

/// What one append changed in the log, for the topic tallies: the updates it appended, and the
/// topics and privacy of each update its retention removed.
struct Appended {
    stored: Vec<Arc<Update>>,
    removed: Vec<(Vec<String>, bool)>,
    /// What the writer knows once this append is committed.
    committed: Committed,
    /// The bounds once it is committed (without an age limit; `None` with one).
    bounds: Option<Bounds>,
}

impl Appended {
    /// Counts the appended updates in, then the removed ones out (a batch may remove some of
    /// its own updates).
    fn count(&self, tallies: &mut TopicTallies) {
        for update in &self.stored {
            tallies.add(&update.id, &update.topics, update.private);
        }
        for (topics, private) in &self.removed {
            tallies.remove(topics, *private);
        }
    }
}

fn append_blocking(
    db: &Database,
    retention: Retention,
    known: Committed,
    batch: Vec<Update>,
) -> Result<Appended, StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    let appended = {
        let mut log = txn.open_table(LOG).map_err(backend)?;
        let mut ids = IdIndex {
            txn: &txn,
            newest: txn.open_table(IDS).map_err(backend)?,
            duplicates: None,
            count: known.duplicates,
        };
        let mut last_seq = known.last_seq;
        let mut removed = Vec::new();
        let mut protection = match retention.per_topic {
            0 => None,
            per_topic => Some(Protection {
                seqs: txn.open_table(TOPIC_SEQS).map_err(backend)?,
                unprotected: txn.open_table(UNPROTECTED).map_err(backend)?,
                per_topic,
            }),
        };
        let mut trimmed = known.trimmed;
        let trimmed_before = trimmed;
        let mut stored = Vec::with_capacity(batch.len());
        let mut record = Vec::new();
        for mut update in batch {
            last_seq = last_seq
                .checked_add(1)
                .ok_or_else(|| StoreError::Backend("sequence numbers exhausted".into()))?;
            update.seq = last_seq;
            record.clear();
            encode(&update, &mut record)?;
            log.insert(last_seq, record.as_slice()).map_err(backend)?;
            ids.add(&update.id, last_seq)?;
            if let Some(protection) = &mut protection {
                protection.push(&log, last_seq, &update.topics)?;
            }
            stored.push(Arc::new(update));
        }
        trim(
            &mut log,
            &mut ids,
            &mut removed,
            retention,
            protection.as_mut(),
            (last_seq, &mut trimmed),
        )?;
        let (oldest_kept, newest_kept) = log_ends(&log)?;
        // `meta` is written (and opened) only when the log cannot tell (module doc, "Schema 2"):
        // rewriting it on every commit cost a third of the append's CPU.
        let newest_lost = newest_kept.as_ref().map(|(seq, _)| *seq) != Some(last_seq);
        let trimmed_untold = trimmed != trimmed_before
            && oldest_kept
                .as_ref()
                .is_some_and(|(oldest, _)| trimmed >= *oldest);
        if newest_lost || trimmed_untold || protection.is_some() {
            let mut meta = txn.open_table(META).map_err(backend)?;
            if newest_lost {
                meta.insert(META_LAST_SEQ, last_seq).map_err(backend)?;
            }
            if trimmed_untold {
                meta.insert(META_TRIMMED, trimmed).map_err(backend)?;
            }
            if protection.is_some() {
                meta.insert(
                    META_PROTECT_N,
                    u64::try_from(retention.per_topic).unwrap_or(u64::MAX),
                )
                .map_err(backend)?;
                meta.insert(META_PROTECT_SEQ, last_seq).map_err(backend)?;
            }
        }
        let bounds = retention.max_age.is_none().then(|| {
            Bounds::contiguous(oldest_kept, newest_kept, last_seq).trimmed_at_least(trimmed)
        });
        Appended {
            stored,
            removed,
            committed: Committed {
                last_seq,
                trimmed,
                duplicates: ids.count,
            },
            bounds,
        }
    };
    txn.commit().map_err(backend)?;
    Ok(appended)
}

/// The oldest and the newest update in the log: (seq, id).
type LogEnd = Option<(u64, String)>;

fn log_ends(log: &Table<'_, u64, &[u8]>) -> Result<(LogEnd, LogEnd), StoreError> {
    let end = |entry: Option<(::redb::AccessGuard<'_, u64>, ::redb::AccessGuard<'_, &[u8]>)>| {
        entry
            .map(|(key, value)| {
                let seq = key.value();
                parse_at(seq, value.value()).map(|record| (seq, record.id.to_owned()))
            })
            .transpose()
    };
    let oldest = end(log.first().map_err(backend)?)?;
    let newest = end(log.last().map_err(backend)?)?;
    Ok((oldest, newest))
}

/// The event-id tables of one append transaction: `ids` (the newest occurrence) and
/// `duplicate_ids` (every kept occurrence of an id used more than once), opened only when an
/// append finds a duplicate or the table holds any.
struct IdIndex<'t> {
    txn: &'t WriteTransaction,
    newest: Table<'t, &'static str, u64>,
    duplicates: Option<Table<'t, (&'static str, u64), ()>>,
    /// Entries in `duplicate_ids` ([`Committed::duplicates`]).
    count: u64,
}

impl<'t> IdIndex<'t> {
    /// `duplicate_ids`, opened on first use.
    fn duplicates(&mut self) -> Result<&mut Table<'t, (&'static str, u64), ()>, StoreError> {
        if self.duplicates.is_none() {
            self.duplicates = Some(self.txn.open_table(DUPLICATE_IDS).map_err(backend)?);
        }
        self.duplicates
            .as_mut()
            .ok_or_else(|| StoreError::Backend("duplicate_ids did not open".into()))
    }

    /// Indexes the occurrence of `id` just appended at `seq`.
    fn add(&mut self, id: &str, seq: u64) -> Result<(), StoreError> {
        let previous = self
            .newest
            .insert(id, seq)
            .map_err(backend)?
            .map(|guard| guard.value());
        if let Some(previous) = previous {
            let duplicates = self.duplicates()?;
            let mut added = 0;
            for occurrence in [previous, seq] {
                if duplicates
                    .insert((id, occurrence), ())
                    .map_err(backend)?
                    .is_none()
                {
                    added += 1;
                }
            }
            self.count += added;
        }
        Ok(())
    }

    /// Unindexes the occurrence of `id` trimmed at `seq`: one lookup of `ids` (an entry that
    /// points at a later occurrence goes back), and none of `duplicate_ids` while it is empty.
    fn remove(&mut self, id: &str, seq: u64) -> Result<(), StoreError> {
        let newest = self
            .newest
            .remove(id)
            .map_err(backend)?
            .map(|guard| guard.value());
        if let Some(later) = newest.filter(|&newest| newest != seq) {
            self.newest.insert(id, later).map_err(backend)?;
        }
        if self.count > 0
            && self
                .duplicates()?
                .remove((id, seq))
                .map_err(backend)?
                .is_some()
        {
            self.count -= 1;
        }
        Ok(())
    }
}

/// The per-topic index of one append transaction (`--history-per-topic`).
struct Protection<'t> {
    seqs: Table<'t, (&'static str, u64), ()>,
    unprotected: Table<'t, u64, ()>,
    per_topic: usize,
}

impl Protection<'_> {
    /// The seq of `topic`'s `nth` newest kept update (0: the newest).
    fn nth_newest(&self, topic: &str, nth: usize) -> Result<Option<u64>, StoreError> {
        match self
            .seqs
            .range((topic, 0)..=(topic, u64::MAX))
            .map_err(backend)?
            .rev()
            .nth(nth)
        {
            Some(entry) => Ok(Some(entry.map_err(backend)?.0.value().1)),
            None => Ok(None),
        }
    }

    /// Is the kept update at `seq` among the newest `per_topic` kept of one of its topics?
    fn protected(&self, log: &Table<'_, u64, &[u8]>, seq: u64) -> Result<bool, StoreError> {
        let Some(value) = log.get(seq).map_err(backend)? else {
            return Ok(false);
        };
        let record = parse_at(seq, value.value())?;
        for topic in unique(&record.topics) {
            let newer = self
                .seqs
                .range((*topic, seq.saturating_add(1))..=(*topic, u64::MAX))
                .map_err(backend)?
                .take(self.per_topic)
                .count();
            if newer < self.per_topic {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Indexes the update just appended at `seq` (the newest of each of its topics, so
    /// protected), and marks the one it pushes out of each topic's newest `per_topic` if no
    /// topic protects it any more.
    fn push<T: AsRef<str> + PartialEq>(
        &mut self,
        log: &Table<'_, u64, &[u8]>,
        seq: u64,
        topics: &[T],
    ) -> Result<(), StoreError> {
        for topic in unique(topics) {
            self.seqs
                .insert((topic.as_ref(), seq), ())
                .map_err(backend)?;
        }
        for topic in unique(topics) {
            if let Some(pushed_out) = self.nth_newest(topic.as_ref(), self.per_topic)?
                && !self.protected(log, pushed_out)?
            {
                self.unprotected.insert(pushed_out, ()).map_err(backend)?;
            }
        }
        Ok(())
    }

    /// Unindexes the update trimmed at `seq`. If it was protected, the next older update of
    /// each of its topics enters that topic's newest `per_topic`.
    fn remove<T: AsRef<str> + PartialEq>(
        &mut self,
        seq: u64,
        topics: &[T],
    ) -> Result<(), StoreError> {
        let was_unprotected = self.unprotected.remove(seq).map_err(backend)?.is_some();
        for topic in unique(topics) {
            self.seqs.remove((topic.as_ref(), seq)).map_err(backend)?;
            if !was_unprotected
                && let Some(entered) = self.nth_newest(topic.as_ref(), self.per_topic - 1)?
            {
                self.unprotected.remove(entered).map_err(backend)?;
            }
        }
        Ok(())
    }
}

/// Removes what retention no longer allows ([`Retention`]): what aged out (from the front), then
/// what is older than the newest `max_events` and no topic protects, then, past `2 ×
/// max_events`, the oldest. Adds the topics and privacy of each removed update to `removed`.
/// `seqs`: the newest seq assigned, and the highest trimmed (raised here).
fn trim(
    log: &mut Table<'_, u64, &[u8]>,
    ids: &mut IdIndex<'_>,
    removed: &mut Vec<(Vec<String>, bool)>,
    retention: Retention,
    mut protection: Option<&mut Protection<'_>>,
    seqs: (u64, &mut u64),
) -> Result<(), StoreError> {
    let (last_seq, trimmed) = seqs;
    let max_events = u64::try_from(retention.max_events).unwrap_or(u64::MAX);
    let ring_start = last_seq.saturating_sub(max_events).saturating_add(1);
    let cutoff = age_cutoff(retention);
    loop {
        let first = match log.first().map_err(backend)? {
            None => break,
            Some((key, value)) => {
                let seq = key.value();
                (seq, expired(seq, value.value(), cutoff)?)
            }
        };
        let victim = match (first, protection.as_deref()) {
            // Aged out, or (without per-topic retention) older than the ring.
            ((seq, true), _) | ((seq, false), None) if first.1 || seq < ring_start => seq,
            (_, None) => break,
            (_, Some(protection)) => {
                let unprotected = protection
                    .unprotected
                    .first()
                    .map_err(backend)?
                    .map(|(key, _)| key.value());
                match unprotected {
                    Some(seq) if seq < ring_start => seq,
                    _ if log.len().map_err(backend)? > max_events.saturating_mul(2) => first.0,
                    _ => break,
                }
            }
        };
        let Some(value) = log.remove(victim).map_err(backend)? else {
            break;
        };
        let record = parse_at(victim, value.value())?;
        let topics: Vec<String> = record.topics.iter().map(|t| (*t).to_owned()).collect();
        let (id, private) = (record.id.to_owned(), record.private);
        drop(value);
        ids.remove(&id, victim)?;
        if let Some(protection) = protection.as_deref_mut() {
            protection.remove(victim, &topics)?;
        }
        removed.push((topics, private));
        *trimmed = (*trimmed).max(victim);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/// Distinguishes the snapshot files of one process.
static SNAPSHOTS: AtomicU64 = AtomicU64::new(0);

/// What a store file holds, as [`inspect`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Updates in the log.
    pub records: u64,
    /// The newest sequence ever assigned.
    pub last_seq: u64,
    /// The id of the newest update in the log.
    pub newest_id: Option<String>,
}

/// Copies every entry of one table from `read` into `write`; returns how many.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    read: &ReadTransaction,
    write: &WriteTransaction,
    table: TableDefinition<'_, K, V>,
) -> Result<u64, ::redb::Error> {
    let source = read.open_table(table)?;
    let mut target = write.open_table(table)?;
    let mut copied = 0;
    for entry in source.iter()? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
        copied += 1;
    }
    Ok(copied)
}

/// The summary of what `read` sees.
fn summarize(read: &ReadTransaction) -> Result<Summary, StoreError> {
    let log = read.open_table(LOG).map_err(backend)?;
    let records = log.len().map_err(backend)?;
    let newest_id = match log.last().map_err(backend)? {
        Some((key, value)) => Some(parse_at(key.value(), value.value())?.id.to_owned()),
        None => None,
    };
    let last_seq = newest_seq(&read.open_table(META).map_err(backend)?, &log).map_err(backend)?;
    Ok(Summary {
        records,
        last_seq,
        newest_id,
    })
}

fn snapshot_blocking(db: &Database, store_file: &Path) -> Result<Snapshot, StoreError> {
    let read = db.begin_read().map_err(backend)?;
    let n = SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
    let mut name = store_file.as_os_str().to_owned();
    name.push(format!(".backup-{}-{n}", std::process::id()));
    let copy_path = PathBuf::from(name);
    let made = (|| -> Result<Snapshot, StoreError> {
        let copy = Builder::new().create(&copy_path).map_err(backend)?;
        let mut write = copy.begin_write().map_err(backend)?;
        write
            .set_durability(Durability::Immediate)
            .map_err(backend)?;
        copy_table(&read, &write, LOG).map_err(backend)?;
        copy_table(&read, &write, IDS).map_err(backend)?;
        match copy_table(&read, &write, DUPLICATE_IDS) {
            Ok(_) | Err(::redb::Error::TableDoesNotExist(_)) => {}
            Err(error) => return Err(backend(error)),
        }
        copy_table(&read, &write, META).map_err(backend)?;
        write.commit().map_err(backend)?;
        drop(copy);
        let summary = summarize(&read)?;
        let file = std::fs::File::open(&copy_path)
            .map_err(|error| StoreError::Backend(format!("snapshot: {error}")))?;
        let bytes = file
            .metadata()
            .map_err(|error| StoreError::Backend(format!("snapshot: {error}")))?
            .len();
        Ok(Snapshot {
            file,
            bytes,
            records: summary.records,
            last_seq: summary.last_seq,
            newest_id: summary.newest_id,
        })
    })();
    // Opened (or failed): the path goes either way; an open file outlives its name.
    let _ = std::fs::remove_file(&copy_path);
    made
}

/// Reads a store file (a snapshot) without writing to it: refuses what [`RedbStore::open`]
/// would refuse (damaged, foreign, another schema), and summarizes the rest.
pub(crate) fn inspect(path: &Path) -> Result<Summary, OpenError> {
    let looked = std::panic::catch_unwind(|| -> Result<Summary, OpenError> {
        let db = Builder::new()
            .open_read_only(path)
            .map_err(|error| classify(path, error.into()))?;
        let read = db.begin_read().map_err(|e| classify(path, e.into()))?;
        if !matches!(
            layout(&read, path)?,
            Layout::Complete | Layout::Schema1 | Layout::Schema2
        ) {
            return Err(OpenError::Foreign {
                path: path.to_path_buf(),
                reason: "herald's tables are missing".into(),
            });
        }
        summarize(&read).map_err(|error| OpenError::Damaged {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })
    });
    looked.unwrap_or_else(|_| {
        Err(OpenError::Damaged {
            path: path.to_path_buf(),
            reason: "redb could not read it".into(),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Up to `limit` updates with `seq > after` for which `wanted` holds, skipping the aged-out
/// updates at the front of the scan.
fn scan(
    db: &Database,
    retention: Retention,
    after: u64,
    limit: usize,
    wanted: impl Fn(&Record<'_>) -> bool,
) -> Result<Vec<Arc<Update>>, StoreError> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    let txn = db.begin_read().map_err(backend)?;
    let log = txn.open_table(LOG).map_err(backend)?;
    let cutoff = age_cutoff(retention);
    let mut leading = true;
    for entry in log.range(after.saturating_add(1)..).map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let (seq, bytes) = (key.value(), value.value());
        if leading {
            if expired(seq, bytes, cutoff)? {
                continue;
            }
            leading = false;
        }
        let record = parse_at(seq, bytes)?;
        if wanted(&record) {
            found.push(Arc::new(record.to_update(seq)));
            if found.len() >= limit {
                break;
            }
        }
    }
    Ok(found)
}

fn resolve_blocking(
    db: &Database,
    retention: Retention,
    id: &str,
) -> Result<ReplayFrom, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let ids = txn.open_table(IDS).map_err(backend)?;
    let Some(seq) = ids.get(id).map_err(backend)?.map(|g| g.value()) else {
        return Ok(ReplayFrom::Unknown);
    };
    let log = txn.open_table(LOG).map_err(backend)?;
    let Some(value) = log.get(seq).map_err(backend)? else {
        return Ok(ReplayFrom::Unknown);
    };
    if expired(seq, value.value(), age_cutoff(retention))? {
        return Ok(ReplayFrom::Unknown);
    }
    Ok(ReplayFrom::After(seq))
}

/// The oldest kept occurrence of `id` above `after`: the first of `duplicate_ids` from there, or
/// the newest occurrence (`ids`) when that is older or the id was appended once. An entry
/// whose update the log no longer holds (left by an earlier herald's trimming) is skipped.
fn resolve_earliest_blocking(
    db: &Database,
    retention: Retention,
    id: &str,
    after: u64,
) -> Result<ReplayFrom, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let log = txn.open_table(LOG).map_err(backend)?;
    let cutoff = age_cutoff(retention);
    let kept = |seq: u64| -> Result<bool, StoreError> {
        match log.get(seq).map_err(backend)? {
            Some(value) => {
                Ok(parse_at(seq, value.value())?.id == id && !expired(seq, value.value(), cutoff)?)
            }
            None => Ok(false),
        }
    };
    let above = after.saturating_add(1);
    let newest = txn
        .open_table(IDS)
        .map_err(backend)?
        .get(id)
        .map_err(backend)?
        .map(|guard| guard.value())
        .filter(|&seq| seq >= above);
    let mut earliest = None;
    match txn.open_table(DUPLICATE_IDS) {
        Ok(duplicates) => {
            let upto = newest.unwrap_or(u64::MAX);
            for entry in duplicates
                .range((id, above)..=(id, upto))
                .map_err(backend)?
            {
                let seq = entry.map_err(backend)?.0.value().1;
                if kept(seq)? {
                    earliest = Some(seq);
                    break;
                }
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(error) => return Err(backend(error)),
    }
    let found = match earliest.or(newest) {
        Some(seq) if kept(seq)? => Some(seq),
        _ => None,
    };
    Ok(found.map_or(ReplayFrom::Unknown, ReplayFrom::After))
}

fn bounds_blocking(db: &Database, retention: Retention) -> Result<Bounds, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let meta = txn.open_table(META).map_err(backend)?;
    let log = txn.open_table(LOG).map_err(backend)?;
    let last_seq = newest_seq(&meta, &log).map_err(backend)?;
    let cutoff = age_cutoff(retention);
    let mut oldest = None;
    for entry in log.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let (seq, bytes) = (key.value(), value.value());
        if !expired(seq, bytes, cutoff)? {
            oldest = Some((seq, parse_at(seq, bytes)?.id.to_owned()));
            break;
        }
    }
    let newest = match (&oldest, log.last().map_err(backend)?) {
        (Some(_), Some((key, value))) => {
            let seq = key.value();
            Some((seq, parse_at(seq, value.value())?.id.to_owned()))
        }
        _ => None,
    };
    // Removals by an earlier herald (which does not record `trimmed`) were from the front.
    let recorded = meta
        .get(META_TRIMMED)
        .map_err(backend)?
        .map_or(0, |guard| guard.value());
    Ok(Bounds::contiguous(oldest, newest, last_seq).trimmed_at_least(recorded))
}

fn topics_blocking(
    db: &Database,
    retention: Retention,
    tallies: &Mutex<TopicTallies>,
) -> Result<Vec<TopicHistory>, StoreError> {
    // Under the lock, the read transaction sees exactly the log the tallies count.
    let tallies = tallies.lock();
    let txn = db.begin_read().map_err(backend)?;
    // What has aged out since the last append is still counted: subtract it (every update,
    // public ones).
    let mut aged_out: HashMap<String, (u64, u64)> = HashMap::new();
    if let Some(cutoff) = age_cutoff(retention) {
        let log = txn.open_table(LOG).map_err(backend)?;
        for entry in log.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let (seq, bytes) = (key.value(), value.value());
            if !expired(seq, bytes, Some(cutoff))? {
                break;
            }
            let record = parse_at(seq, bytes)?;
            for topic in unique(&record.topics) {
                let gone = aged_out.entry((*topic).to_owned()).or_default();
                gone.0 += 1;
                if !record.private {
                    gone.1 += 1;
                }
            }
        }
    }
    Ok(tallies.summaries(&aged_out))
}

#[async_trait]
impl Store for RedbStore {
    async fn append(&self, batch: Vec<Update>) -> Result<Vec<Arc<Update>>, StoreError> {
        let commits = Arc::clone(&self.commits);
        let tallies = Arc::clone(&self.tallies);
        let committed = Arc::clone(&self.committed);
        let bounds = Arc::clone(&self.bounds);
        self.blocking(move |db, retention| {
            let mut tallies = tallies.lock();
            let known = match *committed.lock() {
                Some(known) => known,
                None => read_committed(db).map_err(backend)?,
            };
            let mut appended = match append_blocking(db, retention, known, batch) {
                Ok(appended) => appended,
                Err(error) => {
                    // The file may or may not hold this commit: read it back next time.
                    *committed.lock() = None;
                    *bounds.lock() = None;
                    return Err(error);
                }
            };
            *committed.lock() = Some(appended.committed);
            *bounds.lock() = appended.bounds.take();
            appended.count(&mut tallies);
            commits.fetch_add(1, Ordering::Relaxed);
            Ok(appended.stored)
        })
        .await
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Update>>, StoreError> {
        self.blocking(move |db, retention| scan(db, retention, after, limit, |_| true))
            .await
    }

    async fn resolve(&self, id: &str) -> Result<ReplayFrom, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db, retention| resolve_blocking(db, retention, &id))
            .await
    }

    async fn resolve_earliest(&self, id: &str, after: u64) -> Result<ReplayFrom, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db, retention| resolve_earliest_blocking(db, retention, &id, after))
            .await
    }

    async fn bounds(&self) -> Result<Bounds, StoreError> {
        if let Some(bounds) = self.bounds.lock().clone() {
            return Ok(bounds);
        }
        self.blocking(bounds_blocking).await
    }

    async fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        let path = self.path.clone();
        Ok(self
            .blocking(move |db, _| snapshot_blocking(db, &path))
            .await?)
    }

    /// One fsync'd commit costs far more than the updates in it: a batch may wait this long for
    /// concurrent publishers.
    fn commit_linger(&self) -> Duration {
        COMMIT_LINGER
    }

    async fn topics(&self) -> Result<Vec<TopicHistory>, StoreError> {
        let tallies = Arc::clone(&self.tallies);
        self.blocking(move |db, retention| topics_blocking(db, retention, &tallies))
            .await
    }

    /// Scans the log from `after` and keeps the updates that carry `topic`: cost grows with the
    /// history after `after`, not with the topic's share of it. Fine for `GET
    /// /topics/{topic}/events`; a per-topic index would be the next step if it is not.
    async fn topic_events(
        &self,
        topic: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Update>>, StoreError> {
        let topic = topic.to_owned();
        self.blocking(move |db, retention| {
            scan(db, retention, after, limit, |record| {
                record.topics.iter().any(|t| *t == topic)
            })
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
