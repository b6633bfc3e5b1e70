//! Deltas: the difference between two snapshots, named by the base it applies to.
//!
//! A *patch* delta lists the customers whose profile changed (with the new profile) or that were
//! removed; applying it to a [`View`](crate::View) copies only the view's overlay. When the feature
//! set differs, or a patch would be larger than the target snapshot, the delta is *full*: it carries
//! the whole target. Either way the delta names its base (version and checksum) and its target
//! (version, checksum, creation time), and applying it to any other base is refused.
//!
//! The header is in the byte diagram of `snapshot/format.rs` (fields
//! `OFF_DELTA_*`, `OFF_BASE_*`, `OFF_TARGET_CHECKSUM`); a patch's body (see also `docs/FORMAT.md`):
//!
//! ```text
//! u64           features fingerprint: XXH64 of (u32 key_len, key, u8 type, u8 per_unit, u64 default)*
//! F × u8        feature types                                                     padded to 8
//! tables, epochs, profile offsets: as in a snapshot, with the header's T, E, P
//! M × 16        entries {id_off u32, id_len u32, profile u32 (0xFFFFFFFF = removed), 0 u32}
//! L bytes       strings: the entries' ids                                         padded to 8
//! ```

use std::fmt;
use std::sync::Arc;

use crate::hash::{key_hash, xxh64};
use crate::model::FeatureType;
use crate::snapshot::build::FeatureDef;
use crate::snapshot::format::*;
use crate::snapshot::profiles::{ProfileSet, ProfileSetBuilder};
use crate::snapshot::{FormatError, Snapshot};

const KIND_PATCH: u32 = 0;
const KIND_FULL: u32 = 1;
const ENTRY_REC: usize = 16;

/// A delta refused by [`View::apply`](crate::View::apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// The delta was made for another base than the one it is applied to.
    WrongBase {
        /// The base (version, checksum) the delta names.
        expected: (u64, u64),
        /// The version and checksum it was applied to.
        found: (u64, u64),
    },
    /// The delta's features do not match the base's (a forged or mismatched patch).
    FeatureMismatch,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::WrongBase { expected, found } => write!(
                f,
                "delta is for base version {} (checksum {:016x}), not version {} (checksum {:016x})",
                expected.0, expected.1, found.0, found.1
            ),
            ApplyError::FeatureMismatch => {
                f.write_str("delta features do not match the base snapshot's features")
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// What a delta carries.
#[derive(Debug)]
pub(crate) enum Body {
    /// The whole target snapshot.
    Full(Arc<Snapshot>),
    /// The customers that changed.
    Patch(Patch),
}

/// The changed customers of a patch delta, with the profiles they now have.
#[derive(Debug)]
pub(crate) struct Patch {
    fingerprint: u64,
    kinds: Vec<FeatureType>,
    profiles: ProfileSet,
    /// Sorted, unique ids; `None` removes the customer.
    entries: Vec<(Box<[u8]>, Option<u32>)>,
}

impl Patch {
    /// Whether the patch was made over the features of `base` (same fingerprint, same types).
    pub(crate) fn fits(&self, base: &Snapshot) -> bool {
        self.fingerprint == features_fingerprint(base.feature_defs())
            && self
                .kinds
                .iter()
                .copied()
                .eq(base.features().map(|f| f.kind))
    }

    /// The profiles the entries name.
    pub(crate) fn profiles(&self) -> &ProfileSet {
        &self.profiles
    }

    /// Each changed customer with its new profile (`None`: removed), sorted by id.
    pub(crate) fn entries(&self) -> &[(Box<[u8]>, Option<u32>)] {
        &self.entries
    }
}

/// A validated delta. Create with [`diff`] or [`Delta::from_bytes`]; apply with
/// [`View::apply`](crate::View::apply).
///
/// # Examples
/// ```
/// use entitle_core::{diff, BuildOptions, Catalog, Snapshot, View};
/// let a = Catalog::from_json(br#"{"features":[{"key":"sso","type":"flag"}],"customers":[{"id":"c1"}]}"#)?;
/// let b = Catalog::from_json(br#"{"features":[{"key":"sso","type":"flag"}],"customers":[{"id":"c1","overrides":{"sso":true}}]}"#)?;
/// let old = Snapshot::build(&a, BuildOptions { version: 1, created_at: 0 })?;
/// let new = Snapshot::build(&b, BuildOptions { version: 2, created_at: 0 })?;
/// let delta = diff(&old, &new)?;
/// let view = View::from(old).apply(&delta)?;
/// assert!(view.check_at("c1", "sso", 0).enabled());
/// assert_eq!(view.checksum(), new.checksum());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Delta {
    bytes: Box<[u8]>,
    base_version: u64,
    base_checksum: u64,
    target_version: u64,
    target_checksum: u64,
    target_created_at: i64,
    body: Body,
}

