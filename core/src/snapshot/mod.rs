//! The compact binary snapshot: what applications load and look up in. See `docs/FORMAT.md` and the
//! byte diagram in [the `format` module](mod@format).

pub(crate) mod buffer;
pub(crate) mod build;
mod decode;
pub mod format;
pub(crate) mod profiles;

use std::fmt;

use self::build::FeatureDef;
use self::format::*;
use self::profiles::ProfileSet;
use crate::hash::{home_slot, key_hash, xxh64};
use crate::model::{Cell, FeatureType, Value};

/// Why bytes could not be read as a snapshot or a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes do not start with the expected magic: not this kind of file.
    BadMagic {
        /// What was expected: `"snapshot"` or `"delta"`.
        expected: &'static str,
    },
    /// A format version this build does not read (older or newer), as distinct from corruption.
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The bytes end before the named part does.
    Truncated {
        /// The part that is cut short.
        what: &'static str,
    },
    /// The checksum does not match the content: the bytes were damaged.
    ChecksumMismatch {
        /// The checksum stored in the file.
        stored: u64,
        /// The checksum of the bytes as read.
        computed: u64,
    },
    /// The structure is inconsistent (behind a valid checksum: written wrong, or forged).
    Invalid(String),
    /// The content exceeds what the format can address (2^31 entries, 4 GiB of strings).
    TooLarge,
}

impl FormatError {
    pub(crate) fn invalid(msg: impl Into<String>) -> FormatError {
        FormatError::Invalid(msg.into())
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::BadMagic { expected } => {
                write!(f, "not an entitle {expected} (bad magic bytes)")
            }
            FormatError::UnsupportedVersion { found, supported } => write!(
                f,
                "unsupported format version {found} (this build reads version {supported})"
            ),
            FormatError::Truncated { what } => write!(f, "truncated: the data ends inside the {what}"),
            FormatError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:016x}, computed {computed:016x}): the data is corrupt"
            ),
            FormatError::Invalid(msg) => write!(f, "corrupt data: {msg}"),
            FormatError::TooLarge => f.write_str("too large for the format"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Options for [`Snapshot::build`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// The content version stamped into the snapshot.
    pub version: u64,
    /// Creation time (unix seconds) stamped into the snapshot. Part of the bytes: keep it fixed for
    /// reproducible builds.
    pub created_at: i64,
}

/// A feature as a snapshot describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureInfo<'a> {
    /// The feature key.
    pub key: &'a str,
    /// Flag or limit.
    pub kind: FeatureType,
    /// The value for customers nothing grants more to.
    pub default: Value,
    /// Whether per-item quantities multiply the product values.
    pub per_unit: bool,
}

