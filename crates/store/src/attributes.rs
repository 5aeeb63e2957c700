//! Custom attribute definitions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder,
};
use segments_domain::limits::MAX_ATTRIBUTE_DEFINITIONS;
use segments_domain::{
    AttributeId, AttributeKey, AttributeType, FieldError, Timestamp, Violations, WorkspaceId,
};

use crate::engine::bump_catalog;
use crate::entities::attribute_definition;
use crate::error::is_unique_violation;
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDefinition {
    pub id: AttributeId,
    pub key: String,
    pub r#type: AttributeType,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<attribute_definition::Model> for AttributeDefinition {
    type Error = StoreError;

    fn try_from(m: attribute_definition::Model) -> Result<Self, Self::Error> {
        let ty = AttributeType::parse(&m.r#type)
            .map_err(|e| sea_orm::DbErr::Custom(format!("attribute {}: {e}", m.id)))?;
        Ok(Self {
            id: AttributeId(m.id),
            key: m.key,
            r#type: ty,
            created_at: m.created_at,
        })
    }
}

/// Id and type of every attribute the workspace declares, by key.
pub(crate) async fn definitions<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
) -> Result<HashMap<String, (AttributeId, AttributeType)>, StoreError> {
    attribute_definition::Entity::find()
        .filter(attribute_definition::Column::WorkspaceId.eq(workspace_id.0))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| AttributeDefinition::try_from(m).map(|d| (d.key, (d.id, d.r#type))))
        .collect()
}

impl Store {
    pub async fn define_attribute(
        &self,
        workspace_id: WorkspaceId,
        key: &AttributeKey,
        ty: AttributeType,
    ) -> Result<AttributeDefinition, StoreError> {
        self.retrying(workspace_id, async || {
            self.define_attribute_once(workspace_id, key, ty).await
        })
        .await
    }

    async fn define_attribute_once(
        &self,
        workspace_id: WorkspaceId,
        key: &AttributeKey,
        ty: AttributeType,
    ) -> Result<AttributeDefinition, StoreError> {
        let txn = self.begin_write().await?;
        bump_catalog(&txn, workspace_id).await?;
        let count = attribute_definition::Entity::find()
            .filter(attribute_definition::Column::WorkspaceId.eq(workspace_id.0))
            .count(&txn)
            .await?;
        if count >= MAX_ATTRIBUTE_DEFINITIONS {
            return Err(Violations::one(
                FieldError::new(
                    "limit_reached",
                    format!(
                        "a workspace may declare at most {MAX_ATTRIBUTE_DEFINITIONS} attributes"
                    ),
                )
                .at("/key"),
            )
            .into());
        }
        let inserted = attribute_definition::ActiveModel {
            workspace_id: Set(workspace_id.0),
            key: Set(key.as_str().to_owned()),
            r#type: Set(ty.as_str().to_owned()),
            created_at: Set(Timestamp::now().get()),
            ..Default::default()
        }
        .insert(&txn)
        .await;
        let model = match inserted {
            Ok(m) => m,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "attribute_exists",
                    message: format!("attribute `{key}` is already declared"),
                    pointer: Some("/key".into()),
                });
            }
            Err(e) => return Err(e.into()),
        };
        txn.commit().await?;
        model.try_into()
    }

    pub async fn list_attributes(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Vec<AttributeDefinition>, StoreError> {
        attribute_definition::Entity::find()
            .filter(attribute_definition::Column::WorkspaceId.eq(workspace_id.0))
            .order_by_asc(attribute_definition::Column::Key)
            .all(&self.db)
            .await?
            .into_iter()
            .map(AttributeDefinition::try_from)
            .collect()
    }

    /// Deletes a definition and, through the foreign key, every value of it.
    pub async fn delete_attribute(
        &self,
        workspace_id: WorkspaceId,
        key: &str,
    ) -> Result<(), StoreError> {
        self.retrying(workspace_id, async || {
            self.delete_attribute_once(workspace_id, key).await
        })
        .await
    }

    async fn delete_attribute_once(
        &self,
        workspace_id: WorkspaceId,
        key: &str,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        bump_catalog(&txn, workspace_id).await?;
        // Deleting it would leave the segments that read it matching nobody.
        // Checked after the catalog lock, so no segment that starts reading
        // it can commit in between.
        let readers = self
            .load_catalog_in(&txn, workspace_id)
            .await?
            .readers_of_attribute(key);
        if !readers.is_empty() {
            return Err(StoreError::Conflict {
                code: "attribute_in_use",
                message: format!(
                    "attribute `{key}` is read by segment(s) {}; change their conditions first",
                    readers.join(", ")
                ),
                pointer: None,
            });
        }
        let result = attribute_definition::Entity::delete_many()
            .filter(attribute_definition::Column::WorkspaceId.eq(workspace_id.0))
            .filter(attribute_definition::Column::Key.eq(key))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("attribute", key));
        }
        txn.commit().await?;
        Ok(())
    }
}
