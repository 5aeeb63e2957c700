//! The OpenAPI document, generated from the handlers and wire types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{Problem, ProblemField};
use crate::routes;
use crate::wire;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Segments",
        description = "Contacts, tags and custom attributes, grouped into static and dynamic segments.\n\nAuthenticate with `Authorization: Bearer <api key>`; the key decides the workspace. Errors are `application/problem+json` (RFC 9457) with the JSON Pointer of each failing field.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::contacts::create,
        routes::contacts::list,
        routes::contacts::get,
        routes::contacts::update,
        routes::contacts::remove,
        routes::contacts::batch_get,
        routes::contacts::bulk_upsert,
        routes::search::search,
        routes::contact_tags::add_tags,
        routes::contact_tags::remove_tags,
        routes::contact_tags::remove_tag,
        routes::contact_tags::set_attribute,
        routes::contact_tags::unset_attribute,
        routes::tags::list,
        routes::tags::get,
        routes::tags::rename,
        routes::tags::remove,
        routes::tags::apply,
        routes::tags::unapply,
        routes::segments::condition_types,
        routes::segments::create,
        routes::segments::list,
        routes::segments::get,
        routes::segments::update,
        routes::segments::remove,
        routes::segments::members,
        routes::segments::add_members,
        routes::segments::remove_members,
        routes::segments::preview,
        routes::segments::explain,
        routes::segments::rebuild,
        routes::segments::create_snapshot,
        routes::contact_segments::contact_segments,
        routes::attributes::list,
        routes::attributes::create,
        routes::attributes::remove,
        routes::api_keys::list,
        routes::api_keys::create,
        routes::api_keys::revoke,
    ),
    components(schemas(Problem, ProblemField, wire::attribute::AttributeKind)),
    modifiers(&BearerAuth),
    tags(
        (name = "contacts", description = "Contacts, their tags and attribute values"),
        (name = "segments", description = "Static and dynamic segments, condition types, previews and explanations"),
        (name = "tags", description = "Tags across contacts"),
        (name = "attributes", description = "Custom attribute definitions"),
        (name = "api-keys", description = "API keys of the workspace"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, e.g. `seg_…`, as created by `segments workspace create`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline: the form checked in
/// at `openapi/openapi.json`.
pub fn document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}
