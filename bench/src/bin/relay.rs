//! A loopback relay shaped like an MQTT broker that does nothing but forward bytes: the
//! "what the machine can do" reference next to the brokers in `bench/mqtt.sh`.
//!
//! ```text
//! cargo run --release -p ferromq-bench --bin relay -- [--listen 127.0.0.1:1913]
//! ```
//!
//! The MQTT load generator (`src/bin/mqtt/`) runs its 1 → 1 cases against it unchanged,
//! with the same client, so a row for the relay costs exactly what a row for a broker
//! costs on the client side, and the difference is what the broker does beyond moving
//! the bytes through the kernel twice. What it does per connection:
//! - CONNECT gets a fixed CONNACK (accepted, no session); PINGREQ a PINGRESP.
//! - SUBSCRIBE gets a SUBACK granting what was asked (QoS 2 is granted as 1), and the
//!   connection becomes *the* consumer: a later SUBSCRIBE on another connection replaces
//!   it. Its PUBACKs are read and dropped.
//! - A connection that sends PUBLISH is the producer. Every PUBLISH packet is copied
//!   verbatim to the consumer's socket, all the packets of one read in one write (a
//!   client's PUBLISH is a valid PUBLISH to a subscriber at the same QoS); at QoS 1 a
//!   PUBACK goes back after the forward, as a broker acknowledges after routing.
//! - Nothing is parsed beyond the fixed header, the packet id and SUBSCRIBE's topic list;
//!   no topic matching, no queue, no copy besides the batch buffer, no session state.
//!
//! Limits, on purpose: one consumer and one producer at a time (no fan-out, no fan-in);
//! QoS 2 publishes close the connection; the consumer's PINGREQ is answered only while no
//! producer is attached (its socket's write half is then the producer's; the load
//! generator's Keep Alive of 60 s is longer than a run). One thread: a relay does too
//! little work per message for a second one to help, and cross-thread wake-ups would
//! only add latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use ferromq_bench::cli::{die, Flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

/// Largest packet accepted (fixed header included); the load generator sends 256 bytes.
const PACKET_MAX_BYTES: usize = 1 << 20;
/// Read buffer of a connection to start with; it grows up to one packet past this.
const READ_BUFFER_BYTES: usize = 64 * 1024;

const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const PINGRESP: [u8; 2] = [0xd0, 0x00];

/// MQTT control packet types (the high nibble of the first byte).
mod kind {
    pub const CONNECT: u8 = 1;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const PINGREQ: u8 = 12;
    pub const DISCONNECT: u8 = 14;
}

/// The consumer's write half, tagged with its connection's number.
type Consumer = (u64, OwnedWriteHalf);

/// The consumer waiting for a producer; a producer takes it out while attached and puts
/// it back when it leaves.
#[derive(Default)]
struct Relay {
    consumer: Mutex<Option<Consumer>>,
    next_id: AtomicU64,
}

impl Relay {
    fn take_consumer(&self) -> Option<Consumer> {
        self.consumer.lock().expect("no panics while held").take()
    }

    /// Puts `c` back unless a newer consumer has subscribed meanwhile.
    fn return_consumer(&self, c: Consumer) {
        let mut slot = self.consumer.lock().expect("no panics while held");
        if slot.is_none() {
            *slot = Some(c);
        }
    }

    fn set_consumer(&self, c: Consumer) {
        *self.consumer.lock().expect("no panics while held") = Some(c);
    }

    /// Forgets consumer `id`, if it is the one waiting.
    fn remove_consumer(&self, id: u64) {
        let mut slot = self.consumer.lock().expect("no panics while held");
        if slot.as_ref().is_some_and(|(i, _)| *i == id) {
            *slot = None;
        }
    }
}

/// The length of the first packet in `buf`, fixed header included; `Ok(None)` until the
/// whole packet is there. The declared length is checked before any wait for it.
fn packet_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 2 + i + remaining;
            if total > PACKET_MAX_BYTES {
                return Err(format!("packet of {total} bytes, above {PACKET_MAX_BYTES}"));
            }
            return Ok((buf.len() >= total).then_some(total));
        }
    }
    Err("remaining length longer than 4 bytes".into())
}

/// Offset of the variable header in a whole packet (after the remaining length).
fn body_start(packet: &[u8]) -> usize {
    1 + packet[1..].iter().position(|b| b & 0x80 == 0).unwrap_or(0) + 1
}

