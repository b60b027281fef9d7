//! Dispatch to consumers with selectors: each gets only what it selects, in order; what
//! nobody selects stays for later consumers; credit, priorities, redelivery, expiry and the
//! scan bound still hold.

mod common;

use std::sync::Arc;

use common::*;
use ferromq_core::{
    BrokerConfig, CoreLimits, Delivery, FieldValue, Message, Selector, SelectorLimits,
};

fn selector(text: &str) -> Option<Arc<Selector>> {
    Some(Arc::new(
        Selector::parse(text, &SelectorLimits::default()).unwrap(),
    ))
}

fn sub(env: &Env, queue: &str, prefetch: u32, sel: &str) -> Sub {
    Sub::new(
        &env.conn,
        queue,
        ConsumerOpts {
            prefetch,
            selector: selector(sel),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Sends `body` to `queue` with header `color`.
fn send(env: &Env, queue: &str, body: &str, color: &str) {
    let mut m = msg("", queue, body);
    m.properties
        .headers
        .insert("color", FieldValue::Str(color.into()));
    let out = publish_msg(&env.conn, m).unwrap();
    assert_eq!(out.accepted, 1);
}

fn send_msg(env: &Env, m: Message) {
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 1);
}

fn names(ds: &[Delivery]) -> Vec<&str> {
    bodies(ds)
}

#[test]
fn consumers_get_only_what_they_select_in_order() {
    let env = Env::new();
    env.declare("q");
    let mut red = sub(&env, "q", 100, "color = 'red'");
    let mut blue = sub(&env, "q", 100, "color = 'blue'");
    for (i, c) in ["red", "blue", "blue", "green", "red", "blue"]
        .iter()
        .enumerate()
    {
        send(&env, "q", &format!("{c}{i}"), c);
    }
    let r = red.drain();
    let b = blue.drain();
    assert_eq!(names(&r), ["red0", "red4"]);
    assert_eq!(names(&b), ["blue1", "blue2", "blue5"]);
    ack_all(&r);
    ack_all(&b);
    // Green was selected by nobody: it stays ready.
    assert_eq!(env.stats("q").messages, 1);

    // A consumer without a selector takes what is left, and then shares new messages
    // with the selective ones.
    let mut any = env.consume("q", 100);
    assert_eq!(any.drain_bodies(), ["green3"]);
    send(&env, "q", "red6", "red");
    send(&env, "q", "yellow7", "yellow");
    let got_any = any.drain_bodies();
    let got_red = red.drain_bodies();
    assert!(got_any.contains(&"yellow7".to_string()), "{got_any:?}");
    assert_eq!(got_any.len() + got_red.len(), 2, "{got_any:?} {got_red:?}");
}

#[test]
fn unselected_messages_wait_for_a_later_consumer() {
    let env = Env::new();
    env.declare("q");
    for i in 0..6 {
        send(
            &env,
            "q",
            &format!("m{i}"),
            if i % 2 == 0 { "red" } else { "blue" },
        );
    }
    let mut red = sub(&env, "q", 100, "color = 'red'");
    let r = red.drain();
    assert_eq!(names(&r), ["m0", "m2", "m4"]);
    ack_all(&r);
    drop(red);
    let mut later = env.consume("q", 100);
    assert_eq!(later.drain_bodies(), ["m1", "m3", "m5"]);
}

#[test]
fn a_selective_consumer_without_credit_gets_the_next_match_when_credit_returns() {
    let env = Env::new();
    env.declare("q");
    let mut red = sub(&env, "q", 1, "color = 'red'");
    for i in 0..4 {
        send(&env, "q", &format!("r{i}"), "red");
        send(&env, "q", &format!("b{i}"), "blue");
    }
    let first = red.drain();
    assert_eq!(names(&first), ["r0"]);
    red.assert_idle();
    ack_all(&first);
    assert_eq!(red.drain_bodies(), ["r1"]);
    assert_eq!(env.stats("q").messages, 6, "two reds taken, the rest ready");

    // A plain consumer with credit does not take reds out of turn from a full selective
    // one: it takes whatever is next in the queue, reds included.
    let mut plain = env.consume("q", 100);
    assert_eq!(plain.drain_bodies(), ["b0", "b1", "r2", "b2", "r3", "b3"]);
}

#[test]
fn round_robin_and_priority_hold_among_consumers_that_select() {
    let env = Env::new();
    env.declare("q");
    let mut a = sub(&env, "q", 100, "color = 'red'");
    let mut b = sub(&env, "q", 100, "color IN ('red', 'blue')");
    for i in 0..4 {
        send(&env, "q", &format!("r{i}"), "red");
    }
    send(&env, "q", "b0", "blue");
    assert_eq!(a.drain_bodies(), ["r0", "r2"]);
    assert_eq!(b.drain_bodies(), ["r1", "r3", "b0"]);

    let env = Env::new();
    env.declare("q");
    let mut low = env.consume("q", 100);
    let mut high = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            prefetch: 100,
            priority: 5,
            selector: selector("color = 'red'"),
            ..Default::default()
        },
    )
    .unwrap();
    send(&env, "q", "r", "red");
    send(&env, "q", "b", "blue");
    assert_eq!(high.drain_bodies(), ["r"]);
    assert_eq!(low.drain_bodies(), ["b"]);
}

