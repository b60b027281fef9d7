//! Exchanges and routing, as RabbitMQ routes: the default exchange, direct, fanout, topic
//! and headers exchanges, exchange-to-exchange bindings, alternate exchanges, and the rules
//! on declaring and deleting exchanges.

mod common;

use common::*;
use ferromq_core::{
    BrokerConfig, CoreError, CoreLimits, ExchangeKind, ExchangeOptions, FieldValue, QueueOptions,
};

/// Names of the queues among `queues` that hold messages (purging them), in the order
/// given.
fn landed(env: &Env, queues: &[&str]) -> Vec<String> {
    let mut hit = Vec::new();
    for q in queues {
        let n = env.conn.vhost().purge_queue(q, env.conn.id()).unwrap();
        assert!(n <= 1, "queue '{q}' got the message {n} times");
        if n == 1 {
            hit.push(q.to_string());
        }
    }
    hit
}

fn exchange(env: &Env, name: &str, kind: ExchangeKind) {
    env.conn
        .vhost()
        .declare_exchange(name, kind, ExchangeOptions::default(), false)
        .unwrap();
}

fn exchange_with(env: &Env, name: &str, kind: ExchangeKind, options: ExchangeOptions) {
    env.conn
        .vhost()
        .declare_exchange(name, kind, options, false)
        .unwrap();
}

fn alternate(ae: &str) -> ExchangeOptions {
    ExchangeOptions {
        arguments: table(&[("alternate-exchange", s(ae))]),
        ..Default::default()
    }
}

#[test]
fn default_exchange_routes_to_the_queue_named_by_the_key() {
    let env = Env::new();
    env.declare("orders");
    env.declare("invoices");
    let out = env.publish("", "orders", "o1");
    assert_eq!((out.accepted, out.rejected), (1, 0));
    assert!(!out.unroutable());
    assert_eq!(landed(&env, &["orders", "invoices"]), ["orders"]);

    let out = env.publish("", "nobody", "lost");
    assert!(out.unroutable());
    assert_eq!(out.accepted, 0);
}

#[test]
fn default_exchange_cannot_be_bound_declared_or_deleted() {
    let env = Env::new();
    env.declare("q");
    let v = env.conn.vhost();
    let err = v
        .bind_queue("q", "", "q", Default::default(), env.conn.id())
        .unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    assert_eq!(err.reply_code(), 403);
    let err = v.delete_exchange("", false).unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    let err = v
        .declare_exchange("", ExchangeKind::Direct, ExchangeOptions::default(), false)
        .unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
}

#[test]
fn publishing_to_a_missing_exchange_is_not_found() {
    let env = Env::new();
    let err = publish_msg(&env.conn, msg("nope", "k", "x")).unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
    assert_eq!(err.reply_code(), 404);
}

#[test]
fn direct_exchange_matches_the_key_exactly() {
    let env = Env::new();
    exchange(&env, "logs", ExchangeKind::Direct);
    for q in ["errors", "all", "info"] {
        env.declare(q);
    }
    env.bind("errors", "logs", "error");
    env.bind("all", "logs", "error");
    env.bind("all", "logs", "info");
    env.bind("info", "logs", "info");
    let qs = ["errors", "all", "info"];

    assert_eq!(env.publish("logs", "error", "e").accepted, 2);
    assert_eq!(landed(&env, &qs), ["errors", "all"]);
    assert_eq!(env.publish("logs", "info", "i").accepted, 2);
    assert_eq!(landed(&env, &qs), ["all", "info"]);
    assert!(env.publish("logs", "error.x", "x").unroutable());
    assert!(env.publish("logs", "", "x").unroutable());

    // The built-in amq.direct behaves the same.
    env.bind("info", "amq.direct", "k");
    assert_eq!(env.publish("amq.direct", "k", "x").accepted, 1);
    assert_eq!(landed(&env, &qs), ["info"]);
}

