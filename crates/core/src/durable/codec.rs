//! The payloads of the core's journal records: a small, versionless binary format.
//!
//! Integers are little-endian and fixed width; a string or byte run is a `u32` length and
//! its bytes; a table is a `u32` count of (string, value) pairs. Decoding never trusts a
//! length: every read is bounds-checked against the record, and tables nest at most
//! [`TABLE_DEPTH_MAX`] deep, so a damaged record that passed its CRC yields an error, never a
//! panic or a huge allocation.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::exchange::ExchangeOptions;
use crate::message::{Death, DeathReason, FieldTable, FieldValue, Message, Properties};

/// Record kinds (the store's opaque `kind` byte).
pub(crate) mod kind {
    pub const EXCHANGE_DECLARE: u8 = 1;
    pub const EXCHANGE_DELETE: u8 = 2;
    pub const QUEUE_DECLARE: u8 = 3;
    pub const QUEUE_DELETE: u8 = 4;
    pub const BIND: u8 = 5;
    pub const UNBIND: u8 = 6;
    pub const PUBLISH: u8 = 7;
    pub const SETTLE: u8 = 8;
    /// A durable queue's expiry changed (`x-expires`; see `Queue::set_expires`).
    pub const QUEUE_EXPIRES: u8 = 9;
    /// A user was created or changed (`Broker::put_user`).
    pub const USER_PUT: u8 = 10;
    /// A user was deleted (`Broker::delete_user`).
    pub const USER_DELETE: u8 = 11;
}

/// The payload of a `USER_PUT` record.
pub(crate) fn user_record(u: &crate::auth::UserRecord) -> Bytes {
    let mut enc = Enc::with_capacity(64 + u.name.len() + u.password_hash.len());
    enc.str(&u.name).str(&u.password_hash);
    for list in [&u.vhosts, &u.tags] {
        enc.u32(list.len() as u32);
        for item in list {
            enc.str(item);
        }
    }
    enc.u8(u.loopback_only as u8);
    enc.finish()
}

/// Reads a `USER_PUT` payload.
pub(crate) fn parse_user(d: &mut Dec) -> Result<crate::auth::UserRecord, Malformed> {
    let name = d.str()?.to_string();
    let password_hash = d.str()?.to_string();
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = d.u32()?;
        for _ in 0..n {
            list.push(d.str()?.to_string());
        }
    }
    let loopback_only = d.bool()?;
    d.end()?;
    let [vhosts, tags] = lists;
    Ok(crate::auth::UserRecord {
        name,
        password_hash,
        vhosts,
        tags,
        loopback_only,
    })
}

/// Nesting bound for header tables and arrays in a record.
const TABLE_DEPTH_MAX: usize = 64;

/// A record that passed its CRC but does not parse: written by another version, or damage
/// the CRC missed.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what} in journal record")]
pub(crate) struct Malformed {
    what: &'static str,
}

fn bad(what: &'static str) -> Malformed {
    Malformed { what }
}

pub(crate) fn malformed(what: &'static str) -> Malformed {
    bad(what)
}

pub(crate) struct Enc(BytesMut);

