//! The OpenAI error body: `{"error":{"message","type","param","code"}}`.

use serde::{Deserialize, Serialize};

/// The broad class of an error; decides the `type` field and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or asks for something unsupported.
    InvalidRequest,
    /// 401
    Authentication,
    /// 403
    PermissionDenied,
    /// 404: unknown model or route.
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 409: the thing exists already, or cannot change in its current state.
    Conflict,
    /// 502: an upstream provider failed or could not be reached.
    Upstream,
    /// 413: body over the configured limit.
    PayloadTooLarge,
    /// 429: a tenant's rate limit or quota.
    RateLimited,
    /// 503: the server is busy or a model is not ready.
    Overloaded,
    /// 504: the request ran past its time limit.
    Timeout,
    /// 500: a bug or an engine failure.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::Upstream => 502,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Overloaded => 503,
            Self::Timeout => 504,
            Self::Internal => 500,
        }
    }

    /// The `type` string OpenAI uses for this class.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::InvalidRequest | Self::NotFound | Self::MethodNotAllowed | Self::Conflict | Self::PayloadTooLarge => {
                "invalid_request_error"
            }
            Self::Authentication => "authentication_error",
            Self::PermissionDenied => "permission_error",
            Self::RateLimited => "rate_limit_error",
            Self::Overloaded => "overloaded_error",
            Self::Timeout => "timeout_error",
            Self::Internal => "server_error",
            Self::Upstream => "upstream_error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(kind: ErrorKind, message: impl Into<String>, param: Option<String>, code: Option<String>) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.type_name().to_string(),
                param,
                code,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_openai_shape() {
        let body = ErrorBody::new(
            ErrorKind::NotFound,
            "no such model",
            Some("model".into()),
            Some("model_not_found".into()),
        );
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["message"], "no such model");
        let plain = ErrorBody::new(ErrorKind::Internal, "x", None, None);
        let v = serde_json::to_value(&plain).unwrap_or_default();
        assert!(v["error"]["param"].is_null() && v["error"]["code"].is_null());
        assert_eq!(ErrorKind::Overloaded.status(), 503);
    }
}
