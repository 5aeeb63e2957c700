//! The contact tables as conditions see them. Plugins build their SQL over
//! these names; the store's migrations create them.

use sea_query::{Expr, Iden};

/// The expression type conditions compile to (sea-query's).
pub use sea_query::Expr as SqlExpr;
pub use sea_query::ExprTrait as SqlExprTrait;

/// `contacts`, the row every condition is evaluated against.
#[derive(Debug, Clone, Copy, Iden)]
pub enum Contacts {
    Table,
    Id,
    WorkspaceId,
    ExternalId,
    Name,
    Phone,
    Email,
    Channel,
    OptedIn,
    FirstContactedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub enum ContactTags {
    Table,
    ContactId,
    TagId,
}

/// `tags.name_key` is the case-folded name ([`segments_domain::text::tag_key`]).
#[derive(Debug, Clone, Copy, Iden)]
pub enum Tags {
    Table,
    Id,
    WorkspaceId,
    NameKey,
}

#[derive(Debug, Clone, Copy, Iden)]
pub enum ContactAttributes {
    Table,
    ContactId,
    AttributeId,
    ValueText,
    ValueNumber,
    ValueBool,
    ValueDate,
}

/// Hand-made memberships of static segments.
#[derive(Debug, Clone, Copy, Iden)]
pub enum SegmentMembers {
    Table,
    SegmentId,
    ContactId,
}

/// A column of the contact being evaluated.
pub fn contact(column: Contacts) -> Expr {
    Expr::col((Contacts::Table, column))
}
