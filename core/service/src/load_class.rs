//! How overload control treats a call. Each route and service declares its
//! class where it is declared (the REST router, [`crate::grpc::Services`]);
//! the facade's limiter only reads it.

ticketing_domain::vocabulary! {
    /// `ticketing_shed_total{class}`.
    pub enum LoadClass {
        /// Public catalog reads: cacheable, in a bulkhead of their own.
        Browse = "browse",
        Standard = "standard",
        /// The gates and payment notifications: shed last.
        Critical = "critical",
    }
}
