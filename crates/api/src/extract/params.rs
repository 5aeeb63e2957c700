//! Problem+json answers for malformed path and query parameters, which
//! actix would otherwise answer in plain text.

use actix_web::error::PathError;
use actix_web::{HttpRequest, web};

use crate::problem::ApiError;

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, req: &HttpRequest| {
        // `PATCH /v1/contacts/search` reaches `PATCH /v1/contacts/{id}`
        // (actix tries the routes in turn) and fails there on "search":
        // it is a route that does not take the method.
        if let Some(methods) = crate::openapi::allowed_methods(req.path())
            && !methods.iter().any(|m| m == req.method().as_str())
        {
            return ApiError::MethodNotAllowed {
                allow: methods.join(", "),
            }
            .into();
        }
        let message = err.to_string();
        // serde names no field for a bad number: the parameter is the one
        // whose value the message quotes (or the route's only one).
        let params: Vec<(&str, &str)> = req.match_info().iter().collect();
        let name = params
            .iter()
            .find(|(_, value)| message.contains(&format!("\"{value}\"")))
            .or(params.first().filter(|_| params.len() == 1))
            .map_or("path", |(name, _)| name)
            .to_owned();
        ApiError::InvalidParameter { name, message }.into()
    })
}

/// Query parameters deserialized into `T`; a failure names the parameter
/// that failed (actix's own `Query` reports only serde's message, which for
/// a bad number names no field).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned> actix_web::FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(parse(req.query_string()).map(Query).map_err(Into::into))
    }
}

fn parse<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing parameter fails at the root; serde names it in backticks.
        let name = if path == "." {
            message.split('`').nth(1).unwrap_or("query").to_owned()
        } else {
            path
        };
        ApiError::InvalidParameter { name, message }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::parse;
    use crate::problem::ApiError;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // read through Debug only
    struct Params {
        limit: Option<u64>,
        contact_id: i64,
    }

    fn failing(query: &str) -> String {
        match parse::<Params>(query) {
            Err(ApiError::InvalidParameter { name, .. }) => name,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_name_their_parameter() {
        assert_eq!(failing("contact_id=1&limit=ten"), "limit");
        assert_eq!(failing("contact_id=x"), "contact_id");
        assert_eq!(failing("limit=5"), "contact_id");
        assert!(parse::<Params>("contact_id=3&limit=5&other=1").is_ok());
    }
}
