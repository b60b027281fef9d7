//! Dispatch from a queue to its consumers: round-robin, credit (prefetch), channel-wide
//! credit shared by several queues, consumer priorities, single active consumer, exclusive
//! consumers, and zero-copy bodies.

mod common;

use std::sync::Arc;

use common::*;
use ferromq_core::{
    BrokerConfig, CoreError, CoreLimits, CreditGate, Event, ExchangeKind, ExchangeOptions,
    Exclusivity, FieldValue,
};

#[test]
fn competing_consumers_are_served_round_robin() {
    let env = Env::new();
    env.declare("work");
    let mut subs: Vec<Sub> = (0..3).map(|_| env.consume("work", 10)).collect();
    for i in 0..9 {
        env.send("work", &format!("m{i}"));
    }
    let got: Vec<Vec<String>> = subs
        .iter_mut()
        .map(|sub| {
            let ds = sub.drain();
            ack_all(&ds);
            ds.iter().map(|d| body(d).to_string()).collect()
        })
        .collect();
    assert_eq!(
        got,
        [["m0", "m3", "m6"], ["m1", "m4", "m7"], ["m2", "m5", "m8"]]
    );

    // Removing a consumer keeps the rotation going over the others.
    let gone = subs.remove(1);
    drop(gone);
    for i in 0..4 {
        env.send("work", &format!("n{i}"));
    }
    let a = subs[0].drain_bodies();
    let b = subs[1].drain_bodies();
    assert_eq!(a.len(), 2, "{a:?} {b:?}");
    assert_eq!(b.len(), 2, "{a:?} {b:?}");
}

#[test]
fn a_consumer_with_credit_receives_during_the_publish() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 1);
    sub.assert_idle();
    env.send("q", "now");
    let d = sub.expect();
    assert_eq!(body(&d), "now");
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    assert_eq!(d.queue.name(), "q");
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.unacked, stats.consumers), (0, 1, 1));
}

#[test]
fn messages_published_before_consume_are_delivered_in_order() {
    let env = Env::new();
    env.declare("q");
    for i in 0..5 {
        env.send("q", &i.to_string());
    }
    let mut sub = env.consume("q", 100);
    assert_eq!(sub.drain_bodies(), ["0", "1", "2", "3", "4"]);
}

#[test]
fn prefetch_stops_delivery_until_ack() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 2);
    for i in 0..5 {
        env.send("q", &i.to_string());
    }
    let first = sub.drain();
    assert_eq!(bodies(&first), ["0", "1"]);
    assert_eq!(sub.gate.inflight(), 2);
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.unacked), (3, 2));

    ack(&first[1]);
    assert_eq!(sub.drain_bodies(), ["2"], "one ack, one more delivery");
    sub.assert_idle();
    first[0].queue.ack(&[first[0].tag]).unwrap();
    let rest = sub.drain();
    assert_eq!(bodies(&rest), ["3"]);
    ack_all(&rest);
    let last = sub.drain();
    assert_eq!(bodies(&last), ["4"]);
    ack_all(&last);
    // Tag 2's delivery is still out.
    assert_eq!(env.stats("q").unacked, 1);
    assert_eq!(sub.gate.inflight(), 1);
}

#[test]
fn a_multi_tag_ack_returns_all_the_credit() {
    let env = Env::new();
    let q = env.declare("q");
    let mut sub = env.consume("q", 3);
    for i in 0..6 {
        env.send("q", &i.to_string());
    }
    let first = sub.drain();
    let tags: Vec<u64> = first.iter().map(|d| d.tag).collect();
    q.ack(&tags).unwrap();
    assert_eq!(sub.drain_bodies(), ["3", "4", "5"]);
}

#[test]
fn auto_ack_consumers_get_credit_back_when_deliveries_are_written() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume_auto("q", 2);
    for i in 0..5 {
        env.send("q", &i.to_string());
    }
    assert_eq!(sub.drain_bodies(), ["0", "1"]);
    let stats = env.stats("q");
    assert_eq!(
        (stats.messages, stats.unacked),
        (3, 0),
        "auto-ack deliveries are settled"
    );

    sub.handle.written(1);
    assert_eq!(sub.drain_bodies(), ["2"]);
    sub.handle.written(2);
    assert_eq!(sub.drain_bodies(), ["3", "4"]);
    assert_eq!(env.stats("q").messages, 0);
    let d = {
        env.send("q", "late");
        sub.next()
    };
    assert!(d.is_none(), "still two deliveries not written");
    sub.handle.written(2);
    let d = sub.expect();
    assert_eq!(body(&d), "late");
    // An auto-ack delivery cannot be acknowledged.
    let err = d.queue.ack(&[d.tag]).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
}

