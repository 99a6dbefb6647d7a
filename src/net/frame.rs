//! The host's own framing on a TCP stream.
//!
//! Every frame is a 12-byte header and a body. Integers are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `0xDB 0x4E` |
//! | 2 | 1 | protocol version ([`NET_VERSION`]) |
//! | 3 | 1 | kind: 1 = hello, 2 = replication message |
//! | 4 | 4 | body length in bytes |
//! | 8 | 4 | CRC-32 of header bytes 0..8 followed by the body |
//!
//! A **hello** body is the sender's eid (i32), a random instance number
//! (u64, new each time a host starts, so a restarted peer's connection is
//! told from a stale one), its advertised address (u16 length, UTF-8, a
//! socket address) and the application's data (u16 length, at most
//! [`MAX_APP_DATA`] bytes, opaque to the host; see
//! [`NetConfig::app_data`](crate::net::NetConfig::app_data)).
//! A **message** body is the control length (u16), the control bytes and
//! the rec bytes, exactly as the sender's `send` callback got them.
//!
//! The reader checks magic, version and length before it buffers a body, so
//! a peer can make it hold at most the configured frame limit.

use std::fmt;
use std::net::SocketAddr;

/// Version of the host's framing and handshake (2: the hello carries
/// application data).
pub const NET_VERSION: u8 = 2;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 12;
const MAGIC: [u8; 2] = [0xDB, 0x4E];
const KIND_HELLO: u8 = 1;
const KIND_MSG: u8 = 2;
/// Longest advertised address a hello may carry.
const MAX_ADDR_LEN: usize = 1024;
/// Most bytes of application data a hello may carry.
pub const MAX_APP_DATA: usize = 4096;

/// What a peer's hello says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's environment id.
    pub eid: i32,
    /// Random per start of the sender's host.
    pub instance: u64,
    /// Where the sender accepts connections.
    pub addr: SocketAddr,
    /// The sender's application data (at most [`MAX_APP_DATA`] bytes).
    pub app_data: Vec<u8>,
}

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The handshake.
    Hello(Hello),
    /// A replication message: `body[2..2 + control_len]` is the control,
    /// the rest the rec (one allocation for both).
    Msg {
        /// The whole body, control length prefix included.
        body: Vec<u8>,
        /// Length of the control part.
        control_len: usize,
    },
}

impl Frame {
    /// The control and rec of a message frame.
    pub fn parts(body: &[u8], control_len: usize) -> (&[u8], &[u8]) {
        body[2..].split_at(control_len)
    }
}

/// Why a byte stream was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The first bytes are not a frame header.
    BadMagic,
    /// The peer speaks another protocol version.
    Version(u8),
    /// The header names a kind this version does not know.
    Kind(u8),
    /// The body is larger than the limit.
    Oversized {
        /// Declared body length.
        len: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The checksum does not match.
    Checksum,
    /// The body does not parse as its kind.
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic => write!(f, "not a dbrep frame (bad magic)"),
            FrameError::Version(v) => {
                write!(f, "protocol version {v}, this site speaks {NET_VERSION}")
            }
            FrameError::Kind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::Oversized { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit}")
            }
            FrameError::Checksum => write!(f, "frame checksum mismatch"),
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn header(kind: u8, body_len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(NET_VERSION);
    out.push(kind);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
}

fn seal(frame: &mut [u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&frame[..8]);
    h.update(&frame[HEADER_LEN..]);
    frame[8..12].copy_from_slice(&h.finalize().to_le_bytes());
}

/// Encodes a replication message as one frame, in one allocation.
///
/// Fails when the control does not fit the u16 length or the body the u32
/// length; the caller reports the send as failed.
pub fn encode_msg(control: &[u8], rec: &[u8]) -> Option<Vec<u8>> {
    let control_len = u16::try_from(control.len()).ok()?;
    let body_len = 2 + control.len() + rec.len();
    u32::try_from(body_len).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    header(KIND_MSG, body_len, &mut out);
    out.extend_from_slice(&control_len.to_le_bytes());
    out.extend_from_slice(control);
    out.extend_from_slice(rec);
    seal(&mut out);
    Some(out)
}

