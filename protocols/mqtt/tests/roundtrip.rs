//! Property tests: `decode(encode(p)) == p` for every packet type in MQTT
//! 3.1, 3.1.1 and 5.0 at the end that receives it, and arbitrary bytes never
//! make the decoder panic or depend on read sizes.

mod common;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use common::*;
use ferromq_mqtt::packet::*;
use ferromq_mqtt::properties::*;
use ferromq_mqtt::{Decoder, Limits, Packet, PacketType, ProtocolVersion, ReasonCode, Role};
use proptest::prelude::*;
use proptest::sample::select;

use ProtocolVersion::{V3_1, V3_1_1, V5};

// ---- building blocks -----------------------------------------------------------------

/// Short text with multi-byte characters, controls and spaces, never U+0000.
fn text() -> impl Strategy<Value = ByteString> {
    "[a-z0-9 éü✓\u{1}\u{7f}\u{feff}/+#:-]{0,10}".prop_map(ByteString::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn topic_name() -> impl Strategy<Value = ByteString> {
    "[a-z0-9$é ]{0,3}(/[a-z0-9é ]{0,3}){0,4}"
        .prop_filter("non-empty", |s| !s.is_empty())
        .prop_map(ByteString::from)
}

fn plain_filter() -> BoxedStrategy<String> {
    (
        prop::collection::vec(prop_oneof!["[a-z0-9é ]{0,3}", Just("+".to_string())], 0..4),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut s = levels.join("/");
            if hash || s.is_empty() {
                if !levels.is_empty() {
                    s.push('/');
                }
                s.push('#');
            }
            s
        })
        .boxed()
}

fn topic_filter() -> impl Strategy<Value = ByteString> {
    (plain_filter(), prop::option::of("[a-z0-9]{1,4}")).prop_map(|(f, group)| match group {
        Some(g) => ByteString::from(format!("$share/{g}/{f}")),
        None => ByteString::from(f),
    })
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|n| PacketId::new(n).unwrap())
}

fn users() -> impl Strategy<Value = UserProperties> {
    prop::collection::vec((text(), text()), 0..3)
}

fn nz16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|n| NonZeroU16::new(n).unwrap())
}

fn nz32() -> impl Strategy<Value = NonZeroU32> {
    (1..=u32::MAX).prop_map(|n| NonZeroU32::new(n).unwrap())
}

