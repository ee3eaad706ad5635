//! Coordinator failover: how long no coordinator serves timestamps after
//! the lease holder dies (kill -9) or stops (SIGTERM: it seals its lease on
//! the way out, so the standby need not wait for the lease to run out).
//!
//! Every coordinator is polled by a loop of its own, so the moment the
//! successor starts serving is seen within about [`POLL_PAUSE_MS`] whatever
//! the stopped one does to its callers' connections. The gap ends at the
//! first answer from a coordinator other than the old holder under a newer
//! lease generation ([`judge`]): the old holder may still answer while it
//! shuts down, and that is not a successor serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::GetTimestampsRequest;

use crate::arbor::{channel, Arbor};
use crate::error::{BenchError, Result};
use crate::plan::HolderStop;
use crate::procs::Supervisor;
use crate::FAILOVER_WAIT_MAX_MS;

/// Deadline of one polling call: a dead coordinator's call must not hold
/// up its loop for long.
pub const POLL_CALL_TIMEOUT_MS: u64 = 250;
/// Pause after every polling call, so two loops do not take the CPU the
/// successor needs to take over (the machine has few cores).
pub const POLL_PAUSE_MS: u64 = 5;
/// Polling before the holder is stopped, to know its generation and its
/// timestamps.
pub const POLL_BEFORE_STOP_MS: u64 = 500;
/// Most answers one repetition keeps; past it, answers are dropped (at one
/// per [`POLL_PAUSE_MS`] per loop this is far beyond the wait).
pub const ANSWERS_MAX: usize = 100_000;
const _: () = assert!(
    (ANSWERS_MAX as u64) > 2 * (FAILOVER_WAIT_MAX_MS + POLL_BEFORE_STOP_MS) / POLL_PAUSE_MS
);

/// One successful `GetTimestamps`, times in ms since the repetition began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub coordinator: usize,
    pub answered_ms: f64,
    pub first: u64,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// From the stop to the successor's first answer; `None`: no successor
    /// served.
    pub gap_ms: Option<f64>,
    pub successor: Option<Answer>,
    /// The newest generation the old holder answered under.
    pub old_generation: u64,
    /// The successor's first timestamp is above every timestamp the old
    /// holder served, before and after the stop.
    pub above_old_holder: bool,
}

/// Pure: where the gap ends in `answers`, the old holder being the
/// coordinator at `holder`, stopped at `stopped_ms`.
pub fn judge(answers: &[Answer], holder: usize, stopped_ms: f64) -> Verdict {
    let old = answers.iter().filter(|a| a.coordinator == holder);
    let old_generation = old.clone().map(|a| a.generation).max().unwrap_or(0);
    let old_newest = old.map(|a| a.first).max();
    let successor = answers
        .iter()
        .filter(|a| {
            a.coordinator != holder && a.generation > old_generation && a.answered_ms >= stopped_ms
        })
        .min_by(|a, b| a.answered_ms.total_cmp(&b.answered_ms))
        .copied();
    Verdict {
        gap_ms: successor.map(|a| a.answered_ms - stopped_ms),
        successor,
        old_generation,
        above_old_holder: match (old_newest, successor) {
            (Some(old), Some(new)) => new.first > old,
            _ => false,
        },
    }
}

fn ms_since(origin: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(origin).as_secs_f64() * 1000.0
}

async fn poll(
    coordinator: usize,
    mut client: CoordinatorClient<tonic::transport::Channel>,
    origin: Instant,
    answers: Arc<Mutex<Vec<Answer>>>,
    halt: Arc<AtomicBool>,
) {
    while !halt.load(Ordering::Relaxed) {
        let call = client.get_timestamps(GetTimestampsRequest { count: 1 });
        if let Ok(Ok(answer)) =
            tokio::time::timeout(Duration::from_millis(POLL_CALL_TIMEOUT_MS), call).await
        {
            let answer = answer.into_inner();
            let mut answers = answers.lock().unwrap_or_else(|p| p.into_inner());
            if answers.len() < ANSWERS_MAX {
                answers.push(Answer {
                    coordinator,
                    answered_ms: ms_since(origin, Instant::now()),
                    first: answer.first,
                    generation: answer.generation,
                });
            }
        }
        // A standby's refusal, a dead coordinator, or a served timestamp:
        // the same pause either way.
        tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
    }
}

