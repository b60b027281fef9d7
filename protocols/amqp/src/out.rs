//! What a connection has to write: frames encoded into a buffer, with large message bodies
//! kept by reference between them instead of copied in.
//!
//! A delivery's body is already in memory as `Bytes` (a slice of the publisher's read
//! buffer, or of a paged record). Copying a 64 KiB body into the output buffer only for
//! the kernel to copy it again into the socket cost a memory copy per delivery and an
//! output buffer as large as a write batch. A splicing `Out` keeps the frames around the
//! body in its buffer and the body as a reference; `conn.rs` hands both to one vectored
//! write. Streams that cannot write vectored (TLS, WebSocket) get a copying `Out`, whose
//! bytes are all in the buffer, as before.
//!
//! Everything but body pieces is written straight into the buffer through `DerefMut`;
//! [`Out::len`] counts the spliced bodies too, which is what write batching compares.
//!
//! # Invariants
//! - `bodies` is ordered by `at`, every `at <= buf.len()`, and no body is empty.
//! - `body_bytes` is the sum of the lengths in `bodies`.
//! - The byte stream is `buf[..at0]`, body 0, `buf[at0..at1]`, body 1, …, `buf[at_last..]`.

use std::io::IoSlice;
use std::ops::{Deref, DerefMut};

use bytes::{Bytes, BytesMut};

/// Body pieces at least this large are spliced, smaller ones copied: for small bodies a copy
/// is cheaper than a reference count and an extra write segment, and the small-message
/// cases keep one contiguous buffer.
pub const SPLICE_MIN_BYTES: usize = 16 * 1024;

/// Entries of the body list kept for the next batch; a longer list (one body of many
/// frames) is given back after its write.
const BODIES_KEEP: usize = 16;

/// Frames to write, with large bodies by reference. See the module docs.
#[derive(Debug, Default)]
pub struct Out {
    buf: BytesMut,
    /// `(at, body)`: `body` goes before `buf[at..]`.
    bodies: Vec<(usize, Bytes)>,
    body_bytes: usize,
    splice: bool,
}

impl Out {
    /// An output that copies every body into its buffer.
    pub fn copying() -> Self {
        Self::default()
    }

    /// An output that keeps bodies of [`SPLICE_MIN_BYTES`] or more by reference, for a
    /// stream that writes vectored.
    pub fn splicing() -> Self {
        Self {
            splice: true,
            ..Self::default()
        }
    }

    /// Bytes to write, spliced bodies included.
    pub fn len(&self) -> usize {
        self.buf.len() + self.body_bytes
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a piece of message body: by reference when it is large and this output
    /// splices, copied otherwise.
    pub fn put_body(&mut self, piece: Bytes) {
        if self.splice && piece.len() >= SPLICE_MIN_BYTES {
            self.body_bytes += piece.len();
            self.bodies.push((self.buf.len(), piece));
        } else {
            self.buf.extend_from_slice(&piece);
        }
    }

    /// Fills `dst` with the byte stream from offset `from` on; returns how many slices it
    /// used. Fewer slices than the stream has segments is fine: the caller writes them and
    /// asks again from where the write ended.
    pub fn slices<'a>(&'a self, from: usize, dst: &mut [IoSlice<'a>]) -> usize {
        let mut skip = from;
        let mut used = 0;
        let mut put = |seg: &'a [u8]| {
            if used == dst.len() || seg.is_empty() {
                return;
            }
            if skip >= seg.len() {
                skip -= seg.len();
                return;
            }
            dst[used] = IoSlice::new(&seg[skip..]);
            skip = 0;
            used += 1;
        };
        let mut at = 0;
        for (end, body) in &self.bodies {
            put(&self.buf[at..*end]);
            put(body);
            at = *end;
        }
        put(&self.buf[at..]);
        used
    }

    /// Empties the output once it was written. The buffer's capacity is kept for the next
    /// batch; the caller decides whether to give it back (`BufSizes::after_write`).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.body_bytes = 0;
        if self.bodies.capacity() > BODIES_KEEP {
            self.bodies = Vec::new();
        } else {
            self.bodies.clear();
        }
    }

    /// The buffer itself, to size or give back between batches.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The whole byte stream in one buffer (tests and diagnostics; copies the bodies).
    pub fn to_contiguous(&self) -> BytesMut {
        let mut all = BytesMut::with_capacity(self.len());
        let mut slices = vec![IoSlice::new(&[]); 2 * self.bodies.len() + 1];
        let n = self.slices(0, &mut slices);
        for s in &slices[..n] {
            all.extend_from_slice(s);
        }
        all
    }
}

impl Deref for Out {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn body(len: usize, seed: u8) -> Bytes {
        (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
    }

    fn fill(out: &mut Out) {
        out.put_slice(b"head");
        out.put_body(body(SPLICE_MIN_BYTES, 1));
        out.put_slice(b"mid");
        out.put_body(body(10, 2));
        out.put_body(body(SPLICE_MIN_BYTES + 5, 3));
        out.put_body(body(SPLICE_MIN_BYTES * 2, 4));
        out.put_slice(b"tail");
    }

    #[test]
    fn splicing_writes_the_same_stream_as_copying() {
        let mut copied = Out::copying();
        fill(&mut copied);
        let mut spliced = Out::splicing();
        fill(&mut spliced);
        assert_eq!(spliced.bodies.len(), 3);
        assert_eq!(spliced.len(), copied.len());
        assert!(spliced.buf.len() < 64, "large bodies are not copied");
        assert_eq!(spliced.to_contiguous(), copied.to_contiguous());
        assert_eq!(&copied.to_contiguous()[..], &copied.buf[..]);
    }

    #[test]
    fn slices_resume_at_every_offset_with_any_number_of_slices() {
        let mut out = Out::splicing();
        fill(&mut out);
        let whole = out.to_contiguous();
        for max in [1, 2, 3, 16] {
            for from in (0..whole.len()).step_by(997).chain([whole.len() - 1]) {
                // Write from `from` to the end, `max` slices per "write", each write
                // taking only part of what it was given.
                let mut got = Vec::new();
                let mut done = from;
                while done < whole.len() {
                    let mut dst = vec![IoSlice::new(&[]); max];
                    let n = out.slices(done, &mut dst);
                    assert!(n > 0);
                    let taken: usize = dst[..n].iter().map(|s| s.len()).sum();
                    let part = taken.div_ceil(2);
                    let mut left = part;
                    for s in &dst[..n] {
                        let k = s.len().min(left);
                        got.extend_from_slice(&s[..k]);
                        left -= k;
                    }
                    done += part;
                }
                assert_eq!(&got[..], &whole[from..], "from {from}, {max} slices");
            }
        }
        let mut dst = [IoSlice::new(&[])];
        assert_eq!(out.slices(whole.len(), &mut dst), 0);
    }

    #[test]
    fn clear_empties_and_gives_back_a_long_body_list() {
        let mut out = Out::splicing();
        for _ in 0..=BODIES_KEEP {
            out.put_body(body(SPLICE_MIN_BYTES, 0));
        }
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.bodies.capacity(), 0);
        fill(&mut out);
        out.clear();
        assert!(out.is_empty());
        assert!(out.bodies.capacity() > 0, "a short list keeps its storage");
    }
}