/// Encodes a hello frame. Application data past [`MAX_APP_DATA`] is cut
/// ([`NetConfig`](crate::net::NetConfig) is checked at start, so a host
/// never sends more).
pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    let addr = hello.addr.to_string();
    let app = &hello.app_data[..hello.app_data.len().min(MAX_APP_DATA)];
    let body_len = 4 + 8 + 2 + addr.len() + 2 + app.len();
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    header(KIND_HELLO, body_len, &mut out);
    out.extend_from_slice(&hello.eid.to_le_bytes());
    out.extend_from_slice(&hello.instance.to_le_bytes());
    out.extend_from_slice(&(addr.len() as u16).to_le_bytes());
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(&(app.len() as u16).to_le_bytes());
    out.extend_from_slice(app);
    seal(&mut out);
    out
}

/// Takes a u16-length-prefixed field of at most `max` bytes off the front of `body`.
fn take_field<'a>(
    body: &mut &'a [u8],
    max: usize,
    what: &'static str,
) -> Result<&'a [u8], FrameError> {
    if body.len() < 2 {
        return Err(FrameError::Malformed(what));
    }
    let len = u16::from_le_bytes([body[0], body[1]]) as usize;
    if len > max || body.len() < 2 + len {
        return Err(FrameError::Malformed(what));
    }
    let field = &body[2..2 + len];
    *body = &body[2 + len..];
    Ok(field)
}

fn decode_hello(body: &[u8]) -> Result<Hello, FrameError> {
    if body.len() < 12 {
        return Err(FrameError::Malformed("hello too short"));
    }
    let eid = i32::from_le_bytes(body[0..4].try_into().expect("4 bytes"));
    let instance = u64::from_le_bytes(body[4..12].try_into().expect("8 bytes"));
    if eid < 0 {
        return Err(FrameError::Malformed("hello with a negative eid"));
    }
    let mut rest = &body[12..];
    let addr = take_field(&mut rest, MAX_ADDR_LEN, "hello address length")?;
    let addr = std::str::from_utf8(addr)
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .ok_or(FrameError::Malformed(
            "hello address is not a socket address",
        ))?;
    let app_data = take_field(&mut rest, MAX_APP_DATA, "hello application data length")?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed("bytes after the hello"));
    }
    Ok(Hello {
        eid,
        instance,
        addr,
        app_data: app_data.to_vec(),
    })
}

/// Cuts frames out of the bytes a connection receives.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
}

