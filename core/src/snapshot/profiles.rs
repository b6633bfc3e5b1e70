//! The profile sections shared by snapshots and deltas: tables of cells, epochs, and profiles.
//!
//! A *table* is one cell (value, reason) per feature. An *epoch* is a start time and a table. A
//! *profile* is a run of epochs with strictly increasing starts, the first starting at `i64::MIN`: at
//! time T the profile answers from its last epoch whose start is <= T. Customers with the same
//! subscriptions and overrides share one profile.

use super::format::{pad8, u32_at, u64_at, Reader, Writer, EMPTY, EPOCH_REC};
use super::FormatError;
use crate::hash::FastMap;
use crate::model::{Cell, FeatureType, Reason, MAX_LIMIT, RAW_UNLIMITED};

/// Decoded (or to-be-encoded) profile sections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProfileSet {
    pub(crate) feature_count: usize,
    /// The number of tables. Kept, not derived from `cells`: with no features every table is
    /// empty, yet epochs still name one.
    pub(crate) table_count: usize,
    /// `table_count × feature_count` cells, table-major.
    pub(crate) cells: Vec<Cell>,
    /// (start, table) per epoch.
    pub(crate) epochs: Vec<(i64, u32)>,
    /// `profile_count + 1` offsets into `epochs`.
    pub(crate) offsets: Vec<u32>,
    /// Per profile (filled by [`ProfileSet::read`]): its only table, or `u32::MAX` when it has
    /// several epochs. Saves the lookup two dependent loads for the common single-epoch profile.
    pub(crate) single: Vec<u32>,
}

impl ProfileSet {
    /// A set with no tables and no profiles, for features of `feature_count`.
    fn empty(feature_count: usize) -> ProfileSet {
        ProfileSet {
            feature_count,
            table_count: 0,
            cells: Vec::new(),
            epochs: Vec::new(),
            offsets: vec![0],
            single: Vec::new(),
        }
    }

    pub(crate) fn table_count(&self) -> usize {
        self.table_count
    }

    pub(crate) fn profile_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The table with this index.
    #[inline(always)]
    pub(crate) fn table(&self, t: u32) -> &[Cell] {
        let f = self.feature_count;
        let at = t as usize * f;
        &self.cells[at..at + f]
    }

    /// The epochs of profile `p`.
    #[inline(always)]
    pub(crate) fn epochs_of(&self, p: u32) -> &[(i64, u32)] {
        let p = p as usize;
        &self.epochs[self.offsets[p] as usize..self.offsets[p + 1] as usize]
    }

    /// The epochs of profile `p` with their tables: (start, cells) each.
    pub(crate) fn epoch_tables(&self, p: u32) -> Vec<(i64, &[Cell])> {
        self.epochs_of(p)
            .iter()
            .map(|&(start, t)| (start, self.table(t)))
            .collect()
    }

    /// The cell of feature `f` in profile `p` at the time `at()` gives (called only when needed).
    #[inline(always)]
    pub(crate) fn cell(&self, p: u32, f: usize, at: impl FnOnce() -> i64) -> Cell {
        let mut table = self.single[p as usize];
        if table == u32::MAX {
            table = active_epoch(self.epochs_of(p), at());
        }
        self.cells[table as usize * self.feature_count + f]
    }

    /// Bytes the sections take when written.
    pub(crate) fn encoded_len(&self) -> usize {
        self.cells.len() * 8
            + pad8(self.cells.len())
            + self.epochs.len() * EPOCH_REC
            + pad8(self.offsets.len() * 4)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for c in &self.cells {
            out.put_u64(c.raw);
        }
        out.extend(self.cells.iter().map(|c| c.reason as u8));
        out.pad8();
        for &(start, table) in &self.epochs {
            out.put_u64(start as u64);
            out.put_u32(table);
            out.put_u32(0);
        }
        for &o in &self.offsets {
            out.put_u32(o);
        }
        out.pad8();
    }

