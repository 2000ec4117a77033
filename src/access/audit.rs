//! The audit log's entries: who did what, when, to which upload, and how
//! the server answered. One is stored (`audit-v1`) for every request that
//! needs the operator or admin role, refused ones included, and for every
//! transcript read whole.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `POST /api/upload`.
    Upload,
    /// `POST /api/estimate`.
    Estimate,
    /// `POST /api/preview`: a file read back to its sender.
    Preview,
    /// `DELETE /api/progress/{id}`.
    Cancel,
    /// `POST /api/uploads/{id}/resume`.
    Resume,
    /// `DELETE /api/uploads/{id}`.
    Delete,
    /// `GET /api/backup`: a copy of everything.
    Backup,
    /// A transcript read whole (personal data and all).
    Transcript,
    /// `GET /api/audit`.
    ReadAudit,
    /// `POST /api/alerts/{id}/ack`.
    AcknowledgeAlert,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Upload,
        Action::Estimate,
        Action::Preview,
        Action::Cancel,
        Action::Resume,
        Action::Delete,
        Action::Backup,
        Action::Transcript,
        Action::ReadAudit,
        Action::AcknowledgeAlert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Upload => "upload",
            Action::Estimate => "estimate",
            Action::Preview => "preview",
            Action::Cancel => "cancel",
            Action::Resume => "resume",
            Action::Delete => "delete",
            Action::Backup => "backup",
            Action::Transcript => "transcript",
            Action::ReadAudit => "read_audit",
            Action::AcknowledgeAlert => "acknowledge_alert",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("{s:?} is not an audited action: {}", all.join(", "))
            })
    }
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Time-ordered (UUID v7): entries sort by it.
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// The token's name (`anonymous` on a server without tokens).
    pub who: String,
    pub role: Role,
    pub action: Action,
    pub upload_id: Option<Uuid>,
    /// What else names the target: the file uploaded or estimated, the
    /// conversation whose transcript was read.
    pub target: Option<String>,
    /// The HTTP status answered: 2xx done, 403 refused for the role, 4xx/5xx failed.
    pub status: u16,
}

impl AuditEntry {
    /// Whether the action was carried out.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Which entries to list; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub who: Option<String>,
    pub action: Option<Action>,
    pub upload_id: Option<Uuid>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.who.as_ref().is_none_or(|w| *w == e.who)
            && self.action.is_none_or(|a| a == e.action)
            && self.upload_id.is_none_or(|u| Some(u) == e.upload_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_as_serde_names_them() {
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("delete_everything".parse::<Action>().is_err());
    }

    #[test]
    fn filters_narrow() {
        let upload = Uuid::new_v4();
        let e = AuditEntry {
            id: Uuid::now_v7(),
            at: Utc::now(),
            who: "alice".into(),
            role: Role::Operator,
            action: Action::Cancel,
            upload_id: Some(upload),
            target: None,
            status: 202,
        };
        assert!(e.succeeded());
        assert!(AuditFilter::default().matches(&e));
        let f = |who: Option<&str>, action, upload_id| AuditFilter {
            who: who.map(str::to_string),
            action,
            upload_id,
        };
        assert!(f(Some("alice"), Some(Action::Cancel), Some(upload)).matches(&e));
        assert!(!f(Some("bob"), None, None).matches(&e));
        assert!(!f(None, Some(Action::Delete), None).matches(&e));
        assert!(!f(None, None, Some(Uuid::new_v4())).matches(&e));
    }
}
