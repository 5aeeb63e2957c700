//! sea-orm entities: one per table, columns only. Queries live in the
//! repository modules beside this one.

pub mod api_key;
pub mod attribute_definition;
pub mod contact;
pub mod contact_attribute;
pub mod contact_change;
pub mod contact_tag;
pub mod segment;
pub mod segment_member;
pub mod tag;
pub mod workspace;
