//! A search, as the server parsed it from the query string, in terms the stores can run.

use atr_model::ResourceType;

use crate::StoredResource;

/// How a `string` parameter matches (FHIR: prefix by default, `:exact`, `:contains`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    Prefix,
    Exact,
    Contains,
}

/// A date comparison on `_lastUpdated` (`eq` covers the whole range of the given precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One alternative of a token parameter: `system|code`, `|code` (system `Some("")`), `code`
/// (system `None`), `system|` (code `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    pub system: Option<String>,
    pub code: Option<String>,
}

/// One condition; the alternatives inside a clause are OR-ed, clauses are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    Token {
        param: &'static str,
        any_of: Vec<TokenMatch>,
    },
    /// `identifier:of-type=typeSystem|typeCode|value`.
    OfType {
        param: &'static str,
        any_of: Vec<(String, String, String)>,
    },
    String {
        param: &'static str,
        mode: StringMode,
        any_of: Vec<String>,
    },
    /// Targets as `Type/id`.
    Reference {
        param: &'static str,
        any_of: Vec<String>,
    },
    Id(Vec<String>),
    /// `[start, end)` of the given date, compared per `Compare`.
    LastUpdated {
        compare: Compare,
        start: i64,
        end: i64,
    },
    /// A date parameter against the days `[start, end)` (`YYYY-MM-DD`) of the searched date,
    /// per `Compare`; stored dates are tokens holding their first day.
    Date {
        param: &'static str,
        compare: Compare,
        start: String,
        end: String,
    },
    /// Groups with a current member entry for one of these `Patient/id`.
    Member(Vec<String>),
}

impl Compare {
    /// Whether a stored value `v` satisfies the comparison with the searched range
    /// `[start, end)` (instants or days: any ordered values).
    pub fn holds<T: PartialOrd>(self, v: &T, start: &T, end: &T) -> bool {
        match self {
            Compare::Eq => start <= v && v < end,
            Compare::Ne => !(start <= v && v < end),
            Compare::Gt => v >= end,
            Compare::Ge => v >= start,
            Compare::Lt => v < start,
            Compare::Le => v < end,
        }
    }
}

/// Whose attribution lists a request may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    /// The payer's administration and local tools: everything.
    #[default]
    All,
    /// A Consumer: the Groups carrying one of these `(system, value)` identifiers (in
    /// `Group.identifier` or the intended-recipient extension), and the resources those Groups and
    /// their members reference.
    ActingFor(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub rtype: ResourceType,
    pub clauses: Vec<Clause>,
    /// Page size; 0 asks for the total only.
    pub count: u32,
    /// Keyset paging: ids strictly after this one.
    pub after_id: Option<String>,
    pub with_total: bool,
    pub access: Access,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub matches: Vec<StoredResource>,
    pub total: Option<i64>,
    /// True when more matches follow the last one.
    pub has_more: bool,
}
