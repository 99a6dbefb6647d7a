//! Named databases: each is a [`Store`] of its own, kept in the default
//! database's store so that one value still holds, clones, snapshots and
//! replays a site's whole state.
//!
//! Keys of different databases never meet: each database has its own tree.
//! Ids are given out in increasing order and never reused, so a write for
//! a database that has since been removed cannot reach a later database of
//! the same name.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Store;
use crate::db::txn::{DbId, DbOpRef, DEFAULT_DB};

/// The named databases of a store. Shared by clones until one of them
/// changes a named database (copy-on-write, like the trees themselves).
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Catalog {
    /// The id the next database created gets.
    next_id: DbId,
    dbs: BTreeMap<DbId, NamedDb>,
}

#[derive(Clone, PartialEq, Eq)]
struct NamedDb {
    name: Box<[u8]>,
    store: Store,
}

impl Catalog {
    fn is_trivial(&self) -> bool {
        self.dbs.is_empty() && self.next_id <= 1
    }
}

/// A named database as a snapshot sees it: id, name, contents.
pub(crate) type NamedRef<'a> = (DbId, &'a [u8], &'a Store);

impl Store {
    /// The database `db` holds, if it exists ([`DEFAULT_DB`] is this store).
    pub fn database(&self, db: DbId) -> Option<&Store> {
        if db == DEFAULT_DB {
            return Some(self);
        }
        Some(&self.catalog.as_deref()?.dbs.get(&db)?.store)
    }

    /// The id of the database named `name`.
    pub fn database_id(&self, name: &[u8]) -> Option<DbId> {
        let cat = self.catalog.as_deref()?;
        cat.dbs
            .iter()
            .find(|(_, d)| &*d.name == name)
            .map(|(&id, _)| id)
    }

    /// The named databases, `(id, name)`, in id order.
    pub fn databases(&self) -> impl Iterator<Item = (DbId, &[u8])> + '_ {
        self.catalog
            .as_deref()
            .into_iter()
            .flat_map(|c| c.dbs.iter().map(|(&id, d)| (id, &*d.name)))
    }

    /// Number of named databases.
    pub fn database_count(&self) -> usize {
        self.catalog.as_deref().map_or(0, |c| c.dbs.len())
    }

    /// The id the next database created will get.
    pub fn next_database_id(&self) -> DbId {
        self.catalog.as_deref().map_or(1, |c| c.next_id.max(1))
    }

    /// The value of `key` in database `db`.
    pub fn get_in(&self, db: DbId, key: &[u8]) -> Option<&[u8]> {
        self.database(db)?.get(key)
    }

    fn catalog_mut(&mut self) -> &mut Catalog {
        Arc::make_mut(self.catalog.get_or_insert_with(|| {
            Arc::new(Catalog {
                next_id: 1,
                dbs: BTreeMap::new(),
            })
        }))
    }

    fn named_mut(&mut self, db: DbId) -> Option<&mut Store> {
        // Look before copying a catalog shared with a snapshot.
        self.catalog.as_deref()?.dbs.get(&db)?;
        Some(&mut self.catalog_mut().dbs.get_mut(&db)?.store)
    }

    /// Applies one op that is not a default-database key write. Every site
    /// applies the same ops in the same order, so what happens to an op
    /// that names a missing database (nothing) is the same everywhere.
    #[cold]
    pub(super) fn apply_db_op(&mut self, op: DbOpRef<'_>) {
        match op {
            DbOpRef::Put { db, key, value } => {
                if db == DEFAULT_DB {
                    self.put(key, value);
                } else if let Some(s) = self.named_mut(db) {
                    s.put(key, value);
                }
            }
            DbOpRef::Delete { db, key } => {
                if db == DEFAULT_DB {
                    self.delete(key);
                } else if let Some(s) = self.named_mut(db) {
                    s.delete(key);
                }
            }
            DbOpRef::CreateDb { id, name } => {
                if id == DEFAULT_DB || self.database(id).is_some() {
                    return;
                }
                if self.database_id(name).is_some() {
                    return;
                }
                let cat = self.catalog_mut();
                cat.next_id = cat.next_id.max(id.saturating_add(1));
                cat.dbs.insert(
                    id,
                    NamedDb {
                        name: name.into(),
                        store: Store::new(),
                    },
                );
            }
            DbOpRef::RemoveDb { id } => {
                if self.database(id).is_some() && id != DEFAULT_DB {
                    self.catalog_mut().dbs.remove(&id);
                }
            }
        }
    }

    /// Sets up the catalog read from a snapshot: `next_id` and the
    /// databases, each already filled.
    pub(crate) fn restore_catalog(&mut self, next_id: DbId, dbs: Vec<(DbId, Vec<u8>, Store)>) {
        let cat = self.catalog_mut();
        cat.next_id = next_id.max(1);
        for (id, name, store) in dbs {
            cat.dbs.insert(
                id,
                NamedDb {
                    name: name.into(),
                    store,
                },
            );
        }
    }

    /// The catalog, when it holds anything a snapshot must keep.
    pub(crate) fn catalog_for_snapshot(&self) -> Option<(DbId, Vec<NamedRef<'_>>)> {
        let cat = self.catalog.as_deref().filter(|c| !c.is_trivial())?;
        let dbs = cat
            .dbs
            .iter()
            .map(|(&id, d)| (id, &*d.name, &d.store))
            .collect();
        Some((cat.next_id, dbs))
    }

    /// Whether both stores have equal catalogs (none and an empty one are equal).
    pub(super) fn same_catalog(&self, other: &Store) -> bool {
        match (&self.catalog, &other.catalog) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
            (Some(c), None) | (None, Some(c)) => c.is_trivial(),
            (None, None) => true,
        }
    }
}
