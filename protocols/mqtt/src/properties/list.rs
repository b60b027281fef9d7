//! Reading and writing a property list: the length prefix, then
//! identifier/value pairs.
//!
//! Decoding is generic: [`read`] enforces the rules that hold for every
//! packet (known identifier, allowed in this packet, no forbidden repeats,
//! the count limit, values inside the declared length) and hands each value
//! to the packet's property struct, which only checks values. Encoding is
//! generic too: each struct lists its properties through
//! [`PropertyList::visit`], and [`encoded_len`] and [`write`] walk that list.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::id::{PropertyContext, PropertyId, ValueType};
use crate::error::{DecodeError, EncodeError};
use crate::limits::VARIABLE_BYTE_INTEGER_MAX;
use crate::wire::{field_len, put_field, put_var_int, var_int_len, Reader};

/// A decoded property value, typed by its identifier's [`ValueType`].
#[derive(Debug)]
pub(crate) enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(ByteString),
    Bin(Bytes),
    Pair(ByteString, ByteString),
}

/// A property to encode, borrowed from a property struct.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prop<'a> {
    Byte(PropertyId, u8),
    U16(PropertyId, u16),
    U32(PropertyId, u32),
    VarInt(PropertyId, u32),
    Str(PropertyId, &'a str),
    Bin(PropertyId, &'a [u8]),
    /// A User Property.
    Pair(&'a str, &'a str),
}

/// A packet's set of properties.
pub(crate) trait PropertyList {
    /// Calls `f` for every property present, in the order to encode them.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>));

    /// Stores one decoded property. [`read`] has already checked that `id`
    /// is allowed in `context` and not a forbidden repeat; this checks the
    /// value.
    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        context: PropertyContext,
    ) -> Result<(), DecodeError>;

    /// Whether there is no property at all.
    fn is_empty(&self) -> bool {
        let mut empty = true;
        self.visit(&mut |_| empty = false);
        empty
    }
}

/// Reads a property list (length prefix included) for `context` into a
/// fresh `P`.
pub(crate) fn read<P: PropertyList + Default>(
    r: &mut Reader<'_>,
    context: PropertyContext,
    properties_max: usize,
) -> Result<P, DecodeError> {
    let len = r.var_int("property length")?;
    let mut r = r.sub(len as usize)?;
    let mut out = P::default();
    // Identifiers are below 64, so one bit each records what has been seen.
    let mut seen: u64 = 0;
    let mut count = 0usize;
    while r.remaining() > 0 {
        let raw = r.var_int("property identifier")?;
        let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty { id: raw })?;
        if !id.allowed_in(context) {
            return Err(DecodeError::PropertyNotAllowed {
                property: id,
                context,
            });
        }
        let bit = 1u64 << id.as_u8();
        if seen & bit != 0 && !id.may_repeat(context) {
            return Err(DecodeError::DuplicateProperty { property: id });
        }
        seen |= bit;
        count += 1;
        if count > properties_max {
            return Err(DecodeError::TooManyProperties {
                max: properties_max,
            });
        }
        let value = match id.value_type() {
            ValueType::Byte => Value::Byte(r.u8()?),
            ValueType::TwoByteInteger => Value::U16(r.u16()?),
            ValueType::FourByteInteger => Value::U32(r.u32()?),
            ValueType::VariableByteInteger => Value::VarInt(r.var_int(id.name())?),
            ValueType::Utf8String => Value::Str(r.string(id.name())?),
            ValueType::BinaryData => Value::Bin(r.binary()?),
            ValueType::Utf8StringPair => Value::Pair(
                r.string("User Property name")?,
                r.string("User Property value")?,
            ),
        };
        out.apply(id, value, context)?;
    }
    Ok(out)
}

/// The encoded size of one property, identifier included.
fn prop_len(prop: Prop<'_>) -> Result<usize, EncodeError> {
    // Every identifier is below 128: one byte.
    Ok(1 + match prop {
        Prop::Byte(..) => 1,
        Prop::U16(..) => 2,
        Prop::U32(..) => 4,
        Prop::VarInt(_, v) => {
            if v > VARIABLE_BYTE_INTEGER_MAX {
                return Err(EncodeError::Unrepresentable {
                    what: "a variable byte integer above 268,435,455",
                });
            }
            var_int_len(v)
        }
        Prop::Str(id, s) => field_len(s.as_bytes(), id.name())?,
        Prop::Bin(id, b) => field_len(b, id.name())?,
        Prop::Pair(k, v) => {
            field_len(k.as_bytes(), "User Property name")?
                + field_len(v.as_bytes(), "User Property value")?
        }
    })
}

/// The size of the properties after the length prefix.
fn content_len(list: &impl PropertyList) -> Result<usize, EncodeError> {
    let mut total = 0usize;
    let mut error = None;
    list.visit(&mut |prop| match prop_len(prop) {
        Ok(n) => total = total.saturating_add(n),
        Err(e) => {
            error.get_or_insert(e);
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// The encoded size of the whole property list, length prefix included.
/// A list too long for its prefix reports a size no packet can have, so the
/// caller's Remaining Length check rejects it.
pub(crate) fn encoded_len(list: &impl PropertyList) -> Result<usize, EncodeError> {
    let len = content_len(list)?;
    let prefix = u32::try_from(len).map_or(4, var_int_len);
    Ok(prefix.saturating_add(len))
}

/// Writes the property list, length prefix included. The caller has
/// checked it with [`encoded_len`].
pub(crate) fn write(list: &impl PropertyList, out: &mut BytesMut) {
    let len = content_len(list).unwrap_or(0);
    put_var_int(out, u32::try_from(len).unwrap_or(VARIABLE_BYTE_INTEGER_MAX));
    list.visit(&mut |prop| match prop {
        Prop::Byte(id, v) => {
            out.put_u8(id.as_u8());
            out.put_u8(v);
        }
        Prop::U16(id, v) => {
            out.put_u8(id.as_u8());
            out.put_u16(v);
        }
        Prop::U32(id, v) => {
            out.put_u8(id.as_u8());
            out.put_u32(v);
        }
        Prop::VarInt(id, v) => {
            out.put_u8(id.as_u8());
            put_var_int(out, v);
        }
        Prop::Str(id, s) => {
            out.put_u8(id.as_u8());
            put_field(out, s.as_bytes());
        }
        Prop::Bin(id, b) => {
            out.put_u8(id.as_u8());
            put_field(out, b);
        }
        Prop::Pair(k, v) => {
            out.put_u8(PropertyId::UserProperty.as_u8());
            put_field(out, k.as_bytes());
            put_field(out, v.as_bytes());
        }
    });
}
