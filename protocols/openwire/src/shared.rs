//! State shared by every OpenWire connection of a server (its plain and TLS listeners):
//! the client ids in use and the temporary-destination advisories.
//!
//! # Locks
//! The client-id set and the advisory registry have one lock each, never held together
//! nor across `.await`.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::advisory::Advisories;

/// What the OpenWire connections of one server share.
#[derive(Debug, Default)]
pub struct Shared {
    pub(crate) client_ids: ClientIds,
    pub(crate) advisories: Advisories,
}

impl Shared {
    /// Nothing connected yet.
    pub fn new() -> std::sync::Arc<Self> {
        Default::default()
    }
}

/// Client ids in use: JMS requires them to be unique per broker.
#[derive(Debug, Default)]
pub(crate) struct ClientIds(Mutex<HashSet<String>>);

impl ClientIds {
    pub(crate) fn claim(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
    }

    pub(crate) fn release(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}
