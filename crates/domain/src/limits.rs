//! Size limits on everything a client can send. One place, so that the API's
//! documentation, its validation and its tests agree.

/// Longest contact name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest e-mail address (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest external id.
pub const MAX_EXTERNAL_ID_CHARS: usize = 128;
/// Longest channel identifier.
pub const MAX_CHANNEL_CHARS: usize = 32;
/// Longest tag name.
pub const MAX_TAG_CHARS: usize = 64;
/// Longest attribute key.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;
/// Longest text attribute value. Kept under PostgreSQL's B-tree entry limit
/// (2,704 bytes) even in 4-byte UTF-8, because text values are indexed.
pub const MAX_TEXT_VALUE_CHARS: usize = 500;
/// Longest workspace or API-key name.
pub const MAX_LABEL_CHARS: usize = 100;
/// Most tags named in one request about one contact.
pub const MAX_TAGS_PER_REQUEST: usize = 100;
/// Most attribute values set in one request about one contact.
pub const MAX_ATTRIBUTES_PER_REQUEST: usize = 100;
/// Most attribute definitions one workspace may declare.
pub const MAX_ATTRIBUTE_DEFINITIONS: u64 = 200;
/// Most contacts in one bulk upsert.
pub const MAX_BULK_UPSERT: usize = 10_000;
/// Most contact names in one static-membership change.
pub const MAX_MEMBER_NAMES: usize = 1_000;
/// Most contacts fetched by id in one call.
pub const MAX_BATCH_GET: usize = 1_000;
/// Most contacts tagged or untagged in one call.
pub const MAX_BULK_TAG_CONTACTS: usize = 10_000;
/// Default and largest page sizes of list endpoints.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1_000;
