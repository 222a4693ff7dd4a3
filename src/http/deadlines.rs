//! Slow clients at the connection: a request's head (request line and headers) must arrive
//! within the read timeout of its first byte, and a new connection must start its first request
//! within that time too. Neither poem nor hyper (without a timer) bounds these, so a client
//! sending a header a byte at a time could hold a connection, and its task, for ever. (A
//! kept-alive connection waiting for its next request, with nothing half-sent, is not timed:
//! its answer may still be streaming out.)
//!
//! The connection's bytes are only watched, never changed: the head ends at the first blank
//! line (`\r\n\r\n`); from then until the server writes its answer, nothing is timed here (the
//! body's deadlines are the edge middleware's, and the handler's work is not the client's). A
//! `101 Switching Protocols` answer (WebSocket) or an HTTP/2 preface ends the watching.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An acceptor whose connections keep these deadlines.
pub struct Deadlines<A> {
    inner: A,
    read_timeout: Duration,
}

impl<A> Deadlines<A> {
    pub fn new(inner: A, read_timeout: Duration) -> Self {
        Self {
            inner,
            read_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for Deadlines<A> {
    type Io = Timed<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((Timed::new(io, self.read_timeout), local, remote, scheme))
    }
}

/// Where a connection is in its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: the next one must start before the deadline.
    Idle,
    /// A request's head is arriving; `matched` bytes of `\r\n\r\n` seen so far.
    Head { matched: u8 },
    /// The head is in; the server reads the body and answers.
    Serving,
    /// A WebSocket or HTTP/2 connection: no longer watched.
    Open,
}

/// A connection keeping the deadlines of [`Deadlines`].
pub struct Timed<S> {
    io: S,
    read_timeout: Duration,
    phase: Phase,
    fresh: bool,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Timed<S> {
    fn new(io: S, read_timeout: Duration) -> Self {
        Self {
            io,
            read_timeout,
            phase: Phase::Idle,
            fresh: true,
            deadline: Some(Box::pin(tokio::time::sleep(read_timeout))),
        }
    }

    fn set_deadline(&mut self, after: Option<Duration>) {
        self.deadline = after.map(|d| Box::pin(tokio::time::sleep_until(Instant::now() + d)));
    }

    /// Watch the bytes the client sent.
    fn received(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.fresh {
            self.fresh = false;
            if bytes.starts_with(b"PRI * HTTP/2.0") {
                self.phase = Phase::Open;
                self.set_deadline(None);
                return;
            }
        }
        let mut matched = match self.phase {
            Phase::Idle => {
                self.set_deadline(Some(self.read_timeout));
                0
            }
            Phase::Head { matched } => matched,
            Phase::Serving | Phase::Open => return,
        };
        for &b in bytes {
            matched = match (matched, b) {
                (0 | 2, b'\r') => matched + 1,
                (1 | 3, b'\n') => matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if matched == 4 {
                self.phase = Phase::Serving;
                self.set_deadline(None);
                return;
            }
        }
        self.phase = Phase::Head { matched };
    }

    /// Watch the bytes the server answers with.
    fn answering(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Serving || bytes.is_empty() {
            return;
        }
        if bytes.starts_with(b"HTTP/1.1 101") {
            self.phase = Phase::Open;
            self.set_deadline(None);
        } else if bytes.starts_with(b"HTTP/1.1 1") {
            // `100 Continue` (and other interim answers): the body is still to come, and the
            // real answer after it.
        } else {
            // The answer is going out: the next request may follow.
            self.phase = Phase::Idle;
            self.set_deadline(None);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.received(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let late = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if late {
                    tracing::debug!(phase = ?this.phase, "slow client; connection closed");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request did not arrive in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.answering(buf);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.answering(first);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed() -> Timed<tokio::io::Empty> {
        Timed::new(tokio::io::empty(), Duration::from_secs(10))
    }

    #[tokio::test]
    async fn the_head_ends_at_the_first_blank_line_across_reads() {
        let mut t = timed();
        t.received(b"POST / HTTP/1.1\r\nHost: x\r");
        assert_eq!(t.phase, Phase::Head { matched: 1 });
        t.received(b"\n\r");
        assert_eq!(t.phase, Phase::Head { matched: 3 });
        t.received(b"\nbody");
        assert_eq!(t.phase, Phase::Serving);
        assert!(
            t.deadline.is_none(),
            "the handler's time is not the client's"
        );
        t.answering(b"HTTP/1.1 200 OK\r\n");
        assert_eq!((t.phase, t.deadline.is_none()), (Phase::Idle, true));
        t.received(b"GET /ws HTTP/1.1\r\n");
        assert!(
            t.deadline.is_some(),
            "a new head is timed from its first byte"
        );
        t.received(b"\r\n");
        t.answering(b"HTTP/1.1 101 Switching Protocols\r\n");
        assert_eq!(t.phase, Phase::Open);
        assert!(t.deadline.is_none());
    }

    #[tokio::test]
    async fn an_interim_answer_is_not_the_answer() {
        let mut t = timed();
        t.received(b"POST /api HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        t.answering(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!((t.phase, t.deadline.is_none()), (Phase::Serving, true));
        t.received(b"a body without a blank line");
        assert_eq!(t.phase, Phase::Serving, "the body is not a new head");
    }

    #[tokio::test]
    async fn http2_is_not_watched() {
        let mut t = timed();
        t.received(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!((t.phase, t.deadline.is_none()), (Phase::Open, true));
    }
}
