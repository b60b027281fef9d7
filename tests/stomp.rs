//! Black-box STOMP tests: the server in-process on an ephemeral port, driven over TCP.

mod common;

use common::{broker, Client};
use ferromq_stomp::codec::Command;

#[tokio::test]
async fn queue_round_robin_and_receipts() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe("s", "/queue/work", "auto").await;
    b.subscribe("s", "/queue/work", "auto").await;
    let mut p = Client::connect(addr).await;
    for i in 0..4 {
        p.send("/queue/work", format!("m{i}").as_bytes(), &[]).await;
    }
    let (a1, a2) = (a.message().await, a.message().await);
    let (b1, b2) = (b.message().await, b.message().await);
    let mut bodies: Vec<_> = [a1, a2, b1, b2]
        .iter()
        .map(|f| String::from_utf8(f.body.to_vec()).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3"]);
    server.shutdown().await;
}

#[tokio::test]
async fn topic_fanout_shares_amq_topic_with_exchange_destinations() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut subs = Vec::new();
    for dest in ["/topic/a.*", "/topic/a.>", "/exchange/amq.topic/#"] {
        let mut c = Client::connect(addr).await;
        c.subscribe("t", dest, "auto").await;
        subs.push(c);
    }
    let mut p = Client::connect(addr).await;
    p.send(
        "/exchange/amq.topic/a.b",
        b"x",
        &[("content-type", "text/plain"), ("x-app", "1")],
    )
    .await;
    for c in &mut subs {
        let m = c.message().await;
        assert_eq!(&m.body[..], b"x");
        assert_eq!(m.headers.get("destination"), Some("/topic/a.b"));
        assert_eq!(m.headers.get("content-type"), Some("text/plain"));
        assert_eq!(m.headers.get("x-app"), Some("1"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unacked_messages_go_to_another_consumer_flagged_redelivered() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut a = Client::connect(addr).await;
    a.subscribe("s", "/queue/r", "client-individual").await;
    let mut p = Client::connect(addr).await;
    p.send("/queue/r", b"one", &[]).await;
    let m = a.message().await;
    assert_eq!(m.headers.get("redelivered"), Some("false"));
    let mut b = Client::connect(addr).await;
    b.subscribe("s", "/queue/r", "client-individual").await;
    drop(a);
    let again = b.message().await;
    assert_eq!(&again.body[..], b"one");
    assert_eq!(again.headers.get("redelivered"), Some("true"));
    b.ack(&again).await;
    b.expect_silence(200).await;
    server.shutdown().await;
}

#[tokio::test]
async fn client_ack_is_cumulative_and_nack_requeues() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut c = Client::connect(addr).await;
    c.subscribe("s", "/queue/cum", "client").await;
    let mut p = Client::connect(addr).await;
    for i in 0..3 {
        p.send("/queue/cum", format!("{i}").as_bytes(), &[]).await;
    }
    let _m0 = c.message().await;
    let m1 = c.message().await;
    let m2 = c.message().await;
    c.ack(&m1).await; // acknowledges 0 and 1
    let id = m2.headers.get("ack").unwrap().to_string();
    c.send_frame(Command::Nack, &[("id", &id)], b"").await;
    let back = c.message().await;
    assert_eq!(&back.body[..], b"2");
    assert_eq!(back.headers.get("redelivered"), Some("true"));
    c.ack(&back).await;
    c.expect_silence(200).await;
    let q = server.broker().vhost("/").unwrap().queue("cum").unwrap();
    assert_eq!(q.stats().unacked, 0);
    assert_eq!(q.stats().messages, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_and_abort() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut c = Client::connect(addr).await;
    c.subscribe("s", "/queue/tx", "client-individual").await;
    c.send_frame(Command::Begin, &[("transaction", "t1")], b"")
        .await;
    c.send_frame(
        Command::Send,
        &[("destination", "/queue/tx"), ("transaction", "t1")],
        b"a",
    )
    .await;
    c.expect_silence(150).await;
    c.send_frame(
        Command::Commit,
        &[("transaction", "t1"), ("receipt", "c")],
        b"",
    )
    .await;
    // The receipt and the committed message may arrive in either order.
    let (f1, f2) = (c.frame().await, c.frame().await);
    let m = if f1.command == Command::Message {
        f1
    } else {
        f2
    };
    assert_eq!(&m.body[..], b"a");
    // An ACK inside an aborted transaction leaves the message to be redelivered.
    let id = m.headers.get("ack").unwrap().to_string();
    c.send_frame(Command::Begin, &[("transaction", "t2")], b"")
        .await;
    c.send_frame(Command::Ack, &[("id", &id), ("transaction", "t2")], b"")
        .await;
    c.send_frame(
        Command::Send,
        &[("destination", "/queue/tx"), ("transaction", "t2")],
        b"discarded",
    )
    .await;
    c.send_frame(Command::Abort, &[("transaction", "t2")], b"")
        .await;
    let again = c.message().await;
    assert_eq!(&again.body[..], b"a");
    assert_eq!(again.headers.get("redelivered"), Some("true"));
    c.ack(&again).await;
    c.expect_silence(200).await;
    server.shutdown().await;
}

#[tokio::test]
async fn temp_queue_request_reply() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut svc = Client::connect(addr).await;
    svc.subscribe("s", "/queue/svc", "auto").await;
    let mut req = Client::connect(addr).await;
    req.send(
        "/queue/svc",
        b"ping",
        &[
            ("reply-to", "/temp-queue/replies"),
            ("correlation-id", "c1"),
        ],
    )
    .await;
    let m = svc.message().await;
    let reply_to = m.headers.get("reply-to").unwrap().to_string();
    assert!(reply_to.starts_with("/reply-queue/amq.gen-"), "{reply_to}");
    svc.send(&reply_to, b"pong", &[("correlation-id", "c1")])
        .await;
    let r = req.message().await;
    assert_eq!(&r.body[..], b"pong");
    assert_eq!(r.headers.get("destination"), Some("/temp-queue/replies"));
    assert_eq!(r.headers.get("correlation-id"), Some("c1"));
    // The temp queue belongs to the requester and dies with it.
    let qname = reply_to.trim_start_matches("/reply-queue/").to_string();
    drop(req);
    let vhost = server.broker().vhost("/").unwrap();
    for _ in 0..100 {
        if vhost.queue(&qname).is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        vhost.queue(&qname).is_none(),
        "temp queue deleted with its connection"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn durable_subscription_keeps_messages_while_away() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let sub_hs = [
        ("id", "d1"),
        ("destination", "/topic/news"),
        ("ack", "auto"),
        ("activemq.subscriptionName", "feed"),
        ("receipt", "s"),
    ];
    let mut c = Client::connect_with(addr, &[("client-id", "app1")]).await;
    c.send_frame(Command::Subscribe, &sub_hs, b"").await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    drop(c);
    let mut p = Client::connect(addr).await;
    p.send("/topic/news", b"while-away", &[]).await;
    let mut c = Client::connect_with(addr, &[("client-id", "app1")]).await;
    c.send_frame(Command::Subscribe, &sub_hs, b"").await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    assert_eq!(&c.message().await.body[..], b"while-away");
    // UNSUBSCRIBE naming the subscription forgets it.
    c.send_frame(
        Command::Unsubscribe,
        &[
            ("id", "d1"),
            ("activemq.subscriptionName", "feed"),
            ("receipt", "u"),
        ],
        b"",
    )
    .await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    assert!(server
        .broker()
        .vhost("/")
        .unwrap()
        .queue("stomp-durable.app1.feed")
        .is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn errors_close_only_the_offending_connection() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut good = Client::connect(addr).await;
    good.subscribe("s", "/queue/ok", "auto").await;
    let cases: [&[u8]; 5] = [
        b"SEND\nreceipt:r\n\nno destination\0",
        b"SEND\ndestination:nowhere\n\n\0",
        b"ACK\nid:999\n\n\0",
        b"COMMIT\ntransaction:nope\n\n\0",
        b"\x00\x01\x02garbage\n\n\0",
    ];
    for bytes in cases {
        let mut bad = Client::connect(addr).await;
        bad.send_raw(bytes).await;
        let f = bad.frame().await;
        assert_eq!(f.command, Command::Error, "{f:?}");
        assert!(f.headers.get("message").is_some());
        bad.expect_closed().await;
    }
    let mut p = Client::connect(addr).await;
    p.send("/queue/ok", b"still fine", &[]).await;
    assert_eq!(&good.message().await.body[..], b"still fine");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_frames_are_refused_before_they_arrive() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut c = Client::connect(addr).await;
    c.send_raw(b"SEND\ndestination:/queue/big\ncontent-length:104857600\n\n")
        .await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Error);
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_and_versions_are_refused() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut c = Client::open(addr).await;
    c.send_frame(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("login", "guest"),
            ("passcode", "wrong"),
        ],
        b"",
    )
    .await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Error);
    c.expect_closed().await;
    let mut c = Client::open(addr).await;
    c.send_frame(Command::Connect, &[("accept-version", "2.0")], b"")
        .await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Error);
    assert!(f.headers.get("message").unwrap().contains("1.0,1.1,1.2"));
    server.shutdown().await;
}

