//! Time and size limits: message TTL (queue and per message), queue expiry, and max length
//! / max bytes with each overflow policy.

mod common;

use common::*;
use ferromq_core::{DeathReason, Delivery, FieldValue};

/// A queue `dlq` bound to the default exchange collects dead letters from queues declared
/// with [`dlx_args`].
fn dlx_args(extra: &[(&'static str, FieldValue)]) -> Vec<(&'static str, FieldValue)> {
    let mut v = vec![
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ];
    v.extend_from_slice(extra);
    v
}

fn dead_letters(env: &Env) -> Vec<Delivery> {
    let mut sub = env.consume("dlq", 1000);
    let got = sub.drain();
    ack_all(&got);
    got
}

fn publish_expiring(env: &Env, queue: &str, body: &str, expiration_ms: u64) {
    let mut m = msg("", queue, body);
    m.properties.expiration_ms = Some(expiration_ms);
    assert_eq!(publish_msg(&env.conn, m).unwrap().accepted, 1);
}

#[test]
fn queue_ttl_expires_messages_through_housekeeping() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args("q", &dlx_args(&[("x-message-ttl", FieldValue::I32(1000))]));
    env.send("q", "old");
    env.tick(500);
    env.send("q", "young");
    env.tick(501);
    assert_eq!(
        env.stats("q").messages,
        1,
        "only the first has outlived its TTL"
    );
    let dead = dead_letters(&env);
    assert_eq!(bodies(&dead), ["old"]);
    let death = &dead[0].message.deaths[0];
    assert_eq!(death.reason, DeathReason::Expired);
    assert_eq!(death.queue, "q");
    assert_eq!(death.reason.as_str(), "expired");
    env.tick(500);
    assert_eq!(env.stats("q").messages, 0);
    assert_eq!(bodies(&dead_letters(&env)), ["young"]);
}

#[test]
fn ttl_is_the_smaller_of_queue_and_message_ttl() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args("q", &dlx_args(&[("x-message-ttl", FieldValue::I32(1000))]));
    // Message TTL shorter than the queue's.
    publish_expiring(&env, "q", "short", 100);
    env.tick(101);
    assert_eq!(env.stats("q").messages, 0);
    let dead = dead_letters(&env);
    assert_eq!(bodies(&dead), ["short"]);
    assert_eq!(dead[0].message.deaths[0].original_expiration_ms, Some(100));
    assert_eq!(
        dead[0].message.properties.expiration_ms, None,
        "dead letters do not expire again"
    );

    // Message TTL longer than the queue's: the queue's wins.
    publish_expiring(&env, "q", "long", 60_000);
    env.tick(999);
    assert_eq!(env.stats("q").messages, 1);
    env.tick(2);
    assert_eq!(env.stats("q").messages, 0);
    assert_eq!(bodies(&dead_letters(&env)), ["long"]);
}

#[test]
fn per_message_ttl_without_queue_ttl() {
    let env = Env::new();
    env.declare("q");
    publish_expiring(&env, "q", "brief", 50);
    env.send("q", "forever");
    env.tick(51);
    let mut sub = env.consume("q", 10);
    assert_eq!(sub.drain_bodies(), ["forever"]);
}

#[test]
fn expired_messages_at_the_head_are_dropped_on_dispatch() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args("q", &dlx_args(&[("x-message-ttl", FieldValue::I32(100))]));
    env.send("q", "a");
    env.send("q", "b");
    // No housekeeping: the clock moves, then a consumer arrives.
    env.clock.advance(200);
    env.send("q", "c");
    let mut sub = env.consume("q", 10);
    assert_eq!(sub.drain_bodies(), ["c"]);
    let dead = dead_letters(&env);
    assert_eq!(bodies(&dead), ["a", "b"]);
    assert!(dead
        .iter()
        .all(|d| d.message.deaths[0].reason == DeathReason::Expired));
}

#[test]
fn messages_expire_while_waiting_for_credit() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args("q", &dlx_args(&[("x-message-ttl", FieldValue::I32(100))]));
    let mut sub = env.consume("q", 1);
    env.send("q", "first");
    env.send("q", "stale");
    let d = sub.expect();
    env.clock.advance(150);
    env.send("q", "fresh");
    ack(&d);
    assert_eq!(sub.drain_bodies(), ["fresh"]);
    assert_eq!(bodies(&dead_letters(&env)), ["stale"]);
}

