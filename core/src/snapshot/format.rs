//! Byte-level layout of snapshots and deltas, the header they share, and a bounds-checked reader for
//! untrusted bytes. The offsets of every header field are named below the diagrams (`OFF_*`); code
//! reads and writes headers only through those names.
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
//!
//! Delta format version 1 shares the first 40 bytes (with the target's version and creation time);
//! its body is described in `crate::delta`:
//!
//! ```text
//! offset size  field
//!      0    8  magic "ENTLDLTA"
//!      8    4  format_version (1)
//!     12    4  header_len (96)
//!     16    8  target_version
//!     24    8  target_created_at (i64 unix seconds)
//!     32    8  body_len
//!     40    4  kind (0 patch, 1 full)
//!     44    4  feature_count          F   (patch; 0 for full)
//!     48    4  table_count            T   (patch)
//!     52    4  epoch_count            E   (patch)
//!     56    4  profile_count          P   (patch)
//!     60    4  entry_count            M   (patch)
//!     64    4  strings_len            L   (patch)
//!     68    4  reserved (zero)
//!     72    8  base_version
//!     80    8  base_checksum
//!     88    8  target_checksum
//!     96       body (a whole snapshot for full; see `crate::delta` for a patch)
//!  end-8    8  checksum: XXH64 (seed 0) of every byte before it
//! ```

use super::FormatError;
use crate::hash::xxh64;

// Header fields shared by snapshots and deltas (byte offsets, as in the diagrams above).
pub(crate) const OFF_FORMAT_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 12;
/// The content version (a delta's target version).
pub(crate) const OFF_VERSION: usize = 16;
/// The creation time (a delta's target creation time).
pub(crate) const OFF_CREATED_AT: usize = 24;
pub(crate) const OFF_BODY_LEN: usize = 32;
/// Where the header fields that differ between snapshots and deltas start.
pub(crate) const OFF_COUNTS: usize = 40;

// Snapshot header fields.
pub(crate) const OFF_FEATURE_COUNT: usize = 40;
pub(crate) const OFF_FEATURE_SLOT_COUNT: usize = 44;
pub(crate) const OFF_TABLE_COUNT: usize = 48;
pub(crate) const OFF_EPOCH_COUNT: usize = 52;
pub(crate) const OFF_PROFILE_COUNT: usize = 56;
pub(crate) const OFF_CUSTOMER_COUNT: usize = 60;
pub(crate) const OFF_CUSTOMER_SLOT_COUNT: usize = 64;
pub(crate) const OFF_STRINGS_LEN: usize = 68;
pub(crate) const OFF_RESERVED: usize = 72;

// Delta header fields.
pub(crate) const OFF_DELTA_KIND: usize = 40;
pub(crate) const OFF_DELTA_FEATURE_COUNT: usize = 44;
pub(crate) const OFF_DELTA_TABLE_COUNT: usize = 48;
pub(crate) const OFF_DELTA_EPOCH_COUNT: usize = 52;
pub(crate) const OFF_DELTA_PROFILE_COUNT: usize = 56;
pub(crate) const OFF_DELTA_ENTRY_COUNT: usize = 60;
pub(crate) const OFF_DELTA_STRINGS_LEN: usize = 64;
pub(crate) const OFF_DELTA_RESERVED: usize = 68;
pub(crate) const OFF_BASE_VERSION: usize = 72;
pub(crate) const OFF_BASE_CHECKSUM: usize = 80;
pub(crate) const OFF_TARGET_CHECKSUM: usize = 88;

const SNAPSHOT_MAGIC: &[u8; 8] = b"ENTLSNAP";
const DELTA_MAGIC: &[u8; 8] = b"ENTLDLTA";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// The delta format version this build writes and reads.
pub const DELTA_FORMAT_VERSION: u32 = 1;
/// The header length of both snapshots and deltas.
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

/// The two kinds of entitle files, told apart by their first 8 bytes (the magic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A snapshot (magic `ENTLSNAP`).
    Snapshot,
    /// A delta (magic `ENTLDLTA`).
    Delta,
}

