//! Priority queues (`x-max-priority`).

mod common;

use common::*;
use ferromq_core::FieldValue;

fn send_prio(env: &Env, queue: &str, body: &str, priority: Option<u8>) {
    let mut m = msg("", queue, body);
    m.properties.priority = priority;
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 1);
}

#[test]
fn higher_priority_is_delivered_first_fifo_within_a_priority() {
    let env = Env::new();
    env.declare_args("pq", &[("x-max-priority", FieldValue::U8(5))]);
    send_prio(&env, "pq", "low-1", Some(1));
    send_prio(&env, "pq", "none", None);
    send_prio(&env, "pq", "high-1", Some(4));
    send_prio(&env, "pq", "low-2", Some(1));
    send_prio(&env, "pq", "high-2", Some(4));
    send_prio(&env, "pq", "zero", Some(0));
    let mut sub = env.consume("pq", 100);
    assert_eq!(
        sub.drain_bodies(),
        ["high-1", "high-2", "low-1", "low-2", "none", "zero"]
    );
}

#[test]
fn priorities_above_the_maximum_count_as_the_maximum() {
    let env = Env::new();
    env.declare_args("pq", &[("x-max-priority", FieldValue::I32(3))]);
    send_prio(&env, "pq", "at-max", Some(3));
    send_prio(&env, "pq", "way-above", Some(200));
    send_prio(&env, "pq", "mid", Some(2));
    let mut sub = env.consume("pq", 100);
    assert_eq!(sub.drain_bodies(), ["at-max", "way-above", "mid"]);
}

#[test]
fn without_max_priority_the_priority_property_is_ignored() {
    let env = Env::new();
    env.declare("q");
    send_prio(&env, "q", "a", Some(0));
    send_prio(&env, "q", "b", Some(9));
    let mut sub = env.consume("q", 100);
    assert_eq!(sub.drain_bodies(), ["a", "b"]);
}

#[test]
fn a_late_high_priority_message_overtakes_waiting_ones() {
    let env = Env::new();
    env.declare_args("pq", &[("x-max-priority", FieldValue::U8(9))]);
    let mut sub = env.consume("pq", 1);
    send_prio(&env, "pq", "first", Some(1));
    send_prio(&env, "pq", "second", Some(1));
    send_prio(&env, "pq", "urgent", Some(9));
    let d = sub.expect();
    assert_eq!(body(&d), "first");
    ack(&d);
    let d = sub.expect();
    assert_eq!(body(&d), "urgent");
    ack(&d);
    assert_eq!(sub.drain_bodies(), ["second"]);
}

#[test]
fn requeued_messages_return_to_their_priority_in_order() {
    let env = Env::new();
    let q = env.declare_args("pq", &[("x-max-priority", FieldValue::U8(2))]);
    send_prio(&env, "pq", "h1", Some(2));
    send_prio(&env, "pq", "h2", Some(2));
    send_prio(&env, "pq", "l1", Some(1));
    let mut sub = env.consume("pq", 2);
    let got = sub.drain();
    assert_eq!(bodies(&got), ["h1", "h2"]);
    q.nack(&[got[1].tag, got[0].tag], true).unwrap();
    let again = sub.drain();
    assert_eq!(bodies(&again), ["h1", "h2"]);
    assert!(again.iter().all(|d| d.redelivered));
}

#[test]
fn drop_head_on_a_priority_queue_drops_the_lowest_priority_first() {
    let env = Env::new();
    env.declare_args(
        "pq",
        &[
            ("x-max-priority", FieldValue::U8(2)),
            ("x-max-length", FieldValue::I32(2)),
        ],
    );
    send_prio(&env, "pq", "h", Some(2));
    send_prio(&env, "pq", "l", Some(0));
    send_prio(&env, "pq", "m", Some(1));
    let mut sub = env.consume("pq", 100);
    assert_eq!(sub.drain_bodies(), ["h", "m"]);
}