impl Enc {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Enc(BytesMut::with_capacity(n))
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.put_u8(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.put_u32_le(v);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put_u64_le(v);
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.put_u32_le(v.len() as u32);
        self.0.put_slice(v);
        self
    }
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn opt_str(&mut self, v: &Option<ByteString>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(s) => self.u8(1).str(s),
        }
    }
    pub(crate) fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(n) => self.u8(1).u64(n),
        }
    }
    pub(crate) fn table(&mut self, t: &FieldTable) -> &mut Self {
        self.u32(t.len() as u32);
        for (k, v) in t.iter() {
            self.str(k);
            self.value(v);
        }
        self
    }
    fn value(&mut self, v: &FieldValue) {
        match v {
            FieldValue::Bool(b) => self.u8(1).u8(*b as u8),
            FieldValue::I8(n) => self.u8(2).u8(*n as u8),
            FieldValue::U8(n) => self.u8(3).u8(*n),
            FieldValue::I16(n) => self.u8(4).u64(*n as u64),
            FieldValue::U16(n) => self.u8(5).u64(u64::from(*n)),
            FieldValue::I32(n) => self.u8(6).u64(*n as u64),
            FieldValue::U32(n) => self.u8(7).u64(u64::from(*n)),
            FieldValue::I64(n) => self.u8(8).u64(*n as u64),
            FieldValue::U64(n) => self.u8(9).u64(*n),
            FieldValue::F32(f) => self.u8(10).u32(f.to_bits()),
            FieldValue::F64(f) => self.u8(11).u64(f.to_bits()),
            FieldValue::Decimal { scale, value } => self.u8(12).u8(*scale).u32(*value),
            FieldValue::Str(s) => self.u8(13).str(s),
            FieldValue::Bytes(b) => self.u8(14).bytes(b),
            FieldValue::Timestamp(t) => self.u8(15).u64(*t),
            FieldValue::Table(t) => self.u8(16).table(t),
            FieldValue::Array(a) => {
                self.u8(17).u32(a.len() as u32);
                for v in a {
                    self.value(v);
                }
                self
            }
            FieldValue::Void => self.u8(18),
        };
    }
    pub(crate) fn message(&mut self, m: &Message) -> &mut Self {
        self.message_head(m);
        self.0.put_slice(&m.body);
        self
    }
    /// [`Enc::message`] up to and including the body's length, for writers that append the
    /// body themselves (without copying it into this buffer).
    pub(crate) fn message_head(&mut self, m: &Message) -> &mut Self {
        self.str(&m.exchange).str(&m.routing_key);
        let p = &m.properties;
        self.opt_str(&p.content_type)
            .opt_str(&p.content_encoding)
            .table(&p.headers)
            .u8(p.persistent as u8);
        match p.priority {
            None => self.u8(0),
            Some(n) => self.u8(1).u8(n),
        };
        self.opt_str(&p.correlation_id)
            .opt_str(&p.reply_to)
            .opt_u64(p.expiration_ms)
            .opt_str(&p.message_id)
            .opt_u64(p.timestamp_ms)
            .opt_str(&p.message_type)
            .opt_str(&p.user_id)
            .opt_str(&p.app_id);
        self.u32(m.deaths.len() as u32);
        for d in &m.deaths {
            self.str(&d.queue)
                .u8(death_code(d.reason))
                .str(&d.exchange)
                .str(&d.routing_key)
                .u64(d.count)
                .u64(d.time_ms)
                .opt_u64(d.original_expiration_ms);
        }
        self.u32(m.body.len() as u32)
    }
    /// The bytes encoded so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
    pub(crate) fn exchange_options(&mut self, o: &ExchangeOptions) -> &mut Self {
        self.u8(o.durable as u8)
            .u8(o.auto_delete as u8)
            .u8(o.internal as u8)
            .table(&o.arguments)
    }
    pub(crate) fn finish(self) -> Bytes {
        self.0.freeze()
    }
}

fn death_code(r: DeathReason) -> u8 {
    match r {
        DeathReason::Rejected => 0,
        DeathReason::Expired => 1,
        DeathReason::MaxLen => 2,
        DeathReason::DeliveryLimit => 3,
    }
}

/// A reader over one record's payload; byte runs are slices of it, not copies.
pub(crate) struct Dec(Bytes);

