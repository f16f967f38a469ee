//! Our own JSON extractor: a malformed body becomes an OpenAI-shaped 400 that
//! names the field path, and an oversize one a 413, instead of axum's plain
//! text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use switchyard_api::ErrorKind;

use crate::error::ApiError;

pub struct OpenAiJson<T>(pub T);

impl<S, T> FromRequest<S> for OpenAiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse(&bytes).map(OpenAiJson)
    }
}

/// The body unparsed (within the size limit), for routes that look at it
/// before deciding how to parse it: an upstream gets it as it came.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            body_error(
                rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                &rejection,
            )
        })?;
        Ok(RawBody(bytes))
    }
}

/// A body read whole, up to `limit` bytes, as [`RawBody`] reads it.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(body_error(e.is::<http_body_util::LengthLimitError>(), &e)),
    }
}

fn body_error(too_large: bool, cause: &dyn std::fmt::Display) -> ApiError {
    if too_large {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            "The request body is larger than this server accepts.",
        )
        .code("request_too_large")
    } else {
        ApiError::new(
            ErrorKind::InvalidRequest,
            format!("Could not read the request body: {cause}"),
        )
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "The request body is empty; a JSON object is expected.",
        )
        .code("invalid_json"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (path != ".").then_some(path);
        let message = match &param {
            Some(p) => format!("Invalid value for `{p}`: {inner}"),
            None => format!("The request body is not valid JSON for this endpoint: {inner}"),
        };
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else {
            "invalid_type"
        };
        ApiError {
            param,
            ..ApiError::new(ErrorKind::InvalidRequest, message).code(code)
        }
    })
}