fn sub_id() -> impl Strategy<Value = NonZeroU32> {
    (1..=268_435_455u32).prop_map(|n| NonZeroU32::new(n).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn reasons_for(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    select(
        ReasonCode::ALL
            .into_iter()
            .filter(|r| r.allowed_in(packet))
            .collect::<Vec<_>>(),
    )
}

fn ack_properties(v: ProtocolVersion) -> BoxedStrategy<AckProperties> {
    if v != V5 {
        return Just(AckProperties::default()).boxed();
    }
    (prop::option::of(text()), users())
        .prop_map(|(reason_string, user_properties)| AckProperties {
            reason_string,
            user_properties,
        })
        .boxed()
}

// ---- packets -------------------------------------------------------------------------

fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    let props = if v == V5 {
        (
            prop::option::of(any::<u32>()),
            prop::option::of(select(vec![
                PayloadFormat::Unspecified,
                PayloadFormat::Utf8,
            ])),
            prop::option::of(any::<u32>()),
            prop::option::of(text()),
            prop::option::of(topic_name()),
            prop::option::of(binary()),
            users(),
        )
            .prop_map(|(d, f, e, ct, rt, cd, u)| WillProperties {
                will_delay_interval_secs: d,
                payload_format_indicator: f,
                message_expiry_interval_secs: e,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties: u,
            })
            .boxed()
    } else {
        Just(WillProperties::default()).boxed()
    };
    (topic_name(), binary(), qos(), any::<bool>(), props).prop_map(
        |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Connect> {
    let props = if v == V5 {
        (
            prop::option::of(any::<u32>()),
            prop::option::of(nz16()),
            prop::option::of(nz32()),
            prop::option::of(any::<u16>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of((text(), prop::option::of(binary()))),
            users(),
        )
            .prop_map(|(se, rm, mp, ta, rri, rpi, auth, u)| ConnectProperties {
                session_expiry_interval_secs: se,
                receive_maximum: rm,
                maximum_packet_size_bytes: mp,
                topic_alias_maximum: ta,
                request_response_information: rri,
                request_problem_information: rpi,
                authentication_method: auth.as_ref().map(|a| a.0.clone()),
                authentication_data: auth.and_then(|a| a.1),
                user_properties: u,
            })
            .boxed()
    } else {
        Just(ConnectProperties::default()).boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        props,
        // At most 22 bytes: MQTT 3.1 allows 23.
        "[a-zA-Z0-9é-]{0,11}",
        prop::option::of(will(v)),
        prop::option::of(text()),
        prop::option::of(binary()),
    )
        .prop_map(
            move |(clean, keep_alive, properties, id, will, username, password)| {
                let id_ok = match v {
                    V3_1 => !id.is_empty(),
                    V3_1_1 => clean || !id.is_empty(),
                    V5 => true,
                };
                let client_id = if id_ok { id } else { "x".to_string() };
                // Before MQTT 5 a password needs a user name.
                let username = if v != V5 && password.is_some() && username.is_none() {
                    Some(ByteString::from_static("u"))
                } else {
                    username
                };
                Connect {
                    version: v,
                    clean_start: clean,
                    keep_alive_secs: keep_alive,
                    properties,
                    client_id: client_id.into(),
                    will,
                    username,
                    password,
                }
            },
        )
}

fn publish(v: ProtocolVersion, to: Role) -> impl Strategy<Value = Publish> {
    let props = if v == V5 {
        (
            prop::option::of(select(vec![
                PayloadFormat::Unspecified,
                PayloadFormat::Utf8,
            ])),
            prop::option::of(any::<u32>()),
            prop::option::of(nz16()),
            prop::option::of(topic_name()),
            prop::option::of(binary()),
            users(),
            prop::collection::vec(sub_id(), 0..3),
            prop::option::of(text()),
        )
            .prop_map(move |(f, e, ta, rt, cd, u, ids, ct)| PublishProperties {
                payload_format_indicator: f,
                message_expiry_interval_secs: e,
                topic_alias: ta,
                response_topic: rt,
                correlation_data: cd,
                user_properties: u,
                subscription_identifiers: if to == Role::Client { ids } else { vec![] },
                content_type: ct,
            })
            .boxed()
    } else {
        Just(PublishProperties::default()).boxed()
    };
    (
        any::<bool>(),
        0..3u8,
        packet_id(),
        any::<bool>(),
        topic_name(),
        props,
        binary(),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, q, id, retain, topic, properties, payload, alias_only)| {
                let qos = match q {
                    0 => QosPid::AtMostOnce,
                    1 => QosPid::AtLeastOnce(id),
                    _ => QosPid::ExactlyOnce(id),
                };
                let topic = if alias_only && properties.topic_alias.is_some() {
                    ByteString::new()
                } else {
                    topic
                };
                Publish {
                    dup: dup && q > 0,
                    qos,
                    retain,
                    topic,
                    properties,
                    payload,
                }
            },
        )
}

fn publish_ack(v: ProtocolVersion, packet: PacketType) -> impl Strategy<Value = PublishAck> {
    let reason = if v == V5 {
        reasons_for(packet).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (packet_id(), reason, ack_properties(v)).prop_map(|(packet_id, reason_code, properties)| {
        PublishAck {
            packet_id,
            reason_code,
            properties,
        }
    })
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let props = if v == V5 {
        (prop::option::of(sub_id()), users())
            .prop_map(|(id, u)| SubscribeProperties {
                subscription_identifier: id,
                user_properties: u,
            })
            .boxed()
    } else {
        Just(SubscribeProperties::default()).boxed()
    };
    let options = (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(vec![
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ]),
    );
    (
        packet_id(),
        props,
        prop::collection::vec((topic_filter(), options), 1..4),
    )
        .prop_map(move |(packet_id, properties, filters)| Subscribe {
            packet_id,
            properties,
            filters: filters
                .into_iter()
                .map(|(filter, (qos, nl, rap, rh))| {
                    let options = if v == V5 {
                        SubscriptionOptions {
                            qos,
                            no_local: nl && !ferromq_mqtt::topic::is_shared(&filter),
                            retain_as_published: rap,
                            retain_handling: rh,
                        }
                    } else {
                        SubscriptionOptions::qos(qos)
                    };
                    Subscription { filter, options }
                })
                .collect(),
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let code = if v == V5 {
        reasons_for(PacketType::SubAck).boxed()
    } else {
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQos1,
            ReasonCode::GrantedQos2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (
        packet_id(),
        ack_properties(v),
        prop::collection::vec(code, 1..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    let props = if v == V5 {
        users()
            .prop_map(|u| UnsubscribeProperties { user_properties: u })
            .boxed()
    } else {
        Just(UnsubscribeProperties::default()).boxed()
    };
    (
        packet_id(),
        props,
        prop::collection::vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    let codes = if v == V5 {
        prop::collection::vec(reasons_for(PacketType::UnsubAck), 1..5).boxed()
    } else {
        Just(vec![]).boxed()
    };
    (packet_id(), ack_properties(v), codes).prop_map(|(packet_id, properties, reason_codes)| {
        UnsubAck {
            packet_id,
            properties,
            reason_codes,
        }
    })
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let reason = if v == V5 {
        reasons_for(PacketType::ConnAck).boxed()
    } else {
        select(vec![
            ReasonCode::Success,
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::ServerUnavailable,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
        ])
        .boxed()
    };
    let props = if v == V5 {
        let a = (
            prop::option::of(any::<u32>()),
            prop::option::of(nz16()),
            prop::option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
            prop::option::of(any::<bool>()),
            prop::option::of(nz32()),
            prop::option::of(text()),
            prop::option::of(any::<u16>()),
            prop::option::of(text()),
            users(),
        );
        let b = (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<u16>()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(binary()),
        );
        (a, b)
            .prop_map(
                |((se, rm, mq, ra, mp, aci, tam, rs, u), (w, si, ss, ska, ri, sr, am, ad))| {
                    ConnAckProperties {
                        session_expiry_interval_secs: se,
                        receive_maximum: rm,
                        maximum_qos: mq,
                        retain_available: ra,
                        maximum_packet_size_bytes: mp,
                        assigned_client_identifier: aci,
                        topic_alias_maximum: tam,
                        reason_string: rs,
                        user_properties: u,
                        wildcard_subscription_available: w,
                        subscription_identifiers_available: si,
                        shared_subscription_available: ss,
                        server_keep_alive_secs: ska,
                        response_information: ri,
                        server_reference: sr,
                        authentication_method: am,
                        authentication_data: ad,
                    }
                },
            )
            .boxed()
    } else {
        Just(ConnAckProperties::default()).boxed()
    };
    (any::<bool>(), reason, props).prop_map(move |(present, reason_code, properties)| ConnAck {
        session_present: present && reason_code == ReasonCode::Success && v != V3_1,
        reason_code,
        properties,
    })
}

fn disconnect(v: ProtocolVersion, from: Role) -> impl Strategy<Value = Disconnect> {
    if v != V5 {
        return Just(Disconnect::new(ReasonCode::Success)).boxed();
    }
    let codes: Vec<_> = ReasonCode::ALL
        .into_iter()
        .filter(|r| r.disconnect_sendable_by(from))
        .collect();
    (
        select(codes),
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
        users(),
        prop::option::of(text()),
    )
        .prop_map(move |(reason_code, se, rs, u, sr)| Disconnect {
            reason_code,
            properties: DisconnectProperties {
                session_expiry_interval_secs: if from == Role::Client { se } else { None },
                reason_string: rs,
                user_properties: u,
                server_reference: sr,
            },
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        }),
        (
            reasons_for(PacketType::Auth),
            text(),
            prop::option::of(binary()),
            prop::option::of(text()),
            users(),
        )
            .prop_map(|(reason_code, m, d, rs, u)| Auth {
                reason_code,
                properties: AuthProperties {
                    authentication_method: Some(m),
                    authentication_data: d,
                    reason_string: rs,
                    user_properties: u,
                },
            }),
    ]
}

/// Any packet a client sends after CONNECT.
fn client_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut options = vec![
        publish(v, Role::Server).prop_map(Packet::Publish).boxed(),
        publish_ack(v, PacketType::PubAck)
            .prop_map(Packet::PubAck)
            .boxed(),
        publish_ack(v, PacketType::PubRec)
            .prop_map(Packet::PubRec)
            .boxed(),
        publish_ack(v, PacketType::PubRel)
            .prop_map(Packet::PubRel)
            .boxed(),
        publish_ack(v, PacketType::PubComp)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe(v).prop_map(Packet::Subscribe).boxed(),
        unsubscribe(v).prop_map(Packet::Unsubscribe).boxed(),
        Just(Packet::PingReq).boxed(),
        disconnect(v, Role::Client)
            .prop_map(Packet::Disconnect)
            .boxed(),
    ];
    if v == V5 {
        options.push(auth().prop_map(Packet::Auth).boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

/// Any packet a server sends.
fn server_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut options = vec![
        connack(v).prop_map(Packet::ConnAck).boxed(),
        publish(v, Role::Client).prop_map(Packet::Publish).boxed(),
        publish_ack(v, PacketType::PubAck)
            .prop_map(Packet::PubAck)
            .boxed(),
        publish_ack(v, PacketType::PubRec)
            .prop_map(Packet::PubRec)
            .boxed(),
        publish_ack(v, PacketType::PubRel)
            .prop_map(Packet::PubRel)
            .boxed(),
        publish_ack(v, PacketType::PubComp)
            .prop_map(Packet::PubComp)
            .boxed(),
        suback(v).prop_map(Packet::SubAck).boxed(),
        unsuback(v).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingResp).boxed(),
    ];
    if v == V5 {
        options.push(
            disconnect(v, Role::Server)
                .prop_map(Packet::Disconnect)
                .boxed(),
        );
        options.push(auth().prop_map(Packet::Auth).boxed());
    }
    prop::strategy::Union::new(options).boxed()
}

fn round_trip(role: Role, v: ProtocolVersion, p: &Packet) -> Result<(), TestCaseError> {
    let bytes = encode(v, p);
    let mut dec = decoder(role, v, Limits::default());
    let mut buf = BytesMut::from(&bytes[..]);
    prop_assert_eq!(dec.decode(&mut buf), Ok(Some(p.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_packets_v5(p in client_packet(V5)) {
        round_trip(Role::Server, V5, &p)?;
    }

    #[test]
    fn client_packets_v3_1_1(p in client_packet(V3_1_1)) {
        round_trip(Role::Server, V3_1_1, &p)?;
    }

    #[test]
    fn client_packets_v3_1(p in client_packet(V3_1)) {
        round_trip(Role::Server, V3_1, &p)?;
    }

    #[test]
    fn server_packets_v5(p in server_packet(V5)) {
        round_trip(Role::Client, V5, &p)?;
    }

    #[test]
    fn server_packets_v3_1_1(p in server_packet(V3_1_1)) {
        round_trip(Role::Client, V3_1_1, &p)?;
    }

    #[test]
    fn server_packets_v3_1(p in server_packet(V3_1)) {
        round_trip(Role::Client, V3_1, &p)?;
    }

    #[test]
    fn connect_every_version(
        c in prop_oneof![connect(V3_1), connect(V3_1_1), connect(V5)],
    ) {
        let packet = Packet::Connect(Box::new(c.clone()));
        let bytes = encode(c.version, &packet);
        let mut dec = Decoder::server(Limits::default());
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(dec.decode(&mut buf), Ok(Some(packet)));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(dec.version(), Some(c.version));
    }
}

// ---- hostile input -------------------------------------------------------------------

/// The decoders to throw garbage at: a fresh server, servers and clients
/// past CONNECT in each version, with default or tiny limits.
fn any_decoder() -> impl Strategy<Value = (u8, ProtocolVersion, bool)> {
    (0..3u8, select(ProtocolVersion::ALL.to_vec()), any::<bool>())
}

fn make_decoder((kind, v, small): (u8, ProtocolVersion, bool)) -> Decoder {
    let limits = if small {
        Limits {
            packet_size_max_bytes: 40,
            connect_packet_size_max_bytes: 40,
            client_id_max_bytes: 4,
            topic_max_bytes: 6,
            topic_levels_max: 2,
            properties_max: 2,
            topic_filters_max: 2,
        }
    } else {
        Limits::default()
    };
    match kind {
        0 => Decoder::server(limits),
        1 => server(v, limits),
        _ => Decoder::client(v, limits),
    }
}

/// Byte soup made of MQTT fragments, or plain random bytes.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let token = select(vec![
        &b"\x10"[..],
        b"\x30",
        b"\x32",
        b"\x82",
        b"\x20",
        b"\xe0",
        b"\xf0",
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x05",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"\x00\x04MQTT\x05",
        b"\x00\x04MQTT\x04",
        b"\x00\x06MQIsdp\x03",
        b"\x00\x03a/b",
        b"\x26\x00\x01k\x00\x01v",
        b"\x0b\x01",
        b"\x23\x00\x01",
        b"\xc0\x00",
        b"$share/",
        b"#",
        b"+",
    ]);
    prop_oneof![
        prop::collection::vec(token, 0..40).prop_map(|ts| ts.concat()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never panics, and the result does not depend on read sizes.
    #[test]
    fn garbage_is_split_invariant(
        bytes in garbage(),
        which in any_decoder(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = drain(&mut make_decoder(which), &mut BytesMut::from(&bytes[..]));
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut dec = make_decoder(which);
        let mut buf = BytesMut::new();
        let mut chunked = Vec::new();
        let mut from = 0;
        for to in points {
            buf.extend_from_slice(&bytes[from..to]);
            from = to;
            chunked.extend(drain(&mut dec, &mut buf));
            if matches!(chunked.last(), Some(Err(_))) {
                break;
            }
        }
        prop_assert_eq!(chunked, whole);
    }

    /// Valid packets with one byte changed, or cut short, never panic; a
    /// decoder that is fed more after an error does not panic either.
    #[test]
    fn mutated_packets_never_panic(
        p in server_packet(V5),
        q in client_packet(V5),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for (role, packet) in [(Role::Client, p), (Role::Server, q)] {
            let mut bytes = encode(V5, &packet);
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let mut dec = decoder(role, V5, Limits::default());
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = drain(&mut dec, &mut buf);
            let _ = drain(&mut dec, &mut BytesMut::from(&bytes[..cut.index(bytes.len())]));
        }
    }
}
