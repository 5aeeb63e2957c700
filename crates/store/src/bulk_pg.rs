//! PostgreSQL's set-based statements for bulk writes.
//!
//! Each statement binds its rows as a few arrays (`unnest`) or, where
//! columns may be NULL, as one JSON document (`json_to_recordset`; the
//! driver's arrays cannot carry NULL elements), instead of one parameter per
//! value: its text — and the work of parsing and binding it — does not grow
//! with its rows, and a chunk is not bounded by the 65,535-parameter limit.
//!
//! Plans: a bulk transaction plans its lookups per call (`Planning`), but the
//! statements that insert rows other rows reference must run with cached
//! plans. PostgreSQL checks each inserted row's foreign keys with a prepared
//! query of its own; under `force_custom_plan` that query is planned again
//! for every row, which was 60% of an import's time (`perf`, BENCHMARKS.md).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement, Value};
use segments_domain::contact::ContactFields;
use segments_domain::{AttributeValue, Timestamp, WorkspaceId};
use serde::Serialize;

use crate::StoreError;
use crate::entities::contact;

/// How PostgreSQL plans the statements that follow, within the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Planning {
    /// Every statement for its parameters and the tables' current sizes:
    /// for lookups over tables a bulk write is filling, whose cached
    /// generic plan, made while they were small, would scan them.
    PerCall,
    /// PostgreSQL's default: for inserts, whose foreign-key checks then
    /// reuse one plan per constraint.
    Cached,
}

pub(crate) async fn plan<C: ConnectionTrait>(
    conn: &C,
    planning: Planning,
) -> Result<(), StoreError> {
    let mode = match planning {
        Planning::PerCall => "force_custom_plan",
        Planning::Cached => "auto",
    };
    conn.execute_unprepared(&format!("SET LOCAL plan_cache_mode = {mode}"))
        .await?;
    Ok(())
}

fn statement(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Locks the workspace's contacts with these external ids, in id order,
/// and returns them by external id.
///
/// Two statements, each planned so that no statistics can mislead it: the
/// ids are found by one unique-index probe per external id (a `LATERAL`
/// subquery with `LIMIT 1` is never flattened into a join the planner could
/// turn into a scan), then locked by primary key. A single `workspace_id =
/// $1 AND external_id = ANY($2)` was planned, on a table never analyzed
/// during an import, as a scan of the whole workspace through another index:
/// 190 ms a batch at 900,000 contacts, growing with the table.
pub(crate) async fn lock_by_external_id<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    external_ids: &[&str],
) -> Result<HashMap<String, contact::Model>, StoreError> {
    if external_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let wanted: Vec<String> = external_ids.iter().map(|e| (*e).to_owned()).collect();
    let found = conn
        .query_all_raw(statement(
            "SELECT c.id FROM unnest($2::text[]) AS e(external_id) \
             CROSS JOIN LATERAL (SELECT id FROM contacts \
             WHERE workspace_id = $1 AND external_id = e.external_id LIMIT 1) AS c",
            vec![workspace_id.0.into(), wanted.into()],
        ))
        .await?;
    let ids = found
        .iter()
        .map(|row| row.try_get::<i64>("", "id"))
        .collect::<Result<Vec<i64>, _>>()?;
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = contact::Entity::find()
        .from_raw_sql(statement(
            "SELECT * FROM contacts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            vec![ids.into()],
        ))
        .all(conn)
        .await?;
    // A contact whose external id changed between the two statements is
    // not the one asked for: its item is written as new, and the upsert's
    // conflict on the external id finds whoever holds it now.
    let wanted: std::collections::HashSet<&str> = external_ids.iter().copied().collect();
    Ok(rows
        .into_iter()
        .filter_map(|m| m.external_id.clone().map(|e| (e, m)))
        .filter(|(e, _)| wanted.contains(e.as_str()))
        .collect())
}

