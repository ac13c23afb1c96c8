//! The process allocator: mimalloc, asked for a plain block whenever the
//! alignment Rust needs is one every mimalloc block has anyway.
//!
//! `mimalloc::MiMalloc` passes every request to `mi_malloc_aligned`, even
//! for an alignment of 8. In mimalloc 3 that call only has a fast path for
//! blocks up to 1 KiB; a larger block whose size is not a power of two is
//! over-allocated and aligned by hand (`mi_theap_malloc_zero_aligned_at_overalloc`),
//! about 170 instructions instead of about 30, then a slower free. A proxied
//! request makes about 16 such allocations (boxed futures, buffers, header
//! vectors): ~3.9k of edgeward's ~75k instructions per request (bench/cost.sh,
//! callgrind). mimalloc gives every block of at least 16 bytes a 16-byte
//! alignment and every smaller block an 8-byte one (`MI_MAX_ALIGN_SIZE`,
//! asserted in its `_mi_page_malloc_zero`), so when `align <= 16` and
//! `align <= size` (the rule of Rust's own `System` allocator) `mi_malloc`
//! is enough. Other layouts still go to `MiMalloc`. Every block is freed by
//! `mi_free`, whichever call made it.
//!
//! This is the FFI edge to libmimalloc: each `unsafe` block is one call.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment mimalloc gives every block of at least this many bytes.
const MIN_ALIGN: usize = 16;

/// Whether a plain `mi_malloc` block is aligned enough for `layout`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

/// mimalloc for the whole process (see the module comment).
pub struct Allocator;

// SAFETY: every method returns a block that is null or valid for the
// layout's size and aligned to its alignment: from `mi_malloc`/`mi_zalloc`/
// `mi_realloc` only when `plain` holds (see the module comment), else from
// `MiMalloc`, which upholds the same contract. Every block comes from
// mimalloc, so `mi_free` (which `MiMalloc::dealloc` also calls) frees any of
// them.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            // SAFETY: `mi_malloc` takes any size and returns null or a
            // block of at least that size.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()) }.cast()
        } else {
            // SAFETY: the caller's contract for `alloc`, passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            // SAFETY: as `mi_malloc`, and the block is zeroed.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()) }.cast()
        } else {
            // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller gives a block this allocator returned, and every
        // one of them is a mimalloc block.
        unsafe { libmimalloc_sys::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            // SAFETY: `ptr` is a mimalloc block (the caller's contract);
            // `mi_realloc` returns null (leaving it valid) or a block of
            // `new_size` bytes holding its bytes, 16-byte aligned when
            // `new_size >= 16`, else 8-byte aligned, as `plain` requires.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast::<c_void>(), new_size) }.cast()
        } else {
            // SAFETY: the caller's contract for `realloc`, passed on.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class from 1 byte to 64 KiB, with each alignment up to
    /// 4 KiB: aligned, writable, reallocated with the bytes kept, freed.
    #[test]
    fn blocks_are_aligned_for_every_layout_and_keep_their_bytes_on_realloc() {
        let a = Allocator;
        let mut sizes: Vec<usize> = (1..=300).collect();
        let mut s = 300;
        while s < 64 * 1024 {
            sizes.push(s);
            sizes.push(s + 8);
            s = s * 5 / 4 + 3;
        }
        for &size in &sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout has a non-zero size.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                // SAFETY: `p` holds `size` bytes.
                unsafe { p.write_bytes(0xa5, size) };
                let grown = size * 3 + 1;
                // SAFETY: `p` came from `a` with `layout`; the new size is non-zero.
                let q = unsafe { a.realloc(p, layout, grown) };
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                // SAFETY: `q` holds at least the `size` bytes written above.
                let kept = unsafe { std::slice::from_raw_parts(q, size) };
                assert!(kept.iter().all(|&b| b == 0xa5));
                let layout = Layout::from_size_align(grown, align).unwrap();
                // SAFETY: `q` came from `a` with this layout.
                unsafe { a.dealloc(q, layout) };

                // SAFETY: the layout has a non-zero size.
                let z = unsafe { a.alloc_zeroed(Layout::from_size_align(size, align).unwrap()) };
                assert_eq!(z as usize % align, 0);
                // SAFETY: `z` holds `size` bytes.
                let zeroed = unsafe { std::slice::from_raw_parts(z, size) };
                assert!(zeroed.iter().all(|&b| b == 0));
                // SAFETY: `z` came from `a` with this layout.
                unsafe { a.dealloc(z, Layout::from_size_align(size, align).unwrap()) };
            }
        }
    }
}
