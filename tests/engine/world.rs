//! Random worlds (contacts, attributes, segments) and random condition trees.

use std::collections::HashMap;

use chrono::{Duration, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::subsequence;
use segments_conditions::{Limits, Registry};
use segments_domain::{
    AttributeKey, AttributeType, Channel, ContactId, ContactPatch, Email, ExternalId, SegmentId,
    TagName, Timestamp, WorkspaceId,
};
use segments_store::{SegmentRule, Store};
use serde_json::{Value, json};

/// The instant every evaluation of the test measures relative dates from.
pub fn now() -> Timestamp {
    Timestamp::parse(
        Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap() + Duration::microseconds(123_456),
    )
    .unwrap()
}

/// Instants on and around the boundaries relative conditions draw.
fn date_pool() -> Vec<Timestamp> {
    let now = now().get();
    let mut pool = Vec::new();
    for days in [0, 1, 7, 30, 365] {
        for micros in [-1, 0, 1] {
            pool.push(now - Duration::days(days) + Duration::microseconds(micros));
        }
    }
    pool.push(now + Duration::days(3));
    pool.push(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
    pool.push(Utc.with_ymd_and_hms(2026, 6, 15, 0, 0, 0).unwrap());
    pool.into_iter()
        .map(|t| Timestamp::parse(t).unwrap())
        .collect()
}

fn date_string(t: Timestamp) -> String {
    t.get().to_rfc3339_opts(SecondsFormat::Micros, true)
}

const CONTACT_TAGS: [&str; 5] = ["vip", "VIP", "new", "Ünïcode", "promo"];
const QUERY_TAGS: [&str; 7] = ["vip", "VIP", "new", "ünïcode", "ÜNÏCODE", "promo", "ghost"];
const CHANNELS: [&str; 3] = ["whatsapp", "sms", "email"];
const QUERY_CHANNELS: [&str; 4] = ["whatsapp", "sms", "email", "telegram"];
const EMAILS: [&str; 4] = [
    "a@example.com",
    "B@Example.COM",
    "c@other.org",
    "d@sub.example.com",
];
const QUERY_DOMAINS: [&str; 4] = ["example.com", "other.org", "EXAMPLE.com", "sub.example.com"];
const SCORES: [f64; 6] = [-1.5, 0.0, 1.0, 2.5, 3.0, 1e9];
const PLANS: [&str; 7] = ["", "gold", "Gold", "gold plus", "über", "silver", "g"];

#[derive(Debug, Clone)]
pub struct ContactSpec {
    pub email: Option<&'static str>,
    pub channel: Option<&'static str>,
    pub opted_in: bool,
    pub first_contacted: Option<Timestamp>,
    pub tags: Vec<&'static str>,
    pub score: Option<f64>,
    pub plan: Option<&'static str>,
    pub vip: Option<bool>,
    pub renewal: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct World {
    pub contacts: Vec<ContactSpec>,
    /// Indexes of the contacts added by hand to the static segment.
    pub static_members: Vec<usize>,
    /// The condition tree of a dynamic segment other trees refer to.
    pub dynamic: Value,
}

fn date() -> impl Strategy<Value = Timestamp> {
    proptest::sample::select(date_pool())
}

fn contact() -> impl Strategy<Value = ContactSpec> {
    (
        proptest::option::of(proptest::sample::select(CHANNELS.to_vec())),
        any::<bool>(),
        proptest::option::of(date()),
        subsequence(CONTACT_TAGS.to_vec(), 0..=3),
        proptest::option::of(proptest::sample::select(SCORES.to_vec())),
        proptest::option::of(proptest::sample::select(PLANS.to_vec())),
        proptest::option::of(any::<bool>()),
        proptest::option::of(date()),
        proptest::option::of(proptest::sample::select(EMAILS.to_vec())),
    )
        .prop_map(
            |(channel, opted_in, first_contacted, tags, score, plan, vip, renewal, email)| {
                ContactSpec {
                    email,
                    channel,
                    opted_in,
                    first_contacted,
                    tags,
                    score,
                    plan,
                    vip,
                    renewal,
                }
            },
        )
}

pub fn world_strategy() -> impl Strategy<Value = World> {
    proptest::collection::vec(contact(), 1..30).prop_flat_map(|contacts| {
        let n = contacts.len();
        (
            Just(contacts),
            subsequence((0..n).collect::<Vec<_>>(), 0..=n),
            tree(false),
        )
            .prop_map(|(contacts, static_members, dynamic)| World {
                contacts,
                static_members,
                dynamic,
            })
    })
}

fn op<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = T> + use<T> {
    proptest::sample::select(items.to_vec())
}

fn leaf(with_segments: bool) -> BoxedStrategy<Value> {
    let tag = (
        op(&["has_any", "has_all", "has_none"]),
        subsequence(QUERY_TAGS.to_vec(), 1..=3),
    )
        .prop_map(|(op, tags)| json!({"type": "tag", "params": {"op": op, "tags": tags}}));
    let channel = (
        op(&["in", "not_in"]),
        subsequence(QUERY_CHANNELS.to_vec(), 1..=3),
    )
        .prop_map(
            |(op, channels)| json!({"type": "channel", "params": {"op": op, "channels": channels}}),
        );
    let opt_in = any::<bool>().prop_map(|b| json!({"type": "opt_in", "params": {"opted_in": b}}));
    let first_contacted = prop_oneof![
        (date(), date()).prop_map(|(a, b)| {
            let (from, to) = if a <= b { (a, b) } else { (b, a) };
            json!({"type": "first_contacted", "params": {"op": "between", "from": date_string(from), "to": date_string(to)}})
        }),
        (op(&["within_last_days", "more_than_days_ago"]), op(&[0u32, 1, 7, 30])).prop_map(|(op, days)| {
            json!({"type": "first_contacted", "params": {"op": op, "days": days}})
        }),
    ];
    let existence = (
        op(&["score", "plan", "vip", "renewal"]),
        op(&["exists", "not_exists"]),
    )
        .prop_map(|(key, op)| json!({"type": "attribute", "params": {"key": key, "op": op}}));
    let score = prop_oneof![
        (op(&["eq", "ne", "lt", "le", "gt", "ge"]), op(&SCORES)).prop_map(|(op, v)| {
            json!({"type": "attribute", "params": {"key": "score", "op": op, "value": v}})
        }),
        (op(&SCORES), op(&SCORES)).prop_map(|(a, b)| {
            json!({"type": "attribute", "params": {"key": "score", "op": "between", "min": a.min(b), "max": a.max(b)}})
        }),
    ];
    let plan = prop_oneof![
        (op(&["eq", "ne", "contains", "starts_with"]), op(&PLANS)).prop_map(|(op, v)| {
            json!({"type": "attribute", "params": {"key": "plan", "op": op, "value": v}})
        }),
        (op(&["in", "not_in"]), subsequence(PLANS.to_vec(), 1..=3)).prop_map(|(op, v)| {
            json!({"type": "attribute", "params": {"key": "plan", "op": op, "values": v}})
        }),
    ];
    let vip = any::<bool>().prop_map(
        |b| json!({"type": "attribute", "params": {"key": "vip", "op": "is", "value": b}}),
    );
    let renewal = prop_oneof![
        (op(&["before", "after"]), date()).prop_map(|(op, d)| {
            json!({"type": "attribute", "params": {"key": "renewal", "op": op, "value": date_string(d)}})
        }),
        (date(), date()).prop_map(|(a, b)| {
            let (min, max) = if a <= b { (a, b) } else { (b, a) };
            json!({"type": "attribute", "params": {"key": "renewal", "op": "between", "min": date_string(min), "max": date_string(max)}})
        }),
        (op(&["within_last_days", "more_than_days_ago"]), op(&[0u32, 1, 7, 30])).prop_map(|(op, days)| {
            json!({"type": "attribute", "params": {"key": "renewal", "op": op, "days": days}})
        }),
    ];
    let email = subsequence(QUERY_DOMAINS.to_vec(), 1..=2)
        .prop_map(|domains| json!({"type": "email_domain", "params": {"domains": domains}}));
    let segment = (op(&["member_of", "not_member_of"]), op(&[-1i64, -2, -3]))
        .prop_map(|(op, id)| json!({"type": "segment", "params": {"op": op, "segment_id": id}}));
    if with_segments {
        prop_oneof![
            tag,
            channel,
            opt_in,
            first_contacted,
            existence,
            score,
            plan,
            vip,
            renewal,
            email,
            segment
        ]
        .boxed()
    } else {
        prop_oneof![
            tag,
            channel,
            opt_in,
            first_contacted,
            existence,
            score,
            plan,
            vip,
            renewal,
            email
        ]
        .boxed()
    }
}

fn tree(with_segments: bool) -> impl Strategy<Value = Value> {
    leaf(with_segments).prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|c| json!({"all": c})),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|c| json!({"any": c})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

pub fn tree_strategy() -> impl Strategy<Value = Value> {
    tree(true)
}

/// A world as stored in one database: its ids there.
pub struct Installed {
    pub external_ids: HashMap<ContactId, String>,
    /// The static segment, the dynamic one, and one referring to both.
    pub segments: [SegmentId; 3],
}

impl Installed {
    /// Replaces the placeholder segment ids (-1, -2, -3) by this database's.
    pub fn resolve_segments(&self, tree: &Value) -> Value {
        match tree {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v.as_i64()) {
                            ("segment_id", Some(p)) if p < 0 => {
                                json!(self.segments[(-p - 1) as usize].0)
                            }
                            _ => self.resolve_segments(v),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.resolve_segments(v)).collect())
            }
            other => other.clone(),
        }
    }
}

