//! `segments seed`: a deterministic generator of realistic contacts, for
//! benchmarks and demos.
//!
//! Skewed like real audiences: tags follow a Zipf law (a few tags on most
//! contacts, a long tail on few), ~20 attribute definitions of every type with
//! ~5 values per contact, channels weighted towards WhatsApp, ~70% opted in,
//! first contacts spread over the 3 years before a fixed instant. The same
//! `--seed` and `--contacts` always produce the same data.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segments_domain::{
    AttributeKey, AttributeType, Channel, ContactPatch, ExternalId, Label, Phone, TagName,
    Timestamp, WorkspaceId,
};
use segments_store::Store;
use serde_json::{Value, json};

const TAGS: usize = 50;
const BATCH: usize = 5_000;

const ATTRIBUTES: [(&str, AttributeType); 20] = [
    ("plan", AttributeType::Text),
    ("city", AttributeType::Text),
    ("language", AttributeType::Text),
    ("source", AttributeType::Text),
    ("company", AttributeType::Text),
    ("tier", AttributeType::Text),
    ("score", AttributeType::Number),
    ("lifetime_value", AttributeType::Number),
    ("orders", AttributeType::Number),
    ("age", AttributeType::Number),
    ("visits", AttributeType::Number),
    ("nps", AttributeType::Number),
    ("vip", AttributeType::Boolean),
    ("newsletter", AttributeType::Boolean),
    ("churn_risk", AttributeType::Boolean),
    ("beta", AttributeType::Boolean),
    ("renewal", AttributeType::Date),
    ("last_order", AttributeType::Date),
    ("signup", AttributeType::Date),
    ("birthday", AttributeType::Date),
];

const CHANNELS: [(&str, u32); 7] = [
    ("whatsapp", 45),
    ("instagram", 15),
    ("messenger", 8),
    ("sms", 14),
    ("email", 10),
    ("telegram", 5),
    ("webchat", 3),
];

