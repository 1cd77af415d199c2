//! A small typed layer over redb: tables of JSON values keyed by strings.
//!
//! One database file holds every table of the daemon's metadata (images, tags, layers,
//! containers, volumes); each store names its own tables.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("metadata database: {0}")]
    Redb(String),
    #[error("metadata record {table}/{key} is corrupt")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self { DbError::Redb(e.to_string()) }
        }
    )*};
}
redb_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// How hard a commit must work to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning: the record survives a crash.
    Sync,
    /// Visible at once, written out with the next synced commit. For state that can be
    /// recomputed after a crash (for example from a monitor's exit file).
    Lazy,
}

pub struct Db {
    inner: redb::Database,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

fn def(table: &'static str) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table)
}

/// A batch of writes committed together.
pub struct Batch<'a> {
    txn: redb::WriteTransaction,
    _db: &'a Db,
}

impl Batch<'_> {
    pub fn put<T: Serialize>(&mut self, table: &'static str, key: &str, value: &T) -> Result<(), DbError> {
        let bytes = serde_json::to_vec(value).expect("metadata serializes");
        let mut t = self.txn.open_table(def(table))?;
        t.insert(key, bytes.as_slice())?;
        Ok(())
    }
    pub fn delete(&mut self, table: &'static str, key: &str) -> Result<(), DbError> {
        let mut t = self.txn.open_table(def(table))?;
        t.remove(key)?;
        Ok(())
    }
    pub fn commit(mut self, durability: Durability) -> Result<(), DbError> {
        if durability == Durability::Lazy {
            self.txn.set_durability(redb::Durability::None)?;
        }
        self.txn.commit()?;
        Ok(())
    }
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let inner = redb::Builder::new().set_cache_size(8 << 20).create(path)?;
        Ok(Db { inner })
    }

    /// Makes every earlier lazy commit durable.
    pub fn flush(&self) -> Result<(), DbError> {
        self.batch()?.commit(Durability::Sync)
    }

    pub fn batch(&self) -> Result<Batch<'_>, DbError> {
        Ok(Batch { txn: self.inner.begin_write()?, _db: self })
    }

    pub fn put<T: Serialize>(&self, table: &'static str, key: &str, value: &T, d: Durability) -> Result<(), DbError> {
        let mut b = self.batch()?;
        b.put(table, key, value)?;
        b.commit(d)
    }

    pub fn delete(&self, table: &'static str, key: &str) -> Result<(), DbError> {
        let mut b = self.batch()?;
        b.delete(table, key)?;
        b.commit(Durability::Sync)
    }

    pub fn get<T: DeserializeOwned>(&self, table: &'static str, key: &str) -> Result<Option<T>, DbError> {
        let txn = self.inner.begin_read()?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match t.get(key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|source| DbError::Corrupt {
                table,
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Every record of a table, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: &'static str) -> Result<Vec<(String, T)>, DbError> {
        self.list_raw(table)?
            .into_iter()
            .map(|(key, bytes)| match serde_json::from_slice(&bytes) {
                Ok(v) => Ok((key, v)),
                Err(source) => Err(DbError::Corrupt { table, key, source }),
            })
            .collect()
    }

    /// Every record of a table as stored, in key order (for callers that decode each record
    /// themselves, and keep going past one they cannot read).
    pub fn list_raw(&self, table: &'static str) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        let txn = self.inner.begin_read()?;
        let t = match txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.redb")).unwrap();
        assert_eq!(db.get::<String>("t", "a").unwrap(), None);
        db.put("t", "a", &"one".to_string(), Durability::Sync).unwrap();
        db.put("t", "b", &"two".to_string(), Durability::Lazy).unwrap();
        assert_eq!(db.get::<String>("t", "a").unwrap().as_deref(), Some("one"));
        let all = db.list::<String>("t").unwrap();
        assert_eq!(all.len(), 2);
        db.delete("t", "a").unwrap();
        assert_eq!(db.list::<String>("t").unwrap().len(), 1);
        drop(db);
        let db = Db::open(&dir.path().join("m.redb")).unwrap();
        assert_eq!(db.get::<String>("t", "b").unwrap().as_deref(), Some("two"));
    }
}
