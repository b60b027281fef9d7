//! kill -9 under load: the broker runs as a child process, a producer sends persistent
//! messages with receipts and a consumer acks them with receipts, and the broker is killed
//! at a random moment. After each restart every message that was receipted and not
//! ack-receipted must be delivered again (flagged redelivered), intact, and no
//! ack-receipted message may come back.
//!
//! Rounds: `FERROMQ_CRASH_ROUNDS` (default 6).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use common::Client;
use ferromq_stomp::codec::{Command, Frame};

const QUEUE: &str = "/queue/crash";
/// Unreceipted SENDs in flight per producer.
const WINDOW: usize = 64;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker child; killed when dropped, so a failing test leaves no broker behind.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_broker(data: &Path, port: u16) -> Broker {
    Broker(spawn_child(data, port, None))
}

/// A broker child with STOMP on `port`, AMQP on `amqp` if given, and no other listener.
fn spawn_child(data: &Path, port: u16, amqp: Option<u16>) -> Child {
    Process::new(env!("CARGO_BIN_EXE_ferromq"))
        .arg("serve")
        .env_clear()
        .env("FERROMQ_DATA_DIR", data)
        .env("FERROMQ_LISTENERS__STOMP", format!("127.0.0.1:{port}"))
        .env(
            "FERROMQ_LISTENERS__AMQP",
            amqp.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default(),
        )
        .env("FERROMQ_LISTENERS__MQTT", "")
        .env("FERROMQ_LISTENERS__OPENWIRE", "")
        .env("FERROMQ_LISTENERS__AMQP_TLS", "")
        .env("FERROMQ_LISTENERS__MQTT_TLS", "")
        .env("FERROMQ_LISTENERS__STOMP_TLS", "")
        .env("FERROMQ_LISTENERS__OPENWIRE_TLS", "")
        .env("FERROMQ_LISTENERS__WS", "")
        .env("FERROMQ_LISTENERS__WSS", "")
        .env("FERROMQ_LOG", "warn")
        // Small segments, so that rotation and deletion happen during the test.
        .env("FERROMQ_STORE__SEGMENT_SIZE_MAX_BYTES", "262144")
        .env("FERROMQ_STORE__DISK_FREE_MIN_BYTES", "0")
        // Compaction as often as the persister ticks (once a second), so that crashes also
        // land on journals where the queue's declaration was moved past its messages.
        .env("FERROMQ_STORE__COMPACTION_INTERVAL_MS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferromq")
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker did not listen on {addr}");
}

