//! A linearizability checker for registers: the Wing–Gong search with
//! Lowe's memoization (WGL), the algorithm behind Knossos and Porcupine.
//!
//! A history is a list of operations on keys; each key is a register that
//! holds `Option<V>` (`None` until first written), and each operation is a
//! `Write(v)` or a `Read` that returned `Option<v>`, with the instants it
//! was invoked and completed. The history is linearizable when every
//! operation can be given one point between its invoke and its completion
//! such that, in the order of those points, every read returns the value of
//! the write before it.
//!
//! Owns: the search and its counterexample. Never knows: Arbor, clocks or IO
//! — times are nanoseconds on whatever monotonic scale the caller chose, so
//! a test drives it with hand-written or generated histories.
//!
//! Invariants and why:
//! - Keys are checked one at a time. Linearizability is local (Herlihy &
//!   Wing): a history of independent registers is linearizable exactly when
//!   each register's sub-history is, so the search is exponential at worst
//!   in one key's concurrency, not the whole history's (P-compositionality).
//! - The search memoizes every (set of operations placed, register value)
//!   it reached: two paths that placed the same operations and left the same
//!   value have the same future, so each is explored once (Lowe).
//! - An operation whose outcome is unknown (a timeout, a transport error
//!   after the request may have been sent) has [`Completion::Unknown`]: it
//!   may take effect at any point after its invoke, or never. A write of
//!   that kind stays open to the end of the history (taking effect after
//!   everything else is the same as never); an unknown read constrains
//!   nothing and is dropped. An unknown write whose value no read returned
//!   is dropped too: any linearization with it is one without it, and
//!   keeping each such write would double the states to search.
//! - A definite failure (the system said it did nothing) is not an
//!   operation: the caller leaves it out of the history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;

/// Most operations in one history; past it [`check`] refuses rather than
/// allocate without bound.
pub const HISTORY_OPERATIONS_MAX: usize = 1_000_000;
/// Most search steps for one key before [`check`] gives up undecided (a
/// step is one look at one event). A few thousand operations per key with a
/// handful of clients take tens of thousands.
pub const SEARCH_STEPS_MAX: u64 = 50_000_000;
/// Operations of the furthest linearization shown in a counterexample.
pub const REPORT_PREFIX_TAIL_MAX: usize = 12;
/// Open operations (overlapping the one that could not be placed) shown.
pub const REPORT_OPEN_MAX: usize = 12;

/// What one operation did to its register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp<V> {
    Write(V),
    /// The value read; `None` when the key held nothing.
    Read(Option<V>),
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// It returned at this instant (nanoseconds, the scale of `invoke_ns`).
    At(u64),
    /// It failed ambiguously: it may or may not have taken effect.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<K, V> {
    /// Who issued it; only for reports.
    pub client: usize,
    pub key: K,
    pub op: RegisterOp<V>,
    pub invoke_ns: u64,
    pub completion: Completion,
}

/// What a successful check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub keys: usize,
    /// Reads that returned, all checked.
    pub reads: usize,
    /// Writes that returned, all checked.
    pub writes: usize,
    /// Writes of unknown outcome whose value some read returned: checked,
    /// free to take effect any time after their invoke.
    pub ambiguous_writes: usize,
    /// Writes of unknown outcome whose value nobody read: dropped.
    pub unobserved_ambiguous_writes: usize,
    /// Reads of unknown outcome: dropped.
    pub ambiguous_reads: usize,
    /// Search steps over all keys.
    pub search_steps: u64,
}

/// Why a history did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// No order of the operations fits; `explanation` names the operation
    /// that could not be placed and the furthest linearization found.
    NotLinearizable {
        key: String,
        explanation: String,
    },
    /// An operation completed before it was invoked: the caller's clock or
    /// bookkeeping is wrong, not the system under test.
    CompletesBeforeInvoke {
        key: String,
        client: usize,
        invoke_ns: u64,
        complete_ns: u64,
    },
    HistoryTooLong {
        operations: usize,
        limit: usize,
    },
    /// The search for one key ran past [`SEARCH_STEPS_MAX`] undecided.
    SearchBudgetExhausted {
        key: String,
        steps: u64,
    },
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::NotLinearizable { key, explanation } => {
                write!(f, "key {key} is not linearizable: {explanation}")
            }
            CheckFailure::CompletesBeforeInvoke {
                key,
                client,
                invoke_ns,
                complete_ns,
            } => write!(
                f,
                "key {key}: an operation of client {client} completes at {} before its invoke at {}; fix the history's clock",
                format_ns(*complete_ns),
                format_ns(*invoke_ns)
            ),
            CheckFailure::HistoryTooLong { operations, limit } => write!(
                f,
                "history of {operations} operations exceeds the checker's limit of {limit}; record a shorter run"
            ),
            CheckFailure::SearchBudgetExhausted { key, steps } => write!(
                f,
                "key {key}: undecided after {steps} search steps; fewer concurrent clients or fewer ambiguous writes per key keep the search small"
            ),
        }
    }
}

