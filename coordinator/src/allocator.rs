//! Timestamp and id windows, pure: what the lease holder may hand out, and
//! when it must raise the fence in root first.
//!
//! Every value handed out lies below a fence recorded in root. A successor
//! starts at or above the fence it reads from root, so failover never repeats
//! an id and never moves time backwards, whatever the predecessor served.

/// Timestamps are `physical_ms << TSO_LOGICAL_BITS | logical`.
pub const TSO_LOGICAL_BITS: u32 = 18;
pub const TSO_LOGICAL_MAX: u64 = 1 << TSO_LOGICAL_BITS;
/// How far ahead of the clock the TSO fence is raised.
pub const TSO_WINDOW_MS: u64 = 3_000;
/// Raise the TSO fence when less than this much of the window is left.
pub const TSO_REFILL_BELOW_MS: u64 = TSO_WINDOW_MS / 2;
/// Ids handed out per fence raise.
pub const ID_WINDOW: u64 = 10_000;
/// Ids below this are reserved for bootstrap (the first region, its peers).
pub const ID_FIRST: u64 = 1_000;
/// Most timestamps or ids one request may ask for.
pub const TIMESTAMPS_PER_REQUEST_MAX: u32 = 10_000;
pub const IDS_PER_REQUEST_MAX: u32 = 10_000;

const _: () = assert!((TIMESTAMPS_PER_REQUEST_MAX as u64) < TSO_LOGICAL_MAX);
const _: () = assert!((IDS_PER_REQUEST_MAX as u64) <= ID_WINDOW);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// The window's fence is reached; raise it in root, then retry.
    Exhausted,
    /// Asked for zero or more than the per-request maximum.
    BadCount,
}

/// A TSO window: physical time below `fence_ms`, under one lease generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsoWindow {
    pub generation: u64,
    pub fence_ms: u64,
    physical_ms: u64,
    logical: u64,
}

impl TsoWindow {
    /// The window a new holder opens, given the fence root holds; the
    /// returned window's fence is what the holder must raise root's fence to
    /// before serving from it.
    pub fn open(generation: u64, root_fence_ms: u64, now_ms: u64) -> TsoWindow {
        // Everything served before is below root_fence_ms (physical part).
        let physical_ms = now_ms.max(root_fence_ms);
        TsoWindow {
            generation,
            fence_ms: physical_ms + TSO_WINDOW_MS,
            physical_ms,
            logical: 0,
        }
    }

    /// Takes `count` consecutive timestamps; returns the first.
    pub fn take(&mut self, count: u32, now_ms: u64) -> Result<u64, WindowError> {
        if count == 0 || count > TIMESTAMPS_PER_REQUEST_MAX {
            return Err(WindowError::BadCount);
        }
        let count = u64::from(count);
        let mut physical = self.physical_ms;
        let mut logical = self.logical;
        if now_ms > physical {
            physical = now_ms;
            logical = 0;
        }
        if logical + count > TSO_LOGICAL_MAX {
            physical += 1;
            logical = 0;
        }
        if physical >= self.fence_ms {
            return Err(WindowError::Exhausted);
        }
        self.physical_ms = physical;
        self.logical = logical + count;
        Ok(physical << TSO_LOGICAL_BITS | logical)
    }

    /// The fence to raise to, if little of the window is left at `now_ms`.
    pub fn refill_to(&self, now_ms: u64) -> Option<u64> {
        let front = now_ms.max(self.physical_ms);
        (self.fence_ms.saturating_sub(front) < TSO_REFILL_BELOW_MS).then_some(front + TSO_WINDOW_MS)
    }

    /// After root accepted a raise to `fence_ms`.
    pub fn raised(&mut self, fence_ms: u64) {
        self.fence_ms = self.fence_ms.max(fence_ms);
    }
}

/// An id window: ids in `next..fence`, under one lease generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdWindow {
    pub generation: u64,
    pub fence: u64,
    next: u64,
}

impl IdWindow {
    pub fn open(generation: u64, root_fence: u64) -> IdWindow {
        let next = root_fence.max(ID_FIRST);
        IdWindow {
            generation,
            fence: next + ID_WINDOW,
            next,
        }
    }

