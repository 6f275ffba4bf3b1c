//! Sales reports: requested, built later by the worker, then downloadable.

crate::vocabulary! {
    pub enum ReportStatus {
        Pending = "pending",
        Ready = "ready",
        /// Its job was dead-lettered.
        Failed = "failed",
    }
}
