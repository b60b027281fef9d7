//! Dead-lettering: rejected, expired, over-length and over-delivered messages go to the
//! queue's dead-letter exchange with a death history; automatic cycles are broken as
//! RabbitMQ breaks them.

mod common;

use common::*;
use ferromq_core::{DeathReason, Delivery, ExchangeKind, ExchangeOptions, FieldValue};

fn reject(d: &Delivery) {
    d.queue.nack(&[d.tag], false).unwrap();
}

fn take_all(env: &Env, queue: &str) -> Vec<Delivery> {
    let mut sub = env.consume(queue, 1000);
    let got = sub.drain();
    ack_all(&got);
    got
}

#[test]
fn rejected_messages_go_to_the_dlx_with_the_dead_letter_routing_key() {
    let env = Env::new();
    let v = env.conn.vhost();
    v.declare_exchange(
        "dlx",
        ExchangeKind::Direct,
        ExchangeOptions::default(),
        false,
    )
    .unwrap();
    env.declare("dead");
    env.bind("dead", "dlx", "dead-key");
    env.declare_args(
        "work",
        &[
            ("x-dead-letter-exchange", s("dlx")),
            ("x-dead-letter-routing-key", s("dead-key")),
        ],
    );
    env.bind("work", "amq.direct", "job");
    let mut m = msg("amq.direct", "job", "payload");
    m.properties.message_id = Some("id-1".into());
    publish_msg(&env.conn, m).unwrap();
    env.clock.advance(42);

    let mut sub = env.consume("work", 10);
    let d = sub.expect();
    reject(&d);
    assert_eq!(env.stats("work").messages, 0);

    let dead = take_all(&env, "dead");
    assert_eq!(bodies(&dead), ["payload"]);
    let m = &dead[0].message;
    assert_eq!(m.exchange, "dlx");
    assert_eq!(m.routing_key, "dead-key");
    assert_eq!(
        m.properties.message_id.as_deref(),
        Some("id-1"),
        "properties are kept"
    );
    assert_eq!(m.deaths.len(), 1);
    let death = &m.deaths[0];
    assert_eq!(death.queue, "work");
    assert_eq!(death.reason, DeathReason::Rejected);
    assert_eq!(death.reason.as_str(), "rejected");
    assert_eq!(death.exchange, "amq.direct", "where it was published");
    assert_eq!(death.routing_key, "job");
    assert_eq!(death.count, 1);
    assert_eq!(death.time_ms, T0_MS + 42);
    assert!(
        !dead[0].redelivered,
        "a dead letter is a new message in its new queue"
    );
}

#[test]
fn without_a_dead_letter_routing_key_the_original_key_is_used() {
    let env = Env::new();
    env.declare("by-original-key");
    env.bind("by-original-key", "amq.topic", "orders.#");
    env.declare_args("work", &[("x-dead-letter-exchange", s("amq.topic"))]);
    env.publish("", "work", "ignored-key");
    // Published to the default exchange with key "work": that is the key reused.
    let mut sub = env.consume("work", 10);
    reject(&sub.expect());
    assert!(take_all(&env, "by-original-key").is_empty());

    env.conn
        .vhost()
        .bind_queue(
            "by-original-key",
            "amq.topic",
            "work",
            Default::default(),
            env.conn.id(),
        )
        .unwrap();
    env.send("work", "second");
    reject(&sub.expect());
    let dead = take_all(&env, "by-original-key");
    assert_eq!(bodies(&dead), ["second"]);
    assert_eq!(dead[0].message.routing_key, "work");
}

#[test]
fn a_missing_dlx_drops_the_message() {
    let env = Env::new();
    env.declare_args("work", &[("x-dead-letter-exchange", s("not-there"))]);
    env.send("work", "x");
    let mut sub = env.consume("work", 10);
    reject(&sub.expect());
    let stats = env.stats("work");
    assert_eq!((stats.messages, stats.unacked), (0, 0));
}