#[tokio::test]
async fn connection_cap_refuses_extra_connections() {
    let server = broker(|c| c.stomp.connections_max = 2).await;
    let addr = server.stomp_addr().unwrap();
    let _a = Client::connect(addr).await;
    let _b = Client::connect(addr).await;
    let mut c = Client::open(addr).await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.headers.get("message"), Some("Too many connections"));
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_both_ways() {
    let server = broker(|c| {
        c.stomp.heartbeat_send_ms = 50;
        c.stomp.heartbeat_receive_ms = 50;
    })
    .await;
    let addr = server.stomp_addr().unwrap();
    // The client wants heart-beats every 50 ms and promises none: it gets them.
    let mut c = Client::connect_with(addr, &[("heart-beat", "0,50")]).await;
    assert!(c.heartbeat().await);
    assert!(c.heartbeat().await);
    // A client that promises heart-beats and stays silent is disconnected.
    let mut silent = Client::connect_with(addr, &[("heart-beat", "50,0")]).await;
    let f = silent.frame().await;
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.headers.get("message"), Some("Heart-beat timeout"));
    silent.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_to_every_connection() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut a = Client::connect(addr).await;
    a.subscribe("s", "/queue/x", "auto").await;
    let done = tokio::spawn(server.shutdown());
    let f = a.frame().await;
    assert_eq!(f.command, Command::Error);
    assert_eq!(f.headers.get("message"), Some("Server shutdown"));
    a.expect_closed().await;
    tokio::time::timeout(common::WAIT, done)
        .await
        .expect("shutdown completes")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn deleting_a_queue_under_a_subscriber_ends_its_subscription_with_an_error() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut c = Client::connect(addr).await;
    c.subscribe("s", "/queue/doomed", "client-individual").await;
    let vhost = server.broker().vhost("/").unwrap();
    vhost.delete_queue("doomed", false, false, 0).unwrap();
    let f = c.frame().await;
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert_eq!(f.headers.get("message"), Some("Subscription cancelled"));
    c.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_reject_publish_queue_refuses_a_receipted_send() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut args = ferromq_core::FieldTable::new();
    args.insert("x-max-length", ferromq_core::FieldValue::I64(1));
    args.insert(
        "x-overflow",
        ferromq_core::FieldValue::Str("reject-publish".into()),
    );
    let options = ferromq_core::QueueOptions {
        arguments: args,
        ..Default::default()
    };
    server
        .broker()
        .vhost("/")
        .unwrap()
        .declare_queue("full", options, false, 0)
        .unwrap();
    let mut p = Client::connect(addr).await;
    p.send("/queue/full", b"fits", &[]).await;
    p.send_frame(
        Command::Send,
        &[("destination", "/queue/full"), ("receipt", "r2")],
        b"overflows",
    )
    .await;
    let f = p.frame().await;
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert_eq!(f.headers.get("message"), Some("Message rejected"));
    assert_eq!(f.headers.get("receipt-id"), Some("r2"));
    p.expect_closed().await;
    assert_eq!(
        server
            .broker()
            .vhost("/")
            .unwrap()
            .queue("full")
            .unwrap()
            .stats()
            .messages,
        1
    );
    server.shutdown().await;
}

