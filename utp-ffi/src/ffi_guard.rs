//! The panic boundary: every `extern "C"` entry point runs its body through
//! `guard`, so a Rust panic never unwinds into C. A panic (a bug on our
//! side) makes the call return libutp's failure value for that function.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Run `f`; on panic return `on_panic` instead.
///
/// `AssertUnwindSafe` is sound here: all state reachable from a handle lives
/// in `Cell`/`RefCell`s whose invariants hold between engine calls, and a
/// `RefCell` borrow is released while unwinding.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => on_panic,
    }
}

/// `return $fail` (or plain `return`) from the enclosing function when `$opt`
/// is `None` (the shape of every pointer check).
macro_rules! try_or {
    ($opt:expr) => {
        match $opt {
            Some(v) => v,
            None => return,
        }
    };
    ($opt:expr, $fail:expr) => {
        match $opt {
            Some(v) => v,
            None => return $fail,
        }
    };
}
pub(crate) use try_or;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_the_failure_value() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let v = guard(-1, || -> i32 { panic!("boom") });
        std::panic::set_hook(prev);
        assert_eq!(v, -1);
        assert_eq!(guard(-1, || 7), 7);
    }
}
