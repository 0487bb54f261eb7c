//! An object read as an HTTP response, the same for the local API and the
//! OCI mirror: 200, or 206 with `Content-Range` for a ranged read, the
//! length of what is sent, and the bytes streamed as their stripes arrive;
//! and the `Content-Range` a 416 carries.

use super::ObjectRead;
use axum::body::Body;
use axum::response::Response;
use futures_util::stream;
use http::{HeaderName, HeaderValue, StatusCode, header};

impl ObjectRead {
    /// The response for this read, with `extra` headers.
    pub fn into_response(
        self,
        ranged: bool,
        extra: &[(HeaderName, String)],
    ) -> Result<Response, http::Error> {
        let mut builder = Response::builder()
            .status(if ranged {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            })
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, self.end - self.start)
            .header(header::ACCEPT_RANGES, "bytes");
        if ranged {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!(
                    "bytes {}-{}/{}",
                    self.start,
                    self.end.saturating_sub(1),
                    self.spec.size
                ),
            );
        }
        for (k, v) in extra {
            builder = builder.header(k, v);
        }
        let body = stream::unfold(self.body, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item, rx))
        });
        builder.body(Body::from_stream(body))
    }
}

/// `Content-Range: bytes */SIZE`, which a 416 names the size with.
pub fn unsatisfiable(size: u64) -> (HeaderName, HeaderValue) {
    (
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes */{size}"))
            .unwrap_or_else(|_| HeaderValue::from_static("bytes */0")),
    )
}