/// One contact row of an upsert, as `json_to_recordset` reads it.
#[derive(Serialize)]
struct ContactRecord<'a> {
    external_id: Option<&'a str>,
    name: Option<&'a str>,
    phone: Option<&'a str>,
    email: Option<&'a str>,
    channel: Option<&'a str>,
    opted_in: bool,
    opted_in_at: Option<Timestamp>,
    first_contacted_at: Option<Timestamp>,
    created_at: Timestamp,
}

/// A contact row an upsert wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upserted {
    pub id: i64,
    /// Inserted, as opposed to updated (another writer may have created a
    /// contact the caller found missing).
    pub inserted: bool,
}

/// Inserts or updates (by external id) contact rows; returns what was
/// written, by external id.
pub(crate) async fn upsert_contacts<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    rows: &[(&ContactFields, Timestamp)],
    now: Timestamp,
) -> Result<HashMap<String, Upserted>, StoreError> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let records: Vec<ContactRecord<'_>> = rows
        .iter()
        .map(|(f, created_at)| ContactRecord {
            external_id: f.external_id.as_ref().map(|v| v.as_str()),
            name: f.name.as_deref(),
            phone: f.phone.as_ref().map(|v| v.as_str()),
            email: f.email.as_ref().map(|v| v.as_str()),
            channel: f.channel.as_ref().map(|v| v.as_str()),
            opted_in: f.opted_in,
            opted_in_at: f.opted_in_at,
            first_contacted_at: f.first_contacted_at,
            created_at: *created_at,
        })
        .collect();
    let json = serde_json::to_string(&records)?;
    let sql = "INSERT INTO contacts (workspace_id, external_id, name, phone, email, channel, \
               opted_in, opted_in_at, first_contacted_at, created_at, updated_at) \
               SELECT $1, r.external_id, r.name, r.phone, r.email, r.channel, \
               r.opted_in, r.opted_in_at, r.first_contacted_at, r.created_at, $3 \
               FROM json_to_recordset($2::text::json) AS r(external_id text, name text, \
               phone text, email text, channel text, opted_in boolean, \
               opted_in_at timestamptz, first_contacted_at timestamptz, created_at timestamptz) \
               ON CONFLICT (workspace_id, external_id) DO UPDATE SET \
               name = excluded.name, phone = excluded.phone, email = excluded.email, \
               channel = excluded.channel, opted_in = excluded.opted_in, \
               opted_in_at = excluded.opted_in_at, \
               first_contacted_at = excluded.first_contacted_at, updated_at = excluded.updated_at \
               RETURNING id, external_id, (xmax = 0) AS inserted";
    let rows = conn
        .query_all_raw(statement(
            sql,
            vec![workspace_id.0.into(), json.into(), now.get().into()],
        ))
        .await?;
    let mut written = HashMap::with_capacity(rows.len());
    for row in rows {
        written.insert(
            row.try_get::<String>("", "external_id")?,
            Upserted {
                id: row.try_get("", "id")?,
                inserted: row.try_get("", "inserted")?,
            },
        );
    }
    Ok(written)
}

/// Removes every tag of these contacts.
pub(crate) async fn unlink_all_tags<C: ConnectionTrait>(
    conn: &C,
    contact_ids: Vec<i64>,
) -> Result<(), StoreError> {
    if contact_ids.is_empty() {
        return Ok(());
    }
    conn.execute_raw(statement(
        "DELETE FROM contact_tags WHERE contact_id = ANY($1)",
        vec![contact_ids.into()],
    ))
    .await?;
    Ok(())
}

/// Removes, from each contact, the tag named by the paired key (keys no tag
/// has are ignored).
pub(crate) async fn unlink_named_tags<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    pairs: Vec<(i64, String)>,
) -> Result<(), StoreError> {
    if pairs.is_empty() {
        return Ok(());
    }
    let (contacts, keys): (Vec<i64>, Vec<String>) = pairs.into_iter().unzip();
    conn.execute_raw(statement(
        "DELETE FROM contact_tags ct \
         USING unnest($2::bigint[], $3::text[]) AS r(contact_id, name_key), tags t \
         WHERE t.workspace_id = $1 AND t.name_key = r.name_key \
         AND ct.contact_id = r.contact_id AND ct.tag_id = t.id",
        vec![workspace_id.0.into(), contacts.into(), keys.into()],
    ))
    .await?;
    Ok(())
}

