//! What the session fuzz targets share: a fresh in-memory broker for every input, and
//! handing a session's deliveries back to it.

use std::sync::Arc;

use ferromq_core::{Broker, BrokerConfig, Event, EventReceiver, ManualClock};

/// A broker in memory, anonymous logins allowed (every protocol's fuzzed CONNECT may
/// come without credentials), on a clock that stands still.
pub fn broker() -> Broker {
    let config = BrokerConfig {
        allow_anonymous: true,
        ..Default::default()
    };
    Broker::new(config, Arc::new(ManualClock::new(1_000)))
}

/// Hands every delivery waiting on `events` to `deliver`, which answers whether the
/// session closed; true if it did.
pub fn deliveries(
    events: Option<&mut EventReceiver>,
    mut deliver: impl FnMut(Event) -> bool,
) -> bool {
    let Some(rx) = events else {
        return false;
    };
    while let Ok(ev) = rx.try_recv() {
        if deliver(ev) {
            return true;
        }
    }
    false
}
