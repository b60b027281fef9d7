//! Black-box tests of the WebSocket listeners: STOMP and MQTT over WS and WSS meeting
//! TCP clients, one set of MQTT sessions across listeners, and the HTTP answers to
//! everything that is not an acceptable upgrade.

mod common;

use std::net::SocketAddr;

use common::net::{bridge, client_config, http_head, tls, websocket};
use common::{broker, Client, WAIT};
use ferromq::{Config, Server};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

fn ws_on(c: &mut Config) {
    c.listeners.ws = "127.0.0.1:0".into();
    c.listeners.wss = "127.0.0.1:0".into();
}

async fn mqtt(addr: SocketAddr, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_credentials("guest", "guest");
    AsyncClient::new(o, 16)
}

async fn next_publish(events: &mut EventLoop) -> rumqttc::Publish {
    timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => break p,
                Ok(_) => {}
                Err(e) => panic!("MQTT: {e}"),
            }
        }
    })
    .await
    .expect("a publish")
}

async fn until_suback(events: &mut EventLoop) {
    timeout(WAIT, async {
        loop {
            if let Ok(Event::Incoming(Incoming::SubAck(_))) = events.poll().await {
                break;
            }
        }
    })
    .await
    .expect("SUBACK");
}

/// A local port that carries MQTT over a WebSocket to `ws` (so rumqttc speaks MQTT
/// over the broker's WebSocket listener).
async fn mqtt_over_ws(ws: SocketAddr) -> SocketAddr {
    bridge(move || async move {
        websocket(TcpStream::connect(ws).await.unwrap(), "/mqtt", "mqtt").await
    })
    .await
}

#[tokio::test]
async fn mqtt_over_websocket_meets_stomp_over_tcp() {
    let server = broker(ws_on).await;
    let local = mqtt_over_ws(server.transports().ws.unwrap()).await;
    let (client, mut events) = mqtt(local, "ws-sub").await;
    client.subscribe("ws/news", QoS::AtLeastOnce).await.unwrap();
    until_suback(&mut events).await;
    let mut stomp = Client::connect(server.stomp_addr().unwrap()).await;
    stomp.send("/topic/ws.news", b"from tcp", &[]).await;
    assert_eq!(&next_publish(&mut events).await.payload[..], b"from tcp");

    // And the other way: the WebSocket client publishes, a STOMP subscriber receives.
    stomp.subscribe("s", "/topic/ws.back", "auto").await;
    client
        .publish("ws/back", QoS::AtLeastOnce, false, b"from ws".to_vec())
        .await
        .unwrap();
    let poll = tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                break;
            }
        }
    });
    assert_eq!(&stomp.message().await.body[..], b"from ws");
    poll.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn stomp_over_websocket_and_wss_meet_mqtt_over_tcp() {
    let server = broker(ws_on).await;
    let ws = server.transports().ws.unwrap();
    let wss = server.transports().wss.unwrap();
    let cfg = client_config(server.transports().tls_cert.as_ref().unwrap(), None);

    let plain = websocket(TcpStream::connect(ws).await.unwrap(), "/ws", "v12.stomp").await;
    let mut over_ws = Client::over(plain).login(&[]).await;
    let secure = websocket(tls(wss, &cfg).await.unwrap(), "/", "v11.stomp, v12.stomp").await;
    let mut over_wss = Client::over(secure).login(&[]).await;
    over_ws.subscribe("a", "/topic/mixed", "auto").await;
    over_wss.subscribe("b", "/topic/mixed", "auto").await;

    let (client, mut events) = mqtt(server.mqtt_addr().unwrap(), "tcp-pub").await;
    client
        .publish("mixed", QoS::AtLeastOnce, false, b"hello browsers".to_vec())
        .await
        .unwrap();
    let poll = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    assert_eq!(&over_ws.message().await.body[..], b"hello browsers");
    assert_eq!(&over_wss.message().await.body[..], b"hello browsers");

    // A large body crosses as one message and arrives whole.
    let big = vec![b'x'; 200_000];
    over_wss.send("/queue/big", &big, &[]).await;
    over_ws.subscribe("q", "/queue/big", "auto").await;
    assert_eq!(over_ws.message().await.body.len(), big.len());
    poll.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn one_mqtt_client_id_across_tcp_and_websocket() {
    let server = broker(ws_on).await;
    let (_first, mut first_events) = mqtt(server.mqtt_addr().unwrap(), "same-id").await;
    timeout(WAIT, async {
        loop {
            if let Ok(Event::Incoming(Incoming::ConnAck(_))) = first_events.poll().await {
                break;
            }
        }
    })
    .await
    .unwrap();
    let local = mqtt_over_ws(server.transports().ws.unwrap()).await;
    let (_second, mut second_events) = mqtt(local, "same-id").await;
    timeout(WAIT, async {
        loop {
            if let Ok(Event::Incoming(Incoming::ConnAck(_))) = second_events.poll().await {
                break;
            }
        }
    })
    .await
    .unwrap();
    // The TCP connection was taken over by the WebSocket one.
    let ended = timeout(WAIT, async {
        loop {
            match first_events.poll().await {
                Err(_) | Ok(Event::Incoming(Incoming::Disconnect)) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok());
    server.shutdown().await;
}

/// Sends `request` and returns the HTTP response (the connection must be closed after).
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    timeout(WAIT, s.read_to_string(&mut out))
        .await
        .expect("answered and closed")
        .unwrap();
    out
}

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn refusals_are_http_answers_not_hangs() {
    let server: Server = broker(|c| {
        ws_on(c);
        c.websocket.allowed_origins = vec!["http://localhost:8080".into()];
    })
    .await;
    let ws = server.transports().ws.unwrap();
    let get = raw_http(ws, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
    assert!(get.contains("WebSocket"), "{get}");
    let none = raw_http(ws, &upgrade("/", "")).await;
    assert!(none.starts_with("HTTP/1.1 400 "), "{none}");
    let wrong = raw_http(ws, &upgrade("/", "Sec-WebSocket-Protocol: chat\r\n")).await;
    assert!(wrong.starts_with("HTTP/1.1 400 "), "{wrong}");
    let path = raw_http(ws, &upgrade("/x", "Sec-WebSocket-Protocol: mqtt\r\n")).await;
    assert!(path.starts_with("HTTP/1.1 404 "), "{path}");
    let origin = raw_http(
        ws,
        &upgrade(
            "/",
            "Sec-WebSocket-Protocol: mqtt\r\nOrigin: http://evil.example\r\n",
        ),
    )
    .await;
    assert!(origin.starts_with("HTTP/1.1 403 "), "{origin}");
    // The allowed origin gets its upgrade.
    let mut s = TcpStream::connect(ws).await.unwrap();
    s.write_all(
        upgrade(
            "/",
            "Sec-WebSocket-Protocol: mqtt\r\nOrigin: http://localhost:8080\r\n",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = http_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    // MQTT garbage inside the WebSocket: the connection ends, the broker carries on.
    let mut garbage = websocket(TcpStream::connect(ws).await.unwrap(), "/", "mqtt").await;
    garbage.write_all(b"\xff\xff\xff\xff\xff").await.unwrap();
    garbage.flush().await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, garbage.read(&mut buf)).await.expect("closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    let mut stomp = Client::connect(server.stomp_addr().unwrap()).await;
    stomp.send("/queue/still-fine", b"ok", &[]).await;
    server.shutdown().await;
}
