//! Giving freed KV caches back to the operating system.
//!
//! A server allocates one KV cache per concurrent request (per layer, keys
//! and values of 128 KB and more each) and frees it when the request ends.
//! glibc's malloc raises its mmap threshold each time such a block is freed,
//! so later caches come from its heaps and their pages stay with the
//! process after they are freed: after a burst of traffic the server would
//! keep its peak memory for good. Pinning the threshold at 128 KB keeps
//! every cache-sized block in its own mapping, returned on free.

/// Pins glibc's mmap threshold (Linux with glibc; elsewhere nothing to do).
pub(crate) fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's tuning; called once at
        // start-up, before the worker threads exist. A refusal (return 0)
        // leaves the default behaviour, which is still correct.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    }
}