    /// Reads and validates the sections for features of the given types.
    pub(crate) fn read(
        r: &mut Reader<'_>,
        kinds: &[FeatureType],
        table_count: usize,
        epoch_count: usize,
        profile_count: usize,
    ) -> Result<ProfileSet, FormatError> {
        let f = kinds.len();
        let n_cells = table_count
            .checked_mul(f)
            .ok_or_else(|| FormatError::invalid("table size overflows"))?;
        let values = r.take(
            n_cells
                .checked_mul(8)
                .ok_or_else(|| FormatError::invalid("table size overflows"))?,
            "table values",
        )?;
        let reasons = r.take_padded(n_cells, "table reasons")?;
        let mut cells = Vec::with_capacity(n_cells);
        for i in 0..n_cells {
            let raw = u64_at(values, i * 8);
            let reason = match reasons[i] {
                0 => Reason::Default,
                1 => Reason::Subscription,
                2 => Reason::Override,
                other => {
                    return Err(FormatError::invalid(format!(
                        "table {} has reason code {other}",
                        i / f.max(1)
                    )))
                }
            };
            let ok = match kinds[i % f] {
                FeatureType::Flag => raw <= 1,
                FeatureType::Limit => raw <= MAX_LIMIT || raw == RAW_UNLIMITED,
            };
            if !ok {
                return Err(FormatError::invalid(format!(
                    "table {} holds an invalid value for feature {}",
                    i / f,
                    i % f
                )));
            }
            cells.push(Cell { raw, reason });
        }
        let raw_epochs = r.take(
            epoch_count
                .checked_mul(EPOCH_REC)
                .ok_or_else(|| FormatError::invalid("epoch size overflows"))?,
            "epochs",
        )?;
        let mut epochs = Vec::with_capacity(epoch_count);
        for e in 0..epoch_count {
            let at = e * EPOCH_REC;
            let start = u64_at(raw_epochs, at) as i64;
            let table = u32_at(raw_epochs, at + 8);
            if table as usize >= table_count || u32_at(raw_epochs, at + 12) != 0 {
                return Err(FormatError::invalid(format!("epoch {e} is corrupt")));
            }
            epochs.push((start, table));
        }
        // Writers number tables by first use, so every table is some epoch's and there are no more
        // tables than epochs. With no features tables take no bytes, and this is what bounds their
        // count (which `View::apply` allocates for).
        if table_count > epoch_count {
            return Err(FormatError::invalid("more tables than epochs"));
        }
        let raw_offsets = r.take_padded((profile_count + 1) * 4, "profile offsets")?;
        let offsets: Vec<u32> = (0..=profile_count)
            .map(|p| u32_at(raw_offsets, p * 4))
            .collect();
        if offsets[0] != 0 || offsets[profile_count] as usize != epoch_count {
            return Err(FormatError::invalid(
                "profile offsets do not cover the epochs",
            ));
        }
        for p in 0..profile_count {
            let (lo, hi) = (offsets[p] as usize, offsets[p + 1] as usize);
            if lo >= hi || hi > epoch_count {
                return Err(FormatError::invalid(format!("profile {p} has no epochs")));
            }
            if epochs[lo].0 != i64::MIN {
                return Err(FormatError::invalid(format!(
                    "profile {p} does not start at the beginning of time"
                )));
            }
            if epochs[lo..hi].windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(FormatError::invalid(format!(
                    "profile {p} has epochs out of order"
                )));
            }
        }
        let single = offsets
            .windows(2)
            .map(|w| {
                if w[1] - w[0] == 1 {
                    epochs[w[0] as usize].1
                } else {
                    u32::MAX
                }
            })
            .collect();
        Ok(ProfileSet {
            feature_count: f,
            table_count,
            cells,
            epochs,
            offsets,
            single,
        })
    }
}

/// Builds a [`ProfileSet`] from profiles given as (start, cells) epochs: the one place where equal
/// tables become one table and equal profiles one profile. Tables and profiles are numbered by first
/// use, so the same profiles given in the same order give the same set.
pub(crate) struct ProfileSetBuilder {
    set: ProfileSet,
    tables: FastMap<Box<[Cell]>, u32>,
    profiles: FastMap<Box<[(i64, u32)]>, u32>,
    canon: Vec<(i64, u32)>,
}

