//! How a connection task sizes its read and write buffers: small while the connection
//! is idle, grown for a client that sends or receives in bulk, and given back once the
//! bulk is over. Most connections of a large deployment are idle, and buffers sized for
//! bulk traffic from the start were most of their memory.

use bytes::BytesMut;

/// The sizes one protocol's connections use for their buffers.
#[derive(Clone, Copy, Debug)]
pub struct BufSizes {
    /// Capacity of a new read buffer, and of one given back after a burst: what the
    /// protocol's handshake and heart-beats need.
    pub read_start_bytes: usize,
    /// How much the read buffer grows when a read filled it (a client sending in bulk).
    pub read_grow_bytes: usize,
    /// A buffer larger than this is given back when a transfer no larger than
    /// `read_start_bytes` leaves it empty: the burst that grew it is over.
    pub keep_bytes: usize,
}

impl BufSizes {
    /// The read buffer of a new connection.
    pub fn read_buf(&self) -> BytesMut {
        BytesMut::with_capacity(self.read_start_bytes)
    }

    /// After `n` bytes were read into `buf` (which had `spare` bytes free before the
    /// read) and what was whole in them was handled: grows a buffer that the read filled,
    /// or gives back a large one that a small read left empty.
    pub fn after_read(&self, buf: &mut BytesMut, n: usize, spare: usize) {
        if n >= spare {
            buf.reserve(self.read_grow_bytes);
        } else if self.is_spent(buf, n) {
            *buf = self.read_buf();
        }
    }

    /// After `n` bytes were written from `buf` and it was cleared: gives back a large
    /// buffer when the write was small. The write buffer otherwise keeps its size for the
    /// next batch, and a new one grows with what is written.
    pub fn after_write(&self, buf: &mut BytesMut, n: usize) {
        if self.is_spent(buf, n) {
            *buf = BytesMut::new();
        }
    }

    fn is_spent(&self, buf: &BytesMut, n: usize) -> bool {
        buf.is_empty() && buf.capacity() > self.keep_bytes && n <= self.read_start_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: BufSizes = BufSizes {
        read_start_bytes: 128,
        read_grow_bytes: 8192,
        keep_bytes: 4096,
    };

    #[test]
    fn a_filled_read_buffer_grows() {
        let mut buf = SIZES.read_buf();
        buf.extend_from_slice(&[0; 128]);
        SIZES.after_read(&mut buf, 128, 128);
        assert!(buf.capacity() - buf.len() >= 8192);
    }

    #[test]
    fn a_small_read_gives_back_a_grown_buffer_once_it_is_drained() {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        buf.extend_from_slice(b"xy");
        SIZES.after_read(&mut buf, 2, 16 * 1024);
        assert_eq!(buf.capacity(), 16 * 1024, "not drained: kept");
        buf.clear();
        SIZES.after_read(&mut buf, 2, 16 * 1024);
        assert_eq!(buf.capacity(), 128);
    }

    #[test]
    fn a_bulk_write_keeps_its_buffer_and_a_small_one_after_it_gives_it_back() {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        SIZES.after_write(&mut buf, 60 * 1024);
        assert_eq!(buf.capacity(), 64 * 1024);
        SIZES.after_write(&mut buf, 2);
        assert_eq!(buf.capacity(), 0);
        let mut small = BytesMut::with_capacity(64);
        SIZES.after_write(&mut small, 2);
        assert_eq!(small.capacity(), 64, "small buffers are kept");
    }
}
