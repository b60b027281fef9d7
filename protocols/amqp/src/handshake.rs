//! The pure parts of the connection handshake: what the server announces in
//! `connection.start`, how SASL responses are read, and how `connection.tune-ok` is
//! checked against what was offered.

use amq_protocol::protocol::connection;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use crate::error::{code, AmqpError};
use crate::limits::FRAME_MIN_SIZE_BYTES;
use crate::nesting;

/// The SASL mechanisms offered, in order of preference.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";
/// The mechanisms offered on a TLS connection whose client certificate was verified.
pub const MECHANISMS_WITH_EXTERNAL: &str = "EXTERNAL PLAIN AMQPLAIN";

/// `connection.start`: server properties and capabilities as RabbitMQ advertises them.
pub fn start(product: &str, version: &str) -> connection::Start {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props.insert("product".into(), text(product));
    props.insert("version".into(), text(version));
    props.insert("platform".into(), text("Rust"));
    props.insert("cluster_name".into(), text("ferromq"));
    props.insert(
        "information".into(),
        text("ferromq, a multi-protocol message broker"),
    );
    connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: props,
        mechanisms: MECHANISMS.into(),
        locales: "en_US".into(),
    }
}

/// What the client said it can do (`client_properties.capabilities`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCaps {
    /// It understands a server-sent `basic.cancel`.
    pub consumer_cancel_notify: bool,
    /// It understands `connection.blocked` / `unblocked`.
    pub connection_blocked: bool,
    /// It wants `connection.close` (not just a closed socket) when login fails.
    pub authentication_failure_close: bool,
}

/// Reads the capabilities table of `connection.start-ok`.
pub fn client_caps(client_properties: &FieldTable) -> ClientCaps {
    let Some(AMQPValue::FieldTable(caps)) = client_properties.inner().get("capabilities") else {
        return ClientCaps::default();
    };
    let on = |k: &str| matches!(caps.inner().get(k), Some(AMQPValue::Boolean(true)));
    ClientCaps {
        consumer_cancel_notify: on("consumer_cancel_notify"),
        connection_blocked: on("connection.blocked"),
        authentication_failure_close: on("authentication_failure_close"),
    }
}

/// The user and password in a SASL response, or `None` if it is malformed.
pub fn credentials(
    mechanism: &str,
    response: &LongString,
    table_depth_max: usize,
) -> Result<Option<(String, String)>, AmqpError> {
    let bytes = response.as_bytes();
    match mechanism {
        // `[authzid] NUL user NUL password`
        "PLAIN" => {
            let mut parts = bytes.split(|b| *b == 0);
            let (Some(_), Some(user), Some(pass), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Ok(None);
            };
            Ok(
                match (std::str::from_utf8(user), std::str::from_utf8(pass)) {
                    (Ok(u), Ok(p)) => Some((u.to_string(), p.to_string())),
                    _ => None,
                },
            )
        }
        // A field table without its length prefix: LOGIN and PASSWORD.
        "AMQPLAIN" => {
            let mut framed = Vec::with_capacity(bytes.len() + 4);
            framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            framed.extend_from_slice(bytes);
            let mut payload = vec![0, 10, 0, 11];
            payload.extend_from_slice(&framed);
            if !nesting::method_ok(&payload, table_depth_max) {
                return Ok(None);
            }
            let Ok((rest, t)) = amq_protocol::types::parsing::parse_field_table(framed.as_slice())
            else {
                return Ok(None);
            };
            if !rest.is_empty() {
                return Ok(None);
            }
            let get = |k: &str| match t.inner().get(k) {
                Some(AMQPValue::LongString(s)) => {
                    std::str::from_utf8(s.as_bytes()).ok().map(str::to_string)
                }
                Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
                _ => None,
            };
            Ok(get("LOGIN").zip(get("PASSWORD")))
        }
        other => Err(AmqpError::command_invalid(format!(
            "unknown authentication mechanism '{other}'"
        ))),
    }
}

/// The parameters in force after `connection.tune-ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuned {
    /// Highest channel number.
    pub channel_max: u16,
    /// Largest frame, both directions.
    pub frame_max: u32,
    /// Heartbeat interval in seconds; 0 for none.
    pub heartbeat_s: u16,
}

/// Checks the client's `tune-ok` against the server's offer. Zero means "no limit" for
/// channel_max and frame_max (the server's offer applies); the heartbeat is the client's
/// choice, as in RabbitMQ.
pub fn tune_ok(offer: Tuned, ok: &connection::TuneOk) -> Result<Tuned, AmqpError> {
    let channel_max = match ok.channel_max {
        0 => offer.channel_max,
        n if n > offer.channel_max => {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!(
                    "negotiated channel_max = {n} is higher than the maximum allowed value ({})",
                    offer.channel_max
                ),
            ))
        }
        n => n,
    };
    let frame_max = match ok.frame_max {
        0 => offer.frame_max,
        n if n < FRAME_MIN_SIZE_BYTES => {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!("frame_max={n} < {FRAME_MIN_SIZE_BYTES} min size"),
            ))
        }
        n if n > offer.frame_max => {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!("frame_max={n} > {} max size", offer.frame_max),
            ))
        }
        n => n,
    };
    Ok(Tuned {
        channel_max,
        frame_max,
        heartbeat_s: ok.heartbeat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain() {
        let plain: LongString = b"\0guest\0secret".to_vec().into();
        assert_eq!(
            credentials("PLAIN", &plain, 8).unwrap(),
            Some(("guest".into(), "secret".into()))
        );
        let bad: LongString = b"guest".to_vec().into();
        assert_eq!(credentials("PLAIN", &bad, 8).unwrap(), None);
        // lapin's AMQPLAIN encoding of guest/guest.
        let amqplain: LongString =
            b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest"
                .to_vec()
                .into();
        assert_eq!(
            credentials("AMQPLAIN", &amqplain, 8).unwrap(),
            Some(("guest".into(), "guest".into()))
        );
        let e = credentials("EXTERNAL", &plain, 8).unwrap_err();
        assert_eq!(e.code, code::COMMAND_INVALID);
    }

    #[test]
    fn tune_rules() {
        let offer = Tuned {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat_s: 60,
        };
        let ok = |c, f, h| connection::TuneOk {
            channel_max: c,
            frame_max: f,
            heartbeat: h,
        };
        assert_eq!(
            tune_ok(offer, &ok(0, 0, 0)).unwrap(),
            Tuned {
                heartbeat_s: 0,
                ..offer
            }
        );
        assert_eq!(tune_ok(offer, &ok(10, 8192, 5)).unwrap().frame_max, 8192);
        assert_eq!(tune_ok(offer, &ok(4000, 0, 0)).unwrap_err().code, 530);
        assert_eq!(tune_ok(offer, &ok(0, 1024, 0)).unwrap_err().code, 530);
        assert_eq!(tune_ok(offer, &ok(0, 1 << 20, 0)).unwrap_err().code, 530);
    }

    #[test]
    fn capabilities() {
        let mut caps = FieldTable::default();
        caps.insert("consumer_cancel_notify".into(), AMQPValue::Boolean(true));
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let c = client_caps(&props);
        assert!(c.consumer_cancel_notify && !c.connection_blocked);
        let s = start("ferromq", "0.1.0");
        let AMQPValue::FieldTable(server_caps) = &s.server_properties.inner()["capabilities"]
        else {
            panic!()
        };
        assert_eq!(server_caps.inner().len(), 9);
    }
}