#[test]
fn a_long_lived_head_shields_later_expired_messages_until_it_goes() {
    // As in RabbitMQ, only the head of the queue is checked for expiry.
    let env = Env::new();
    env.declare("q");
    env.send("q", "head");
    publish_expiring(&env, "q", "behind", 10);
    env.tick(20);
    assert_eq!(env.stats("q").messages, 2);
    let mut sub = env.consume("q", 10);
    assert_eq!(
        sub.drain_bodies(),
        ["head"],
        "the expired message is dropped once it reaches the head"
    );
    assert_eq!(env.stats("q").messages, 0);
}

#[test]
fn zero_ttl_delivers_now_or_never() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args("q", &dlx_args(&[("x-message-ttl", FieldValue::I32(0))]));
    env.send("q", "nobody-listening");
    assert_eq!(
        env.stats("q").messages,
        0,
        "a zero TTL message that cannot be delivered at once expires"
    );
    assert_eq!(bodies(&dead_letters(&env)), ["nobody-listening"]);

    let mut sub = env.consume("q", 1);
    env.send("q", "delivered");
    env.send("q", "no-credit");
    assert_eq!(sub.drain_bodies(), ["delivered"]);
    assert_eq!(env.stats("q").messages, 0);
    assert_eq!(bodies(&dead_letters(&env)), ["no-credit"]);
}

#[test]
fn queue_expiry_deletes_an_unused_queue() {
    let env = Env::new();
    env.declare_args("temp", &[("x-expires", FieldValue::I32(1000))]);
    env.send("temp", "publishing does not count as use");
    env.tick(999);
    assert!(env.exists("temp"));
    env.tick(1);
    assert!(!env.exists("temp"));
    assert!(env.publish("", "temp", "x").unroutable());
}

#[test]
fn queue_expiry_waits_while_consumers_exist_and_restarts_on_redeclare() {
    let env = Env::new();
    let args = [("x-expires", FieldValue::I32(1000))];
    env.declare_args("temp", &args);
    let sub = env.consume("temp", 1);
    env.tick(5000);
    assert!(env.exists("temp"), "a queue with a consumer is in use");
    drop(sub);
    env.tick(600);
    env.declare_args("temp", &args);
    env.tick(600);
    assert!(env.exists("temp"), "redeclaring restarted the timer");
    // A passive declare counts as use too.
    env.conn
        .declare_queue("temp", options(&args), true)
        .unwrap();
    env.tick(999);
    assert!(env.exists("temp"));
    env.tick(1);
    assert!(!env.exists("temp"));
}

#[test]
fn a_changed_expiry_applies_from_the_last_use() {
    let env = Env::new();
    env.declare_args("session", &[("x-expires", FieldValue::I32(1000))]);
    let q = env.conn.vhost().queue("session").unwrap();
    assert_eq!(q.expires(), Some(1000));
    q.set_expires(Some(5000));
    assert_eq!(q.expires(), Some(5000));
    env.tick(4999);
    assert!(env.exists("session"), "the longer expiry holds");
    q.set_expires(None);
    env.tick(60_000);
    assert!(env.exists("session"), "no expiry: never deleted for disuse");
    q.set_expires(Some(100));
    env.tick(100);
    assert!(
        !env.exists("session"),
        "a shorter one counts from the last use"
    );
}

#[test]
fn max_length_drop_head_dead_letters_the_oldest() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args("q", &dlx_args(&[("x-max-length", FieldValue::I32(2))]));
    for i in 1..=4 {
        let out = env.send("q", &i.to_string());
        assert_eq!(out.rejected, 0);
    }
    assert_eq!(env.stats("q").messages, 2);
    let dead = dead_letters(&env);
    assert_eq!(bodies(&dead), ["1", "2"]);
    assert!(dead
        .iter()
        .all(|d| d.message.deaths[0].reason == DeathReason::MaxLen));
    assert_eq!(dead[0].message.deaths[0].reason.as_str(), "maxlen");
    let mut sub = env.consume("q", 10);
    assert_eq!(sub.drain_bodies(), ["3", "4"]);
}