impl std::error::Error for CheckFailure {}

/// Checks a history key by key; the counts on success, the first key's
/// counterexample otherwise.
pub fn check<K, V>(history: &[Operation<K, V>]) -> Result<CheckReport, CheckFailure>
where
    K: Ord + fmt::Debug,
    V: Eq + Hash + fmt::Debug,
{
    if history.len() > HISTORY_OPERATIONS_MAX {
        return Err(CheckFailure::HistoryTooLong {
            operations: history.len(),
            limit: HISTORY_OPERATIONS_MAX,
        });
    }
    let mut by_key: BTreeMap<&K, Vec<&Operation<K, V>>> = BTreeMap::new();
    for operation in history {
        by_key.entry(&operation.key).or_default().push(operation);
    }
    let mut report = CheckReport {
        keys: by_key.len(),
        ..CheckReport::default()
    };
    for (key, operations) in by_key {
        let key = format!("{key:?}");
        let register = Register::new(&key, operations, &mut report)?;
        report.search_steps += register.search(&key)?;
    }
    Ok(report)
}

/// What an operation does to the register's state (value ids, 0 = absent).
#[derive(Debug, Clone, Copy)]
enum Step {
    Write(u32),
    Read(u32),
}

impl Step {
    /// The state after the step, or None when a read sees another value.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Write(value) => Some(value),
            Step::Read(value) => (value == state).then_some(state),
        }
    }
}

/// One key's sub-history, ready to search: the operations kept, their
/// steps, and the events (call, return) in time order.
struct Register<'a, K, V> {
    operations: Vec<&'a Operation<K, V>>,
    steps: Vec<Step>,
    /// Value by id - 1 (id 0 is "absent"), for reports.
    values: Vec<&'a V>,
    events: Events,
}