#[test]
fn the_body_is_shared_through_dead_lettering() {
    let env = Env::new();
    env.declare("dead");
    env.declare_args(
        "work",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dead")),
        ],
    );
    let body = bytes::Bytes::from(vec![1u8; 4096]);
    env.conn
        .vhost()
        .publish(std::sync::Arc::new(ferromq_core::Message::new(
            "",
            "work",
            body.clone(),
        )))
        .unwrap();
    let mut sub = env.consume("work", 10);
    reject(&sub.expect());
    let dead = take_all(&env, "dead");
    assert_eq!(dead[0].message.body.as_ptr(), body.as_ptr());
}

#[test]
fn rejection_cycles_continue_and_count_deaths() {
    // A queue that dead-letters to itself: a client rejecting in a loop is not a cycle to
    // break, and each death in the same queue for the same reason bumps one count.
    let env = Env::new();
    env.declare_args(
        "loop",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("loop")),
        ],
    );
    env.send("loop", "boomerang");
    let mut sub = env.consume("loop", 10);
    for n in 1..=3u64 {
        let d = sub.expect();
        assert_eq!(body(&d), "boomerang");
        let deaths = &d.message.deaths;
        assert_eq!(deaths.len(), if n == 1 { 0 } else { 1 });
        if n > 1 {
            assert_eq!(deaths[0].count, n - 1);
            assert_eq!(deaths[0].reason, DeathReason::Rejected);
        }
        reject(&d);
    }
    let d = sub.expect();
    assert_eq!(d.message.deaths[0].count, 3);
    assert_eq!(d.message.deaths.len(), 1);
}

#[test]
fn a_ttl_queue_dead_lettering_to_itself_drops_the_message() {
    let env = Env::new();
    env.declare_args(
        "self-ttl",
        &[
            ("x-message-ttl", FieldValue::I32(100)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("self-ttl")),
        ],
    );
    env.send("self-ttl", "x");
    env.tick(101);
    assert_eq!(
        env.stats("self-ttl").messages,
        0,
        "an automatic cycle is broken at once"
    );
    env.tick(1000);
    assert_eq!(env.stats("self-ttl").messages, 0);
}

#[test]
fn ttl_ping_pong_between_two_queues_stops_on_return() {
    let env = Env::new();
    let ttl_to = |target: &'static str| {
        vec![
            ("x-message-ttl", FieldValue::I32(100)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(target)),
        ]
    };
    env.declare_args("ping", &ttl_to("pong"));
    env.declare_args("pong", &ttl_to("ping"));
    env.send("ping", "ball");
    env.tick(101);
    assert_eq!(
        (env.stats("ping").messages, env.stats("pong").messages),
        (0, 1)
    );
    env.tick(101);
    assert_eq!(
        (env.stats("ping").messages, env.stats("pong").messages),
        (0, 0)
    );
}

#[test]
fn a_rejection_earlier_in_history_does_not_excuse_a_later_automatic_cycle() {
    // Rejected once, then expiring in the same queue that dead-letters to itself: the
    // cycle since the message last died in this queue has no rejection in it, so it is
    // broken (RabbitMQ only looks at the deaths since the queue's own last entry).
    let env = Env::new();
    env.declare_args(
        "q",
        &[
            ("x-message-ttl", FieldValue::I32(100)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("q")),
        ],
    );
    env.send("q", "x");
    let mut sub = env.consume("q", 10);
    reject(&sub.expect());
    let d = sub.expect();
    assert_eq!(d.message.deaths[0].reason, DeathReason::Rejected);
    sub.handle.cancel();
    d.queue.nack(&[d.tag], true).unwrap();
    drop(sub);
    assert_eq!(env.stats("q").messages, 1);
    env.tick(101);
    assert_eq!(
        env.stats("q").messages,
        0,
        "expired -> itself is an automatic cycle"
    );
    env.tick(101);
    assert_eq!(env.stats("q").messages, 0);
}

#[test]
fn synchronous_overflow_cycles_terminate_even_after_a_rejection() {
    // `a` and `b` cannot hold anything and dead-letter into each other. A message that was
    // rejected elsewhere first must still not bounce between them forever.
    let env = Env::new();
    let full_to = |target: &'static str| {
        vec![
            ("x-max-length", FieldValue::I32(0)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(target)),
        ]
    };
    env.declare_args("a", &full_to("b"));
    env.declare_args("b", &full_to("a"));
    env.declare_args(
        "entry",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("a")),
        ],
    );
    env.send("entry", "hot potato");
    let mut sub = env.consume("entry", 10);
    reject(&sub.expect());
    assert_eq!((env.stats("a").messages, env.stats("b").messages), (0, 0));

    // Without a rejection, too.
    env.publish("", "a", "direct");
    assert_eq!((env.stats("a").messages, env.stats("b").messages), (0, 0));
}