/// A digest of a feature list: deltas carry it so a patch is applied only over the same features.
pub(crate) fn features_fingerprint(features: &[FeatureDef]) -> u64 {
    let mut buf = Vec::new();
    for f in features {
        buf.put_u32(f.key.len() as u32);
        buf.extend_from_slice(f.key.as_bytes());
        buf.push(f.kind as u8);
        buf.push(u8::from(f.per_unit));
        buf.put_u64(f.default);
    }
    xxh64(&buf, 0)
}

/// Computes the delta that turns `old` into `new`.
///
/// # Errors
/// [`FormatError::TooLarge`] past the format's limits.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Result<Delta, FormatError> {
    if old.feature_defs() != new.feature_defs() {
        return full(old, new);
    }
    let old_set = old.profile_set();
    let mut profiles = ProfileSetBuilder::new(new.feature_count());
    let mut entries: Vec<(&[u8], Option<u32>)> = Vec::new();
    let new_set = new.profile_set();
    let mut new_map = vec![u32::MAX; new.profile_count()];
    for (id, p) in new.customers() {
        let epochs = new_set.epoch_tables(p);
        let same = old
            .customer_profile(id, key_hash(id))
            .is_some_and(|o| old_set.epoch_tables(o) == epochs);
        if same {
            continue;
        }
        if new_map[p as usize] == u32::MAX {
            new_map[p as usize] = profiles.profile(epochs);
        }
        entries.push((id, Some(new_map[p as usize])));
    }
    let set = profiles.finish();
    for (id, _) in old.customers() {
        if new.customer_profile(id, key_hash(id)).is_none() {
            entries.push((id, None));
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let kinds: Vec<FeatureType> = new.features().map(|f| f.kind).collect();

    let mut strings = Vec::new();
    let mut recs = Vec::with_capacity(entries.len() * ENTRY_REC);
    for (id, p) in &entries {
        recs.put_u32(to_u32(strings.len())?);
        recs.put_u32(to_u32(id.len())?);
        recs.put_u32(p.unwrap_or(EMPTY));
        recs.put_u32(0);
        strings.extend_from_slice(id);
    }
    let mut body = Vec::new();
    body.put_u64(features_fingerprint(new.feature_defs()));
    body.extend(kinds.iter().map(|&k| k as u8));
    body.pad8();
    set.write(&mut body);
    body.extend_from_slice(&recs);
    body.extend_from_slice(&strings);
    body.pad8();
    if body.len() >= new.as_bytes().len() {
        return full(old, new);
    }
    let counts = [
        KIND_PATCH,
        to_u32(kinds.len())?,
        to_u32(set.table_count())?,
        to_u32(set.epochs.len())?,
        to_u32(set.profile_count())?,
        to_u32(entries.len())?,
        to_u32(strings.len())?,
    ];
    Delta::from_bytes(encode(old, new, counts, &body))
}

fn full(old: &Snapshot, new: &Snapshot) -> Result<Delta, FormatError> {
    Delta::from_bytes(encode(
        old,
        new,
        [KIND_FULL, 0, 0, 0, 0, 0, 0],
        new.as_bytes(),
    ))
}

/// The delta bytes: the header (`counts` from [`OFF_DELTA_KIND`] on), then `body`.
fn encode(old: &Snapshot, new: &Snapshot, counts: [u32; 7], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 8);
    write_header(
        &mut out,
        FileKind::Delta,
        new.version(),
        new.created_at(),
        body.len(),
    );
    debug_assert_eq!(out.len(), OFF_DELTA_KIND);
    for c in counts {
        out.put_u32(c);
    }
    debug_assert_eq!(out.len(), OFF_DELTA_RESERVED);
    out.put_u32(0);
    debug_assert_eq!(out.len(), OFF_BASE_VERSION);
    out.put_u64(old.version());
    out.put_u64(old.checksum());
    out.put_u64(new.checksum());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(body);
    write_checksum(&mut out);
    out
}