/// The body of message `seq`: its number and a pattern whose length varies with it, so a
/// torn or mixed-up body is noticed.
fn body(seq: u64) -> Vec<u8> {
    let mut b = format!("m{seq}:").into_bytes();
    let len = 100 + (seq * 7919 % 3000) as usize;
    b.extend((0..len).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
    b
}

fn parse(b: &[u8]) -> u64 {
    let text = std::str::from_utf8(b).expect("body is UTF-8");
    let (head, _) = text.split_once(':').expect("body has a sequence number");
    let seq: u64 = head[1..].parse().expect("sequence number");
    assert_eq!(b, body(seq).as_slice(), "body of message {seq} is intact");
    seq
}

/// Sends from `next` on until the connection dies; returns the receipted sequence numbers.
async fn produce(addr: SocketAddr, mut next: u64) -> Vec<u64> {
    let mut c = Client::connect(addr).await;
    let mut confirmed = Vec::new();
    let mut outstanding = 0;
    loop {
        while outstanding < WINDOW {
            let receipt = next.to_string();
            let headers = [
                ("destination", QUEUE),
                ("persistent", "true"),
                ("receipt", receipt.as_str()),
            ];
            if !c.try_send_frame(Command::Send, &headers, &body(next)).await {
                return confirmed;
            }
            next += 1;
            outstanding += 1;
        }
        match c.next_item(true).await {
            Some(f) if f.command == Command::Receipt => {
                let id = f.headers.get("receipt-id").expect("receipt-id");
                confirmed.push(id.parse().expect("numeric receipt"));
                outstanding -= 1;
            }
            Some(f) => panic!("producer got {f:?}"),
            None => return confirmed,
        }
    }
}

/// Consumes and acks until the connection dies, holding every fiftieth message unacked;
/// returns the ack-receipted sequence numbers and those whose ACK was sent.
async fn consume(addr: SocketAddr) -> (Vec<u64>, Vec<u64>) {
    let mut c = Client::connect(addr).await;
    if !c
        .try_send_frame(
            Command::Subscribe,
            &[
                ("id", "s"),
                ("destination", QUEUE),
                ("ack", "client-individual"),
                ("prefetch-count", "1000"),
            ],
            b"",
        )
        .await
    {
        return (Vec::new(), Vec::new());
    }
    let mut acked = Vec::new();
    let mut received = Vec::new();
    let mut by_receipt: HashMap<String, u64> = HashMap::new();
    loop {
        let Some(f) = c.next_item(true).await else {
            return (acked, received);
        };
        match f.command {
            Command::Message => {
                let seq = parse(&f.body);
                // Every fiftieth message is held unacked: it must come back after the crash.
                if seq.is_multiple_of(50) {
                    continue;
                }
                received.push(seq);
                let id = f.headers.get("ack").expect("ack header").to_string();
                let receipt = format!("a{seq}");
                by_receipt.insert(receipt.clone(), seq);
                if !c
                    .try_send_frame(Command::Ack, &[("id", &id), ("receipt", &receipt)], b"")
                    .await
                {
                    return (acked, received);
                }
            }
            Command::Receipt => {
                let id = f.headers.get("receipt-id").expect("receipt-id");
                if let Some(seq) = by_receipt.remove(id) {
                    acked.push(seq);
                }
            }
            other => panic!("consumer got {other:?}"),
        }
    }
}

/// After a restart: takes every message in the queue, checking each, until the queue has
/// been quiet for a while and everything taken is acked (cumulative acks with receipts;
/// more messages than the prefetch window arrive only after an ack).
async fn drain(addr: SocketAddr) -> Vec<(u64, bool)> {
    let mut c = Client::connect(addr).await;
    c.subscribe("d", QUEUE, "client").await;
    let mut got = Vec::new();
    let mut last_ack: Option<String> = None;
    let mut acked_upto: Option<String> = None;
    let take = |f: Frame, got: &mut Vec<(u64, bool)>, last: &mut Option<String>| {
        assert_eq!(f.command, Command::Message, "{f:?}");
        let redelivered = f.headers.get("redelivered") == Some("true");
        got.push((parse(&f.body), redelivered));
        *last = Some(f.headers.get("ack").expect("ack").to_string());
    };
    loop {
        let item = tokio::time::timeout(Duration::from_millis(1500), c.next_item(true)).await;
        if let Ok(Some(f)) = item {
            take(f, &mut got, &mut last_ack);
            continue;
        }
        // Quiet: done once everything taken is acked; else ack it (receipted once
        // journaled) and look for more.
        if last_ack == acked_upto {
            break;
        }
        let id = last_ack.clone().expect("something was taken");
        c.send_frame(Command::Ack, &[("id", &id), ("receipt", &id)], b"")
            .await;
        loop {
            let f = c.frame().await;
            if f.command == Command::Receipt {
                assert_eq!(f.headers.get("receipt-id"), Some(id.as_str()));
                break;
            }
            take(f, &mut got, &mut last_ack);
        }
        acked_upto = Some(id);
    }
    c.send_frame(Command::Disconnect, &[("receipt", "bye")], b"")
        .await;
    let _ = c.next_item(true).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kill_9_and_acked_ones_stay_gone() {
    let rounds: u64 = std::env::var("FERROMQ_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let data = std::env::temp_dir().join(format!("ferromq-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut confirmed: BTreeSet<u64> = BTreeSet::new();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut maybe_acked: BTreeSet<u64> = BTreeSet::new();
    let mut next = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    for round in 0..rounds {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = spawn_broker(&data, port);
        wait_listening(addr).await;

        // What survived the last crash.
        let restored = drain(addr).await;
        let seen: BTreeSet<u64> = restored.iter().map(|(s, _)| *s).collect();
        for (seq, redelivered) in &restored {
            assert!(
                !acked.contains(seq),
                "round {round}: acked message {seq} came back"
            );
            assert!(
                *redelivered,
                "round {round}: restored message {seq} not flagged redelivered"
            );
        }
        let missing: Vec<u64> = confirmed
            .difference(&acked)
            .filter(|s| !seen.contains(s) && !maybe_acked.contains(s))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: confirmed messages lost: {missing:?}"
        );
        // The drain acked everything it saw, with a receipt.
        acked.extend(seen);

        // Load, then kill -9 at a random moment.
        let producer = tokio::spawn(produce(addr, next));
        let consumer = tokio::spawn(consume(addr));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = 300 + seed % 1200;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.0.kill().expect("kill -9");
        child.0.wait().unwrap();
        let sent = producer.await.unwrap();
        let (acks, received) = consume_result(consumer.await.unwrap());
        // An ACK whose receipt was lost with the broker may or may not have been
        // journaled: those messages may come back, or not.
        maybe_acked.extend(received.iter().copied());
        assert!(
            !sent.is_empty(),
            "round {round}: nothing was confirmed in {delay} ms"
        );
        next = sent.iter().max().copied().unwrap_or(next).max(next) + WINDOW as u64 + 1;
        confirmed.extend(sent);
        for seq in &received {
            assert!(
                !acked.contains(seq) || acks.contains(seq),
                "round {round}: acked message {seq} delivered again before the crash"
            );
        }
        acked.extend(acks);
    }
    // A last restart: what is left is exactly confirmed minus acked, at least.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = spawn_broker(&data, port);
    wait_listening(addr).await;
    let restored = drain(addr).await;
    for (seq, _) in &restored {
        assert!(!acked.contains(seq), "acked message {seq} came back");
    }
    let seen: BTreeSet<u64> = restored.iter().map(|(s, _)| *s).collect();
    let missing: Vec<u64> = confirmed
        .difference(&acked)
        .filter(|s| !seen.contains(s) && !maybe_acked.contains(s))
        .copied()
        .collect();
    assert!(missing.is_empty(), "confirmed messages lost: {missing:?}");
    drop(child);
    let _ = std::fs::remove_dir_all(&data);
}

fn consume_result(r: (Vec<u64>, Vec<u64>)) -> (BTreeSet<u64>, Vec<u64>) {
    (r.0.into_iter().collect(), r.1)
}

/// `tx.commit-ok` means stored: a broker killed right after it must still have every
/// committed persistent message after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_amqp_transactions_survive_kill_9() {
    use lapin::options::*;
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let data = std::env::temp_dir().join(format!("ferromq-crash-tx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (stomp, amqp) = (free_port(), free_port());
    let uri = format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f");
    let addr: SocketAddr = format!("127.0.0.1:{amqp}").parse().unwrap();
    let mut committed = 0u64;
    for round in 0..3u64 {
        let mut child = spawn_child(&data, stomp, Some(amqp));
        wait_listening(addr).await;
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("AMQP connects");
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                "tx".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            u64::from(q.message_count()),
            committed,
            "round {round}: every committed message is there after kill -9"
        );
        ch.tx_select().await.unwrap();
        for _ in 0..(50 + round * 37) {
            for k in 0..3 {
                let props = BasicProperties::default().with_delivery_mode(2);
                ch.basic_publish(
                    "".into(),
                    "tx".into(),
                    BasicPublishOptions::default(),
                    &body(committed + k),
                    props,
                )
                .await
                .unwrap();
            }
            ch.tx_commit().await.expect("tx.commit-ok");
            committed += 3;
        }
        // Killed at once after the last commit-ok, before anything else can happen.
        child.kill().unwrap();
        child.wait().unwrap();
        drop(conn);
    }
    let child = Broker(spawn_child(&data, stomp, Some(amqp)));
    wait_listening(addr).await;
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..committed {
        let got = ch
            .basic_get("tx".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a committed message");
        seqs.push(parse(&got.delivery.data));
    }
    let expected: Vec<u64> = (0..committed).collect();
    assert!(
        seqs == expected,
        "every committed message once, in order: {seqs:?}"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&data);
}
