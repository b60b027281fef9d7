//! State shared by every connection of a listener: which client ids are connected (for
//! session takeover), the QoS 2 state of sessions that outlive their connections, and the
//! retained messages.
//!
//! # Locks
//! The parking lot's slots (`park.rs`) may be held while taking `sessions`, never the
//! other way round.
//! `sessions` and the retained store's lock are never held together nor across `.await`;
//! each [`QosState`] has its own lock, taken after (never while holding) `sessions`; the
//! QoS store's lock is taken while holding a `QosState` lock, never the other way round.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use bytestring::ByteString;
use ferromq_core::{CoreError, Message, SyncTicket, Vhost};
use tokio_util::sync::CancellationToken;

use crate::expiry::Deadlines;
use crate::park::{Context, Lot};
use crate::qos_store::{Kind, QosStore};
use crate::retained::RetainedStore;
use crate::QoS;

/// Packet identifiers of a session's unfinished QoS exchanges. They survive reconnects of
/// a persistent session, and broker restarts through the markers of `qos_store.rs`
/// (each `Option<u64>` is the tag of the marker that records the entry, if one does).
#[derive(Debug, Default)]
pub struct QosState {
    /// Incoming QoS 2 PUBLISHes already routed, awaiting PUBREL (dedup of resends). A
    /// B-tree, not a hash map: every connected client id has a state, and an empty
    /// B-tree is half the size (at most `inflight_in_max` entries are looked up in it).
    pub incoming: BTreeMap<u16, Option<u64>>,
    /// Outgoing QoS 2 messages that got PUBREC: PUBREL sent, awaiting PUBCOMP.
    pub released: BTreeMap<u16, Option<u64>>,
    /// QoS 1/2 PUBLISHes that an earlier connection of the session sent and that were not
    /// acknowledged, oldest first, at most `inflight_out_max`: when the core redelivers one
    /// of these messages, it is resent under its original packet identifier (MQTT 3.1.1
    /// and 5.0, section 4.4).
    pub unacked: Vec<Unacked>,
    /// The marker that records `unacked` (written when a connection ends).
    pub unacked_marker: Option<u64>,
    /// The session's shared subscriptions (`$share/...`): a persistent session keeps its
    /// membership of each group while it is away and takes it up again when it resumes.
    pub shared_subs: Vec<SharedSub>,
    /// The marker that records `shared_subs` (rewritten when they change).
    pub shared_marker: Option<u64>,
    /// The session ended (clean start, expiry, sweep): its markers are settled and no
    /// new ones may be recorded (a connection that was taken over may still hold it).
    pub discarded: bool,
}

/// A shared subscription of a session, with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedSub {
    /// The whole filter, `$share/{group}/{filter}`.
    pub filter: ByteString,
    /// Its maximum QoS.
    pub qos: QoS,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Subscription Identifier.
    pub id: Option<NonZeroU32>,
}

impl SharedSub {
    /// The core queue of its group (see `adapter::shared_queue_name`).
    pub(crate) fn group_queue(&self) -> Option<String> {
        crate::topic::shared_subscription(&self.filter)
            .map(|s| crate::adapter::shared_queue_name(s.share_name, s.filter))
    }
}

/// A PUBLISH sent by an earlier connection of a session and not acknowledged.
#[derive(Debug)]
pub struct Unacked {
    /// Its packet identifier.
    pub id: u16,
    /// The message, when sent since the broker started: the core requeues the same `Arc`.
    /// Holding it keeps the pointer from being reused by another message.
    pub message: Option<Arc<Message>>,
    /// Its persistent id in the journal (0: not journaled), which identifies it after a
    /// restart.
    pub persistent_id: u64,
}

impl QosState {
    /// True if `id` names an unfinished outgoing exchange of an earlier connection.
    pub fn holds_id(&self, id: u16) -> bool {
        self.released.contains_key(&id) || self.unacked.iter().any(|u| u.id == id)
    }

    /// The original packet identifier of a redelivered message (known by pointer, or by
    /// persistent id after a restart), forgotten here once taken.
    pub fn take_unacked(&mut self, msg: &Arc<Message>, persistent_id: u64) -> Option<u16> {
        let i = self.unacked.iter().position(|u| {
            u.message.as_ref().is_some_and(|m| Arc::ptr_eq(m, msg))
                || (persistent_id != 0 && u.persistent_id == persistent_id)
        })?;
        Some(self.unacked.remove(i).id)
    }

