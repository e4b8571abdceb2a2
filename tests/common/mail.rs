//! The mail side of the harness: an in-process SMTP sink the gateway sends
//! to, and helpers to wait for mail and read the links in it.

use std::time::{Duration, Instant};

use llm_gateway::config::{Config, EmailMode};
use llm_gateway::mock::smtp::{self, CaughtMail, SmtpSink};

/// Starts an SMTP sink on an ephemeral port.
pub async fn start_sink() -> SmtpSink {
    smtp::start("127.0.0.1:0")
        .await
        .expect("the SMTP sink starts")
}

/// Sends the gateway's mail to `sink`.
pub fn use_sink(config: &mut Config, sink: &SmtpSink) {
    config.email.mode = EmailMode::Smtp;
    config.email.smtp_url = Some(sink.url());
    config.email.from = Some("llm-gateway <noreply@example.com>".into());
}

/// Waits (up to 15 s) until `sink` holds `count` mails to `to` whose
/// subject contains `subject`; returns them, oldest first.
pub async fn wait_for_mail(
    sink: &SmtpSink,
    to: &str,
    subject: &str,
    count: usize,
) -> Vec<CaughtMail> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mails = mails_about(sink, to, subject);
        if mails.len() >= count {
            return mails;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {count} mail(s) to {to} about {subject:?}; caught: {:#?}",
            sink.messages()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The mails to `to` whose subject contains `subject`.
pub fn mails_about(sink: &SmtpSink, to: &str, subject: &str) -> Vec<CaughtMail> {
    sink.messages_to(to)
        .into_iter()
        .filter(|mail| mail.subject.contains(subject))
        .collect()
}

/// Waits a few of the sender's rounds and checks that `to` still has
/// exactly `count` mails about `subject`.
pub async fn assert_no_more_mail(sink: &SmtpSink, to: &str, subject: &str, count: usize) {
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mails = mails_about(sink, to, subject);
    assert_eq!(
        mails.len(),
        count,
        "mails to {to} about {subject:?}: {mails:#?}"
    );
}

/// The link's path in a mail (`/verify-email?token=…`), and its token.
pub fn link_in(mail: &CaughtMail) -> (String, String) {
    let start = mail.text.find("http").expect("a link in the mail");
    let url: String = mail.text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let token = url.split("token=").nth(1).expect("a token in the link");
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    (path, token.to_string())
}
