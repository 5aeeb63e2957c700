//! Wire types: the JSON the API reads and writes, with their OpenAPI schemas.
//! The only place that knows the public shape of the data; conversion into
//! domain types happens here, once, with JSON Pointers for every failure.

pub mod api_key;
pub mod attribute;
pub mod contact;
pub mod health;
pub mod page;
pub mod segment;
pub mod tag;

use serde::{Deserialize, Deserializer};

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
