//! Transactions: publishes and settlements take effect at commit, and only then.

mod common;

use std::sync::Arc;

use common::*;
use ferromq_core::{BrokerConfig, CoreError, CoreLimits, Transaction};

#[test]
fn publishes_wait_for_commit() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 10);
    let mut tx = Transaction::new(env.broker.limits());
    tx.publish(Arc::new(msg("", "q", "1"))).unwrap();
    tx.publish(Arc::new(msg("", "nowhere", "2"))).unwrap();
    tx.publish(Arc::new(msg("", "q", "3"))).unwrap();
    assert_eq!(tx.len(), 3);
    sub.assert_idle();
    assert_eq!(env.stats("q").messages, 0);

    let outcomes = tx.commit(env.conn.vhost()).unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(
        outcomes.iter().map(|o| o.accepted).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    assert!(outcomes[1].unroutable());
    assert!(tx.is_empty());
    assert_eq!(sub.drain_bodies(), ["1", "3"]);
}

#[test]
fn rollback_discards_publishes_and_acks() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 10);
    env.send("q", "delivered");
    let d = sub.expect();
    let mut tx = Transaction::new(env.broker.limits());
    tx.publish(Arc::new(msg("", "q", "never"))).unwrap();
    tx.ack(d.queue.clone(), d.tag).unwrap();
    tx.rollback();
    assert!(tx.is_empty());
    assert!(tx.commit(env.conn.vhost()).unwrap().is_empty());
    sub.assert_idle();
    let stats = env.stats("q");
    assert_eq!(
        (stats.messages, stats.unacked),
        (0, 1),
        "the delivery stays unacked after rollback"
    );
    ack(&d);
}

#[test]
fn acks_and_nacks_wait_for_commit() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 2);
    for i in 0..3 {
        env.send("q", &i.to_string());
    }
    let got = sub.drain();
    assert_eq!(bodies(&got), ["0", "1"]);
    let mut tx = Transaction::new(env.broker.limits());
    tx.ack(got[0].queue.clone(), got[0].tag).unwrap();
    tx.nack(got[1].queue.clone(), got[1].tag, true).unwrap();
    assert_eq!(env.stats("q").unacked, 2);
    sub.assert_idle();
    assert_eq!(sub.gate.inflight(), 2, "no credit returns before commit");

    tx.commit(env.conn.vhost()).unwrap();
    // Operations apply in order: the ack frees credit for "2", then "1" comes back.
    let next = sub.drain();
    let mut got: Vec<(&str, bool)> = next.iter().map(|d| (body(d), d.redelivered)).collect();
    got.sort();
    assert_eq!(got, [("1", true), ("2", false)]);
    assert_eq!(env.stats("q").unacked, 2);
}

#[test]
fn a_transaction_is_reusable_after_commit() {
    let env = Env::new();
    env.declare("q");
    let mut tx = Transaction::new(env.broker.limits());
    tx.publish(Arc::new(msg("", "q", "a"))).unwrap();
    tx.commit(env.conn.vhost()).unwrap();
    tx.publish(Arc::new(msg("", "q", "b"))).unwrap();
    tx.rollback();
    tx.publish(Arc::new(msg("", "q", "c"))).unwrap();
    tx.commit(env.conn.vhost()).unwrap();
    let mut sub = env.consume("q", 10);
    assert_eq!(sub.drain_bodies(), ["a", "c"]);
}

#[test]
fn commit_applies_every_operation_and_reports_the_first_error() {
    let env = Env::new();
    let q = env.declare("q");
    let mut sub = env.consume("q", 10);
    env.send("q", "x");
    let d = sub.expect();
    let mut tx = Transaction::new(env.broker.limits());
    tx.ack(q.clone(), d.tag + 100).unwrap();
    tx.publish(Arc::new(msg("missing-exchange", "k", "lost")))
        .unwrap();
    tx.ack(q.clone(), d.tag).unwrap();
    tx.publish(Arc::new(msg("", "q", "after"))).unwrap();
    let err = tx.commit(env.conn.vhost()).unwrap_err();
    assert!(
        matches!(err, CoreError::PreconditionFailed(_)),
        "the first error: {err:?}"
    );
    assert_eq!(
        env.stats("q").unacked,
        1,
        "the valid ack was applied, 'after' is out"
    );
    assert_eq!(sub.drain_bodies(), ["after"]);
    assert!(tx.is_empty());
}

#[test]
fn transactions_are_bounded() {
    let limits = CoreLimits {
        transaction_ops_max: 2,
        ..Default::default()
    };
    let env = Env::with_config(BrokerConfig {
        limits,
        ..Default::default()
    });
    env.declare("q");
    let mut tx = Transaction::new(env.broker.limits());
    tx.publish(Arc::new(msg("", "q", "1"))).unwrap();
    tx.publish(Arc::new(msg("", "q", "2"))).unwrap();
    let err = tx.publish(Arc::new(msg("", "q", "3"))).unwrap_err();
    assert!(matches!(err, CoreError::ResourceLimit(_)), "{err:?}");
    assert_eq!(err.reply_code(), 506);
    assert_eq!(tx.len(), 2);
    tx.commit(env.conn.vhost()).unwrap();
    assert_eq!(env.stats("q").messages, 2);
    tx.publish(Arc::new(msg("", "q", "3"))).unwrap();
}
