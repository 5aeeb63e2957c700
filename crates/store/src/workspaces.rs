//! Workspaces and their API keys.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use segments_domain::{ApiKeyId, Label, Timestamp, WorkspaceId};
use sha2::{Digest, Sha256};

use crate::entities::{api_key, workspace};
use crate::{Store, StoreError};

/// Every key starts with this, so leaked keys are recognisable by scanners.
const KEY_PREFIX: &str = "seg_";

#[derive(Debug, Clone)]
pub struct WorkspaceRecord {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    /// The key's first characters, enough to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A newly created key: the only moment its secret exists outside the client.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub secret: String,
}

/// Who is calling: the workspace a valid key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub workspace_id: WorkspaceId,
    pub key_id: ApiKeyId,
}

impl From<api_key::Model> for ApiKeyRecord {
    fn from(m: api_key::Model) -> Self {
        Self {
            id: ApiKeyId(m.id),
            name: m.name,
            prefix: m.prefix,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

async fn insert_key<C: sea_orm::ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    name: &Label,
) -> Result<IssuedKey, StoreError> {
    let secret = new_secret();
    let model = api_key::ActiveModel {
        workspace_id: Set(workspace_id.0),
        name: Set(name.as_str().to_owned()),
        prefix: Set(secret.chars().take(KEY_PREFIX.len() + 8).collect()),
        secret_hash: Set(hash_secret(&secret)),
        created_at: Set(Timestamp::now().get()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(IssuedKey {
        record: model.into(),
        secret,
    })
}

impl Store {
    /// Creates a workspace and its first API key.
    pub async fn create_workspace(
        &self,
        name: &Label,
    ) -> Result<(WorkspaceRecord, IssuedKey), StoreError> {
        let txn = self.begin_write().await?;
        let ws = workspace::ActiveModel {
            name: Set(name.as_str().to_owned()),
            created_at: Set(Timestamp::now().get()),
            catalog_version: Set(0),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let key = insert_key(
            &txn,
            WorkspaceId(ws.id),
            &Label::parse("default").map_err(|e| sea_orm::DbErr::Custom(e.message))?,
        )
        .await?;
        txn.commit().await?;
        Ok((
            WorkspaceRecord {
                id: WorkspaceId(ws.id),
                name: ws.name,
                created_at: ws.created_at,
            },
            key,
        ))
    }

    pub async fn create_api_key(
        &self,
        workspace_id: WorkspaceId,
        name: &Label,
    ) -> Result<IssuedKey, StoreError> {
        self.retrying(workspace_id, async || {
            insert_key(&self.db, workspace_id, name).await
        })
        .await
    }

    pub async fn list_api_keys(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::WorkspaceId.eq(workspace_id.0))
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ApiKeyRecord::from)
            .collect())
    }

    /// Revokes a key. Refuses to revoke the workspace's last active key, which
    /// would lock its owners out with no way back but the CLI.
    pub async fn revoke_api_key(
        &self,
        workspace_id: WorkspaceId,
        key_id: ApiKeyId,
    ) -> Result<ApiKeyRecord, StoreError> {
        self.retrying(workspace_id, async || {
            self.revoke_api_key_once(workspace_id, key_id).await
        })
        .await
    }

    async fn revoke_api_key_once(
        &self,
        workspace_id: WorkspaceId,
        key_id: ApiKeyId,
    ) -> Result<ApiKeyRecord, StoreError> {
        let txn = self.begin_write().await?;
        // The workspace's row lock queues its revocations, so the count of
        // active keys below is still true when this one is revoked: two keys
        // revoking each other at once cannot leave the workspace keyless.
        // (SQLite's single writer queues them already.)
        if self.backend() == sea_orm::DbBackend::Postgres {
            workspace::Entity::find_by_id(workspace_id.0)
                .lock_exclusive()
                .one(&txn)
                .await?;
        }
        let key = api_key::Entity::find_by_id(key_id.0)
            .filter(api_key::Column::WorkspaceId.eq(workspace_id.0))
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::not_found("api key", key_id))?;
        if key.revoked_at.is_some() {
            return Ok(key.into());
        }
        let active = api_key::Entity::find()
            .filter(api_key::Column::WorkspaceId.eq(workspace_id.0))
            .filter(api_key::Column::RevokedAt.is_null())
            .count(&txn)
            .await?;
        if active <= 1 {
            return Err(StoreError::Conflict {
                code: "last_active_key",
                message: "this is the workspace's last active API key; create another one first"
                    .into(),
                pointer: None,
            });
        }
        let mut active_model: api_key::ActiveModel = key.into();
        active_model.revoked_at = Set(Some(Timestamp::now().get()));
        let key = active_model.update(&txn).await?;
        txn.commit().await?;
        Ok(key.into())
    }

    /// Whether the workspace exists.
    pub(crate) async fn workspace_exists(&self, id: WorkspaceId) -> Result<bool, StoreError> {
        Ok(workspace::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Finds the workspace of an active key; `None` for unknown or revoked keys.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        if !secret.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let key = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(hash_secret(secret)))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?;
        Ok(key.map(|k| Principal {
            workspace_id: WorkspaceId(k.workspace_id),
            key_id: ApiKeyId(k.id),
        }))
    }
}