impl ProfileSetBuilder {
    pub(crate) fn new(feature_count: usize) -> ProfileSetBuilder {
        ProfileSetBuilder {
            set: ProfileSet::empty(feature_count),
            tables: FastMap::default(),
            profiles: FastMap::default(),
            canon: Vec::new(),
        }
    }

    /// The number of the table holding `cells`, adding it if it is new.
    fn table(&mut self, cells: &[Cell]) -> u32 {
        debug_assert_eq!(cells.len(), self.set.feature_count);
        if let Some(&t) = self.tables.get(cells) {
            return t;
        }
        let t = self.set.table_count as u32;
        self.set.cells.extend_from_slice(cells);
        self.set.table_count += 1;
        self.tables.insert(cells.into(), t);
        t
    }

    /// The number of the profile with these (start, cells) epochs, adding it if it is new. The first
    /// epoch must start at `i64::MIN` and starts must increase. Adjacent epochs with equal cells are
    /// merged, so equal behaviour gives one profile.
    pub(crate) fn profile<'c>(
        &mut self,
        epochs: impl IntoIterator<Item = (i64, &'c [Cell])>,
    ) -> u32 {
        let mut canon = std::mem::take(&mut self.canon);
        canon.clear();
        for (start, cells) in epochs {
            let t = self.table(cells);
            if canon.last().is_some_and(|&(_, last)| last == t) {
                continue;
            }
            canon.push((start, t));
        }
        let p = match self.profiles.get(canon.as_slice()) {
            Some(&p) => p,
            None => {
                let p = self.set.profile_count() as u32;
                self.set.epochs.extend_from_slice(&canon);
                self.set.offsets.push(self.set.epochs.len() as u32);
                self.profiles.insert(canon.as_slice().into(), p);
                p
            }
        };
        self.canon = canon;
        p
    }

    /// The set of every profile added.
    pub(crate) fn finish(self) -> ProfileSet {
        self.set
    }
}

/// Renumbers the profiles of a set in the order they are first asked for, with their tables in the
/// order of first use by them; profiles never asked for are left out.
pub(crate) struct Renumbering<'a> {
    from: &'a ProfileSet,
    profile_map: Vec<u32>,
    table_map: Vec<u32>,
    table_order: Vec<u32>,
    set: ProfileSet,
}

impl<'a> Renumbering<'a> {
    pub(crate) fn new(from: &'a ProfileSet) -> Renumbering<'a> {
        Renumbering {
            from,
            profile_map: vec![EMPTY; from.profile_count()],
            table_map: vec![EMPTY; from.table_count()],
            table_order: Vec::new(),
            set: ProfileSet::empty(from.feature_count),
        }
    }

    /// The new number of profile `old`.
    pub(crate) fn profile(&mut self, old: u32) -> u32 {
        let old = old as usize;
        if self.profile_map[old] == EMPTY {
            self.profile_map[old] = self.set.profile_count() as u32;
            for &(start, t) in self.from.epochs_of(old as u32) {
                if self.table_map[t as usize] == EMPTY {
                    self.table_map[t as usize] = self.table_order.len() as u32;
                    self.table_order.push(t);
                }
                self.set.epochs.push((start, self.table_map[t as usize]));
            }
            self.set.offsets.push(self.set.epochs.len() as u32);
        }
        self.profile_map[old]
    }

    /// The renumbered set.
    pub(crate) fn finish(mut self) -> ProfileSet {
        for &t in &self.table_order {
            self.set.cells.extend_from_slice(self.from.table(t));
        }
        self.set.table_count = self.table_order.len();
        self.set
    }
}

/// The table of the last epoch whose start is <= `at`. `epochs` is non-empty and starts at
/// `i64::MIN`, so there always is one.
#[inline]
pub(crate) fn active_epoch(epochs: &[(i64, u32)], at: i64) -> u32 {
    let mut table = epochs[0].1;
    for &(start, t) in &epochs[1..] {
        if start > at {
            break;
        }
        table = t;
    }
    table
}
