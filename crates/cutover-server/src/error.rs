//! Errors by audience: JSON for the admin API, RFC 6749 vocabulary for OAuth endpoints, and
//! helpful HTML for people. Internal detail goes to the server log, never into a response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cutover_proto::{ErrorBody, ErrorResponse};
use cutover_store::StoreError;

use crate::pages;

/// An admin API error: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "notFound", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// Log `detail` for the operator; the caller only learns that something failed inside.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internalError",
            "Cutover hit an internal error; nothing was changed. The server log has the details under the id in this response's x-request-id header.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("no such object"),
            StoreError::Conflict(m) => Self::conflict(m),
            StoreError::Unavailable(detail) => {
                tracing::error!(detail = %detail, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "databaseUnavailable",
                    "The database is unavailable; nothing was changed. Try again shortly.",
                )
            }
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code.into(),
                message: self.message,
                request_id: None,
            },
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// An error from the token or userinfo endpoint, in RFC 6749 §5.2 / RFC 6750 §3 vocabulary.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Set `WWW-Authenticate` (401 from client authentication or a bearer token).
    pub challenge: Option<&'static str>,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            challenge: None,
        }
    }
    pub fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
            challenge: Some(if basic {
                "Basic realm=\"cutover\""
            } else {
                "Bearer"
            }),
        }
    }
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            description: description.into(),
            challenge: Some("Bearer error=\"invalid_token\""),
        }
    }
    pub fn server_error(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "token endpoint internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "internal error; see the server log".into(),
            challenge: None,
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::error!(detail = %detail, "database unavailable");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error: "temporarily_unavailable",
                    description: "the database is unavailable; try again shortly".into(),
                    challenge: None,
                }
            }
            other => Self::server_error(other),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        let mut res = (self.status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.challenge
            && self.status == StatusCode::UNAUTHORIZED
        {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res
    }
}

/// An error shown to a person as a page.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            title,
            message: message.into(),
        }
    }
    pub fn expired() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            cutover_core::signin_log::FailureReason::SessionExpired.user_message(),
        )
    }
    /// Log `detail` for the operator; the person sees a generic page.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error on a sign-in page");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            "Something went wrong on our side. Go back to the application and try again; if it keeps happening, contact your helpdesk.",
        )
    }
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable",
            "Sign-in is temporarily unavailable. Wait a minute and try again; if it keeps happening, contact your helpdesk.",
        )
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error during sign-in");
        Self::unavailable()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (self.status, pages::error_page(self.title, &self.message)).into_response()
    }
}

/// Unknown paths: JSON under `/api/`, a page elsewhere.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found(format!(
            "there is no API endpoint at {}; see /api/v1/openapi.json",
            uri.path()
        ))
        .into_response()
    } else {
        PageError::new(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address. If an application sent you here, go back to it and start again.")
            .into_response()
    }
}

/// Last line of defence: a panic in a handler becomes a 500, logged, and the server lives on.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %detail, "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internalError",
        "Cutover hit an internal error.",
    )
    .into_response()
}