/// The SUBACK for a whole SUBSCRIBE packet: its packet id, one granted QoS per topic.
fn suback(packet: &[u8]) -> Result<Vec<u8>, String> {
    let body = &packet[body_start(packet)..];
    let (id, mut topics) = body
        .split_at_checked(2)
        .ok_or("SUBSCRIBE without packet id")?;
    let mut granted = Vec::new();
    while !topics.is_empty() {
        let len = usize::from(u16::from_be_bytes(
            topics
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or("SUBSCRIBE topic cut short")?,
        ));
        let qos = *topics.get(2 + len).ok_or("SUBSCRIBE topic cut short")?;
        granted.push((qos & 0x03).min(1));
        topics = &topics[3 + len..];
    }
    if granted.is_empty() || granted.len() > 125 {
        return Err(format!("SUBSCRIBE with {} topics", granted.len()));
    }
    let mut p = vec![0x90, (2 + granted.len()) as u8];
    p.extend_from_slice(id);
    p.extend_from_slice(&granted);
    Ok(p)
}

/// The PUBACK a whole QoS 1 PUBLISH packet needs.
fn puback(packet: &[u8]) -> Result<[u8; 4], String> {
    let body = &packet[body_start(packet)..];
    let topic_len = usize::from(u16::from_be_bytes(
        body.get(..2)
            .and_then(|b| b.try_into().ok())
            .ok_or("PUBLISH cut short")?,
    ));
    let id = body
        .get(2 + topic_len..4 + topic_len)
        .ok_or("PUBLISH without packet id")?;
    Ok([0x40, 0x02, id[0], id[1]])
}

/// Serves one connection until it closes or breaks a rule.
async fn connection(relay: Arc<Relay>, stream: TcpStream) -> Result<(), String> {
    let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    // Our own write half while we have it (a consumer gives it to the relay).
    let mut own = Some(wr);
    // The consumer's write half while we are the producer.
    let mut target: Option<Consumer> = None;
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let (mut forward, mut acks) = (Vec::new(), Vec::new());
    let (mut connected, mut disconnected) = (false, false);
    let result = 'conn: loop {
        if disconnected {
            break Ok(());
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(format!("read: {e}")),
        }
        while let Some(len) = match packet_len(&buf) {
            Ok(l) => l,
            Err(e) => break 'conn Err(e),
        } {
            let packet = &buf[..len];
            let kind = packet[0] >> 4;
            if !connected && kind != kind::CONNECT {
                break 'conn Err("first packet is not CONNECT".into());
            }
            match kind {
                kind::CONNECT => {
                    connected = true;
                    acks.extend_from_slice(&CONNACK);
                }
                kind::PUBLISH => {
                    match (packet[0] >> 1) & 0x03 {
                        0 => {}
                        1 => match puback(packet) {
                            Ok(a) => acks.extend_from_slice(&a),
                            Err(e) => break 'conn Err(e),
                        },
                        _ => break 'conn Err("QoS 2 is not relayed".into()),
                    }
                    forward.extend_from_slice(packet);
                }
                kind::PUBACK => {}
                kind::SUBSCRIBE => match suback(packet) {
                    Ok(a) => acks.extend_from_slice(&a),
                    Err(e) => break 'conn Err(e),
                },
                kind::PINGREQ => acks.extend_from_slice(&PINGRESP),
                // What came before it in this read still goes out, below.
                kind::DISCONNECT => {
                    disconnected = true;
                    break;
                }
                other => break 'conn Err(format!("packet type {other} is not relayed")),
            }
            let subscribed = kind == kind::SUBSCRIBE;
            buf.advance(len);
            if subscribed {
                // Answer, then hand our write half over: we are the consumer from now.
                if let Some(mut w) = own.take() {
                    if let Err(e) = w.write_all(&acks).await {
                        break 'conn Err(format!("write: {e}"));
                    }
                    relay.set_consumer((id, w));
                }
                acks.clear();
            }
        }
        if !forward.is_empty() {
            if target.is_none() {
                target = relay.take_consumer();
            }
            if let Some((_, w)) = target.as_mut() {
                if w.write_all(&forward).await.is_err() {
                    // The consumer left: later messages have nowhere to go, as at QoS 0
                    // on a broker without subscribers.
                    target = None;
                }
            }
            forward.clear();
        }
        if !acks.is_empty() {
            match own.as_mut() {
                Some(w) => {
                    if let Err(e) = w.write_all(&acks).await {
                        break Err(format!("write: {e}"));
                    }
                }
                // A consumer's PINGREQ: answer if no producer holds its socket.
                None => {
                    if let Some((cid, mut w)) = relay.take_consumer() {
                        let _ = w.write_all(&acks).await;
                        relay.return_consumer((cid, w));
                    }
                }
            }
            acks.clear();
        }
    };
    if let Some(c) = target {
        relay.return_consumer(c);
    }
    if own.is_none() {
        relay.remove_consumer(id);
    }
    result
}

