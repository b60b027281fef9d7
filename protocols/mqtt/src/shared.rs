//! State shared by every connection of a listener: which client ids are connected (for
//! session takeover), the QoS 2 state of sessions that outlive their connections, and the
//! retained messages.
//!
//! # Locks
//! `sessions` and the retained store's lock are never held together nor across `.await`;
//! each [`QosState`] has its own lock, taken after (never while holding) `sessions`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytestring::ByteString;
use ferromq_core::Message;
use tokio_util::sync::CancellationToken;

use crate::retained::RetainedStore;

/// Packet identifiers of a session's unfinished QoS 2 exchanges; they survive reconnects
/// of a persistent session (in memory only).
#[derive(Debug, Default)]
pub struct QosState {
    /// Incoming QoS 2 PUBLISHes already routed, awaiting PUBREL (dedup of resends).
    pub incoming: HashSet<u16>,
    /// Outgoing QoS 2 messages that got PUBREC: PUBREL sent, awaiting PUBCOMP.
    pub released: BTreeSet<u16>,
    /// QoS 1/2 PUBLISHes that an earlier connection of the session sent and that were not
    /// acknowledged, oldest first, at most `inflight_out_max`: when the core redelivers one
    /// of these messages (the same `Arc`, requeued), it is resent under its original packet
    /// identifier (MQTT 3.1.1 and 5.0, section 4.4). Holding the `Arc` keeps the pointer
    /// from being reused by another message.
    pub unacked: Vec<(u16, Arc<Message>)>,
}

impl QosState {
    /// True if `id` names an unfinished outgoing exchange of an earlier connection.
    pub fn holds_id(&self, id: u16) -> bool {
        self.released.contains(&id) || self.unacked.iter().any(|(p, _)| *p == id)
    }

    /// The original packet identifier of a redelivered message, forgotten here once taken.
    pub fn take_unacked(&mut self, msg: &Arc<Message>) -> Option<u16> {
        let i = self.unacked.iter().position(|(_, m)| Arc::ptr_eq(m, msg))?;
        Some(self.unacked.remove(i).0)
    }
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    kick: CancellationToken,
    state: Arc<Mutex<QosState>>,
}

/// What a connection gets when it claims a client id.
#[derive(Debug)]
pub struct Claim {
    /// This connection's generation for the id.
    pub generation: u64,
    /// Fires when a newer connection takes the session over.
    pub kick: CancellationToken,
    /// The session's QoS 2 state (fresh when the session starts clean).
    pub state: Arc<Mutex<QosState>>,
    /// Another connection had the id and has been told to go.
    pub took_over: bool,
}

#[derive(Debug, Default)]
struct Sessions {
    entries: HashMap<ByteString, Entry>,
    next_generation: u64,
}

/// Shared state of one listener.
#[derive(Debug, Default)]
pub struct Shared {
    sessions: Mutex<Sessions>,
    retained: RetainedStore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Empty state.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a connection for `client_id`, telling any previous one to go. With
    /// `clean`, the QoS 2 state starts empty; otherwise the previous state is kept.
    pub fn claim(&self, client_id: &ByteString, clean: bool) -> Claim {
        let mut s = lock(&self.sessions);
        s.next_generation += 1;
        let generation = s.next_generation;
        let kick = CancellationToken::new();
        let (state, took_over) = match s.entries.remove(client_id) {
            Some(old) => {
                let live = !old.kick.is_cancelled();
                old.kick.cancel();
                let state = if clean {
                    Arc::new(Mutex::new(QosState::default()))
                } else {
                    old.state
                };
                (state, live)
            }
            None => (Arc::new(Mutex::new(QosState::default())), false),
        };
        s.entries.insert(
            client_id.clone(),
            Entry {
                generation,
                kick: kick.clone(),
                state: state.clone(),
            },
        );
        Claim {
            generation,
            kick,
            state,
            took_over,
        }
    }

    /// True while `generation` is the newest connection claim for `client_id`.
    pub fn is_current(&self, client_id: &str, generation: u64) -> bool {
        lock(&self.sessions)
            .entries
            .get(client_id)
            .is_some_and(|e| e.generation == generation)
    }

    /// True once a connection newer than `generation` claimed `client_id` (a pending
    /// delayed Will is then not sent).
    pub fn superseded(&self, client_id: &str, generation: u64) -> bool {
        lock(&self.sessions)
            .entries
            .get(client_id)
            .is_some_and(|e| e.generation > generation)
    }

    /// The connection of `generation` ended. With `keep` (a persistent session) the
    /// QoS 2 state stays for the next connection; otherwise it is forgotten. Returns
    /// whether `generation` was still current (nobody took the session over).
    pub fn release(&self, client_id: &str, generation: u64, keep: bool) -> bool {
        let mut s = lock(&self.sessions);
        match s.entries.get(client_id) {
            Some(e) if e.generation == generation => {
                if keep {
                    // Mark it offline: a later claim is not a takeover.
                    e.kick.cancel();
                } else {
                    s.entries.remove(client_id);
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets the state of offline sessions that `exists` says are gone (their queue
    /// expired or was deleted), so that client ids that never come back cost nothing.
    /// Returns how many were forgotten. `exists` runs without the lock held.
    pub fn sweep(&self, exists: impl Fn(&str) -> bool) -> usize {
        let offline: Vec<(ByteString, u64)> = lock(&self.sessions)
            .entries
            .iter()
            .filter(|(_, e)| e.kick.is_cancelled())
            .map(|(id, e)| (id.clone(), e.generation))
            .collect();
        let gone: Vec<(ByteString, u64)> =
            offline.into_iter().filter(|(id, _)| !exists(id)).collect();
        let mut s = lock(&self.sessions);
        let mut n = 0;
        for (id, generation) in gone {
            // Still the same offline entry: nobody reconnected meanwhile.
            if s.entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                s.entries.remove(&id);
                n += 1;
            }
        }
        n
    }

    /// Client ids with state here (connected, or persistent and offline).
    pub fn sessions_len(&self) -> usize {
        lock(&self.sessions).entries.len()
    }

    /// The retained messages.
    pub fn retained(&self) -> &RetainedStore {
        &self.retained
    }
}
