//! `segments import FILE`: contacts from CSV or NDJSON, streamed in batches
//! (memory stays flat whatever the file's size), validated exactly as the
//! API validates a bulk upsert, and idempotent by `external_id`.
//!
//! NDJSON: one JSON object per line, the shape of one item of
//! `POST /v1/contacts/bulk-upsert`.
//!
//! CSV: a header row naming the columns `external_id` (required), `name`,
//! `email`, `phone`, `channel`, `opted_in`, `opted_in_at`,
//! `first_contacted_at`, `tags` (names separated by `|`) and one
//! `attributes.<key>` column per attribute. An empty cell leaves the field
//! as it is; values are read by the attribute's declared type.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use segments_api::problem::ApiError;
use segments_api::wire::contact::ContactInput;
use segments_domain::{AttributeType, ContactPatch, Violations, WorkspaceId};
use segments_store::Store;
use segments_worker::JobQueue;
use serde_json::{Map, Value};

/// Rows written per statement batch (the store's own chunk size).
const BATCH: usize = 1_000;
/// Rejections kept for the summary; past it they are only counted.
const REJECTIONS_SHOWN: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "ndjson" | "jsonl" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

/// What `segments import` was asked to do.
#[derive(Debug)]
pub struct Request {
    pub path: PathBuf,
    pub workspace: WorkspaceId,
    pub format: Option<Format>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// One rejected row.
#[derive(Debug)]
pub struct Rejection {
    pub line: u64,
    pub problems: Vec<String>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub rejected: u64,
    /// The first rejections, by line.
    pub rejections: Vec<Rejection>,
    pub elapsed: Duration,
}

impl Summary {
    fn reject(&mut self, line: u64, problems: Vec<String>) {
        self.rejected += 1;
        if self.rejections.len() < REJECTIONS_SHOWN {
            self.rejections.push(Rejection { line, problems });
        }
    }

    pub fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let rate = if secs > 0.0 {
            (self.created + self.updated) as f64 / secs
        } else {
            0.0
        };
        println!(
            "{} row(s) in {secs:.1} s ({rate:.0} contacts/s): {} created, {} updated, {} rejected",
            self.rows, self.created, self.updated, self.rejected
        );
        for r in &self.rejections {
            println!("line {}: {}", r.line, r.problems.join("; "));
        }
        let hidden = self.rejected - self.rejections.len() as u64;
        if hidden > 0 {
            println!("… and {hidden} more rejected row(s)");
        }
    }
}

fn describe(violations: Violations) -> Vec<String> {
    violations
        .into_vec()
        .into_iter()
        .map(|v| {
            let at = if v.pointer.is_empty() {
                "/"
            } else {
                &v.pointer
            };
            format!("{at}: {} ({})", v.message, v.code)
        })
        .collect()
}

fn problems_of(error: ApiError) -> Vec<String> {
    match error {
        ApiError::Validation(v) => describe(v),
        ApiError::MalformedJson(m) => vec![format!("not valid JSON: {m}")],
        other => vec![other.to_string()],
    }
}

type Source = Box<dyn BufRead>;

/// A row's line number, and its patch or what is wrong with it.
type Row = (u64, Result<ContactPatch, Vec<String>>);

/// Turns rows into validated patches, one format or the other.
enum Rows {
    Ndjson {
        lines: std::io::Lines<Source>,
        line: u64,
    },
    Csv {
        records: csv::StringRecordsIntoIter<Source>,
        columns: Vec<Column>,
    },
}

