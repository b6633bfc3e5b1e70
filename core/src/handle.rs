//! Feature handles and batched lookups: a feature key resolved once into a small `Copy` value that
//! stays correct across snapshot swaps, and lookups of many customers (or many features) in one call
//! that overlap their cache misses.
//!
//! A [`FeatureHandle`] holds the feature's index in the feature list it was resolved against, the
//! identity of that list (a fingerprint of the keys in order, computed once when a snapshot loads)
//! and the number of its key in a process-wide table of keys. A lookup compares the list identity
//! with the current snapshot's: equal, it indexes the table directly; different (a snapshot that
//! added, removed, renamed or reordered features), it looks the key up again by its number, so a
//! handle always answers for its own key and never for another feature. The key table only grows;
//! reads are lock-free, and adding a key takes a fork-safe lock.

use std::cell::Cell as StdCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::hash::key_hash;
use crate::model::{Cell, Decision};
use crate::snapshot::profiles::active_epoch;
use crate::store::PidLock;
use crate::view::{not_found, unix_now, ProfileRef, View};

/// A feature key resolved once: pass it instead of the key to skip hashing and probing the feature
/// table on every lookup.
///
/// It stays valid for the life of the process and across every snapshot swap and delta: when the
/// current snapshot's feature list is the one it was resolved against, a lookup uses the stored index;
/// otherwise the key is found again (about as costly as a lookup by key), so a renumbered feature
/// still answers for itself, and a feature that no longer exists answers
/// [`Reason::FeatureNotFound`](crate::Reason::FeatureNotFound). A handle resolved for a key that is
/// not (yet) in the snapshot answers `FeatureNotFound` until a snapshot has it. Resolve again after
/// a swap that changed the feature list to get the direct path back.
///
/// # Examples
/// ```
/// use entitle_core::{Engine, Limit, Reason};
/// let engine = Engine::from_catalog_json(br#"{
///   "features": [{"key": "sso", "type": "flag"}, {"key": "projects", "type": "limit", "default": 3}],
///   "products": [{"id": "pro", "features": {"sso": true, "projects": 50}}],
///   "customers": [{"id": "cus_A", "subscriptions": [
///     {"id": "s", "status": "active", "items": [{"product": "pro"}]}]}]
/// }"#)?;
/// let sso = engine.feature("sso")?;
/// let projects = engine.feature("projects")?;
/// assert!(engine.check_feature("cus_A", sso).enabled());
/// assert_eq!(engine.check_feature("cus_B", projects).limit(), Some(Limit::Finite(3)));
///
/// // Many customers, one feature: their memory loads overlap.
/// let answers = engine.check_customers(sso, &["cus_A", "cus_B"]);
/// assert_eq!(answers.iter().map(|d| d.enabled()).collect::<Vec<_>>(), [true, false]);
///
/// // A snapshot that drops `sso` and reorders the rest: the handles follow their keys.
/// engine.replace(entitle_core::Snapshot::build(
///     &entitle_core::Catalog::from_json(br#"{"features": [
///         {"key": "projects", "type": "limit", "default": 7}]}"#)?,
///     Default::default(),
/// )?);
/// assert_eq!(engine.check_feature("cus_A", sso).reason, Reason::FeatureNotFound);
/// assert_eq!(engine.check_feature("cus_A", projects).limit(), Some(Limit::Finite(7)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureHandle {
    table: u64,
    index: u32,
    key: u32,
}

/// The index a handle holds for a key that was not in the feature list it was resolved against.
const ABSENT: u32 = u32::MAX;

impl FeatureHandle {
    /// The handle's parts `(table, index, key)`, for carrying it through another language's value
    /// type (the C ABI's `entitle_feature`). Opaque numbers: only [`FeatureHandle::from_parts`]
    /// reads them.
    pub fn to_parts(self) -> (u64, u32, u32) {
        (self.table, self.index, self.key)
    }

    /// A handle from the parts [`FeatureHandle::to_parts`] gave. Parts that did not come from a
    /// handle (for example all zero) make a handle that answers `FeatureNotFound`; they never cause
    /// a panic or an out-of-bounds read.
    pub fn from_parts(table: u64, index: u32, key: u32) -> FeatureHandle {
        FeatureHandle { table, index, key }
    }

    /// The feature key this handle stands for (`None` for parts that came from no handle).
    pub fn key(self) -> Option<&'static [u8]> {
        keys::get(self.key)
    }
}

