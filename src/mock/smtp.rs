//! A mail sink speaking just enough SMTP for the gateway's sender (EHLO or
//! HELO, MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT):
//! it keeps every message, and can be told to refuse the next ones with a
//! 451, to exercise retries. Tests start it in-process ([`start`]);
//! `llm-gateway mock-provider --smtp-port N` runs it beside the mock
//! provider, whose HTTP port then lists the caught mail at `GET /mock/mail`
//! (`?to=` filters by recipient) and takes `POST /mock/mail/fail?count=N`.

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message caught, decoded for tests to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaughtMail {
    /// The envelope's sender and recipients.
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The body, its transfer encoding (quoted-printable, base64) undone.
    pub text: String,
    /// The message as received, headers included.
    pub raw: String,
}

/// The running sink: where it listens, and what it caught.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    caught: Arc<Mutex<Vec<CaughtMail>>>,
    failures_left: Arc<AtomicU32>,
}

impl SmtpSink {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An `smtp://` URL for the gateway's `email.smtp_url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message caught so far, oldest first.
    pub fn messages(&self) -> Vec<CaughtMail> {
        self.caught.lock().expect("not poisoned").clone()
    }

    /// The messages caught for `to`.
    pub fn messages_to(&self, to: &str) -> Vec<CaughtMail> {
        let to = to.to_lowercase();
        self.messages()
            .into_iter()
            .filter(|mail| mail.to.iter().any(|rcpt| rcpt.to_lowercase() == to))
            .collect()
    }

    /// Refuses the next `count` messages with a 451 (a transient failure).
    pub fn fail_next(&self, count: u32) {
        self.failures_left.store(count, Ordering::SeqCst);
    }

    /// `GET /mock/mail` and `POST /mock/mail/fail`, to merge into the mock's router.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/mock/mail", get(list_mail))
            .route("/mock/mail/fail", post(fail_mail))
            .with_state(self.clone())
    }

    fn take_failure(&self) -> bool {
        self.failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn keep(&self, mail: CaughtMail) {
        self.caught.lock().expect("not poisoned").push(mail);
    }
}

/// Listens on `addr` (port 0 picks one) and serves in the background.
pub async fn start(addr: &str) -> std::io::Result<SmtpSink> {
    let listener = TcpListener::bind(addr).await?;
    let sink = SmtpSink {
        addr: listener.local_addr()?,
        caught: Arc::default(),
        failures_left: Arc::default(),
    };
    let serving = sink.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = serving.clone();
            tokio::spawn(async move {
                if let Err(err) = converse(stream, &sink).await {
                    tracing::debug!(%err, "mock SMTP connection ended");
                }
            });
        }
    });
    Ok(sink)
}

#[derive(Deserialize)]
struct ToFilter {
    to: Option<String>,
}

async fn list_mail(
    State(sink): State<SmtpSink>,
    Query(filter): Query<ToFilter>,
) -> Json<Vec<CaughtMail>> {
    Json(match filter.to {
        Some(to) => sink.messages_to(&to),
        None => sink.messages(),
    })
}

#[derive(Deserialize)]
struct FailCount {
    count: Option<u32>,
}

async fn fail_mail(
    State(sink): State<SmtpSink>,
    Query(fail): Query<FailCount>,
) -> Json<serde_json::Value> {
    let count = fail.count.unwrap_or(1);
    sink.fail_next(count);
    Json(serde_json::json!({ "failing_next": count }))
}

/// The envelope of the message being received.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

/// One SMTP session, command by command.
async fn converse(stream: TcpStream, sink: &SmtpSink) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 mock-smtp ESMTP ready\r\n").await?;
    let mut envelope = Envelope::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-mock-smtp\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n",
            "HELO" => b"250 mock-smtp\r\n",
            "MAIL" => {
                envelope = Envelope {
                    from: Some(address_in(command)),
                    to: Vec::new(),
                };
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if envelope.from.is_some() => {
                envelope.to.push(address_in(command));
                b"250 2.1.5 OK\r\n"
            }
            "RCPT" => b"503 5.5.1 MAIL first\r\n",
            "DATA" if envelope.to.is_empty() => b"503 5.5.1 RCPT first\r\n",
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let raw = read_data(&mut lines).await?;
                let envelope = std::mem::take(&mut envelope);
                if sink.take_failure() {
                    b"451 4.3.0 Mock failure, try again later\r\n"
                } else {
                    sink.keep(caught(envelope, raw));
                    b"250 2.0.0 OK queued\r\n"
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The address between `<` and `>` in `MAIL FROM:<…>` or `RCPT TO:<…>`.
fn address_in(command: &str) -> String {
    let start = command.find('<').map_or(0, |at| at + 1);
    let end = command[start..]
        .find('>')
        .map_or(command.len(), |at| start + at);
    command[start..end].trim().to_string()
}

/// The message after `DATA`, up to the lone `.`, dot-unstuffed, with
/// `\r\n` line ends.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut R) -> std::io::Result<String> {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(raw);
        }
        raw.push_str(content.strip_prefix('.').unwrap_or(content));
        raw.push_str("\r\n");
    }
}

