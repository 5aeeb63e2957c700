//! Low-level reads and writes of a contact's rows — its tags and attribute
//! values — shared by every write path (single writes, bulk upserts, bulk
//! tagging) so that they cannot drift apart.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use segments_domain::contact::{ContactFields, ResolvedAttributes};
use segments_domain::{
    AttributeType, AttributeValue, Channel, Contact, ContactId, Email, ExternalId, Phone, TagName,
    Timestamp, WorkspaceId,
};

use crate::StoreError;
use crate::batch::{MAX_IN_LIST, rows_per_statement};
use crate::entities::{attribute_definition, contact, contact_attribute, contact_tag, tag};

/// Makes sure every named tag exists in the workspace; returns their ids by key.
///
/// Inserting with ON CONFLICT DO NOTHING, then reading back, is safe under
/// concurrency: two writers creating the same tag both end with its one id.
pub(crate) async fn ensure_tags<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    names: &[TagName],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut unique: BTreeMap<String, &TagName> = BTreeMap::new();
    for name in names {
        unique.entry(name.key()).or_insert(name);
    }
    if unique.is_empty() {
        return Ok(HashMap::new());
    }
    // Tags are created once and applied many times: look them up first and
    // write only the missing ones, so the usual write costs one read.
    let keys: Vec<String> = unique.keys().cloned().collect();
    let mut ids = tag_ids(conn, workspace_id, &keys).await?;
    unique.retain(|key, _| !ids.contains_key(key));
    if unique.is_empty() {
        return Ok(ids);
    }
    let now = Timestamp::now().get();
    let entries: Vec<_> = unique.iter().collect();
    for chunk in entries.chunks(rows_per_statement(4)) {
        let mut insert = Query::insert();
        insert
            .into_table(tag::Entity)
            .columns([
                tag::Column::WorkspaceId,
                tag::Column::Name,
                tag::Column::NameKey,
                tag::Column::CreatedAt,
            ])
            // A concurrent writer may create the same tag first: keep theirs.
            .on_conflict(
                OnConflict::columns([tag::Column::WorkspaceId, tag::Column::NameKey])
                    .do_nothing()
                    .to_owned(),
            );
        for (key, name) in chunk {
            insert.values([
                workspace_id.0.into(),
                name.as_str().into(),
                key.as_str().into(),
                now.into(),
            ])?;
        }
        conn.execute(&insert).await?;
    }
    let missing: Vec<String> = unique.into_keys().collect();
    ids.extend(tag_ids(conn, workspace_id, &missing).await?);
    Ok(ids)
}

/// Ids of the tags with these keys, by key.
async fn tag_ids<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    keys: &[String],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_IN_LIST) {
        let rows = tag::Entity::find()
            .filter(tag::Column::WorkspaceId.eq(workspace_id.0))
            .filter(tag::Column::NameKey.is_in(chunk.iter().cloned()))
            .all(conn)
            .await?;
        ids.extend(rows.into_iter().map(|t| (t.name_key, t.id)));
    }
    Ok(ids)
}

/// Links `contact_ids` to those of the named tags that exist, in one
/// statement (PostgreSQL: the insert runs inside a `WITH`, over arrays);
/// returns the keys of the tags that exist.
async fn link_existing_tags<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    contact_ids: &[i64],
    names: &[TagName],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let keys: std::collections::BTreeSet<String> = names.iter().map(TagName::key).collect();
    let mut existing = std::collections::HashSet::new();
    if keys.is_empty() || contact_ids.is_empty() {
        return Ok(existing);
    }
    let keys: Vec<String> = keys.into_iter().collect();
    let statement = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "WITH wanted AS (SELECT id, name_key FROM tags \
         WHERE workspace_id = $1 AND name_key = ANY($2)), \
         linked AS (INSERT INTO contact_tags (contact_id, tag_id) \
         SELECT c.id, wanted.id FROM wanted CROSS JOIN unnest($3::bigint[]) AS c(id) \
         ON CONFLICT DO NOTHING) \
         SELECT name_key FROM wanted",
        [
            workspace_id.0.into(),
            keys.into(),
            contact_ids.to_vec().into(),
        ],
    );
    for row in conn.query_all_raw(statement).await? {
        existing.insert(row.try_get::<String>("", "name_key")?);
    }
    Ok(existing)
}

