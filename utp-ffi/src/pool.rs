//! Handle memory: contexts and sockets are never returned to the allocator.
//!
//! A released object keeps its memory as a *tombstone* (its magic number
//! says "dead", so every entry point refuses it) and goes to the back of a
//! free list. It is only reused once `quarantine` newer tombstones exist,
//! so a handle used after `UTP_STATE_DESTROYING` / `utp_destroy` (undefined
//! behaviour in libutp) hits a tombstone and gets the failure value, and even
//! long after, it can at worst alias another live object of the same type:
//! it never touches freed memory. Memory stays bounded by the peak number of
//! live objects plus the quarantine.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Magic values of live objects, one per handle type, so that a pointer of
/// one type passed where another is expected is refused, never reinterpreted.
/// Each object type keeps its magic as its first field (`#[repr(C)]`).
pub(crate) const MAGIC_CONTEXT: u32 = 0x7574_7063; // "utpc"
pub(crate) const MAGIC_SOCKET: u32 = 0x7574_7073; // "utps"
pub(crate) const MAGIC_THREADED_CONTEXT: u32 = 0x7574_7443; // "uttC"
pub(crate) const MAGIC_THREADED_SOCKET: u32 = 0x7574_7453; // "uttS"
/// Magic value of a tombstone.
pub(crate) const MAGIC_DEAD: u32 = 0xdead_7570;

/// A free list of leaked `T`s, reused first-in first-out after a quarantine.
pub(crate) struct Pool {
    free: Mutex<VecDeque<usize>>,
    quarantine: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("quarantine", &self.quarantine)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) const fn new(quarantine: usize) -> Self {
        Pool {
            free: Mutex::new(VecDeque::new()),
            quarantine,
        }
    }

    /// A tombstone old enough to be reused, if any.
    ///
    /// # Safety
    /// `T` must be the type every address given to [`Pool::release`] on this pool had.
    pub(crate) unsafe fn reuse<T>(&self) -> Option<&'static T> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() > self.quarantine {
            let addr = free.pop_front()?;
            // SAFETY: addresses in the list come from `Box::leak` of a `T` (caller's promise).
            Some(unsafe { &*(addr as *const T) })
        } else {
            None
        }
    }

    /// A brand new object, leaked (it lives for the rest of the process).
    pub(crate) fn leak<T>(&self, value: T) -> &'static T {
        Box::leak(Box::new(value))
    }

    /// Put a tombstone on the free list.
    pub(crate) fn release<T>(&self, obj: &'static T) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push_back(obj as *const T as usize);
    }
}
