//! The bytes of a connection: registering it with the poll, accepting,
//! readiness events, cutting frames out of what is read (with the inbound
//! limit that pauses reads), and writing a peer's queue with vectored
//! writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{Close, Conn, EventLoop, MAX_IOV, READ_CHUNK};
use crate::net::frame::{encode_hello, Frame, FrameError, FrameReader, HEADER_LEN};
use crate::net::worker::Work;

impl EventLoop {
    pub(super) fn register(
        &mut self,
        mut stream: TcpStream,
        remote: SocketAddr,
        dial: Option<usize>,
    ) {
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("registering a connection with {remote}: {e}");
            if let Some(i) = dial {
                self.retry_later(i);
            }
            return;
        }
        let mut conn = Conn {
            stream,
            remote,
            dial,
            connected: dial.is_none(),
            hello: None,
            link: None,
            reader: FrameReader::new(self.shared.max_frame - HEADER_LEN),
            out: VecDeque::new(),
            out_off: 0,
            deadline: Some(Instant::now() + self.handshake_timeout),
            read_blocked: false,
            hup: false,
        };
        conn.out
            .push_back((Arc::new(encode_hello(&self.hello)), false));
        if conn.connected {
            let _ = conn.stream.set_nodelay(true);
        }
        if let Some(i) = dial {
            self.dials[i].conn = Some(token);
        }
        self.conns.insert(token, conn);
        self.shared
            .site
            .connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
        if dial.is_none() {
            self.flush(token);
        }
    }

    pub(super) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, remote)) => {
                    if self.conns.len() >= self.max_connections {
                        self.shared
                            .site
                            .refused_connections
                            .fetch_add(1, Ordering::Relaxed);
                        log::warn!("refusing a connection from {remote}: too many connections");
                        continue;
                    }
                    log::debug!("site {}: accepted {remote}", self.shared.local_eid);
                    self.register(stream, remote, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn conn_event(&mut self, t: Token, readable: bool, writable: bool, hup: bool) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        c.hup |= hup;
        if !c.connected && writable {
            if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                let why = format!("connect to {} failed: {e}", c.remote);
                return self.close(t, Close::Failed(why));
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connected = true;
                    let _ = c.stream.set_nodelay(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let why = format!("connect to {} failed: {e}", c.remote);
                    return self.close(t, Close::Failed(why));
                }
            }
        }
        if readable {
            if self.frozen() || self.shared.reads_paused.load(Ordering::Acquire) {
                if let Some(c) = self.conns.get_mut(&t) {
                    c.read_blocked = true;
                }
            } else {
                self.read(t);
            }
        }
        if writable {
            self.flush(t);
        }
    }

    /// Reads what the socket holds and handles the frames in it.
    pub(super) fn read(&mut self, t: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            c.read_blocked = false;
            let spare = c.reader.spare(READ_CHUNK);
            let n = match c.stream.read(spare) {
                Ok(0) => {
                    c.reader.filled(READ_CHUNK, 0);
                    return self.close(t, Close::Failed("the peer closed the connection".into()));
                }
                Ok(n) => n,
                Err(e) => {
                    c.reader.filled(READ_CHUNK, 0);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => continue,
                        _ => return self.close(t, Close::Failed(format!("read: {e}"))),
                    }
                }
            };
            c.reader.filled(READ_CHUNK, n);
            if let Some(counters) = c.link.as_ref().map(|l| l.counters.clone()) {
                counters
                    .bytes_received
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            loop {
                let Some(c) = self.conns.get_mut(&t) else {
                    return;
                };
                match c.reader.next_frame() {
                    Ok(None) => break,
                    Ok(Some(frame)) => {
                        if !self.frame(t, frame) {
                            return;
                        }
                    }
                    Err(e) => return self.bad_frame(t, e),
                }
            }
            if self.shared.reads_paused.load(Ordering::Acquire) {
                if let Some(c) = self.conns.get_mut(&t) {
                    c.read_blocked = true;
                }
                return;
            }
            // Edge-triggered: a short read drained the socket; more data
            // brings a new event, so no second `read` to see WouldBlock. An
            // end of stream that came with the data brings none: read on to it.
            if n < READ_CHUNK && !self.conns.get(&t).is_some_and(|c| c.hup) {
                return;
            }
        }
    }

    fn bad_frame(&mut self, t: Token, e: FrameError) {
        self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
        self.close(t, Close::Rejected(e.to_string()));
    }

    /// Handles one frame; false when the connection was closed.
    fn frame(&mut self, t: Token, frame: Frame) -> bool {
        let c = self.conns.get_mut(&t).expect("caller checked");
        match frame {
            Frame::Hello(h) => {
                if c.hello.is_some() {
                    self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
                    self.close(t, Close::Rejected("a second hello".into()));
                    return false;
                }
                self.hello_received(t, h)
            }
            Frame::Msg { body, control_len } => {
                let Some(eid) = c.hello.as_ref().map(|h| h.eid) else {
                    self.shared.site.bad_frames.fetch_add(1, Ordering::Relaxed);
                    self.close(t, Close::Rejected("a message before the handshake".into()));
                    return false;
                };
                // Also from a parked duplicate: the peer may not have switched yet.
                if let Some(link) = &c.link {
                    link.counters
                        .frames_received
                        .fetch_add(1, Ordering::Relaxed);
                }
                let len = body.len();
                let inbound = self.shared.inbound.fetch_add(len, Ordering::SeqCst) + len;
                if inbound > self.shared.max_inbound
                    && !self.shared.reads_paused.swap(true, Ordering::SeqCst)
                {
                    self.shared.site.read_pauses.fetch_add(1, Ordering::Relaxed);
                    log::debug!(
                        "site {}: {inbound} bytes unprocessed; reads paused",
                        self.shared.local_eid
                    );
                    // The worker may have drained the backlog before it could
                    // see the flag (it wakes us only when it sees it).
                    if self.shared.inbound.load(Ordering::SeqCst) <= self.shared.max_inbound / 2 {
                        self.shared.reads_paused.store(false, Ordering::SeqCst);
                    }
                }
                let _ = self.work.send(Work::Msg {
                    eid,
                    body,
                    control_len,
                });
                true
            }
        }
    }

    /// Writes what is queued for the connection: one vectored write, and
    /// another only if the first took everything and more is queued.
    pub(super) fn flush(&mut self, t: Token) {
        if self.frozen() {
            return;
        }
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        if !c.connected {
            return;
        }
        if let Some(link) = &c.link {
            let mut q = link.queue.lock();
            c.out.extend(q.drain(..).map(|f| (f, true)));
        }
        while !c.out.is_empty() {
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(c.out.len().min(MAX_IOV));
            for (i, (f, _)) in c.out.iter().take(MAX_IOV).enumerate() {
                let start = if i == 0 { c.out_off } else { 0 };
                iov.push(IoSlice::new(&f[start..]));
            }
            let want: usize = iov.iter().map(|s| s.len()).sum();
            match c.stream.write_vectored(&iov) {
                Ok(n) => {
                    let (bytes, frames) = advance(&mut c.out, &mut c.out_off, n);
                    if let Some(link) = &c.link {
                        link.written(bytes, frames);
                        link.counters
                            .bytes_sent
                            .fetch_add(n as u64, Ordering::Relaxed);
                        link.counters
                            .frames_sent
                            .fetch_add(frames as u64, Ordering::Relaxed);
                    }
                    if n < want {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(t, Close::Failed(format!("write: {e}"))),
            }
        }
    }
}

/// Drops `n` written bytes from the front of `out`; returns the bytes and
/// the number of counted frames that were completed.
fn advance(
    out: &mut VecDeque<(Arc<Vec<u8>>, bool)>,
    off: &mut usize,
    mut n: usize,
) -> (usize, usize) {
    let (mut bytes, mut frames) = (0, 0);
    while n > 0 {
        let Some((f, counted)) = out.front() else {
            break;
        };
        let left = f.len() - *off;
        if n < left {
            *off += n;
            break;
        }
        n -= left;
        if *counted {
            bytes += f.len();
            frames += 1;
        }
        *off = 0;
        out.pop_front();
    }
    (bytes, frames)
}
