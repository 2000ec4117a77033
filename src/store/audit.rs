//! The audit log (`audit-v1`): entries keyed by their time-ordered id,
//! listed newest first. Written by the `StoreActor` (`PutAudit`), read by
//! anyone.

use uuid::Uuid;

use super::{Page, Result, Store, decode, encode};
use crate::access::{AuditEntry, AuditFilter};

impl Store {
    /// Records an entry, durably.
    pub(crate) fn put_audit(&self, entry: &AuditEntry) -> Result<()> {
        let value = encode("audit entry", entry)?;
        self.write(|t| {
            t.audit.insert(entry.id.as_u128(), value.as_slice())?;
            Ok(())
        })
    }

    /// Up to `limit` entries that `filter` matches, newest first, older
    /// than `before` (the `next_cursor` of the page before: an entry's id).
    pub fn audit(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        let end = before.map_or(u128::MAX, |id| id.as_u128());
        let limit = limit.max(1);
        self.read(|t| {
            let mut items = Vec::new();
            let mut next_cursor = None;
            for entry in t.audit.range(..end)?.rev() {
                let (_, v) = entry?;
                let e: AuditEntry = decode("audit entry", v.value())?;
                if !filter.matches(&e) {
                    continue;
                }
                if items.len() == limit {
                    next_cursor = items.last().map(|last: &AuditEntry| last.id.to_string());
                    break;
                }
                items.push(e);
            }
            Ok(Page { items, next_cursor })
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::access::{Action, Role};

    fn entry(who: &str, action: Action, upload_id: Option<Uuid>) -> AuditEntry {
        AuditEntry {
            id: Uuid::now_v7(),
            at: Utc::now(),
            who: who.into(),
            role: Role::Admin,
            action,
            upload_id,
            target: None,
            status: 200,
        }
    }

    #[test]
    fn entries_page_newest_first_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("a.redb")).unwrap();
        let upload = Uuid::new_v4();
        let mut written = Vec::new();
        for i in 0..7 {
            let e = match i % 3 {
                0 => entry("alice", Action::Upload, Some(upload)),
                1 => entry("bob", Action::Backup, None),
                _ => entry("alice", Action::Transcript, Some(Uuid::new_v4())),
            };
            store.put_audit(&e).unwrap();
            written.push(e);
            // v7 ids are ordered by millisecond.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let all = AuditFilter::default();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.audit(&all, cursor, 3).unwrap();
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(Uuid::parse_str(&c).unwrap()),
                None => break,
            }
        }
        written.reverse();
        assert_eq!(seen, written);
        let alice = AuditFilter {
            who: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(store.audit(&alice, None, 100).unwrap().items.len(), 5);
        let on_upload = AuditFilter {
            upload_id: Some(upload),
            ..Default::default()
        };
        let page = store.audit(&on_upload, None, 100).unwrap();
        assert_eq!(page.items.len(), 3);
        assert!(page.items.iter().all(|e| e.action == Action::Upload));
    }
}
