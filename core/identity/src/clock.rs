//! Time as an injectable dependency, so rotation and validity can be tested without sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// A source of wall-clock time that can also wait for a given time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Completes at or after `deadline` by this clock.
    fn sleep_until(&self, deadline: SystemTime) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real system clock; waiting uses tokio timers (needs a tokio runtime with time enabled).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// A clock that moves only when told to; for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<SystemTime>,
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            // Re-check after each wake: the wall clock may have been stepped meanwhile.
            loop {
                let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        })
    }
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: SystemTime) -> Self {
        let (now, _) = watch::channel(start);
        Self { now }
    }

    /// Moves the clock forward by `by`, waking every sleeper whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by);
    }

    /// Sets the clock to `to` (which may be in the past).
    pub fn set(&self, to: SystemTime) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if the clock is dropped, never wake.
            if rx.wait_for(|t| *t >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
