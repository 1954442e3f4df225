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
            let mut err = ApiError::bad_request(format!(
                "Could not read the request body: {}",
                e.body_text()
            ));
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                err.status = status;
                err.code = Some("request_too_large");
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
