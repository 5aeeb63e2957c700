//! Segments' domain: the types a contact is made of and the rules they obey.
//!
//! This crate performs no I/O and knows nothing of HTTP or SQL. Every value that
//! crosses into the system is parsed here once, into a type that cannot hold an
//! invalid value ("parse, don't validate"); later layers never re-check it.

pub mod attribute;
pub mod contact;
pub mod ids;
pub mod json;
pub mod limits;
pub mod text;
pub mod time;
pub mod violation;

pub use attribute::{AttributeKey, AttributeType, AttributeValue};
pub use contact::{Channel, Contact, ContactFields, ContactPatch, Email, ExternalId, Phone};
pub use ids::{ApiKeyId, AttributeId, ContactId, SegmentId, TagId, WorkspaceId};
pub use text::{Label, TagName, storable};
pub use time::Timestamp;
pub use violation::{FieldError, Violation, Violations};
