//! HTTP errors with a reason in the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relaycast_sfu::SfuError;
use tracing::{debug, warn};

/// An HTTP error: status plus a human-readable reason.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Reason sent as the plain-text body.
    pub reason: String,
}

impl ApiError {
    /// An error with this status and reason.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError { status, reason: reason.into() }
    }

    /// 400 Bad Request.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// 404 Not Found.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }
}

impl From<SfuError> for ApiError {
    fn from(e: SfuError) -> Self {
        let status = match &e {
            SfuError::BadSdp(_) | SfuError::BadCandidate(_) => StatusCode::BAD_REQUEST,
            SfuError::StreamNotFound | SfuError::SessionNotFound => StatusCode::NOT_FOUND,
            SfuError::StreamBusy => StatusCode::CONFLICT,
            SfuError::Codec(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SfuError::Full | SfuError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            SfuError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(status = %self.status, reason = %self.reason, "request failed");
        } else {
            debug!(status = %self.status, reason = %self.reason, "request refused");
        }
        let mut resp = (self.status, format!("{}\n", self.reason)).into_response();
        let h = resp.headers_mut();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