/// Accepts connections on `listener` forever.
async fn serve(listener: TcpListener) {
    let relay = Arc::new(Relay::default());
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let relay = relay.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(relay, stream).await {
                        eprintln!("relay: {peer}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("relay: accept: {e}"),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen: SocketAddr = "127.0.0.1:1913".parse().expect("a socket address");
    let mut f = Flags::from_env();
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--listen" => listen = f.number(&flag),
            other => die(&format!("unknown flag {other}")),
        }
    }
    let listener = TcpListener::bind(listen)
        .await
        .unwrap_or_else(|e| die(&format!("cannot listen on {listen}: {e}")));
    serve(listener).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT: [u8; 14] = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0];

    fn publish(qos: u8, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x30 | (qos << 1), 0, 0, 1, b't'];
        if qos > 0 {
            p.extend_from_slice(&id.to_be_bytes());
        }
        p.extend_from_slice(payload);
        p[1] = (p.len() - 2) as u8;
        p
    }

    #[test]
    fn packet_length_waits_for_the_whole_packet_and_refuses_oversize() {
        assert_eq!(packet_len(&[]), Ok(None));
        assert_eq!(packet_len(&[0x30]), Ok(None));
        assert_eq!(packet_len(&[0x30, 3, 0, 1]), Ok(None));
        assert_eq!(packet_len(&[0x30, 3, 0, 1, b't', 0xff]), Ok(Some(5)));
        // 200 bytes: two length bytes.
        assert_eq!(packet_len(&[0x30, 0xc8, 0x01]), Ok(None));
        assert!(packet_len(&[0x30, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(packet_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }

    #[test]
    fn acknowledgements_carry_the_packet_id() {
        let sub = [0x82, 6, 0x12, 0x34, 0, 1, b't', 1];
        assert_eq!(suback(&sub).unwrap(), [0x90, 3, 0x12, 0x34, 1]);
        let two = [0x82, 10, 0, 7, 0, 1, b'a', 0, 0, 1, b'b', 2];
        assert_eq!(suback(&two).unwrap(), [0x90, 4, 0, 7, 0, 1]);
        assert!(suback(&[0x82, 5, 0, 7, 0, 9, b'a']).is_err());
        assert_eq!(
            puback(&publish(1, 0xabcd, b"x")).unwrap(),
            [0x40, 2, 0xab, 0xcd]
        );
        assert!(puback(&[0x32, 3, 0, 1, b't']).is_err());
    }

    async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        s.read_exact(&mut b).await.unwrap();
        b
    }

    #[tokio::test]
    async fn forwards_publishes_from_producer_to_consumer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));

        let mut consumer = TcpStream::connect(addr).await.unwrap();
        consumer.write_all(&CONNECT).await.unwrap();
        assert_eq!(read_exactly(&mut consumer, 4).await, CONNACK);
        consumer
            .write_all(&[0x82, 6, 0, 1, 0, 1, b't', 1])
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut consumer, 5).await, [0x90, 3, 0, 1, 1]);

        let mut producer = TcpStream::connect(addr).await.unwrap();
        let (q0, q1) = (publish(0, 0, b"first"), publish(1, 9, b"second"));
        // CONNECT and both publishes in one write, the QoS 1 one split across two.
        let mut all = CONNECT.to_vec();
        all.extend_from_slice(&q0);
        all.extend_from_slice(&q1[..4]);
        producer.write_all(&all).await.unwrap();
        assert_eq!(read_exactly(&mut producer, 4).await, CONNACK);
        producer.write_all(&q1[4..]).await.unwrap();
        assert_eq!(read_exactly(&mut producer, 4).await, [0x40, 2, 0, 9]);
        let mut both = q0.clone();
        both.extend_from_slice(&q1);
        assert_eq!(read_exactly(&mut consumer, both.len()).await, both);

        // The producer leaves right after a last publish, which still arrives; the next
        // producer reaches the same consumer.
        let last = publish(0, 0, b"last");
        let mut bye = last.clone();
        bye.extend_from_slice(&[0xe0, 0]);
        producer.write_all(&bye).await.unwrap();
        let mut rest = Vec::new();
        producer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(read_exactly(&mut consumer, last.len()).await, last);
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(&CONNECT).await.unwrap();
        assert_eq!(read_exactly(&mut second, 4).await, CONNACK);
        let q = publish(0, 0, b"again");
        second.write_all(&q).await.unwrap();
        assert_eq!(read_exactly(&mut consumer, q.len()).await, q);
    }
}
