//! A JSON body extractor that reports *where* a body is wrong.
//!
//! actix's own `web::Json` reports serde's message without the failing field's
//! path; this one deserialises through `serde_path_to_error` and answers a
//! JSON Pointer, and separates malformed JSON (400) from well-formed JSON of
//! the wrong shape (422).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use segments_domain::{FieldError, Violations};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Body size limits, set as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    /// Ordinary requests.
    pub default: usize,
    /// Bulk routes, which take up to 10,000 items.
    pub bulk: usize,
}

impl Default for BodyLimit {
    fn default() -> Self {
        Self {
            default: 1024 * 1024,
            bulk: 32 * 1024 * 1024,
        }
    }
}

/// A deserialised JSON body, within the default size limit.
#[derive(Debug)]
pub struct Json<T>(pub T);

/// A deserialised JSON body, within the bulk size limit.
#[derive(Debug)]
pub struct BulkJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or_default()
            .default;
        let body = read(req, payload, limit);
        Box::pin(async move { body.await.map(Json) })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for BulkJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or_default()
            .bulk;
        let body = read(req, payload, limit);
        Box::pin(async move { body.await.map(BulkJson) })
    }
}

fn read<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
) -> impl Future<Output = Result<T, ApiError>> + 'static {
    {
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType);
            }
            if declared_length.is_some_and(|len| len > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut body = Vec::with_capacity(declared_length.unwrap_or(1024).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::MalformedJson(e.to_string()))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body)
        }
    }
}

/// Parses a JSON document, locating shape errors by JSON Pointer.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every body of this API is an object; serde would also read a struct
    // from an array of its fields in order (`[null, null]` was a patch).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        return Err(ApiError::Validation(not_an_object("")));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let shape_error = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end()
                .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            return Ok(value);
        }
        Err(err) if err.inner().classify() == serde_json::error::Category::Data => err,
        Err(err) => return Err(ApiError::MalformedJson(err.inner().to_string())),
    };
    // The slow path, taken only by a body already refused: if it writes an
    // integer as `2064.0`, read it again with such numbers as integers.
    let mut document: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if segments_domain::json::integral_floats_as_integers(&mut document) {
        return serde_path_to_error::deserialize(document)
            .map_err(|err| ApiError::Validation(shape_violation(&err)));
    }
    Err(ApiError::Validation(shape_violation(&shape_error)))
}

/// Reads a part of a document already parsed (one item of a bulk request),
/// locating shape errors by JSON Pointer relative to that part.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Violations> {
    if !value.is_object() {
        return Err(not_an_object(""));
    }
    // As in `parse`: integral floats are rewritten only for an item
    // already refused, so well-formed items pay nothing.
    let refused = match serde_path_to_error::deserialize(&value) {
        Ok(item) => return Ok(item),
        Err(err) => err,
    };
    let mut value = value;
    if segments_domain::json::integral_floats_as_integers(&mut value) {
        return serde_path_to_error::deserialize(value).map_err(|err| shape_violation(&err));
    }
    Err(shape_violation(&refused))
}

fn not_an_object(pointer: &str) -> Violations {
    Violations::one(FieldError::new("invalid_type", "must be a JSON object").at(pointer))
}

/// A shape error (wrong type, unknown or missing field) at its pointer.
fn shape_violation(err: &serde_path_to_error::Error<serde_json::Error>) -> Violations {
    let message = strip_position(&err.inner().to_string());
    let mut pointer = to_pointer(err.path());
    if let Some(field) = named_field(&message) {
        let token = segments_domain::violation::pointer_token(field);
        if !pointer.ends_with(&format!("/{token}")) {
            pointer.push('/');
            pointer.push_str(&token);
        }
    }
    Violations::one(FieldError::new(classify_data_error(&message), message).at(pointer))
}