/// What a CSV column holds.
#[derive(Debug, Clone)]
enum Column {
    Field(&'static str),
    Tags,
    Attribute(String, Option<AttributeType>),
}

const FIELDS: [&str; 8] = [
    "external_id",
    "name",
    "email",
    "phone",
    "channel",
    "opted_in",
    "opted_in_at",
    "first_contacted_at",
];

fn columns(
    headers: &csv::StringRecord,
    types: &HashMap<String, AttributeType>,
) -> anyhow::Result<Vec<Column>> {
    let mut columns = Vec::with_capacity(headers.len());
    for header in headers {
        let header = header.trim();
        let column = if let Some(field) = FIELDS.iter().find(|f| **f == header) {
            Column::Field(field)
        } else if header == "tags" {
            Column::Tags
        } else if let Some(key) = header.strip_prefix("attributes.") {
            Column::Attribute(key.to_owned(), types.get(key).copied())
        } else {
            bail!(
                "line 1: unknown column `{header}`; expected {}, tags or attributes.<key>",
                FIELDS.join(", ")
            );
        };
        columns.push(column);
    }
    if !columns
        .iter()
        .any(|c| matches!(c, Column::Field("external_id")))
    {
        bail!("line 1: an `external_id` column is required: imports update contacts by it");
    }
    Ok(columns)
}

fn boolean(cell: &str) -> Value {
    match cell.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Value::Bool(true),
        "false" | "no" | "0" => Value::Bool(false),
        // Left as text, so validation names the column and the value.
        _ => Value::String(cell.to_owned()),
    }
}

/// A CSV record as the JSON object the API would receive.
fn record_to_json(columns: &[Column], record: &csv::StringRecord) -> Value {
    let mut object = Map::new();
    let mut attributes = Map::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        match column {
            Column::Field("opted_in") => {
                object.insert("opted_in".into(), boolean(cell));
            }
            Column::Field(name) => {
                object.insert((*name).into(), Value::String(cell.to_owned()));
            }
            Column::Tags => {
                let tags = cell
                    .split('|')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| Value::String(t.to_owned()))
                    .collect();
                object.insert("tags".into(), Value::Array(tags));
            }
            Column::Attribute(key, ty) => {
                let value = match ty {
                    Some(AttributeType::Number) => cell
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or_else(|| Value::String(cell.to_owned()), Value::Number),
                    Some(AttributeType::Boolean) => boolean(cell),
                    _ => Value::String(cell.to_owned()),
                };
                attributes.insert(key.clone(), value);
            }
        }
    }
    if !attributes.is_empty() {
        object.insert("attributes".into(), Value::Object(attributes));
    }
    Value::Object(object)
}

fn validate(json: &[u8]) -> Result<ContactPatch, Vec<String>> {
    let input: ContactInput = segments_api::extract::json::parse(json).map_err(problems_of)?;
    input.into_patch().map_err(describe)
}

impl Rows {
    /// The next row: its line number and its patch or problems; `None` at
    /// the end. An unreadable file is an error.
    fn next_row(&mut self) -> anyhow::Result<Option<Row>> {
        match self {
            Self::Ndjson { lines, line } => loop {
                let Some(text) = lines.next() else {
                    return Ok(None);
                };
                *line += 1;
                let text = text.with_context(|| format!("reading line {line}"))?;
                if text.trim().is_empty() {
                    continue;
                }
                return Ok(Some((*line, validate(text.as_bytes()))));
            },
            Self::Csv { records, columns } => {
                let Some(record) = records.next() else {
                    return Ok(None);
                };
                match record {
                    Ok(record) => {
                        let line = record.position().map_or(0, csv::Position::line);
                        let json = record_to_json(columns, &record);
                        let patch = serde_json::to_vec(&json)
                            .map_err(|e| vec![e.to_string()])
                            .and_then(|bytes| validate(&bytes));
                        Ok(Some((line, patch)))
                    }
                    // A row with the wrong number of cells is that row's
                    // problem; an I/O error ends the import.
                    Err(e) => match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            pos,
                            expected_len,
                            len,
                        } => {
                            let line = pos.as_ref().map_or(0, csv::Position::line);
                            let problem =
                                format!("{len} cell(s) where the header has {expected_len}");
                            Ok(Some((line, Err(vec![problem]))))
                        }
                        csv::ErrorKind::Utf8 { pos, .. } => {
                            let line = pos.as_ref().map_or(0, csv::Position::line);
                            Ok(Some((line, Err(vec!["not valid UTF-8".to_owned()]))))
                        }
                        _ => Err(anyhow::Error::new(e).context("reading the CSV file")),
                    },
                }
            }
        }
    }
}

