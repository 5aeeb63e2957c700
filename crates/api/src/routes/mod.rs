//! Handlers, one module per resource.

pub mod api_keys;
pub mod attributes;
pub mod contact_segments;
pub mod contact_tags;
pub mod contacts;
pub mod health;
pub mod search;
pub mod segments;
pub mod tags;

/// Declares every route once: [`register`] serves them in the order given
/// and [`Paths`] documents the same list, so the served routes and the
/// documented ones cannot differ.
macro_rules! routes {
    ($($($segment:ident)::+),* $(,)?) => {
        /// Registers every route of the API on `cfg`.
        pub(crate) fn register(cfg: &mut actix_web::web::ServiceConfig) {
            $(cfg.service($($segment)::+);)*
        }

        /// The routes' part of the OpenAPI document (`openapi::document_for`
        /// adds the rest).
        #[derive(Debug, utoipa::OpenApi)]
        #[openapi(paths($($($segment)::+),*))]
        pub(crate) struct Paths;
    };
}

// Literal paths before `{id}` ones, so `batch-get` is never read as an id.
routes!(
    health::healthz,
    health::readyz,
    contacts::bulk_upsert,
    tags::apply,
    tags::unapply,
    contacts::batch_get,
    search::search,
    segments::condition_types,
    segments::preview,
    segments::create,
    segments::list,
    segments::get,
    segments::update,
    segments::remove,
    segments::members,
    segments::add_members,
    segments::remove_members,
    segments::explain,
    segments::rebuild,
    segments::create_snapshot,
    contact_segments::contact_segments,
    contacts::create,
    contacts::list,
    contacts::get,
    contacts::update,
    contacts::remove,
    contact_tags::add_tags,
    contact_tags::remove_tags,
    contact_tags::remove_tag,
    contact_tags::set_attribute,
    contact_tags::unset_attribute,
    tags::list,
    tags::get,
    tags::rename,
    tags::remove,
    attributes::list,
    attributes::create,
    attributes::remove,
    api_keys::list,
    api_keys::create,
    api_keys::revoke,
);
