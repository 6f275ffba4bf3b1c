//! Clients of the outside services the use cases call: the payment gateway
//! mail and WhatsApp. (Postgres and Redis adapters live in the store crate.)

pub mod mail;
pub mod midtrans;
pub mod whatsapp;
