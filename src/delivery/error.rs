//! How delivering a report can fail.

/// The report could not be delivered; `temporary` when a later retry may succeed (the mail
/// server is down or refuses for now).
#[derive(Debug, thiserror::Error)]
#[error("delivery: {message}")]
pub struct DeliveryError {
    pub message: String,
    pub temporary: bool,
}