fn to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                pointer.push('/');
                pointer.push_str(&index.to_string());
            }
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&segments_domain::violation::pointer_token(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

/// serde_json appends " at line L column C", which means nothing next to a pointer.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field a missing- or unknown-field error is about: serde reports a
/// missing one (and a rule between fields, worded alike) at the enclosing
/// object, but the client needs the field itself.
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

fn classify_data_error(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        "unknown_field"
    } else if message.starts_with("missing field") {
        "required"
    } else if message.starts_with("invalid type") {
        "wrong_type"
    } else {
        "invalid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        n: Option<i64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Item>,
    }

    fn pointer_of(body: &str) -> Option<(String, &'static str)> {
        match parse::<Doc>(body.as_bytes()) {
            Err(ApiError::Validation(v)) => {
                v.into_vec().into_iter().next().map(|v| (v.pointer, v.code))
            }
            _ => None,
        }
    }

    #[test]
    fn wrong_types_point_at_the_field() {
        assert_eq!(
            pointer_of(r#"{"items":[{"name":"a"},{"name":"b","n":"x"}]}"#),
            Some(("/items/1/n".into(), "wrong_type"))
        );
    }

    #[test]
    fn integral_numbers_are_integers_however_written() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ids {
            ids: Vec<i64>,
            ttl: Option<u64>,
            score: Option<f64>,
        }
        let ids: Ids = match parse(br#"{"ids":[2064.0,-40613.0,7,-0.0],"ttl":1e4,"score":2.0}"#) {
            Ok(ids) => ids,
            Err(e) => panic!("refused: {e:?}"),
        };
        assert_eq!(ids.ids, vec![2064, -40613, 7, 0]);
        assert_eq!(ids.ttl, Some(10_000));
        assert_eq!(ids.score, Some(2.0));
        // Read exactly (serde_json's `float_roundtrip`): the default parser
        // may land one ULP off, which turns this integer into a fraction.
        let exact: Ids = match parse(br#"{"ids":[4421057785433418.0]}"#) {
            Ok(ids) => ids,
            Err(e) => panic!("refused: {e:?}"),
        };
        assert_eq!(exact.ids, vec![4_421_057_785_433_418]);
        // A fraction is still not an integer, and the error still points at it.
        match parse::<Ids>(br#"{"ids":[1.0,2.5]}"#) {
            Err(ApiError::Validation(v)) => {
                let first = v.into_vec().into_iter().next().map(|v| (v.pointer, v.code));
                assert_eq!(first, Some(("/ids/1".into(), "wrong_type")));
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        // Beyond both integer ranges a number stays what it was.
        assert!(parse::<Ids>(br#"{"ids":[1e19]}"#).is_err());
        assert!(parse::<Ids>(br#"{"ids":[-1e19]}"#).is_err());
        assert!(parse::<Ids>(br#"{"ids":[-9223372036854775809]}"#).is_err());
        let items: Result<Item, _> = from_value(serde_json::json!({"name": "a", "n": 3.0}));
        assert_eq!(items.ok().and_then(|i| i.n), Some(3));
    }

    #[test]
    fn unknown_fields_point_at_themselves() {
        assert_eq!(
            pointer_of(r#"{"items":[{"name":"a","nmae":1}]}"#),
            Some(("/items/0/nmae".into(), "unknown_field"))
        );
    }

    #[test]
    fn bodies_must_be_objects() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Patch {
            name: Option<String>,
            conditions: Option<String>,
        }
        for body in ["[null, null]", " 5", "\"x\"", "null"] {
            assert!(
                matches!(
                    super::parse::<Patch>(body.as_bytes()),
                    Err(ApiError::Validation(_))
                ),
                "{body}"
            );
        }
        assert!(matches!(
            super::parse::<Patch>(b"[1,"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(super::parse::<Patch>(b" {\"name\": \"x\"}").is_ok());
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(
            parse::<Doc>(b"{\"items\": ["),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse::<Doc>(b"{\"items\": []} x"),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
