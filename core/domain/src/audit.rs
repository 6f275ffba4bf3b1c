//! The audit trail: every change an organizer or admin makes to money or
//! access, named once here.

crate::vocabulary! {
    pub enum AuditAction {
        EventUpdated = "event.updated",
        EventPublished = "event.published",
        EventCancelled = "event.cancelled",
        CategoryCreated = "category.created",
        CategoryUpdated = "category.updated",
        ScannerCreated = "scanner.created",
        ScannerRevoked = "scanner.revoked",
        RefundRequested = "refund.requested",
        RefundCompletedManually = "refund.completed_manually",
        PaymentApproved = "payment.approved",
        PaymentDenied = "payment.denied",
    }
}
