//! Outgoing e-mail over SMTP (lettre). `SMTP_URL` takes lettre's connection
//! URLs: `smtp://host:port` (plain, for a local relay), `smtp://user:pass@host:587?tls=required`
//! (STARTTLS) or `smtps://…:465`. Sending happens only in the worker; a
//! failure leaves the outbox row to be retried.

use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::header::ContentType};
use ticketing_domain::Error;

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    /// The whole send's deadline. lettre's own timeout bounds only the
    /// connect: a server that accepts and then stops answering would hold
    /// the send, and the outbox batch waiting on it, forever (lettre#1027).
    deadline: Duration,
}

pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The same id for a repeat of one notice, so mail clients show it once.
    pub message_id: Option<String>,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str, timeout: Duration) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("SMTP_URL: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|e| format!("MAIL_FROM: {e}"))?;
        Ok(Mailer { transport, from, deadline: timeout })
    }

    pub async fn send(&self, mail: Mail) -> Result<(), Error> {
        let to = mail.to.parse().map_err(|e| Error::internal(format!("recipient {:?}: {e}", mail.to)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .message_id(mail.message_id)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)
            .map_err(Error::internal)?;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.deadline, self.transport.send(message)).await {
            Ok(sent) => sent.map(drop).map_err(|e| format!("SMTP: {e}")),
            Err(_) => Err(format!("SMTP: no answer within {:?}", self.deadline)),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!("ticketing_smtp_send_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result.map_err(Error::internal)
    }
}