/// Removes the named tags from `contact_ids` (names no tag has are
/// ignored), in one statement: the tags are looked up inside it.
pub(crate) async fn unlink_named_tags<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    contact_ids: &[i64],
    names: &[TagName],
) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = names.iter().map(TagName::key).collect();
    let tags = Query::select()
        .column(tag::Column::Id)
        .from(tag::Entity)
        .and_where(Expr::col(tag::Column::WorkspaceId).eq(workspace_id.0))
        .and_where(Expr::col(tag::Column::NameKey).is_in(keys))
        .to_owned();
    for chunk in contact_ids.chunks(MAX_IN_LIST) {
        contact_tag::Entity::delete_many()
            .filter(contact_tag::Column::ContactId.is_in(chunk.iter().copied()))
            .filter(contact_tag::Column::TagId.in_subquery(tags.clone()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Links contacts to tags; existing links are kept.
pub(crate) async fn link_tags<C: ConnectionTrait>(
    conn: &C,
    pairs: &[(i64, i64)],
) -> Result<(), StoreError> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        return crate::bulk_pg::insert_tag_links(conn, pairs).await;
    }
    for chunk in pairs.chunks(rows_per_statement(2)) {
        let mut insert = Query::insert();
        insert
            .into_table(contact_tag::Entity)
            .columns([contact_tag::Column::ContactId, contact_tag::Column::TagId])
            .on_conflict(
                OnConflict::columns([contact_tag::Column::ContactId, contact_tag::Column::TagId])
                    .do_nothing()
                    .to_owned(),
            );
        for (contact_id, tag_id) in chunk {
            insert.values([(*contact_id).into(), (*tag_id).into()])?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Removes the links between `contact_ids` and `tag_ids` (every tag when
/// `tag_ids` is `None`).
pub(crate) async fn unlink_tags<C: ConnectionTrait>(
    conn: &C,
    contact_ids: &[i64],
    tag_ids: Option<&[i64]>,
) -> Result<(), StoreError> {
    if tag_ids.is_some_and(<[i64]>::is_empty) {
        return Ok(());
    }
    for chunk in contact_ids.chunks(MAX_IN_LIST) {
        let mut delete = contact_tag::Entity::delete_many()
            .filter(contact_tag::Column::ContactId.is_in(chunk.iter().copied()));
        if let Some(tag_ids) = tag_ids {
            delete = delete.filter(contact_tag::Column::TagId.is_in(tag_ids.iter().copied()));
        }
        delete.exec(conn).await?;
    }
    Ok(())
}

/// Applies a tag change to contacts: optional replacement of the whole set,
/// then additions, then removals.
pub(crate) async fn apply_tag_changes<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    contact_ids: &[i64],
    replace: Option<&[TagName]>,
    add: &[TagName],
    remove: &[TagName],
) -> Result<(), StoreError> {
    let mut wanted: Vec<TagName> = add.to_vec();
    if let Some(replace) = replace {
        unlink_tags(conn, contact_ids, None).await?;
        wanted.extend_from_slice(replace);
    }
    // A tag both added and removed in one request ends removed.
    let removed: std::collections::HashSet<String> = remove.iter().map(TagName::key).collect();
    wanted.retain(|t| !removed.contains(&t.key()));
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres && !wanted.is_empty() {
        // The usual case — tags that exist — in one round trip; only names
        // no tag has yet take the longer way below.
        let linked = link_existing_tags(conn, workspace_id, contact_ids, &wanted).await?;
        wanted.retain(|t| !linked.contains(&t.key()));
    }
    if !wanted.is_empty() {
        let ids = ensure_tags(conn, workspace_id, &wanted).await?;
        let pairs: Vec<(i64, i64)> = contact_ids
            .iter()
            .flat_map(|c| ids.values().map(move |t| (*c, *t)))
            .collect();
        link_tags(conn, &pairs).await?;
    }
    unlink_named_tags(conn, workspace_id, contact_ids, remove).await?;
    Ok(())
}

/// The typed columns of one attribute value.
fn value_columns(value: &AttributeValue) -> [sea_orm::Value; 4] {
    use sea_orm::Value;
    let mut cols = [
        Value::String(None),
        Value::Double(None),
        Value::Bool(None),
        Value::ChronoDateTimeUtc(None),
    ];
    match value {
        AttributeValue::Text(s) => cols[0] = s.clone().into(),
        AttributeValue::Number(n) => cols[1] = (*n).into(),
        AttributeValue::Boolean(b) => cols[2] = (*b).into(),
        AttributeValue::Date(t) => cols[3] = t.get().into(),
    }
    cols
}

/// Writes attribute values: `Some` upserts, `None` deletes.
pub(crate) async fn write_attributes<C: ConnectionTrait>(
    conn: &C,
    rows: &[(i64, &ResolvedAttributes)],
) -> Result<(), StoreError> {
    let mut sets = Vec::new();
    let mut unsets: HashMap<i64, Vec<i64>> = HashMap::new();
    for (contact_id, attributes) in rows {
        for (attribute_id, value) in attributes.iter() {
            match value {
                Some(v) => sets.push((*contact_id, attribute_id.0, v)),
                None => unsets.entry(attribute_id.0).or_default().push(*contact_id),
            }
        }
    }
    for chunk in sets.chunks(rows_per_statement(6)) {
        let mut insert = Query::insert();
        insert
            .into_table(contact_attribute::Entity)
            .columns([
                contact_attribute::Column::ContactId,
                contact_attribute::Column::AttributeId,
                contact_attribute::Column::ValueText,
                contact_attribute::Column::ValueNumber,
                contact_attribute::Column::ValueBool,
                contact_attribute::Column::ValueDate,
            ])
            .on_conflict(
                OnConflict::columns([
                    contact_attribute::Column::ContactId,
                    contact_attribute::Column::AttributeId,
                ])
                .update_columns([
                    contact_attribute::Column::ValueText,
                    contact_attribute::Column::ValueNumber,
                    contact_attribute::Column::ValueBool,
                    contact_attribute::Column::ValueDate,
                ])
                .to_owned(),
            );
        for (contact_id, attribute_id, value) in chunk {
            let [t, n, b, d] = value_columns(value);
            insert.values([
                (*contact_id).into(),
                (*attribute_id).into(),
                Expr::val(t),
                Expr::val(n),
                Expr::val(b),
                Expr::val(d),
            ])?;
        }
        conn.execute(&insert).await?;
    }
    for (attribute_id, contact_ids) in unsets {
        for chunk in contact_ids.chunks(MAX_IN_LIST) {
            contact_attribute::Entity::delete_many()
                .filter(contact_attribute::Column::AttributeId.eq(attribute_id))
                .filter(contact_attribute::Column::ContactId.is_in(chunk.iter().copied()))
                .exec(conn)
                .await?;
        }
    }
    Ok(())
}

/// Marks contacts as changed now.
pub(crate) async fn touch<C: ConnectionTrait>(
    conn: &C,
    contact_ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    for chunk in contact_ids.chunks(MAX_IN_LIST) {
        let update = Query::update()
            .table(contact::Entity)
            .value(contact::Column::UpdatedAt, now.get())
            .and_where(Expr::col(contact::Column::Id).is_in(chunk.iter().copied()))
            .to_owned();
        conn.execute(&update).await?;
    }
    Ok(())
}

pub(crate) fn fields_of(m: &contact::Model) -> ContactFields {
    ContactFields {
        external_id: m.external_id.clone().map(ExternalId::from_stored),
        name: m.name.clone(),
        phone: m.phone.clone().map(Phone::from_stored),
        email: m.email.clone().map(Email::from_stored),
        channel: m.channel.clone().map(Channel::from_stored),
        opted_in: m.opted_in,
        opted_in_at: m.opted_in_at.map(Timestamp::from_stored),
        first_contacted_at: m.first_contacted_at.map(Timestamp::from_stored),
    }
}

/// Assembles full contacts (tags and attributes included) from their rows,
/// in the rows' order, with two queries whatever the number of contacts.
pub(crate) async fn load_contacts<C: ConnectionTrait>(
    conn: &C,
    models: Vec<contact::Model>,
) -> Result<Vec<Contact>, StoreError> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = models.iter().map(|m| m.id).collect();
    let mut tags: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    let mut attributes: HashMap<i64, BTreeMap<String, AttributeValue>> = HashMap::new();
    for chunk in ids.chunks(MAX_IN_LIST) {
        // Tags and attribute values in one statement (one round trip fewer
        // on every contact read, and on every write, which reads its contact
        // back): `kind` tells the rows apart, and each side leaves the other's
        // columns NULL.
        let mut tags_side = Query::select()
            .expr_as(Expr::cust("0"), "kind")
            .expr_as(
                Expr::col((contact_tag::Entity, contact_tag::Column::ContactId)),
                "contact_id",
            )
            .expr_as(Expr::col((tag::Entity, tag::Column::Name)), "name")
            .expr_as(Expr::col((tag::Entity, tag::Column::NameKey)), "detail")
            .expr_as(Expr::cust("NULL"), "value_text")
            .expr_as(Expr::cust("NULL"), "value_number")
            .expr_as(Expr::cust("NULL"), "value_bool")
            .expr_as(Expr::cust("NULL"), "value_date")
            .from(contact_tag::Entity)
            .inner_join(
                tag::Entity,
                Expr::col((tag::Entity, tag::Column::Id))
                    .equals((contact_tag::Entity, contact_tag::Column::TagId)),
            )
            .and_where(
                Expr::col((contact_tag::Entity, contact_tag::Column::ContactId))
                    .is_in(chunk.iter().copied()),
            )
            .to_owned();
        let attributes_side = Query::select()
            .expr(Expr::cust("1"))
            .column((
                contact_attribute::Entity,
                contact_attribute::Column::ContactId,
            ))
            .column((
                attribute_definition::Entity,
                attribute_definition::Column::Key,
            ))
            .column((
                attribute_definition::Entity,
                attribute_definition::Column::Type,
            ))
            .columns([
                (
                    contact_attribute::Entity,
                    contact_attribute::Column::ValueText,
                ),
                (
                    contact_attribute::Entity,
                    contact_attribute::Column::ValueNumber,
                ),
                (
                    contact_attribute::Entity,
                    contact_attribute::Column::ValueBool,
                ),
                (
                    contact_attribute::Entity,
                    contact_attribute::Column::ValueDate,
                ),
            ])
            .from(contact_attribute::Entity)
            .inner_join(
                attribute_definition::Entity,
                Expr::col((
                    attribute_definition::Entity,
                    attribute_definition::Column::Id,
                ))
                .equals((
                    contact_attribute::Entity,
                    contact_attribute::Column::AttributeId,
                )),
            )
            .and_where(
                Expr::col((
                    contact_attribute::Entity,
                    contact_attribute::Column::ContactId,
                ))
                .is_in(chunk.iter().copied()),
            )
            .to_owned();
        tags_side.union(sea_orm::sea_query::UnionType::All, attributes_side);
        for row in conn.query_all(&tags_side).await? {
            let kind: i32 = row.try_get("", "kind")?;
            let contact_id: i64 = row.try_get("", "contact_id")?;
            let name: String = row.try_get("", "name")?;
            let detail: String = row.try_get("", "detail")?;
            if kind == 0 {
                tags.entry(contact_id).or_default().push((detail, name));
                continue;
            }
            let value = match AttributeType::parse(&detail) {
                Ok(AttributeType::Text) => row
                    .try_get::<Option<String>>("", "value_text")?
                    .map(AttributeValue::Text),
                Ok(AttributeType::Number) => row
                    .try_get::<Option<f64>>("", "value_number")?
                    .map(AttributeValue::Number),
                Ok(AttributeType::Boolean) => row
                    .try_get::<Option<bool>>("", "value_bool")?
                    .map(AttributeValue::Boolean),
                Ok(AttributeType::Date) => row
                    .try_get::<Option<chrono::DateTime<chrono::Utc>>>("", "value_date")?
                    .map(|d| AttributeValue::Date(Timestamp::from_stored(d))),
                Err(_) => None,
            };
            if let Some(value) = value {
                attributes
                    .entry(contact_id)
                    .or_default()
                    .insert(name, value);
            }
        }
    }
    Ok(models
        .into_iter()
        .map(|m| {
            let mut contact_tags = tags.remove(&m.id).unwrap_or_default();
            contact_tags.sort();
            Contact {
                id: ContactId(m.id),
                fields: fields_of(&m),
                tags: contact_tags.into_iter().map(|(_, name)| name).collect(),
                attributes: attributes.remove(&m.id).unwrap_or_default(),
                created_at: Timestamp::from_stored(m.created_at),
                updated_at: Timestamp::from_stored(m.updated_at),
            }
        })
        .collect())
}
