//! A view: an immutable base snapshot plus a small overlay of customers changed by deltas since.
//!
//! Applying a delta never touches the base: it copies the overlay (small, bounded by compaction) and
//! inserts the changed customers, so its cost follows the delta, not the snapshot. Lookups consult the
//! overlay first (skipped entirely when it is empty), then the base.

use std::sync::Arc;

mod apply;
mod overlay;

pub(crate) use self::overlay::ProfileRef;
use self::overlay::{Overlay, OverlayEntry, OwnedProfile};
use crate::hash::key_hash;
use crate::model::{Cell, Decision, FeatureType, Reason};
use crate::snapshot::{FeatureInfo, Snapshot};

/// The current unix time in seconds.
pub fn unix_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// What evaluation runs against: a snapshot plus the deltas applied since. Immutable; a [`Store`]
/// swaps whole views.
///
/// [`Store`]: crate::Store
#[derive(Clone, Debug)]
pub struct View {
    // Only this module (and `apply`, which holds the overlay rules) writes these. Lookups elsewhere
    // in the crate (the batches of `handle`) read `base` and `version`.
    pub(crate) base: Arc<Snapshot>,
    overlay: Arc<Overlay>,
    pub(crate) version: u64,
    checksum: u64,
    created_at: i64,
    customer_count: usize,
}

impl From<Snapshot> for View {
    fn from(s: Snapshot) -> View {
        View::from(Arc::new(s))
    }
}

impl From<Arc<Snapshot>> for View {
    fn from(base: Arc<Snapshot>) -> View {
        View {
            version: base.version(),
            checksum: base.checksum(),
            created_at: base.created_at(),
            customer_count: base.customer_count(),
            overlay: Arc::default(),
            base,
        }
    }
}

impl View {
    /// The content version (of the last delta applied, or of the snapshot).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The checksum of the canonical snapshot this view is equivalent to.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// When the content was created (unix seconds), as stamped by its publisher.
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// The number of customers.
    pub fn customer_count(&self) -> usize {
        self.customer_count
    }

    /// The number of customers held in the overlay (changed since the base snapshot).
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// The base snapshot.
    pub fn base(&self) -> &Arc<Snapshot> {
        &self.base
    }

    /// The features in order.
    pub fn features(&self) -> impl ExactSizeIterator<Item = FeatureInfo<'_>> + '_ {
        self.base.features()
    }

    #[inline]
    pub(crate) fn profile(&self, id: &[u8]) -> Option<ProfileRef<'_>> {
        let hash = key_hash(id);
        if let Some(e) = self.overlay.get(hash, id) {
            return e.profile.as_ref().map(ProfileRef::Owned);
        }
        self.base
            .customer_profile(id, hash)
            .map(|p| ProfileRef::Base(self.base.profile_set(), p))
    }

    #[inline]
    fn check_with(&self, customer: &[u8], feature: &[u8], at: impl FnOnce() -> i64) -> Decision {
        self.check_index(customer, self.base.feature(feature), at)
    }

    /// Evaluates the feature with index `f` (`None`: not in this view) for `customer`.
    #[inline(always)]
    pub(crate) fn check_index(
        &self,
        customer: &[u8],
        f: Option<usize>,
        at: impl FnOnce() -> i64,
    ) -> Decision {
        match f {
            Some(f) => self.check_hashed(customer, key_hash(customer), f, at),
            None => Decision::feature_not_found(self.version),
        }
    }

    /// Evaluates feature `f` (an index below the feature count) for `customer`, whose
    /// `key_hash` is `hash`.
    #[inline(always)]
    pub(crate) fn check_hashed(
        &self,
        customer: &[u8],
        hash: u64,
        f: usize,
        at: impl FnOnce() -> i64,
    ) -> Decision {
        let def = &self.base.feature_defs()[f];
        let cell = if let Some(e) = self.overlay.get(hash, customer) {
            match &e.profile {
                Some(p) => p.cell(f, at),
                None => not_found(def.default),
            }
        } else {
            match self.base.customer_profile(customer, hash) {
                Some(p) => self.base.profile_set().cell(p, f, at),
                None => not_found(def.default),
            }
        };
        Decision::new(def.kind, cell, self.version)
    }

    /// Evaluates `feature` for `customer` now. The clock is read only when the customer's answers
    /// change over time (a `cancel_at` or an expiring override), so most lookups never read it.
    ///
    /// # Examples
    /// ```
    /// use entitle_core::{Catalog, Snapshot, View, BuildOptions};
    /// let c = Catalog::from_json(br#"{"features":[{"key":"seats","type":"limit","default":1}]}"#)?;
    /// let view = View::from(Snapshot::build(&c, BuildOptions::default())?);
    /// assert_eq!(view.check("cus_x", "seats").limit(), Some(entitle_core::Limit::Finite(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn check(&self, customer: impl AsRef<[u8]>, feature: impl AsRef<[u8]>) -> Decision {
        self.check_with(customer.as_ref(), feature.as_ref(), unix_now)
    }

    /// Evaluates `feature` for `customer` at unix time `at` (SPEC section 2).
    #[inline]
    pub fn check_at(
        &self,
        customer: impl AsRef<[u8]>,
        feature: impl AsRef<[u8]>,
        at: i64,
    ) -> Decision {
        self.check_with(customer.as_ref(), feature.as_ref(), || at)
    }

    /// Every feature's decision for one customer at `at`, in feature order.
    pub fn entitlements_at(
        &self,
        customer: impl AsRef<[u8]>,
        at: i64,
    ) -> impl ExactSizeIterator<Item = (FeatureInfo<'_>, Decision)> + '_ {
        let cells = self.profile(customer.as_ref()).map(|p| p.cells_at(at));
        let version = self.version;
        self.base.features().enumerate().map(move |(i, info)| {
            let cell = match cells {
                Some(cells) => cells[i],
                None => not_found(info.default.to_raw()),
            };
            (info, Decision::new(info.kind, cell, version))
        })
    }

    /// Calls `f` with every customer id and profile, in no particular order.
    pub(crate) fn for_each_customer(&self, mut f: impl FnMut(&[u8], ProfileRef<'_>)) {
        let set = self.base.profile_set();
        for (id, p) in self.base.customers() {
            if self.overlay.get(key_hash(id), id).is_none() {
                f(id, ProfileRef::Base(set, p));
            }
        }
        for e in self.overlay.entries() {
            if let Some(p) = &e.profile {
                f(&e.id, ProfileRef::Owned(p));
            }
        }
    }
}

#[inline(always)]
pub(crate) fn not_found(default: u64) -> Cell {
    Cell {
        raw: default,
        reason: Reason::CustomerNotFound,
    }
}

impl FeatureInfo<'_> {
    /// Whether this is a flag feature.
    pub fn is_flag(&self) -> bool {
        self.kind == FeatureType::Flag
    }
}