/// Why a feature key could not be resolved into a handle: the process already holds
/// [`MAX_FEATURE_KEYS`] distinct keys (handles are meant for the features an application knows at
/// start-up, not for keys taken from requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyFeatureKeys;

impl fmt::Display for TooManyFeatureKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "too many distinct feature keys resolved into handles (the limit is {MAX_FEATURE_KEYS})"
        )
    }
}

impl std::error::Error for TooManyFeatureKeys {}

/// How many distinct feature keys a process can resolve into handles.
pub const MAX_FEATURE_KEYS: usize = keys::CHUNKS * keys::CHUNK - 1;

/// The process-wide table of keys that handles name by number (numbers start at 1; 0 names none).
mod keys {
    use super::*;

    pub(super) const CHUNK: usize = 1024;
    pub(super) const CHUNKS: usize = 64;

    type Chunk = Box<[OnceLock<Box<[u8]>>]>;
    #[allow(clippy::declare_interior_mutable_const)] // only used to initialize `TABLE`
    const NO_CHUNK: OnceLock<Chunk> = OnceLock::new();
    /// Key number `n` lives in `TABLE[n / CHUNK][n % CHUNK]`; chunks are made on first use.
    static TABLE: [OnceLock<Chunk>; CHUNKS] = [NO_CHUNK; CHUNKS];
    /// Key → number, for resolving; its length is the last number handed out.
    static NUMBERS: PidLock<Option<HashMap<Box<[u8]>, u32>>> = PidLock::new(None);

    /// The key with number `n`: lock-free (two acquire loads).
    #[inline]
    pub(super) fn get(n: u32) -> Option<&'static [u8]> {
        let n = n as usize;
        let chunk = TABLE.get(n / CHUNK)?.get()?;
        chunk.get(n % CHUNK)?.get().map(|k| &**k)
    }

    /// The number of `key`, adding it if it is new.
    pub(super) fn intern(key: &[u8]) -> Result<u32, TooManyFeatureKeys> {
        // Only a thread of the parent process can be holding the lock in a forked child (it does
        // not exist there): free it, as no thread of this process can hold it yet at that point.
        NUMBERS.release_foreign();
        let mut numbers = NUMBERS.lock();
        let numbers = numbers.get_or_insert_with(HashMap::new);
        if let Some(&n) = numbers.get(key) {
            return Ok(n);
        }
        let n = numbers.len() + 1;
        if n > MAX_FEATURE_KEYS {
            return Err(TooManyFeatureKeys);
        }
        let chunk = TABLE[n / CHUNK].get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        // Numbers are handed out once each, under the lock, so the entry is empty.
        let _ = chunk[n % CHUNK].set(key.into());
        let n = n as u32;
        numbers.insert(key.into(), n);
        Ok(n)
    }
}

/// A batch's customer ids, read by position: a slice of strings or byte strings, or [`PackedIds`].
pub trait CustomerIds {
    /// The number of ids.
    fn count(&self) -> usize;
    /// The id at position `i` (below `count()`).
    fn id(&self, i: usize) -> &[u8];
}