#[test]
fn death_history_is_newest_first_across_queues() {
    let env = Env::new();
    env.declare("final");
    env.declare_args(
        "first",
        &[
            ("x-message-ttl", FieldValue::I32(10)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("second")),
        ],
    );
    env.declare_args(
        "second",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("final")),
        ],
    );
    env.send("first", "x");
    env.tick(11);
    let mut sub = env.consume("second", 10);
    reject(&sub.expect());
    let dead = take_all(&env, "final");
    let deaths: Vec<(&str, DeathReason)> = dead[0]
        .message
        .deaths
        .iter()
        .map(|d| (d.queue.as_ref(), d.reason))
        .collect();
    assert_eq!(
        deaths,
        [
            ("second", DeathReason::Rejected),
            ("first", DeathReason::Expired)
        ]
    );
    assert_eq!(dead[0].message.deaths[1].routing_key, "first");
    assert_eq!(dead[0].message.deaths[0].routing_key, "second");
}

#[test]
fn delivery_limit_dead_letters_poison_messages() {
    let env = Env::new();
    env.declare("poison");
    env.declare_args(
        "work",
        &[
            ("x-delivery-limit", FieldValue::I32(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("poison")),
        ],
    );
    env.send("work", "bad");
    env.send("work", "good");
    let mut sub = env.consume("work", 1);
    let mut deliveries = 0;
    loop {
        let Some(d) = sub.next() else { break };
        if body(&d) == "good" {
            ack(&d);
            continue;
        }
        deliveries += 1;
        d.queue.nack(&[d.tag], true).unwrap();
    }
    assert_eq!(deliveries, 3, "the first delivery plus two redeliveries");
    let dead = take_all(&env, "poison");
    assert_eq!(bodies(&dead), ["bad"]);
    assert_eq!(dead[0].message.deaths[0].reason, DeathReason::DeliveryLimit);
    assert_eq!(dead[0].message.deaths[0].reason.as_str(), "delivery_limit");
    assert_eq!(env.stats("work").messages, 0);
}

#[test]
fn delivery_limit_counts_returns_from_consumers_that_went_away() {
    let env = Env::new();
    env.declare("poison");
    env.declare_args(
        "work",
        &[
            ("x-delivery-limit", FieldValue::I32(0)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("poison")),
        ],
    );
    env.send("work", "crashes-consumers");
    let mut sub = env.consume("work", 1);
    let _d = sub.expect();
    drop(sub);
    assert_eq!(env.stats("work").messages, 0);
    assert_eq!(bodies(&take_all(&env, "poison")), ["crashes-consumers"]);
}

#[test]
fn dead_letters_route_through_exchanges_and_their_alternates() {
    let env = Env::new();
    let v = env.conn.vhost();
    v.declare_exchange(
        "catch-all",
        ExchangeKind::Fanout,
        ExchangeOptions::default(),
        false,
    )
    .unwrap();
    let with_ae = ExchangeOptions {
        arguments: table(&[("alternate-exchange", s("catch-all"))]),
        ..Default::default()
    };
    v.declare_exchange("dlx", ExchangeKind::Topic, with_ae, false)
        .unwrap();
    env.declare("errors");
    env.declare("other");
    env.bind("errors", "dlx", "err.#");
    env.bind("other", "catch-all", "");
    env.declare_args("work", &[("x-dead-letter-exchange", s("dlx"))]);
    env.bind("work", "amq.direct", "err.disk");
    env.bind("work", "amq.direct", "info");
    env.publish("amq.direct", "err.disk", "e");
    env.publish("amq.direct", "info", "i");
    let mut sub = env.consume("work", 10);
    let got = sub.drain();
    got.iter().for_each(reject);
    assert_eq!(bodies(&take_all(&env, "errors")), ["e"]);
    assert_eq!(bodies(&take_all(&env, "other")), ["i"]);
}
