use chrono::{DateTime, Utc};
use segments_domain::limits::{MAX_BULK_TAG_CONTACTS, MAX_TAGS_PER_REQUEST};
use segments_domain::{ContactId, FieldError, TagName, Violations};
use segments_store::{BulkTagOutcome, TagSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Tag {
    pub id: i64,
    /// As spelled when the tag was created or last renamed.
    pub name: String,
    /// How many contacts carry the tag.
    pub contact_count: u64,
    pub created_at: DateTime<Utc>,
}

impl From<TagSummary> for Tag {
    fn from(t: TagSummary) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            contact_count: t.contact_count,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagPage {
    pub items: Vec<Tag>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRename {
    #[schema(max_length = 64)]
    pub name: String,
}

/// Tags to add to, or remove from, one contact.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagNames {
    /// Tag names (case-insensitive); at most 100.
    #[schema(example = json!(["vip", "newsletter"]))]
    pub tags: Vec<String>,
}

/// Tags to add to, or remove from, many contacts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkTagInput {
    /// At most 10,000 contact ids.
    pub contact_ids: Vec<i64>,
    /// At most 100 tag names.
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkTagResult {
    /// Contacts found and changed.
    pub updated: u64,
    /// Ids that name no contact of this workspace.
    pub not_found: Vec<i64>,
}

impl From<BulkTagOutcome> for BulkTagResult {
    fn from(o: BulkTagOutcome) -> Self {
        Self {
            updated: o.updated,
            not_found: o.not_found.into_iter().map(|c| c.0).collect(),
        }
    }
}

/// Parses a list of tag names found at `pointer`, dropping repeats.
pub fn parse_tags(raw: &[String], pointer: &str, violations: &mut Violations) -> Vec<TagName> {
    if raw.len() > MAX_TAGS_PER_REQUEST {
        violations.push(
            FieldError::new(
                "too_many",
                format!(
                    "at most {MAX_TAGS_PER_REQUEST} tags per request, got {}",
                    raw.len()
                ),
            )
            .at(pointer),
        );
        return Vec::new();
    }
    let tags = raw
        .iter()
        .enumerate()
        .filter_map(|(i, t)| violations.check(&format!("{pointer}/{i}"), TagName::parse(t)))
        .collect();
    segments_domain::contact::dedup_tags(tags)
}

impl TagNames {
    pub fn parse(&self) -> Result<Vec<TagName>, Violations> {
        let mut violations = Violations::new();
        let tags = parse_tags(&self.tags, "/tags", &mut violations);
        violations.into_result(tags)
    }
}

impl BulkTagInput {
    pub fn parse(&self) -> Result<(Vec<ContactId>, Vec<TagName>), Violations> {
        let mut violations = Violations::new();
        let tags = parse_tags(&self.tags, "/tags", &mut violations);
        if self.contact_ids.len() > MAX_BULK_TAG_CONTACTS {
            violations.push(
                FieldError::new(
                    "too_many",
                    format!("at most {MAX_BULK_TAG_CONTACTS} contact ids per request"),
                )
                .at("/contact_ids"),
            );
        }
        let ids = self.contact_ids.iter().copied().map(ContactId).collect();
        violations.into_result((ids, tags))
    }
}
