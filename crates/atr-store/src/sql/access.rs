//! Per-Group access as SQL predicates: which resources a Consumer acting for some identifiers may
//! see.
//!
//! A Group is visible when one of its identifiers (or its intended-recipient identifier) is one the
//! client acts for. Everything else is visible through such a Group: Patients on it, their
//! Coverages and subscribers, the providers its entries attribute to, its managing entity, the
//! payers of those Coverages and what those PractitionerRoles point to. Each test is an `EXISTS`
//! probe on an index, so a search pays per candidate row, never per member of a large list.

use super::statement::Statement;
use crate::query::Access;
use atr_model::ResourceType;

/// The resource being tested: the outer query's row `r`, or one given id.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    Row,
    Id(&'a str),
}

impl Subject<'_> {
    fn id(self, st: &mut Statement) {
        match self {
            Subject::Row => {
                st.push("r.id");
            }
            Subject::Id(id) => {
                st.bind(id.to_string());
            }
        }
    }

    /// The subject as a reference, `Type/id`, the way member rows and reference indexes keep it.
    fn reference(self, st: &mut Statement, rtype: ResourceType) {
        match self {
            Subject::Row => {
                st.push("('").push(rtype.as_str()).push("/' || r.id)");
            }
            Subject::Id(id) => {
                st.bind(format!("{rtype}/{id}"));
            }
        }
    }
}

/// Appends a boolean SQL condition: `access` may see `subject` of type `rtype`.
pub(crate) fn push_visible(
    st: &mut Statement,
    rtype: ResourceType,
    subject: Subject<'_>,
    access: &Access,
) {
    let identifiers = match access {
        Access::All => {
            st.push("1 = 1");
            return;
        }
        Access::ActingFor(ids) if ids.is_empty() => {
            st.push("1 = 0");
            return;
        }
        Access::ActingFor(ids) => ids,
    };
    let groups = |st: &mut Statement| visible_groups(st, identifiers);
    // A current member row of a visible Group whose `column` equals what `target` pushes.
    let on_list = |st: &mut Statement, column: &str, target: &dyn Fn(&mut Statement)| {
        st.push("EXISTS (SELECT 1 FROM group_member gm WHERE gm.to_version IS NULL AND gm.")
            .push(column)
            .push(" = ");
        target(st);
        st.push(" AND gm.group_id IN ");
        groups(st);
        st.push(")");
    };
    // A resource whose reference parameter `param` (of `from`) points at the subject, where that
    // resource is itself on a visible list through `column`.
    let via = |st: &mut Statement, from: &str, params: &str, column: &str| {
        st.push("EXISTS (SELECT 1 FROM search_ref v JOIN group_member gm ON gm.")
            .push(column)
            .push(" = ('")
            .push(from)
            .push("/' || v.id) WHERE v.rtype = '")
            .push(from)
            .push("' AND v.param IN (")
            .push(params)
            .push(") AND v.target = ");
        subject.reference(st, rtype);
        st.push(" AND gm.to_version IS NULL AND gm.group_id IN ");
        groups(st);
        st.push(")");
    };
    st.push("(");
    match rtype {
        ResourceType::Group => {
            subject.id(st);
            st.push(" IN ");
            groups(st);
        }
        ResourceType::Patient => {
            on_list(st, "patient", &|st| subject.reference(st, rtype));
        }
        ResourceType::Coverage => {
            on_list(st, "coverage", &|st| subject.reference(st, rtype));
            st.push(" OR EXISTS (SELECT 1 FROM search_ref b JOIN group_member gm ON gm.patient = b.target \
                      WHERE b.rtype = 'Coverage' AND b.param = 'beneficiary' AND b.id = ");
            subject.id(st);
            st.push(" AND gm.to_version IS NULL AND gm.group_id IN ");
            groups(st);
            st.push(")");
        }
        ResourceType::RelatedPerson => {
            st.push(
                "EXISTS (SELECT 1 FROM search_ref p JOIN group_member gm ON gm.patient = p.target \
                     WHERE p.rtype = 'RelatedPerson' AND p.param = 'patient' AND p.id = ",
            );
            subject.id(st);
            st.push(" AND gm.to_version IS NULL AND gm.group_id IN ");
            groups(st);
            st.push(") OR ");
            via(st, "Coverage", "'subscriber', 'policy-holder'", "coverage");
        }
        ResourceType::Practitioner
        | ResourceType::PractitionerRole
        | ResourceType::Organization
        | ResourceType::Location => {
            on_list(st, "provider", &|st| subject.reference(st, rtype));
            st.push(" OR EXISTS (SELECT 1 FROM search_ref me WHERE me.rtype = 'Group' AND me.param = 'managing-entity' AND me.target = ");
            subject.reference(st, rtype);
            st.push(" AND me.id IN ");
            groups(st);
            st.push(")");
            if rtype != ResourceType::PractitionerRole {
                st.push(" OR ");
                via(
                    st,
                    "PractitionerRole",
                    "'practitioner', 'organization', 'location'",
                    "provider",
                );
            }
            if rtype == ResourceType::Organization {
                st.push(" OR ");
                via(st, "Coverage", "'payor'", "coverage");
            }
        }
    }
    st.push(")");
}

/// `(SELECT id FROM … )`: the ids of the Groups carrying one of `identifiers`.
fn visible_groups(st: &mut Statement, identifiers: &[(String, String)]) {
    st.push(
        "(SELECT vg.id FROM search_token vg WHERE vg.rtype = 'Group' \
         AND vg.param IN ('identifier', 'intended-recipient') AND (",
    );
    for (i, (system, value)) in identifiers.iter().enumerate() {
        if i > 0 {
            st.push(" OR ");
        }
        st.push("(vg.code = ").bind(value.clone());
        st.push(" AND vg.system = ").bind(system.clone()).push(")");
    }
    st.push("))");
}