    pub fn take(&mut self, count: u32) -> Result<u64, WindowError> {
        if count == 0 || count > IDS_PER_REQUEST_MAX {
            return Err(WindowError::BadCount);
        }
        let count = u64::from(count);
        if self.next + count > self.fence {
            return Err(WindowError::Exhausted);
        }
        let first = self.next;
        self.next += count;
        Ok(first)
    }

    /// The next fence when this window is used up.
    pub fn refill_to(&self) -> u64 {
        self.next.max(self.fence) + ID_WINDOW
    }

    pub fn raised(&mut self, fence: u64) {
        self.next = self.next.max(self.fence);
        self.fence = self.fence.max(fence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_increase_strictly_within_a_window_even_when_the_clock_stalls() {
        let mut window = TsoWindow::open(1, 0, 1_000);
        let mut last = 0;
        for _ in 0..1_000 {
            let first = window.take(100, 1_000).unwrap();
            assert!(first > last);
            last = first + 99;
        }
        // The clock going backwards does not move time backwards.
        let next = window.take(1, 10).unwrap();
        assert!(next > last);
    }

    #[test]
    fn a_successor_starts_above_everything_its_predecessor_could_serve() {
        let mut first_holder = TsoWindow::open(1, 0, 5_000);
        // The predecessor served up to the very end of its window, with a
        // clock far ahead of the successor's.
        let fence = first_holder.fence_ms;
        let last = first_holder.take(1, fence - 1).unwrap();
        let mut successor = TsoWindow::open(2, fence, 100);
        assert!(successor.take(1, 100).unwrap() > last);
    }

    #[test]
    fn window_is_exhausted_at_the_fence_and_refills_before_then() {
        let mut window = TsoWindow::open(1, 0, 0);
        assert_eq!(window.refill_to(0), None);
        assert!(window
            .refill_to(TSO_WINDOW_MS - TSO_REFILL_BELOW_MS + 1)
            .is_some());
        assert_eq!(window.take(1, TSO_WINDOW_MS), Err(WindowError::Exhausted));
        window.raised(TSO_WINDOW_MS * 2);
        assert!(window.take(1, TSO_WINDOW_MS).is_ok());
    }

    #[test]
    fn logical_overflow_moves_to_the_next_millisecond() {
        let mut window = TsoWindow::open(1, 0, 10);
        let mut last = 0;
        for _ in 0..(TSO_LOGICAL_MAX / u64::from(TIMESTAMPS_PER_REQUEST_MAX) + 2) {
            let first = window.take(TIMESTAMPS_PER_REQUEST_MAX, 10).unwrap();
            assert!(first > last || last == 0);
            last = first + u64::from(TIMESTAMPS_PER_REQUEST_MAX) - 1;
        }
        assert!(
            last >> TSO_LOGICAL_BITS > 10,
            "spilled into the next millisecond"
        );
    }

    #[test]
    fn ids_are_never_repeated_across_windows_and_holders() {
        let mut first = IdWindow::open(1, 0);
        let a = first.take(10).unwrap();
        assert_eq!(a, ID_FIRST);
        let mut successor = IdWindow::open(2, first.fence);
        assert!(successor.take(1).unwrap() >= first.fence);
        let mut window = IdWindow::open(3, 50_000);
        while window.take(IDS_PER_REQUEST_MAX).is_ok() {}
        assert_eq!(window.take(1), Err(WindowError::Exhausted));
        let to = window.refill_to();
        window.raised(to);
        assert!(window.take(1).unwrap() >= 50_000 + ID_WINDOW);
    }

    #[test]
    fn bad_counts_are_refused() {
        let mut window = TsoWindow::open(1, 0, 0);
        assert_eq!(window.take(0, 0), Err(WindowError::BadCount));
        assert_eq!(
            window.take(TIMESTAMPS_PER_REQUEST_MAX + 1, 0),
            Err(WindowError::BadCount)
        );
        let mut ids = IdWindow::open(1, 0);
        assert_eq!(ids.take(0), Err(WindowError::BadCount));
    }
}
