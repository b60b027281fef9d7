//! Who owns what: exclusive queues belong to their connection, auto-delete queues go with
//! their last consumer, deleted queues cancel their consumers, and connections are
//! authorised per vhost.

mod common;

use common::*;
use ferromq_core::{
    hash_password, Broker, BrokerConfig, CoreError, Event, ManualClock, QueueOptions, UserRecord,
};
use std::sync::Arc;

fn exclusive() -> QueueOptions {
    QueueOptions {
        exclusive: true,
        durable: false,
        ..Default::default()
    }
}

fn auto_delete() -> QueueOptions {
    QueueOptions {
        auto_delete: true,
        ..Default::default()
    }
}

fn assert_locked<T: std::fmt::Debug>(r: Result<T, CoreError>) {
    let err = r.unwrap_err();
    assert!(matches!(err, CoreError::ResourceLocked(_)), "{err:?}");
    assert_eq!(err.reply_code(), 405);
}

#[test]
fn an_exclusive_queue_is_locked_to_its_connection() {
    let env = Env::new();
    let other = env.connect();
    let (q, _) = env.conn.declare_queue("mine", exclusive(), false).unwrap();
    assert_eq!(q.owner(), Some(env.conn.id()));
    // The owner may redeclare and use it.
    env.conn.declare_queue("mine", exclusive(), false).unwrap();
    env.conn.declare_queue("mine", exclusive(), true).unwrap();
    env.bind("mine", "amq.direct", "k");

    let v = other.vhost();
    let id = other.id();
    assert_locked(other.declare_queue("mine", exclusive(), false));
    assert_locked(other.declare_queue("mine", QueueOptions::default(), false));
    assert_locked(other.declare_queue("mine", exclusive(), true));
    assert_locked(Sub::new(&other, "mine", ConsumerOpts::default()).map(|_| ()));
    assert_locked(v.bind_queue("mine", "amq.topic", "#", Default::default(), id));
    assert_locked(v.unbind_queue("mine", "amq.direct", "k", &Default::default(), id));
    assert_locked(v.purge_queue("mine", id));
    assert_locked(v.delete_queue("mine", false, false, id));

    // Anyone may publish to it.
    assert_eq!(publish(&other, "", "mine", "hello").accepted, 1);
    assert_eq!(publish(&other, "amq.direct", "k", "hello").accepted, 1);
    assert_eq!(env.stats("mine").messages, 2);
}

