//! The background sender: claims due mail from the outbox and sends it,
//! retrying failures with exponential backoff; runs the alert scans.
//!
//! It wakes when this process queues mail, and otherwise every
//! [`POLL`], so mail queued by another replica, or left by a restart, goes
//! out too. A claim is a lease ([`LEASE_MS`]): mail claimed by a sender
//! that died is sent by another once the lease is over.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{alerts, MailQueue};
use crate::clock::Clock;
use crate::config::{EmailConfig, EmailMode};
use crate::db::outbox::{self, OutboxRow};

/// How often the sender looks for due mail and runs the alert scans.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a claim holds a mail against other senders.
pub const LEASE_MS: i64 = 2 * 60 * 1000;
/// Attempts before a mail is given up (kept with its last error).
pub const MAX_ATTEMPTS: i64 = 8;
/// The wait after a first failed attempt; each next one doubles it.
pub const FIRST_RETRY_MS: i64 = 10_000;
/// Mails claimed at a time.
const BATCH: i64 = 10;
/// The longest an SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("email.smtp_url: {0}")]
    SmtpUrl(String),
    #[error("email.from: `{0}` is not a mail address")]
    From(String),
}

/// Where mail goes.
enum Transport {
    /// Written to the log (`email.mode: log`).
    Log,
    /// Sent through an SMTP server.
    Smtp(Box<Smtp>),
}

/// An SMTP server and the sender mail goes out as.
struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// A failed attempt: its message, and whether trying again is pointless.
struct SendFailure {
    message: String,
    permanent: bool,
}

/// The running sender, to stop on shutdown.
pub struct SenderHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SenderHandle {
    /// Stops the sender after the mail it is sending, and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the sender for `config`; `None` when email is disabled.
pub fn start(
    config: &EmailConfig,
    queue: MailQueue,
    clock: Clock,
) -> Result<Option<SenderHandle>, SenderError> {
    let transport = match config.mode {
        EmailMode::Disabled => return Ok(None),
        EmailMode::Log => Transport::Log,
        EmailMode::Smtp => smtp_transport(config)?,
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(queue, transport, clock, stopped));
    Ok(Some(SenderHandle { stop, task }))
}

fn smtp_transport(config: &EmailConfig) -> Result<Transport, SenderError> {
    let url = config.smtp_url.as_deref().unwrap_or_default();
    let from = config.from.as_deref().unwrap_or_default();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|err| SenderError::SmtpUrl(err.to_string()))?
        .timeout(Some(SMTP_TIMEOUT))
        .build();
    let from = from
        .parse()
        .map_err(|_| SenderError::From(from.to_string()))?;
    Ok(Transport::Smtp(Box::new(Smtp { transport, from })))
}

