//! What a client asked to export, as the kick-off validated it. Stored with the job (JSON), so any
//! instance can run it.

use atr_model::ResourceType;
use serde::{Deserialize, Serialize};

/// Which lists an export reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportSource {
    /// `Group/{id}/$export`: the job's Group.
    #[default]
    Group,
    /// A Consumer's Patient- or system-level export: the lists it may see, `(id, version)` at the
    /// snapshot, resolved at kick-off so a rerun exports the same.
    Lists(Vec<(String, i64)>),
    /// An administration client's Patient- or system-level export: everything stored.
    Everything,
}

/// A validated kick-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// Which lists (jobs stored before the Patient and system levels existed are Group exports).
    #[serde(default)]
    pub source: ExportSource,
    /// The types to write, in manifest order.
    pub types: Vec<ResourceType>,
    /// `_since` (microseconds since the epoch).
    pub since: Option<i64>,
    /// `patient`: the members to export (`Patient/id`); `None` for all of them.
    pub patients: Option<Vec<String>>,
    /// `_typeFilter` queries (`Type?param=value&…`) kept for the run, each already parsed once.
    pub type_filters: Vec<String>,
    /// `_elements`: top-level element names, each for every type (`None`) or one type.
    pub elements: Vec<(Option<ResourceType>, String)>,
    /// Findings the kick-off accepted but reports in the manifest's error file (ignored
    /// parameters under `handling=lenient`, `patient` references left out).
    pub notes: Vec<Note>,
}

/// One finding for the error file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// `error`, `warning` or `information`.
    pub severity: String,
    /// FHIR issue type code.
    pub code: String,
    pub diagnostics: String,
    /// The parameter it is about.
    pub expression: Option<String>,
}

impl Note {
    pub fn warning(code: &str, diagnostics: impl Into<String>, parameter: &str) -> Self {
        Note {
            severity: "warning".into(),
            code: code.into(),
            diagnostics: diagnostics.into(),
            expression: Some(parameter.into()),
        }
    }

    pub fn error(code: &str, diagnostics: impl Into<String>, parameter: &str) -> Self {
        Note {
            severity: "error".into(),
            code: code.into(),
            diagnostics: diagnostics.into(),
            expression: Some(parameter.into()),
        }
    }

    /// The `OperationOutcome` line of the error file.
    pub fn to_outcome(&self) -> serde_json::Value {
        let mut issue = serde_json::json!({
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(e) = &self.expression {
            issue["expression"] = serde_json::json!([e]);
        }
        serde_json::json!({"resourceType": "OperationOutcome", "issue": [issue]})
    }
}
