//! Decoding snapshot bytes: every section read with bounds checks and every table validated, so
//! that lookups never re-check.

use super::build::FeatureDef;
use super::format::*;
use super::profiles::ProfileSet;
use super::{feature_table_id, pad16, FeatureProbe, FormatError, Snapshot};
use crate::hash::{home_slot, key_hash};
use crate::model::{FeatureType, MAX_LIMIT, RAW_UNLIMITED};

impl Snapshot {
    /// Decodes and validates snapshot bytes. After this succeeds, lookups never re-check.
    ///
    /// # Errors
    /// A [`FormatError`] saying what is wrong; untrusted bytes never panic.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Snapshot, FormatError> {
        let bytes = bytes.into_boxed_slice();
        let h = Header::read(&bytes, FileKind::Snapshot)?;
        let mut r = Reader::new(&bytes[HEADER_LEN..bytes.len() - 8]);
        let f_count = h.count(OFF_FEATURE_COUNT)?;
        let fs_count = h.count(OFF_FEATURE_SLOT_COUNT)?;
        let t_count = h.count(OFF_TABLE_COUNT)?;
        let e_count = h.count(OFF_EPOCH_COUNT)?;
        let p_count = h.count(OFF_PROFILE_COUNT)?;
        let n = h.count(OFF_CUSTOMER_COUNT)?;
        let s_count = h.count(OFF_CUSTOMER_SLOT_COUNT)?;
        let strings_len = u32_at(&bytes, OFF_STRINGS_LEN) as usize;
        if bytes[OFF_RESERVED..HEADER_LEN].iter().any(|&b| b != 0) {
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
        super::buffer::advise_huge_pages(&snap.bytes);
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
}
