//! Why an upstream call failed, read from each provider's error bodies, and
//! what the caller is told (an [`AppError`]).

use serde_json::Value;

use crate::error::AppError;

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The provider answered with an error status.
    #[error("{message}")]
    Status {
        status: u16,
        message: String,
        code: Option<String>,
    },
    /// No answer in time.
    #[error("the upstream provider timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("could not reach the upstream provider: {0}")]
    Connect(String),
    /// The provider answered something we cannot read.
    #[error("the upstream provider sent an invalid response: {0}")]
    Protocol(String),
    /// The provider closed its answer (a stream, or an empty body) before
    /// finishing it.
    #[error("the upstream provider ended its answer before finishing it")]
    Truncated,
}

impl UpstreamError {
    /// Whether trying again may help: 429, 5xx and connection errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Connect(_) | Self::Timeout | Self::Truncated => true,
            Self::Protocol(_) => false,
        }
    }

    /// Whether the provider refused the gateway's own credentials (401): the
    /// operator's problem, not the client's, and another provider may serve.
    pub fn is_gateway_credentials(&self) -> bool {
        matches!(self, Self::Status { status: 401, .. })
    }

    /// Classifies a reqwest failure.
    pub fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else if err.is_decode() && !broke_in_transit(&err) {
            Self::Protocol(err.to_string())
        } else {
            // Never include the URL: it may carry an API key (Gemini).
            Self::Connect(err.without_url().to_string())
        }
    }
}

/// Whether a decode error is a connection that broke: reqwest reports every
/// failure while streaming a body as one, with the transport's error inside.
fn broke_in_transit(err: &reqwest::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_body)
}

/// Reads a provider's error body: OpenAI, Anthropic and Gemini all use `error.message`.
pub(crate) fn error_from_body(status: u16, text: &str) -> UpstreamError {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    error_from_json(status, parsed.as_ref(), text)
}

/// An error that an upstream reported inside a 200 (OpenRouter and other
/// aggregators do, in a body or a stream chunk): its numeric `code` is the
/// status when it is one, else 502.
pub(crate) fn in_band_error(body: &Value) -> UpstreamError {
    let status = body
        .pointer("/error/code")
        .and_then(Value::as_u64)
        .filter(|code| (400..=599).contains(code))
        .map_or(502, |code| code as u16);
    error_from_json(status, Some(body), "upstream error")
}

/// The error in a parsed body; `text` is quoted when it has no message. A
/// 401's message is never kept: providers quote part of the key they refused.
fn error_from_json(status: u16, parsed: Option<&Value>, text: &str) -> UpstreamError {
    if status == 401 {
        return UpstreamError::Status {
            status,
            message: "the provider rejected the gateway's API key for it".into(),
            code: Some("invalid_api_key".into()),
        };
    }
    let error = parsed.and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .or_else(|| e.as_str())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let snippet: String = text.chars().take(200).collect();
            if snippet.is_empty() {
                format!("upstream status {status}")
            } else {
                snippet
            }
        });
    let code = error
        .and_then(|e| {
            e.get("code")
                .or_else(|| e.get("type"))
                .or_else(|| e.get("status"))
        })
        .and_then(|c| {
            c.as_str()
                .map(str::to_owned)
                .or_else(|| Some(c.to_string()))
        });
    UpstreamError::Status {
        status,
        message,
        code,
    }
}

impl From<UpstreamError> for AppError {
    /// What the caller is told: a provider's 4xx passes through; its 5xx,
    /// a refused gateway key or a broken connection is a 502; a timeout, 504.
    fn from(err: UpstreamError) -> Self {
        match err {
            // The client's own key was fine; the gateway's was not.
            err if err.is_gateway_credentials() => AppError::BadGateway(
                "The upstream provider rejected the gateway's credentials; the operator must check its API key."
                    .into(),
            ),
            UpstreamError::Status {
                status,
                message,
                code,
            } if (400..500).contains(&status) => AppError::Upstream {
                status,
                message,
                code,
            },
            UpstreamError::Status {
                status, message, ..
            } => AppError::BadGateway(format!(
                "The upstream provider failed with status {status}: {message}"
            )),
            UpstreamError::Timeout => {
                AppError::GatewayTimeout("The upstream provider timed out.".into())
            }
            other => AppError::BadGateway(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_their_message() {
        let err = error_from_body(
            404,
            r#"{"error":{"message":"model gone","type":"invalid_request_error"}}"#,
        );
        assert!(
            matches!(err, UpstreamError::Status { status: 404, ref message, .. } if message == "model gone")
        );
        let err = error_from_body(502, "<html>bad gateway</html>");
        assert!(err.to_string().contains("bad gateway"));
        assert!(error_from_body(429, "").is_retryable());
        assert!(!error_from_body(400, "").is_retryable());
    }

    #[test]
    fn a_refused_provider_key_is_never_quoted() {
        let err = error_from_body(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-proj-****abcd","code":"invalid_api_key"}}"#,
        );
        assert!(err.is_gateway_credentials());
        assert!(!err.to_string().contains("abcd"), "{err}");
        assert!(!error_from_body(403, "").is_gateway_credentials());
    }
}