impl<'a, K, V> Register<'a, K, V>
where
    V: Eq + Hash + fmt::Debug,
{
    fn new(
        key: &str,
        operations: Vec<&'a Operation<K, V>>,
        report: &mut CheckReport,
    ) -> Result<Self, CheckFailure> {
        for operation in &operations {
            if let Completion::At(complete_ns) = operation.completion {
                if complete_ns < operation.invoke_ns {
                    return Err(CheckFailure::CompletesBeforeInvoke {
                        key: key.to_string(),
                        client: operation.client,
                        invoke_ns: operation.invoke_ns,
                        complete_ns,
                    });
                }
            }
        }
        let observed: HashSet<&V> = operations
            .iter()
            .filter(|operation| operation.completion != Completion::Unknown)
            .filter_map(|operation| match &operation.op {
                RegisterOp::Read(Some(value)) => Some(value),
                _ => None,
            })
            .collect();
        let kept: Vec<&Operation<K, V>> = operations
            .into_iter()
            .filter(|operation| match (&operation.op, operation.completion) {
                (RegisterOp::Read(_), Completion::Unknown) => {
                    report.ambiguous_reads += 1;
                    false
                }
                (RegisterOp::Write(value), Completion::Unknown) if !observed.contains(value) => {
                    report.unobserved_ambiguous_writes += 1;
                    false
                }
                (RegisterOp::Write(_), Completion::Unknown) => {
                    report.ambiguous_writes += 1;
                    true
                }
                (RegisterOp::Write(_), Completion::At(_)) => {
                    report.writes += 1;
                    true
                }
                (RegisterOp::Read(_), Completion::At(_)) => {
                    report.reads += 1;
                    true
                }
            })
            .collect();
        let mut ids: HashMap<&V, u32> = HashMap::new();
        let mut values: Vec<&V> = Vec::new();
        let mut id_of = |value: &'a V| {
            *ids.entry(value).or_insert_with(|| {
                values.push(value);
                u32::try_from(values.len()).expect("HISTORY_OPERATIONS_MAX fits in u32")
            })
        };
        let steps = kept
            .iter()
            .map(|operation| match &operation.op {
                RegisterOp::Write(value) => Step::Write(id_of(value)),
                RegisterOp::Read(Some(value)) => Step::Read(id_of(value)),
                RegisterOp::Read(None) => Step::Read(0),
            })
            .collect();
        let events = Events::new(&kept);
        Ok(Self {
            operations: kept,
            steps,
            values,
            events,
        })
    }

    /// The WGL search: place the earliest-invoked open operation that fits,
    /// go back when an operation's return is reached unplaced. The steps
    /// taken, or the counterexample.
    fn search(mut self, key: &str) -> Result<u64, CheckFailure> {
        let mut state = 0u32;
        let mut placed = Bitset::new(self.operations.len());
        let mut seen: HashSet<(Bitset, u32)> = HashSet::new();
        // (call event placed, state before it), in linearization order.
        let mut stack: Vec<(usize, u32)> = Vec::new();
        let mut stuck: Option<Stuck> = None;
        let mut steps = 0u64;
        let mut event = self.events.first();
        while !self.events.is_empty() {
            steps += 1;
            if steps > SEARCH_STEPS_MAX {
                return Err(CheckFailure::SearchBudgetExhausted {
                    key: key.to_string(),
                    steps,
                });
            }
            let operation = self.events.operation[event];
            if self.events.is_call[event] {
                if let Some(after) = self.steps[operation].apply(state) {
                    let mut next = placed.clone();
                    next.insert(operation);
                    if seen.insert((next.clone(), after)) {
                        stack.push((event, state));
                        state = after;
                        placed = next;
                        self.events.lift(event);
                        event = self.events.first();
                        continue;
                    }
                }
                event = self.events.next[event];
                continue;
            }
            // A return reached before its operation was placed: this path
            // fails. Events are numbered in time order, so the furthest
            // return any path got stuck at bounds the longest prefix of the
            // history that can be linearized.
            if stuck.as_ref().is_none_or(|s| event > s.return_event) {
                stuck = Some(Stuck {
                    return_event: event,
                    operation,
                    prefix: stack
                        .iter()
                        .map(|(call, _)| self.events.operation[*call])
                        .collect(),
                    state,
                });
            }
            let Some((call, before)) = stack.pop() else {
                let stuck = stuck.expect("a failing search records where it got stuck");
                return Err(CheckFailure::NotLinearizable {
                    key: key.to_string(),
                    explanation: self.explain(&stuck),
                });
            };
            placed.remove(self.events.operation[call]);
            state = before;
            self.events.unlift(call);
            event = self.events.next[call];
        }
        Ok(steps)
    }

    fn explain(&self, stuck: &Stuck) -> String {
        let blocked = self.operations[stuck.operation];
        let complete = match blocked.completion {
            Completion::At(ns) => format_ns(ns),
            Completion::Unknown => "never".into(),
        };
        let mut out = format!(
            "no order of the operations completed by {complete} fits (every earlier prefix does): {} cannot be placed.\n\
             The furthest linearization places {} operation{}",
            self.describe(stuck.operation),
            stuck.prefix.len(),
            if stuck.prefix.len() == 1 { "" } else { "s" }
        );
        let tail_start = stuck.prefix.len().saturating_sub(REPORT_PREFIX_TAIL_MAX);
        out.push_str(", ending with (in order):\n");
        for (position, operation) in stuck.prefix.iter().enumerate().skip(tail_start) {
            out.push_str(&format!(
                "  {:>5}. {}\n",
                position + 1,
                self.describe(*operation)
            ));
        }
        out.push_str(&format!(
            "after which the register holds {}.\nOperations still open then, invoked before {complete}:\n",
            self.describe_state(stuck.state)
        ));
        let placed: HashSet<usize> = stuck.prefix.iter().copied().collect();
        let end_ns = match blocked.completion {
            Completion::At(ns) => ns,
            Completion::Unknown => u64::MAX,
        };
        let open: Vec<usize> = (0..self.operations.len())
            .filter(|index| !placed.contains(index))
            .filter(|index| self.operations[*index].invoke_ns <= end_ns)
            .take(REPORT_OPEN_MAX)
            .collect();
        for index in open {
            out.push_str(&format!("        {}\n", self.describe(index)));
        }
        out
    }

    fn describe(&self, index: usize) -> String {
        let operation = self.operations[index];
        let what = match &operation.op {
            RegisterOp::Write(value) => format!("write {value:?}"),
            RegisterOp::Read(value) => format!("read -> {value:?}"),
        };
        let complete = match operation.completion {
            Completion::At(ns) => format_ns(ns),
            Completion::Unknown => "unknown".into(),
        };
        format!(
            "client {} {what} [{} .. {complete}]",
            operation.client,
            format_ns(operation.invoke_ns)
        )
    }

    fn describe_state(&self, state: u32) -> String {
        match state {
            0 => "nothing".into(),
            id => format!("{:?}", self.values[id as usize - 1]),
        }
    }
}

