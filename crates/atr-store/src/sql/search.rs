//! Search queries as SQL: each clause narrows the current versions of one type by id, through the
//! index tables; pages are keyset pages over the id.

use super::access::{Subject, push_visible};
use super::statement::Statement;
use crate::query::{Access, Clause, Compare, SearchQuery, StringMode};

/// Escapes `LIKE` wildcards so user text matches literally (with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `WHERE …` shared by the page and the total.
fn conditions(q: &SearchQuery, st: &mut Statement) {
    let rtype = q.rtype.as_str();
    st.push(" FROM resource_version r WHERE r.rtype = ")
        .bind(rtype)
        .push(" AND r.is_current AND NOT r.deleted");
    for clause in &q.clauses {
        st.push(" AND ");
        match clause {
            Clause::Id(ids) => {
                st.push("r.id IN ").bind_list(ids.iter().cloned());
            }
            Clause::LastUpdated {
                compare,
                start,
                end,
            } => {
                match compare {
                    Compare::Eq => st
                        .push("(r.last_updated >= ")
                        .bind(*start)
                        .push(" AND r.last_updated < ")
                        .bind(*end)
                        .push(")"),
                    Compare::Ne => st
                        .push("NOT (r.last_updated >= ")
                        .bind(*start)
                        .push(" AND r.last_updated < ")
                        .bind(*end)
                        .push(")"),
                    Compare::Gt => st.push("r.last_updated >= ").bind(*end),
                    Compare::Ge => st.push("r.last_updated >= ").bind(*start),
                    Compare::Lt => st.push("r.last_updated < ").bind(*start),
                    Compare::Le => st.push("r.last_updated < ").bind(*end),
                };
            }
            Clause::Token { param, any_of } => {
                st.push("r.id IN (SELECT t.id FROM search_token t WHERE t.rtype = ")
                    .bind(rtype);
                st.push(" AND t.param = ").bind(*param).push(" AND (");
                for (i, m) in any_of.iter().enumerate() {
                    if i > 0 {
                        st.push(" OR ");
                    }
                    st.push("(1 = 1");
                    if let Some(code) = &m.code {
                        st.push(" AND t.code = ").bind(code.clone());
                    }
                    if let Some(system) = &m.system {
                        st.push(" AND t.system = ").bind(system.clone());
                    }
                    st.push(")");
                }
                st.push("))");
            }
            Clause::OfType { param, any_of } => {
                st.push("r.id IN (SELECT t.id FROM search_token t WHERE t.rtype = ")
                    .bind(rtype);
                st.push(" AND t.param = ").bind(*param).push(" AND (");
                for (i, (type_system, type_code, value)) in any_of.iter().enumerate() {
                    if i > 0 {
                        st.push(" OR ");
                    }
                    st.push("(t.code = ").bind(value.clone());
                    st.push(" AND t.type_system = ").bind(type_system.clone());
                    st.push(" AND t.type_code = ")
                        .bind(type_code.clone())
                        .push(")");
                }
                st.push("))");
            }
            Clause::String {
                param,
                mode,
                any_of,
            } => {
                st.push("r.id IN (SELECT s.id FROM search_string s WHERE s.rtype = ")
                    .bind(rtype);
                st.push(" AND s.param = ").bind(*param).push(" AND (");
                for (i, value) in any_of.iter().enumerate() {
                    if i > 0 {
                        st.push(" OR ");
                    }
                    match mode {
                        StringMode::Exact => {
                            st.push("s.raw = ").bind(value.clone());
                        }
                        StringMode::Prefix => {
                            let norm = atr_model::index::normalize_string(value);
                            // A range scan on the index: every string starting with `norm` sorts
                            // between it and it followed by the highest code point.
                            st.push("(s.norm >= ").bind(norm.clone());
                            st.push(" AND s.norm < ")
                                .bind(format!("{norm}\u{10FFFF}"))
                                .push(")");
                        }
                        StringMode::Contains => {
                            let norm = atr_model::index::normalize_string(value);
                            st.push("s.norm LIKE ")
                                .bind(format!("%{}%", like_escape(&norm)))
                                .push(" ESCAPE '\\'");
                        }
                    }
                }
                st.push("))");
            }
            Clause::Reference { param, any_of } => {
                st.push("r.id IN (SELECT f.id FROM search_ref f WHERE f.rtype = ")
                    .bind(rtype);
                st.push(" AND f.param = ").bind(*param);
                st.push(" AND f.target IN ")
                    .bind_list(any_of.iter().cloned())
                    .push(")");
            }
            Clause::Date {
                param,
                compare,
                start,
                end,
            } => {
                st.push("r.id IN (SELECT t.id FROM search_token t WHERE t.rtype = ")
                    .bind(rtype);
                st.push(" AND t.param = ").bind(*param).push(" AND ");
                let (start, end) = (start.clone(), end.clone());
                match compare {
                    Compare::Eq => st
                        .push("t.code >= ")
                        .bind(start)
                        .push(" AND t.code < ")
                        .bind(end),
                    Compare::Ne => st
                        .push("NOT (t.code >= ")
                        .bind(start)
                        .push(" AND t.code < ")
                        .bind(end)
                        .push(")"),
                    Compare::Gt => st.push("t.code >= ").bind(end),
                    Compare::Ge => st.push("t.code >= ").bind(start),
                    Compare::Lt => st.push("t.code < ").bind(start),
                    Compare::Le => st.push("t.code < ").bind(end),
                };
                st.push(")");
            }
            Clause::Member(patients) => {
                st.push("r.id IN (SELECT m.group_id FROM group_member m WHERE m.to_version IS NULL AND m.patient IN ");
                st.bind_list(patients.iter().cloned()).push(")");
            }
        }
    }
    if q.access != Access::All {
        st.push(" AND ");
        push_visible(st, q.rtype, Subject::Row, &q.access);
    }
}

/// The statement for one page (one row more than the page size, to tell whether more follow).
pub(crate) fn page_statement(q: &SearchQuery) -> Statement {
    let mut st =
        Statement::new("SELECT r.id, r.version, r.last_updated, r.deleted, r.member_count, r.body");
    conditions(q, &mut st);
    if let Some(after) = &q.after_id {
        st.push(" AND r.id > ").bind(after.clone());
    }
    st.push(" ORDER BY r.id LIMIT ")
        .bind(i64::from(q.count) + 1);
    st
}

pub(crate) fn count_statement(q: &SearchQuery) -> Statement {
    let mut st = Statement::new("SELECT COUNT(*)");
    conditions(q, &mut st);
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::TokenMatch;
    use atr_model::ResourceType;

    #[test]
    fn placeholders_follow_arguments() {
        let q = SearchQuery {
            rtype: ResourceType::Group,
            clauses: vec![Clause::Token {
                param: "identifier",
                any_of: vec![TokenMatch {
                    system: Some("s".into()),
                    code: Some("c".into()),
                }],
            }],
            count: 10,
            after_id: Some("g1".into()),
            with_total: true,
            access: Access::All,
        };
        let st = page_statement(&q);
        assert_eq!(st.args.len(), 7);
        assert!(st.sql.contains("$7"));
        assert!(!st.sql.contains("$8"));
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
    }
}
