//! Embedded SQLite backend, kine-shaped: every write appends a row to `log`
//! whose rowid is the global revision; `current` holds the latest value per key
//! so reads never scan history. WAL mode; a commit is durable against a crash
//! of the process (`kill -9`) before the call returns.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::broadcast;

use crate::{
    prefix_end, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    StoreError, WatchStream,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    prev_value BLOB
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log(key, revision);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// How many log rows a lagging watcher reads back per query.
const REPLAY_BATCH: i64 = 500;
/// Live events buffered per watcher before it must catch up from the log.
const EVENT_BUFFER: usize = 4096;
const READERS: usize = 2;

/// The default store: one SQLite file in WAL mode.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    revision: AtomicU64,
    compacted: AtomicU64,
    events: broadcast::Sender<Arc<Event>>,
}

/// The database holds every Secret, so only its owner may read it: the file
/// is created 0600 (SQLite gives its -wal and -shm files the database's
/// mode), and files left looser by an older version are tightened.
fn restrict_to_owner(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Permissions { path, source }
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(fail(path))?;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fail(&file)(e)),
        };
        if mode & 0o077 != 0 {
            tracing::warn!(file = %file.display(), mode = format!("{mode:o}"), "store file was readable by others; now 0600");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(fail(&file))?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let path_text = path.display().to_string();
        let sql_err = |source| StoreError::Sqlite {
            path: path_text.clone(),
            source,
        };
        restrict_to_owner(path)?;
        let writer = Connection::open(path).map_err(sql_err)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
            )
            .map_err(sql_err)?;
        writer.execute_batch(SCHEMA).map_err(sql_err)?;
        let revision: i64 = writer
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'log'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err)?
            .unwrap_or(0);
        let compacted: i64 = writer
            .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err)?
            .unwrap_or(0);
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path).map_err(sql_err)?;
            reader
                .execute_batch("PRAGMA busy_timeout=10000;")
                .map_err(sql_err)?;
            readers.push(Mutex::new(reader));
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Self {
            inner: Arc::new(Inner {
                path: path_text,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                revision: AtomicU64::new(to_rev(revision)),
                compacted: AtomicU64::new(to_rev(compacted)),
                events,
            }),
        })
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner)).await?
    }
}

fn to_rev(value: i64) -> Revision {
    Revision::try_from(value).unwrap_or(0)
}

