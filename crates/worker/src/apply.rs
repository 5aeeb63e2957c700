//! Incremental maintenance: re-evaluate changed contacts in memory, through
//! the plugins, against only the segments whose conditions read what changed.

use std::collections::{BTreeSet, HashMap};

use segments_conditions::{ContactSnapshot, EvalContext, SegmentEvaluator};
use segments_domain::{Contact, ContactId, SegmentId, Timestamp, WorkspaceId};
use segments_store::{Catalog, ChangeStamp};

use crate::{Materializer, WorkerError};

/// Contacts evaluated per batch (one snapshot load, one Redis round trip).
const BATCH: usize = 1_000;

/// The segments a change can affect, dependencies first: those that read a
/// changed key, and every segment that refers to one of them.
pub(crate) fn affected(catalog: &Catalog, changed: &[String]) -> Vec<SegmentId> {
    let changed: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    let direct = catalog.segments.reading(&changed);
    let mut all = direct.clone();
    for id in &direct {
        all.extend(catalog.segments.dependents(*id));
    }
    catalog
        .segments
        .dependency_order()
        .into_iter()
        .filter(|id| all.contains(id))
        .collect()
}

impl Materializer {
    /// Brings every set up to date with the current state of `contacts`.
    /// `changed` holds the change keys of what their writes touched.
    pub async fn contacts_changed(
        &self,
        ws: WorkspaceId,
        contacts: &[ContactId],
        changed: &[String],
        cause: &str,
    ) -> Result<(), WorkerError> {
        self.contacts_changed_at(ws, contacts, &HashMap::new(), changed, cause)
            .await
    }

    /// As `contacts_changed`, with the versions some contacts' writes gave
    /// them (`known`); the others' versions are read from the change log.
    pub async fn contacts_changed_at(
        &self,
        ws: WorkspaceId,
        contacts: &[ContactId],
        known: &HashMap<ContactId, ChangeStamp>,
        changed: &[String],
        cause: &str,
    ) -> Result<(), WorkerError> {
        if contacts.is_empty() {
            return Ok(());
        }
        let catalog = self.catalog(ws).await?;
        let segments = affected(&catalog, changed);
        if segments.is_empty() {
            return Ok(());
        }
        let static_memberships = segments.iter().any(|s| catalog.segments.reads_static(*s));
        for chunk in contacts.chunks(BATCH) {
            // Versions are known or read before the contacts: the state then
            // read is at least as new as the version it is applied under.
            let unknown: Vec<ContactId> = chunk
                .iter()
                .filter(|c| !known.contains_key(c))
                .copied()
                .collect();
            let mut versions = if unknown.is_empty() {
                HashMap::new()
            } else {
                self.store.contact_versions(&unknown).await?
            };
            versions.extend(chunk.iter().filter_map(|c| known.get(c).map(|v| (*c, *v))));
            let snapshots: HashMap<ContactId, _> = self
                .store
                .snapshots_reading(ws, chunk, static_memberships)
                .await?
                .into_iter()
                .map(|s| (s.contact.id, s))
                .collect();
            let now = Timestamp::now();
            let ctx = EvalContext {
                now,
                segments: &catalog.segments,
                depth: 0,
            };
            let mut invocations = Vec::with_capacity(chunk.len());
            for contact in chunk {
                // A contact with no change left in the log (pruned long ago)
                // was seen by every build: stamp 0 applies nowhere.
                let version = versions
                    .get(contact)
                    .copied()
                    .unwrap_or(ChangeStamp { seq: 0, xid: 0 });
                let decisions: Vec<(SegmentId, bool)> = match snapshots.get(contact) {
                    // A deleted contact leaves every segment.
                    None => catalog.segments.iter().map(|d| (d.id, false)).collect(),
                    Some(snapshot) => segments
                        .iter()
                        .map(|s| (*s, catalog.segments.is_member(*s, snapshot, &ctx)))
                        .collect(),
                };
                invocations
                    .push(self.apply_invocation(ws, *contact, version, cause, now, &decisions));
            }
            let mut conn = self.redis.clone();
            let moved: Vec<(u64, u64)> = self.apply.run_many(&mut conn, &invocations).await?;
            let (entered, exited) = moved.iter().fold((0, 0), |(a, b), (e, x)| (a + e, b + x));
            crate::metrics::members_changed(cause, entered, exited);
        }
        Ok(())
    }

    /// Applies one contact's write from the state the write produced and
    /// the version it got, read back from nothing: what a single-contact
    /// write runs before it answers. (When a segment it affects reads static
    /// memberships, those are read as a job would.)
    pub async fn contact_written(
        &self,
        ws: WorkspaceId,
        contact: Contact,
        version: ChangeStamp,
        catalog_version: Option<i64>,
        changed: &[String],
        cause: &str,
    ) -> Result<(), WorkerError> {
        let catalog = self.store.catalog_as_of(ws, catalog_version).await?;
        let segments = affected(&catalog, changed);
        if segments.is_empty() {
            return Ok(());
        }
        if segments.iter().any(|s| catalog.segments.reads_static(*s)) {
            let known = HashMap::from([(contact.id, version)]);
            return self
                .contacts_changed_at(ws, &[contact.id], &known, changed, cause)
                .await;
        }
        let now = Timestamp::now();
        let ctx = EvalContext {
            now,
            segments: &catalog.segments,
            depth: 0,
        };
        let id = contact.id;
        let snapshot = ContactSnapshot {
            contact,
            static_segments: BTreeSet::new(),
        };
        let decisions: Vec<(SegmentId, bool)> = segments
            .iter()
            .map(|s| (*s, catalog.segments.is_member(*s, &snapshot, &ctx)))
            .collect();
        self.apply_evaluation(ws, id, version, &decisions, cause)
            .await
    }

    /// Applies one evaluation of one contact, as a job would: each decision
    /// lands only if the change `version` stamps is newer than what the
    /// segment already reflects for that contact.
    pub async fn apply_evaluation(
        &self,
        ws: WorkspaceId,
        contact: ContactId,
        version: ChangeStamp,
        decisions: &[(SegmentId, bool)],
        cause: &str,
    ) -> Result<(), WorkerError> {
        let invocation =
            self.apply_invocation(ws, contact, version, cause, Timestamp::now(), decisions);
        let mut conn = self.redis.clone();
        let moved: Vec<(u64, u64)> = self.apply.run_many(&mut conn, &[invocation]).await?;
        for (entered, exited) in moved {
            crate::metrics::members_changed(cause, entered, exited);
        }
        Ok(())
    }

    fn apply_invocation(
        &self,
        ws: WorkspaceId,
        contact: ContactId,
        version: ChangeStamp,
        cause: &str,
        now: Timestamp,
        decisions: &[(SegmentId, bool)],
    ) -> (Vec<String>, Vec<String>) {
        let mut keys = Vec::with_capacity(1 + decisions.len() * 3);
        let mut args = Vec::with_capacity(6 + decisions.len() * 2);
        keys.push(self.keys.events(ws));
        args.extend([
            contact.0.to_string(),
            version.seq.to_string(),
            version.xid.to_string(),
            cause.to_owned(),
            now.get().to_rfc3339(),
            self.settings.events_max_len.to_string(),
        ]);
        for (segment, member) in decisions {
            keys.push(self.keys.members(ws, *segment));
            keys.push(self.keys.meta(ws, *segment));
            keys.push(self.keys.versions(ws, *segment));
            args.push(segment.0.to_string());
            args.push(if *member { "1" } else { "0" }.to_owned());
        }
        (keys, args)
    }
}