/// Links contacts to tags (`contact_rows::link_tags` on PostgreSQL);
/// existing links are kept.
pub(crate) async fn insert_tag_links<C: ConnectionTrait>(
    conn: &C,
    pairs: &[(i64, i64)],
) -> Result<(), StoreError> {
    if pairs.is_empty() {
        return Ok(());
    }
    let (contacts, tags): (Vec<i64>, Vec<i64>) = pairs.iter().copied().unzip();
    conn.execute_raw(statement(
        "INSERT INTO contact_tags (contact_id, tag_id) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING",
        vec![contacts.into(), tags.into()],
    ))
    .await?;
    Ok(())
}

/// One attribute value, as `json_to_recordset` reads it: the column of its
/// type is set, the others are NULL.
#[derive(Serialize)]
struct ValueRecord<'a> {
    c: i64,
    a: i64,
    t: Option<&'a str>,
    n: Option<f64>,
    b: Option<bool>,
    d: Option<Timestamp>,
}

/// Writes attribute values (contact, attribute, value).
pub(crate) async fn set_attributes<C: ConnectionTrait>(
    conn: &C,
    values: &[(i64, i64, &AttributeValue)],
) -> Result<(), StoreError> {
    if values.is_empty() {
        return Ok(());
    }
    let records: Vec<ValueRecord<'_>> = values
        .iter()
        .map(|(c, a, value)| {
            let mut r = ValueRecord {
                c: *c,
                a: *a,
                t: None,
                n: None,
                b: None,
                d: None,
            };
            match value {
                AttributeValue::Text(s) => r.t = Some(s),
                AttributeValue::Number(n) => r.n = Some(*n),
                AttributeValue::Boolean(b) => r.b = Some(*b),
                AttributeValue::Date(d) => r.d = Some(*d),
            }
            r
        })
        .collect();
    let json = serde_json::to_string(&records)?;
    conn.execute_raw(statement(
        "INSERT INTO contact_attributes \
         (contact_id, attribute_id, value_text, value_number, value_bool, value_date) \
         SELECT r.c, r.a, r.t, r.n, r.b, r.d FROM json_to_recordset($1::text::json) \
         AS r(c bigint, a bigint, t text, n double precision, b boolean, d timestamptz) \
         ON CONFLICT (contact_id, attribute_id) DO UPDATE SET \
         value_text = excluded.value_text, value_number = excluded.value_number, \
         value_bool = excluded.value_bool, value_date = excluded.value_date",
        vec![json.into()],
    ))
    .await?;
    Ok(())
}

/// Deletes attribute values (contact, attribute).
pub(crate) async fn unset_attributes<C: ConnectionTrait>(
    conn: &C,
    pairs: Vec<(i64, i64)>,
) -> Result<(), StoreError> {
    if pairs.is_empty() {
        return Ok(());
    }
    let (contacts, attributes): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
    conn.execute_raw(statement(
        "DELETE FROM contact_attributes v USING unnest($1::bigint[], $2::bigint[]) AS r(c, a) \
         WHERE v.contact_id = r.c AND v.attribute_id = r.a",
        vec![contacts.into(), attributes.into()],
    ))
    .await?;
    Ok(())
}

/// Records changes that differ per contact: (contact, change keys).
pub(crate) async fn record_changes<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    rows: Vec<(i64, String)>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (contacts, keys): (Vec<i64>, Vec<String>) = rows.into_iter().unzip();
    conn.execute_raw(statement(
        "INSERT INTO contact_changes (workspace_id, contact_id, changed, created_at) \
         SELECT $1, r.c, r.k, $2 FROM unnest($3::bigint[], $4::text[]) AS r(c, k)",
        vec![
            workspace_id.0.into(),
            now.get().into(),
            contacts.into(),
            keys.into(),
        ],
    ))
    .await?;
    Ok(())
}
