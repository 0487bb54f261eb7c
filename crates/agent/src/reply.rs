//! The shapes of the agent's own HTTP answers that are not a stripe or an
//! object: an error as `{"error": "..."}` with its status, a JSON value,
//! and the fast 503 a refused peer retries elsewhere.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// An error answer: `status` with `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = format!("{{\"error\":{:?}}}\n", message.into());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `value` as a JSON answer (500 if it will not encode).
pub fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The 503 of a node that takes no more work now (its inbound limit is
/// full, or it is draining), with `Retry-After: 1`.
pub fn busy() -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "busy");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
