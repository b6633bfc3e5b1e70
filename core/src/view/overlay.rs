//! The overlay: customers added, changed or removed by deltas since the base snapshot, in a
//! copy-on-write hash table, and a reference to a customer's profile wherever it lives.

use std::sync::Arc;

use crate::model::Cell;
use crate::snapshot::profiles::{active_epoch, ProfileSet};

/// A customer profile carried by a delta: (start, cells) epochs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OwnedProfile {
    pub(crate) epochs: Box<[(i64, Arc<[Cell]>)]>,
}

impl OwnedProfile {
    /// The cells in force at `at` (the clock is read only when there are several epochs).
    #[inline]
    pub(crate) fn cells_at(&self, at: impl FnOnce() -> i64) -> &[Cell] {
        match &*self.epochs {
            [(_, only)] => only,
            epochs => {
                let at = at();
                let mut chosen = &epochs[0].1;
                for (start, cells) in &epochs[1..] {
                    if *start > at {
                        break;
                    }
                    chosen = cells;
                }
                chosen
            }
        }
    }

    #[inline]
    pub(super) fn cell(&self, f: usize, at: impl FnOnce() -> i64) -> Cell {
        self.cells_at(at)[f]
    }
}

/// One overlay entry: a customer added or changed (`Some`) or removed (`None`) since the base.
#[derive(Debug)]
pub(crate) struct OverlayEntry {
    pub(crate) hash: u64,
    pub(crate) id: Box<[u8]>,
    pub(crate) profile: Option<OwnedProfile>,
}

/// A copy-on-write open-addressed table of overlay entries (power-of-two capacity, linear probing).
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    slots: Vec<Option<Arc<OverlayEntry>>>,
    len: usize,
}

impl Overlay {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get(&self, hash: u64, id: &[u8]) -> Option<&Arc<OverlayEntry>> {
        if self.len == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut s = hash as usize & mask;
        while let Some(e) = &self.slots[s] {
            if e.hash == hash && &*e.id == id {
                return Some(e);
            }
            s = (s + 1) & mask;
        }
        None
    }

    pub(crate) fn insert(&mut self, entry: Arc<OverlayEntry>) {
        if (self.len + 1) * 2 > self.slots.len() {
            let cap = ((self.len + 1) * 2).next_power_of_two().max(16);
            let old = std::mem::replace(&mut self.slots, vec![None; cap]);
            self.len = 0;
            for e in old.into_iter().flatten() {
                self.insert(e);
            }
        }
        let mask = self.slots.len() - 1;
        let mut s = entry.hash as usize & mask;
        loop {
            match &self.slots[s] {
                Some(e) if e.hash == entry.hash && e.id == entry.id => {
                    self.slots[s] = Some(entry);
                    return;
                }
                Some(_) => s = (s + 1) & mask,
                None => {
                    self.slots[s] = Some(entry);
                    self.len += 1;
                    return;
                }
            }
        }
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Arc<OverlayEntry>> {
        self.slots.iter().flatten()
    }
}

/// A customer's profile wherever it lives.
#[derive(Clone, Copy)]
pub(crate) enum ProfileRef<'a> {
    Base(&'a ProfileSet, u32),
    Owned(&'a OwnedProfile),
}

impl<'a> ProfileRef<'a> {
    pub(crate) fn epochs(self) -> Vec<(i64, &'a [Cell])> {
        match self {
            ProfileRef::Base(set, p) => set.epoch_tables(p),
            ProfileRef::Owned(o) => o.epochs.iter().map(|(s, c)| (*s, &c[..])).collect(),
        }
    }

    /// The table in force at `at`.
    pub(crate) fn cells_at(self, at: i64) -> &'a [Cell] {
        match self {
            ProfileRef::Base(set, p) => set.table(active_epoch(set.epochs_of(p), at)),
            ProfileRef::Owned(o) => o.cells_at(|| at),
        }
    }
}
