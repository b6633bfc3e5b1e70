//! The overlay rules: applying a delta to a view, folding a view into a fresh snapshot, and carrying
//! a view's overlay over to the snapshot a compaction made. Every change to a view's overlay and
//! customer count goes through [`OverlayBuilder`], so the count is kept by one rule.

use std::sync::Arc;

use super::{Overlay, OverlayEntry, OwnedProfile, ProfileRef, View};
use crate::delta::{ApplyError, Body, Delta};
use crate::hash::key_hash;
use crate::model::Cell;
use crate::snapshot::build::Builder;
use crate::snapshot::{FormatError, Snapshot};

/// An overlay being written over `base`, with the customer count it gives.
struct OverlayBuilder<'a> {
    base: &'a Snapshot,
    overlay: Overlay,
    count: usize,
}

impl OverlayBuilder<'_> {
    /// Puts `entry` in the overlay (replacing the customer's earlier entry, if any) and counts the
    /// customer in or out: it was present if the overlay had it, else if the base has it.
    fn put(&mut self, entry: Arc<OverlayEntry>) {
        let was_present = match self.overlay.get(entry.hash, &entry.id) {
            Some(e) => e.profile.is_some(),
            None => self.base.customer_profile(&entry.id, entry.hash).is_some(),
        };
        self.count = (self.count + usize::from(entry.profile.is_some()))
            .saturating_sub(usize::from(was_present));
        self.overlay.insert(entry);
    }
}

impl View {
    /// Applies a delta, returning the new view; `self` is untouched. The cost follows the size of the
    /// delta and of the current overlay, never the size of the base snapshot.
    ///
    /// # Errors
    /// [`ApplyError::WrongBase`] when the delta was made for another base;
    /// [`ApplyError::FeatureMismatch`] when a patch was made over other features.
    pub fn apply(&self, delta: &Delta) -> Result<View, ApplyError> {
        if (self.version, self.checksum) != delta.base() {
            return Err(ApplyError::WrongBase {
                expected: delta.base(),
                found: (self.version, self.checksum),
            });
        }
        let patch = match delta.body() {
            Body::Full(snap) => return Ok(View::from(Arc::clone(snap))),
            Body::Patch(patch) => patch,
        };
        if !patch.fits(&self.base) {
            return Err(ApplyError::FeatureMismatch);
        }
        let profiles = patch.profiles();
        let tables: Vec<Arc<[Cell]>> = (0..profiles.table_count() as u32)
            .map(|t| Arc::from(profiles.table(t)))
            .collect();
        let mut owned: Vec<Option<Arc<OwnedProfileShared>>> = vec![None; profiles.profile_count()];
        let mut next = OverlayBuilder {
            base: &self.base,
            overlay: (*self.overlay).clone(),
            count: self.customer_count,
        };
        for (id, p) in patch.entries() {
            let profile = p.map(|p| {
                let shared = owned[p as usize].get_or_insert_with(|| {
                    Arc::new(OwnedProfileShared(
                        profiles
                            .epochs_of(p)
                            .iter()
                            .map(|&(start, t)| (start, Arc::clone(&tables[t as usize])))
                            .collect(),
                    ))
                });
                OwnedProfile {
                    epochs: shared.0.clone(),
                }
            });
            next.put(Arc::new(OverlayEntry {
                hash: key_hash(id),
                id: id.clone(),
                profile,
            }));
        }
        let (version, checksum) = delta.target();
        Ok(View {
            base: Arc::clone(&self.base),
            overlay: Arc::new(next.overlay),
            version,
            checksum,
            created_at: delta.target_created_at(),
            customer_count: next.count,
        })
    }

    /// Folds the overlay into a fresh canonical snapshot with this view's version. The result is
    /// byte-identical to building the same content from a catalog.
    ///
    /// # Errors
    /// [`FormatError::TooLarge`] past the format's limits; [`FormatError::ChecksumMismatch`] when the
    /// result is not the content the applied deltas promised.
    pub fn compact(&self) -> Result<Snapshot, FormatError> {
        let mut b = Builder::new(self.base.feature_defs().to_vec());
        b.reserve(self.customer_count);
        let mut base_map: Vec<u32> = vec![u32::MAX; self.base.profile_count()];
        let set = self.base.profile_set();
        for (id, p) in self.base.customers() {
            if self.overlay.get(key_hash(id), id).is_some() {
                continue;
            }
            let slot = &mut base_map[p as usize];
            if *slot == u32::MAX {
                *slot = b.profile(ProfileRef::Base(set, p).epochs());
            }
            b.customer(id, *slot);
        }
        for e in self.overlay.entries() {
            if let Some(p) = &e.profile {
                let pid = b.profile(ProfileRef::Owned(p).epochs());
                b.customer(&e.id, pid);
            }
        }
        let snap = Snapshot::from_bytes(b.finish(self.version, self.created_at)?)?;
        if snap.checksum() != self.checksum {
            return Err(FormatError::ChecksumMismatch {
                stored: self.checksum,
                computed: snap.checksum(),
            });
        }
        Ok(snap)
    }

