//! The marshalled primitive map: how OpenWire carries message properties, the
//! WireFormatInfo options and MapMessage bodies; and the primitive sequence of a
//! StreamMessage body. Each value is a type byte then the value (Java `DataOutput`):
//!
//! | type | value | core [`FieldValue`] |
//! |---|---|---|
//! | 0 null | — | `Void` |
//! | 1 boolean | 1 byte | `Bool` |
//! | 2 byte | 1 byte | `I8` |
//! | 3 char | 2 bytes (UTF-16 unit) | `U16` |
//! | 4 short | 2 | `I16` |
//! | 5 int | 4 | `I32` |
//! | 6 long | 8 | `I64` |
//! | 7 double | 8 | `F64` |
//! | 8 float | 4 | `F32` |
//! | 9 string | `writeUTF` | `Str` |
//! | 10 byte[] | int length, bytes | `Bytes` |
//! | 11 map | int count, (`writeUTF` key, value)* | `Table` |
//! | 12 list | int count, value* | `Array` |
//! | 13 big string | int length, modified UTF-8 | `Str` |
//!
//! A map's count of -1 means null (read as empty).

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;
use ferromq_core::{FieldTable, FieldValue};

use crate::error::DecodeError;
use crate::wire::{decode_modified_utf8, modified_utf8_len, put_modified_utf8, put_utf, Reader};

/// Strings longer than this many UTF-16 units are written as big strings (as the Java
/// client does: `writeUTF` cannot hold more than 65535 bytes).
const SHORT_STRING_UNITS_MAX: usize = (i16::MAX / 4) as usize;

/// Reads a primitive map.
pub fn read_map(r: &mut Reader, depth_max: usize) -> Result<FieldTable, DecodeError> {
    read_map_at(r, depth_max, 0)
}

fn read_map_at(r: &mut Reader, depth_max: usize, depth: usize) -> Result<FieldTable, DecodeError> {
    if depth >= depth_max {
        return Err(DecodeError::TooDeep(depth_max));
    }
    let n = r.i32("map size")?;
    let mut t = FieldTable::new();
    if n == -1 {
        return Ok(t);
    }
    // Each entry takes at least 3 bytes (empty key, type byte): a count the frame cannot
    // hold is refused before anything is reserved.
    if n < 0 || n as usize > r.remaining() / 3 {
        return Err(DecodeError::BadLength("map size", n as i64));
    }
    for _ in 0..n {
        let k = r.utf("map key")?;
        let v = read_value_at(r, depth_max, depth)?;
        t.insert(k, v);
    }
    Ok(t)
}

/// Reads one typed value.
pub fn read_value(r: &mut Reader, depth_max: usize) -> Result<FieldValue, DecodeError> {
    read_value_at(r, depth_max, 0)
}

fn read_value_at(
    r: &mut Reader,
    depth_max: usize,
    depth: usize,
) -> Result<FieldValue, DecodeError> {
    Ok(match r.u8("primitive type")? {
        0 => FieldValue::Void,
        1 => FieldValue::Bool(r.bool("boolean value")?),
        2 => FieldValue::I8(r.u8("byte value")? as i8),
        3 => FieldValue::U16(r.u16("char value")?),
        4 => FieldValue::I16(r.i16("short value")?),
        5 => FieldValue::I32(r.i32("int value")?),
        6 => FieldValue::I64(r.i64("long value")?),
        7 => FieldValue::F64(f64::from_bits(r.i64("double value")? as u64)),
        8 => FieldValue::F32(f32::from_bits(r.i32("float value")? as u32)),
        9 => FieldValue::Str(r.utf("string value")?),
        10 => {
            let n = r.len_i32("byte[] value")?;
            FieldValue::Bytes(r.bytes(n, "byte[] value")?)
        }
        11 => FieldValue::Table(read_map_at(r, depth_max, depth + 1)?),
        12 => {
            if depth + 1 >= depth_max {
                return Err(DecodeError::TooDeep(depth_max));
            }
            let n = r.i32("list size")?;
            if n < 0 || n as usize > r.remaining() {
                return Err(DecodeError::BadLength("list size", n as i64));
            }
            let mut v = Vec::with_capacity(n as usize);
            for _ in 0..n {
                v.push(read_value_at(r, depth_max, depth + 1)?);
            }
            FieldValue::Array(v)
        }
        13 => {
            let n = r.len_i32("big string value")?;
            FieldValue::Str(decode_modified_utf8(
                r.bytes(n, "big string value")?,
                "big string value",
            )?)
        }
        t => return Err(DecodeError::UnknownPrimitive(t)),
    })
}

/// Writes a primitive map.
pub fn write_map<'a>(
    out: &mut BytesMut,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a FieldValue)>,
) {
    out.put_i32(entries.len() as i32);
    for (k, v) in entries {
        put_utf(out, k);
        write_value(out, v);
    }
}

