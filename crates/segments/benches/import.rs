//! `segments import` of a CSV into a fresh PostgreSQL database, beside the
//! floor measured in the same run: the same rows loaded into the same
//! migrated, indexed tables by PostgreSQL itself — `COPY` into a staging
//! table, then set-based statements into contacts, tags, tag links,
//! attribute values and the change log (`FLOOR` below).
//!
//! Each phase imports one file twice: once creating every contact, once
//! updating every one (new names, scores, plans and tags).
//!
//! Run: `cargo bench -p segments --bench import`
//! (`IMPORT_CONTACTS=1000000` for a million; `IMPORT_PHASES=ours` or
//! `floor` runs one side; `BENCH_POSTGRES` is the server, default
//! `postgres://postgres@127.0.0.1:5432`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use segments_conditions::Registry;
use segments_domain::{AttributeKey, AttributeType, Label};
use segments_store::{DatabaseSettings, Store};

const BIN: &str = env!("CARGO_BIN_EXE_segments");
const TAGS: usize = 50;
const PLANS: [&str; 3] = ["free", "pro", "team"];
const CHANNELS: [&str; 4] = ["whatsapp", "sms", "email", "instagram"];

/// What PostgreSQL alone does with the same file: the floor.
const FLOOR: &str = r"
\set ON_ERROR_STOP 1
BEGIN;
CREATE TEMP TABLE staging (
  external_id text, name text, email text, phone text, channel text,
  opted_in boolean, first_contacted_at timestamptz, tags text,
  plan text, score double precision, renewal timestamptz
) ON COMMIT DROP;
\copy staging FROM '@FILE@' WITH (FORMAT csv, HEADER true)
INSERT INTO tags (workspace_id, name, name_key, created_at)
  SELECT DISTINCT :ws, t, lower(t), now()
  FROM staging, unnest(string_to_array(tags, '|')) AS t
  ON CONFLICT (workspace_id, name_key) DO NOTHING;
CREATE TEMP TABLE written ON COMMIT DROP AS
  WITH up AS (
    INSERT INTO contacts (workspace_id, external_id, name, phone, email, channel,
                          opted_in, opted_in_at, first_contacted_at, created_at, updated_at)
    SELECT :ws, external_id, name, phone, email, channel,
           opted_in, CASE WHEN opted_in THEN now() END, first_contacted_at, now(), now()
    FROM staging
    ON CONFLICT (workspace_id, external_id) DO UPDATE SET
      name = excluded.name, phone = excluded.phone, email = excluded.email,
      channel = excluded.channel, opted_in = excluded.opted_in,
      opted_in_at = excluded.opted_in_at, first_contacted_at = excluded.first_contacted_at,
      updated_at = excluded.updated_at
    RETURNING id, external_id)
  SELECT up.id, s.tags, s.plan, s.score, s.renewal FROM up JOIN staging s USING (external_id);
DELETE FROM contact_tags WHERE contact_id IN (SELECT id FROM written);
INSERT INTO contact_tags (contact_id, tag_id)
  SELECT w.id, t.id
  FROM written w, unnest(string_to_array(w.tags, '|')) AS n
  JOIN tags t ON t.workspace_id = :ws AND t.name_key = lower(n)
  ON CONFLICT DO NOTHING;
INSERT INTO contact_attributes (contact_id, attribute_id, value_text, value_number, value_bool, value_date)
  SELECT w.id, a.id,
         CASE a.key WHEN 'plan' THEN w.plan END,
         CASE a.key WHEN 'score' THEN w.score END,
         NULL,
         CASE a.key WHEN 'renewal' THEN w.renewal END
  FROM written w CROSS JOIN attribute_definitions a
  WHERE a.workspace_id = :ws
  ON CONFLICT (contact_id, attribute_id) DO UPDATE SET
    value_text = excluded.value_text, value_number = excluded.value_number,
    value_bool = excluded.value_bool, value_date = excluded.value_date;
INSERT INTO contact_changes (workspace_id, contact_id, changed, created_at)
  SELECT :ws, id, '*', now() FROM written;
COMMIT;
";