    /// This view carried over to `snapshot`, the result of compacting `compacted` (an earlier view
    /// of the same content): the overlay entries added or replaced since `compacted` stay in the
    /// overlay, the others are in `snapshot` now. `None` when this view no longer shares
    /// `compacted`'s base (its content was replaced wholesale meanwhile, so the compaction is moot).
    pub(crate) fn over_compacted(&self, compacted: &View, snapshot: Arc<Snapshot>) -> Option<View> {
        if std::ptr::eq(self, compacted) {
            return Some(View::from(snapshot));
        }
        if !Arc::ptr_eq(&self.base, &compacted.base) {
            return None;
        }
        // Deltas landed while the compaction ran: keep the overlay entries they added or replaced.
        let mut next = OverlayBuilder {
            base: &snapshot,
            overlay: Overlay::default(),
            count: snapshot.customer_count(),
        };
        for e in self.overlay.entries() {
            let unchanged = compacted
                .overlay
                .get(e.hash, &e.id)
                .is_some_and(|old| Arc::ptr_eq(old, e));
            if !unchanged {
                next.put(Arc::clone(e));
            }
        }
        let (overlay, customer_count) = (next.overlay, next.count);
        Some(View {
            base: snapshot,
            overlay: Arc::new(overlay),
            version: self.version,
            checksum: self.checksum,
            created_at: self.created_at,
            customer_count,
        })
    }
}

/// Epochs shared by every entry of one delta that uses the same profile.
struct OwnedProfileShared(Box<[(i64, Arc<[Cell]>)]>);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{diff, BuildOptions, Catalog};

    /// A snapshot of one flag feature and customers with `sso` overridden to the given value.
    fn snapshot(customers: &[(&str, bool)], version: u64) -> Snapshot {
        let customers: Vec<String> = customers
            .iter()
            .map(|(id, sso)| format!(r#"{{"id": "{id}", "overrides": {{"sso": {sso}}}}}"#))
            .collect();
        let json = format!(
            r#"{{"features": [{{"key": "sso", "type": "flag"}}], "customers": [{}]}}"#,
            customers.join(",")
        );
        let catalog = Catalog::from_json(json.as_bytes()).unwrap();
        Snapshot::build(
            &catalog,
            BuildOptions {
                version,
                created_at: 0,
            },
        )
        .unwrap()
    }

    fn answers(view: &View) -> Vec<(bool, crate::Reason)> {
        ["c1", "c2", "c3", "c4", "c5"]
            .iter()
            .map(|id| {
                let d = view.check_at(id, "sso", 0);
                (d.enabled(), d.reason)
            })
            .collect()
    }

    #[test]
    fn a_compaction_carries_over_the_deltas_applied_while_it_ran() {
        let a = snapshot(&[("c1", false), ("c2", false), ("c3", true)], 1);
        let b = snapshot(
            &[("c1", true), ("c2", false), ("c3", true), ("c4", true)],
            2,
        );
        let c = snapshot(
            &[("c1", true), ("c3", false), ("c4", true), ("c5", true)],
            3,
        );
        let (ab, bc) = (diff(&a, &b).unwrap(), diff(&b, &c).unwrap());
        assert!(!ab.is_full() && !bc.is_full());

        // The compaction folds `v1` into a new base while `bc` lands on top of `v1`.
        let v1 = View::from(a).apply(&ab).unwrap();
        let folded = Arc::new(v1.compact().unwrap());
        assert_eq!(folded.as_bytes(), b.as_bytes());
        let v2 = v1.apply(&bc).unwrap();

        let carried = v2.over_compacted(&v1, Arc::clone(&folded)).unwrap();
        assert!(Arc::ptr_eq(carried.base(), &folded));
        assert_eq!(carried.overlay_len(), bc.change_count());
        assert_eq!(carried.customer_count(), c.customer_count());
        assert_eq!((carried.version(), carried.checksum()), (3, c.checksum()));
        assert_eq!(answers(&carried), answers(&View::from(Arc::new(c))));
        assert_eq!(carried.compact().unwrap().checksum(), v2.checksum());

        // Nothing landed meanwhile: the new base alone, no overlay.
        let alone = v1.over_compacted(&v1, Arc::clone(&folded)).unwrap();
        assert_eq!(alone.overlay_len(), 0);
        assert_eq!(alone.customer_count(), b.customer_count());
        assert_eq!(answers(&alone), answers(&v1));

        // The content was replaced wholesale meanwhile: the compaction is moot.
        let replaced = View::from(b);
        assert!(replaced.over_compacted(&v1, folded).is_none());
    }
}
