//! Every error the API returns, in OpenAI's shape:
//! `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`
//! (see the OpenAI API reference, "Error codes"; `type` values as the
//! official API uses them: `invalid_request_error`, `rate_limit_error`,
//! `server_error`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::BackendError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429/503).
    pub retry_after_s: Option<u64>,
    /// A whole body in another shape (the content filter's, which follows Azure OpenAI).
    pub body_override: Option<Box<serde_json::Value>>,
}

impl ApiError {
    /// 400 about one request parameter (named in `param`, as OpenAI does).
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: Some("invalid_value"),
            retry_after_s: None,
            body_override: None,
        }
    }

    /// The same error with another `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 400 not tied to a single parameter (e.g. malformed JSON body).
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
            retry_after_s: None,
            body_override: None,
        }
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist."),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
            retry_after_s: None,
            body_override: None,
        }
    }

    /// 409: the request conflicts with the current state (code `conflict`).
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: Some("conflict"),
            ..ApiError::bad_request(message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
            retry_after_s: None,
            body_override: None,
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
            retry_after_s: None,
            body_override: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
            retry_after_s: None,
            body_override: None,
        }
    }

    /// 403: a valid key that may not do this (role, model allow-list).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some(code),
            retry_after_s: None,
            body_override: None,
        }
    }

    /// 429 from a rate limit (`code: rate_limit_exceeded`, `type` `requests` or `tokens` as
    /// OpenAI writes it) or a budget (`insufficient_quota` for both).
    pub fn too_many_requests(
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
        retry_after_s: Option<u64>,
    ) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            kind,
            param: None,
            code: Some(code),
            retry_after_s: retry_after_s.map(|s| s.max(1)),
            body_override: None,
        }
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
            retry_after_s: None,
            body_override: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
            retry_after_s: None,
            body_override: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some("service_unavailable"),
            retry_after_s: None,
            body_override: None,
        }
    }

    /// 400 from the input guardrails: `body` is [`hearth_guard::Verdict::error_body`].
    pub fn content_filter(body: serde_json::Value) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("content filter")
                .to_string(),
            kind: "invalid_request_error",
            param: Some("prompt".into()),
            code: Some("content_filter"),
            retry_after_s: None,
            body_override: Some(Box::new(body)),
        }
    }

    /// The JSON body, also used for errors inside an SSE stream.
    pub fn body(&self) -> serde_json::Value {
        if let Some(b) = &self.body_override {
            return (**b).clone();
        }
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        let message = e.to_string();
        match e {
            BackendError::UnknownModel(m) => ApiError::model_not_found(&m),
            BackendError::QueueFull { retry_after_s } => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message,
                kind: "rate_limit_error",
                param: None,
                code: Some("queue_full"),
                retry_after_s: Some(retry_after_s.max(1)),
                body_override: None,
            },
            BackendError::ContextOverflow { .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message,
                kind: "invalid_request_error",
                param: Some("messages".into()),
                code: Some("context_length_exceeded"),
                retry_after_s: None,
                body_override: None,
            },
            BackendError::BadRequest(_) => ApiError::bad_request(message),
            BackendError::Internal(_) => ApiError::internal(message),
        }
    }
}

/// Marks the response of a request that a local model's full queue refused
/// ([`BackendError::QueueFull`]), so that [`crate::upstream::intercept`] can send it to the
/// model's saturation fallback instead (a 429 of the rate limits has no such mark).
#[derive(Clone, Copy, Debug)]
pub struct QueueFull;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.code == Some("queue_full") {
            resp.extensions_mut().insert(QueueFull);
        }
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