/// SUBSCRIBE with a `selector` header, waiting for the receipt.
async fn subscribe_selecting(c: &mut Client, id: &str, dest: &str, selector: &str) {
    let receipt = format!("sub-{id}");
    c.send_frame(
        Command::Subscribe,
        &[
            ("id", id),
            ("destination", dest),
            ("ack", "auto"),
            ("selector", selector),
            ("receipt", &receipt),
        ],
        b"",
    )
    .await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Receipt, "{f:?}");
}

#[tokio::test]
async fn selector_header_filters_queue_and_topic_subscriptions() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let mut red = Client::connect(addr).await;
    subscribe_selecting(&mut red, "r", "/queue/paint", "color = 'red' AND size > 2").await;
    let mut topic = Client::connect(addr).await;
    subscribe_selecting(&mut topic, "t", "/topic/paint.news", "color LIKE 'bl%'").await;
    let mut p = Client::connect(addr).await;
    for (color, size) in [("red", "1"), ("blue", "5"), ("red", "5")] {
        let body = format!("{color}-{size}");
        p.send(
            "/queue/paint",
            body.as_bytes(),
            &[("color", color), ("size", size)],
        )
        .await;
        p.send("/topic/paint.news", body.as_bytes(), &[("color", color)])
            .await;
    }
    // STOMP header values are strings, so `size > 2` compares a string with a number:
    // unknown, never selected (as in JMS). Only string comparisons select here.
    p.send("/queue/paint", b"red-big", &[("color", "red")])
        .await;
    red.expect_silence(100).await;
    drop(red);
    let mut red = Client::connect(addr).await;
    subscribe_selecting(&mut red, "r2", "/queue/paint", "color = 'red'").await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let m = red.message().await;
        bodies.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    assert_eq!(bodies, ["red-1", "red-5", "red-big"]);
    let m = topic.message().await;
    assert_eq!(&m.body[..], b"blue-5");
    topic.expect_silence(100).await;
    // The blue one is still in the queue for a consumer without a selector.
    let mut any = Client::connect(addr).await;
    any.subscribe("a", "/queue/paint", "auto").await;
    assert_eq!(&any.message().await.body[..], b"blue-5");

    // A malformed selector is an ERROR frame for that connection only.
    let mut bad = Client::connect(addr).await;
    bad.send_frame(
        Command::Subscribe,
        &[
            ("id", "b"),
            ("destination", "/queue/paint"),
            ("selector", "color = "),
        ],
        b"",
    )
    .await;
    let f = bad.frame().await;
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert_eq!(f.headers.get("message"), Some("Invalid selector"));
    bad.expect_closed().await;
    p.send("/queue/paint", b"after", &[]).await;
    assert_eq!(&any.message().await.body[..], b"after");
    server.shutdown().await;
}