impl FrameReader {
    /// A reader that refuses bodies longer than `max_body`.
    pub fn new(max_body: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            max_body,
        }
    }

    /// Bytes received but not yet returned as frames.
    #[cfg(any(test, feature = "testing"))]
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Room to read into: at least `chunk` bytes, at the end of the buffer.
    /// Call [`FrameReader::filled`] with what was read.
    pub fn spare(&mut self, chunk: usize) -> &mut [u8] {
        if self.start > 0 && (self.start == self.buf.len() || self.start >= self.buf.len() / 2) {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + chunk, 0);
        &mut self.buf[len..]
    }

    /// Records that `n` bytes of the last [`FrameReader::spare`] were filled.
    pub fn filled(&mut self, chunk: usize, n: usize) {
        let len = self.buf.len();
        self.buf.truncate(len - chunk + n.min(chunk));
    }

    /// Appends bytes (for tests and callers that already hold them).
    #[cfg(any(test, feature = "testing"))]
    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        self.spare(n).copy_from_slice(bytes);
    }

    /// The next complete frame, `None` if more bytes are needed, or why the
    /// stream is bad. After an error the reader must not be used again.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..];
        // Check what we can as early as we can: a stranger's bytes are
        // rejected at the first byte that is wrong, not after a full header.
        if !avail.is_empty() && avail[0] != MAGIC[0] || avail.len() >= 2 && avail[1] != MAGIC[1] {
            return Err(FrameError::BadMagic);
        }
        if avail.len() >= 3 && avail[2] != NET_VERSION {
            return Err(FrameError::Version(avail[2]));
        }
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = avail[3];
        if kind != KIND_HELLO && kind != KIND_MSG {
            return Err(FrameError::Kind(kind));
        }
        let body_len = u32::from_le_bytes(avail[4..8].try_into().expect("4 bytes")) as usize;
        if body_len > self.max_body {
            return Err(FrameError::Oversized {
                len: body_len as u64,
                limit: self.max_body as u64,
            });
        }
        if avail.len() < HEADER_LEN + body_len {
            return Ok(None);
        }
        let frame = &avail[..HEADER_LEN + body_len];
        let mut h = crc32fast::Hasher::new();
        h.update(&frame[..8]);
        h.update(&frame[HEADER_LEN..]);
        if h.finalize().to_le_bytes() != frame[8..12] {
            return Err(FrameError::Checksum);
        }
        let body = &frame[HEADER_LEN..];
        let out = if kind == KIND_HELLO {
            Frame::Hello(decode_hello(body)?)
        } else {
            if body.len() < 2 {
                return Err(FrameError::Malformed("message without a control length"));
            }
            let control_len = u16::from_le_bytes([body[0], body[1]]) as usize;
            if body.len() < 2 + control_len {
                return Err(FrameError::Malformed("control longer than the frame"));
            }
            Frame::Msg {
                body: body.to_vec(),
                control_len,
            }
        };
        self.start += HEADER_LEN + body_len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut FrameReader) -> Result<Vec<Frame>, FrameError> {
        let mut out = Vec::new();
        while let Some(f) = r.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn messages_and_hellos_round_trip_byte_by_byte() {
        let hello = Hello {
            eid: 7,
            instance: 0x1234_5678_9abc_def0,
            addr: "127.0.0.1:4000".parse().unwrap(),
            app_data: b"client=127.0.0.1:6001".to_vec(),
        };
        let mut stream = encode_hello(&hello);
        stream.extend(encode_msg(b"control!", b"the rec").unwrap());
        stream.extend(encode_msg(b"", b"").unwrap());
        let mut r = FrameReader::new(1 << 20);
        let mut frames = Vec::new();
        for b in &stream {
            r.push(std::slice::from_ref(b));
            frames.extend(read_all(&mut r).unwrap());
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], Frame::Hello(hello));
        match &frames[1] {
            Frame::Msg { body, control_len } => {
                assert_eq!(
                    Frame::parts(body, *control_len),
                    (&b"control!"[..], &b"the rec"[..])
                );
            }
            other => panic!("expected a message, got {other:?}"),
        }
        assert!(matches!(&frames[2], Frame::Msg { control_len: 0, .. }));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let frame = encode_msg(b"ctl", b"payload bytes").unwrap();
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                let mut r = FrameReader::new(1 << 20);
                r.push(&bad);
                match r.next_frame() {
                    Err(_) => {}
                    // A length grown by the flip: the reader waits for more.
                    Ok(None) if (4..8).contains(&i) => {}
                    other => panic!("flip of bit {bit} at byte {i} gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn garbage_wrong_version_and_oversized_are_refused_early() {
        let mut r = FrameReader::new(1 << 20);
        r.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(r.next_frame(), Err(FrameError::BadMagic));

        let mut frame = encode_msg(b"c", b"r").unwrap();
        frame[2] = NET_VERSION + 1;
        let mut r = FrameReader::new(1 << 20);
        r.push(&frame[..3]);
        assert_eq!(r.next_frame(), Err(FrameError::Version(NET_VERSION + 1)));

        let frame = encode_msg(b"c", &[0; 100]).unwrap();
        let mut r = FrameReader::new(50);
        r.push(&frame[..HEADER_LEN]);
        assert_eq!(
            r.next_frame(),
            Err(FrameError::Oversized {
                len: 103,
                limit: 50
            })
        );

        let mut frame = encode_msg(b"c", b"r").unwrap();
        frame[3] = 9;
        let mut r = FrameReader::new(1 << 20);
        r.push(&frame);
        assert_eq!(r.next_frame(), Err(FrameError::Kind(9)));
    }

    #[test]
    fn malformed_bodies_with_good_checksums_are_refused() {
        // A message whose control length runs past the body.
        let mut frame = encode_msg(b"abc", b"").unwrap();
        frame[HEADER_LEN] = 200;
        seal(&mut frame);
        let mut r = FrameReader::new(1 << 20);
        r.push(&frame);
        assert!(matches!(r.next_frame(), Err(FrameError::Malformed(_))));

        // A hello with a negative eid.
        let frame = encode_hello(&Hello {
            eid: -5,
            instance: 1,
            addr: "127.0.0.1:1".parse().unwrap(),
            app_data: Vec::new(),
        });
        let mut r = FrameReader::new(1 << 20);
        r.push(&frame);
        assert!(matches!(r.next_frame(), Err(FrameError::Malformed(_))));
    }

    /// A hello frame with a hand-made body and a good checksum.
    fn raw_hello(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        header(KIND_HELLO, body.len(), &mut out);
        out.extend_from_slice(body);
        seal(&mut out);
        out
    }

    fn hello_body(addr: &[u8], app_len: u16, app: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&3i32.to_le_bytes());
        b.extend_from_slice(&9u64.to_le_bytes());
        b.extend_from_slice(&(addr.len() as u16).to_le_bytes());
        b.extend_from_slice(addr);
        b.extend_from_slice(&app_len.to_le_bytes());
        b.extend_from_slice(app);
        b
    }

    fn decode(frame: &[u8]) -> Result<Option<Frame>, FrameError> {
        let mut r = FrameReader::new(1 << 20);
        r.push(frame);
        r.next_frame()
    }

    #[test]
    fn hello_application_data_round_trips_up_to_its_limit() {
        for app_data in [Vec::new(), vec![0xff; 1], vec![7; MAX_APP_DATA]] {
            let hello = Hello {
                eid: 3,
                instance: 9,
                addr: "[::1]:5551".parse().unwrap(),
                app_data,
            };
            assert_eq!(decode(&encode_hello(&hello)), Ok(Some(Frame::Hello(hello))));
        }
        // Encoding cuts what a caller passes past the limit.
        let long = Hello {
            eid: 3,
            instance: 9,
            addr: "127.0.0.1:1".parse().unwrap(),
            app_data: vec![1; MAX_APP_DATA + 10],
        };
        match decode(&encode_hello(&long)) {
            Ok(Some(Frame::Hello(h))) => assert_eq!(h.app_data, vec![1; MAX_APP_DATA]),
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    #[test]
    fn oversized_truncated_or_garbage_hello_fields_are_refused() {
        let addr = b"127.0.0.1:5551";
        assert!(decode(&raw_hello(&hello_body(addr, 2, b"ok"))).is_ok());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "application data over the limit",
                hello_body(addr, MAX_APP_DATA as u16 + 1, &vec![0; MAX_APP_DATA + 1]),
            ),
            (
                "application data length past the body",
                hello_body(addr, 10, b"short"),
            ),
            (
                "no application data length",
                hello_body(addr, 0, b"")[..12 + 2 + addr.len()].to_vec(),
            ),
            ("trailing bytes", hello_body(addr, 1, b"xy")),
            (
                "address not a socket address",
                hello_body(b"not an address", 0, b""),
            ),
            ("address not UTF-8", hello_body(&[0xff, 0xfe, 0x80], 0, b"")),
            ("address length past the body", {
                let mut b = hello_body(addr, 0, b"");
                b[12] = 0xff;
                b
            }),
            ("too short", vec![1, 0, 0]),
        ];
        for (what, body) in cases {
            assert!(
                matches!(decode(&raw_hello(&body)), Err(FrameError::Malformed(_))),
                "{what}: {:?}",
                decode(&raw_hello(&body))
            );
        }
    }

    #[test]
    fn spare_and_filled_keep_partial_frames() {
        let frame = encode_msg(b"control", &vec![7; 5000]).unwrap();
        let mut r = FrameReader::new(1 << 20);
        let mut got = Vec::new();
        for piece in frame.chunks(777) {
            let spare = r.spare(4096);
            spare[..piece.len()].copy_from_slice(piece);
            r.filled(4096, piece.len());
            got.extend(read_all(&mut r).unwrap());
        }
        assert_eq!(got.len(), 1);
        assert_eq!(r.buffered(), 0);
    }
}
