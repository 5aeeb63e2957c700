//! The span each request is traced in, with nothing secret in it.
//!
//! tracing-actix-web's default span records the whole request target, query
//! string included, and clients do send credentials there (`?api_key=…`)
//! however often they are told to use the header. So the target is
//! recorded with the values of query parameters redacted, except those of
//! the parameters the API defines, whose values are never secret.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// Query parameters of the API (`PageParams`, `ExplainParams`): ids,
/// sizes and opaque page positions.
const SHOWN: [&str; 3] = ["limit", "cursor", "contact_id"];

pub struct RedactedSpan;

impl RootSpanBuilder for RedactedSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %redacted_target(request.path(), request.query_string()),
            http.client_ip = %request.connection_info().realip_remote_addr().unwrap_or(""),
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// `path?query` with the value of every parameter outside `SHOWN` replaced.
fn redacted_target(path: &str, query: &str) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if SHOWN.contains(&name) => format!("{name}={value}"),
            Some((name, _)) => format!("{name}=[redacted]"),
            None if SHOWN.contains(&pair) => pair.to_owned(),
            None => "[redacted]".to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redacted_target;

    #[test]
    fn only_the_api_parameters_keep_their_values() {
        assert_eq!(
            redacted_target("/v1/contacts", "limit=5&api_key=sk_secret&cursor=djE6MTA"),
            "/v1/contacts?limit=5&api_key=[redacted]&cursor=djE6MTA"
        );
        assert_eq!(redacted_target("/v1/tags", ""), "/v1/tags");
        assert_eq!(
            redacted_target("/v1/tags", "sk_secret"),
            "/v1/tags?[redacted]"
        );
    }
}
