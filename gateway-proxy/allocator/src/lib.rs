//! The proxy's global allocator: mimalloc, called the way the system allocator is.
//!
//! The `mimalloc` crate's `MiMalloc` passes every allocation to `mi_malloc_aligned`, with the
//! layout's alignment. For a block over 1 KiB, or one whose free block is not aligned by
//! chance, that takes mimalloc's generic aligned path, which over-allocates and adjusts the
//! pointer: 13 allocations per proxied request went through `mi_malloc_aligned`, 6 of them
//! the slow way, some 1,400 instructions per request in all (callgrind, `gantry-bench
//! --instructions-only`, docs/benchmarks.md "Instructions per request: the runtime and the
//! allocator"). Every mimalloc block is at least word-aligned, so an alignment up to a word
//! needs nothing more than `mi_malloc`, as Rust's `System` allocator needs nothing more than
//! `malloc`. Larger alignments (tokio's cache-padded task cells) still go through the aligned
//! calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every block mimalloc hands out is aligned to at least this.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, with plain calls for word-aligned layouts and aligned calls for the rest.
pub struct Mimalloc;

// SAFETY: each method forwards to the mimalloc call with the same contract; plain calls are
// used only for layouts whose alignment every mimalloc block already has (`WORD`).
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator; `mi_free` takes blocks of either kind.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; the alignment of a block does not change with its size.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Gives back to the system the memory the calling thread's heap holds but no longer uses,
/// and the pages other threads left behind, without waiting for mimalloc's purge delay.
///
/// Call it after a burst of short-lived allocations that a long quiet spell may follow. The
/// proxy calls it once its first configuration is in use, whose reading and translation freed
/// far more than they kept (about 1 MiB with 5,000 routes: docs/benchmarks.md, "Memory per
/// route: what is left"), and once a crowd of connections has gone, on the thread that
/// noticed and on each worker thread when it next goes idle ("Memory per connection"). Not
/// for every change: memory given back is faulted in again by the next allocations, which
/// costs more than it saves there.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` has no preconditions; it may be called from any thread at any time.
    unsafe { mi::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `layout` with `zeroed` or not, checks its alignment, fills it, grows it to
    /// twice its size and checks the content moved with it.
    fn round_trip(layout: Layout, zeroed: bool) {
        let allocator = Mimalloc;
        // SAFETY: the layouts are non-zero in size; each block is freed once, with its layout.
        unsafe {
            let ptr = if zeroed {
                allocator.alloc_zeroed(layout)
            } else {
                allocator.alloc(layout)
            };
            assert!(!ptr.is_null(), "{layout:?}");
            assert_eq!(ptr as usize % layout.align(), 0, "{layout:?}");
            let block = std::slice::from_raw_parts_mut(ptr, layout.size());
            if zeroed {
                assert!(block.iter().all(|&b| b == 0), "{layout:?} not zeroed");
            }
            for (i, b) in block.iter_mut().enumerate() {
                *b = i as u8;
            }
            let grown = allocator.realloc(ptr, layout, layout.size() * 2);
            assert!(!grown.is_null(), "{layout:?}");
            assert_eq!(grown as usize % layout.align(), 0, "{layout:?} grown");
            let kept = std::slice::from_raw_parts(grown, layout.size());
            assert!(
                kept.iter().enumerate().all(|(i, &b)| b == i as u8),
                "{layout:?}: content lost in realloc"
            );
            allocator.dealloc(
                grown,
                Layout::from_size_align(layout.size() * 2, layout.align()).unwrap(),
            );
        }
    }

    #[test]
    fn releasing_free_memory_keeps_live_blocks() {
        let allocator = Mimalloc;
        let layout = Layout::from_size_align(4096, 8).unwrap();
        // SAFETY: each block is freed once, with its layout.
        unsafe {
            let kept = allocator.alloc(layout);
            std::slice::from_raw_parts_mut(kept, layout.size()).fill(0xa5);
            let freed: Vec<_> = (0..256).map(|_| allocator.alloc(layout)).collect();
            for ptr in freed {
                allocator.dealloc(ptr, layout);
            }
            release_free_memory();
            let block = std::slice::from_raw_parts(kept, layout.size());
            assert!(block.iter().all(|&b| b == 0xa5), "a live block changed");
            allocator.dealloc(kept, layout);
        }
    }

    #[test]
    fn every_block_has_its_layouts_alignment_and_keeps_its_content() {
        // Small and large sizes (mimalloc's small blocks end at 1 KiB, its medium and large
        // ones further up), plain and over-aligned, many times each so that blocks come from
        // different places in their pages.
        for size in [
            1, 7, 8, 24, 100, 1000, 1024, 1500, 4096, 9000, 70_000, 600_000,
        ] {
            for align in [1, 2, 8, 16, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                for round in 0..8 {
                    round_trip(layout, round % 2 == 1);
                }
            }
        }
    }
}