/// Where the furthest-reaching path of a failed search got stuck.
struct Stuck {
    return_event: usize,
    /// The operation whose return was reached unplaced.
    operation: usize,
    /// Operations placed on that path, in linearization order.
    prefix: Vec<usize>,
    state: u32,
}

/// The events of a sub-history as a doubly linked list, so placing an
/// operation removes its call and return in O(1) and going back restores
/// them. Index 0 is the head, `len - 1` the tail, and events in between are
/// numbered in time order (calls before returns at one instant, so touching
/// operations count as concurrent — the lenient reading).
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    operation: Vec<usize>,
    is_call: Vec<bool>,
    /// The return event of each call event.
    partner: Vec<usize>,
}

const HEAD: usize = 0;

impl Events {
    fn new<K, V>(operations: &[&Operation<K, V>]) -> Self {
        // (time, return?, operation); an unknown completion is a return
        // after everything else.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
        for (index, operation) in operations.iter().enumerate() {
            order.push((operation.invoke_ns, false, index));
            let complete_ns = match operation.completion {
                Completion::At(ns) => ns,
                Completion::Unknown => u64::MAX,
            };
            order.push((complete_ns, true, index));
        }
        order.sort_unstable();
        let len = order.len() + 2;
        let mut events = Events {
            next: (1..=len).collect(),
            prev: (0..len).map(|i| i.saturating_sub(1)).collect(),
            operation: vec![usize::MAX; len],
            is_call: vec![false; len],
            partner: vec![usize::MAX; len],
        };
        let mut call_event = vec![usize::MAX; operations.len()];
        for (position, (_, is_return, index)) in order.into_iter().enumerate() {
            let event = position + 1;
            events.operation[event] = index;
            events.is_call[event] = !is_return;
            if is_return {
                events.partner[call_event[index]] = event;
            } else {
                call_event[index] = event;
            }
        }
        events
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn is_empty(&self) -> bool {
        self.next[HEAD] == self.tail()
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        let ret = self.partner[call];
        for event in [call, ret] {
            let (prev, next) = (self.prev[event], self.next[event]);
            self.next[prev] = next;
            self.prev[next] = prev;
        }
    }

    /// Puts back what [`Events::lift`] removed, in reverse order.
    fn unlift(&mut self, call: usize) {
        let ret = self.partner[call];
        for event in [ret, call] {
            let (prev, next) = (self.prev[event], self.next[event]);
            self.next[prev] = event;
            self.prev[next] = event;
        }
    }
}

/// The set of operations placed, as bits.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    fn new(bits: usize) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn insert(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn remove(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }
}

/// Nanoseconds as milliseconds with microsecond precision.
fn format_ns(ns: u64) -> String {
    format!("{}.{:03} ms", ns / 1_000_000, (ns % 1_000_000) / 1_000)
}