    /// The tags of every marker that records this state.
    pub fn marker_tags(&self) -> Vec<u64> {
        self.incoming
            .values()
            .chain(self.released.values())
            .chain([&self.unacked_marker, &self.shared_marker])
            .flatten()
            .copied()
            .collect()
    }
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    /// Cancelled to tell the connection to go, and once it went (offline). `None` while
    /// the connection is parked: the lot sees a takeover by the generation instead
    /// (`Shared::taken_over`), and a parked connection holds no token.
    kick: Option<CancellationToken>,
    /// `None` until a connection of the session needs one (see [`Shared::qos_state`]).
    state: Option<Arc<Mutex<QosState>>>,
}

/// What a connection gets when it claims a client id.
#[derive(Debug)]
pub struct Claim {
    /// This connection's generation for the id.
    pub generation: u64,
    /// Fires when a newer connection takes the session over.
    pub kick: CancellationToken,
    /// The session's QoS state, if it has one: a session that starts clean has none
    /// until it needs one ([`Shared::qos_state`]), and most never do (clean sessions
    /// without QoS 2, persistent ids or shared subscriptions).
    pub state: Option<Arc<Mutex<QosState>>>,
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
    qos_store: QosStore,
    deadlines: Deadlines,
    /// The parking lot of idle plain-TCP connections (`park.rs`), started by the first
    /// to park; `None` if it could not be (no epoll set: nothing parks).
    lot: OnceLock<Option<Arc<Lot>>>,
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
        self.claim_with(client_id, clean, CancellationToken::new())
    }

    /// [`Shared::claim`] with the token to cancel at a takeover: a connection task that
    /// already waits on a token (a child of its shutdown token) needs no second wait.
    pub fn claim_with(
        &self,
        client_id: &ByteString,
        clean: bool,
        kick: CancellationToken,
    ) -> Claim {
        let mut discarded = Vec::new();
        let mut s = lock(&self.sessions);
        s.next_generation += 1;
        let generation = s.next_generation;
        let (state, took_over) = match s.entries.remove(client_id) {
            Some(old) => {
                let live = old.kick.as_ref().is_none_or(|k| !k.is_cancelled());
                if let Some(k) = &old.kick {
                    k.cancel();
                }
                let state = if clean {
                    discarded.extend(old.state);
                    None
                } else {
                    old.state
                };
                (state, live)
            }
            None => (None, false),
        };
        s.entries.insert(
            client_id.clone(),
            Entry {
                generation,
                kick: Some(kick.clone()),
                state: state.clone(),
            },
        );
        drop(s);
        self.discard(discarded);
        Claim {
            generation,
            kick,
            state,
            took_over,
        }
    }

    /// The QoS state of the session that the connection of `generation` claimed, made
    /// now if it has none. A connection that was taken over meanwhile gets a discarded
    /// state of its own, in which nothing is recorded.
    pub fn qos_state(&self, client_id: &str, generation: u64) -> Arc<Mutex<QosState>> {
        let mut s = lock(&self.sessions);
        match s.entries.get_mut(client_id) {
            Some(e) if e.generation == generation => e
                .state
                .get_or_insert_with(|| Arc::new(Mutex::new(QosState::default())))
                .clone(),
            _ => Arc::new(Mutex::new(QosState {
                discarded: true,
                ..QosState::default()
            })),
        }
    }

    /// True while `generation` is the newest connection claim for `client_id`.
    pub fn is_current(&self, client_id: &str, generation: u64) -> bool {
        lock(&self.sessions)
            .entries
            .get(client_id)
            .is_some_and(|e| e.generation == generation)
    }

    /// The connection of `generation` parks: it gives up its token, and a takeover now
    /// shows only in the generation (see `Entry::kick`).
    pub(crate) fn park(&self, client_id: &str, generation: u64) {
        if let Some(e) = lock(&self.sessions).entries.get_mut(client_id) {
            if e.generation == generation {
                e.kick = None;
            }
        }
    }

    /// The parked connection of `generation` is taken up again, with `kick` as its token:
    /// false (and `kick` is cancelled) if it was taken over meanwhile.
    pub(crate) fn unpark(
        &self,
        client_id: &str,
        generation: u64,
        kick: &CancellationToken,
    ) -> bool {
        let mut s = lock(&self.sessions);
        match s.entries.get_mut(client_id) {
            Some(e) if e.generation == generation => {
                e.kick = Some(kick.clone());
                true
            }
            _ => {
                kick.cancel();
                false
            }
        }
    }

    /// A number that changes whenever a client id is claimed: while it stays the same,
    /// no parked connection can have been taken over.
    pub(crate) fn claims(&self) -> u64 {
        lock(&self.sessions).next_generation
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
        match s.entries.get_mut(client_id) {
            Some(e) if e.generation == generation => {
                if keep {
                    // Mark it offline: a later claim is not a takeover.
                    e.kick.get_or_insert_with(CancellationToken::new).cancel();
                } else if let Some(e) = s.entries.remove(client_id) {
                    drop(s);
                    self.discard(e.state.into_iter().collect());
                }
                true
            }
            _ => false,
        }
    }

    /// Ends sessions' QoS state: their markers are settled and no new ones recorded.
    fn discard(&self, states: Vec<Arc<Mutex<QosState>>>) {
        for state in states {
            let mut st = lock(&state);
            st.discarded = true;
            self.qos_store.settle(&st.marker_tags());
            *st = QosState {
                discarded: true,
                ..QosState::default()
            };
        }
    }

    /// Records a marker for a live state (see `qos_store.rs`); `None` (memory only) when
    /// the state was discarded, the store is not open, or it refused.
    pub(crate) fn record(
        &self,
        state: &QosState,
        client_id: &ByteString,
        kind: Kind,
        body: bytes::Bytes,
    ) -> Option<(u64, Option<SyncTicket>)> {
        if state.discarded {
            return None;
        }
        self.qos_store.record(client_id, kind, body)
    }

    /// Settles markers whose state went away.
    pub(crate) fn settle(&self, tags: &[u64]) {
        self.qos_store.settle(tags);
    }

    /// Opens the durable store of the sessions' QoS state in `vhost` and takes back what
    /// it holds, as offline sessions (call before accepting connections). `exists` says
    /// whether a client id's session queue still exists. Returns how many sessions had
    /// state.
    pub fn open_qos_state(
        &self,
        vhost: &Vhost,
        holder: u64,
        exists: impl Fn(&str) -> bool,
    ) -> Result<usize, CoreError> {
        let states = self.qos_store.open(vhost, holder, exists)?;
        let n = states.len();
        let mut s = lock(&self.sessions);
        for (client_id, state) in states {
            s.next_generation += 1;
            let generation = s.next_generation;
            let kick = CancellationToken::new();
            // Offline: a first claim is not a takeover, and the sweep may forget it.
            kick.cancel();
            let old = s.entries.insert(
                client_id,
                Entry {
                    generation,
                    kick: Some(kick),
                    state: Some(Arc::new(Mutex::new(state))),
                },
            );
            debug_assert!(old.is_none(), "opened before any connection");
        }
        Ok(n)
    }

    /// Forgets the state of offline sessions that `exists` says are gone (their queue
    /// expired or was deleted), so that client ids that never come back cost nothing.
    /// Returns how many were forgotten. `exists` runs without the lock held.
    pub fn sweep(&self, exists: impl Fn(&str) -> bool) -> usize {
        let offline: Vec<(ByteString, u64)> = lock(&self.sessions)
            .entries
            .iter()
            .filter(|(_, e)| e.kick.as_ref().is_some_and(|k| k.is_cancelled()))
            .map(|(id, e)| (id.clone(), e.generation))
            .collect();
        let gone: Vec<(ByteString, u64)> =
            offline.into_iter().filter(|(id, _)| !exists(id)).collect();
        let mut s = lock(&self.sessions);
        let mut forgotten = Vec::new();
        for (id, generation) in gone {
            // Still the same offline entry: nobody reconnected meanwhile.
            if s.entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                forgotten.extend(s.entries.remove(&id).and_then(|e| e.state));
            }
        }
        drop(s);
        let n = forgotten.len();
        self.discard(forgotten);
        n
    }

    /// True while some session here, connected or persistent and away, is a member of
    /// the shared subscription group whose queue is `group_queue`.
    pub(crate) fn group_in_use(&self, group_queue: &str) -> bool {
        let states: Vec<Arc<Mutex<QosState>>> = lock(&self.sessions)
            .entries
            .values()
            .filter_map(|e| e.state.clone())
            .collect();
        states.iter().any(|st| {
            lock(st)
                .shared_subs
                .iter()
                .any(|s| s.group_queue().as_deref() == Some(group_queue))
        })
    }

    /// Client ids with state here (connected, or persistent and offline).
    pub fn sessions_len(&self) -> usize {
        lock(&self.sessions).entries.len()
    }

    /// The retained messages.
    pub fn retained(&self) -> &RetainedStore {
        &self.retained
    }

    /// The deadlines of the connections (see `expiry.rs`).
    pub(crate) fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// The parking lot, started now (with `cx`) if it is not yet.
    pub(crate) fn lot(&self, cx: impl FnOnce() -> Context) -> Option<&Arc<Lot>> {
        self.lot
            .get_or_init(|| match Lot::start(cx()) {
                Ok(lot) => Some(lot),
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT parking lot not started; idle connections keep their tasks");
                    None
                }
            })
            .as_ref()
    }

    /// Connections parked now (`park.rs`): idle plain-TCP connections without a task.
    pub fn parked_len(&self) -> usize {
        self.lot
            .get()
            .and_then(Option::as_ref)
            .map_or(0, |l| l.len())
    }
}
