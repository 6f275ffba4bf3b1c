//! Ticket issuing: one ticket per seat of a paid order, each with a code
//! signed by its event's key (format: `ticketing_domain::ticket_code`).

use rand::RngCore;
use ticketing_domain::{
    Error,
    ticket_code::{EventKey, TicketClaims},
};
use ticketing_store::{
    Conn, StoreError,
    orders::OrderWithItems,
    payments::{self as store, EventKeyRow, NewTicket},
};
use uuid::Uuid;

use crate::config::MasterKey;

/// The event's signing key, made on first use. Concurrent first issuers of
/// one event agree on one key: the insert that loses the race reads the
/// winner's.
pub async fn event_key(conn: &mut Conn, master: &MasterKey, event_id: Uuid) -> Result<EventKey, StoreError> {
    let row = match store::find_event_key(conn, event_id).await? {
        Some(row) => row,
        None => {
            let mut seed = [0u8; 32];
            let mut nonce = [0u8; 12];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            rand::rngs::OsRng.fill_bytes(&mut nonce);
            let key = EventKey::from_seed(seed);
            let candidate = EventKeyRow {
                event_id,
                public_key: key.public_key().to_vec(),
                sealed_private_key: key.seal(&master.0, nonce),
            };
            store::event_key_or_insert(conn, &candidate).await?
        }
    };
    Ok(open_event_key(master, event_id, &row.sealed_private_key)?)
}

/// An event's sealed signing key, opened; an error (not a missing key) when
/// the configured master key does not open it.
pub fn open_event_key(master: &MasterKey, event_id: Uuid, sealed: &[u8]) -> Result<EventKey, Error> {
    EventKey::unseal(&master.0, sealed).ok_or_else(|| {
        Error::internal(format!("the signing key of event {event_id} does not open with TICKET_KEY_ENCRYPTION_KEY"))
    })
}

/// Issues the tickets of `order`; call it in the transaction that marks the
/// order paid, so an order is paid exactly when it has its tickets.
pub async fn issue(conn: &mut Conn, master: &MasterKey, order: &OrderWithItems) -> Result<usize, StoreError> {
    let event_id = order.order.event_id;
    let key = event_key(conn, master, event_id).await?;
    let tickets: Vec<NewTicket> = order
        .items
        .iter()
        .flat_map(|item| (0..item.quantity).map(move |_| item.ticket_category_id))
        .map(|ticket_category_id| {
            let id = Uuid::now_v7();
            NewTicket { id, ticket_category_id, code: key.sign(TicketClaims { ticket_id: id, event_id }) }
        })
        .collect();
    let issued = tickets.len();
    store::insert_tickets(conn, order.order.id, event_id, tickets).await?;
    metrics::counter!("ticketing_tickets_issued_total").increment(issued as u64);
    Ok(issued)
}
