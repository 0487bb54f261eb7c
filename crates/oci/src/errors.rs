//! Errors as the distribution spec writes them: an HTTP status and a JSON
//! body `{"errors":[{"code","message","detail"}]}` that clients such as
//! containerd show to their users.

use crate::reference::{RefError, RouteError};
use serde::Serialize;

/// The spec's error codes this mirror uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The blob is not known to the registry.
    BlobUnknown,
    /// The manifest is not known to the registry.
    ManifestUnknown,
    /// The repository is not known to the registry.
    NameUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Invalid digest.
    DigestInvalid,
    /// Invalid tag or reference.
    ManifestInvalid,
    /// The operation is not offered here.
    Unsupported,
    /// Authentication is required, or the credentials were refused.
    Unauthorized,
    /// Access was denied.
    Denied,
    /// The origin is rate limiting.
    Toomanyrequests,
    /// The range cannot be served (not a spec code; used with 416).
    RangeInvalid,
    /// The registry is not mirrored here, or the origin failed (not a spec
    /// code; used with 4xx and 5xx statuses the spec leaves open).
    Unavailable,
}

/// One error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciError {
    /// HTTP status.
    pub status: u16,
    /// Spec code.
    pub code: ErrorCode,
    /// Human text.
    pub message: String,
}

#[derive(Serialize)]
struct Entry<'a> {
    code: ErrorCode,
    message: &'a str,
    detail: serde_json::Value,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

impl OciError {
    /// An error with a status, code and message.
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> OciError {
        OciError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let body = Body {
            errors: [Entry {
                code: self.code,
                message: &self.message,
                detail: serde_json::Value::Null,
            }],
        };
        serde_json::to_string(&body).unwrap_or_else(|_| String::from("{\"errors\":[]}"))
    }
}

impl From<RefError> for OciError {
    fn from(e: RefError) -> OciError {
        let code = match e {
            RefError::Name(_) => ErrorCode::NameInvalid,
            RefError::Tag(_) => ErrorCode::ManifestInvalid,
            RefError::Digest(_) => ErrorCode::DigestInvalid,
        };
        OciError::new(400, code, e.to_string())
    }
}

impl From<RouteError> for OciError {
    fn from(e: RouteError) -> OciError {
        match e {
            RouteError::Bad(r) => r.into(),
            RouteError::NotFound(p) => OciError::new(
                404,
                ErrorCode::Unsupported,
                format!("not a distribution API path: {p:?}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_spec_json() {
        let e = OciError::from(crate::reference::route("/v2/a/blobs/sha256:1").unwrap_err());
        assert_eq!(e.status, 400);
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "DIGEST_INVALID");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("sha256:1")
        );
        let e = OciError::new(429, ErrorCode::Toomanyrequests, "slow down");
        assert!(e.body().contains("\"TOOMANYREQUESTS\""));
    }
}
