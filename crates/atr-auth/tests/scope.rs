//! SMART scope parsing, rendering and granting tables.

use atr_auth::{
    AuthError, GrantedScopes, Interaction, Perms, Scope, ScopeResource, ScopeVersion, grant,
};

const TYPES: &[&str] = &[
    "Group",
    "Patient",
    "Practitioner",
    "Organization",
    "Coverage",
];

fn scopes(s: &str) -> Vec<Scope> {
    s.split_whitespace().map(|t| t.parse().unwrap()).collect()
}

fn granted(requested: &str, allowed: &str) -> String {
    grant(requested, &scopes(allowed), TYPES)
        .unwrap()
        .to_string()
}

#[test]
fn v1_and_v2_scopes_parse_to_resource_and_permissions() {
    let rs = Perms {
        read: true,
        search: true,
        ..Perms::NONE
    };
    let table: &[(&str, ScopeResource, Perms, ScopeVersion)] = &[
        (
            "system/Group.read",
            ScopeResource::Type("Group".into()),
            rs,
            ScopeVersion::V1,
        ),
        ("system/*.read", ScopeResource::Any, rs, ScopeVersion::V1),
        (
            "system/*.write",
            ScopeResource::Any,
            Perms::V1_WRITE,
            ScopeVersion::V1,
        ),
        (
            "system/*.*",
            ScopeResource::Any,
            Perms::ALL,
            ScopeVersion::V1,
        ),
        ("system/*.rs", ScopeResource::Any, rs, ScopeVersion::V2),
        (
            "system/Group.cruds",
            ScopeResource::Type("Group".into()),
            Perms::ALL,
            ScopeVersion::V2,
        ),
        (
            "system/Patient.r",
            ScopeResource::Type("Patient".into()),
            Perms {
                read: true,
                ..Perms::NONE
            },
            ScopeVersion::V2,
        ),
        (
            "system/Group.cud",
            ScopeResource::Type("Group".into()),
            Perms::V1_WRITE,
            ScopeVersion::V2,
        ),
    ];
    for (text, resource, perms, version) in table {
        let scope = Scope::parse(text).unwrap_or_else(|| panic!("{text} did not parse"));
        assert_eq!(&scope.resource, resource, "{text}");
        assert_eq!(&scope.perms, perms, "{text}");
        assert_eq!(&scope.version, version, "{text}");
    }
}

#[test]
fn scopes_render_back_in_the_style_they_were_written() {
    for text in [
        "system/Group.read",
        "system/*.write",
        "system/*.*",
        "system/*.rs",
        "system/Group.cruds",
        "system/Patient.r",
        "system/Coverage.cs",
    ] {
        assert_eq!(Scope::parse(text).unwrap().to_string(), text);
    }
}

#[test]
fn unsupported_scopes_are_not_parsed() {
    for text in [
        "user/Group.read",
        "patient/*.read",
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "system/Group",
        "system/Group.",
        "system/Group.sr", // v2 letters out of order
        "system/Group.rr", // repeated letter
        "system/Group.rx", // unknown letter
        "system/Group.READ",
        "system/group.read", // not a resource type name
        "system/Gr-oup.read",
        "system/*.rs?category=x",
        "system/Observation.rs?category=laboratory",
        "system/.read",
        "",
    ] {
        assert_eq!(Scope::parse(text), None, "{text} parsed");
        assert!(matches!(
            text.parse::<Scope>(),
            Err(AuthError::InvalidScope(_))
        ));
    }
}

