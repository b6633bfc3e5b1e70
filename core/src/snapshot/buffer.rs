//! Huge pages for the bytes of a large snapshot.
//!
//! A lookup of a random customer of a large snapshot misses the cache on its slot and, with 4 KiB
//! pages, the TLB too: the page walk comes on top of the miss. With 2 MiB pages a 32 MB snapshot
//! needs 16 TLB entries instead of 7,700, so most page walks disappear. Kernels whose transparent
//! huge pages are in `madvise` mode (a common default) give huge pages only to memory that asks for
//! them with `madvise(MADV_HUGEPAGE)`; a heap buffer never does.
//!
//! The advice is given once the bytes are in place, on the whole 2 MiB pages inside the buffer:
//! the kernel's background thread (`khugepaged`) then merges them into huge pages within seconds
//! (about 25 s for a 1M snapshot on the machine of `benches/RESULTS.md`). Advising before the
//! bytes are written would get huge pages at once, but each first touch of a 2 MiB page may then
//! make the loading thread wait while the kernel reclaims and compacts memory to find one (measured
//! at up to 1.8 s for 32 MB on a machine whose free memory was page cache), where loading takes
//! 65 ms. Snapshots under [`HUGE_PAGE_THRESHOLD`] are left alone: their slots span few pages.

/// The size from which a snapshot's bytes are advised to use huge pages (on Linux).
pub(crate) const HUGE_PAGE_THRESHOLD: usize = 4 << 20;

/// The huge page size of x86-64 and of 4 KiB-granule arm64.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages of `bytes` with huge pages, if `bytes` is at
/// least [`HUGE_PAGE_THRESHOLD`] long. Only a hint: contents never change, and where it is refused
/// (no transparent huge pages) nothing happens. Returns the number of bytes advised.
pub(crate) fn advise_huge_pages(bytes: &[u8]) -> usize {
    if bytes.len() < HUGE_PAGE_THRESHOLD {
        return 0;
    }
    #[cfg(target_os = "linux")]
    {
        let start = bytes.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + bytes.len()) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: `first..end` lies inside `bytes` (a live allocation) and is page-aligned, as
            // madvise requires; MADV_HUGEPAGE changes how the range is backed, never its contents,
            // so the bytes stay valid for every reference to them.
            let rc = unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE)
            };
            if rc == 0 {
                return end - first;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_buffers_are_advised_and_their_content_is_unchanged() {
        assert_eq!(advise_huge_pages(&[7; 1000]), 0);
        let big: Vec<u8> = (0..HUGE_PAGE_THRESHOLD + 3 * (2 << 20))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let copy = big.clone();
        let advised = advise_huge_pages(&big);
        if cfg!(target_os = "linux") && advised > 0 {
            // At least the whole 2 MiB pages of the buffer but one at each end.
            assert!(advised >= big.len() - 2 * (2 << 20), "{advised}");
            assert_eq!(advised % (2 << 20), 0);
        }
        assert_eq!(big, copy);
    }
}
