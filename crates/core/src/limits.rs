//! Every bound the core enforces, with the reason for its default.

/// Bounds on broker state; one value per resource, configured by the server.
#[derive(Clone, Debug)]
pub struct CoreLimits {
    /// Deliveries a consumer may hold unacknowledged (or, for auto-ack consumers, not yet
    /// written to its socket) when the client asks for no limit. Bounds the memory a slow
    /// consumer pins in its connection. RabbitMQ has no such cap; 1000 matches ActiveMQ's
    /// default queue prefetch.
    pub consumer_unacked_max: u32,
    /// Queues per vhost. A client looping on `declare` must not exhaust memory.
    pub queues_max: usize,
    /// Exchanges per vhost.
    pub exchanges_max: usize,
    /// Bindings per exchange.
    pub bindings_max: usize,
    /// Consumers per queue.
    pub consumers_per_queue_max: usize,
    /// Operations buffered in one transaction before it is refused.
    pub transaction_ops_max: usize,
    /// Messages a queue holds when neither the queue's arguments nor policy say otherwise;
    /// `None` for no default limit. Subscription queues of slow consumers are bounded by the
    /// protocol adapters with their own `x-max-length`.
    pub queue_length_default_max: Option<u64>,
    /// Entries in a message's death history; older ones are dropped beyond this.
    pub deaths_max: usize,
    /// Depth of exchange-to-exchange routing before a route is cut (guards binding loops).
    pub exchange_hops_max: usize,
    /// Longest message selector accepted (JMS / STOMP `selector`); IN lists of a few
    /// hundred values fit.
    pub selector_length_max_bytes: usize,
    /// Deepest selector expression (parentheses, NOT, signs and operators nested): parsing
    /// and evaluation recurse this deep, so it bounds their stack use.
    pub selector_depth_max: usize,
    /// Ready messages in memory a queue passes over (selected by no consumer with credit)
    /// per dispatch pass while consumers have selectors. Bounds the work one publish or ack can cause when selective consumers
    /// match none of a long backlog; messages beyond it wait until earlier ones go.
    pub selector_scan_max: usize,
    /// Message groups (`JMSXGroupID`) bound to consumers per queue; binding one more
    /// forgets the least recently used (ActiveMQ's default group map keeps 1,024 too).
    pub message_groups_max: usize,
}

impl CoreLimits {
    /// The bounds for compiling selectors.
    pub fn selector(&self) -> crate::selector::SelectorLimits {
        crate::selector::SelectorLimits {
            length_max_bytes: self.selector_length_max_bytes,
            depth_max: self.selector_depth_max,
        }
    }
}

impl Default for CoreLimits {
    fn default() -> Self {
        Self {
            consumer_unacked_max: 1000,
            queues_max: 100_000,
            exchanges_max: 10_000,
            bindings_max: 1_000_000,
            consumers_per_queue_max: 10_000,
            transaction_ops_max: 100_000,
            queue_length_default_max: None,
            deaths_max: 32,
            exchange_hops_max: 16,
            selector_length_max_bytes: SELECTOR_LENGTH_MAX_BYTES_DEFAULT,
            selector_depth_max: SELECTOR_DEPTH_MAX_DEFAULT,
            selector_scan_max: 10_000,
            message_groups_max: 1024,
        }
    }
}

/// Default longest selector text.
pub const SELECTOR_LENGTH_MAX_BYTES_DEFAULT: usize = 16 * 1024;

/// Default deepest selector tree: far beyond hand-written selectors, and a few hundred
/// stack frames at most.
pub const SELECTOR_DEPTH_MAX_DEFAULT: usize = 64;

/// Default bytes of journal records the core may have submitted that the journal has not
/// yet taken, before producers of persistent messages are paused. Together with the
/// journal's own append queue (8 MiB) this bounds the memory a producer faster than the
/// disk can pin; 64 MiB absorbs bursts of large messages without pausing anyone.
pub const DURABLE_BACKLOG_MAX_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default body bytes of ready messages one queue keeps in memory before it pages newer
/// ones to disk: enough that a queue with a keeping-up consumer never pages, small enough
/// that a few backed-up queues do not crowd out the rest.
pub const QUEUE_MEMORY_MAX_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// Default body bytes of ready messages all queues keep in memory before they page: 1 GiB,
/// a fraction of what a broker host has, like RabbitMQ's memory watermark.
pub const MEMORY_MAX_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Default bytes of paged messages all queues together may hold in memory, beyond
/// [`MEMORY_MAX_BYTES_DEFAULT`], while spill files cannot be written (a full disk). Past it,
/// messages that would be paged are refused. 64 MiB rides out a short episode of a full
/// disk without refusing anyone, and is small beside the budget it adds to.
pub const PAGING_UNWRITTEN_MAX_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default free-space floor of the journal's file system. Below it persistent publishes
/// are refused before the journal meets ENOSPC (which it survives, refusing the records that
/// found no space: see `durable/mod.rs`); 256 MiB leaves room for acks and deletions (which
/// free space) and for segments already being written.
pub const DISK_FREE_MIN_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Ranges of refused op numbers kept for [`SyncWaiter`](crate::SyncWaiter)s (16 bytes
/// each). A disk that fills and frees over and over makes one range per episode; beyond
/// this many the oldest merge, which can only turn a late confirm into a refusal.
pub const REFUSED_RANGES_MAX: usize = 4096;

/// Declarations, deletions, bindings and user changes whose records the journal refused
/// for lack of space, kept to be written again once there is space. Beyond this the
/// durable layer gives up as on an I/O error (refusing persistent publishes until a
/// restart) rather than hold an unbounded list; 10,000 is far more than clients declare
/// while a disk is full.
pub const DURABLE_REWRITES_MAX: usize = 10_000;