#[test]
fn grant_table() {
    // (requested, allowed, granted)
    let table = [
        // Exact match.
        (
            "system/Group.read",
            "system/Group.read",
            "system/Group.read",
        ),
        // An allowed wildcard covers a requested type.
        ("system/Group.read", "system/*.read", "system/Group.read"),
        ("system/Group.read", "system/*.*", "system/Group.read"),
        // A requested wildcard narrows to the allowed type.
        ("system/*.read", "system/Group.read", "system/Group.read"),
        (
            "system/*.read",
            "system/Group.read system/Patient.read",
            "system/Group.read system/Patient.read",
        ),
        // Wildcard for wildcard.
        ("system/*.read", "system/*.*", "system/*.read"),
        // Never more than asked: read asked, write not granted.
        (
            "system/*.read",
            "system/*.read system/*.write",
            "system/*.read",
        ),
        ("system/Group.rs", "system/*.cruds", "system/Group.rs"),
        // Never more than allowed: * asked, only read allowed.
        ("system/*.*", "system/*.read", "system/*.read"),
        ("system/Group.*", "system/Group.rs", "system/Group.read"),
        ("system/Group.cruds", "system/Group.read", "system/Group.rs"),
        // v1 asked, v2 allowed with less: rendered in v2 letters.
        ("system/Group.read", "system/Group.r", "system/Group.r"),
        // Several allowed scopes merge per resource.
        (
            "system/Group.*",
            "system/*.rs system/*.c",
            "system/Group.crs",
        ),
        // Unsupported scopes are ignored, not errors.
        (
            "openid fhirUser launch system/Group.read user/*.read",
            "system/*.read",
            "system/Group.read",
        ),
        // Types the server does not serve are not granted by name.
        (
            "system/Observation.read system/Group.read",
            "system/*.read",
            "system/Group.read",
        ),
        // Duplicates collapse.
        (
            "system/Group.read system/Group.read",
            "system/*.read",
            "system/Group.read",
        ),
        // Order of the request is kept.
        (
            "system/Patient.read system/Group.read",
            "system/*.read",
            "system/Patient.read system/Group.read",
        ),
        // Extra whitespace is fine.
        (
            "  system/Group.read\tsystem/Patient.rs ",
            "system/*.*",
            "system/Group.read system/Patient.rs",
        ),
    ];
    for (requested, allowed, expected) in table {
        assert_eq!(
            granted(requested, allowed),
            expected,
            "requested {requested:?} allowed {allowed:?}"
        );
    }
}

#[test]
fn write_is_never_granted_unless_asked() {
    let allowed = scopes("system/*.*");
    for requested in ["system/*.read", "system/Group.rs", "system/*.r system/*.s"] {
        let g = grant(requested, &allowed, TYPES).unwrap();
        for interaction in [
            Interaction::Create,
            Interaction::Update,
            Interaction::Delete,
        ] {
            assert!(
                !g.permits("Group", interaction),
                "{requested} granted {interaction:?}"
            );
        }
    }
}

#[test]
fn empty_grant_is_invalid_scope() {
    let cases = [
        ("", "system/*.*"),
        ("   ", "system/*.*"),
        ("openid user/*.read", "system/*.*"),
        ("system/*.write", "system/*.read"),
        ("system/Group.read", "system/Patient.read"),
        ("system/Group.read", ""),
        ("system/Observation.read", "system/*.read"),
    ];
    for (requested, allowed) in cases {
        let err = grant(requested, &scopes(allowed), TYPES).unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidScope(_)),
            "{requested:?}: {err:?}"
        );
        assert_eq!(err.oauth_code(), "invalid_scope");
    }
}

#[test]
fn too_many_requested_scopes_is_invalid_scope() {
    let requested = vec!["system/Group.read"; 101].join(" ");
    assert!(matches!(
        grant(&requested, &scopes("system/*.read"), TYPES),
        Err(AuthError::InvalidScope(_))
    ));
}

#[test]
fn granted_scopes_permit_exactly_their_interactions() {
    let g = grant(
        "system/Group.read system/Patient.c",
        &scopes("system/*.*"),
        TYPES,
    )
    .unwrap();
    assert!(g.permits("Group", Interaction::Read));
    assert!(g.permits("Group", Interaction::Search));
    assert!(!g.permits("Group", Interaction::Update));
    assert!(g.permits("Patient", Interaction::Create));
    assert!(!g.permits("Patient", Interaction::Read));
    assert!(!g.permits("Coverage", Interaction::Read));

    let any = grant("system/*.read", &scopes("system/*.read"), TYPES).unwrap();
    assert!(any.permits("Coverage", Interaction::Search));
    assert!(!any.permits("Coverage", Interaction::Delete));
}

#[test]
fn granted_scopes_rebuild_from_their_string() {
    let g = grant(
        "system/Group.* system/*.read system/Patient.rs",
        &scopes("system/*.rs system/Group.cud"),
        TYPES,
    )
    .unwrap();
    let text = g.to_string();
    assert_eq!(text, "system/Group.* system/*.read system/Patient.rs");
    let rebuilt = GrantedScopes::parse(&text);
    assert_eq!(rebuilt, g);
    assert_eq!(rebuilt.scopes().len(), 3);
    assert!(GrantedScopes::parse("").is_empty());
}

#[test]
fn perms_intersection_and_union() {
    let r = Perms {
        read: true,
        ..Perms::NONE
    };
    assert_eq!(Perms::V1_READ.intersect(Perms::V1_WRITE), Perms::NONE);
    assert_eq!(Perms::ALL.intersect(r), r);
    assert_eq!(Perms::V1_READ.union(Perms::V1_WRITE), Perms::ALL);
    assert!(Perms::NONE.is_empty());
}