#[test]
fn written_is_a_no_op_for_manual_ack_consumers() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 1);
    env.send("q", "a");
    env.send("q", "b");
    let d = sub.expect();
    sub.handle.written(1);
    sub.assert_idle();
    ack(&d);
    assert_eq!(sub.drain_bodies(), ["b"]);
}

#[test]
fn a_shared_gate_wakes_the_other_queue_when_credit_returns() {
    let env = Env::new();
    env.declare("a");
    env.declare("b");
    // One channel-wide prefetch of 1 over consumers on two queues.
    let gate = CreditGate::new(1);
    let opts = ConsumerOpts {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let mut sa = Sub::new(&env.conn, "a", opts.clone()).unwrap();
    let mut sb = Sub::new(&env.conn, "b", opts).unwrap();

    env.send("a", "a1");
    env.send("b", "b1");
    env.send("b", "b2");
    let da = sa.expect();
    sb.assert_idle();
    assert_eq!(gate.inflight(), 1);

    ack(&da);
    let db = sb.expect();
    assert_eq!(body(&db), "b1", "queue b was woken by the ack on queue a");
    sa.assert_idle();
    env.send("a", "a2");
    sa.assert_idle();

    // Nack-requeue also returns the credit; queue b's own dispatch takes it again.
    db.queue.nack(&[db.tag], true).unwrap();
    let again = sb.expect();
    assert_eq!(body(&again), "b1");
    assert!(again.redelivered);
    ack(&again);
    // Both queues now compete for the one credit; both get served eventually.
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = sa
            .next()
            .or_else(|| sb.next())
            .expect("one of the queues delivers");
        got.push(body(&d).to_string());
        ack(&d);
    }
    got.sort();
    assert_eq!(got, ["a2", "b2"]);
}

#[test]
fn a_shared_auto_ack_gate_wakes_the_other_queue_on_written() {
    let env = Env::new();
    env.declare("a");
    env.declare("b");
    let gate = CreditGate::new(1);
    let opts = ConsumerOpts {
        gate: Some(gate.clone()),
        auto_ack: true,
        ..Default::default()
    };
    let mut sa = Sub::new(&env.conn, "a", opts.clone()).unwrap();
    let mut sb = Sub::new(&env.conn, "b", opts).unwrap();
    env.send("a", "a1");
    env.send("b", "b1");
    assert_eq!(sa.drain_bodies(), ["a1"]);
    sb.assert_idle();
    sa.handle.written(1);
    assert_eq!(sb.drain_bodies(), ["b1"]);
}