/// One repetition: poll every coordinator, take the holder away as `stop`
/// says, wait for a successor to serve, start the stopped one again and
/// wait until it is a standby that knows the new lease. Returns the gap
/// (none if no successor served within [`FAILOVER_WAIT_MAX_MS`]) and a line
/// describing the repetition.
pub async fn coordinator_failover(
    arbor: &Arbor,
    supervisor: &Supervisor,
    stop: HolderStop,
) -> Result<(Option<f64>, String)> {
    let wait = Duration::from_millis(FAILOVER_WAIT_MAX_MS);
    let holder = arbor.holder(wait).await?;
    let name = Arbor::coordinator_name(holder);
    let origin = Instant::now();
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let halt = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for (index, address) in arbor.coordinators.iter().enumerate() {
        let client = CoordinatorClient::new(channel(address)?);
        pollers.push(tokio::spawn(poll(
            index,
            client,
            origin,
            answers.clone(),
            halt.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(POLL_BEFORE_STOP_MS)).await;
    let not_running = || BenchError::cluster("failover", format!("{name} is not running"));
    let (stopped_at, stopping) = match stop {
        HolderStop::Kill => (supervisor.kill9(&name).ok_or_else(not_running)?, None),
        HolderStop::Seal => {
            let stopping = supervisor.begin_stop(&name).ok_or_else(not_running)?;
            (stopping.signalled_at, Some(stopping))
        }
    };
    let stopped_ms = ms_since(origin, stopped_at);
    let deadline = stopped_at + wait;
    let mut verdict = judge(&[], holder, stopped_ms);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
        verdict = judge(
            &answers.lock().unwrap_or_else(|p| p.into_inner()),
            holder,
            stopped_ms,
        );
        if verdict.gap_ms.is_some() {
            break;
        }
    }
    halt.store(true, Ordering::Relaxed);
    for poller in pollers {
        let _ = poller.await;
    }
    let exited_on_signal = match stopping {
        Some(stopping) => Some(stopping.finish().await),
        None => None,
    };
    let exit = match exited_on_signal {
        Some(true) => "; it exited on SIGTERM",
        Some(false) => "; it did NOT exit on SIGTERM (SIGKILLed after the stop timeout)",
        None => "",
    };
    let served = match (verdict.gap_ms, verdict.successor) {
        (Some(gap), Some(successor)) => format!(
            "{} served timestamps after {gap:.0} ms under generation {} (was {}), {} the old holder's",
            Arbor::coordinator_name(successor.coordinator),
            successor.generation,
            verdict.old_generation,
            if verdict.above_old_holder {
                "all above"
            } else {
                "NOT all above"
            }
        ),
        _ => format!("no successor served within {FAILOVER_WAIT_MAX_MS} ms"),
    };
    let detail = format!("{} {name}{exit}; {served}", stop.label());
    supervisor.restart(&name)?;
    wait_for_standby(arbor, holder, wait).await?;
    Ok((verdict.gap_ms, detail))
}

/// Waits until the coordinator at `index` answers as a standby whose view
/// of root reaches the holder's (so it has seen the lease it must wait
/// out), so the next repetition has a successor ready. A standby reports
/// generation 0, hence the root cursor.
async fn wait_for_standby(arbor: &Arbor, index: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let holder = arbor.holder(timeout).await?;
        match (
            arbor.coordinator_status(holder).await,
            arbor.coordinator_status(index).await,
        ) {
            (Ok(held), Ok(standby))
                if holder != index
                    && standby.role == "standby"
                    && standby.cursor >= held.cursor =>
            {
                return Ok(());
            }
            (Ok(held), Ok(standby)) => {
                last = format!(
                    "{} is {} at root cursor {}, the holder at {}",
                    Arbor::coordinator_name(index),
                    standby.role,
                    standby.cursor,
                    held.cursor
                )
            }
            (Err(error), _) | (_, Err(error)) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::cluster("restarted coordinator", last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(coordinator: usize, answered_ms: f64, first: u64, generation: u64) -> Answer {
        Answer {
            coordinator,
            answered_ms,
            first,
            generation,
        }
    }

    #[test]
    fn gap_ends_at_the_successors_first_answer_under_a_newer_generation() {
        let answers = [
            answer(0, 100.0, 10, 3),
            answer(0, 400.0, 20, 3),
            answer(1, 1_700.0, 50, 4),
            answer(1, 1_600.0, 40, 4),
        ];
        let verdict = judge(&answers, 0, 500.0);
        assert_eq!(verdict.gap_ms, Some(1_100.0));
        assert_eq!(verdict.successor, Some(answer(1, 1_600.0, 40, 4)));
        assert_eq!(verdict.old_generation, 3);
        assert!(verdict.above_old_holder);
    }

    #[test]
    fn the_old_holder_answering_while_it_shuts_down_is_not_a_successor() {
        let answers = [answer(0, 100.0, 10, 3), answer(0, 520.0, 11, 3)];
        let verdict = judge(&answers, 0, 500.0);
        assert_eq!(verdict.gap_ms, None);
        assert!(!verdict.above_old_holder);
    }

    #[test]
    fn another_coordinator_under_the_old_generation_is_not_a_successor() {
        // Cannot happen with one lease, but the gap must not end on it.
        let answers = [answer(0, 100.0, 10, 3), answer(1, 600.0, 12, 3)];
        assert_eq!(judge(&answers, 0, 500.0).gap_ms, None);
    }

    #[test]
    fn a_successor_serving_below_the_old_holder_is_flagged() {
        let answers = [
            answer(0, 100.0, 10, 3),
            answer(0, 510.0, 90, 3),
            answer(1, 700.0, 50, 4),
        ];
        let verdict = judge(&answers, 0, 500.0);
        assert_eq!(verdict.gap_ms, Some(200.0));
        assert!(!verdict.above_old_holder);
    }
}
