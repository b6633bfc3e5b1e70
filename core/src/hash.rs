//! XXH64, the one hash function of the snapshot and delta formats.
//!
//! It is written out here, not pulled from a crate, because its output is part of the on-disk format
//! (customer slot placement and checksums): it must never change under us. The implementation follows
//! the published XXH64 algorithm and is checked against its reference vectors in the tests below.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

#[inline(always)]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline(always)]
fn merge_round(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

/// Hashes `input` with XXH64 and the given seed.
///
/// # Examples
/// ```
/// assert_eq!(entitle_core::hash::xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
/// ```
#[inline]
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    let len = input.len();
    let mut rest = input;
    let h = if len >= 32 {
        let mut v1 = seed.wrapping_add(P1).wrapping_add(P2);
        let mut v2 = seed.wrapping_add(P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(P1);
        while rest.len() >= 32 {
            v1 = round(v1, read_u64(rest, 0));
            v2 = round(v2, read_u64(rest, 8));
            v3 = round(v3, read_u64(rest, 16));
            v4 = round(v4, read_u64(rest, 24));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge_round(h, v1);
        h = merge_round(h, v2);
        h = merge_round(h, v3);
        merge_round(h, v4)
    } else {
        seed.wrapping_add(P5)
    };
    tail(h.wrapping_add(len as u64), rest)
}

/// XXH64's processing of the last `< 32` bytes and its final avalanche.
#[inline(always)]
fn tail(mut h: u64, mut rest: &[u8]) -> u64 {
    while rest.len() >= 8 {
        h ^= round(0, read_u64(rest, 0));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= u64::from(read_u32(rest, 0)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// 64×64→128-bit multiply, folded to 64 bits.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The hash of a lookup key (customer id or feature key), as the snapshot format defines it (see
/// `docs/FORMAT.md`): a multiply-fold hash in the style of wyhash, chosen because it costs three
/// multiplications for an 18-byte Stripe id where XXH64 costs a dozen dependent ones.
///
/// # Examples
/// ```
/// use entitle_core::hash::key_hash;
/// assert_eq!(key_hash(b"cus_A"), key_hash(b"cus_A"));
/// assert_ne!(key_hash(b"cus_A"), key_hash(b"cus_B"));
/// ```
#[inline(always)]
pub fn key_hash(key: &[u8]) -> u64 {
    let len = key.len();
    let mut seed = K0;
    let (a, b) = if len <= 16 {
        if len >= 8 {
            (read_u64(key, 0), read_u64(key, len - 8))
        } else if len >= 4 {
            (
                u64::from(read_u32(key, 0)),
                u64::from(read_u32(key, len - 4)),
            )
        } else if len > 0 {
            let v = (u64::from(key[0]) << 16)
                | (u64::from(key[len / 2]) << 8)
                | u64::from(key[len - 1]);
            (v, 0)
        } else {
            (0, 0)
        }
    } else {
        let mut i = 0;
        while len - i > 16 {
            seed = mum(read_u64(key, i) ^ K1, read_u64(key, i + 8) ^ seed);
            i += 16;
        }
        (read_u64(key, len - 16), read_u64(key, len - 8))
    };
    mum(K1 ^ len as u64, mum(a ^ K1, b ^ seed) ^ K2)
}

/// Maps a hash onto `0..n` without division (Lemire's multiply-shift); `n` must be > 0.
#[inline(always)]
pub(crate) fn home_slot(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// A fast `BuildHasher` for in-memory maps keyed by catalog content (ids, tables, profiles).
///
/// Not DoS-resistant: use it only for keys the catalog's author controls, never for keys taken from
/// requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastState;

/// The hasher [`FastState`] builds.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher(u64);

impl std::hash::BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh64(bytes, self.0);
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(P1)
            .rotate_left(31)
            .wrapping_add(P4);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// A `HashMap` using [`FastState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

#[cfg(test)]
mod tests {
    use super::xxh64;

    #[test]
    fn key_hash_is_stable() {
        // The key hash is part of the snapshot format: these values must never change.
        let cases: [(&[u8], u64); 6] = [
            (b"", 0x96ebbe173ff72a30),
            (b"a", 0xda9c83ee0c834f3e),
            (b"sso", 0x5f2ea1f784deaa1c),
            (b"cus_0000000001", 0x15edc60e628a126e),
            (b"cus_AbCdEfGhIjKlMn", 0x2789be93d16a33d8),
            (
                b"a much longer customer identifier, over thirty-two bytes",
                0xf0f1daa489fb75ff,
            ),
        ];
        for (k, v) in cases {
            assert_eq!(super::key_hash(k), v, "{:?}", String::from_utf8_lossy(k));
        }
    }

    #[test]
    fn key_hash_spreads_similar_keys() {
        // Sequential ids must land in distinct home slots often enough for linear probing.
        let n = 100_000u64;
        let mut slots = vec![0u32; n as usize];
        for i in 0..n {
            let id = format!("cus_{i:014}");
            slots[super::home_slot(super::key_hash(id.as_bytes()), n as usize)] += 1;
        }
        let empty = slots.iter().filter(|&&c| c == 0).count() as f64 / n as f64;
        // A uniform hash leaves e^-1 ≈ 36.8% of slots empty.
        assert!((0.35..0.39).contains(&empty), "empty fraction {empty}");
    }

    #[test]
    fn matches_reference_vectors() {
        let hundred: Vec<u8> = (0u8..100).collect();
        let cases: [(&[u8], u64, u64); 6] = [
            (b"", 0xef46db3751d8e999, 0x98b1582b0977e704),
            (b"a", 0xd24ec4f1a98c6e5b, 0x88e4fe59adf7b0cc),
            (b"abc", 0x44bc2cf5ad770999, 0x13c1d910702770e6),
            (b"cus_0000000001", 0x2944c468ec27e789, 0x25907578acacbd75),
            (
                b"0123456789abcdef0123456789abcdef0123",
                0xc4255ba3d1af5461,
                0xd5ed95f3f6ec49dc,
            ),
            (&hundred, 0x6ac1e58032166597, 0x819d2b726001d507),
        ];
        for (input, seed0, seed42) in cases {
            assert_eq!(xxh64(input, 0), seed0, "seed 0, len {}", input.len());
            assert_eq!(xxh64(input, 42), seed42, "seed 42, len {}", input.len());
        }
    }
}