/// Imports the file, printing progress on stderr.
pub async fn run(
    store: &Store,
    jobs: Option<&JobQueue>,
    request: &Request,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let ws = request.workspace;
    if !store.workspace_ids().await?.contains(&ws) {
        bail!("workspace {ws} does not exist");
    }
    let format = request
        .format
        .or_else(|| Format::of(&request.path))
        .context(
            "cannot tell the format from the file name: pass --format csv or --format ndjson",
        )?;
    let file =
        File::open(&request.path).with_context(|| format!("opening {}", request.path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = progress_bar(request.progress, size);
    let reader: Source = Box::new(BufReader::with_capacity(1 << 16, progress.wrap_read(file)));
    let mut rows = match format {
        Format::Ndjson => Rows::Ndjson {
            lines: reader.lines(),
            line: 0,
        },
        Format::Csv => {
            let types: HashMap<String, AttributeType> = store
                .list_attributes(ws)
                .await?
                .into_iter()
                .map(|d| (d.key, d.r#type))
                .collect();
            let mut csv = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(reader);
            let headers = csv.headers().context("reading the CSV header")?.clone();
            let columns = columns(&headers, &types)?;
            Rows::Csv {
                records: csv.into_records(),
                columns,
            }
        }
    };
    let mut summary = Summary::default();
    let mut notify = jobs;
    let mut batch: Vec<(usize, ContactPatch)> = Vec::with_capacity(BATCH);
    loop {
        let next = rows.next_row()?;
        let done = next.is_none();
        if let Some((line, row)) = next {
            summary.rows += 1;
            match row {
                Ok(patch) => batch.push((usize::try_from(line).unwrap_or(usize::MAX), patch)),
                Err(problems) => summary.reject(line, problems),
            }
        }
        if batch.len() == BATCH || (done && !batch.is_empty()) {
            write(store, ws, &batch, &mut summary, &mut notify).await?;
            batch.clear();
            progress.set_message(format!(
                "{} contacts, {} rejected",
                summary.created + summary.updated,
                summary.rejected
            ));
        }
        if done {
            break;
        }
    }
    progress.finish_and_clear();
    if summary.created + summary.updated > 0 {
        store
            .refresh_statistics()
            .await
            .context("refreshing the planner's statistics")?;
    }
    summary.rejections.sort_by_key(|r| r.line);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Writes one batch; rows the store refuses (an unknown attribute, a
/// duplicate external_id) are rejected with their line.
async fn write(
    store: &Store,
    ws: WorkspaceId,
    batch: &[(usize, ContactPatch)],
    summary: &mut Summary,
    notify: &mut Option<&JobQueue>,
) -> anyhow::Result<()> {
    let mut outcome = store
        .upsert_contacts(ws, batch)
        .await
        .context("writing contacts")?;
    for (line, violations) in std::mem::take(&mut outcome.rejected) {
        // The store numbers items by their position, which here is a line.
        let problems = describe(violations)
            .into_iter()
            .map(|p| p.replace("at index ", "on line "))
            .collect();
        summary.reject(line as u64, problems);
    }
    for stored in &outcome.stored {
        if stored.created {
            summary.created += 1;
        } else {
            summary.updated += 1;
        }
    }
    if let Some(jobs) = notify
        && let Err(e) = jobs
            .batch_written(ws, &outcome.contacts(), &outcome.touched)
            .await
    {
        // Every write is in the change log: the reconciler applies what no
        // job announced. Stop trying rather than wait on each batch.
        tracing::warn!(error = %e, "cannot enqueue materializer jobs; the reconciler will apply the import from the change log");
        *notify = None;
    }
    Ok(())
}

fn progress_bar(enabled: bool, size: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
