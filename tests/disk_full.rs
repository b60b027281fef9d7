//! A full disk: the broker's data directory is a small tmpfs. Persistent publishes are
//! confirmed until free space reaches the configured floor, then refused with a clear
//! error while everything else goes on; once consumers free space the broker accepts them
//! again without a restart, and after a restart exactly the unacknowledged messages are
//! there, intact.
//!
//! Mounting the tmpfs needs root (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Duration;

use common::Client;
use ferromq::Config;
use ferromq_stomp::codec::Command;

const QUEUE: &str = "/queue/disk";
const BODY: usize = 64 * 1024;

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size_mib: u32) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("ferromq-diskfull-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m"))
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn body(seq: u64) -> Vec<u8> {
    let mut b = format!("m{seq}:").into_bytes();
    b.resize(BODY, b'a' + (seq % 26) as u8);
    b
}

fn config(data: &Path) -> Config {
    let mut c = Config::default();
    c.listeners.stomp = "127.0.0.1:0".into();
    c.listeners.amqp = String::new();
    c.listeners.mqtt = String::new();
    c.listeners.openwire = String::new();
    for l in [
        &mut c.listeners.amqp_tls,
        &mut c.listeners.mqtt_tls,
        &mut c.listeners.stomp_tls,
        &mut c.listeners.openwire_tls,
        &mut c.listeners.ws,
        &mut c.listeners.wss,
    ] {
        l.clear();
    }
    c.data_dir = data.to_path_buf();
    c.store.segment_size_max_bytes = 1 << 20;
    c.store.disk_free_min_bytes = 8 << 20;
    c
}

/// Sends persistent messages with receipts from `next` on until one is refused; returns
/// the number receipted and the refusal's message header.
async fn fill(c: &mut Client, next: &mut u64) -> String {
    loop {
        let receipt = next.to_string();
        let hs = [
            ("destination", QUEUE),
            ("persistent", "true"),
            ("receipt", receipt.as_str()),
        ];
        c.send_frame(Command::Send, &hs, &body(*next)).await;
        let f = c.frame().await;
        match f.command {
            Command::Receipt => *next += 1,
            Command::Error => {
                return format!(
                    "{}: {}",
                    f.headers.get("message").unwrap_or(""),
                    String::from_utf8_lossy(&f.body)
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(*next < 10_000, "the disk never filled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_persistent_publishes_until_space_is_freed() {
    let fs = Tmpfs::mount(48);
    let data = fs.0.join("data");
    let server = ferromq::start(config(&data)).await.expect("starts");
    let addr = server.stomp_addr().unwrap();

    // 1. Fill until the floor refuses.
    let mut producer = Client::connect(addr).await;
    let mut next = 0u64;
    let why = fill(&mut producer, &mut next).await;
    assert!(why.contains("disk"), "the error says why: {why}");
    let filled = next;
    assert!(
        filled >= 100,
        "about 40 MiB fit before the floor, got {filled}"
    );

    // 2. Transient traffic still flows.
    let mut other = Client::connect(addr).await;
    other.subscribe("t", "/queue/transient", "auto").await;
    other.send("/queue/transient", b"still here", &[]).await;
    assert_eq!(&other.message().await.body[..], b"still here");

    // 3. A consumer takes and acks the first half: space comes back and persistent
    //    publishes are accepted again, without a restart.
    let mut consumer = Client::connect(addr).await;
    consumer.subscribe("s", QUEUE, "client-individual").await;
    let acked = filled / 2;
    for seq in 0..acked {
        let m = consumer.message().await;
        assert_eq!(&m.body[..], &body(seq)[..]);
        let id = m.headers.get("ack").expect("ack header").to_string();
        consumer.send_frame(Command::Ack, &[("id", &id)], b"").await;
    }
    // A receipt for a frame after the acks: the broker has taken them all.
    consumer
        .send_frame(
            Command::Unsubscribe,
            &[("id", "s"), ("receipt", "done")],
            b"",
        )
        .await;
    loop {
        let f = consumer.frame().await;
        if f.command == Command::Receipt {
            break;
        }
        assert_eq!(f.command, Command::Message);
    }
    drop(consumer);
    let mut producer = Client::connect(addr).await;
    let mut accepted = false;
    for _ in 0..100 {
        let receipt = next.to_string();
        let hs = [
            ("destination", QUEUE),
            ("persistent", "true"),
            ("receipt", receipt.as_str()),
        ];
        producer.send_frame(Command::Send, &hs, &body(next)).await;
        let f = producer.frame().await;
        if f.command == Command::Receipt {
            next += 1;
            accepted = true;
            break;
        }
        assert_eq!(f.command, Command::Error);
        // Refused while the floor is still reached: the connection is gone; wait for the
        // persister to measure free space again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        producer = Client::connect(addr).await;
    }
    assert!(accepted, "persistent publishes resume once space is freed");
    drop(producer);
    server.shutdown().await;

    // 4. After a restart: exactly the unacked ones, intact, in order.
    let server = ferromq::start(config(&data)).await.expect("restarts");
    let mut c = Client::connect(server.stomp_addr().unwrap()).await;
    c.subscribe("s", QUEUE, "auto").await;
    for seq in acked..next {
        let m = c.message().await;
        assert_eq!(&m.body[..], &body(seq)[..], "message {seq}");
    }
    c.expect_silence(300).await;
    drop(c);
    server.shutdown().await;
}
