//! Why a Consumer call failed, in words a provider's engineer can act on.

/// A failed Consumer operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A profile, flag or file is missing or wrong.
    #[error("{0}")]
    Config(String),
    /// The token endpoint refused us, or our key could not sign.
    #[error("authorization failed: {0}")]
    Auth(String),
    /// The Producer could not be reached (or the connection broke).
    #[error("{method} {url}: {reason}")]
    Transport {
        method: String,
        url: String,
        reason: String,
    },
    /// The Producer answered with an error; `message` is its OperationOutcome in plain words.
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The Producer answered something this client cannot use.
    #[error("{0}")]
    Unexpected(String),
    /// Downloaded data that does not hold together (bad line, wrong type, dangling member).
    #[error("{0}")]
    InvalidData(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the consumer store: {0}")]
    Store(#[from] rusqlite::Error),
    /// Nothing matched (no such list, no such pull).
    #[error("{0}")]
    NotFound(String),
}

impl ClientError {
    /// The process exit code for this failure: 2 configuration, 3 authorization, 4 refused by
    /// the Producer (4xx), 5 Producer unavailable (5xx, network), 6 bad data, 7 not found, 1 other.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Config(_) => 2,
            ClientError::Auth(_) => 3,
            ClientError::Refused { status, .. } if *status == 401 || *status == 403 => 3,
            ClientError::Refused { status, .. } if *status < 500 => 4,
            ClientError::Refused { .. } | ClientError::Transport { .. } => 5,
            ClientError::InvalidData(_) | ClientError::Unexpected(_) => 6,
            ClientError::NotFound(_) => 7,
            ClientError::Io(_) | ClientError::Store(_) => 1,
        }
    }
}

/// An OperationOutcome's issues as one line: "error: … (at Group.member); warning: …".
pub fn outcome_text(outcome: &serde_json::Value) -> String {
    let issues = outcome["issue"].as_array().cloned().unwrap_or_default();
    if issues.is_empty() {
        return outcome
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| "no details given".into());
    }
    issues
        .iter()
        .map(|i| {
            let mut text = i["diagnostics"]
                .as_str()
                .or_else(|| i["details"]["text"].as_str())
                .or_else(|| i["code"].as_str())
                .unwrap_or("unspecified")
                .to_string();
            let at: Vec<&str> = i["expression"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str())
                .collect();
            if !at.is_empty() {
                text.push_str(&format!(" (at {})", at.join(", ")));
            }
            match i["severity"].as_str() {
                Some("warning") => format!("warning: {text}"),
                _ => text,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