#[test]
fn max_length_counts_ready_messages_only() {
    let env = Env::new();
    env.declare_args("q", &[("x-max-length", FieldValue::I32(1))]);
    let mut sub = env.consume("q", 2);
    env.send("q", "a");
    env.send("q", "b");
    env.send("q", "c");
    assert_eq!(sub.drain_bodies(), ["a", "b"]);
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.unacked), (1, 2));
}

#[test]
fn max_length_bytes_drop_head() {
    let env = Env::new();
    env.declare("dlq");
    env.declare_args(
        "q",
        &dlx_args(&[("x-max-length-bytes", FieldValue::I32(10))]),
    );
    env.send("q", "aaaa");
    env.send("q", "bbbb");
    assert_eq!(env.stats("q").message_bytes, 8);
    env.send("q", "cccc");
    let stats = env.stats("q");
    assert_eq!((stats.messages, stats.message_bytes), (2, 8));
    assert_eq!(bodies(&dead_letters(&env)), ["aaaa"]);
    // A message larger than the limit on its own does not stay either.
    env.send("q", "0123456789ABC");
    assert_eq!(env.stats("q").messages, 0);
    assert_eq!(
        bodies(&dead_letters(&env)),
        ["bbbb", "cccc", "0123456789ABC"]
    );
}

#[test]
fn reject_publish_refuses_new_messages() {
    let env = Env::new();
    env.declare("dlq");
    let args = dlx_args(&[
        ("x-max-length", FieldValue::I32(2)),
        ("x-overflow", s("reject-publish")),
    ]);
    env.declare_args("q", &args);
    env.declare("other");
    env.bind("q", "amq.fanout", "");
    env.bind("other", "amq.fanout", "");
    assert_eq!(env.publish("amq.fanout", "", "1").accepted, 2);
    assert_eq!(env.publish("amq.fanout", "", "2").accepted, 2);
    let out = env.publish("amq.fanout", "", "3");
    assert_eq!(
        (out.accepted, out.rejected),
        (1, 1),
        "the full queue refuses, the other accepts"
    );
    assert!(!out.unroutable());
    assert_eq!(env.stats("q").messages, 2);
    assert!(
        dead_letters(&env).is_empty(),
        "reject-publish does not dead-letter"
    );
    let mut sub = env.consume("q", 10);
    assert_eq!(
        sub.drain_bodies(),
        ["1", "2"],
        "the oldest messages are kept"
    );
}

#[test]
fn reject_publish_by_bytes() {
    let env = Env::new();
    env.declare_args(
        "q",
        &[
            ("x-max-length-bytes", FieldValue::I32(5)),
            ("x-overflow", s("reject-publish")),
        ],
    );
    assert_eq!(env.publish("", "q", "abc").rejected, 0);
    assert_eq!(
        env.publish("", "q", "def").rejected,
        1,
        "3 + 3 bytes would exceed 5"
    );
    assert_eq!(env.publish("", "q", "de").rejected, 0);
    assert_eq!(env.stats("q").message_bytes, 5);
}

#[test]
fn reject_publish_dlx_refuses_and_dead_letters() {
    let env = Env::new();
    env.declare("dlq");
    let args = dlx_args(&[
        ("x-max-length", FieldValue::I32(1)),
        ("x-overflow", s("reject-publish-dlx")),
    ]);
    env.declare_args("q", &args);
    assert_eq!(env.publish("", "q", "kept").rejected, 0);
    let out = env.publish("", "q", "refused");
    assert_eq!((out.accepted, out.rejected), (0, 1));
    let dead = dead_letters(&env);
    assert_eq!(bodies(&dead), ["refused"]);
    assert_eq!(dead[0].message.deaths[0].reason, DeathReason::MaxLen);
    assert_eq!(dead[0].message.deaths[0].queue, "q");
    assert_eq!(env.stats("q").messages, 1);
}

#[test]
fn invalid_limit_arguments_are_refused() {
    let env = Env::new();
    for args in [
        vec![("x-overflow", s("explode"))],
        vec![("x-max-length", s("ten"))],
        vec![("x-expires", FieldValue::I32(0))],
        vec![("x-message-ttl", FieldValue::I64(-5))],
        vec![("x-max-priority", FieldValue::I32(256))],
    ] {
        let err = env
            .conn
            .declare_queue("q", options(&args), false)
            .unwrap_err();
        assert_eq!(err.reply_code(), 406, "{args:?}: {err:?}");
    }
    assert!(!env.exists("q"));
}
