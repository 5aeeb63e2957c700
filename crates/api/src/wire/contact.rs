use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use segments_domain::contact::parse_name;
use segments_domain::limits::{MAX_ATTRIBUTES_PER_REQUEST, MAX_BATCH_GET, MAX_BULK_UPSERT};
use segments_domain::violation::pointer_token;
use segments_domain::{
    AttributeKey, Channel, Contact as DomainContact, ContactId, ContactPatch, Email, ExternalId,
    FieldError, Phone, Timestamp, Violations,
};
use segments_store::BulkOutcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::attribute::{AttributeChange, AttributeScalar};
use super::nullable;
use super::tag::parse_tags;
use crate::problem::ProblemField;

/// A contact as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Contact {
    pub id: i64,
    pub external_id: Option<String>,
    pub name: Option<String>,
    /// Digits with an optional leading `+`.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// The platform the contact talks on, e.g. `whatsapp`.
    pub channel: Option<String>,
    pub opted_in: bool,
    pub opted_in_at: Option<DateTime<Utc>>,
    pub first_contacted_at: Option<DateTime<Utc>>,
    /// Tag names, sorted case-insensitively.
    pub tags: Vec<String>,
    /// Attribute values by key.
    pub attributes: BTreeMap<String, AttributeScalar>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DomainContact> for Contact {
    fn from(c: DomainContact) -> Self {
        let f = c.fields;
        Self {
            id: c.id.0,
            external_id: f.external_id.map(ExternalId::into_inner),
            name: f.name,
            phone: f.phone.map(Phone::into_inner),
            email: f.email.map(Email::into_inner),
            channel: f.channel.map(Channel::into_inner),
            opted_in: f.opted_in,
            opted_in_at: f.opted_in_at.map(Timestamp::get),
            first_contacted_at: f.first_contacted_at.map(Timestamp::get),
            tags: c.tags,
            attributes: c
                .attributes
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), AttributeScalar::from_json(v.to_json())?)))
                .collect(),
            created_at: c.created_at.get(),
            updated_at: c.updated_at.get(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<Contact>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The writable fields of a contact.
///
/// On create every field is optional. On update (PATCH) and in bulk upserts an
/// absent field is left alone and `null` clears it; `tags` replaces the whole
/// set; `attributes` sets the keys given (`null` unsets one) and leaves the
/// others alone.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// Your own id for the contact, unique in the workspace (required in bulk upserts).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, example = "+14155550100")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, example = "ana@example.com")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, example = "whatsapp")]
    pub channel: Option<Option<String>>,
    pub opted_in: Option<bool>,
    /// When the contact opted in; defaults to the moment `opted_in` becomes true.
    pub opted_in_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub first_contacted_at: Option<Option<DateTime<Utc>>>,
    /// The contact's whole tag set (at most 100 names).
    pub tags: Option<Vec<String>>,
    /// Attribute values by key; `null` unsets a key.
    pub attributes: Option<BTreeMap<String, AttributeChange>>,
}

fn opt<T>(
    violations: &mut Violations,
    pointer: &str,
    value: Option<Option<String>>,
    parse: impl Fn(&str) -> Result<T, FieldError>,
) -> Option<Option<T>> {
    match value {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => violations.check(pointer, parse(&raw)).map(Some),
    }
}

fn instant(violations: &mut Violations, pointer: &str, value: DateTime<Utc>) -> Option<Timestamp> {
    violations.check(pointer, Timestamp::parse(value))
}