#[test]
fn unbind_stops_routing_and_absent_bindings_are_not_an_error() {
    let env = Env::new();
    env.declare("q");
    env.bind("q", "amq.direct", "k");
    let v = env.conn.vhost();
    v.unbind_queue("q", "amq.direct", "k", &Default::default(), env.conn.id())
        .unwrap();
    assert!(env.publish("amq.direct", "k", "x").unroutable());
    v.unbind_queue("q", "amq.direct", "k", &Default::default(), env.conn.id())
        .unwrap();
    let err = v
        .unbind_queue("q", "nope", "k", &Default::default(), env.conn.id())
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
}

#[test]
fn fanout_exchange_ignores_the_key_and_delivers_once_per_queue() {
    let env = Env::new();
    exchange(&env, "news", ExchangeKind::Fanout);
    for q in ["a", "b", "c"] {
        env.declare(q);
        env.bind(q, "news", "");
    }
    // A second binding of the same queue (another key) must not duplicate the message.
    env.bind("a", "news", "other");
    let out = env.publish("news", "whatever", "hello");
    assert_eq!(out.accepted, 3);
    assert_eq!(landed(&env, &["a", "b", "c"]), ["a", "b", "c"]);
    assert_eq!(
        env.conn.vhost().exchange("news").unwrap().binding_count(),
        4
    );
}

#[test]
fn topic_exchange_star_and_hash() {
    let env = Env::new();
    let patterns = [
        ("q_orange", "*.orange.*"),
        ("q_rabbit", "*.*.rabbit"),
        ("q_lazy", "lazy.#"),
        ("q_all", "#"),
        ("q_exact", "quick.brown.fox"),
        ("q_mid", "a.#.z"),
    ];
    for (q, p) in patterns {
        env.declare(q);
        env.bind(q, "amq.topic", p);
    }
    let qs: Vec<&str> = patterns.iter().map(|(q, _)| *q).collect();
    let cases: [(&str, &[&str]); 10] = [
        ("quick.orange.rabbit", &["q_orange", "q_rabbit", "q_all"]),
        ("lazy.orange.elephant", &["q_orange", "q_lazy", "q_all"]),
        ("quick.orange.fox", &["q_orange", "q_all"]),
        ("lazy.brown.fox", &["q_lazy", "q_all"]),
        ("lazy.pink.rabbit", &["q_rabbit", "q_lazy", "q_all"]),
        ("quick.brown.fox", &["q_all", "q_exact"]),
        ("lazy", &["q_lazy", "q_all"]),
        ("quick.orange.male.rabbit", &["q_all"]),
        ("a.z", &["q_all", "q_mid"]),
        ("a.b.c.z", &["q_all", "q_mid"]),
    ];
    for (key, want) in cases {
        env.publish("amq.topic", key, key);
        assert_eq!(landed(&env, &qs), want, "routing key '{key}'");
    }
    // `*` needs exactly one word, even an empty one.
    env.declare("q_one");
    env.bind("q_one", "amq.topic", "*");
    env.publish("amq.topic", "", "empty");
    assert_eq!(landed(&env, &["q_one", "q_all"]), ["q_one", "q_all"]);
    env.publish("amq.topic", "a.b", "two words");
    assert_eq!(landed(&env, &["q_one", "q_all"]), ["q_all"]);
}

#[test]
fn topic_queue_matching_several_patterns_gets_one_copy() {
    let env = Env::new();
    env.declare("q");
    env.bind("q", "amq.topic", "a.*");
    env.bind("q", "amq.topic", "#");
    env.bind("q", "amq.topic", "a.b");
    assert_eq!(env.publish("amq.topic", "a.b", "x").accepted, 1);
    assert_eq!(env.stats("q").messages, 1);
    env.conn
        .vhost()
        .unbind_queue("q", "amq.topic", "#", &Default::default(), env.conn.id())
        .unwrap();
    env.conn
        .vhost()
        .unbind_queue("q", "amq.topic", "a.*", &Default::default(), env.conn.id())
        .unwrap();
    assert!(env.publish("amq.topic", "a.c", "x").unroutable());
    assert_eq!(env.publish("amq.topic", "a.b", "x").accepted, 1);
}