impl Delta {
    /// Decodes and validates delta bytes.
    ///
    /// # Errors
    /// A [`FormatError`]; untrusted bytes never panic.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Delta, FormatError> {
        let bytes = bytes.into_boxed_slice();
        let h = Header::read(&bytes, FileKind::Delta)?;
        let kind = u32_at(&bytes, OFF_DELTA_KIND);
        let f_count = h.count(OFF_DELTA_FEATURE_COUNT)?;
        let t_count = h.count(OFF_DELTA_TABLE_COUNT)?;
        let e_count = h.count(OFF_DELTA_EPOCH_COUNT)?;
        let p_count = h.count(OFF_DELTA_PROFILE_COUNT)?;
        let n_entries = h.count(OFF_DELTA_ENTRY_COUNT)?;
        let strings_len = u32_at(&bytes, OFF_DELTA_STRINGS_LEN) as usize;
        if u32_at(&bytes, OFF_DELTA_RESERVED) != 0 {
            return Err(FormatError::invalid("reserved header bytes are not zero"));
        }
        let (target_version, target_created_at, body_len) = (h.version, h.created_at, h.body_len);
        let base_version = u64_at(&bytes, OFF_BASE_VERSION);
        let base_checksum = u64_at(&bytes, OFF_BASE_CHECKSUM);
        let target_checksum = u64_at(&bytes, OFF_TARGET_CHECKSUM);
        let body_bytes = &bytes[HEADER_LEN..HEADER_LEN + body_len];
        let body = match kind {
            KIND_FULL => {
                if [f_count, t_count, e_count, p_count, n_entries, strings_len] != [0; 6] {
                    return Err(FormatError::invalid("full delta with patch counts"));
                }
                let snap = Snapshot::from_bytes(body_bytes.to_vec())?;
                if snap.version() != target_version
                    || snap.checksum() != target_checksum
                    || snap.created_at() != target_created_at
                {
                    return Err(FormatError::invalid(
                        "full delta carries a snapshot other than its target",
                    ));
                }
                Body::Full(Arc::new(snap))
            }
            KIND_PATCH => {
                let mut r = Reader::new(body_bytes);
                let fingerprint = r.u64("features fingerprint")?;
                // Take the bytes first: a count is trusted only once the bytes it counts are there.
                let types = r.take_padded(f_count, "feature types")?;
                let mut kinds = Vec::with_capacity(types.len());
                for (i, &k) in types.iter().enumerate() {
                    kinds.push(match k {
                        0 => FeatureType::Flag,
                        1 => FeatureType::Limit,
                        _ => return Err(FormatError::invalid(format!("feature {i} has type {k}"))),
                    });
                }
                let profiles = ProfileSet::read(&mut r, &kinds, t_count, e_count, p_count)?;
                let recs = r.take(n_entries * ENTRY_REC, "entries")?;
                let strings = r.take_padded(strings_len, "strings")?;
                if r.pos() != body_len {
                    return Err(FormatError::invalid(
                        "body length does not match its sections",
                    ));
                }
                let mut entries: Vec<(Box<[u8]>, Option<u32>)> = Vec::with_capacity(n_entries);
                for i in 0..n_entries {
                    let rec = &recs[i * ENTRY_REC..(i + 1) * ENTRY_REC];
                    let (off, len) = (u32_at(rec, 0) as usize, u32_at(rec, 4) as usize);
                    let id = off
                        .checked_add(len)
                        .and_then(|end| strings.get(off..end))
                        .filter(|id| !id.is_empty() && std::str::from_utf8(id).is_ok())
                        .ok_or_else(|| FormatError::invalid(format!("entry {i} has a bad id")))?;
                    let p = u32_at(rec, 8);
                    if (p != EMPTY && p as usize >= p_count) || u32_at(rec, 12) != 0 {
                        return Err(FormatError::invalid(format!("entry {i} is corrupt")));
                    }
                    if entries.last().is_some_and(|(prev, _)| &**prev >= id) {
                        return Err(FormatError::invalid("entries are not sorted and unique"));
                    }
                    entries.push((id.into(), (p != EMPTY).then_some(p)));
                }
                Body::Patch(Patch {
                    fingerprint,
                    kinds,
                    profiles,
                    entries,
                })
            }
            other => return Err(FormatError::invalid(format!("unknown delta kind {other}"))),
        };
        Ok(Delta {
            bytes,
            base_version,
            base_checksum,
            target_version,
            target_checksum,
            target_created_at,
            body,
        })
    }

    /// The delta's bytes, exactly as written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The (version, checksum) of the snapshot this delta applies to.
    pub fn base(&self) -> (u64, u64) {
        (self.base_version, self.base_checksum)
    }

    /// The (version, checksum) of the snapshot it produces.
    pub fn target(&self) -> (u64, u64) {
        (self.target_version, self.target_checksum)
    }

    /// The target's creation time (unix seconds).
    pub fn target_created_at(&self) -> i64 {
        self.target_created_at
    }

    /// Whether the delta carries the whole target snapshot rather than a patch.
    pub fn is_full(&self) -> bool {
        matches!(self.body, Body::Full(_))
    }

    /// The number of customers the delta adds, changes or removes (0 for a full delta).
    pub fn change_count(&self) -> usize {
        match &self.body {
            Body::Full(_) => 0,
            Body::Patch(patch) => patch.entries.len(),
        }
    }

    /// What the delta carries (for [`View::apply`](crate::View::apply)).
    pub(crate) fn body(&self) -> &Body {
        &self.body
    }
}
