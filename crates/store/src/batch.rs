//! Splitting multi-row statements to fit the backends' bind-parameter limits
//! (SQLite: 32,766; PostgreSQL: 65,535).

/// Most bind parameters one statement may carry, below both backends' limits.
const MAX_PARAMS: usize = 30_000;

/// How many rows of `columns` values fit in one statement.
pub(crate) fn rows_per_statement(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).max(1)
}

/// Most values in one `IN (...)` list.
pub(crate) const MAX_IN_LIST: usize = 10_000;

/// Splits the `limit + 1` rows a keyset page query fetched into the page
/// and, when there is more, the key the next page starts after.
pub(crate) fn split_page<T, K>(
    mut rows: Vec<T>,
    limit: u64,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<K>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(key);
        (rows, next)
    } else {
        (rows, None)
    }
}
