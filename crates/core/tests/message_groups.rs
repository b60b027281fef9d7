//! Message groups (`JMSXGroupID`): each group's messages go to one consumer, in order,
//! while it lives; the binding delivery says so; the group's owner without credit holds
//! back only that group; a closed group (`JMSXGroupSeq = -1`) or a departed owner binds
//! anew.

mod common;

use common::*;
use ferromq_core::groups::{GROUP_FIRST, GROUP_ID, GROUP_SEQ};
use ferromq_core::{Delivery, FieldValue};

fn send(env: &Env, queue: &str, body: &str, group: &str, seq: Option<i32>) {
    let mut m = msg("", queue, body);
    m.properties
        .headers
        .insert(GROUP_ID, FieldValue::Str(group.into()));
    if let Some(seq) = seq {
        m.properties.headers.insert(GROUP_SEQ, FieldValue::I32(seq));
    }
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 1);
}

fn first(d: &Delivery) -> bool {
    d.message.properties.headers.get(GROUP_FIRST) == Some(&FieldValue::Bool(true))
}

/// (body, first-for-consumer) of each delivery.
fn seen(ds: &[Delivery]) -> Vec<(&str, bool)> {
    ds.iter().map(|d| (body(d), first(d))).collect()
}

#[test]
fn each_group_goes_to_one_consumer_in_order() {
    let env = Env::new();
    env.declare("q");
    let mut c1 = env.consume("q", 100);
    let mut c2 = env.consume("q", 100);
    for i in 0..4 {
        send(&env, "q", &format!("a{i}"), "A", None);
        send(&env, "q", &format!("b{i}"), "B", None);
    }
    let (d1, d2) = (c1.drain(), c2.drain());
    // Round-robin bound "A" to the first consumer and "B" to the second.
    assert_eq!(
        seen(&d1),
        [("a0", true), ("a1", false), ("a2", false), ("a3", false)]
    );
    assert_eq!(
        seen(&d2),
        [("b0", true), ("b1", false), ("b2", false), ("b3", false)]
    );
    ack_all(&d1);
    ack_all(&d2);
    // A message without a group still goes to anyone.
    env.send("q", "plain");
    let got = [c1.drain_bodies(), c2.drain_bodies()].concat();
    assert_eq!(got, ["plain"]);
}

#[test]
fn an_owner_without_credit_holds_back_only_its_group() {
    let env = Env::new();
    env.declare("q");
    let mut c1 = env.consume("q", 1);
    let mut c2 = env.consume("q", 10);
    send(&env, "q", "a0", "A", None);
    let a0 = c1.expect();
    send(&env, "q", "a1", "A", None);
    send(&env, "q", "b0", "B", None);
    // "a1" waits for the owner of "A"; "b0" does not wait behind it.
    c1.assert_idle();
    assert_eq!(c2.drain_bodies(), ["b0"]);
    assert_eq!(env.stats("q").messages, 1);
    ack(&a0);
    assert_eq!(seen(&c1.drain()), [("a1", false)]);
}

#[test]
fn a_departed_owner_or_a_closed_group_binds_anew() {
    let env = Env::new();
    env.declare("q");
    let mut c1 = env.consume("q", 10);
    let mut c2 = env.consume("q", 10);
    send(&env, "q", "a0", "A", Some(1));
    send(&env, "q", "a1", "A", Some(2));
    assert_eq!(seen(&c1.drain()), [("a0", true), ("a1", false)]);
    // c1 leaves with both unacknowledged: they come back, bound to c2 now.
    drop(c1);
    let d = c2.drain();
    assert_eq!(seen(&d), [("a0", true), ("a1", false)]);
    assert!(d.iter().all(|d| d.redelivered));
    ack_all(&d);

    // Sequence -1 closes the group after its message: the next one binds again.
    let mut c3 = env.consume("q", 10);
    send(&env, "q", "a2", "A", Some(-1));
    assert_eq!(seen(&c2.drain()), [("a2", false)]);
    send(&env, "q", "a3", "A", Some(1));
    let mut d = c2.drain();
    d.extend(c3.drain());
    assert_eq!(seen(&d), [("a3", true)]);
}

#[test]
fn beyond_the_bound_the_least_recently_used_group_binds_anew() {
    let mut config = ferromq_core::BrokerConfig::default();
    config.limits.message_groups_max = 2;
    let env = Env::with_config(config);
    env.declare("q");
    let mut c1 = env.consume("q", 100);
    for g in ["A", "B", "C"] {
        send(&env, "q", &format!("{g}0"), g, None);
    }
    // Only c1 exists: all three bound to it; "A", used least recently, was forgotten.
    assert!(seen(&c1.drain()).iter().all(|(_, f)| *f));
    send(&env, "q", "A1", "A", None);
    send(&env, "q", "C1", "C", None);
    assert_eq!(seen(&c1.drain()), [("A1", true), ("C1", false)]);
}
