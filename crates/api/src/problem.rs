//! Every error the API answers, and its one mapping to an RFC 9457
//! `application/problem+json` response.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use segments_domain::Violations;
use segments_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Prefix of every problem `type`. The suffix is the stable, documented slug.
pub const PROBLEM_TYPE_BASE: &str = "https://segments.dev/problems/";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; stable across releases.
    #[schema(example = "https://segments.dev/problems/validation-failed")]
    pub r#type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for humans.
    pub detail: String,
    /// The failing fields or parameters, when the problem concerns input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// For ambiguous names: the contacts the name could mean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<i64>,
}

/// One failing field (`pointer`, a JSON Pointer into the request body),
/// query/path parameter (`parameter`), or — neither given — a conflict
/// with the resource's state, named by its `code`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/contacts/3/attributes/age")]
    pub pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// A stable machine-readable reason, e.g. `type_mismatch`.
    pub code: String,
    pub detail: String,
}

impl ProblemField {
    pub fn from_violations(violations: Violations) -> Vec<Self> {
        violations
            .into_vec()
            .into_iter()
            .map(|v| Self {
                pointer: Some(v.pointer),
                parameter: None,
                code: v.code.to_owned(),
                detail: v.message,
            })
            .collect()
    }
}

/// Everything a handler or extractor can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("{entity} {id} does not exist")]
    NotFound { entity: &'static str, id: String },
    #[error("no route matches this path")]
    NoRoute,
    #[error("this route accepts only {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        pointer: Option<String>,
        candidates: Vec<i64>,
    },
    #[error("the request is invalid: {0}")]
    Validation(Violations),
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter { name: String, message: String },
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body exceeds the limit of {limit} bytes for this route")]
    PayloadTooLarge { limit: usize },
    #[error("the body must be JSON: send `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("too many requests for this API key; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error(
        "this workspace already runs as many membership queries as it may at once; retry in 1 s"
    )]
    TooManyQueries,
    #[error("{0}")]
    Unavailable(String),
    #[error("the evaluation did not finish within {} ms; narrow the conditions or try again", .0.as_millis())]
    Timeout(std::time::Duration),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The same refusal of a value that came in the JSON body rather than
    /// the query string: a 422 with the field's JSON Pointer.
    pub fn in_body(self) -> Self {
        match self {
            Self::InvalidParameter { name, message } => {
                Self::Validation(segments_domain::Violations::one(
                    segments_domain::FieldError::new("invalid", message).at(format!("/{name}")),
                ))
            }
            other => other,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::Unauthorized => ("unauthorized", "Unauthorized"),
            Self::NotFound { .. } => ("not-found", "Not found"),
            Self::NoRoute => ("no-route", "Not found"),
            Self::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            Self::Conflict { .. } => ("conflict", "Conflict"),
            Self::Validation(_) => ("validation-failed", "Validation failed"),
            Self::InvalidParameter { .. } => ("invalid-parameter", "Invalid parameter"),
            Self::MalformedJson(_) => ("malformed-json", "Malformed JSON"),
            Self::PayloadTooLarge { .. } => ("payload-too-large", "Payload too large"),
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Self::TooManyRequests { .. } => ("rate-limited", "Too many requests"),
            Self::TooManyQueries => ("too-many-queries", "Too many membership queries"),
            Self::Unavailable(_) => ("unavailable", "Service unavailable"),
            Self::Timeout(_) => ("timeout", "Timed out"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let (errors, candidates) = match self {
            Self::Validation(v) => (ProblemField::from_violations(v.clone()), Vec::new()),
            Self::InvalidParameter { name, message } => (
                vec![ProblemField {
                    pointer: None,
                    parameter: Some(name.clone()),
                    code: "invalid".into(),
                    detail: message.clone(),
                }],
                Vec::new(),
            ),
            Self::Conflict {
                code,
                message,
                pointer,
                candidates,
            } => (
                // One entry even without a field to point at: its `code`
                // (`building`, `definition_changed`, …) is what a client
                // branches on.
                vec![ProblemField {
                    pointer: pointer.clone(),
                    parameter: None,
                    code: (*code).to_owned(),
                    detail: message.clone(),
                }],
                candidates.clone(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Problem {
            r#type: format!("{PROBLEM_TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors,
            candidates,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound { .. } | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidParameter { .. } | Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } | Self::TooManyQueries => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(%cause, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if matches!(self, Self::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let Self::TooManyRequests { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if let Self::MethodNotAllowed { allow } = self
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            response.insert_header((header::ALLOW, value));
        }
        if matches!(self, Self::TooManyQueries) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        response.json(self.problem())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity, id } => Self::NotFound { entity, id },
            StoreError::Conflict {
                code,
                message,
                pointer,
            } => Self::Conflict {
                code,
                message,
                pointer,
                candidates: Vec::new(),
            },
            StoreError::Invalid(v) => Self::Validation(v),
            StoreError::Timeout(after) => Self::Timeout(after),
            StoreError::WorkspaceGone => Self::Unauthorized,
            StoreError::Busy { whole: false } => Self::TooManyQueries,
            busy @ StoreError::Busy { whole: true } => Self::Unavailable(busy.to_string()),
            other if other.is_unavailable() => {
                Self::Unavailable(format!("the database is unavailable: {other}"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}
