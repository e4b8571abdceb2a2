//! The one error type shared by the dashboard's server functions and the REST API.
//!
//! Every variant maps to exactly one HTTP status in [`AppError::status`], and
//! to OpenAI's error shape `{"error":{"message","type","param","code"}}` on the wire.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// An error a caller can act on. Internal details never leave the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppError {
    /// The input is invalid; `field` names the offending parameter.
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    /// No valid credentials: missing session, bad password, unknown key.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Not allowed, for a reason a client may branch on (`code`), such as
    /// `model_not_allowed`, `key_expired` or `user_blocked`.
    #[error("{message}")]
    Denied { message: String, code: String },
    /// The resource does not exist (or belongs to someone else).
    #[error("{0}")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// Throttled; try again after the given number of seconds.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// Not enough credit (or budget) for the request; `code` says which.
    #[error("{message}")]
    PaymentRequired { message: String, code: String },
    /// The request body is over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body is not in a format the route reads (not JSON).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A request with this `Idempotency-Key` is still being answered.
    #[error("{0}")]
    IdempotencyInFlight(String),
    /// This `Idempotency-Key` was used with a different request body.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// No such model, or no provider offers it.
    #[error("{0}")]
    ModelNotFound(String),
    /// The upstream provider refused the request (a 4xx), passed on as is.
    #[error("{message}")]
    Upstream {
        status: u16,
        message: String,
        code: Option<String>,
    },
    /// The upstream provider failed (5xx, connection, invalid response).
    #[error("{0}")]
    BadGateway(String),
    /// The upstream provider did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A dependency (the database) is down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the details are in the server log.
    #[error("internal error")]
    Internal,
    /// The call itself failed (network, encoding) before reaching our code.
    #[error("request failed: {0}")]
    Transport(String),
}

impl AppError {
    /// A 403 with a machine-readable code.
    pub fn denied(code: &str, message: impl Into<String>) -> Self {
        Self::Denied {
            message: message.into(),
            code: code.to_string(),
        }
    }

    /// A validation error about one named field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// The HTTP status for this error: the single place where that mapping lives.
    pub fn status(&self) -> u16 {
        match self {
            Self::Validation { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) | Self::Denied { .. } => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::TooManyRequests { .. } => 429,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::IdempotencyInFlight(_) => 409,
            Self::IdempotencyMismatch(_) => 422,
            Self::PaymentRequired { .. } => 402,
            Self::ModelNotFound(_) => 404,
            Self::Upstream { status, .. } => *status,
            Self::BadGateway(_) => 502,
            Self::GatewayTimeout(_) => 504,
            Self::Unavailable(_) => 503,
            Self::Internal | Self::Transport(_) => 500,
        }
    }

    /// OpenAI's `error.type` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Validation { .. }
            | Self::Conflict(_)
            | Self::NotFound(_)
            | Self::PayloadTooLarge(_)
            | Self::UnsupportedMediaType(_)
            | Self::IdempotencyInFlight(_)
            | Self::IdempotencyMismatch(_)
            | Self::ModelNotFound(_) => "invalid_request_error",
            Self::PaymentRequired { .. } => "insufficient_quota",
            Self::Upstream { status: 401, .. } => "authentication_error",
            Self::Upstream { status: 403, .. } => "permission_error",
            Self::Upstream { status: 429, .. } => "rate_limit_error",
            Self::Upstream { .. } => "invalid_request_error",
            Self::BadGateway(_) | Self::GatewayTimeout(_) => "api_error",
            Self::Unauthorized(_) => "authentication_error",
            Self::Forbidden(_) | Self::Denied { .. } => "permission_error",
            Self::TooManyRequests { .. } => "rate_limit_error",
            Self::Unavailable(_) | Self::Internal | Self::Transport(_) => "api_error",
        }
    }

    /// OpenAI's `error.code` for this error.
    pub fn code(&self) -> &str {
        match self {
            Self::PayloadTooLarge(_) => "request_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::IdempotencyInFlight(_) => "idempotency_key_in_use",
            Self::IdempotencyMismatch(_) => "idempotency_key_reused",
            Self::PaymentRequired { code, .. } => code,
            Self::ModelNotFound(_) => "model_not_found",
            Self::Upstream { code, .. } => code.as_deref().unwrap_or("upstream_error"),
            Self::BadGateway(_) => "upstream_error",
            Self::GatewayTimeout(_) => "upstream_timeout",
            Self::Validation { .. } => "invalid_request",
            Self::Unauthorized(_) => "invalid_api_key",
            Self::Forbidden(_) => "forbidden",
            Self::Denied { code, .. } => code,
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::TooManyRequests { .. } => "rate_limit_exceeded",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal | Self::Transport(_) => "internal_error",
        }
    }

    /// The parameter the error is about, if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Validation { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The error's body on the wire.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: self.error_type().to_string(),
                param: self.param().map(str::to_string),
                code: self.code().to_string(),
            },
        }
    }

    /// The error in OpenAI's JSON shape.
    pub fn to_openai_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }

    /// Anthropic's `error.type` for this error, by its status as Anthropic
    /// documents them (another 4xx is an `invalid_request_error`).
    pub fn anthropic_type(&self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
    pub fn to_anthropic_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "error": {"type": self.anthropic_type(), "message": self.to_string()},
        })
    }
}

/// Whose API shape an error takes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

/// Every error, in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `insufficient_quota`, `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code, such as `invalid_api_key`,
    /// `insufficient_credits`, `budget_exceeded` or `model_not_allowed`.
    pub code: String,
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
mod server {
    use super::{AppError, ErrorShape};
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};

    impl IntoResponse for AppError {
        fn into_response(self) -> Response {
            self.into_response_shaped(ErrorShape::OpenAi)
        }
    }

    impl AppError {
        /// The response in the caller's API shape, with `Retry-After` when throttled.
        pub fn into_response_shaped(self, shape: ErrorShape) -> Response {
            let status =
                StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = match shape {
                ErrorShape::OpenAi => self.to_openai_json(),
                ErrorShape::Anthropic => self.to_anthropic_json(),
            };
            let mut response = (status, axum::Json(body)).into_response();
            if let AppError::TooManyRequests {
                retry_after_secs, ..
            } = self
            {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            response
        }
    }

    impl From<sqlx::Error> for AppError {
        fn from(err: sqlx::Error) -> Self {
            match err {
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                    tracing::error!(error = %err, "database unavailable");
                    AppError::Unavailable("the database is unavailable".into())
                }
                other => {
                    tracing::error!(error = %other, "database error");
                    AppError::Internal
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_openai_shape_and_a_status() {
        let err = AppError::invalid("email", "Enter a valid email address.");
        let json = err.to_openai_json();
        assert_eq!(err.status(), 400);
        assert_eq!(json["error"]["param"], "email");
        assert_eq!(json["error"]["message"], "Enter a valid email address.");
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert_eq!(
            AppError::Internal.to_openai_json()["error"]["message"],
            "internal error"
        );
        assert_eq!(AppError::Unauthorized("x".into()).status(), 401);
    }

    #[test]
    fn round_trips_through_the_server_fn_encoding() {
        let err = AppError::TooManyRequests {
            message: "slow down".into(),
            retry_after_secs: 30,
        };
        let bytes = err.ser();
        assert_eq!(AppError::de(bytes), err);
    }
}
