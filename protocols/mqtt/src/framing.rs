//! The fixed header: packet type, flags and Remaining Length.
//!
//! Everything here is decided from the first two to five bytes, so a wrong
//! protocol, wrong flags or an oversize packet fail before the body is
//! buffered.

use crate::error::DecodeError;
use crate::packet::PacketType;
use crate::version::ProtocolVersion;
use crate::wire::{read_var_int, VarInt};

/// The packet type and flags from a first byte, checked against the
/// version's flag rules (MQTT 3.1.1 and 5 section 2.1.3):
///
/// * PUBLISH: DUP, QoS and RETAIN; QoS 3 and DUP at QoS 0 are malformed.
/// * PUBREL, SUBSCRIBE, UNSUBSCRIBE: exactly 0b0010. MQTT 3.1 used the DUP
///   bit on retransmitted ones, so 3.1 also accepts 0b1010.
/// * Every other type: 0.
///
/// `version` is `None` before CONNECT, when only CONNECT can come (type 15
/// is reserved until MQTT 5 is known to be spoken).
pub(crate) fn check_first_byte(
    byte: u8,
    version: Option<ProtocolVersion>,
) -> Result<(PacketType, u8), DecodeError> {
    let nibble = byte >> 4;
    let flags = byte & 0x0F;
    let packet_type = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if version.is_some_and(|v| !v.is_v5()) => None,
        t => t,
    }
    .ok_or(DecodeError::ReservedPacketType {
        packet_type: nibble,
    })?;
    let ok = match packet_type {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0b11;
            let dup = flags & 0b1000 != 0;
            qos != 3 && !(dup && qos == 0)
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            flags == 0b0010 || (version == Some(ProtocolVersion::V3_1) && flags == 0b1010)
        }
        _ => flags == 0,
    };
    if !ok {
        return Err(DecodeError::InvalidFlags {
            packet: packet_type,
            flags,
        });
    }
    Ok((packet_type, flags))
}

/// The Remaining Length after the first byte: `Some((length, bytes used))`,
/// or `None` if it is not all buffered yet.
pub(crate) fn read_remaining_length(
    after_first: &[u8],
) -> Result<Option<(u32, usize)>, DecodeError> {
    match read_var_int(after_first) {
        VarInt::Value(v, n) => Ok(Some((v, n))),
        VarInt::Incomplete => Ok(None),
        VarInt::Malformed => Err(DecodeError::MalformedVarInt {
            field: "remaining length",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_table() {
        use ProtocolVersion::*;
        let ok = |b, v| check_first_byte(b, v).is_ok();
        // PUBLISH: every combination except QoS 3 and DUP at QoS 0.
        for flags in 0..16u8 {
            let qos = (flags >> 1) & 3;
            let dup = flags & 8 != 0;
            assert_eq!(
                ok(0x30 | flags, Some(V5)),
                qos != 3 && !(dup && qos == 0),
                "{flags:04b}"
            );
        }
        for t in [0x60u8, 0x80, 0xA0] {
            for flags in 0..16u8 {
                assert_eq!(ok(t | flags, Some(V3_1_1)), flags == 2);
                assert_eq!(ok(t | flags, Some(V5)), flags == 2);
                assert_eq!(ok(t | flags, Some(V3_1)), flags == 2 || flags == 0xA);
            }
        }
        for t in [
            0x10u8, 0x20, 0x40, 0x50, 0x70, 0x90, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
        ] {
            for flags in 0..16u8 {
                assert_eq!(ok(t | flags, Some(V5)), flags == 0, "{:#04x}", t | flags);
            }
        }
        // Reserved types.
        assert_eq!(
            check_first_byte(0x00, Some(V5)),
            Err(DecodeError::ReservedPacketType { packet_type: 0 })
        );
        assert_eq!(
            check_first_byte(0xF0, Some(V3_1_1)),
            Err(DecodeError::ReservedPacketType { packet_type: 15 })
        );
        assert!(ok(0xF0, Some(V5)));
    }
}