impl ContactInput {
    /// Parses every field, reporting all failures at once.
    pub fn into_patch(self) -> Result<ContactPatch, Violations> {
        let mut v = Violations::new();
        let external_id = opt(&mut v, "/external_id", self.external_id, ExternalId::parse);
        let name = opt(&mut v, "/name", self.name, parse_name);
        let phone = opt(&mut v, "/phone", self.phone, Phone::parse);
        let email = opt(&mut v, "/email", self.email, Email::parse);
        let channel = opt(&mut v, "/channel", self.channel, Channel::parse);
        let opted_in_at = self
            .opted_in_at
            .and_then(|t| instant(&mut v, "/opted_in_at", t));
        let first_contacted_at = self
            .first_contacted_at
            .map(|t| t.and_then(|t| instant(&mut v, "/first_contacted_at", t)));
        let tags = self.tags.map(|t| parse_tags(&t, "/tags", &mut v));
        let mut attributes = BTreeMap::new();
        let raw_attributes = self.attributes.unwrap_or_default();
        if raw_attributes.len() > MAX_ATTRIBUTES_PER_REQUEST {
            v.push(
                FieldError::new(
                    "too_many",
                    format!("at most {MAX_ATTRIBUTES_PER_REQUEST} attributes per request"),
                )
                .at("/attributes"),
            );
        }
        for (key, value) in raw_attributes {
            let pointer = format!("/attributes/{}", pointer_token(&key));
            if let Some(key) = v.check(&pointer, AttributeKey::parse(&key)) {
                attributes.insert(key, value.0.map(AttributeScalar::into_json));
            }
        }
        v.into_result(ContactPatch {
            external_id,
            name,
            phone,
            email,
            channel,
            opted_in: self.opted_in,
            opted_in_at,
            first_contacted_at,
            tags,
            add_tags: Vec::new(),
            remove_tags: Vec::new(),
            attributes,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpsertInput {
    /// 1 to 10,000 contacts, each with an `external_id`. Each item is read
    /// on its own: one of the wrong shape (a string for `opted_in`, an
    /// unknown field) is reported with the others, not the whole request.
    #[schema(value_type = Vec<ContactInput>)]
    pub contacts: Vec<serde_json::Value>,
}

/// A bulk request, parsed item by item.
#[derive(Debug)]
pub struct ParsedBatch {
    /// Valid items with their positions in the request.
    pub items: Vec<(usize, ContactPatch)>,
    /// Invalid items, with pointers relative to the item.
    pub rejected: Vec<(usize, Violations)>,
}

impl BulkUpsertInput {
    /// Parses every item; items that fail are reported instead of failing the
    /// whole request.
    pub fn into_patches(self) -> Result<ParsedBatch, Violations> {
        if self.contacts.is_empty() || self.contacts.len() > MAX_BULK_UPSERT {
            return Err(Violations::one(
                FieldError::new(
                    "size",
                    format!(
                        "send between 1 and {MAX_BULK_UPSERT} contacts, got {}",
                        self.contacts.len()
                    ),
                )
                .at("/contacts"),
            ));
        }
        let mut batch = ParsedBatch {
            items: Vec::with_capacity(self.contacts.len()),
            rejected: Vec::new(),
        };
        for (index, item) in self.contacts.into_iter().enumerate() {
            let parsed = crate::extract::json::from_value::<ContactInput>(item)
                .and_then(ContactInput::into_patch);
            match parsed {
                Ok(p) => batch.items.push((index, p)),
                Err(v) => batch.rejected.push((index, v)),
            }
        }
        Ok(batch)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpsertedItem {
    /// Position in the request.
    pub index: usize,
    pub id: i64,
    /// `true` when the contact was new.
    pub created: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedItem {
    /// Position in the request.
    pub index: usize,
    /// Why; pointers are absolute within the request body.
    pub errors: Vec<ProblemField>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkUpsertResult {
    pub created: u64,
    pub updated: u64,
    pub items: Vec<UpsertedItem>,
    pub errors: Vec<RejectedItem>,
}

impl BulkUpsertResult {
    pub fn new(outcome: BulkOutcome, mut rejected: Vec<(usize, Violations)>) -> Self {
        rejected.extend(outcome.rejected);
        rejected.sort_by_key(|r| r.0);
        let created = outcome.stored.iter().filter(|s| s.created).count() as u64;
        Self {
            created,
            updated: outcome.stored.len() as u64 - created,
            items: outcome
                .stored
                .into_iter()
                .map(|s| UpsertedItem {
                    index: s.index,
                    id: s.id.0,
                    created: s.created,
                })
                .collect(),
            errors: rejected
                .into_iter()
                .map(|(index, v)| RejectedItem {
                    index,
                    errors: ProblemField::from_violations(
                        v.prefixed(&format!("/contacts/{index}")),
                    ),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchGetInput {
    /// 1 to 1,000 contact ids.
    pub ids: Vec<i64>,
}

impl BatchGetInput {
    pub fn parse(&self) -> Result<Vec<ContactId>, Violations> {
        if self.ids.is_empty() || self.ids.len() > MAX_BATCH_GET {
            return Err(Violations::one(
                FieldError::new(
                    "size",
                    format!(
                        "send between 1 and {MAX_BATCH_GET} ids, got {}",
                        self.ids.len()
                    ),
                )
                .at("/ids"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .ids
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .map(ContactId)
            .collect())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchGetResult {
    /// The contacts found, in the order asked.
    pub items: Vec<Contact>,
    /// Ids that name no contact of this workspace.
    pub missing: Vec<i64>,
}
