//! The buyer's confirmation, by e-mail and (for buyers who left a phone
//! number) WhatsApp, queued when an order is paid.

use scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use ticketing_domain::Error;
use ticketing_store::{events, orders as order_store, users};
use uuid::Uuid;

use super::{Job, JobKind};
use crate::{AppState, adapters::mail::Mail};

/// E-mails the buyer their tickets.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendOrderConfirmation {
    pub order_id: Uuid,
}

impl Job for SendOrderConfirmation {
    const KIND: JobKind = JobKind::OrderConfirmation;

    async fn run(&self, state: &AppState) -> Result<(), Error> {
        send_confirmation(state, self.order_id).await
    }
}

/// Sends the buyer their tickets on WhatsApp.
#[derive(Debug, Serialize, Deserialize)]
pub struct SendOrderWhatsApp {
    pub order_id: Uuid,
}

impl Job for SendOrderWhatsApp {
    const KIND: JobKind = JobKind::OrderWhatsApp;

    async fn run(&self, state: &AppState) -> Result<(), Error> {
        send_whatsapp(state, self.order_id).await
    }
}

/// What a confirmation says, by e-mail or WhatsApp.
struct Confirmation {
    email: String,
    phone: Option<String>,
    subject: String,
    body: String,
}

/// The buyer's tickets and their codes, from the primary (the order was
/// just paid).
async fn confirmation(state: &AppState, order_id: Uuid) -> Result<Confirmation, Error> {
    let (order, tickets, event, user) = state
        .db
        .read(|conn| {
            async move {
                let order = order_store::find_order(conn, order_id).await?.ok_or_else(|| Error::not_found("order"))?;
                let tickets = order_store::tickets_of_order(conn, order_id).await?;
                let event = events::find_event(conn, order.order.event_id).await?;
                let user = users::find_user(conn, order.order.user_id).await?;
                Ok((order, tickets, event, user))
            }
            .scope_boxed()
        })
        .await?;
    let user = user.ok_or_else(|| Error::internal("order without a user"))?;
    let event_name = event.map_or_else(|| "your event".to_owned(), |e| e.details.name);
    let total = order.order.total();
    let mut body = format!(
        "Thank you for your order {order_id}.\n\nEvent: {event_name}\nTotal: {} {}\n\nYour tickets (show the code at the gate):\n",
        total.currency_code, total.units
    );
    for ticket in &tickets {
        body.push_str(&format!("\n- Ticket {}\n  Code: {}\n", ticket.id, ticket.code));
    }
    Ok(Confirmation { email: user.email, phone: user.phone, subject: format!("Your tickets for {event_name}"), body })
}

async fn send_confirmation(state: &AppState, order_id: Uuid) -> Result<(), Error> {
    let Some(mailer) = &state.mailer else {
        return Err(Error::internal("SMTP_URL is not configured; the e-mail waits in the outbox"));
    };
    let message = confirmation(state, order_id).await?;
    mailer.send(Mail { to: message.email, subject: message.subject, body: message.body, message_id: None }).await
}

/// Only buyers who left a phone number get one; for the others the job is done.
async fn send_whatsapp(state: &AppState, order_id: Uuid) -> Result<(), Error> {
    let Some(whatsapp) = &state.whatsapp else {
        return Err(Error::internal("WHATSAPP_API_URL is not configured; the message waits in the outbox"));
    };
    let message = confirmation(state, order_id).await?;
    match message.phone {
        Some(phone) => whatsapp.send_text(&phone, &format!("{}\n\n{}", message.subject, message.body)).await,
        None => Ok(()),
    }
}
