//! `Queue::get`: one-off fetches outside any consumer (AMQP `basic.get`).

mod common;

use common::*;
use ferromq_core::{AckMode, FieldValue};

#[test]
fn get_takes_in_order_and_reports_the_rest() {
    let env = Env::new();
    let q = env.declare("g");
    for b in ["a", "b", "c"] {
        env.send("g", b);
    }
    let (d, left) = q.get(AckMode::Auto, 0).expect("a message");
    assert_eq!((body(&d), left, d.redelivered), ("a", 2, false));
    assert_eq!(env.stats("g").unacked, 0, "auto-ack settles at once");
    let (d, left) = q.get(AckMode::Manual, 0).expect("a message");
    assert_eq!((body(&d), left), ("b", 1));
    assert_eq!(env.stats("g").unacked, 1);
    // Requeued: it goes back to its place, flagged redelivered.
    q.nack(&[d.tag], true).unwrap();
    let (again, _) = q.get(AckMode::Manual, 0).unwrap();
    assert_eq!((body(&again), again.redelivered), ("b", true));
    q.ack(&[again.tag]).unwrap();
    assert!(q.ack(&[again.tag]).is_err(), "a tag settles once");
    let (d, left) = q.get(AckMode::Auto, 0).unwrap();
    assert_eq!((body(&d), left), ("c", 0));
    assert!(q.get(AckMode::Auto, 0).is_none());
}

#[test]
fn get_skips_expired_messages_and_dead_letters_them() {
    let env = Env::new();
    let q = env.declare_args(
        "ttl",
        &[
            ("x-message-ttl", FieldValue::I32(100)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dead")),
        ],
    );
    env.declare("dead");
    env.send("ttl", "old");
    env.tick(0);
    env.clock.advance(200);
    env.send("ttl", "new");
    let (d, left) = q.get(AckMode::Auto, 0).unwrap();
    assert_eq!((body(&d), left), ("new", 0));
    assert_eq!(env.stats("dead").messages, 1);
}

#[test]
fn consumers_are_unaffected_by_gets_and_deleted_queues_give_nothing() {
    let env = Env::new();
    let q = env.declare("mix");
    env.send("mix", "one");
    let (d, _) = q.get(AckMode::Manual, 0).unwrap();
    let mut sub = env.consume("mix", 1);
    sub.assert_idle();
    q.nack(&[d.tag], true).unwrap();
    let got = sub.expect();
    assert_eq!((body(&got), got.redelivered), ("one", true));
    env.conn
        .vhost()
        .delete_queue("mix", false, false, env.conn.id())
        .unwrap();
    assert!(q.get(AckMode::Auto, 0).is_none());
}
