//! The compact binary snapshot: what applications load and look up in. See `docs/FORMAT.md` and the
//! byte diagram in [the `format` module](mod@format).

pub(crate) mod build;
pub mod format;
pub(crate) mod profiles;

use std::fmt;

use self::build::{Builder, FeatureDef};
use self::format::*;
use self::profiles::ProfileSet;
use crate::catalog::{Catalog, Scratch};
use crate::hash::{home_slot, key_hash, xxh64};
use crate::model::{Cell, FeatureType, Value, MAX_LIMIT, RAW_UNLIMITED};

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
    /// Compiles a validated catalog into a snapshot. Deterministic: the same catalog and options give
    /// the same bytes.
    ///
    /// # Errors
    /// [`FormatError::TooLarge`] when the catalog exceeds the format's limits.
    pub fn build(catalog: &Catalog, options: BuildOptions) -> Result<Snapshot, FormatError> {
        let mut b = Builder::new(feature_defs(catalog));
        b.reserve(catalog.customers().len());
        let mut scratch = Scratch::default();
        for c in catalog.customers() {
            let times = Catalog::boundaries(c);
            let p = if times.is_empty() {
                // Most customers: answers never change with time, one epoch, no allocation.
                catalog.evaluate_into(c, i64::MIN, &mut scratch);
                b.profile([(i64::MIN, scratch.cells.as_slice())])
            } else {
                let mut epochs = vec![(i64::MIN, catalog.evaluate(c, i64::MIN))];
                for t in times {
                    epochs.push((t, catalog.evaluate(c, t)));
                }
                b.profile(epochs.iter().map(|(s, cells)| (*s, cells.as_slice())))
            };
            b.customer(c.id.as_bytes(), p);
        }
        Snapshot::from_bytes(b.finish(options.version, options.created_at)?)
    }

    /// Decodes and validates snapshot bytes. After this succeeds, lookups never re-check.
    ///
    /// # Errors
    /// A [`FormatError`] saying what is wrong; untrusted bytes never panic.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Snapshot, FormatError> {
        let bytes = bytes.into_boxed_slice();
        let h = Header::read(&bytes, SNAPSHOT_MAGIC, "snapshot", SNAPSHOT_FORMAT_VERSION)?;
        let mut r = Reader::new(&bytes[HEADER_LEN..bytes.len() - 8]);
        let f_count = h.count(40)?;
        let fs_count = h.count(44)?;
        let t_count = h.count(48)?;
        let e_count = h.count(52)?;
        let p_count = h.count(56)?;
        let n = h.count(60)?;
        let s_count = h.count(64)?;
        let strings_len = u32_at(&bytes, 68) as usize;
        if bytes[72..HEADER_LEN].iter().any(|&b| b != 0) {
            return Err(FormatError::invalid("reserved header bytes are not zero"));
        }

        let raw_features = r.take(f_count * FEATURE_REC, "features")?;
        let raw_fslots = r.take_padded(fs_count * 4, "feature slots")?;
        let mut raw_defs = Vec::with_capacity(f_count);
        for i in 0..f_count {
            let rec = &raw_features[i * FEATURE_REC..(i + 1) * FEATURE_REC];
            let kind = match rec[8] {
                0 => FeatureType::Flag,
                1 => FeatureType::Limit,
                k => return Err(FormatError::invalid(format!("feature {i} has type {k}"))),
            };
            let per_unit = match rec[9] {
                0 => false,
                1 if kind == FeatureType::Limit => true,
                _ => {
                    return Err(FormatError::invalid(format!(
                        "feature {i} has a bad per_unit"
                    )))
                }
            };
            let default = u64_at(rec, 16);
            let default_ok = match kind {
                FeatureType::Flag => default <= 1,
                FeatureType::Limit => default <= MAX_LIMIT || default == RAW_UNLIMITED,
            };
            if !default_ok || rec[10..16].iter().any(|&b| b != 0) {
                return Err(FormatError::invalid(format!("feature {i} is corrupt")));
            }
            raw_defs.push((
                u32_at(rec, 0) as usize,
                u32_at(rec, 4) as usize,
                kind,
                per_unit,
                default,
            ));
        }
        let kinds: Vec<FeatureType> = raw_defs.iter().map(|d| d.2).collect();
        let profiles = ProfileSet::read(&mut r, &kinds, t_count, e_count, p_count)?;
        let slots_at = HEADER_LEN + r.pos();
        r.take(
            s_count
                .checked_mul(SLOT_REC)
                .ok_or_else(|| FormatError::invalid("slot area overflows"))?,
            "customer slots",
        )?;
        let strings_at = HEADER_LEN + r.pos();
        let strings = r.take_padded(strings_len, "strings")?;
        if r.pos() != h.body_len {
            return Err(FormatError::invalid(
                "body length does not match its sections",
            ));
        }

        let mut features = Vec::with_capacity(f_count);
        for (i, &(off, len, kind, per_unit, default)) in raw_defs.iter().enumerate() {
            let key = off
                .checked_add(len)
                .and_then(|end| strings.get(off..end))
                .ok_or_else(|| FormatError::invalid(format!("feature {i} key is out of range")))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| FormatError::invalid(format!("feature {i} key is not UTF-8")))?;
            if key.is_empty() {
                return Err(FormatError::invalid(format!("feature {i} key is empty")));
            }
            features.push(FeatureDef {
                key: key.to_owned(),
                kind,
                per_unit,
                default,
            });
        }
        let feature_slots: Box<[u32]> = (0..fs_count).map(|s| u32_at(raw_fslots, s * 4)).collect();
        let feature_probes = feature_slots
            .iter()
            .map(|&slot| match features.get(slot as usize) {
                Some(f) => FeatureProbe {
                    index: slot,
                    len: f.key.len(),
                    head: pad16(f.key.as_bytes()),
                },
                // Out-of-range slots are rejected by validate_tables below.
                None => FeatureProbe {
                    index: EMPTY,
                    len: 0,
                    head: [0; 2],
                },
            })
            .collect();

        let (version, created_at, checksum) = (h.version, h.created_at, h.checksum);
        let feature_table = feature_table_id(features.iter().map(|f| f.key.as_str()));
        let mut snap = Snapshot {
            bytes,
            version,
            created_at,
            checksum,
            features: features.into(),
            feature_slots,
            feature_probes,
            profiles,
            feature_table,
            homes: Box::default(),
            customer_count: n,
            slots_at,
            slot_count: s_count,
            strings_at,
        };
        snap.validate_tables(strings_len)?;
        Ok(snap)
    }

    /// Checks the two hash tables: every entry well-formed, reachable from its home slot and unique,
    /// the counts right, and an empty slot present so that probing for an absent key always stops.
    fn validate_tables(&mut self, strings_len: usize) -> Result<(), FormatError> {
        let fcount = self.features.len();
        // Every slot is checked before any probe (a probe reads the slots after the one it starts
        // at), and each feature must sit in exactly one slot: the probe check below compares
        // feature numbers, so a feature stored twice could otherwise hide another one.
        let mut seen = vec![false; fcount];
        for (s, &f) in self.feature_slots.iter().enumerate() {
            if f == EMPTY {
                continue;
            }
            match seen.get_mut(f as usize) {
                Some(seen @ false) => *seen = true,
                _ => {
                    return Err(FormatError::invalid(format!(
                        "feature slot {s} is out of range or repeated"
                    )))
                }
            }
        }
        let mut used = 0;
        for (s, &slot) in self.feature_slots.iter().enumerate() {
            if slot == EMPTY {
                continue;
            }
            used += 1;
            let Some(f) = self.features.get(slot as usize) else {
                return Err(FormatError::invalid(format!(
                    "feature slot {s} is out of range"
                )));
            };
            if self.feature(f.key.as_bytes()) != Some(slot as usize) {
                return Err(FormatError::invalid(format!(
                    "feature `{}` is not found where it is stored",
                    f.key
                )));
            }
        }
        if used != fcount || used >= self.feature_slots.len() {
            return Err(FormatError::invalid("feature slot table is inconsistent"));
        }

        let p_count = self.profiles.profile_count();
        let mut used = 0;
        for s in 0..self.slot_count {
            let rec = self.slot(s);
            let profile = u32_at(rec, 0);
            if profile == EMPTY {
                if rec[4..].iter().any(|&b| b != 0) {
                    return Err(FormatError::invalid(format!(
                        "empty slot {s} is not zeroed"
                    )));
                }
                continue;
            }
            used += 1;
            if profile as usize >= p_count {
                return Err(FormatError::invalid(format!(
                    "slot {s} names a missing profile"
                )));
            }
            let len = rec[4] as usize;
            let well_formed = if rec[4] == LONG_ID {
                let (off, l) = (u32_at(rec, 8) as usize, u32_at(rec, 12) as usize);
                l > INLINE_ID_MAX
                    && off.checked_add(l).is_some_and(|end| end <= strings_len)
                    && rec[5..8].iter().all(|&b| b == 0)
                    && rec[16..].iter().all(|&b| b == 0)
            } else {
                len > 0 && len <= INLINE_ID_MAX && rec[5 + len..].iter().all(|&b| b == 0)
            };
            if !well_formed {
                return Err(FormatError::invalid(format!("slot {s} is corrupt")));
            }
            // Nearly every id is ASCII: checking that word by word is several times cheaper than
            // the general UTF-8 validation, which only the others need.
            let id = self.slot_id(rec);
            if !id.is_ascii() && std::str::from_utf8(id).is_err() {
                return Err(FormatError::invalid(format!("slot {s} id is not UTF-8")));
            }
        }
        if used != self.customer_count || used >= self.slot_count {
            return Err(FormatError::invalid("customer slot table is inconsistent"));
        }
        // Only now that every slot is well-formed (a probe reads the slots after its home) and an
        // empty slot exists (a probe for an absent id stops there) can probing be trusted.
        let mut homes = vec![0u64; self.slot_count.div_ceil(64)];
        for s in 0..self.slot_count {
            let rec = self.slot(s);
            if u32_at(rec, 0) == EMPTY {
                continue;
            }
            let id = self.slot_id(rec);
            let home = home_slot(key_hash(id), self.slot_count);
            if self.find_slot_from(id, home) != Some(s) {
                return Err(FormatError::invalid(format!(
                    "customer `{}` is not found where it is stored",
                    String::from_utf8_lossy(id)
                )));
            }
            homes[home / 64] |= 1 << (home % 64);
        }
        self.homes = homes.into();
        Ok(())
    }

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
        crate::handle::prefetch(self.bytes.as_ptr().wrapping_add(at));
        crate::handle::prefetch(self.bytes.as_ptr().wrapping_add(at + SLOT_REC - 1));
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

    #[inline(always)]
    fn slot(&self, s: usize) -> &[u8] {
        let at = self.slots_at + s * SLOT_REC;
        &self.bytes[at..at + SLOT_REC]
    }

    #[inline(always)]
    fn slot_id<'a>(&'a self, rec: &'a [u8]) -> &'a [u8] {
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
        let n = self.slot_count;
        let mut s = home;
        if id.len() <= INLINE_ID_MAX {
            // Compare the slot's (len, 19 id bytes) with the padded key as three fixed-size words:
            // no call to memcmp, no branch on the length.
            let mut want = [0u8; 20];
            want[0] = id.len() as u8;
            want[1..1 + id.len()].copy_from_slice(id);
            let (w0, w1, w2) = (u64_at(&want, 0), u64_at(&want, 8), u32_at(&want, 16));
            // Validation guarantees an empty slot, so this loop ends.
            loop {
                let rec = self.slot(s);
                if u32_at(rec, 0) == EMPTY {
                    return None;
                }
                if u64_at(rec, 4) == w0 && u64_at(rec, 12) == w1 && u32_at(rec, 20) == w2 {
                    return Some(s);
                }
                s += 1;
                if s == n {
                    s = 0;
                }
            }
        }
        loop {
            let rec = self.slot(s);
            if u32_at(rec, 0) == EMPTY {
                return None;
            }
            if rec[4] == LONG_ID && self.slot_id(rec) == id {
                return Some(s);
            }
            s += 1;
            if s == n {
                s = 0;
            }
        }
    }

    /// The profile of the customer with this id (`hash` is `key_hash(id)`).
    #[inline(always)]
    pub(crate) fn customer_profile(&self, id: &[u8], hash: u64) -> Option<u32> {
        let home = home_slot(hash, self.slot_count);
        // Nobody's home slot: the customer is absent, and the slot table need not be read.
        if self.homes[home / 64] & (1 << (home % 64)) == 0 {
            return None;
        }
        self.find_slot_from(id, home)
            .map(|s| u32_at(self.slot(s), 0))
    }
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

