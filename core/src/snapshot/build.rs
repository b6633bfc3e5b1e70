//! Encoding: turning features and (customer, profile) pairs into canonical snapshot bytes.
//!
//! The output is a pure function of the logical content: customers are placed in (id hash, id)
//! order, tables and profiles are numbered by first use in that order. Building from a catalog, compacting an overlay or
//! applying a delta therefore all yield byte-identical snapshots for the same content.

use super::format::*;
use super::profiles::{ProfileSetBuilder, Renumbering};
use super::FormatError;
use crate::hash::{home_slot, key_hash};
use crate::model::{Cell, FeatureType};

/// A feature as snapshots store it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FeatureDef {
    pub(crate) key: String,
    pub(crate) kind: FeatureType,
    pub(crate) per_unit: bool,
    pub(crate) default: u64,
}

/// Collects content: profiles (interned by a [`ProfileSetBuilder`]) and the customers using them.
pub(crate) struct Builder {
    features: Vec<FeatureDef>,
    profiles: ProfileSetBuilder,
    /// All customer ids back to back; `customers` holds (id hash, offset, length, profile).
    ids: Vec<u8>,
    customers: Vec<(u64, usize, usize, u32)>,
}

impl Builder {
    pub(crate) fn new(features: Vec<FeatureDef>) -> Builder {
        Builder {
            profiles: ProfileSetBuilder::new(features.len()),
            features,
            ids: Vec::new(),
            customers: Vec::new(),
        }
    }

    pub(crate) fn reserve(&mut self, customers: usize) {
        self.customers.reserve(customers);
        self.ids.reserve(customers * 18);
    }

    /// Interns a profile given as (start, cells) epochs (see [`ProfileSetBuilder::profile`]).
    pub(crate) fn profile<'c>(
        &mut self,
        epochs: impl IntoIterator<Item = (i64, &'c [Cell])>,
    ) -> u32 {
        self.profiles.profile(epochs)
    }

    pub(crate) fn customer(&mut self, id: &[u8], profile: u32) {
        self.customers
            .push((key_hash(id), self.ids.len(), id.len(), profile));
        self.ids.extend_from_slice(id);
    }

    /// Lays out the snapshot bytes.
    ///
    /// # Errors
    /// [`FormatError::TooLarge`] when a count or the string area exceeds what the format can address;
    /// [`FormatError::Invalid`] when two customers share an id.
    pub(crate) fn finish(mut self, version: u64, created_at: i64) -> Result<Vec<u8>, FormatError> {
        let ids = std::mem::take(&mut self.ids);
        let id = |&(_, off, len, _): &(u64, usize, usize, u32)| &ids[off..off + len];
        // Hash order is as deterministic as id order and sorts on integers, not strings.
        self.customers
            .sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id(a).cmp(id(b))));
        if let Some(w) = self.customers.windows(2).find(|w| id(&w[0]) == id(&w[1])) {
            return Err(FormatError::invalid(format!(
                "duplicate customer id `{}`",
                String::from_utf8_lossy(id(&w[0]))
            )));
        }
        // Renumber profiles and tables by first use in id order.
        let interned = self.profiles.finish();
        let mut renumbering = Renumbering::new(&interned);
        for (_, _, _, p) in self.customers.iter_mut() {
            *p = renumbering.profile(*p);
        }
        let set = renumbering.finish();
        drop(interned);

        let n = self.customers.len();
        let slot_count = n + n / 4 + 1;
        let feature_slot_count = self.features.len() * 2 + 1;

        let mut strings: Vec<u8> = Vec::new();
        let mut feature_recs = Vec::with_capacity(self.features.len() * FEATURE_REC);
        for f in &self.features {
            feature_recs.put_u32(to_u32(strings.len())?);
            feature_recs.put_u32(to_u32(f.key.len())?);
            feature_recs.push(match f.kind {
                FeatureType::Flag => 0,
                FeatureType::Limit => 1,
            });
            feature_recs.push(u8::from(f.per_unit));
            feature_recs.extend_from_slice(&[0; 6]);
            feature_recs.put_u64(f.default);
            strings.extend_from_slice(f.key.as_bytes());
        }
        let mut feature_slots = vec![EMPTY; feature_slot_count];
        for (i, f) in self.features.iter().enumerate() {
            let mut s = home_slot(key_hash(f.key.as_bytes()), feature_slot_count);
            while feature_slots[s] != EMPTY {
                s = (s + 1) % feature_slot_count;
            }
            feature_slots[s] = i as u32;
        }

        let mut slots = vec![0u8; slot_count * SLOT_REC];
        for rec in slots.chunks_exact_mut(SLOT_REC) {
            rec[0..4].copy_from_slice(&EMPTY.to_le_bytes());
        }
        for c in &self.customers {
            let (id, profile) = (id(c), c.3);
            let mut s = home_slot(c.0, slot_count);
            while u32_at(&slots, s * SLOT_REC) != EMPTY {
                s = (s + 1) % slot_count;
            }
            let rec = &mut slots[s * SLOT_REC..(s + 1) * SLOT_REC];
            rec[0..4].copy_from_slice(&profile.to_le_bytes());
            if id.len() <= INLINE_ID_MAX {
                rec[4] = id.len() as u8;
                rec[5..5 + id.len()].copy_from_slice(id);
            } else {
                rec[4] = LONG_ID;
                rec[8..12].copy_from_slice(&to_u32(strings.len())?.to_le_bytes());
                rec[12..16].copy_from_slice(&to_u32(id.len())?.to_le_bytes());
                strings.extend_from_slice(id);
            }
        }

        let body_len = feature_recs.len()
            + pad8(feature_slot_count * 4)
            + set.encoded_len()
            + slots.len()
            + pad8(strings.len());
        let mut out = Vec::with_capacity(HEADER_LEN + body_len + 8);
        write_header(&mut out, FileKind::Snapshot, version, created_at, body_len);
        debug_assert_eq!(out.len(), OFF_FEATURE_COUNT);
        out.put_u32(to_count(self.features.len())?);
        out.put_u32(to_count(feature_slot_count)?);
        out.put_u32(to_count(set.table_count())?);
        out.put_u32(to_count(set.epochs.len())?);
        out.put_u32(to_count(set.profile_count())?);
        out.put_u32(to_count(n)?);
        out.put_u32(to_count(slot_count)?);
        out.put_u32(to_u32(strings.len())?);
        debug_assert_eq!(out.len(), OFF_RESERVED);
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(&feature_recs);
        for s in feature_slots {
            out.put_u32(s);
        }
        out.pad8();
        set.write(&mut out);
        out.extend_from_slice(&slots);
        out.extend_from_slice(&strings);
        out.pad8();
        write_checksum(&mut out);
        Ok(out)
    }
}