impl FileKind {
    /// The kind whose magic `bytes` start with; `None` for anything else (a catalog's JSON, a
    /// truncated or foreign file). Only a look at the magic: decoding validates the rest.
    pub fn of(bytes: &[u8]) -> Option<FileKind> {
        [FileKind::Snapshot, FileKind::Delta]
            .into_iter()
            .find(|k| bytes.starts_with(k.magic()))
    }

    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Snapshot => SNAPSHOT_MAGIC,
            FileKind::Delta => DELTA_MAGIC,
        }
    }

    /// What the kind is called in errors.
    fn name(self) -> &'static str {
        match self {
            FileKind::Snapshot => "snapshot",
            FileKind::Delta => "delta",
        }
    }

    /// The format version this build writes and reads for the kind.
    fn format_version(self) -> u32 {
        match self {
            FileKind::Snapshot => SNAPSHOT_FORMAT_VERSION,
            FileKind::Delta => DELTA_FORMAT_VERSION,
        }
    }
}

/// Writes the 40 header bytes snapshots and deltas share; the caller appends the rest of the header
/// (from [`OFF_COUNTS`] to [`HEADER_LEN`]) and a body of `body_len` bytes.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    kind: FileKind,
    version: u64,
    created_at: i64,
    body_len: usize,
) {
    debug_assert!(out.is_empty());
    out.extend_from_slice(kind.magic());
    out.put_u32(kind.format_version());
    out.put_u32(HEADER_LEN as u32);
    out.put_u64(version);
    out.put_u64(created_at as u64);
    out.put_u64(body_len as u64);
    debug_assert_eq!(out.len(), OFF_COUNTS);
}

/// Appends the checksum trailer: XXH64 (seed 0) of every byte written so far.
pub(crate) fn write_checksum(out: &mut Vec<u8>) {
    let checksum = xxh64(out, 0);
    out.put_u64(checksum);
}

/// `n` as a u32 field of the format.
pub(crate) fn to_u32(n: usize) -> Result<u32, FormatError> {
    u32::try_from(n).map_err(|_| FormatError::TooLarge)
}

/// `n` as a count field of the format (at most [`MAX_COUNT`]).
pub(crate) fn to_count(n: usize) -> Result<u32, FormatError> {
    if n as u64 > MAX_COUNT {
        return Err(FormatError::TooLarge);
    }
    to_u32(n)
}

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
    pub(crate) fn read(bytes: &'a [u8], kind: FileKind) -> Result<Header<'a>, FormatError> {
        if FileKind::of(bytes) != Some(kind) {
            if bytes.len() < 8 && kind.magic().starts_with(bytes) {
                return Err(FormatError::Truncated { what: "header" });
            }
            return Err(FormatError::BadMagic {
                expected: kind.name(),
            });
        }
        if bytes.len() < OFF_HEADER_LEN + 4 {
            return Err(FormatError::Truncated { what: "header" });
        }
        let supported = kind.format_version();
        let found = u32_at(bytes, OFF_FORMAT_VERSION);
        if found != supported {
            return Err(FormatError::UnsupportedVersion { found, supported });
        }
        if bytes.len() < HEADER_LEN + 8 {
            return Err(FormatError::Truncated { what: "header" });
        }
        if u32_at(bytes, OFF_HEADER_LEN) as usize != HEADER_LEN {
            return Err(FormatError::invalid("unexpected header length"));
        }
        let body_len = u64_at(bytes, OFF_BODY_LEN);
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
            version: u64_at(bytes, OFF_VERSION),
            created_at: u64_at(bytes, OFF_CREATED_AT) as i64,
            body_len: body_len as usize,
            checksum: stored,
        })
    }

    /// The count stored at header offset `at`, bounded by [`MAX_COUNT`].
    pub(crate) fn count(&self, at: usize) -> Result<usize, FormatError> {
        let n = u32_at(self.bytes, at);
        if u64::from(n) > MAX_COUNT {
            return Err(FormatError::invalid(format!("count {n} is too large")));
        }
        Ok(n as usize)
    }
}