/// A validated, immutable snapshot held in memory. Cheap lookups, no allocation.
///
/// # Examples
/// ```
/// use entitle_core::{BuildOptions, Catalog, Snapshot};
/// let catalog = Catalog::from_json(br#"{"features":[{"key":"sso","type":"flag"}],
///   "customers":[{"id":"cus_A","overrides":{"sso":true}}]}"#)?;
/// let snap = Snapshot::build(&catalog, BuildOptions { version: 7, created_at: 0 })?;
/// let again = Snapshot::from_bytes(snap.as_bytes().to_vec())?;
/// assert_eq!(again.version(), 7);
/// assert_eq!(again.customer_count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Snapshot {
    bytes: Box<[u8]>,
    version: u64,
    created_at: i64,
    checksum: u64,
    features: Box<[FeatureDef]>,
    feature_slots: Box<[u32]>,
    /// `feature_slots` with each key's length and first 16 bytes beside it, so that finding a feature
    /// compares two words instead of calling memcmp.
    feature_probes: Box<[FeatureProbe]>,
    profiles: ProfileSet,
    /// Identifies the feature list (keys in order): see [`feature_table_id`].
    feature_table: u64,
    /// One bit per customer slot: whether it is some customer's home slot. Not part of the bytes:
    /// computed while loading validates every customer (which hashes each id anyway). A search
    /// whose home slot is nobody's home cannot find anything, so it stops before reading the slot
    /// table: with a load factor of 0.8, 1 - e^-0.8 = 55 % of slots are homes, so 45 % of searches
    /// for an absent customer end there, for 1 bit per slot (0.16 bytes per customer).
    homes: Box<[u64]>,
    customer_count: usize,
    slots_at: usize,
    slot_count: usize,
    strings_at: usize,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("checksum", &format_args!("{:016x}", self.checksum))
            .field("features", &self.features.len())
            .field("customers", &self.customer_count)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Snapshot {
    /// The snapshot's bytes, exactly as written (for persisting or publishing).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The creation time stamped at build (unix seconds).
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// The XXH64 checksum stored in the trailer (identifies the exact content).
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// The number of customers.
    pub fn customer_count(&self) -> usize {
        self.customer_count
    }

    /// The number of features.
    pub fn feature_count(&self) -> usize {
        self.features.len()
    }

    /// The number of distinct profiles (customers that behave alike share one).
    pub fn profile_count(&self) -> usize {
        self.profiles.profile_count()
    }

    /// The number of distinct tables (one cell per feature).
    pub fn table_count(&self) -> usize {
        self.profiles.table_count()
    }

    /// The number of epochs over all profiles.
    pub fn epoch_count(&self) -> usize {
        self.profiles.epochs.len()
    }

    /// The number of customer slots (the table's capacity).
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Memory held by this snapshot: its bytes plus the decoded small sections.
    pub fn heap_size(&self) -> usize {
        self.bytes.len()
            + self.profiles.cells.len() * std::mem::size_of::<Cell>()
            + self.profiles.epochs.len() * 16
            + self.profiles.offsets.len() * 4
            + self.feature_slots.len() * 4
            + self.homes.len() * 8
            + self
                .features
                .iter()
                .map(|f| f.key.len() + 64)
                .sum::<usize>()
    }

    /// The features in snapshot order.
    pub fn features(&self) -> impl ExactSizeIterator<Item = FeatureInfo<'_>> + '_ {
        self.features.iter().map(|f| FeatureInfo {
            key: &f.key,
            kind: f.kind,
            default: Value::from_raw(f.kind, f.default),
            per_unit: f.per_unit,
        })
    }

    /// Every customer id with its profile number, in slot order.
    pub fn customers(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        (0..self.slot_count).filter_map(move |s| {
            let rec = self.slot(s);
            let p = u32_at(rec, 0);
            (p != EMPTY).then(|| (self.slot_id(rec), p))
        })
    }

    pub(crate) fn feature_defs(&self) -> &[FeatureDef] {
        &self.features
    }

    pub(crate) fn profile_set(&self) -> &ProfileSet {
        &self.profiles
    }

    /// The identity of the feature list (keys in order), which feature handles compare against: equal
    /// identities mean equal lists, so an index resolved in one snapshot means the same feature in
    /// the other.
    #[inline(always)]
    pub(crate) fn feature_table(&self) -> u64 {
        self.feature_table
    }

    /// Starts loading the cache lines of the slot where the search for a customer with this hash
    /// starts, without waiting for them: a batch issues these for several customers, so that their
    /// cache misses overlap, before it searches.
    #[inline(always)]
    pub(crate) fn prefetch_customer(&self, hash: u64) {
        let at = self.slots_at + home_slot(hash, self.slot_count) * SLOT_REC;
        prefetch(self.bytes.as_ptr().wrapping_add(at));
        prefetch(self.bytes.as_ptr().wrapping_add(at + SLOT_REC - 1));
    }

    /// The index of the feature with this key.
    #[inline]
    pub(crate) fn feature(&self, key: &[u8]) -> Option<usize> {
        let n = self.feature_probes.len();
        let mut s = home_slot(key_hash(key), n);
        let head = pad16(key);
        loop {
            let p = &self.feature_probes[s];
            if p.index == EMPTY {
                return None;
            }
            if p.len == key.len()
                && p.head == head
                && (key.len() <= 16 || self.features[p.index as usize].key.as_bytes() == key)
            {
                return Some(p.index as usize);
            }
            s += 1;
            if s == n {
                s = 0;
            }
        }
    }

    /// The customer slot table as fixed-size records: indexing a record costs one bounds check,
    /// and reading a field of it none.
    #[inline(always)]
    fn slots(&self) -> &[[u8; SLOT_REC]] {
        // `from_bytes` took exactly `slot_count` records at `slots_at` from the bytes.
        self.bytes[self.slots_at..self.slots_at + self.slot_count * SLOT_REC]
            .as_chunks::<SLOT_REC>()
            .0
    }

    #[inline(always)]
    fn slot(&self, s: usize) -> &[u8; SLOT_REC] {
        &self.slots()[s]
    }

    #[inline(always)]
    fn slot_id<'a>(&'a self, rec: &'a [u8; SLOT_REC]) -> &'a [u8] {
        let len = rec[4];
        if len != LONG_ID {
            &rec[5..5 + len as usize]
        } else {
            let at = self.strings_at + u32_at(rec, 8) as usize;
            &self.bytes[at..at + u32_at(rec, 12) as usize]
        }
    }

    /// The slot of the customer `id` by linear probing from its home slot `home`.
    #[inline(always)]
    fn find_slot_from(&self, id: &[u8], home: usize) -> Option<usize> {
        find_in(self.slots(), id, home, |rec| self.slot_id(rec)).map(|(s, _)| s)
    }

    /// The profile of the customer with this id (`hash` is `key_hash(id)`).
    #[inline(always)]
    pub(crate) fn customer_profile(&self, id: &[u8], hash: u64) -> Option<u32> {
        let home = home_slot(hash, self.slot_count);
        // Nobody's home slot: the customer is absent, and the slot table need not be read.
        if self.homes[home / 64] & (1 << (home % 64)) == 0 {
            return None;
        }
        find_in(self.slots(), id, home, |rec| self.slot_id(rec)).map(|(_, rec)| u32_at(rec, 0))
    }
}

