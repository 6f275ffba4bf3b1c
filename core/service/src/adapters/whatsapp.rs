//! WhatsApp messages through an HTTP provider speaking the shape of Meta's
//! WhatsApp Cloud API (`POST …/{phone-number-id}/messages`, bearer token,
//! `{"messaging_product": "whatsapp", "to", "type": "text", "text": {"body"}}`),
//! which the common BSPs accept too. Only the worker sends; a failure leaves
//! the outbox row to be retried.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use ticketing_domain::Error;

#[derive(Debug, Clone)]
pub struct WhatsAppSettings {
    /// The messages endpoint, e.g. `https://graph.facebook.com/v20.0/PHONE_NUMBER_ID/messages`.
    pub url: String,
    pub token: SecretString,
}

#[derive(Clone)]
pub struct WhatsApp {
    http: reqwest::Client,
    settings: WhatsAppSettings,
}

impl WhatsApp {
    pub fn new(settings: WhatsAppSettings, timeout: Duration) -> WhatsApp {
        let http = reqwest::Client::builder().timeout(timeout).build().expect("a TLS backend is compiled in");
        WhatsApp { http, settings }
    }

    /// Sends a text to an E.164 number.
    pub async fn send_text(&self, to: &str, body: &str) -> Result<(), Error> {
        let message = serde_json::json!({
            "messaging_product": "whatsapp",
            // The Cloud API takes the number without its `+`.
            "to": to.trim_start_matches('+'),
            "type": "text",
            "text": { "preview_url": false, "body": body },
        });
        let started = std::time::Instant::now();
        let response = self
            .http
            .post(&self.settings.url)
            .bearer_auth(self.settings.token.expose_secret())
            .json(&message)
            .send()
            .await
            .map_err(|e| Error::internal(format!("WhatsApp: {}", e.without_url())));
        let outcome = match &response {
            Ok(r) if r.status().is_success() => "ok",
            _ => "error",
        };
        metrics::histogram!("ticketing_whatsapp_send_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        let response = response?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        Err(Error::internal(format!("WhatsApp answered {status}: {text}")))
    }
}