fn server() -> String {
    std::env::var("BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

fn psql(database: &str, args: &[&str]) {
    let status = Command::new("psql")
        .arg(format!("{}/{database}", server()))
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .status()
        .expect("psql");
    assert!(status.success(), "psql {args:?} failed");
}

/// The `round`th version of `contacts` rows (0 creates, 1 changes every
/// row's name, score, plan and tags).
fn write_csv(path: &Path, contacts: usize, round: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        out,
        "external_id,name,email,phone,channel,opted_in,first_contacted_at,tags,\
         attributes.plan,attributes.score,attributes.renewal"
    )
    .unwrap();
    for i in 0..contacts {
        // 1–3 of 50 tags, spread by a multiplicative hash.
        let h = i.wrapping_mul(2_654_435_761) + round * 7;
        let tags: Vec<String> = (0..1 + h % 3)
            .map(|k| format!("tag-{}", (h / 3 + k * 17) % TAGS))
            .collect();
        writeln!(
            out,
            "ext-{i},Contact {i} r{round},c{i}@example.com,+1555{i:07},{},{},2024-05-{:02}T10:00:00Z,{},{},{},2025-{:02}-15",
            CHANNELS[i % CHANNELS.len()],
            i % 10 < 7,
            1 + i % 28,
            tags.join("|"),
            PLANS[(i + round) % PLANS.len()],
            (i % 1000) + round,
            1 + (i + round) % 12,
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// A fresh database, migrated, with workspace 1 and its three attributes.
async fn fresh_database(name: &str) -> String {
    psql(
        "postgres",
        &["-c", &format!("DROP DATABASE IF EXISTS {name}")],
    );
    psql("postgres", &["-c", &format!("CREATE DATABASE {name}")]);
    let url = format!("{}/{name}", server());
    let store = Store::connect(
        &DatabaseSettings {
            url: url.clone(),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(30),
            analytics: Default::default(),
        },
        Arc::new(Registry::builtin()),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let (ws, _) = store
        .create_workspace(&Label::parse("bench").unwrap())
        .await
        .unwrap();
    assert_eq!(ws.id.0, 1, "a fresh database's first workspace");
    for (key, ty) in [
        ("plan", AttributeType::Text),
        ("score", AttributeType::Number),
        ("renewal", AttributeType::Date),
    ] {
        store
            .define_attribute(ws.id, &AttributeKey::parse(key).unwrap(), ty)
            .await
            .unwrap();
    }
    drop(store);
    url
}

/// `segments import` of `file`: seconds and peak RSS in MB.
fn ours(url: &str, prefix: &str, file: &Path) -> (f64, f64) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(BIN)
        .args(["import", "--workspace", "1", "--quiet"])
        .arg(file)
        .env("SEGMENTS__DATABASE__URL", url)
        .env("SEGMENTS__REDIS__PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stdout}{stderr}");
    assert!(stdout.contains(" 0 rejected"), "{stdout}");
    let kb: f64 = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0.0);
    (secs, kb / 1024.0)
}

/// The floor's load of `file`, in seconds.
fn floor(database: &str, file: &Path) -> f64 {
    let script = file.with_extension("sql");
    // psql does not interpolate variables into `\copy`: the path is
    // written into the script.
    let path = file.display().to_string().replace('\'', "''");
    std::fs::write(&script, FLOOR.replace("@FILE@", &path)).unwrap();
    let started = Instant::now();
    psql(database, &["-v", "ws=1", "-f", script.to_str().unwrap()]);
    started.elapsed().as_secs_f64()
}

fn count(database: &str, table: &str) -> u64 {
    let out = Command::new("psql")
        .arg(format!("{}/{database}", server()))
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            &format!("SELECT count(*) FROM {table}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn clean_redis(prefix: &str) {
    let _ = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "redis-cli --scan --pattern '{prefix}*' | xargs -r redis-cli DEL > /dev/null"
        ))
        .status();
}

#[tokio::main]
async fn main() {
    let contacts: usize = std::env::var("IMPORT_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let phases = std::env::var("IMPORT_PHASES").unwrap_or_else(|_| "ours,floor".into());
    let dir: PathBuf =
        std::env::temp_dir().join(format!("segments-bench-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = (0..2)
        .map(|round| {
            let path = dir.join(format!("round{round}.csv"));
            write_csv(&path, contacts, round);
            path
        })
        .collect();
    let pid = std::process::id();
    let mut results: Vec<(String, [f64; 2])> = Vec::new();
    for phase in phases.split(',') {
        let database = format!("segments_bench_import_{phase}_{pid}");
        fresh_database(&database).await;
        let url = format!("{}/{database}", server());
        let prefix = format!("bench-import-{pid}");
        let mut secs = [0.0; 2];
        for (round, file) in files.iter().enumerate() {
            secs[round] = match phase {
                "ours" => {
                    let (s, rss) = ours(&url, &prefix, file);
                    println!("ours  round {round}: {s:.2} s, peak RSS {rss:.0} MB");
                    s
                }
                "floor" => {
                    let s = floor(&database, file);
                    println!("floor round {round}: {s:.2} s");
                    s
                }
                other => panic!("unknown phase {other}: ours or floor"),
            };
        }
        for table in [
            "contacts",
            "contact_tags",
            "contact_attributes",
            "contact_changes",
        ] {
            println!("  {phase} {table}: {}", count(&database, table));
        }
        clean_redis(&prefix);
        psql("postgres", &["-c", &format!("DROP DATABASE {database}")]);
        results.push((phase.to_owned(), secs));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n{contacts} contacts    insert            update");
    for (phase, [insert, update]) in &results {
        println!(
            "{phase:6} {insert:8.2} s ({:7.0}/s)  {update:8.2} s ({:7.0}/s)",
            contacts as f64 / insert,
            contacts as f64 / update
        );
    }
    if let (Some(ours), Some(floor)) = (
        results.iter().find(|r| r.0 == "ours"),
        results.iter().find(|r| r.0 == "floor"),
    ) {
        println!(
            "ours / floor: insert {:.2}x, update {:.2}x",
            ours.1[0] / floor.1[0],
            ours.1[1] / floor.1[1]
        );
    }
}
