//! Helpers shared by the core's integration tests: a broker on a manual clock, and a
//! consumer that reads its events the way a protocol adapter's connection task would.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use ferromq_core::{
    channel, AckMode, Broker, BrokerConfig, Connection, ConsumerHandle, ConsumerSpec, CoreError,
    CreditGate, Delivery, Event, EventReceiver, Exclusivity, FieldTable, FieldValue, ManualClock,
    Message, PublishOutcome, Queue, QueueOptions,
};

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir()
            .join("ferromq-core-tests")
            .join(format!("{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the manual clock starts: an arbitrary, realistic epoch time.
pub const T0_MS: u64 = 1_700_000_000_000;

pub struct Env {
    pub clock: Arc<ManualClock>,
    pub broker: Broker,
    pub conn: Connection,
}

impl Env {
    pub fn new() -> Self {
        Self::with_config(BrokerConfig::default())
    }

    pub fn with_config(config: BrokerConfig) -> Self {
        let clock = Arc::new(ManualClock::new(T0_MS));
        let broker = Broker::new(config, clock.clone());
        let conn = connect(&broker);
        Self {
            clock,
            broker,
            conn,
        }
    }

    /// Another connection to the same vhost.
    pub fn connect(&self) -> Connection {
        connect(&self.broker)
    }

    /// Moves time forward and runs the broker's periodic work, as the server's timer does.
    pub fn tick(&self, ms: u64) {
        self.clock.advance(ms);
        self.broker.housekeeping();
    }

    pub fn declare(&self, name: &str) -> Arc<Queue> {
        declare(&self.conn, name, &[])
    }

    pub fn declare_args(&self, name: &str, args: &[(&str, FieldValue)]) -> Arc<Queue> {
        declare(&self.conn, name, args)
    }

    pub fn bind(&self, queue: &str, exchange: &str, key: &str) {
        self.conn
            .vhost()
            .bind_queue(queue, exchange, key, FieldTable::new(), self.conn.id())
            .unwrap();
    }

    pub fn publish(&self, exchange: &str, key: &str, body: &str) -> PublishOutcome {
        publish(&self.conn, exchange, key, body)
    }

    /// Publishes to the default exchange, i.e. straight to queue `queue`.
    pub fn send(&self, queue: &str, body: &str) -> PublishOutcome {
        let out = publish(&self.conn, "", queue, body);
        assert_eq!(out.accepted, 1, "queue '{queue}' should accept '{body}'");
        out
    }

    pub fn consume(&self, queue: &str, prefetch: u32) -> Sub {
        Sub::new(
            &self.conn,
            queue,
            ConsumerOpts {
                prefetch,
                ..Default::default()
            },
        )
        .unwrap()
    }

    pub fn consume_auto(&self, queue: &str, prefetch: u32) -> Sub {
        Sub::new(
            &self.conn,
            queue,
            ConsumerOpts {
                prefetch,
                auto_ack: true,
                ..Default::default()
            },
        )
        .unwrap()
    }

    pub fn stats(&self, queue: &str) -> ferromq_core::QueueStats {
        self.conn
            .vhost()
            .queue(queue)
            .unwrap_or_else(|| panic!("queue '{queue}' exists"))
            .stats()
    }

    pub fn exists(&self, queue: &str) -> bool {
        self.conn.vhost().queue(queue).is_some()
    }
}

pub fn connect(broker: &Broker) -> Connection {
    let principal = broker.authenticate("guest", "guest", None).unwrap();
    broker.connect(principal, "/").unwrap()
}

pub fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert(*k, v.clone());
    }
    t
}

pub fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

pub fn options(args: &[(&str, FieldValue)]) -> QueueOptions {
    QueueOptions {
        arguments: table(args),
        ..Default::default()
    }
}

pub fn declare(conn: &Connection, name: &str, args: &[(&str, FieldValue)]) -> Arc<Queue> {
    conn.declare_queue(name, options(args), false).unwrap().0
}

pub fn msg(exchange: &str, key: &str, body: &str) -> Message {
    Message::new(exchange, key, Bytes::copy_from_slice(body.as_bytes()))
}

pub fn publish(conn: &Connection, exchange: &str, key: &str, body: &str) -> PublishOutcome {
    conn.vhost()
        .publish(Arc::new(msg(exchange, key, body)))
        .unwrap()
}

pub fn publish_msg(conn: &Connection, m: Message) -> Result<PublishOutcome, CoreError> {
    conn.vhost().publish(Arc::new(m))
}

pub fn body(d: &Delivery) -> &str {
    std::str::from_utf8(&d.message.body).unwrap()
}

pub fn bodies(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(body).collect()
}

#[derive(Clone, Debug)]
pub struct ConsumerOpts {
    pub prefetch: u32,
    pub auto_ack: bool,
    pub priority: i32,
    pub exclusive: Exclusivity,
    pub gate: Option<Arc<CreditGate>>,
    pub selector: Option<Arc<ferromq_core::Selector>>,
}

impl Default for ConsumerOpts {
    fn default() -> Self {
        Self {
            prefetch: 100,
            auto_ack: false,
            priority: 0,
            exclusive: Exclusivity::Shared,
            gate: None,
            selector: None,
        }
    }
}

/// A consumer and the receiving end of its delivery channel.
pub struct Sub {
    pub handle: ConsumerHandle,
    pub rx: EventReceiver,
    pub gate: Arc<CreditGate>,
}

impl Sub {
    pub fn new(conn: &Connection, queue: &str, opts: ConsumerOpts) -> Result<Sub, CoreError> {
        let (sink, rx) = channel();
        let gate = opts.gate.unwrap_or_else(|| CreditGate::new(opts.prefetch));
        let spec = ConsumerSpec {
            tag: format!("ctag-{queue}").into(),
            ack_mode: if opts.auto_ack {
                AckMode::Auto
            } else {
                AckMode::Manual
            },
            gate: gate.clone(),
            priority: opts.priority,
            exclusive: opts.exclusive,
            sink,
            selector: opts.selector.clone(),
        };
        let handle = conn.consume(queue, spec)?;
        Ok(Sub { handle, rx, gate })
    }

    /// The next event, if one is waiting.
    pub fn event(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The next delivery, if one is waiting; panics on any other event.
    pub fn next(&mut self) -> Option<Delivery> {
        match self.event()? {
            Event::Deliver(d) => {
                assert_eq!(
                    d.consumer_id,
                    self.handle.id(),
                    "delivery for this consumer"
                );
                Some(d)
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// The next delivery, which must be there.
    pub fn expect(&mut self) -> Delivery {
        self.next().expect("a delivery is waiting")
    }

    /// Every delivery waiting.
    pub fn drain(&mut self) -> Vec<Delivery> {
        std::iter::from_fn(|| self.next()).collect()
    }

    /// Bodies of every delivery waiting.
    pub fn drain_bodies(&mut self) -> Vec<String> {
        self.drain().iter().map(|d| body(d).to_string()).collect()
    }

    pub fn assert_idle(&mut self) {
        if let Some(e) = self.event() {
            panic!("expected no event, got {e:?}");
        }
    }
}

pub fn ack(d: &Delivery) {
    d.queue.ack(&[d.tag]).unwrap();
}

pub fn ack_all(ds: &[Delivery]) {
    for d in ds {
        ack(d);
    }
}