fn publish_headers(env: &Env, exchange: &str, headers: &[(&str, FieldValue)]) {
    let mut m = msg(exchange, "ignored", "h");
    m.properties.headers = table(headers);
    publish_msg(&env.conn, m).unwrap();
}

#[test]
fn headers_exchange_all_and_any() {
    let env = Env::new();
    env.declare("all");
    env.declare("any");
    env.declare("none");
    let v = env.conn.vhost();
    let id = env.conn.id();
    let all = table(&[
        ("x-match", s("all")),
        ("format", s("pdf")),
        ("type", s("report")),
    ]);
    let any = table(&[
        ("x-match", s("any")),
        ("format", s("pdf")),
        ("type", s("report")),
    ]);
    v.bind_queue("all", "amq.headers", "", all, id).unwrap();
    v.bind_queue("any", "amq.match", "", any, id).unwrap();
    // No arguments but x-match: matches every message.
    v.bind_queue(
        "none",
        "amq.headers",
        "",
        table(&[("x-match", s("any"))]),
        id,
    )
    .unwrap();
    let qs = ["all", "any", "none"];

    publish_headers(
        &env,
        "amq.headers",
        &[
            ("format", s("pdf")),
            ("type", s("report")),
            ("extra", s("1")),
        ],
    );
    assert_eq!(landed(&env, &qs), ["all"]);
    publish_headers(&env, "amq.match", &[("format", s("pdf"))]);
    assert_eq!(landed(&env, &qs), ["any"]);
    publish_headers(&env, "amq.headers", &[("format", s("pdf"))]);
    assert_eq!(
        landed(&env, &qs),
        Vec::<String>::new(),
        "`all` needs every header; `any` with no args matches nothing"
    );
    publish_headers(
        &env,
        "amq.match",
        &[("format", s("zip")), ("type", s("invoice"))],
    );
    assert!(landed(&env, &qs).is_empty());
}

#[test]
fn headers_exchange_default_is_all_ignores_x_args_and_compares_integers_by_value() {
    let env = Env::new();
    exchange(&env, "h", ExchangeKind::Headers);
    env.declare("q");
    let binding = table(&[
        ("n", FieldValue::I32(5)),
        ("x-ignored", s("whatever")),
        ("present", FieldValue::Void),
    ]);
    env.conn
        .vhost()
        .bind_queue("q", "h", "", binding, env.conn.id())
        .unwrap();

    publish_headers(
        &env,
        "h",
        &[("n", FieldValue::I64(5)), ("present", s("anything"))],
    );
    assert_eq!(landed(&env, &["q"]), ["q"]);
    publish_headers(&env, "h", &[("n", FieldValue::I64(5))]);
    assert!(
        landed(&env, &["q"]).is_empty(),
        "void argument requires presence"
    );
    publish_headers(&env, "h", &[("n", FieldValue::I64(6)), ("present", s("x"))]);
    assert!(landed(&env, &["q"]).is_empty());
}

#[test]
fn exchange_to_exchange_bindings() {
    let env = Env::new();
    let v = env.conn.vhost();
    exchange(&env, "ingress", ExchangeKind::Fanout);
    exchange(&env, "by-region", ExchangeKind::Topic);
    exchange(&env, "audit", ExchangeKind::Fanout);
    env.declare("eu");
    env.declare("us");
    env.declare("audit-log");
    v.bind_exchange("by-region", "ingress", "", Default::default())
        .unwrap();
    v.bind_exchange("audit", "ingress", "", Default::default())
        .unwrap();
    env.bind("eu", "by-region", "eu.#");
    env.bind("us", "by-region", "us.#");
    env.bind("audit-log", "audit", "");
    // `eu` is also reachable directly from the source: still one copy.
    env.bind("eu", "ingress", "");
    let qs = ["eu", "us", "audit-log"];

    assert_eq!(env.publish("ingress", "us.east", "x").accepted, 3);
    assert_eq!(landed(&env, &qs), ["eu", "us", "audit-log"]);
    v.unbind_queue("eu", "ingress", "", &Default::default(), env.conn.id())
        .unwrap();
    env.publish("ingress", "eu.west", "x");
    assert_eq!(landed(&env, &qs), ["eu", "audit-log"]);

    v.unbind_exchange("audit", "ingress", "", &Default::default())
        .unwrap();
    env.publish("ingress", "eu.west", "x");
    assert_eq!(landed(&env, &qs), ["eu"]);

    let listed = v.bindings();
    assert!(listed.iter().any(|b| b.source == "ingress"
        && b.destination == "by-region"
        && b.destination_is_exchange));

    // Deleting a destination exchange removes the bindings to it.
    v.delete_exchange("by-region", false).unwrap();
    assert!(env.publish("ingress", "eu.west", "x").unroutable());
    assert_eq!(v.exchange("ingress").unwrap().binding_count(), 0);
}

