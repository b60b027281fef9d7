//! Settlement: ack, nack with and without requeue, redelivery flags and counts, order after
//! requeue, consumers that go away with messages unacknowledged, and `cancel`.

mod common;

use common::*;
use ferromq_core::CoreError;

#[test]
fn ack_removes_the_message() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 10);
    env.send("q", "x");
    let d = sub.expect();
    assert_eq!(env.stats("q").unacked, 1);
    ack(&d);
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.unacked), (0, 0));
    drop(sub);
    assert_eq!(
        env.stats("q").messages,
        0,
        "an acked message does not come back"
    );
}

#[test]
fn unknown_or_repeated_tags_are_precondition_failed() {
    let env = Env::new();
    let q = env.declare("q");
    let mut sub = env.consume("q", 10);
    env.send("q", "a");
    env.send("q", "b");
    let a = sub.expect();
    let b = sub.expect();
    let err = q.ack(&[a.tag + 1000]).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
    assert_eq!(err.reply_code(), 406);
    ack(&a);
    let err = q.ack(&[a.tag]).unwrap_err();
    assert!(
        matches!(err, CoreError::PreconditionFailed(_)),
        "double ack: {err:?}"
    );
    let err = q.nack(&[a.tag], true).unwrap_err();
    assert!(
        matches!(err, CoreError::PreconditionFailed(_)),
        "nack after ack: {err:?}"
    );

    // Known tags in a list are settled even when another one is unknown.
    let err = q.ack(&[b.tag, 9999]).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
    assert_eq!(env.stats("q").unacked, 0);
}

#[test]
fn nack_with_requeue_redelivers_flagged_with_a_count() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 1);
    env.send("q", "x");
    let mut d = sub.expect();
    assert!(!d.redelivered);
    assert_eq!(d.delivery_count, 0);
    for n in 1..=3 {
        d.queue.nack(&[d.tag], true).unwrap();
        d = sub.expect();
        assert_eq!(body(&d), "x");
        assert!(d.redelivered, "delivery {n} is a redelivery");
        assert_eq!(d.delivery_count, n);
    }
    ack(&d);
    assert_eq!(env.stats("q").messages, 0);
}

#[test]
fn nack_without_requeue_and_without_dlx_drops_the_message() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 10);
    env.send("q", "x");
    let d = sub.expect();
    d.queue.nack(&[d.tag], false).unwrap();
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.unacked), (0, 0));
    sub.assert_idle();
}

#[test]
fn requeued_messages_keep_their_original_order() {
    let env = Env::new();
    let q = env.declare("q");
    let mut sub = env.consume("q", 3);
    for i in 1..=5 {
        env.send("q", &i.to_string());
    }
    let first = sub.drain();
    assert_eq!(bodies(&first), ["1", "2", "3"]);
    // Returned out of order, in one call: they go back to their places, ahead of 4 and 5.
    q.nack(&[first[2].tag, first[0].tag, first[1].tag], true)
        .unwrap();
    let again = sub.drain();
    assert_eq!(bodies(&again), ["1", "2", "3"]);
    assert!(again.iter().all(|d| d.redelivered));
    // Return just the middle one: it goes ahead of 4 and 5.
    q.nack(&[again[1].tag], true).unwrap();
    let next = sub.drain();
    assert_eq!(bodies(&next), ["2"]);
    ack_all(&again[..1]);
    ack_all(&again[2..]);
    ack_all(&next);
    assert_eq!(sub.drain_bodies(), ["4", "5"]);
}

#[test]
fn requeue_goes_ahead_of_newer_messages_for_a_blocked_consumer() {
    let env = Env::new();
    env.declare("q");
    let mut a = env.consume("q", 1);
    let mut b = env.consume("q", 1);
    for i in 1..=4 {
        env.send("q", &i.to_string());
    }
    let da = a.expect();
    let db = b.expect();
    assert_eq!((body(&da), body(&db)), ("1", "2"));
    // Consumer a goes away holding message 1: it is next, before 3.
    drop(a);
    ack(&db);
    let d = b.expect();
    assert_eq!(body(&d), "1");
    assert!(d.redelivered);
    assert_eq!(d.delivery_count, 1);
    ack(&d);
    assert_eq!(b.drain_bodies(), ["3"]);
}

#[test]
fn dropping_a_consumer_hands_its_unacked_messages_to_another_consumer() {
    let env = Env::new();
    env.declare("q");
    let mut first = env.consume("q", 10);
    for i in 0..3 {
        env.send("q", &i.to_string());
    }
    let held = first.drain();
    assert_eq!(held.len(), 3);
    ack(&held[1]);
    let mut second = env.consume("q", 10);
    second.assert_idle();
    drop(first);
    let got = second.drain();
    assert_eq!(bodies(&got), ["0", "2"]);
    assert!(got.iter().all(|d| d.redelivered && d.delivery_count == 1));
    // The old deliveries can no longer be settled.
    let err = held[0].queue.ack(&[held[0].tag + 100]).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)));
}

#[test]
fn cancel_stops_deliveries_but_keeps_unacked_messages_ackable() {
    let env = Env::new();
    let q = env.declare("q");
    let mut sub = env.consume("q", 2);
    for i in 0..4 {
        env.send("q", &i.to_string());
    }
    let held = sub.drain();
    assert_eq!(bodies(&held), ["0", "1"]);
    sub.handle.cancel();
    assert_eq!(env.stats("q").consumers, 0);
    ack(&held[0]);
    sub.assert_idle();
    assert_eq!(env.stats("q").unacked, 1);
    // Requeue after cancel puts it back for the next consumer.
    q.nack(&[held[1].tag], true).unwrap();
    assert_eq!(env.stats("q").messages, 3);
    // Dropping the cancelled handle later changes nothing.
    drop(sub);
    let mut next = env.consume("q", 10);
    let got = next.drain();
    assert_eq!(bodies(&got), ["1", "2", "3"]);
    assert!(got[0].redelivered);
}

#[test]
fn cancel_then_drop_requeues_what_is_still_unacked() {
    let env = Env::new();
    env.declare("q");
    let mut sub = env.consume("q", 10);
    env.send("q", "a");
    let _d = sub.expect();
    sub.handle.cancel();
    assert_eq!(env.stats("q").unacked, 1);
    drop(sub);
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.unacked), (1, 0));
}

#[test]
fn acks_from_a_cancelled_consumer_do_not_wake_it() {
    let env = Env::new();
    env.declare("q");
    let mut a = env.consume("q", 1);
    env.send("q", "1");
    env.send("q", "2");
    let d = a.expect();
    a.handle.cancel();
    ack(&d);
    a.assert_idle();
    assert_eq!(env.stats("q").messages, 1);
}
