//! Byte-level layout shared by snapshots and deltas, and a bounds-checked reader for untrusted bytes.
//!
//! Snapshot format version 1 (all integers little-endian; every section starts 8-byte aligned):
//!
//! ```text
//! offset size  field
//!      0    8  magic "ENTLSNAP"
//!      8    4  format_version (1)
//!     12    4  header_len (96)
//!     16    8  content_version
//!     24    8  created_at (i64 unix seconds)
//!     32    8  body_len (bytes between the header and the checksum)
//!     40    4  feature_count          F
//!     44    4  feature_slot_count     FS
//!     48    4  table_count            T
//!     52    4  epoch_count            E
//!     56    4  profile_count          P
//!     60    4  customer_count         N
//!     64    4  customer_slot_count    S
//!     68    4  strings_len            L
//!     72   24  reserved (zero)
//!     96       body:
//!              features        F × 24  {key_off u32, key_len u32, type u8, per_unit u8, 6 × 0, default u64}
//!              feature slots   FS × u32 (feature index, or 0xFFFFFFFF for empty)      padded to 8
//!              table values    T × F × u64 (flag 0/1; limit n, or u64::MAX for unlimited)
//!              table reasons   T × F × u8 (0 default, 1 subscription, 2 override)    padded to 8
//!              epochs          E × 16  {start i64, table u32, 0 u32}
//!              profile offsets (P + 1) × u32 into epochs                               padded to 8
//!              customer slots  S × 24  (see below)
//!              strings         L bytes (feature keys, then customer ids longer than 19 bytes) padded to 8
//!  end-8    8  checksum: XXH64 (seed 0) of every byte before it
//! ```
//!
//! A customer slot is `{profile u32 (0xFFFFFFFF = empty), len u8, 19 bytes}`: ids of up to 19 bytes
//! are stored inline, zero-padded; longer ids set len = 0xFF and store `{3 × 0, off u32, len u32, 8 × 0}`
//! pointing into strings. Slots form an open-addressed table: a customer's home slot is
//! `(key_hash(id) × S) >> 64` (see `crate::hash::key_hash`), collisions probe linearly and wrap.

use super::FormatError;

pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"ENTLSNAP";
pub(crate) const DELTA_MAGIC: &[u8; 8] = b"ENTLDLTA";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// The delta format version this build writes and reads.
pub const DELTA_FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 96;
pub(crate) const FEATURE_REC: usize = 24;
pub(crate) const EPOCH_REC: usize = 16;
pub(crate) const SLOT_REC: usize = 24;
pub(crate) const INLINE_ID_MAX: usize = 19;
pub(crate) const LONG_ID: u8 = 0xFF;
pub(crate) const EMPTY: u32 = u32::MAX;
/// Upper bound on any count in a header, so that sizes computed from counts cannot overflow and a
/// corrupt header cannot make us allocate wildly before the length check rejects it.
pub(crate) const MAX_COUNT: u64 = 1 << 31;

#[inline]
pub(crate) fn pad8(n: usize) -> usize {
    (n + 7) & !7
}

#[inline(always)]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

#[inline(always)]
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A cursor over untrusted bytes: every read is checked and names what it was reading.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(FormatError::Truncated { what })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Takes `n` bytes then skips zero padding to the next multiple of 8, which must be zero.
    pub(crate) fn take_padded(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<&'a [u8], FormatError> {
        let s = self.take(n, what)?;
        let pad = pad8(n) - n;
        if self.take(pad, what)?.iter().any(|&b| b != 0) {
            return Err(FormatError::invalid(format!("{what}: non-zero padding")));
        }
        Ok(s)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64_at(self.take(8, what)?, 0))
    }
}

/// Appends little-endian integers and padding.
pub(crate) trait Writer {
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn pad8(&mut self);
}

impl Writer for Vec<u8> {
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn pad8(&mut self) {
        let n = pad8(self.len());
        self.resize(n, 0);
    }
}