#[test]
fn exchange_binding_cycles_terminate_and_deliver_once() {
    let env = Env::new();
    let v = env.conn.vhost();
    for x in ["x1", "x2", "x3"] {
        exchange(&env, x, ExchangeKind::Fanout);
    }
    // A dense cycle: every exchange bound to every other under several keys. Routing must
    // visit each exchange once, not every path through the cycle.
    for (src, dst) in [
        ("x1", "x2"),
        ("x2", "x3"),
        ("x3", "x1"),
        ("x2", "x1"),
        ("x3", "x2"),
        ("x1", "x3"),
    ] {
        for key in ["a", "b", "c", "d", "e", "f"] {
            v.bind_exchange(dst, src, key, Default::default()).unwrap();
        }
    }
    env.declare("q");
    env.bind("q", "x3", "");
    let started = std::time::Instant::now();
    assert_eq!(env.publish("x1", "k", "loop").accepted, 1);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "routing took {:?}",
        started.elapsed()
    );
    assert_eq!(env.stats("q").messages, 1);
}

#[test]
fn alternate_exchange_takes_unroutable_messages() {
    let env = Env::new();
    exchange(&env, "unrouted", ExchangeKind::Fanout);
    exchange_with(&env, "main", ExchangeKind::Direct, alternate("unrouted"));
    env.declare("normal");
    env.declare("dead-ends");
    env.bind("normal", "main", "ok");
    env.bind("dead-ends", "unrouted", "");
    let qs = ["normal", "dead-ends"];

    let out = env.publish("main", "ok", "x");
    assert_eq!(out.accepted, 1);
    assert_eq!(landed(&env, &qs), ["normal"]);
    let out = env.publish("main", "nope", "x");
    assert_eq!(
        out.accepted, 1,
        "routed through the alternate exchange counts as routed"
    );
    assert!(!out.unroutable());
    assert_eq!(landed(&env, &qs), ["dead-ends"]);
    let routed = env.conn.vhost().queue("dead-ends").unwrap();
    let mut sub = env.consume("dead-ends", 10);
    env.publish("main", "again", "y");
    let d = sub.expect();
    assert_eq!(
        (d.message.exchange.as_ref(), d.message.routing_key.as_ref()),
        ("main", "again")
    );
    assert!(std::sync::Arc::ptr_eq(&d.queue, &routed));
}

#[test]
fn alternate_exchange_missing_or_unroutable_leaves_the_message_unroutable() {
    let env = Env::new();
    exchange_with(
        &env,
        "main",
        ExchangeKind::Direct,
        alternate("not-declared-yet"),
    );
    assert!(env.publish("main", "k", "x").unroutable());
    // AE exists but routes nowhere either.
    exchange(&env, "not-declared-yet", ExchangeKind::Direct);
    assert!(env.publish("main", "k", "x").unroutable());
    // Alternate exchanges that name each other do not loop.
    exchange_with(&env, "ping", ExchangeKind::Direct, alternate("pong"));
    exchange_with(&env, "pong", ExchangeKind::Direct, alternate("ping"));
    assert!(env.publish("ping", "k", "x").unroutable());
    env.declare("q");
    env.bind("q", "pong", "k");
    assert_eq!(env.publish("ping", "k", "x").accepted, 1);
}

