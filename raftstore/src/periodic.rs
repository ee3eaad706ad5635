//! The clock of a store's background loops (heartbeats, liveness pings,
//! hibernation): a tick every period until the store stops. A late tick is
//! delayed rather than bunched, so a stalled loop does not burst.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

pub struct Periodic {
    ticker: Interval,
    stop: watch::Receiver<bool>,
}

impl Periodic {
    pub fn new(period: Duration, stop: watch::Receiver<bool>) -> Self {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { ticker, stop }
    }

    /// Waits for the next tick; false once `stop` turned true.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => {}
            _ = self.stop.changed() => {}
        }
        !*self.stop.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_until_stopped() {
        let (stop, stopped) = watch::channel(false);
        let mut periodic = Periodic::new(Duration::from_millis(1), stopped);
        assert!(periodic.tick().await);
        assert!(periodic.tick().await);
        stop.send(true).expect("receiver alive");
        assert!(!periodic.tick().await);
    }
}