/// Writes one typed value. Core values OpenWire has no type for are widened: unsigned
/// integers to the next signed size (a `u64` past `i64::MAX` becomes a string), decimals
/// and timestamps to longs/doubles.
pub fn write_value(out: &mut BytesMut, v: &FieldValue) {
    match v {
        FieldValue::Void => out.put_u8(0),
        FieldValue::Bool(b) => {
            out.put_u8(1);
            out.put_u8(*b as u8);
        }
        FieldValue::I8(n) => {
            out.put_u8(2);
            out.put_i8(*n);
        }
        FieldValue::U16(c) => {
            out.put_u8(3);
            out.put_u16(*c);
        }
        FieldValue::I16(n) => {
            out.put_u8(4);
            out.put_i16(*n);
        }
        FieldValue::U8(n) => {
            out.put_u8(4);
            out.put_i16(*n as i16);
        }
        FieldValue::I32(n) => {
            out.put_u8(5);
            out.put_i32(*n);
        }
        FieldValue::U32(n) => {
            out.put_u8(6);
            out.put_i64(*n as i64);
        }
        FieldValue::I64(n) => {
            out.put_u8(6);
            out.put_i64(*n);
        }
        FieldValue::Timestamp(n) => {
            out.put_u8(6);
            out.put_i64(*n as i64);
        }
        FieldValue::U64(n) => match i64::try_from(*n) {
            Ok(n) => {
                out.put_u8(6);
                out.put_i64(n);
            }
            Err(_) => write_string(out, &n.to_string()),
        },
        FieldValue::F64(f) => {
            out.put_u8(7);
            out.put_f64(*f);
        }
        FieldValue::Decimal { scale, value } => {
            out.put_u8(7);
            out.put_f64(*value as f64 / 10f64.powi(*scale as i32));
        }
        FieldValue::F32(f) => {
            out.put_u8(8);
            out.put_f32(*f);
        }
        FieldValue::Str(s) => write_string(out, s),
        FieldValue::Bytes(b) => {
            out.put_u8(10);
            out.put_i32(b.len() as i32);
            out.put_slice(b);
        }
        FieldValue::Table(t) => {
            out.put_u8(11);
            write_map(
                out,
                t.iter()
                    .map(|(k, v)| (&**k, v))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
        }
        FieldValue::Array(a) => {
            out.put_u8(12);
            out.put_i32(a.len() as i32);
            for v in a {
                write_value(out, v);
            }
        }
    }
}

fn write_string(out: &mut BytesMut, s: &str) {
    if s.len() < SHORT_STRING_UNITS_MAX {
        out.put_u8(9);
        put_utf(out, s);
    } else {
        out.put_u8(13);
        out.put_i32(modified_utf8_len(s) as i32);
        put_modified_utf8(out, s);
    }
}

/// A string property's value, if it is one.
pub fn as_string(v: &FieldValue) -> Option<&ByteString> {
    match v {
        FieldValue::Str(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        let mut t = FieldTable::new();
        t.insert("n", FieldValue::Void);
        t.insert("b", FieldValue::Bool(true));
        t.insert("y", FieldValue::I8(-3));
        t.insert("c", FieldValue::U16(0x20AC));
        t.insert("s", FieldValue::I16(-300));
        t.insert("i", FieldValue::I32(1 << 20));
        t.insert("l", FieldValue::I64(-(1 << 40)));
        t.insert("d", FieldValue::F64(2.5));
        t.insert("f", FieldValue::F32(-1.25));
        t.insert("str", FieldValue::Str("héllo".into()));
        t.insert("big", FieldValue::Str("x".repeat(40_000).into()));
        t.insert(
            "bytes",
            FieldValue::Bytes(bytes::Bytes::from_static(b"\0\x01")),
        );
        let mut inner = FieldTable::new();
        inner.insert(
            "k",
            FieldValue::Array(vec![FieldValue::I32(1), FieldValue::Str("a".into())]),
        );
        t.insert("m", FieldValue::Table(inner));
        let mut out = BytesMut::new();
        write_map(
            &mut out,
            t.iter()
                .map(|(k, v)| (&**k, v))
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let mut r = Reader::new(out.freeze());
        assert_eq!(read_map(&mut r, 8).unwrap(), t);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn hostile_maps_are_refused() {
        // A count far beyond the frame.
        let mut r = Reader::new(bytes::Bytes::from_static(&[0x7F, 0xFF, 0xFF, 0xFF]));
        assert!(read_map(&mut r, 8).is_err());
        // Unknown type.
        let mut r = Reader::new(bytes::Bytes::from_static(&[0, 0, 0, 1, 0, 1, b'k', 99]));
        assert_eq!(read_map(&mut r, 8), Err(DecodeError::UnknownPrimitive(99)));
        // Nesting beyond the bound: map { k: map { k: map ... } }.
        let mut b = BytesMut::new();
        for _ in 0..10 {
            b.put_i32(1);
            put_utf(&mut b, "k");
            b.put_u8(11);
        }
        b.put_i32(0);
        let mut r = Reader::new(b.freeze());
        assert_eq!(read_map(&mut r, 4), Err(DecodeError::TooDeep(4)));
    }
}