/// Message groups from STOMP clients: SENDs with a `JMSXGroupID` header to a queue with two
/// subscribers; every message of a group goes to one of them, in order, and the first one
/// each gets carries `JMSXGroupFirstForConsumer:true`.
#[tokio::test]
async fn message_groups_keep_each_group_on_one_subscriber() {
    let server = broker(|_| {}).await;
    let addr = server.stomp_addr().unwrap();
    let dest = "/queue/groups";
    let mut subs = [Client::connect(addr).await, Client::connect(addr).await];
    for (i, c) in subs.iter_mut().enumerate() {
        c.subscribe(&format!("s{i}"), dest, "auto").await;
    }
    let mut producer = Client::connect(addr).await;
    let per_group = 5;
    for i in 0..per_group {
        for g in ["g1", "g2", "g3"] {
            let seq = (i + 1).to_string();
            let body = format!("{g}:{i}");
            producer
                .send(
                    dest,
                    body.as_bytes(),
                    &[("JMSXGroupID", g), ("JMSXGroupSeq", &seq)],
                )
                .await;
        }
    }
    let mut owner = std::collections::HashMap::new();
    let mut next = std::collections::HashMap::new();
    let mut received = 0;
    while received < 3 * per_group {
        let mut progress = false;
        for (k, c) in subs.iter_mut().enumerate() {
            let Some(m) = c.next_message_within(100).await else {
                continue;
            };
            progress = true;
            received += 1;
            let g = m
                .headers
                .get("JMSXGroupID")
                .expect("group header")
                .to_string();
            assert_eq!(*owner.entry(g.clone()).or_insert(k), k, "{g} went to both");
            let i = next.entry(g.clone()).or_insert(0);
            assert_eq!(std::str::from_utf8(&m.body).unwrap(), format!("{g}:{i}"));
            let first = m.headers.get("JMSXGroupFirstForConsumer") == Some("true");
            assert_eq!(first, *i == 0, "first-for-consumer flag of {g}:{i}");
            *i += 1;
        }
        assert!(
            progress,
            "only {received} of {} messages arrived",
            3 * per_group
        );
    }
    server.shutdown().await;
}
