//! JSON as requests write it.

/// JSON has a single number type (RFC 8259) and JSON Schema counts a number
/// with a zero fraction as an integer, so `2064.0` is a valid id and
/// `10509.0` a valid `ttl_seconds`; serde reads neither into an integer.
/// Rewrites every such number that fits an `i64` or a `u64` as an integer
/// and says whether any was rewritten. Fields that take any number read
/// integers too, so nothing else changes meaning.
pub fn integral_floats_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let Some(f) = n.as_f64().filter(|_| n.is_f64()) else {
                return false;
            };
            // 2^63 and 2^64 are exact as f64; the ranges below are what
            // `as` converts without saturating. A literal integer beyond
            // both ranges also arrives as a float, rounded.
            let integer = if f.fract() != 0.0 || !f.is_finite() {
                None
            } else if f > -9_223_372_036_854_775_808.0 && f < 9_223_372_036_854_775_808.0 {
                // -2^63 itself is left out: it is also what an integer
                // literal just below i64::MIN rounds to.
                Some(serde_json::Number::from(f as i64))
            } else if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                Some(serde_json::Number::from(f as u64))
            } else {
                None
            };
            match integer {
                Some(i) => {
                    *n = i;
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| integral_floats_as_integers(item) | any),
        Value::Object(fields) => fields
            .values_mut()
            .fold(false, |any, item| integral_floats_as_integers(item) | any),
        Value::Null | Value::Bool(_) | Value::String(_) => false,
    }
}