#[test]
fn higher_message_priorities_are_scanned_first() {
    let env = Env::new();
    env.declare_args("q", &[("x-max-priority", FieldValue::I32(9))]);
    for (body, prio, color) in [
        ("lo-red", 1, "red"),
        ("hi-blue", 9, "blue"),
        ("hi-red", 9, "red"),
    ] {
        let mut m = msg("", "q", body);
        m.properties.priority = Some(prio);
        m.properties
            .headers
            .insert("color", FieldValue::Str(color.into()));
        send_msg(&env, m);
    }
    let mut red = sub(&env, "q", 100, "color = 'red' AND JMSPriority > 0");
    assert_eq!(red.drain_bodies(), ["hi-red", "lo-red"]);
}

#[test]
fn a_requeued_message_goes_back_in_place_and_is_seen_as_redelivered() {
    let env = Env::new();
    env.declare("q");
    let mut first = sub(&env, "q", 100, "color = 'red'");
    send(&env, "q", "r0", "red");
    send(&env, "q", "b0", "blue");
    send(&env, "q", "r1", "red");
    let got = first.drain();
    assert_eq!(names(&got), ["r0", "r1"]);
    drop(first); // returns both, flagged redelivered
    let mut again = sub(&env, "q", 100, "JMSRedelivered AND JMSXDeliveryCount = 2");
    assert_eq!(again.drain_bodies(), ["r0", "r1"]);
    let mut fresh = sub(&env, "q", 100, "NOT JMSRedelivered");
    assert_eq!(fresh.drain_bodies(), ["b0"]);
}

#[test]
fn expired_messages_met_during_the_scan_are_dead() {
    let env = Env::new();
    env.declare("q");
    send(&env, "q", "b0", "blue");
    let mut m = msg("", "q", "r-short");
    m.properties.expiration_ms = Some(10);
    m.properties
        .headers
        .insert("color", FieldValue::Str("red".into()));
    send_msg(&env, m);
    send(&env, "q", "r-long", "red");
    env.clock.advance(20);
    let mut red = sub(&env, "q", 100, "color = 'red'");
    assert_eq!(red.drain_bodies(), ["r-long"]);
    assert_eq!(env.stats("q").messages, 1, "only the blue one is left");
}

#[test]
fn the_scan_stops_at_its_bound_until_earlier_entries_go() {
    let env = Env::with_config(BrokerConfig {
        limits: CoreLimits {
            selector_scan_max: 3,
            ..Default::default()
        },
        ..Default::default()
    });
    env.declare("q");
    for i in 0..4 {
        send(&env, "q", &format!("b{i}"), "blue");
    }
    send(&env, "q", "r", "red");
    let mut red = sub(&env, "q", 100, "color = 'red'");
    red.assert_idle();
    // Delivered entries do not count against the bound: a consumer taking the blues
    // brings the red into the window in the same pass.
    let mut blue = sub(&env, "q", 100, "color = 'blue'");
    assert_eq!(blue.drain().len(), 4);
    assert_eq!(red.drain_bodies(), ["r"]);
}

#[test]
fn a_queue_with_an_x_selector_is_routed_only_what_it_selects() {
    let env = Env::new();
    env.declare_args("sub", &[("x-selector", s("color = 'red'"))]);
    env.bind("sub", "amq.topic", "paint.#");
    let mut m = msg("", "sub", "direct-blue");
    m.properties.headers.insert("color", s("blue"));
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 0);
    let mut m = msg("amq.topic", "paint.wall", "topic-blue");
    m.properties.headers.insert("color", s("blue"));
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 0);
    let mut m = msg("amq.topic", "paint.wall", "topic-red");
    m.properties.headers.insert("color", s("red"));
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 1);
    assert_eq!(
        env.stats("sub").messages,
        1,
        "the blue ones were never enqueued"
    );
    let mut all = env.consume("sub", 10);
    assert_eq!(all.drain_bodies(), ["topic-red"]);

    // A malformed x-selector refuses the declaration; a different one is not equivalent.
    let bad = env
        .conn
        .declare_queue("bad", options(&[("x-selector", s("color ="))]), false)
        .unwrap_err();
    assert!(bad.to_string().contains("x-selector"), "{bad}");
    assert!(env
        .conn
        .declare_queue(
            "sub",
            options(&[("x-selector", s("color = 'blue'"))]),
            false
        )
        .is_err());
}

#[test]
fn browsing_shows_ready_messages_in_order_without_taking_them() {
    let env = Env::new();
    env.declare("b");
    for (body, color) in [("1", "red"), ("2", "blue"), ("3", "red"), ("4", "red")] {
        send(&env, "b", body, color);
    }
    let q = env.conn.vhost().queue("b").unwrap();
    let bodies = |v: Vec<(Arc<Message>, u32)>| -> Vec<String> {
        v.iter()
            .map(|(m, _)| String::from_utf8(m.body.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(bodies(q.browse(10, None)), ["1", "2", "3", "4"]);
    assert_eq!(bodies(q.browse(2, None)), ["1", "2"]);
    let red = selector("color = 'red'").unwrap();
    assert_eq!(bodies(q.browse(10, Some(&red))), ["1", "3", "4"]);
    assert_eq!(env.stats("b").messages, 4, "nothing taken");
    // Unacknowledged messages are not ready; a requeued one is back with its count.
    let mut s = env.consume("b", 1);
    let d = s.expect();
    assert_eq!(bodies(q.browse(10, None)), ["2", "3", "4"]);
    d.queue.nack(&[d.tag], true).unwrap();
    drop(s);
    let seen = q.browse(10, None);
    assert_eq!(bodies(seen.clone()), ["1", "2", "3", "4"]);
    assert!(seen[0].1 >= 1, "delivered before: {}", seen[0].1);
    assert_eq!(seen[1].1, 0);
}
