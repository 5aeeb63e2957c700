use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// PostgreSQL only: a function that adds and removes one contact's tags and
/// records the change, in one round trip instead of six (the store's most
/// frequent write). SQLite runs in-process, where round trips cost nothing,
/// and keeps the general path.
///
/// Arguments: workspace, contact, tags to add as a JSON array of
/// `[name, key]` pairs, keys to remove as a JSON array, the change keys,
/// the time. Returns the change's sequence number (the contact's new
/// version), or NULL when the workspace has no such contact.
///
/// Each statement of a volatile function takes a fresh snapshot: once the
/// UPDATE holds the contact's row lock, the statements after it see every
/// write to this contact committed before, exactly as the general path's
/// separate statements do.
const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION segments_retag_contact(
    p_workspace bigint,
    p_contact bigint,
    p_add jsonb,
    p_remove jsonb,
    p_changed text,
    p_now timestamptz
) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_seq bigint;
BEGIN
    UPDATE contacts SET updated_at = p_now
    WHERE id = p_contact AND workspace_id = p_workspace;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF jsonb_array_length(p_add) > 0 THEN
        -- Tags are created once and applied many times: insert only the
        -- missing ones; a concurrent writer creating the same tag wins.
        INSERT INTO tags (workspace_id, name, name_key, created_at)
        SELECT p_workspace, pair->>0, pair->>1, p_now
        FROM jsonb_array_elements(p_add) AS pair
        WHERE NOT EXISTS (
            SELECT 1 FROM tags t
            WHERE t.workspace_id = p_workspace AND t.name_key = pair->>1
        )
        ON CONFLICT (workspace_id, name_key) DO NOTHING;
        INSERT INTO contact_tags (contact_id, tag_id)
        SELECT p_contact, t.id
        FROM tags t
        WHERE t.workspace_id = p_workspace
          AND t.name_key IN (SELECT pair->>1 FROM jsonb_array_elements(p_add) AS pair)
        ON CONFLICT DO NOTHING;
    END IF;
    IF jsonb_array_length(p_remove) > 0 THEN
        DELETE FROM contact_tags ct
        USING tags t
        WHERE ct.contact_id = p_contact
          AND ct.tag_id = t.id
          AND t.workspace_id = p_workspace
          AND t.name_key IN (SELECT jsonb_array_elements_text(p_remove));
    END IF;
    INSERT INTO contact_changes (workspace_id, contact_id, changed, created_at)
    VALUES (p_workspace, p_contact, p_changed, p_now)
    RETURNING seq INTO v_seq;
    RETURN v_seq;
END
$fn$;
"#;

const DROP: &str = "DROP FUNCTION IF EXISTS segments_retag_contact(bigint, bigint, jsonb, jsonb, text, timestamptz)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(CREATE).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(DROP).await?;
        }
        Ok(())
    }
}