#[test]
fn internal_exchange_refuses_publish_but_routes_from_other_exchanges() {
    let env = Env::new();
    let internal = ExchangeOptions {
        internal: true,
        ..Default::default()
    };
    exchange_with(&env, "inner", ExchangeKind::Fanout, internal);
    exchange(&env, "outer", ExchangeKind::Fanout);
    env.declare("q");
    env.bind("q", "inner", "");
    env.conn
        .vhost()
        .bind_exchange("inner", "outer", "", Default::default())
        .unwrap();

    let err = publish_msg(&env.conn, msg("inner", "", "x")).unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    assert_eq!(env.stats("q").messages, 0);
    assert_eq!(env.publish("outer", "", "x").accepted, 1);
    assert_eq!(env.stats("q").messages, 1);
}

#[test]
fn reserved_names_are_refused() {
    let env = Env::new();
    let v = env.conn.vhost();
    let err = v
        .declare_exchange(
            "amq.custom",
            ExchangeKind::Direct,
            ExchangeOptions::default(),
            false,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    assert_eq!(err.reply_code(), 403);
    let err = env
        .conn
        .declare_queue("amq.q", QueueOptions::default(), false)
        .unwrap_err();
    assert!(matches!(err, CoreError::AccessRefused(_)), "{err:?}");
    for builtin in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        let err = v.delete_exchange(builtin, false).unwrap_err();
        assert!(
            matches!(err, CoreError::AccessRefused(_)),
            "{builtin}: {err:?}"
        );
    }
    // Redeclaring a built-in equivalently is allowed, as in RabbitMQ.
    v.declare_exchange(
        "amq.topic",
        ExchangeKind::Topic,
        ExchangeOptions::default(),
        false,
    )
    .unwrap();
    let err = v
        .declare_exchange(
            "amq.topic",
            ExchangeKind::Direct,
            ExchangeOptions::default(),
            false,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
    // A server-named queue gets the reserved prefix.
    let (q, _) = env
        .conn
        .declare_queue("", QueueOptions::default(), false)
        .unwrap();
    assert!(q.name().starts_with("amq.gen-"), "{}", q.name());
    assert_eq!(env.publish("", q.name(), "x").accepted, 1);
}

#[test]
fn passive_declares() {
    let env = Env::new();
    let v = env.conn.vhost();
    let err = v
        .declare_exchange(
            "ghost",
            ExchangeKind::Direct,
            ExchangeOptions::default(),
            true,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
    assert_eq!(err.reply_code(), 404);
    assert!(
        v.exchange("ghost").is_none(),
        "a passive declare creates nothing"
    );
    let err = env
        .conn
        .declare_queue("ghost", QueueOptions::default(), true)
        .unwrap_err();
    assert_eq!(err.reply_code(), 404);
    assert!(!env.exists("ghost"));

    exchange(&env, "real", ExchangeKind::Topic);
    // Passive ignores the properties given.
    let e = v
        .declare_exchange(
            "real",
            ExchangeKind::Fanout,
            ExchangeOptions::default(),
            true,
        )
        .unwrap();
    assert_eq!(e.kind(), ExchangeKind::Topic);

    env.declare("q");
    env.send("q", "1");
    env.send("q", "2");
    let (_q, stats) = env
        .conn
        .declare_queue(
            "q",
            QueueOptions {
                durable: false,
                ..Default::default()
            },
            true,
        )
        .unwrap();
    assert_eq!(stats.messages, 2);
    assert_eq!(stats.message_bytes, 2);
}

#[test]
fn inequivalent_exchange_redeclare_is_precondition_failed() {
    let env = Env::new();
    let v = env.conn.vhost();
    exchange(&env, "x", ExchangeKind::Direct);
    v.declare_exchange("x", ExchangeKind::Direct, ExchangeOptions::default(), false)
        .unwrap();
    let cases = [
        (ExchangeKind::Fanout, ExchangeOptions::default()),
        (
            ExchangeKind::Direct,
            ExchangeOptions {
                durable: false,
                ..Default::default()
            },
        ),
        (
            ExchangeKind::Direct,
            ExchangeOptions {
                auto_delete: true,
                ..Default::default()
            },
        ),
        (
            ExchangeKind::Direct,
            ExchangeOptions {
                internal: true,
                ..Default::default()
            },
        ),
        (ExchangeKind::Direct, alternate("elsewhere")),
    ];
    for (kind, options) in cases {
        let err = v
            .declare_exchange("x", kind, options.clone(), false)
            .unwrap_err();
        assert!(
            matches!(err, CoreError::PreconditionFailed(_)),
            "{kind:?} {options:?}: {err:?}"
        );
        assert_eq!(err.reply_code(), 406);
    }
    // Only alternate-exchange is compared among the arguments, as in RabbitMQ.
    let other_args = ExchangeOptions {
        arguments: table(&[("x-custom", s("1"))]),
        ..Default::default()
    };
    v.declare_exchange("x", ExchangeKind::Direct, other_args, false)
        .unwrap();
}

#[test]
fn inequivalent_queue_redeclare_is_precondition_failed() {
    let env = Env::new();
    env.declare_args("q", &[("x-message-ttl", FieldValue::I32(1000))]);
    // Same value, other integer width: equivalent.
    env.declare_args("q", &[("x-message-ttl", FieldValue::I64(1000))]);
    let cases = [
        options(&[("x-message-ttl", FieldValue::I32(2000))]),
        options(&[]),
        QueueOptions {
            durable: false,
            ..options(&[("x-message-ttl", FieldValue::I32(1000))])
        },
        QueueOptions {
            auto_delete: true,
            ..options(&[("x-message-ttl", FieldValue::I32(1000))])
        },
    ];
    for o in cases {
        let err = env.conn.declare_queue("q", o.clone(), false).unwrap_err();
        assert!(
            matches!(err, CoreError::PreconditionFailed(_)),
            "{o:?}: {err:?}"
        );
        assert_eq!(err.reply_code(), 406);
    }
    let err = env
        .conn
        .declare_queue(
            "bad",
            options(&[("x-max-length", FieldValue::I32(-1))]),
            false,
        )
        .unwrap_err();
    assert_eq!(err.reply_code(), 406);
    assert!(!env.exists("bad"));
}

#[test]
fn redeclare_is_equivalent_under_a_default_queue_length_limit() {
    let limits = CoreLimits {
        queue_length_default_max: Some(2),
        ..Default::default()
    };
    let env = Env::with_config(BrokerConfig {
        limits,
        ..Default::default()
    });
    env.declare("q");
    env.declare("q");
    env.send("q", "1");
    env.send("q", "2");
    env.send("q", "3");
    assert_eq!(env.stats("q").messages, 2, "the default limit applies");
    // An explicit limit still wins over the default.
    env.declare_args("big", &[("x-max-length", FieldValue::I32(10))]);
    env.declare_args("big", &[("x-max-length", FieldValue::I32(10))]);
    for i in 0..5 {
        env.send("big", &i.to_string());
    }
    assert_eq!(env.stats("big").messages, 5);
}

#[test]
fn delete_exchange_if_unused() {
    let env = Env::new();
    let v = env.conn.vhost();
    exchange(&env, "x", ExchangeKind::Fanout);
    env.declare("q");
    env.bind("q", "x", "");
    let err = v.delete_exchange("x", true).unwrap_err();
    assert!(matches!(err, CoreError::PreconditionFailed(_)), "{err:?}");
    assert!(v.exchange("x").is_some());
    v.unbind_queue("q", "x", "", &Default::default(), env.conn.id())
        .unwrap();
    v.delete_exchange("x", true).unwrap();
    assert!(v.exchange("x").is_none());
    let err = v.delete_exchange("x", false).unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");

    // Unconditional delete drops the bindings with it.
    exchange(&env, "y", ExchangeKind::Fanout);
    env.bind("q", "y", "");
    v.delete_exchange("y", false).unwrap();
    exchange(&env, "y", ExchangeKind::Fanout);
    assert!(
        env.publish("y", "", "x").unroutable(),
        "a new exchange of the same name starts unbound"
    );
}

#[test]
fn auto_delete_exchange_goes_with_its_last_binding() {
    let env = Env::new();
    let v = env.conn.vhost();
    let auto = ExchangeOptions {
        auto_delete: true,
        ..Default::default()
    };
    exchange_with(&env, "ad", ExchangeKind::Fanout, auto.clone());
    assert!(v.exchange("ad").is_some(), "never bound: stays");
    env.declare("q1");
    env.declare("q2");
    env.bind("q1", "ad", "");
    env.bind("q2", "ad", "");
    v.unbind_queue("q1", "ad", "", &Default::default(), env.conn.id())
        .unwrap();
    assert!(v.exchange("ad").is_some(), "one binding left");
    // Deleting the last bound queue removes the last binding.
    v.delete_queue("q2", false, false, env.conn.id()).unwrap();
    assert!(v.exchange("ad").is_none());

    // An exchange-to-exchange binding counts too.
    exchange_with(&env, "ad2", ExchangeKind::Fanout, auto);
    exchange(&env, "dest", ExchangeKind::Fanout);
    v.bind_exchange("dest", "ad2", "", Default::default())
        .unwrap();
    v.delete_exchange("dest", false).unwrap();
    assert!(v.exchange("ad2").is_none());
}

#[test]
fn binding_to_missing_queue_or_exchange_is_not_found() {
    let env = Env::new();
    let v = env.conn.vhost();
    env.declare("q");
    let err = v
        .bind_queue("nope", "amq.direct", "k", Default::default(), env.conn.id())
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
    let err = v
        .bind_queue("q", "nope", "k", Default::default(), env.conn.id())
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
    let err = v
        .bind_exchange("nope", "amq.direct", "k", Default::default())
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{err:?}");
}

#[test]
fn deleting_a_queue_removes_its_bindings() {
    let env = Env::new();
    let v = env.conn.vhost();
    env.declare("q");
    env.bind("q", "amq.topic", "a.#");
    env.bind("q", "amq.direct", "k");
    v.delete_queue("q", false, false, env.conn.id()).unwrap();
    assert!(env.publish("amq.topic", "a.b", "x").unroutable());
    assert!(env.publish("amq.direct", "k", "x").unroutable());
    assert!(v.bindings().iter().all(|b| b.destination != "q"));
    // A new queue of the same name starts unbound.
    env.declare("q");
    assert!(env.publish("amq.direct", "k", "x").unroutable());
}

#[test]
fn an_exchange_reached_twice_counts_as_routed_both_times() {
    // x -> y -> w -> q and x -> z -> w: z routes (through w) even though w was already
    // visited through y, so z's alternate exchange must stay unused.
    let env = Env::new();
    let v = env.conn.vhost();
    exchange(&env, "spill", ExchangeKind::Fanout);
    for x in ["x", "y", "w"] {
        exchange(&env, x, ExchangeKind::Fanout);
    }
    exchange_with(&env, "z", ExchangeKind::Fanout, alternate("spill"));
    v.bind_exchange("y", "x", "", Default::default()).unwrap();
    v.bind_exchange("z", "x", "", Default::default()).unwrap();
    v.bind_exchange("w", "y", "", Default::default()).unwrap();
    v.bind_exchange("w", "z", "", Default::default()).unwrap();
    env.declare("q");
    env.declare("spilled");
    env.bind("q", "w", "");
    env.bind("spilled", "spill", "");
    assert_eq!(env.publish("x", "", "m").accepted, 1);
    assert_eq!(landed(&env, &["q", "spilled"]), ["q"]);
}

#[test]
fn exchanges_and_bindings_are_bounded() {
    let builtins = 6;
    let limits = CoreLimits {
        exchanges_max: builtins + 1,
        bindings_max: 2,
        ..Default::default()
    };
    let env = Env::with_config(BrokerConfig {
        limits,
        ..Default::default()
    });
    let v = env.conn.vhost();
    exchange(&env, "one", ExchangeKind::Fanout);
    exchange(&env, "one", ExchangeKind::Fanout);
    let err = v
        .declare_exchange(
            "two",
            ExchangeKind::Fanout,
            ExchangeOptions::default(),
            false,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::ResourceLimit(_)), "{err:?}");
    env.declare("q");
    env.bind("q", "one", "a");
    env.bind("q", "one", "b");
    env.bind("q", "one", "b");
    let err = v
        .bind_queue("q", "one", "c", Default::default(), env.conn.id())
        .unwrap_err();
    assert!(matches!(err, CoreError::ResourceLimit(_)), "{err:?}");
}

#[test]
fn exchange_chains_longer_than_the_hop_limit_are_cut() {
    let limits = CoreLimits {
        exchange_hops_max: 2,
        ..Default::default()
    };
    let env = Env::with_config(BrokerConfig {
        limits,
        ..Default::default()
    });
    let v = env.conn.vhost();
    for x in ["e0", "e1", "e2", "e3"] {
        exchange(&env, x, ExchangeKind::Fanout);
    }
    for (src, dst) in [("e0", "e1"), ("e1", "e2"), ("e2", "e3")] {
        v.bind_exchange(dst, src, "", Default::default()).unwrap();
    }
    env.declare("near");
    env.declare("far");
    env.bind("near", "e2", "");
    env.bind("far", "e3", "");
    env.publish("e0", "", "x");
    assert_eq!(landed(&env, &["near", "far"]), ["near"]);
}

#[test]
fn unknown_exchange_types_are_command_invalid() {
    let err = ferromq_core::ExchangeKind::parse("x-consistent-hash").unwrap_err();
    assert!(matches!(err, CoreError::CommandInvalid(_)), "{err:?}");
    assert_eq!(err.reply_code(), 503);
    for kind in ["direct", "fanout", "topic", "headers"] {
        assert_eq!(
            ferromq_core::ExchangeKind::parse(kind).unwrap().as_str(),
            kind
        );
    }
}

#[test]
fn many_bindings_added_and_removed_in_any_order_route_exactly() {
    let env = Env::new();
    exchange(&env, "t", ExchangeKind::Topic);
    exchange(&env, "d", ExchangeKind::Direct);
    let queues: Vec<String> = (0..8).map(|i| format!("q{i}")).collect();
    for q in &queues {
        env.declare(q);
    }
    let v = env.conn.vhost().clone();
    let id = env.conn.id();
    let args = |n: u32| table(&[("n", FieldValue::U32(n))]);
    // Every (queue, key, arguments) combination, bound twice (the second is a no-op).
    let mut all = Vec::new();
    for (qi, q) in queues.iter().enumerate() {
        for k in 0..6 {
            for a in 0..2 {
                all.push((q.clone(), format!("k{}", (k + qi) % 6), a));
            }
        }
    }
    for _ in 0..2 {
        for (q, k, a) in &all {
            v.bind_queue(q, "t", k, args(*a), id).unwrap();
            v.bind_queue(q, "d", k, args(*a), id).unwrap();
        }
    }
    let count = |x: &str| v.bindings().iter().filter(|b| b.source == x).count();
    assert_eq!((count("t"), count("d")), (all.len(), all.len()));
    // Remove them in a scrambled order, checking the routes as they go.
    let mut order: Vec<usize> = (0..all.len()).collect();
    let mut seed = 7u64;
    for i in (1..order.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    let mut live: Vec<bool> = vec![true; all.len()];
    for (step, &i) in order.iter().enumerate() {
        let (q, k, a) = &all[i];
        v.unbind_queue(q, "t", k, &args(*a), id).unwrap();
        v.unbind_queue(q, "d", k, &args(*a), id).unwrap();
        live[i] = false;
        if step % 17 == 0 || step + 1 == order.len() {
            for k in 0..6 {
                let key = format!("k{k}");
                let mut want: Vec<String> = all
                    .iter()
                    .zip(&live)
                    .filter(|((_, bk, _), l)| **l && *bk == key)
                    .map(|((q, _, _), _)| q.clone())
                    .collect();
                want.sort();
                want.dedup();
                let names: Vec<&str> = queues.iter().map(String::as_str).collect();
                for x in ["t", "d"] {
                    env.publish(x, &key, "m");
                    assert_eq!(landed(&env, &names), want, "{x} {key} after {step}");
                }
            }
        }
    }
    assert_eq!((count("t"), count("d")), (0, 0));
}