/// Linear probing in `slots` from `home` for the customer `id`: its slot number and record.
/// `long_id` gives the id of a record whose id lives in the string area. Validation guarantees an
/// empty slot, so the search ends.
#[inline(always)]
fn find_in<'a>(
    slots: &'a [[u8; SLOT_REC]],
    id: &[u8],
    home: usize,
    long_id: impl Fn(&'a [u8; SLOT_REC]) -> &'a [u8],
) -> Option<(usize, &'a [u8; SLOT_REC])> {
    let n = slots.len();
    let mut s = home;
    if let Some((w0, w1, w2)) = inline_id_words(id) {
        // Compare the slot's (len, 19 id bytes) with the padded key as three fixed-size words:
        // no call to memcmp, no branch on the length.
        loop {
            let rec = &slots[s];
            if u32_at(rec, 0) == EMPTY {
                return None;
            }
            if u64_at(rec, 4) == w0 && u64_at(rec, 12) == w1 && u32_at(rec, 20) == w2 {
                return Some((s, rec));
            }
            s += 1;
            if s == n {
                s = 0;
            }
        }
    }
    loop {
        let rec = &slots[s];
        if u32_at(rec, 0) == EMPTY {
            return None;
        }
        if rec[4] == LONG_ID && long_id(rec) == id {
            return Some((s, rec));
        }
        s += 1;
        if s == n {
            s = 0;
        }
    }
}

/// An inline id as a slot stores it — its length byte, then its bytes, zero-padded to 20 bytes —
/// as three little-endian words (`None` for an id too long to be inline). Computed from
/// fixed-size loads (overlapping ones, shifted, for the bytes past the end of a short id) rather
/// than a copy of variable length, which would call memcpy.
#[inline(always)]
fn inline_id_words(id: &[u8]) -> Option<(u64, u64, u32)> {
    let len = id.len();
    if len > INLINE_ID_MAX {
        return None;
    }
    let tag = len as u64;
    Some(if len >= 8 {
        // Bytes 8..16 of the record are id bytes 7..15, bytes 16..20 are id bytes 15..19.
        let w1 = if len >= 15 {
            u64_at(id, 7)
        } else {
            u64_at(id, len - 8) >> (8 * (15 - len))
        };
        let w2 = if len == INLINE_ID_MAX {
            u32_at(id, 15)
        } else if len >= 16 {
            u32_at(id, len - 4) >> (8 * (19 - len))
        } else {
            0
        };
        (tag | u64_at(id, 0) << 8, w1, w2)
    } else {
        let bytes = if len >= 4 {
            // Two overlapping loads; the bytes they share are the same.
            u64::from(u32_at(id, 0)) | u64::from(u32_at(id, len - 4)) << (8 * (len - 4))
        } else {
            id.iter()
                .enumerate()
                .fold(0, |v, (i, &b)| v | u64::from(b) << (8 * i))
        };
        (tag | bytes << 8, 0, 0)
    })
}

/// Starts loading the cache line at `p` without waiting for it. A hint: it never faults.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address; SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[derive(Clone, Copy, Debug)]
struct FeatureProbe {
    index: u32,
    len: usize,
    head: [u64; 2],
}

/// The identity of a feature list: XXH64 over each key's length and bytes, in order, never 0 (0 is
/// what a zero-initialized C handle holds, and must never match a snapshot).
///
/// Two different lists get the same identity with probability 2^-64 (feature lists come from the
/// publisher, not from requests, so nobody chooses them to collide).
pub(crate) fn feature_table_id<'a>(keys: impl Iterator<Item = &'a str>) -> u64 {
    let mut buf = Vec::new();
    for k in keys {
        buf.extend_from_slice(&(k.len() as u64).to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
    }
    xxh64(&buf, 0x656e_7469_746c_6566).max(1)
}

/// The first 16 bytes of `key`, zero-padded, as two words.
#[inline(always)]
fn pad16(key: &[u8]) -> [u64; 2] {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    [u64_at(&b, 0), u64_at(&b, 8)]
}

#[cfg(test)]
mod lookup_tests {
    use super::*;

    #[test]
    fn inline_id_words_match_the_padded_record_for_every_length() {
        let source: Vec<u8> = (1..=40u8).map(|b| b.wrapping_mul(37) | 1).collect();
        for len in 0..=INLINE_ID_MAX {
            let id = &source[3..3 + len];
            let mut want = [0u8; 20];
            want[0] = len as u8;
            want[1..1 + len].copy_from_slice(id);
            assert_eq!(
                inline_id_words(id),
                Some((u64_at(&want, 0), u64_at(&want, 8), u32_at(&want, 16))),
                "length {len}"
            );
        }
        assert_eq!(inline_id_words(&source[..INLINE_ID_MAX + 1]), None);
    }
}
