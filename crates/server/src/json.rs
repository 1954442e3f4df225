//! Request-body extractor whose errors are OpenAI-shaped and name the
//! offending parameter (axum's own `Json` answers plain text).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            let mut err = body_error(&e, 0);
            if err.status != StatusCode::REQUEST_TIMEOUT {
                err = ApiError::bad_request(format!(
                    "Could not read the request body: {}",
                    e.body_text()
                ));
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    err.status = status;
                    err.code = Some("request_too_large");
                }
            }
            err
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Deserialize `bytes`, naming the JSON path of the first bad field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(format!(
                    "We could not parse the JSON body of your request ({inner}). \
                     The body must be a valid JSON object."
                )));
            }
            let msg = inner.to_string();
            // "missing field `model` at line 1 column 2": the path is the
            // parent object; the parameter is the missing field.
            let param = match msg
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                Some(field) if path == "." => field.to_string(),
                Some(field) => format!("{path}.{field}"),
                None if path == "." => String::new(),
                None => path,
            };
            if param.is_empty() {
                Err(ApiError::bad_request(format!(
                    "Invalid request body: {msg}"
                )))
            } else {
                Err(ApiError::invalid_param(
                    param.clone(),
                    format!("Invalid value for `{param}`: {msg}"),
                ))
            }
        }
    }
}

/// Query-string extractor whose errors are OpenAI-shaped (axum's `Query` answers plain text).
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| QueryParams(q))
            .map_err(|e| ApiError::bad_request(format!("Bad query string: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct R {
        model: String,
        temperature: Option<f32>,
        inner: Option<Inner>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        k: u32,
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = parse::<R>(br#"{"model": "m", "temperature": "hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = parse::<R>(br#"{"temperature": 1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse::<R>(br#"{"model": "m", "inner": {}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inner.k"));
        let e = parse::<R>(br#"{"model": "m", "#).unwrap_err();
        assert_eq!(e.param, None);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("could not parse the JSON"));
    }
}

/// A request body that fails once `limit` has passed since the request came in, so a client
/// that sends its body slowly (or stops half-way) cannot hold a connection and a buffer
/// forever. Installed on every request by [`crate::api`]; whoever reads the body (the
/// extractors, the audit's capture, the upstream relay) maps the failure with [`body_error`].
pub struct DeadlineBody {
    inner: axum::body::Body,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: std::time::Duration,
}

impl DeadlineBody {
    pub fn new(inner: axum::body::Body, limit: std::time::Duration) -> Self {
        DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimedOut(pub std::time::Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::future::Future as _;
        if self.inner.is_end_stream() {
            return std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(limit)))));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e` (or what caused it) is a [`BodyTimedOut`].
fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<std::time::Duration> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<BodyTimedOut>() {
            return Some(t.0);
        }
        cur = err.source();
    }
    None
}

/// The API error for a body that could not be read: 408 when it came too slowly, 413 when it
/// is larger than `max_bytes`, else 400.
pub fn body_error(e: &(dyn std::error::Error + 'static), max_bytes: usize) -> ApiError {
    if let Some(limit) = timed_out(e) {
        let mut err = ApiError::bad_request(format!(
            "The request body was not received within {} s.",
            limit.as_secs()
        ));
        err.status = StatusCode::REQUEST_TIMEOUT;
        err.code = Some("request_timeout");
        return err;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            let mut too_large = ApiError::payload_too_large(format!(
                "The request body is larger than the limit of {max_bytes} bytes."
            ));
            too_large.code = Some("request_too_large");
            return too_large;
        }
        cur = err.source();
    }
    ApiError::bad_request(format!("Could not read the request body: {e}"))
}
