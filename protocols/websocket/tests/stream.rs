//! The byte stream over real WebSocket framing, on an in-memory duplex pipe.

use bytes::Bytes;
use ferromq_websocket::{accept, HandshakeError, Subprotocol, WsConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const REQUEST: &str = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ";

/// Sends the upgrade request, reads the 101, and wraps the client end.
async fn client(mut io: DuplexStream, protocol: &str) -> WebSocketStream<DuplexStream> {
    io.write_all(format!("{REQUEST}{protocol}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut io).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

async fn read_head(io: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if io.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

async fn pair(
    protocol: &'static str,
    config: WsConfig,
) -> (
    WebSocketStream<DuplexStream>,
    ferromq_websocket::ByteStream<DuplexStream>,
    Subprotocol,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move { accept(b, &config).await });
    let c = client(a, protocol).await;
    let (s, sub) = server.await.unwrap().expect("upgrade");
    (c, s, sub)
}

async fn read_exact(s: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).await.unwrap();
    v
}

#[tokio::test]
async fn frames_split_across_messages_and_many_in_one() {
    let (mut c, mut s, sub) = pair("mqtt", WsConfig::default()).await;
    assert_eq!(sub, Subprotocol::Mqtt);
    // One protocol frame in three messages, binary and text mixed.
    c.send(Message::binary(Bytes::from_static(b"\x10\x03")))
        .await
        .unwrap();
    c.send(Message::text("ab")).await.unwrap();
    c.send(Message::binary(Bytes::from_static(b"c")))
        .await
        .unwrap();
    assert_eq!(read_exact(&mut s, 5).await, b"\x10\x03abc");
    // Three frames in one message, read in pieces.
    c.send(Message::binary(Bytes::from_static(
        b"\xc0\x00\xc0\x00\xc0\x00",
    )))
    .await
    .unwrap();
    assert_eq!(read_exact(&mut s, 4).await, b"\xc0\x00\xc0\x00");
    assert_eq!(read_exact(&mut s, 2).await, b"\xc0\x00");
    // Writes become binary messages for MQTT.
    s.write_all(b"\xd0\x00").await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        c.next().await.unwrap().unwrap(),
        Message::binary(Bytes::from_static(b"\xd0\x00"))
    );
}

#[tokio::test]
async fn stomp_text_when_utf8_binary_otherwise() {
    let (mut c, mut s, sub) = pair("v12.stomp, v11.stomp", WsConfig::default()).await;
    assert_eq!(sub, Subprotocol::Stomp);
    s.write_all(b"MESSAGE\n\nhi\0").await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        c.next().await.unwrap().unwrap(),
        Message::text("MESSAGE\n\nhi\0")
    );
    s.write_all(b"MESSAGE\n\n\xff\0").await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(
        c.next().await.unwrap().unwrap(),
        Message::binary(Bytes::from_static(b"MESSAGE\n\n\xff\0"))
    );
}

#[tokio::test]
async fn ping_is_answered_and_close_ends_the_stream() {
    let (mut c, mut s, _) = pair("mqtt", WsConfig::default()).await;
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.map(|_| all)
    });
    c.send(Message::Ping(Bytes::from_static(b"p1")))
        .await
        .unwrap();
    assert_eq!(
        c.next().await.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"p1"))
    );
    c.send(Message::binary(Bytes::from_static(b"xy")))
        .await
        .unwrap();
    c.close(None).await.unwrap();
    // The server answers the close, then the client sees the end.
    assert!(matches!(c.next().await, Some(Ok(Message::Close(_))) | None));
    assert_eq!(reader.await.unwrap().unwrap(), b"xy");
}

#[tokio::test]
async fn oversize_message_is_an_error_not_a_hang() {
    let config = WsConfig {
        message_size_max_bytes: 1024,
        frame_size_max_bytes: 1024,
        ..WsConfig::default()
    };
    let (mut c, mut s, _) = pair("mqtt", config).await;
    c.send(Message::binary(vec![0u8; 4096])).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(s.read(&mut buf).await.is_err());
}

async fn answer(request: &[u8], config: WsConfig) -> (String, HandshakeError) {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move { accept(b, &config).await.err().unwrap() });
    a.write_all(request).await.unwrap();
    let mut text = String::new();
    a.read_to_string(&mut text).await.unwrap();
    (text, server.await.unwrap())
}

#[tokio::test]
async fn no_acceptable_subprotocol_gets_400_and_a_closed_connection() {
    let req = format!("{REQUEST}chat\r\n\r\n");
    let (text, err) = answer(req.as_bytes(), WsConfig::default()).await;
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(matches!(err, HandshakeError::Answered { status: 400, .. }));
}

#[tokio::test]
async fn plain_get_is_told_what_the_port_is_for() {
    let (text, _) = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", WsConfig::default()).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("MQTT") && text.contains("STOMP"), "{text}");
}

#[tokio::test]
async fn endless_headers_get_431() {
    let config = WsConfig {
        request_head_max_bytes: 256,
        ..WsConfig::default()
    };
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'a', 300));
    let (text, _) = answer(&req, config).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

#[tokio::test(start_paused = true)]
async fn silent_client_times_out() {
    let (_a, b) = tokio::io::duplex(1024);
    let err = accept(b, &WsConfig::default()).await.err().unwrap();
    assert!(matches!(err, HandshakeError::Timeout));
}
