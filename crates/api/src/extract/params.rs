//! Problem+json answers for malformed path and query parameters, which
//! actix would otherwise answer in plain text.

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::{HttpRequest, web};

use crate::problem::ApiError;

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _: &HttpRequest| {
        ApiError::InvalidParameter {
            name: "path".into(),
            message: err.to_string(),
        }
        .into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _: &HttpRequest| {
        let message = err.to_string();
        let name = message
            .split('`')
            .nth(1)
            .map_or_else(|| "query".to_owned(), str::to_owned);
        ApiError::InvalidParameter { name, message }.into()
    })
}