#[test]
fn an_exclusive_queue_is_deleted_with_its_connection() {
    let env = Env::new();
    let owner = env.connect();
    owner.declare_queue("temp", exclusive(), false).unwrap();
    owner
        .vhost()
        .bind_queue("temp", "amq.fanout", "", Default::default(), owner.id())
        .unwrap();
    let mut sub = Sub::new(&owner, "temp", ConsumerOpts::default()).unwrap();
    publish(&env.conn, "", "temp", "x");
    let _d = sub.expect();
    let consumer_id = sub.handle.id();

    drop(owner);
    assert!(!env.exists("temp"));
    match sub.event() {
        Some(Event::Cancelled {
            consumer_id: id,
            reason,
        }) => {
            assert_eq!(id, consumer_id);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    assert!(
        publish(&env.conn, "amq.fanout", "", "x").unroutable(),
        "its bindings went with it"
    );
    // The name is free again, for anyone.
    env.conn
        .declare_queue("temp", QueueOptions::default(), false)
        .unwrap();
    drop(sub);
    assert!(
        env.exists("temp"),
        "the old consumer's handle does not touch the new queue"
    );
}

#[test]
fn dropping_a_connection_keeps_queues_it_did_not_own() {
    let env = Env::new();
    let other = env.connect();
    other
        .declare_queue("shared", QueueOptions::default(), false)
        .unwrap();
    env.conn
        .declare_queue("exclusive-elsewhere", exclusive(), false)
        .unwrap();
    drop(other);
    assert!(env.exists("shared"));
    assert!(env.exists("exclusive-elsewhere"));
}

#[test]
fn an_auto_delete_queue_goes_with_its_last_consumer() {
    let env = Env::new();
    env.conn.declare_queue("ad", auto_delete(), false).unwrap();
    env.send("ad", "x");
    assert!(env.exists("ad"), "never consumed: stays");
    let a = env.consume("ad", 10);
    let b = env.consume("ad", 10);
    drop(a);
    assert!(env.exists("ad"), "one consumer left");
    drop(b);
    assert!(!env.exists("ad"));
}

#[test]
fn an_auto_delete_queue_goes_when_its_last_consumer_is_cancelled() {
    let env = Env::new();
    let (q, _) = env.conn.declare_queue("ad", auto_delete(), false).unwrap();
    let mut sub = env.consume("ad", 10);
    env.send("ad", "x");
    let d = sub.expect();
    sub.handle.cancel();
    assert!(!env.exists("ad"));
    assert!(q.is_deleted());
    // Settling a delivery of the deleted queue is harmless.
    q.ack(&[d.tag]).unwrap();
    assert_eq!(sub.gate.inflight(), 0, "its credit came back");
}

#[test]
fn an_exclusive_auto_delete_subscription_queue() {
    // The shape STOMP and MQTT subscriptions use.
    let env = Env::new();
    let owner = env.connect();
    let opts = QueueOptions {
        exclusive: true,
        auto_delete: true,
        durable: false,
        ..Default::default()
    };
    let (q, _) = owner.declare_queue("", opts, false).unwrap();
    let name = q.name().to_string();
    owner
        .vhost()
        .bind_queue(&name, "amq.topic", "news.#", Default::default(), owner.id())
        .unwrap();
    let mut sub = Sub::new(&owner, &name, ConsumerOpts::default()).unwrap();
    assert_eq!(env.publish("amq.topic", "news.eu", "x").accepted, 1);
    assert_eq!(sub.drain_bodies(), ["x"]);
    drop(sub);
    assert!(!env.exists(&name));
    drop(owner);
}

#[test]
fn deleting_a_queue_cancels_its_consumers() {
    let env = Env::new();
    env.declare("q");
    let mut a = env.consume("q", 10);
    let mut b = env.consume("q", 10);
    env.send("q", "1");
    let _held = a.expect();
    let removed = env
        .conn
        .vhost()
        .delete_queue("q", false, false, env.conn.id())
        .unwrap();
    assert_eq!(removed, 0, "only ready messages are counted");
    for sub in [&mut a, &mut b] {
        match sub.event() {
            Some(Event::Cancelled { consumer_id, .. }) => assert_eq!(consumer_id, sub.handle.id()),
            other => panic!("expected a cancel, got {other:?}"),
        }
        sub.assert_idle();
    }
    assert!(publish(&env.conn, "", "q", "x").unroutable());
    let err = Sub::new(&env.conn, "q", ConsumerOpts::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
}

#[test]
fn delete_queue_if_unused_and_if_empty() {
    let env = Env::new();
    env.declare("q");
    let v = env.conn.vhost();
    let id = env.conn.id();
    let sub = env.consume("q", 1);
    let err = v.delete_queue("q", true, false, id).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
    drop(sub);
    env.send("q", "x");
    let err = v.delete_queue("q", false, true, id).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
    assert_eq!(v.delete_queue("q", true, false, id).unwrap(), 1);
    let err = v.delete_queue("q", false, false, id).unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
}

#[test]
fn purge_removes_ready_messages_only() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 1);
    for i in 0..4 {
        env.send("q", &i.to_string());
    }
    let held = sub.expect();
    assert_eq!(env.conn.vhost().purge_queue("q", env.conn.id()).unwrap(), 3);
    let stats = env.stats("q");
    assert_eq!(
        (stats.messages, stats.unacked, stats.message_bytes),
        (0, 1, 0)
    );
    held.queue.nack(&[held.tag], true).unwrap();
    let d = sub.expect();
    assert_eq!(body(&d), "0");
}

#[test]
fn queues_per_vhost_are_bounded() {
    let limits = ferromq_core::CoreLimits {
        queues_max: 2,
        ..Default::default()
    };
    let env = Env::with_config(BrokerConfig {
        limits,
        ..Default::default()
    });
    env.declare("a");
    env.declare("b");
    env.declare("a");
    let err = env
        .conn
        .declare_queue("c", QueueOptions::default(), false)
        .unwrap_err();
    assert!(matches!(err, CoreError::ResourceLimit(_)), "{err:?}");
}

#[test]
fn connections_are_authorised_per_vhost() {
    let clock = Arc::new(ManualClock::new(T0_MS));
    let config = BrokerConfig {
        users: vec![UserRecord {
            name: "app".into(),
            password_hash: hash_password("pw"),
            vhosts: vec!["/prod".into()],
            tags: vec![],
            loopback_only: false,
        }],
        vhosts: vec!["/prod".into()],
        ..Default::default()
    };
    let broker = Broker::new(config, clock);
    let app = broker.authenticate("app", "pw", None).unwrap();
    let err = broker.connect(app.clone(), "/").unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    let prod = broker.connect(app.clone(), "/prod").unwrap();
    assert_eq!(prod.vhost().name(), "/prod");
    assert_eq!(prod.principal().name, "app");

    // Vhosts are separate namespaces.
    prod.declare_queue("q", QueueOptions::default(), false)
        .unwrap();
    assert!(broker.vhost("/").unwrap().queue("q").is_none());

    let admin = Broker::new(
        BrokerConfig {
            vhosts: vec!["/prod".into()],
            ..Default::default()
        },
        Arc::new(ManualClock::new(0)),
    );
    let guest = admin.authenticate("guest", "guest", None).unwrap();
    let err = admin.connect(guest, "/nope").unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
}

#[test]
fn connection_and_consumer_ids_are_unique() {
    let env = Env::new();
    let other = env.connect();
    assert_ne!(env.conn.id(), other.id());
    env.declare("q");
    let a = env.consume("q", 1);
    let b = Sub::new(&other, "q", ConsumerOpts::default()).unwrap();
    assert_ne!(a.handle.id(), b.handle.id());
    assert_eq!(a.handle.queue().name(), "q");
}