impl World {
    pub async fn install(&self, store: &Store, ws: WorkspaceId, _registry: &Registry) -> Installed {
        for (key, ty) in [
            ("score", AttributeType::Number),
            ("plan", AttributeType::Text),
            ("vip", AttributeType::Boolean),
            ("renewal", AttributeType::Date),
        ] {
            store
                .define_attribute(ws, &AttributeKey::parse(key).unwrap(), ty)
                .await
                .unwrap();
        }
        let patches: Vec<(usize, ContactPatch)> = self
            .contacts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut attributes = std::collections::BTreeMap::new();
                let key = |k: &str| AttributeKey::parse(k).unwrap();
                attributes.insert(key("score"), c.score.map(|v| json!(v)));
                attributes.insert(key("plan"), c.plan.map(|v| json!(v)));
                attributes.insert(key("vip"), c.vip.map(|v| json!(v)));
                attributes.insert(key("renewal"), c.renewal.map(|v| json!(date_string(v))));
                let patch = ContactPatch {
                    external_id: Some(Some(ExternalId::parse(&format!("c{i}")).unwrap())),
                    channel: Some(c.channel.map(|ch| Channel::parse(ch).unwrap())),
                    email: Some(c.email.map(|e| Email::parse(e).unwrap())),
                    opted_in: Some(c.opted_in),
                    first_contacted_at: Some(c.first_contacted),
                    tags: Some(c.tags.iter().map(|t| TagName::parse(t).unwrap()).collect()),
                    attributes,
                    ..ContactPatch::default()
                };
                (i, patch)
            })
            .collect();
        let outcome = store.upsert_contacts(ws, &patches).await.unwrap();
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        let ids: Vec<ContactId> = outcome.stored.iter().map(|s| s.id).collect();
        let external_ids = outcome
            .stored
            .iter()
            .map(|s| (s.id, format!("c{}", s.index)))
            .collect();

        let s1 = store
            .create_segment(ws, "static", &SegmentRule::Static, Limits::default())
            .await
            .unwrap()
            .id;
        let members: Vec<ContactId> = self.static_members.iter().map(|i| ids[*i]).collect();
        store
            .change_static_members(ws, s1, &members, true)
            .await
            .unwrap();
        let d1 = store
            .create_segment(
                ws,
                "dynamic",
                &SegmentRule::Dynamic(self.dynamic.clone()),
                Limits::default(),
            )
            .await
            .unwrap()
            .id;
        let d2_tree = json!({"any": [
            {"type": "segment", "params": {"op": "member_of", "segment_id": s1.0}},
            {"all": [
                {"type": "segment", "params": {"op": "member_of", "segment_id": d1.0}},
                {"type": "opt_in", "params": {"opted_in": true}}
            ]}
        ]});
        let d2 = store
            .create_segment(
                ws,
                "nested",
                &SegmentRule::Dynamic(d2_tree),
                Limits::default(),
            )
            .await
            .unwrap()
            .id;
        Installed {
            external_ids,
            segments: [s1, d1, d2],
        }
    }
}