impl Dec {
    pub(crate) fn new(b: Bytes) -> Self {
        Dec(b)
    }
    fn need(&self, n: usize, what: &'static str) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            Err(bad(what))
        } else {
            Ok(())
        }
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        self.need(1, "byte")?;
        Ok(self.0.get_u8())
    }
    pub(crate) fn bool(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("flag")),
        }
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        self.need(4, "u32")?;
        Ok(self.0.get_u32_le())
    }
    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        self.need(8, "u64")?;
        Ok(self.0.get_u64_le())
    }
    pub(crate) fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u32()? as usize;
        self.need(n, "byte run")?;
        Ok(self.0.split_to(n))
    }
    pub(crate) fn str(&mut self) -> Result<ByteString, Malformed> {
        ByteString::try_from(self.bytes()?).map_err(|_| bad("string"))
    }
    fn opt_str(&mut self) -> Result<Option<ByteString>, Malformed> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }
    pub(crate) fn opt_u64(&mut self) -> Result<Option<u64>, Malformed> {
        Ok(if self.bool()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    /// A count of items that each take at least `min_bytes`, checked against what is left.
    fn count(&mut self, min_bytes: usize) -> Result<usize, Malformed> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_bytes) > self.0.remaining() {
            return Err(bad("count"));
        }
        Ok(n)
    }
    pub(crate) fn table(&mut self) -> Result<FieldTable, Malformed> {
        self.table_at(0)
    }
    fn table_at(&mut self, depth: usize) -> Result<FieldTable, Malformed> {
        if depth > TABLE_DEPTH_MAX {
            return Err(bad("table nesting"));
        }
        let n = self.count(5)?;
        let mut t = FieldTable::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = self.value(depth)?;
            t.push(k, v);
        }
        Ok(t)
    }
    fn value(&mut self, depth: usize) -> Result<FieldValue, Malformed> {
        Ok(match self.u8()? {
            1 => FieldValue::Bool(self.bool()?),
            2 => FieldValue::I8(self.u8()? as i8),
            3 => FieldValue::U8(self.u8()?),
            4 => FieldValue::I16(self.u64()? as i16),
            5 => FieldValue::U16(self.u64()? as u16),
            6 => FieldValue::I32(self.u64()? as i32),
            7 => FieldValue::U32(self.u64()? as u32),
            8 => FieldValue::I64(self.u64()? as i64),
            9 => FieldValue::U64(self.u64()?),
            10 => FieldValue::F32(f32::from_bits(self.u32()?)),
            11 => FieldValue::F64(f64::from_bits(self.u64()?)),
            12 => FieldValue::Decimal {
                scale: self.u8()?,
                value: self.u32()?,
            },
            13 => FieldValue::Str(self.str()?),
            14 => FieldValue::Bytes(self.bytes()?),
            15 => FieldValue::Timestamp(self.u64()?),
            16 => FieldValue::Table(self.table_at(depth + 1)?),
            17 => {
                if depth >= TABLE_DEPTH_MAX {
                    return Err(bad("array nesting"));
                }
                let n = self.count(1)?;
                let mut a = Vec::with_capacity(n);
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                FieldValue::Array(a)
            }
            18 => FieldValue::Void,
            _ => return Err(bad("field value type")),
        })
    }
    pub(crate) fn message(&mut self) -> Result<Message, Malformed> {
        let exchange = self.str()?;
        let routing_key = self.str()?;
        let content_type = self.opt_str()?;
        let content_encoding = self.opt_str()?;
        let headers = self.table()?;
        let persistent = self.bool()?;
        let priority = if self.bool()? { Some(self.u8()?) } else { None };
        let properties = Properties {
            content_type,
            content_encoding,
            headers,
            persistent,
            priority,
            correlation_id: self.opt_str()?,
            reply_to: self.opt_str()?,
            expiration_ms: self.opt_u64()?,
            message_id: self.opt_str()?,
            timestamp_ms: self.opt_u64()?,
            message_type: self.opt_str()?,
            user_id: self.opt_str()?,
            app_id: self.opt_str()?,
        };
        let n = self.count(30)?;
        let mut deaths = Vec::with_capacity(n);
        for _ in 0..n {
            deaths.push(Death {
                queue: self.str()?,
                reason: match self.u8()? {
                    0 => DeathReason::Rejected,
                    1 => DeathReason::Expired,
                    2 => DeathReason::MaxLen,
                    3 => DeathReason::DeliveryLimit,
                    _ => return Err(bad("death reason")),
                },
                exchange: self.str()?,
                routing_key: self.str()?,
                count: self.u64()?,
                time_ms: self.u64()?,
                original_expiration_ms: self.opt_u64()?,
            });
        }
        let body = self.bytes()?;
        Ok(Message {
            body,
            properties,
            exchange,
            routing_key,
            deaths,
        })
    }
    pub(crate) fn exchange_options(&mut self) -> Result<ExchangeOptions, Malformed> {
        Ok(ExchangeOptions {
            durable: self.bool()?,
            auto_delete: self.bool()?,
            internal: self.bool()?,
            arguments: self.table()?,
        })
    }
    /// Fails unless the whole payload was read.
    pub(crate) fn end(&self) -> Result<(), Malformed> {
        if self.0.has_remaining() {
            Err(bad("trailing bytes"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        let mut headers = FieldTable::new();
        headers.push("s", FieldValue::Str("v".into()));
        headers.push("n", FieldValue::I64(-5));
        headers.push("f", FieldValue::F64(1.5));
        let mut inner = FieldTable::new();
        inner.push("b", FieldValue::Bytes(Bytes::from_static(b"\0\xff")));
        headers.push(
            "t",
            FieldValue::Array(vec![FieldValue::Table(inner), FieldValue::Void]),
        );
        let mut m = Message::new("amq.topic", "a.b", Bytes::from_static(b"body"));
        m.properties = Properties {
            content_type: Some("text/plain".into()),
            headers,
            persistent: true,
            priority: Some(3),
            expiration_ms: Some(1000),
            message_id: Some("id-1".into()),
            ..Properties::default()
        };
        m.deaths.push(Death {
            queue: "q".into(),
            reason: DeathReason::Expired,
            exchange: "x".into(),
            routing_key: "k".into(),
            count: 2,
            time_ms: 7,
            original_expiration_ms: Some(9),
        });
        m
    }

    #[test]
    fn a_message_round_trips() {
        let m = sample();
        let mut e = Enc::with_capacity(64);
        e.message(&m);
        let mut d = Dec::new(e.finish());
        assert_eq!(d.message().unwrap(), m);
        d.end().unwrap();
    }

    proptest! {
        #[test]
        fn truncated_or_garbled_payloads_are_errors_not_panics(
            cut in 0usize..200,
            flip in any::<(usize, u8)>(),
        ) {
            let mut e = Enc::with_capacity(64);
            e.message(&sample());
            let full = e.finish();
            let mut b = full[..cut.min(full.len())].to_vec();
            if !b.is_empty() {
                let i = flip.0 % b.len();
                b[i] ^= flip.1;
            }
            let mut d = Dec::new(Bytes::from(b));
            let _ = d.message().and_then(|_| d.end());
        }
    }
}
