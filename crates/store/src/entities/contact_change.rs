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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
