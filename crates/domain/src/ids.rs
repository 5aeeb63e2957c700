//! Identifiers. Each is a distinct type so that a tag id can never be passed
//! where a contact id is expected.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A tenant. Every other row belongs to exactly one workspace.
    WorkspaceId
);
id_type!(
    /// A contact, unique across all workspaces.
    ContactId
);
id_type!(
    /// A tag of one workspace.
    TagId
);
id_type!(
    /// A custom attribute definition of one workspace.
    AttributeId
);
id_type!(
    /// An API key of one workspace.
    ApiKeyId
);
id_type!(
    /// A segment of one workspace.
    SegmentId
);
