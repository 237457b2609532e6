//! The HL7 v2 MLLP listener (`AMAL_HL7_MLLP_ADDR`, off by default): lab
//! systems keep a TCP connection open and send ORU^R01 messages framed as
//! `0x0B message 0x1C 0x0D` (MLLP release 2's block format); every message
//! gets its ACK on the same connection, framed the same way. Each message
//! goes through the one import service of `POST /api/labs/hl7`
//! ([`crate::services::hl7::import`]: patient match, validation,
//! idempotency, audit) as the account `AMAL_HL7_MLLP_USER`.
//!
//! Bounds: a message longer than `AMAL_HL7_MLLP_MAX_BYTES` is answered AR
//! (audited) and the connection closed, as the rest of the frame cannot be
//! trusted; a connection silent for `AMAL_HL7_MLLP_IDLE_TIMEOUT`, or that
//! sends bytes outside a frame, is closed; at most [`MAX_CONNECTIONS`]
//! connections at once (more wait in the accept queue). MLLP has no
//! authentication or encryption: bind it to a private address (the default
//! is loopback) and reach it over a VPN or a TLS tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::services::hl7 as svc;
use crate::state::AppState;

pub const START: u8 = 0x0b;
pub const END: u8 = 0x1c;
pub const CR: u8 = 0x0d;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

pub use crate::settings::MllpSettings;

/// Frame a message (or an ACK) for MLLP.
pub fn frame(payload: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(&[END, CR]);
    out
}

/// Text of a message's bytes: UTF-8, else ISO-8859-1 (HL7's common default).
pub fn text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => body.iter().map(|&b| char::from(b)).collect(),
    }
}

/// What the reader found next on a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole message (between the start and end blocks).
    Message(Vec<u8>),
    /// A message longer than the limit; its first bytes.
    TooLong(Vec<u8>),
    /// Bytes outside a frame.
    Garbage,
    /// The peer closed the connection between messages.
    Closed,
}

/// Incremental MLLP block reader over a buffer of received bytes.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete item in the buffer, if any. Whitespace between
    /// frames (a sender's trailing CR or LF) is skipped.
    pub fn next(&mut self, max: usize) -> Option<Next> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.buf.drain(..skip);
        let first = *self.buf.first()?;
        if first != START {
            return Some(Next::Garbage);
        }
        let body = &self.buf[1..];
        match body.windows(2).position(|w| w == [END, CR]) {
            Some(end) if end <= max => {
                let msg = body[..end].to_vec();
                self.buf.drain(..end + 3);
                Some(Next::Message(msg))
            }
            Some(_) => Some(Next::TooLong(body[..max.min(body.len())].to_vec())),
            None if body.len() > max + 1 => Some(Next::TooLong(body[..max].to_vec())),
            None => None,
        }
    }
}

/// Bind the listener named by the settings, if any, and serve it in the
/// background. Answers the bound address (for logs and tests).
pub async fn start(state: &AppState) -> anyhow::Result<Option<SocketAddr>> {
    let Some(s) = state.config.hl7_mllp.clone() else {
        return Ok(None);
    };
    // Fail at start, not on the first message, when the account is wrong.
    svc::acting_user(&state.db, &s.user)
        .await
        .map_err(|e| anyhow::anyhow!("AMAL_HL7_MLLP_USER: {e}"))?;
    let listener = TcpListener::bind(&s.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HL7 MLLP on {}: {e}", s.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, "HL7 MLLP listener started");
    let st = state.clone();
    tokio::spawn(async move { serve(st, listener, s).await });
    Ok(Some(addr))
}

async fn serve(state: AppState, listener: TcpListener, s: MllpSettings) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let s = Arc::new(s);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "HL7 MLLP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (st, s) = (state.clone(), s.clone());
        tokio::spawn(async move {
            st.metrics.incr("hl7.mllp.connections");
            let n = connection(&st, stream, &s).await;
            tracing::info!(peer = %peer, messages = n, "HL7 MLLP connection closed");
            drop(permit);
        });
    }
}

/// Serve one connection; answers how many messages it carried.
async fn connection(st: &AppState, mut stream: TcpStream, s: &MllpSettings) -> usize {
    let mut reader = Reader::default();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut count = 0;
    loop {
        let next = match reader.next(s.max_bytes) {
            Some(n) => n,
            None => match tokio::time::timeout(s.idle_timeout, stream.read(&mut chunk)).await {
                Err(_) => {
                    st.metrics.incr("hl7.mllp.timeouts");
                    return count;
                }
                Ok(Err(_)) => return count,
                Ok(Ok(0)) => Next::Closed,
                Ok(Ok(n)) => {
                    reader.push(&chunk[..n]);
                    continue;
                }
            },
        };
        let (ack, close) = match next {
            Next::Closed | Next::Garbage => return count,
            Next::Message(bytes) => {
                count += 1;
                (answer(st, s, &text(&bytes)).await, false)
            }
            Next::TooLong(head) => {
                count += 1;
                let user = svc::acting_user(&st.db, &s.user).await;
                let out = match user {
                    Ok(u) => svc::refuse_oversized(&st.db, &u, &text(&head), s.max_bytes)
                        .await
                        .map(|o| o.ack)
                        .unwrap_or_else(|_| svc::unavailable(&text(&head)).ack),
                    Err(_) => svc::unavailable(&text(&head)).ack,
                };
                (out, true)
            }
        };
        let written = tokio::time::timeout(s.idle_timeout, stream.write_all(&frame(&ack))).await;
        if close || !matches!(written, Ok(Ok(()))) {
            let _ = stream.shutdown().await;
            return count;
        }
    }
}

/// The ACK for one message: the import service's, or AE when our side
/// fails (the sender keeps the message and sends it again).
async fn answer(st: &AppState, s: &MllpSettings, msg: &str) -> String {
    st.metrics.incr("hl7.mllp.messages");
    let user = match svc::acting_user(&st.db, &s.user).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "HL7 MLLP account cannot import; answering AE");
            return svc::unavailable(msg).ack;
        }
    };
    match svc::import(&st.db, &user, msg).await {
        Ok(out) => out.ack,
        Err(e) => {
            tracing::warn!(error = %e, "HL7 MLLP import failed; answering AE");
            svc::unavailable(msg).ack
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_across_chunks_and_bounded() {
        let mut r = Reader::default();
        r.push(b"\x0bMSH|a\rOBX|1\x1c");
        assert_eq!(r.next(100), None);
        r.push(b"\x0d\r\n\x0bMSH|b\x1c\x0d");
        assert_eq!(r.next(100), Some(Next::Message(b"MSH|a\rOBX|1".to_vec())));
        assert_eq!(r.next(100), Some(Next::Message(b"MSH|b".to_vec())));
        assert_eq!(r.next(100), None);
        r.push(b"\x0b0123456789");
        assert_eq!(r.next(4), Some(Next::TooLong(b"0123".to_vec())));
        let mut g = Reader::default();
        g.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(g.next(100), Some(Next::Garbage));
        assert_eq!(frame("A"), b"\x0bA\x1c\x0d".to_vec());
    }
}