pub(crate) fn feature_defs(catalog: &Catalog) -> Vec<FeatureDef> {
    catalog
        .features()
        .iter()
        .map(|f| FeatureDef {
            key: f.key.clone(),
            kind: f.kind,
            per_unit: f.per_unit,
            default: f.default.to_raw(),
        })
        .collect()
}

/// The fixed part of a snapshot or delta header, checked in the order that gives the most useful
/// error: kind of file, format version, length, checksum.
pub(crate) struct Header<'a> {
    bytes: &'a [u8],
    pub(crate) version: u64,
    pub(crate) created_at: i64,
    pub(crate) body_len: usize,
    pub(crate) checksum: u64,
}

impl<'a> Header<'a> {
    pub(crate) fn read(
        bytes: &'a [u8],
        magic: &[u8; 8],
        what: &'static str,
        supported: u32,
    ) -> Result<Header<'a>, FormatError> {
        if bytes.len() < 8 || &bytes[..8] != magic {
            if bytes.len() < 8 && magic.starts_with(bytes) {
                return Err(FormatError::Truncated { what: "header" });
            }
            return Err(FormatError::BadMagic { expected: what });
        }
        if bytes.len() < 16 {
            return Err(FormatError::Truncated { what: "header" });
        }
        let found = u32_at(bytes, 8);
        if found != supported {
            return Err(FormatError::UnsupportedVersion { found, supported });
        }
        if bytes.len() < HEADER_LEN + 8 {
            return Err(FormatError::Truncated { what: "header" });
        }
        if u32_at(bytes, 12) as usize != HEADER_LEN {
            return Err(FormatError::invalid("unexpected header length"));
        }
        let body_len = u64_at(bytes, 32);
        let expected = (HEADER_LEN as u64 + 8).checked_add(body_len);
        match expected {
            Some(e) if e == bytes.len() as u64 => {}
            Some(e) if e > bytes.len() as u64 => {
                return Err(FormatError::Truncated { what: "body" })
            }
            None => return Err(FormatError::Truncated { what: "body" }),
            Some(_) => return Err(FormatError::invalid("trailing bytes after the checksum")),
        }
        let end = bytes.len() - 8;
        let stored = u64_at(bytes, end);
        let computed = xxh64(&bytes[..end], 0);
        if stored != computed {
            return Err(FormatError::ChecksumMismatch { stored, computed });
        }
        Ok(Header {
            bytes,
            version: u64_at(bytes, 16),
            created_at: u64_at(bytes, 24) as i64,
            body_len: body_len as usize,
            checksum: stored,
        })
    }

    pub(crate) fn count(&self, at: usize) -> Result<usize, FormatError> {
        let n = u32_at(self.bytes, at);
        if u64::from(n) > MAX_COUNT {
            return Err(FormatError::invalid(format!("count {n} is too large")));
        }
        Ok(n as usize)
    }
}