/// The loop: scan, send what is due, then wait for mail, the next poll,
/// or the stop.
async fn run(
    queue: MailQueue,
    transport: Transport,
    clock: Clock,
    mut stopped: watch::Receiver<bool>,
) {
    let mut last_scan: Option<Instant> = None;
    while !*stopped.borrow() {
        if last_scan.is_none_or(|at| at.elapsed() >= POLL) {
            alerts::scan(&queue, clock.now_ms()).await;
            last_scan = Some(Instant::now());
        }
        send_due(&queue, &transport, &clock).await;
        tokio::select! {
            _ = queue.queued() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Sends every due mail, a batch at a time.
async fn send_due(queue: &MailQueue, transport: &Transport, clock: &Clock) {
    loop {
        let claimed = match outbox::claim_due(queue.db(), clock.now_ms(), LEASE_MS, BATCH).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(%err, "claiming mail from the outbox failed");
                return;
            }
        };
        if claimed.is_empty() {
            return;
        }
        for mail in &claimed {
            let result = transport.send(mail).await;
            if let Err(err) = record(queue, mail, result, clock.now_ms()).await {
                tracing::warn!(%err, mail_id = %mail.id, "recording a mail's outcome failed");
            }
        }
    }
}

/// Marks a mail sent, or schedules its next attempt, or gives it up.
async fn record(
    queue: &MailQueue,
    mail: &OutboxRow,
    result: Result<(), SendFailure>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let failure = match result {
        Ok(()) => return outbox::mark_sent(queue.db(), &mail.id, now).await,
        Err(failure) => failure,
    };
    let retry_at = next_attempt_at(mail.attempts, failure.permanent, now);
    match retry_at {
        Some(at) => tracing::warn!(mail_id = %mail.id, attempts = mail.attempts, retry_at = at,
            error = %failure.message, "sending a mail failed; will retry"),
        None => tracing::error!(mail_id = %mail.id, attempts = mail.attempts,
            error = %failure.message, "sending a mail failed; giving up"),
    }
    outbox::mark_failed(queue.db(), &mail.id, &failure.message, retry_at, now).await
}

/// When to try a mail again after its `attempts`-th failed attempt:
/// [`FIRST_RETRY_MS`], doubling each time; `None` after [`MAX_ATTEMPTS`],
/// or for a permanent failure.
pub fn next_attempt_at(attempts: i64, permanent: bool, now: i64) -> Option<i64> {
    if permanent || attempts >= MAX_ATTEMPTS {
        return None;
    }
    let doublings = attempts.clamp(1, 30) - 1;
    Some(now + FIRST_RETRY_MS * (1i64 << doublings))
}

impl Transport {
    async fn send(&self, mail: &OutboxRow) -> Result<(), SendFailure> {
        match self {
            Transport::Log => {
                tracing::info!(to = %mail.recipient, subject = %mail.subject,
                    "mail (email.mode: log):\n{}", mail.body);
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let message = message(&smtp.from, mail)?;
                smtp.transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|err| SendFailure {
                        permanent: err.is_permanent(),
                        message: err.to_string(),
                    })
            }
        }
    }
}

/// The mail as an RFC 5322 message: plain text, from the configured sender.
fn message(from: &Mailbox, mail: &OutboxRow) -> Result<Message, SendFailure> {
    let permanent = |message: String| SendFailure {
        message,
        permanent: true,
    };
    let to: Mailbox = mail
        .recipient
        .parse()
        .map_err(|_| permanent(format!("`{}` is not a mail address", mail.recipient)))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|err| permanent(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_then_give_up() {
        assert_eq!(next_attempt_at(1, false, 0), Some(10_000));
        assert_eq!(next_attempt_at(2, false, 0), Some(20_000));
        assert_eq!(next_attempt_at(3, false, 5), Some(40_005));
        assert_eq!(next_attempt_at(MAX_ATTEMPTS - 1, false, 0), Some(640_000));
        assert_eq!(next_attempt_at(MAX_ATTEMPTS, false, 0), None);
        assert_eq!(next_attempt_at(1, true, 0), None, "a permanent failure");
    }

    #[test]
    fn a_message_is_plain_text_from_the_sender() {
        let row = OutboxRow {
            id: "mail_1".into(),
            recipient: "ada@example.com".into(),
            subject: "Hello".into(),
            body: "Line one\nhttp://x/verify-email?token=abc\n".into(),
            attempts: 1,
        };
        let from: Mailbox = "Gateway <noreply@example.com>".parse().unwrap();
        let text = String::from_utf8(message(&from, &row).ok().unwrap().formatted()).unwrap();
        assert!(
            text.contains("From: Gateway <noreply@example.com>"),
            "{text}"
        );
        assert!(text.contains("To: ada@example.com"), "{text}");
        assert!(text.contains("Subject: Hello"), "{text}");
        assert!(text.contains("Content-Type: text/plain"), "{text}");
        let bad = OutboxRow {
            recipient: "not an address".into(),
            ..row
        };
        assert!(message(&from, &bad).is_err_and(|f| f.permanent));
    }
}