/// The instant generated dates are measured back from.
fn anchor() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Cumulative Zipf weights (exponent 1.1) over the tag ranks.
fn zipf_cdf() -> Vec<f64> {
    let weights: Vec<f64> = (1..=TAGS).map(|k| 1.0 / (k as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn pick_zipf(rng: &mut StdRng, cdf: &[f64]) -> usize {
    let x: f64 = rng.random();
    cdf.iter().position(|c| x <= *c).unwrap_or(cdf.len() - 1)
}

fn pick_channel(rng: &mut StdRng) -> &'static str {
    let total: u32 = CHANNELS.iter().map(|c| c.1).sum();
    let mut x = rng.random_range(0..total);
    for (name, weight) in CHANNELS {
        if x < weight {
            return name;
        }
        x -= weight;
    }
    "whatsapp"
}

fn date_within(rng: &mut StdRng, days_back: i64, days_ahead: i64) -> String {
    let offset = rng.random_range(-days_back * 86_400..=days_ahead * 86_400);
    (anchor() + Duration::seconds(offset)).to_rfc3339()
}

fn value(rng: &mut StdRng, key: &str, ty: AttributeType) -> Value {
    match (key, ty) {
        ("plan", _) => {
            json!(["free", "starter", "pro", "business", "enterprise"][rng.random_range(0..5)])
        }
        ("language", _) => json!(["en", "es", "pt", "fr", "de", "it"][rng.random_range(0..6)]),
        ("tier", _) => json!(["bronze", "silver", "gold", "platinum"][rng.random_range(0..4)]),
        (_, AttributeType::Text) => json!(format!("{key}-{}", rng.random_range(0..200))),
        ("age", _) => json!(rng.random_range(16..90)),
        ("nps", _) => json!(rng.random_range(0..=10)),
        ("lifetime_value", _) => json!((rng.random::<f64>() * 5_000.0).round() / 100.0 * 100.0),
        (_, AttributeType::Number) => json!(rng.random_range(0..1_000)),
        (_, AttributeType::Boolean) => json!(rng.random_bool(0.3)),
        ("renewal", _) => json!(date_within(rng, 180, 365)),
        (_, AttributeType::Date) => json!(date_within(rng, 3 * 365, 0)),
    }
}

fn contact(rng: &mut StdRng, i: u64, cdf: &[f64]) -> anyhow::Result<ContactPatch> {
    let mut tags = Vec::new();
    for _ in 0..rng.random_range(0..=6) {
        tags.push(TagName::parse(&format!("tag-{:02}", pick_zipf(rng, cdf)))?);
    }
    let mut attributes = BTreeMap::new();
    while attributes.len() < 5 {
        let (key, ty) = ATTRIBUTES[rng.random_range(0..ATTRIBUTES.len())];
        attributes.insert(AttributeKey::parse(key)?, Some(value(rng, key, ty)));
    }
    let first_contacted = Timestamp::parse_str(&date_within(rng, 3 * 365, 0))?;
    Ok(ContactPatch {
        external_id: Some(Some(ExternalId::parse(&format!("seed-{i}"))?)),
        name: Some(Some(format!("Contact {i}"))),
        phone: Some(Some(Phone::parse(&format!("+1555{:07}", i % 10_000_000))?)),
        channel: Some(Some(Channel::parse(pick_channel(rng))?)),
        opted_in: Some(rng.random_bool(0.7)),
        first_contacted_at: Some(Some(first_contacted)),
        tags: Some(segments_domain::contact::dedup_tags(tags)),
        attributes,
        ..ContactPatch::default()
    })
}

/// Creates a workspace holding `contacts` generated contacts; prints its key.
pub async fn run(store: &Store, contacts: u64, seed: u64) -> anyhow::Result<()> {
    let (workspace, key) = store
        .create_workspace(
            &Label::parse(&format!("seed {seed} ({contacts} contacts)"))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .await?;
    define_attributes(store, workspace.id).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let cdf = zipf_cdf();
    let started = std::time::Instant::now();
    let mut done = 0u64;
    while done < contacts {
        let n = BATCH.min((contacts - done) as usize);
        let batch: Vec<(usize, ContactPatch)> = (0..n)
            .map(|j| contact(&mut rng, done + j as u64, &cdf).map(|p| (j, p)))
            .collect::<anyhow::Result<_>>()?;
        let outcome = store
            .upsert_contacts(workspace.id, &batch)
            .await
            .context("storing a batch")?;
        anyhow::ensure!(
            outcome.rejected.is_empty(),
            "generated contacts were rejected: {:?}",
            outcome.rejected.first()
        );
        done += n as u64;
        tracing::info!(
            done,
            total = contacts,
            rate = done as f64 / started.elapsed().as_secs_f64(),
            "seeding"
        );
    }
    store
        .refresh_statistics()
        .await
        .context("refreshing the planner's statistics")?;
    println!(
        "workspace {} seeded with {contacts} contacts in {:.1} s",
        workspace.id,
        started.elapsed().as_secs_f64()
    );
    println!("API key (shown once): {}", key.secret);
    Ok(())
}

async fn define_attributes(store: &Store, workspace: WorkspaceId) -> anyhow::Result<()> {
    for (key, ty) in ATTRIBUTES {
        store
            .define_attribute(workspace, &AttributeKey::parse(key)?, ty)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_generates_the_same_contacts() {
        let cdf = zipf_cdf();
        let generate = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|i| format!("{:?}", contact(&mut rng, i, &cdf).ok()))
                .collect::<Vec<_>>()
        };
        assert_eq!(generate(7), generate(7));
        assert_ne!(generate(7), generate(8));
    }

    #[test]
    fn tags_are_zipf_skewed() {
        let cdf = zipf_cdf();
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0u32; TAGS];
        for _ in 0..20_000 {
            counts[pick_zipf(&mut rng, &cdf)] += 1;
        }
        assert!(counts[0] > 5 * counts[9], "{counts:?}");
        assert!(counts[9] > counts[49], "{counts:?}");
    }
}