fn to_sql(rev: Revision) -> i64 {
    i64::try_from(rev).unwrap_or(i64::MAX)
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite inconsistent (the
    // transaction rolls back), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[index])
    }

    fn current(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
        // Cached statements: parsing SQL on every call was 2 % of the
        // server's CPU while pods came up.
        conn.prepare_cached("SELECT create_revision, mod_revision, value FROM current WHERE key = ?1")?.query_row(
            params![key],
            |row| {
                Ok(KeyValue {
                    key: key.to_string(),
                    create_revision: to_rev(row.get(0)?),
                    mod_revision: to_rev(row.get(1)?),
                    value: Bytes::from(row.get::<_, Vec<u8>>(2)?),
                })
            },
        )
        .optional()
    }

    /// Runs one write in an immediate transaction and publishes its event.
    fn write<F>(&self, key: &str, decide: F) -> Result<Event>
    where
        F: FnOnce(Option<KeyValue>) -> Result<(EventKind, Option<Bytes>)>,
    {
        let mut conn = lock(&self.writer);
        let err = self.err();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let existing = Self::current(&tx, key).map_err(&err)?;
        let (kind, new_value) = decide(existing.clone())?;
        let prev = existing.as_ref().map(|kv| kv.value.clone());
        let create_revision = existing.as_ref().map(|kv| kv.create_revision);
        let logged_value = match (&new_value, &prev) {
            (Some(v), _) | (None, Some(v)) => v.clone(),
            (None, None) => Bytes::new(),
        };
        tx.prepare_cached("INSERT INTO log (key, kind, create_revision, value, prev_value) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut statement| statement.execute(params![
                key,
                kind as i64,
                create_revision.map(to_sql).unwrap_or(0),
                logged_value.as_ref(),
                prev.as_deref()
            ]))
            .map_err(&err)?;
        let revision = to_rev(tx.last_insert_rowid());
        let create_revision = create_revision.unwrap_or(revision);
        if kind == EventKind::Create {
            tx.prepare_cached("UPDATE log SET create_revision = ?1 WHERE revision = ?1")
                .and_then(|mut statement| statement.execute(params![to_sql(revision)]))
                .map_err(&err)?;
        }
        match &new_value {
            Some(value) => tx
                .prepare_cached(
                    "INSERT INTO current (key, create_revision, mod_revision, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET mod_revision = excluded.mod_revision, value = excluded.value",
                )
                .and_then(|mut statement| statement.execute(params![key, to_sql(create_revision), to_sql(revision), value.as_ref()])),
            None => tx
                .prepare_cached("DELETE FROM current WHERE key = ?1")
                .and_then(|mut statement| statement.execute(params![key])),
        }
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        self.revision.store(revision, Ordering::SeqCst);
        let event = Event {
            kind,
            kv: KeyValue {
                key: key.to_string(),
                value: logged_value,
                create_revision,
                mod_revision: revision,
            },
            prev_value: prev,
        };
        // Sent under the writer lock, so watchers see events in revision order.
        let _ = self.events.send(Arc::new(event.clone()));
        Ok(event)
    }

    /// Log rows under `prefix` after `after`, oldest first, at most one batch.
    fn replay(&self, prefix: &str, after: Revision) -> Result<Vec<Event>> {
        let compacted = self.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let conn = self.reader();
        let err = self.err();
        let mut stmt = conn
            .prepare_cached(
                "SELECT revision, key, kind, create_revision, value, prev_value FROM log
                 WHERE revision > ?1 AND key >= ?2 AND key < ?3 ORDER BY revision LIMIT ?4",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(
                params![to_sql(after), prefix, prefix_end(prefix), REPLAY_BATCH],
                |row| {
                    let kind = match row.get::<_, i64>(2)? {
                        0 => EventKind::Create,
                        1 => EventKind::Update,
                        _ => EventKind::Delete,
                    };
                    Ok(Event {
                        kind,
                        kv: KeyValue {
                            key: row.get(1)?,
                            mod_revision: to_rev(row.get(0)?),
                            create_revision: to_rev(row.get(3)?),
                            value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
                        },
                        prev_value: row.get::<_, Option<Vec<u8>>>(5)?.map(Bytes::from),
                    })
                },
            )
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.blocking(move |inner| Inner::current(&inner.reader(), &key).map_err(inner.err()))
            .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.blocking(move |inner| {
            let mut conn = inner.reader();
            let err = inner.err();
            // One read transaction: the revision and the rows come from one snapshot.
            let tx = conn.transaction().map_err(&err)?;
            let revision: i64 = tx
                .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")
                .and_then(|mut statement| statement.query_row([], |r| r.get(0)))
                .optional()
                .map_err(&err)?
                .unwrap_or(0);
            let start = match &options.start_after {
                Some(after) if after.as_str() >= prefix.as_str() => after.clone(),
                _ => String::new(),
            };
            let limit = options.limit.filter(|l| *l > 0);
            let mut items = Vec::new();
            let mut more = false;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key, create_revision, mod_revision, value FROM current
                         WHERE key >= ?1 AND key < ?2 AND key > ?3 ORDER BY key",
                    )
                    .map_err(&err)?;
                let mut rows = stmt
                    .query(params![prefix, prefix_end(&prefix), start])
                    .map_err(&err)?;
                while let Some(row) = rows.next().map_err(&err)? {
                    let kv = KeyValue {
                        key: row.get(0).map_err(&err)?,
                        create_revision: to_rev(row.get(1).map_err(&err)?),
                        mod_revision: to_rev(row.get(2).map_err(&err)?),
                        value: Bytes::from(row.get::<_, Vec<u8>>(3).map_err(&err)?),
                    };
                    if options
                        .predicate
                        .as_ref()
                        .is_some_and(|matches| !matches(&kv))
                    {
                        continue;
                    }
                    if limit.is_some_and(|l| items.len() >= l) {
                        more = true;
                        break;
                    }
                    items.push(kv);
                }
            }
            tx.commit().map_err(&err)?;
            Ok(ListResult {
                items,
                revision: to_rev(revision),
                more,
            })
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let key = key.to_string();
        self.blocking(move |inner| {
            inner
                .write(&key, |existing| match existing {
                    Some(_) => Err(StoreError::AlreadyExists { key: key.clone() }),
                    None => Ok((EventKind::Create, Some(value))),
                })
                .map(|event| event.kv)
        })
        .await
    }

    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> Result<KeyValue> {
        let key = key.to_string();
        self.blocking(move |inner| {
            inner
                .write(&key, |existing| match existing {
                    None => Err(StoreError::NotFound { key: key.clone() }),
                    Some(kv) if kv.mod_revision != expected => Err(StoreError::Conflict {
                        key: key.clone(),
                        expected,
                        actual: kv.mod_revision,
                    }),
                    Some(_) => Ok((EventKind::Update, Some(value))),
                })
                .map(|event| event.kv)
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let key = key.to_string();
        self.blocking(move |inner| {
            inner
                .write(&key, |existing| match (existing, expected) {
                    (None, _) => Err(StoreError::NotFound { key: key.clone() }),
                    (Some(kv), Some(expected)) if kv.mod_revision != expected => {
                        Err(StoreError::Conflict {
                            key: key.clone(),
                            expected,
                            actual: kv.mod_revision,
                        })
                    }
                    (Some(_), _) => Ok((EventKind::Delete, None)),
                })
                .map(|event| event.kv)
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.inner.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        // Subscribe before reading the log, so no write falls between the two.
        let state = WatchState {
            store: self.clone(),
            prefix: prefix.to_string(),
            live: self.inner.events.subscribe(),
            pending: VecDeque::new(),
            last: after,
            catching_up: true,
            failed: false,
        };
        Ok(futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.blocking(move |inner| {
            let revision = revision.min(inner.revision.load(Ordering::SeqCst));
            if revision <= inner.compacted.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut conn = lock(&inner.writer);
            let err = inner.err();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            tx.execute(
                "DELETE FROM log WHERE revision <= ?1",
                params![to_sql(revision)],
            )
            .map_err(&err)?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![to_sql(revision)],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            inner.compacted.store(revision, Ordering::SeqCst);
            tracing::debug!(revision, "compacted store history");
            Ok(())
        })
        .await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.compacted.load(Ordering::SeqCst))
    }

    async fn size_bytes(&self) -> Result<u64> {
        self.blocking(|inner| {
            let conn = inner.reader();
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(inner.err())?;
            let size: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(inner.err())?;
            let wal = std::fs::metadata(format!("{}-wal", inner.path))
                .map(|m| m.len())
                .unwrap_or(0);
            Ok(u64::try_from(pages * size).unwrap_or(0) + wal)
        })
        .await
    }
}

/// One watcher: replays the log after `last`, then follows live events,
/// going back to the log whenever it falls behind the broadcast buffer.
struct WatchState {
    store: SqliteStore,
    prefix: String,
    live: broadcast::Receiver<Arc<Event>>,
    pending: VecDeque<Event>,
    last: Revision,
    catching_up: bool,
    failed: bool,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                self.last = event.kv.mod_revision;
                return Some(Ok(event));
            }
            if self.catching_up {
                let (prefix, after) = (self.prefix.clone(), self.last);
                match self
                    .store
                    .blocking(move |inner| inner.replay(&prefix, after))
                    .await
                {
                    Ok(batch) => {
                        self.catching_up = batch.len() >= REPLAY_BATCH as usize;
                        self.pending.extend(batch);
                        continue;
                    }
                    Err(error) => {
                        self.failed = true;
                        return Some(Err(error));
                    }
                }
            }
            match self.live.recv().await {
                Ok(event)
                    if event.kv.mod_revision > self.last
                        && event.kv.key.starts_with(&self.prefix) =>
                {
                    self.last = event.kv.mod_revision;
                    return Some(Ok((*event).clone()));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, prefix = %self.prefix, "watcher lagged; replaying from the log");
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_backend_passes_the_conformance_suite() -> anyhow_free::Result {
        let dir = tempfile::tempdir()?;
        let mut n = 0;
        crate::testing::run_all(|| {
            n += 1;
            SqliteStore::open(&dir.path().join(format!("state-{n}.db")))
        })
        .await;
        Ok(())
    }

    #[tokio::test]
    async fn history_and_revisions_survive_reopen() -> anyhow_free::Result {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        let (created, updated) = {
            let store = SqliteStore::open(&path)?;
            let created = store.create("/a", Bytes::from_static(b"1")).await?;
            let updated = store
                .update("/a", created.mod_revision, Bytes::from_static(b"2"))
                .await?;
            (created, updated)
        };
        let store = SqliteStore::open(&path)?;
        assert_eq!(store.current_revision().await?, updated.mod_revision);
        let kv = store.get("/a").await?.ok_or("missing key")?;
        assert_eq!(kv.mod_revision, updated.mod_revision);
        assert_eq!(kv.create_revision, created.mod_revision);
        let next = store.create("/b", Bytes::from_static(b"3")).await?;
        assert_eq!(next.mod_revision, updated.mod_revision + 1);
        Ok(())
    }

    /// Tests return errors instead of unwrapping, without pulling in anyhow.
    mod anyhow_free {
        pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
    }
}
