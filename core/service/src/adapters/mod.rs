//! Clients of the outside services the use cases call: the payment gateway
//! and mail. (Postgres and Redis adapters live in the store crate.)

pub mod mail;
pub mod midtrans;
