use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub workspace_id: i64,
    pub contact_id: i64,
    /// Space-separated change keys (`DataRef::change_key`), or `*`.
    pub changed: String,
    pub created_at: DateTimeUtc,
    /// PostgreSQL: the writing transaction's id (a column default). SQLite:
    /// empty, the sequence number standing in (writers are serialized).
    pub xid: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