impl<C: AsRef<[u8]>> CustomerIds for [C] {
    #[inline(always)]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn id(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

impl<C: AsRef<[u8]>, const N: usize> CustomerIds for [C; N] {
    #[inline(always)]
    fn count(&self) -> usize {
        N
    }
    #[inline(always)]
    fn id(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

impl<C: AsRef<[u8]>> CustomerIds for Vec<C> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn id(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

/// Customer ids packed end to end in one buffer: id `i` is `bytes[ends[i - 1]..ends[i]]` (from 0
/// for the first). The shape the C ABI's batch calls take, and a cheap one to build.
///
/// # Examples
/// ```
/// use entitle_core::{CustomerIds, PackedIds};
/// let ids = PackedIds::new(b"cus_Acus_B", &[5, 10]).unwrap();
/// assert_eq!(ids.id(1), b"cus_B");
/// assert!(PackedIds::new(b"cus_A", &[6]).is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PackedIds<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl<'a> PackedIds<'a> {
    /// The ids in `bytes` ending at `ends`; `None` unless the ends never decrease and the last is
    /// within `bytes`.
    pub fn new(bytes: &'a [u8], ends: &'a [usize]) -> Option<PackedIds<'a>> {
        let mut prev = 0;
        for &e in ends {
            if e < prev {
                return None;
            }
            prev = e;
        }
        (prev <= bytes.len()).then_some(PackedIds { bytes, ends })
    }
}

impl CustomerIds for PackedIds<'_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.ends.len()
    }
    #[inline(always)]
    fn id(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// How far ahead of the customer being searched a batch hashes and prefetches: enough to keep the
/// memory system busy (misses overlap up to the core's fill buffers), few enough that the
/// prefetched lines are still in L1 when they are used.
const AHEAD: usize = 16;

/// The evaluation time of a batch: fixed, or "now", read from the clock at most once per batch and
/// only if a customer's answers depend on it.
struct Clock {
    at: StdCell<Option<i64>>,
}

impl Clock {
    fn new(at: Option<i64>) -> Clock {
        Clock {
            at: StdCell::new(at),
        }
    }

    #[inline]
    fn get(&self) -> i64 {
        match self.at.get() {
            Some(at) => at,
            None => {
                let now = unix_now();
                self.at.set(Some(now));
                now
            }
        }
    }
}

impl View {
    /// Resolves `key` into a handle for lookups in this view and in every later one.
    ///
    /// # Errors
    /// [`TooManyFeatureKeys`] once the process holds [`MAX_FEATURE_KEYS`] distinct keys.
    pub fn feature(&self, key: impl AsRef<[u8]>) -> Result<FeatureHandle, TooManyFeatureKeys> {
        let key = key.as_ref();
        let number = keys::intern(key)?;
        let index = self.base.feature(key).map_or(ABSENT, |f| f as u32);
        Ok(FeatureHandle {
            table: self.base.feature_table(),
            index,
            key: number,
        })
    }

    /// The index of the handle's feature in this view, or `None` when it is not in it.
    #[inline(always)]
    pub(crate) fn feature_index(&self, feature: FeatureHandle) -> Option<usize> {
        if feature.table == self.base.feature_table() {
            let f = feature.index as usize;
            // A handle resolved for an absent key holds `ABSENT`, above any feature count.
            return (f < self.base.feature_count()).then_some(f);
        }
        self.resolve_again(feature)
    }

    /// The slow path of [`View::feature_index`]: the feature list changed since the handle was
    /// resolved, so find its key again.
    #[cold]
    #[inline(never)]
    fn resolve_again(&self, feature: FeatureHandle) -> Option<usize> {
        self.base.feature(keys::get(feature.key)?)
    }

    /// Evaluates the handle's feature for `customer` at unix time `at`; the same answer as
    /// [`View::check_at`] with the handle's key.
    #[inline(always)]
    pub fn check_feature_at(
        &self,
        customer: impl AsRef<[u8]>,
        feature: FeatureHandle,
        at: i64,
    ) -> Decision {
        self.check_index(customer.as_ref(), self.feature_index(feature), || at)
    }

    /// Evaluates the handle's feature for `customer` now (the clock is read only when the
    /// customer's answers change over time).
    #[inline(always)]
    pub fn check_feature(&self, customer: impl AsRef<[u8]>, feature: FeatureHandle) -> Decision {
        self.check_index(customer.as_ref(), self.feature_index(feature), unix_now)
    }

    /// Evaluates one feature for many customers at `at` (`None`: now), calling `out(i, decision)`
    /// for each customer in order. Customers are taken in groups whose memory loads are all issued
    /// before the first is used, so that the cache misses of a group overlap instead of adding up.
    pub fn check_customers_at(
        &self,
        feature: FeatureHandle,
        customers: &(impl CustomerIds + ?Sized),
        at: Option<i64>,
        mut out: impl FnMut(usize, Decision),
    ) {
        let n = customers.count();
        let Some(f) = self.feature_index(feature) else {
            for i in 0..n {
                out(i, Decision::feature_not_found(self.version));
            }
            return;
        };
        let clock = Clock::new(at);
        // A rolling window: while customer `i` is searched, the slot of customer `i + AHEAD` is
        // already being fetched, so that misses stay in flight all along the batch instead of
        // draining at the end of each group.
        let mut hashes = [0u64; AHEAD];
        for (i, h) in hashes.iter_mut().enumerate().take(n) {
            *h = key_hash(customers.id(i));
            self.base.prefetch_customer(*h);
        }
        for i in 0..n {
            let h = hashes[i % AHEAD];
            if i + AHEAD < n {
                let next = key_hash(customers.id(i + AHEAD));
                self.base.prefetch_customer(next);
                hashes[i % AHEAD] = next;
            }
            out(i, self.check_hashed(customers.id(i), h, f, || clock.get()));
        }
    }

    /// Evaluates many features for one customer at `at` (`None`: now), calling `out(i, decision)`
    /// for each handle in order: the customer is found once.
    pub fn check_features_at(
        &self,
        customer: impl AsRef<[u8]>,
        features: &[FeatureHandle],
        at: Option<i64>,
        mut out: impl FnMut(usize, Decision),
    ) {
        let clock = Clock::new(at);
        let cells: Option<&[Cell]> = self.profile(customer.as_ref()).map(|p| match p {
            ProfileRef::Base(set, p) => {
                let mut table = set.single[p as usize];
                if table == u32::MAX {
                    table = active_epoch(set.epochs_of(p), clock.get());
                }
                set.table(table)
            }
            ProfileRef::Owned(o) => o.cells_at(|| clock.get()),
        });
        let defs = self.base.feature_defs();
        for (i, &h) in features.iter().enumerate() {
            let d = match self.feature_index(h) {
                Some(f) => {
                    let def = &defs[f];
                    let cell = cells.map_or_else(|| not_found(def.default), |c| c[f]);
                    Decision::new(def.kind, cell, self.version)
                }
                None => Decision::feature_not_found(self.version),
            };
            out(i, d);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::diff;

    use crate::catalog::test_snapshot as snapshot;

    #[test]
    fn batches_answer_as_single_lookups_including_overlay_and_unknown_customers() {
        let base = crate::synth::catalog_json(300, 7);
        let base_snap = snapshot(&base, 1);
        // A delta that moves some customers to another plan and removes none: they live in the
        // overlay of the applied view.
        let changed = base.replacen(r#""product": "prod_free""#, r#""product": "prod_pro""#, 40);
        let target = snapshot(&changed, 2);
        let delta = diff(&base_snap, &target).unwrap();
        let view = View::from(base_snap).apply(&delta).unwrap();
        assert!(view.overlay_len() > 0, "the delta should leave an overlay");

        let mut ids: Vec<String> = view
            .base
            .customers()
            .map(|(id, _)| String::from_utf8(id.to_vec()).unwrap())
            .collect();
        ids.extend((0..50).map(|i| format!("cus_unknown_{i}")));
        ids.push(String::new());
        ids.push("an id that is longer than nineteen bytes".into());
        let features: Vec<String> = view.features().map(|f| f.key.to_owned()).collect();
        assert!(features.len() > 2);
        for key in features
            .iter()
            .map(String::as_str)
            .chain(["no_such_feature"])
        {
            let h = view.feature(key).unwrap();
            let mut got = vec![None; ids.len()];
            view.check_customers_at(h, &ids[..], Some(1_700_000_000), |i, d| got[i] = Some(d));
            for (id, d) in ids.iter().zip(&got) {
                assert_eq!(
                    *d,
                    Some(view.check_at(id, key, 1_700_000_000)),
                    "{id} / {key}"
                );
            }
        }
        let handles: Vec<FeatureHandle> = features
            .iter()
            .map(|k| view.feature(k).unwrap())
            .chain([view.feature("no_such_feature").unwrap()])
            .collect();
        for id in ids.iter().step_by(7) {
            let mut got = Vec::new();
            view.check_features_at(id, &handles, Some(0), |i, d| got.push((i, d)));
            assert_eq!(got.len(), handles.len());
            for (i, d) in got {
                let key = features.get(i).map_or("no_such_feature", String::as_str);
                assert_eq!(d, view.check_at(id, key, 0), "{id} / {key}");
            }
        }
    }

    #[test]
    fn packed_ids_reject_ends_that_decrease_or_overrun() {
        assert!(PackedIds::new(b"abc", &[]).is_some());
        assert!(PackedIds::new(b"abc", &[1, 1, 3]).is_some());
        assert!(PackedIds::new(b"abc", &[2, 1]).is_none());
        assert!(PackedIds::new(b"abc", &[4]).is_none());
        let ids = PackedIds::new(b"abc", &[1, 1, 3]).unwrap();
        assert_eq!(
            (ids.id(0), ids.id(1), ids.id(2)),
            (&b"a"[..], &b""[..], &b"bc"[..])
        );
    }
}