fn caught(envelope: Envelope, raw: String) -> CaughtMail {
    let (headers, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let header = |name: &str| header_value(headers, name);
    let encoding = header("content-transfer-encoding").to_ascii_lowercase();
    CaughtMail {
        from: envelope.from.unwrap_or_default(),
        to: envelope.to,
        subject: header("subject"),
        text: decode_body(body, &encoding),
        raw,
    }
}

/// A header's value, its folded lines joined.
fn header_value(headers: &str, name: &str) -> String {
    let mut value: Option<String> = None;
    for line in headers.split("\r\n") {
        match &mut value {
            // Unfolding drops the line break, not the space after it.
            Some(found) if line.starts_with([' ', '\t']) => found.push_str(line),
            Some(_) => break,
            None => {
                if let Some((key, rest)) = line.split_once(':') {
                    if key.eq_ignore_ascii_case(name) {
                        value = Some(rest.trim().to_string());
                    }
                }
            }
        }
    }
    value.unwrap_or_default()
}

/// Undoes a body's transfer encoding; line ends become `\n`.
fn decode_body(body: &str, encoding: &str) -> String {
    match encoding {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
        }
        _ => body.replace("\r\n", "\n"),
    }
}

/// Quoted-printable (RFC 2045): `=XX` is a byte, `=` at a line's end joins
/// it to the next.
fn decode_quoted_printable(body: &str) -> String {
    let mut bytes = Vec::with_capacity(body.len());
    let mut lines = body.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        decode_quoted_line(line.as_bytes(), &mut bytes);
        if !soft_break && lines.peek().is_some() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn decode_quoted_line(line: &[u8], out: &mut Vec<u8>) {
    let mut at = 0;
    while at < line.len() {
        let escaped = line
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (line[at], escaped) {
            (b'=', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_is_decoded() {
        let body = "See http://x/verify-email?token=3Dab=\r\ncd and caf=C3=A9\r\nnext line";
        assert_eq!(
            decode_quoted_printable(body),
            "See http://x/verify-email?token=abcd and caf\u{e9}\nnext line"
        );
    }

    #[test]
    fn headers_are_read_with_their_folds() {
        let headers = "From: a@b.co\r\nSubject: Reset\r\n your password\r\nTo: c@d.co";
        assert_eq!(header_value(headers, "subject"), "Reset your password");
        assert_eq!(header_value(headers, "to"), "c@d.co");
        assert_eq!(header_value(headers, "cc"), "");
        assert_eq!(address_in("MAIL FROM:<a@b.co> SIZE=10"), "a@b.co");
    }

    #[tokio::test]
    async fn a_session_is_caught_dot_unstuffed_and_can_be_failed() {
        let sink = start("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut replies = BufReader::new(read).lines();
        let session = "EHLO test\r\nMAIL FROM:<gw@example.com>\r\nRCPT TO:<ada@example.com>\r\n\
            DATA\r\nSubject: Hi\r\n\r\n..leading dot\r\nend\r\n.\r\nQUIT\r\n";
        write.write_all(session.as_bytes()).await.unwrap();
        let mut last = String::new();
        while let Some(reply) = replies.next_line().await.unwrap() {
            last = reply;
        }
        assert!(last.starts_with("221"), "{last}");
        let mail = &sink.messages_to("ADA@example.com")[0];
        assert_eq!(
            (mail.from.as_str(), mail.subject.as_str()),
            ("gw@example.com", "Hi")
        );
        assert_eq!(mail.text, ".leading dot\nend\n");

        sink.fail_next(1);
        assert!(sink.take_failure());
        assert!(!sink.take_failure(), "only the next one fails");
    }
}