#[test]
fn dropping_a_consumer_wakes_queues_sharing_its_gate() {
    let env = Env::new();
    env.declare("a");
    env.declare("b");
    let gate = CreditGate::new(1);
    let opts = ConsumerOpts {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let mut sa = Sub::new(&env.conn, "a", opts.clone()).unwrap();
    let mut sb = Sub::new(&env.conn, "b", opts).unwrap();
    env.send("a", "a1");
    env.send("b", "b1");
    let _held = sa.expect();
    sb.assert_idle();
    drop(sa);
    assert_eq!(sb.drain_bodies(), ["b1"]);
    assert_eq!(env.stats("a").messages, 1, "a1 went back to its queue");
}

#[test]
fn deleting_a_queue_returns_the_credit_of_its_unacked_deliveries() {
    let env = Env::new();
    env.declare("a");
    env.declare("b");
    let gate = CreditGate::new(1);
    let opts = ConsumerOpts {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let mut sa = Sub::new(&env.conn, "a", opts.clone()).unwrap();
    let mut sb = Sub::new(&env.conn, "b", opts).unwrap();
    env.send("a", "a1");
    env.send("b", "b1");
    let held = sa.expect();
    sb.assert_idle();

    env.conn
        .vhost()
        .delete_queue("a", false, false, env.conn.id())
        .unwrap();
    assert!(matches!(sa.event(), Some(Event::Cancelled { .. })));
    assert_eq!(
        sb.drain_bodies(),
        ["b1"],
        "the deleted queue's delivery no longer holds the shared credit"
    );
    // Settling a delivery of a deleted queue is harmless, as in RabbitMQ.
    held.queue.ack(&[held.tag]).unwrap();
    assert_eq!(gate.inflight(), 1);
}

#[test]
fn higher_priority_consumers_are_served_first_while_they_have_credit() {
    let env = Env::new();
    env.declare("q");
    let mut low = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            prefetch: 10,
            priority: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut high = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            prefetch: 2,
            priority: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let mut mid = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            prefetch: 1,
            priority: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let order: Vec<i32> = env
        .conn
        .vhost()
        .queue("q")
        .unwrap()
        .consumers()
        .iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(order, [10, 5, 0]);

    for i in 0..5 {
        env.send("q", &i.to_string());
    }
    let h = high.drain();
    assert_eq!(bodies(&h), ["0", "1"]);
    assert_eq!(mid.drain_bodies(), ["2"]);
    assert_eq!(low.drain_bodies(), ["3", "4"]);

    ack(&h[0]);
    env.send("q", "5");
    assert_eq!(high.drain_bodies(), ["5"]);
    low.assert_idle();
}

#[test]
fn consumers_of_equal_priority_share_round_robin_above_a_lower_one() {
    let env = Env::new();
    env.declare("q");
    let mut low = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            priority: -1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut a = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            priority: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let mut b = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            priority: 3,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..4 {
        env.send("q", &i.to_string());
    }
    assert_eq!(a.drain_bodies(), ["0", "2"]);
    assert_eq!(b.drain_bodies(), ["1", "3"]);
    low.assert_idle();
}

fn sac_queue(env: &Env) {
    env.declare_args(
        "sac",
        &[("x-single-active-consumer", FieldValue::Bool(true))],
    );
}

#[test]
fn single_active_consumer_gets_everything_and_fails_over_in_order() {
    let env = Env::new();
    sac_queue(&env);
    let mut first = env.consume("sac", 2);
    let mut second = env.consume("sac", 10);
    for i in 0..5 {
        env.send("sac", &i.to_string());
    }
    let held = first.drain();
    assert_eq!(bodies(&held), ["0", "1"]);
    second.assert_idle();
    ack(&held[0]);
    assert_eq!(
        first.drain_bodies(),
        ["2"],
        "the active consumer stays active"
    );
    second.assert_idle();

    drop(first);
    let got = second.drain();
    assert_eq!(
        bodies(&got),
        ["1", "2", "3", "4"],
        "unacked first, in their original order"
    );
    assert!(got[0].redelivered && got[1].redelivered);
    assert!(!got[2].redelivered && !got[3].redelivered);
}

#[test]
fn single_active_consumer_waits_on_the_active_consumers_credit() {
    let env = Env::new();
    sac_queue(&env);
    let mut first = env.consume("sac", 1);
    let mut second = env.consume("sac", 10);
    env.send("sac", "a");
    env.send("sac", "b");
    let d = first.expect();
    first.assert_idle();
    second.assert_idle();
    ack(&d);
    assert_eq!(first.drain_bodies(), ["b"]);
    second.assert_idle();
}

#[test]
fn an_exclusive_consumer_keeps_others_out() {
    let env = Env::new();
    env.declare("q");
    let other = env.connect();
    let ex = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            exclusive: Exclusivity::Sole,
            ..Default::default()
        },
    )
    .unwrap();
    let err = Sub::new(&env.conn, "q", ConsumerOpts::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    assert_eq!(err.reply_code(), 403);
    let err = Sub::new(&other, "q", ConsumerOpts::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    drop(ex);
    let _plain = Sub::new(&other, "q", ConsumerOpts::default()).unwrap();
    // And an exclusive consumer cannot join a queue that already has consumers.
    let err = Sub::new(
        &env.conn,
        "q",
        ConsumerOpts {
            exclusive: Exclusivity::Sole,
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
}

#[test]
fn consumers_per_queue_are_bounded() {
    let limits = CoreLimits {
        consumers_per_queue_max: 2,
        ..Default::default()
    };
    let env = Env::with_config(BrokerConfig {
        limits,
        ..Default::default()
    });
    env.declare("q");
    let _a = env.consume("q", 1);
    let b = env.consume("q", 1);
    let err = Sub::new(&env.conn, "q", ConsumerOpts::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::ResourceLimit(_)), "{err:?}");
    drop(b);
    let _c = env.consume("q", 1);
}

#[test]
fn consuming_from_a_missing_queue_is_not_found() {
    let env = Env::new();
    let err = Sub::new(&env.conn, "nope", ConsumerOpts::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
}

#[test]
fn a_closed_delivery_channel_puts_the_message_back_for_others() {
    let env = Env::new();
    env.declare("q");
    let gone = env.consume("q", 10);
    let mut alive = env.consume("q", 10);
    let Sub { handle, rx, .. } = gone;
    drop(rx);
    for i in 0..4 {
        env.send("q", &i.to_string());
    }
    assert_eq!(
        alive.drain_bodies(),
        ["0", "1", "2", "3"],
        "nothing is lost to the closed channel"
    );
    drop(handle);
    assert_eq!(env.stats("q").consumers, 1);
}

#[test]
fn fan_out_shares_the_body_and_the_message() {
    let env = Env::new();
    env.conn
        .vhost()
        .declare_exchange(
            "fan",
            ExchangeKind::Fanout,
            ExchangeOptions::default(),
            false,
        )
        .unwrap();
    let mut subs = Vec::new();
    for q in ["q1", "q2", "q3"] {
        env.declare(q);
        env.bind(q, "fan", "");
        subs.push(env.consume(q, 10));
    }
    let body = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let published = Arc::new(ferromq_core::Message::new("fan", "", body.clone()));
    let out = env.conn.vhost().publish(published.clone()).unwrap();
    assert_eq!(out.accepted, 3);
    for sub in &mut subs {
        let d = sub.expect();
        assert_eq!(
            d.message.body.as_ptr(),
            body.as_ptr(),
            "the body is not copied"
        );
        assert!(
            Arc::ptr_eq(&d.message, &published),
            "the message is shared, not cloned"
        );
    }
}

#[test]
fn single_active_consumer_is_not_preempted_by_a_higher_priority_consumer() {
    // The oldest consumer stays the only one receiving; a newcomer of higher priority must
    // not start receiving while the active one still holds messages (ordering would break).
    let env = Env::new();
    sac_queue(&env);
    let mut active = env.consume("sac", 10);
    env.send("sac", "1");
    let held = active.expect();
    let mut eager = Sub::new(
        &env.conn,
        "sac",
        ConsumerOpts {
            priority: 10,
            ..Default::default()
        },
    )
    .unwrap();
    env.send("sac", "2");
    eager.assert_idle();
    assert_eq!(active.drain_bodies(), ["2"]);
    drop(held);
    drop(active);
    let got = eager.drain();
    assert_eq!(
        bodies(&got),
        ["1", "2"],
        "failover hands over everything, in order"
    );
}

#[test]
fn a_failover_exclusive_consumer_is_active_and_others_wait() {
    let env = Env::new();
    env.declare("q");
    let failover = ConsumerOpts {
        exclusive: Exclusivity::Failover,
        ..Default::default()
    };
    let mut first = Sub::new(&env.conn, "q", failover.clone()).unwrap();
    let mut standby = Sub::new(&env.connect(), "q", failover).unwrap();
    let mut plain = Sub::new(&env.connect(), "q", ConsumerOpts::default()).unwrap();
    for i in 0..4 {
        env.send("q", &format!("m{i}"));
    }
    assert_eq!(first.drain_bodies(), ["m0", "m1", "m2", "m3"]);
    standby.assert_idle();
    plain.assert_idle();
    // When the active one leaves, its unacked messages and new ones go to the standby.
    drop(first);
    env.send("q", "m4");
    assert_eq!(standby.drain_bodies(), ["m0", "m1", "m2", "m3", "m4"]);
    plain.assert_idle();
}

#[test]
fn a_stale_tag_cannot_settle_a_redelivery() {
    let env = Env::new();
    env.declare("q");
    let mut a = env.consume("q", 10);
    env.send("q", "x");
    let first = a.expect();
    let mut b = env.consume("q", 10);
    drop(a);
    let again = b.expect();
    assert!(again.redelivered);
    assert_ne!(first.tag, again.tag, "every delivery gets a fresh tag");
    assert!(first.queue.ack(&[first.tag]).is_err());
    assert_eq!(env.stats("q").unacked, 1);
    ack(&again);
    assert_eq!(env.stats("q").unacked, 0);
}
