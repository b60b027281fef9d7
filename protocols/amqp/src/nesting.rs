//! A guard against deeply nested field tables, run on a frame's payload before the
//! `amq-protocol` parser sees it.
//!
//! The parser recurses once per level of nested table or array, so a frame of a few
//! kilobytes made of nothing but nested tables could exhaust a worker's stack. This scan
//! walks the same bytes iteratively over entries and recursively only over nesting, with a
//! bounded depth. It only answers "too deep?": anything malformed is left for the parser
//! to reject with its own error.

/// Where the field tables are in a method's arguments, for the methods that carry one:
/// the fields before the table, as `S` (short string), `2` (a u16) and `b` (a flag octet).
fn method_layout(class_id: u16, method_id: u16) -> Option<&'static [u8]> {
    Some(match (class_id, method_id) {
        (10, 11) => b"",                 // connection.start-ok: client-properties first
        (40, 10) => b"2SSb",             // exchange.declare
        (40, 30) | (40, 40) => b"2SSSb", // exchange.bind / unbind
        (50, 10) => b"2Sb",              // queue.declare
        (50, 20) => b"2SSSb",            // queue.bind
        (50, 50) => b"2SSS",             // queue.unbind
        (60, 20) => b"2SSb",             // basic.consume
        _ => return None,
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        (end <= self.buf.len()).then(|| self.pos = end)
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.buf.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<usize> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn short_string(&mut self) -> Option<()> {
        let n = self.u8()? as usize;
        self.skip(n)
    }

    /// A length-prefixed region as its own cursor.
    fn region(&mut self) -> Option<Cursor<'a>> {
        let n = self.u32()?;
        let start = self.pos;
        self.skip(n)?;
        Some(Cursor {
            buf: &self.buf[start..start + n],
            pos: 0,
        })
    }
}

/// Outcome of a scan: `false` only when nesting provably exceeds the bound.
fn table_ok(c: &mut Cursor<'_>, depth: usize, max: usize) -> bool {
    if depth > max {
        return false;
    }
    let Some(mut body) = c.region() else {
        return true;
    };
    while body.pos < body.buf.len() {
        if body.short_string().is_none() {
            return true;
        }
        match value_ok(&mut body, depth, max) {
            Some(true) => {}
            Some(false) => return false,
            None => return true,
        }
    }
    true
}

/// `Some(false)` when too deep, `None` when malformed (left to the parser).
fn value_ok(c: &mut Cursor<'_>, depth: usize, max: usize) -> Option<bool> {
    let kind = c.u8()?;
    match kind {
        b't' | b'b' | b'B' => c.skip(1)?,
        b's' | b'U' | b'u' => c.skip(2)?,
        b'I' | b'i' | b'f' => c.skip(4)?,
        b'l' | b'L' | b'd' | b'T' => c.skip(8)?,
        b'D' => c.skip(5)?,
        b'S' | b'x' => {
            let n = c.u32()?;
            c.skip(n)?
        }
        b'V' => {}
        b'F' => return Some(table_ok(c, depth + 1, max)),
        b'A' => {
            if depth + 1 > max {
                return Some(false);
            }
            let mut items = c.region()?;
            while items.pos < items.buf.len() {
                if !value_ok(&mut items, depth + 1, max)? {
                    return Some(false);
                }
            }
        }
        _ => return None,
    }
    Some(true)
}

/// Whether the field table of a method payload (class and method ids first) nests at most
/// `max` levels. Methods without a table always pass.
pub(crate) fn method_ok(payload: &[u8], max: usize) -> bool {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let (Some(class_id), Some(method_id)) = (c.u16(), c.u16()) else {
        return true;
    };
    let Some(layout) = method_layout(class_id, method_id) else {
        return true;
    };
    for field in layout {
        let skipped = match field {
            b'2' => c.skip(2),
            b'b' => c.skip(1),
            _ => c.short_string(),
        };
        if skipped.is_none() {
            return true;
        }
    }
    table_ok(&mut c, 1, max)
}

/// Whether the `headers` property of a content-header payload nests at most `max` levels.
pub(crate) fn content_header_ok(payload: &[u8], max: usize) -> bool {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    // class, weight, body size
    if c.skip(12).is_none() {
        return true;
    }
    let Some(flags) = c.u16() else {
        return true;
    };
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 && c.short_string().is_none() {
            return true;
        }
    }
    if flags & (1 << 13) == 0 {
        return true;
    }
    table_ok(&mut c, 1, max)
}

/// A table nesting `levels` deep: `{"a": {"a": ... {}}}`, with its length prefix.
#[cfg(test)]
pub(crate) fn nested_table(levels: usize) -> Vec<u8> {
    let mut t = 0u32.to_be_bytes().to_vec();
    for _ in 1..levels {
        let mut outer = Vec::new();
        let entry_len = 2 + 1 + t.len();
        outer.extend_from_slice(&(entry_len as u32).to_be_bytes());
        outer.extend_from_slice(&[1, b'a', b'F']);
        outer.extend_from_slice(&t);
        t = outer;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consume_payload(table: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 20, 0, 0, 1, b'q', 0, 0];
        p.extend_from_slice(table);
        p
    }

    #[test]
    fn depth_is_bounded() {
        assert!(method_ok(&consume_payload(&nested_table(5)), 5));
        assert!(!method_ok(&consume_payload(&nested_table(6)), 5));
        assert!(!method_ok(&consume_payload(&nested_table(5_000)), 32));
        // Truncated input is the parser's business, not a depth violation.
        let p = consume_payload(&nested_table(3));
        assert!(method_ok(&p[..p.len() - 3], 5));
    }

    #[test]
    fn arrays_count_as_levels() {
        // [[[...]]]
        let mut v = vec![b'A', 0, 0, 0, 0];
        for _ in 0..10 {
            let mut outer = vec![b'A'];
            outer.extend_from_slice(&(v.len() as u32).to_be_bytes());
            outer.extend_from_slice(&v);
            v = outer;
        }
        let mut table = Vec::new();
        let entry_len = 2 + v.len();
        table.extend_from_slice(&(entry_len as u32).to_be_bytes());
        table.extend_from_slice(&[1, b'a']);
        table.extend_from_slice(&v);
        assert!(!method_ok(&consume_payload(&table), 5));
        assert!(method_ok(&consume_payload(&table), 20));
    }

    #[test]
    fn content_header_headers() {
        let mut p = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&((1u16 << 15) | (1 << 13)).to_be_bytes());
        p.extend_from_slice(&[4, b't', b'e', b'x', b't']);
        p.extend_from_slice(&nested_table(40));
        assert!(!content_header_ok(&p, 32));
        assert!(content_header_ok(&p, 40));
    }
}
