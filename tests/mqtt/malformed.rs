//! Malformed and oversized packets on the socket: the right reason code (MQTT 5) or a
//! silent close (MQTT 3), and nobody else notices.

use ferromq_mqtt::properties::ConnectProperties;
use ferromq_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::broker;
use crate::raw::{connect_packet, Raw};

async fn v5_client(addr: std::net::SocketAddr, id: &str) -> Raw {
    let c = connect_packet(ProtocolVersion::V5, id, true, ConnectProperties::default());
    Raw::connect(addr, c).await.0
}

async fn expect_disconnect(c: &mut Raw, code: ReasonCode) {
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code),
        other => panic!("expected DISCONNECT {code:?}, got {other:?}"),
    }
    assert!(c.recv().await.is_none(), "closed after the DISCONNECT");
}

#[tokio::test]
async fn malformed_packets_get_their_reason_code_and_nobody_else_notices() {
    let server = broker(|c| c.mqtt.packet_size_max_bytes = 1024).await;
    let addr = server.mqtt_addr().unwrap();
    let mut bystander = v5_client(addr, "bystander").await;
    bystander
        .subscribe(
            "bad/#",
            ferromq_mqtt::packet::SubscriptionOptions::qos(QoS::AtLeastOnce),
        )
        .await;

    // PUBLISH with QoS 3: Malformed Packet.
    let mut c = v5_client(addr, "m1").await;
    c.send_bytes(b"\x36\x03\x00\x01a").await;
    expect_disconnect(&mut c, ReasonCode::MalformedPacket).await;

    // SUBSCRIBE without a topic filter: Protocol Error.
    let mut c = v5_client(addr, "m2").await;
    c.send_bytes(b"\x82\x03\x00\x01\x00").await;
    expect_disconnect(&mut c, ReasonCode::ProtocolError).await;

    // A packet over the configured maximum, refused on its Remaining Length.
    let mut c = v5_client(addr, "m3").await;
    c.send_bytes(b"\x30\xd0\x0f").await;
    expect_disconnect(&mut c, ReasonCode::PacketTooLarge).await;

    // CONNECT with a duplicate property: CONNACK Protocol Error.
    let mut c = Raw::open(addr, ProtocolVersion::V5).await;
    c.send_bytes(
        b"\x10\x18\x00\x04MQTT\x05\x02\x00\x3c\x0a\x11\x00\x00\x00\x0a\x11\x00\x00\x00\x0a\x00\x01a",
    )
    .await;
    match c.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.reason_code, ReasonCode::ProtocolError),
        other => panic!("expected CONNACK 0x82, got {other:?}"),
    }
    assert!(c.recv().await.is_none());

    // MQTT 3.1.1: the same bad PUBLISH is closed without a word.
    let c311 = connect_packet(
        ProtocolVersion::V3_1_1,
        "m4",
        true,
        ConnectProperties::default(),
    );
    let (mut c, _) = Raw::connect(addr, c311).await;
    c.send_bytes(b"\x36\x03\x00\x01a").await;
    assert!(c.recv().await.is_none());

    // A truncated packet followed by EOF is not a panic either.
    let mut c = v5_client(addr, "m5").await;
    c.send_bytes(b"\x30\x0a\x00\x03bad").await;
    drop(c);

    // The bystander still works.
    let mut p = v5_client(addr, "m-pub").await;
    p.publish_acked("bad/ok", b"fine", 1).await;
    let m = bystander.publish_received().await;
    assert_eq!(&m.payload[..], b"fine");
    server.shutdown().await;
}