/// A small seeded generator (SplitMix64) for generated histories and
/// workloads: a printed seed reproduces a run, and no dependency is needed.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0; the modulo bias is negligible
    /// for the small bounds tests use).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0) has no value to return");
        self.next_u64() % bound
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    type Op = Operation<&'static str, &'static str>;

    fn on(key: &'static str, mut operation: Op) -> Op {
        operation.key = key;
        operation
    }

    fn write(client: usize, value: &'static str, invoke_ns: u64, complete_ns: u64) -> Op {
        Operation {
            client,
            key: "k",
            op: RegisterOp::Write(value),
            invoke_ns,
            completion: Completion::At(complete_ns),
        }
    }

    fn read(client: usize, value: Option<&'static str>, invoke_ns: u64, complete_ns: u64) -> Op {
        Operation {
            client,
            key: "k",
            op: RegisterOp::Read(value),
            invoke_ns,
            completion: Completion::At(complete_ns),
        }
    }

    fn unknown(mut operation: Op) -> Op {
        operation.completion = Completion::Unknown;
        operation
    }

    fn explanation(result: Result<CheckReport, CheckFailure>) -> String {
        match result {
            Err(CheckFailure::NotLinearizable { explanation, .. }) => explanation,
            other => panic!("expected a counterexample, got {other:?}"),
        }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let history = [
            read(1, None, 0, 5),
            write(0, "a", 10, 20),
            read(1, Some("a"), 30, 40),
            write(0, "b", 50, 60),
            read(1, Some("b"), 70, 80),
        ];
        let report = check(&history).expect("linearizable");
        assert_eq!((report.keys, report.reads, report.writes), (1, 3, 2));
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_the_old_or_the_new_value() {
        for (first, second) in [("a", "a"), ("a", "b"), ("b", "b")] {
            let history = [
                write(0, "a", 0, 10),
                write(0, "b", 20, 100),
                read(1, Some(first), 30, 40),
                read(1, Some(second), 50, 60),
            ];
            check(&history).unwrap_or_else(|e| panic!("{first} then {second}: {e}"));
        }
    }

    #[test]
    fn overlapping_writes_may_take_effect_in_either_order() {
        for last in ["a", "b"] {
            let history = [
                write(0, "a", 0, 100),
                write(1, "b", 10, 90),
                read(2, Some(last), 200, 210),
            ];
            check(&history).unwrap_or_else(|e| panic!("last {last}: {e}"));
        }
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_rejected() {
        let history = [
            write(0, "a", 0, 10),
            write(0, "b", 20, 30),
            read(1, Some("a"), 40, 50),
        ];
        let explanation = explanation(check(&history));
        assert!(
            explanation.contains("client 1 read -> Some(\"a\")")
                && explanation.contains("cannot be placed"),
            "{explanation}"
        );
    }

    #[test]
    fn reading_nothing_after_a_completed_write_is_rejected() {
        let history = [write(0, "a", 0, 10), read(1, None, 20, 30)];
        assert!(matches!(
            check(&history),
            Err(CheckFailure::NotLinearizable { .. })
        ));
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected() {
        let history = [write(0, "a", 0, 10), read(1, Some("x"), 5, 30)];
        let explanation = explanation(check(&history));
        assert!(explanation.contains("read -> Some(\"x\")"), "{explanation}");
    }

    #[test]
    fn two_reads_seeing_the_new_value_then_the_old_are_rejected() {
        let history = [
            write(0, "a", 0, 10),
            write(0, "b", 20, 200),
            read(1, Some("b"), 30, 40),
            read(2, Some("a"), 50, 60),
        ];
        let explanation = explanation(check(&history));
        assert!(
            explanation.contains("client 2 read -> Some(\"a\")"),
            "{explanation}"
        );
    }

    #[test]
    fn an_ambiguous_write_may_take_effect_long_after_its_invoke() {
        let history = [
            write(0, "a", 0, 10),
            unknown(write(1, "b", 20, 0)),
            read(2, Some("a"), 100, 110),
            read(2, Some("b"), 200, 210),
        ];
        let report = check(&history).expect("linearizable");
        assert_eq!(report.ambiguous_writes, 1);
    }

    #[test]
    fn an_ambiguous_write_may_never_take_effect() {
        let history = [
            write(0, "a", 0, 10),
            unknown(write(1, "b", 20, 0)),
            read(2, Some("a"), 100, 110),
            write(0, "c", 120, 130),
            read(2, Some("c"), 200, 210),
        ];
        let report = check(&history).expect("linearizable");
        assert_eq!(report.unobserved_ambiguous_writes, 1);
        assert_eq!(report.ambiguous_writes, 0);
    }

    #[test]
    fn an_ambiguous_write_cannot_take_effect_before_its_invoke() {
        let history = [read(0, Some("b"), 0, 50), unknown(write(1, "b", 100, 0))];
        assert!(matches!(
            check(&history),
            Err(CheckFailure::NotLinearizable { .. })
        ));
    }

    #[test]
    fn an_ambiguous_write_takes_effect_at_most_once() {
        let history = [
            write(0, "a", 0, 10),
            unknown(write(1, "b", 20, 0)),
            write(0, "c", 30, 40),
            read(2, Some("b"), 50, 60),
            read(2, Some("c"), 70, 80),
        ];
        let explanation = explanation(check(&history));
        assert!(explanation.contains("read -> Some(\"c\")"), "{explanation}");
    }

    #[test]
    fn ambiguous_reads_constrain_nothing_and_are_dropped() {
        let history = [write(0, "a", 0, 10), unknown(read(1, Some("zzz"), 20, 0))];
        let report = check(&history).expect("linearizable");
        assert_eq!((report.ambiguous_reads, report.reads), (1, 0));
    }

    #[test]
    fn keys_are_separate_registers() {
        let fine = [
            on("k1", write(0, "a", 0, 10)),
            on("k2", write(1, "b", 0, 10)),
            on("k1", read(2, Some("a"), 20, 30)),
            on("k2", read(2, Some("b"), 20, 30)),
        ];
        assert_eq!(check(&fine).expect("linearizable").keys, 2);
        let crossed = [
            on("k1", write(0, "a", 0, 10)),
            on("k2", read(1, Some("a"), 20, 30)),
        ];
        match check(&crossed) {
            Err(CheckFailure::NotLinearizable { key, .. }) => assert_eq!(key, "\"k2\""),
            other => panic!("expected k2 to fail, got {other:?}"),
        }
    }

    #[test]
    fn an_operation_completing_before_its_invoke_is_refused() {
        let history = [write(3, "a", 50, 40)];
        assert_eq!(
            check(&history),
            Err(CheckFailure::CompletesBeforeInvoke {
                key: "\"k\"".into(),
                client: 3,
                invoke_ns: 50,
                complete_ns: 40,
            })
        );
    }

    #[test]
    fn the_counterexample_names_the_blocked_read_and_the_furthest_linearization() {
        const VALUES: [&str; 20] = [
            "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13",
            "v14", "v15", "v16", "v17", "v18", "v19",
        ];
        let mut history: Vec<Op> = VALUES
            .iter()
            .enumerate()
            .map(|(i, value)| {
                write(
                    0,
                    value,
                    i as u64 * 1_000_000,
                    i as u64 * 1_000_000 + 500_000,
                )
            })
            .collect();
        history.push(read(1, Some("v3"), 30_000_000, 31_000_000));
        let explanation = explanation(check(&history));
        println!("{explanation}");
        assert!(
            explanation.contains("completed by 31.000 ms"),
            "{explanation}"
        );
        assert!(
            explanation.contains(
                "client 1 read -> Some(\"v3\") [30.000 ms .. 31.000 ms] cannot be placed"
            ),
            "{explanation}"
        );
        assert!(
            explanation.contains("places 20 operations"),
            "{explanation}"
        );
        assert!(
            explanation.contains("the register holds \"v19\""),
            "{explanation}"
        );
        assert!(
            explanation.contains("   20. client 0 write \"v19\""),
            "{explanation}"
        );
    }

    // ---- generated histories ------------------------------------------

    type Generated = Operation<String, String>;

    /// Per key, a sequential history (each operation takes effect at its
    /// own instant, reads return the value then) whose intervals are then
    /// widened at random around those instants, so operations overlap; a
    /// few writes are made ambiguous (some took effect, some did not) and
    /// a few reads lose their outcome. Linearizable by construction.
    fn generate(seed: u64, keys: usize, per_key: usize, overlap_ns: u64) -> Vec<Generated> {
        let mut rng = SplitMix64::new(seed);
        let mut history = Vec::new();
        for key in 0..keys {
            let mut current: Option<String> = None;
            let mut at = overlap_ns;
            for index in 0..per_key {
                at += 1 + rng.below(1_000);
                let invoke_ns = at - rng.below(overlap_ns);
                let complete_ns = at + rng.below(overlap_ns);
                let value = format!("k{key}-{index}");
                let roll = rng.below(100);
                let (op, completion) = match roll {
                    0..45 => {
                        current = Some(value.clone());
                        (RegisterOp::Write(value), Completion::At(complete_ns))
                    }
                    45..49 => {
                        current = Some(value.clone());
                        (RegisterOp::Write(value), Completion::Unknown)
                    }
                    49..52 => (RegisterOp::Write(value), Completion::Unknown),
                    52..54 => (RegisterOp::Read(Some("lost".into())), Completion::Unknown),
                    _ => (
                        RegisterOp::Read(current.clone()),
                        Completion::At(complete_ns),
                    ),
                };
                history.push(Operation {
                    client: rng.below(8) as usize,
                    key: format!("key-{key}"),
                    op,
                    invoke_ns,
                    completion,
                });
            }
        }
        // As a recorder would list them: by invoke, keys interleaved.
        history.sort_by_key(|operation| operation.invoke_ns);
        history
    }

    fn completed_at(operation: &Generated) -> Option<u64> {
        match operation.completion {
            Completion::At(ns) => Some(ns),
            Completion::Unknown => None,
        }
    }

    fn latest_completed_write_before(
        history: &[Generated],
        key: &str,
        before_ns: u64,
    ) -> Option<usize> {
        (0..history.len())
            .filter(|i| history[*i].key == key)
            .filter(|i| matches!(history[*i].op, RegisterOp::Write(_)))
            .filter(|i| completed_at(&history[*i]).is_some_and(|ns| ns < before_ns))
            .max_by_key(|i| completed_at(&history[*i]))
    }

    /// Makes one completed read return the value of a write that a later
    /// completed write had replaced before the read began — a stale read no
    /// order can explain. The index of that read, or None if the history
    /// has no such pattern.
    fn inject_stale_read(history: &mut [Generated], rng: &mut SplitMix64) -> Option<usize> {
        let reads: Vec<usize> = (0..history.len())
            .filter(|i| matches!(history[*i].op, RegisterOp::Read(_)))
            .filter(|i| completed_at(&history[*i]).is_some())
            .collect();
        for _ in 0..reads.len() {
            let read = reads[rng.below(reads.len() as u64) as usize];
            let key = history[read].key.clone();
            let Some(newer) = latest_completed_write_before(history, &key, history[read].invoke_ns)
            else {
                continue;
            };
            let Some(older) =
                latest_completed_write_before(history, &key, history[newer].invoke_ns)
            else {
                continue;
            };
            let RegisterOp::Write(stale) = history[older].op.clone() else {
                unreachable!("latest_completed_write_before returns writes");
            };
            history[read].op = RegisterOp::Read(Some(stale));
            return Some(read);
        }
        None
    }

    #[test]
    fn generated_sequential_histories_with_random_overlap_are_linearizable() {
        for seed in 0..30 {
            let history = generate(seed, 3, 300, 2_000);
            let report = check(&history).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(report.keys, 3, "seed {seed}");
            assert!(
                report.reads > 100 && report.writes > 100,
                "seed {seed}: {report:?}"
            );
        }
    }

    #[test]
    fn generated_histories_with_a_stale_read_injected_are_rejected() {
        for seed in 0..30 {
            let mut history = generate(seed, 3, 300, 2_000);
            let mut rng = SplitMix64::new(seed ^ 0xDEAD_BEEF);
            let read = inject_stale_read(&mut history, &mut rng)
                .unwrap_or_else(|| panic!("seed {seed}: no read to make stale"));
            let key = format!("{:?}", history[read].key);
            match check(&history) {
                Err(CheckFailure::NotLinearizable { key: failed, .. }) => {
                    assert_eq!(failed, key, "seed {seed}")
                }
                other => panic!("seed {seed}: stale read {read} not caught: {other:?}"),
            }
        }
    }

    #[test]
    fn thousands_of_operations_per_key_check_in_few_steps() {
        const PER_KEY: usize = 3_000;
        let history = generate(7, 3, PER_KEY, 2_000);
        let started = Instant::now();
        let report = check(&history).expect("linearizable");
        println!(
            "{} operations over {} keys checked in {:?}: {report:?}",
            history.len(),
            report.keys,
            started.elapsed()
        );
        // Memoization keeps the search near-linear in the history; without
        // it (or with every ambiguous write kept) this grows exponentially.
        assert!(
            report.search_steps < 40 * history.len() as u64,
            "{report:?}"
        );
    }
}
