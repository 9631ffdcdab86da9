//! SMART `system/` scopes, v1 (`.read`, `.write`, `.*`) and v2 (`.cruds`
//! letters), and granting a request against what a client is allowed.
//!
//! Backend Services clients act for no user or patient, so `user/` and
//! `patient/` scopes, v2 query-narrowed scopes (`?category=...`), `openid`
//! and anything else unparseable are "unsupported": ignored when granting,
//! as OAuth lets a server grant less than requested.

use std::fmt;
use std::str::FromStr;

use crate::error::AuthError;

/// Most scope tokens considered in one request; real requests have a few.
pub const MAX_REQUESTED_SCOPES: usize = 100;
/// Longest resource type name accepted in a scope.
const MAX_TYPE_LEN: usize = 64;

/// An interaction the server checks a token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    /// read, vread, history of one resource.
    Read,
    /// search.
    Search,
    /// create.
    Create,
    /// update, patch.
    Update,
    /// delete.
    Delete,
}

/// Which interactions a scope permits (the v2 letters c, r, u, d, s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms {
    /// `c`
    pub create: bool,
    /// `r`
    pub read: bool,
    /// `u`
    pub update: bool,
    /// `d`
    pub delete: bool,
    /// `s`
    pub search: bool,
}

impl Perms {
    /// Nothing.
    pub const NONE: Perms = Perms {
        create: false,
        read: false,
        update: false,
        delete: false,
        search: false,
    };
    /// Everything: v1 `*`, v2 `cruds`.
    pub const ALL: Perms = Perms {
        create: true,
        read: true,
        update: true,
        delete: true,
        search: true,
    };
    /// v1 `read` = v2 `rs`.
    pub const V1_READ: Perms = Perms {
        read: true,
        search: true,
        ..Perms::NONE
    };
    /// v1 `write` = v2 `cud`.
    pub const V1_WRITE: Perms = Perms {
        create: true,
        update: true,
        delete: true,
        ..Perms::NONE
    };

    /// Permissions present in both.
    pub fn intersect(self, other: Perms) -> Perms {
        Perms {
            create: self.create && other.create,
            read: self.read && other.read,
            update: self.update && other.update,
            delete: self.delete && other.delete,
            search: self.search && other.search,
        }
    }

    /// Permissions present in either.
    pub fn union(self, other: Perms) -> Perms {
        Perms {
            create: self.create || other.create,
            read: self.read || other.read,
            update: self.update || other.update,
            delete: self.delete || other.delete,
            search: self.search || other.search,
        }
    }

    /// Whether no interaction is permitted.
    pub fn is_empty(self) -> bool {
        self == Perms::NONE
    }

    /// Whether `interaction` is permitted.
    pub fn allows(self, interaction: Interaction) -> bool {
        match interaction {
            Interaction::Create => self.create,
            Interaction::Read => self.read,
            Interaction::Update => self.update,
            Interaction::Delete => self.delete,
            Interaction::Search => self.search,
        }
    }

    fn letters(self) -> String {
        [
            (self.create, 'c'),
            (self.read, 'r'),
            (self.update, 'u'),
            (self.delete, 'd'),
            (self.search, 's'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
    }

    /// v2 letters: non-empty, each of `cruds` at most once, in that order.
    fn parse_letters(text: &str) -> Option<Perms> {
        const ORDER: &[u8] = b"cruds";
        let mut perms = Perms::NONE;
        let mut next = 0; // index in ORDER the next letter may start from
        for b in text.bytes() {
            let pos = ORDER[next..].iter().position(|&o| o == b)? + next;
            match b {
                b'c' => perms.create = true,
                b'r' => perms.read = true,
                b'u' => perms.update = true,
                b'd' => perms.delete = true,
                _ => perms.search = true,
            }
            next = pos + 1;
        }
        (!perms.is_empty()).then_some(perms)
    }

    fn v1_word(self) -> Option<&'static str> {
        match self {
            Perms::V1_READ => Some("read"),
            Perms::V1_WRITE => Some("write"),
            Perms::ALL => Some("*"),
            _ => None,
        }
    }
}

/// The SMART scope syntax a scope was written in; rendering keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeVersion {
    /// `.read`, `.write`, `.*`
    V1,
    /// `.cruds` letters.
    V2,
}

/// The resource part of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeResource {
    /// `*`
    Any,
    /// A FHIR resource type, e.g. `Group`.
    Type(String),
}

impl ScopeResource {
    fn matches(&self, resource_type: &str) -> bool {
        match self {
            ScopeResource::Any => true,
            ScopeResource::Type(t) => t == resource_type,
        }
    }

    /// The narrower of two resources, if they overlap.
    fn intersect(&self, other: &ScopeResource) -> Option<ScopeResource> {
        match (self, other) {
            (ScopeResource::Any, r) | (r, ScopeResource::Any) => Some(r.clone()),
            (ScopeResource::Type(a), ScopeResource::Type(b)) => {
                (a == b).then(|| ScopeResource::Type(a.clone()))
            }
        }
    }
}

/// One supported `system/` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Which resource types.
    pub resource: ScopeResource,
    /// Which interactions.
    pub perms: Perms,
    /// How to render it.
    pub version: ScopeVersion,
}

impl Scope {
    /// Parses one scope token; `None` means unsupported (not an error).
    pub fn parse(token: &str) -> Option<Scope> {
        let rest = token.strip_prefix("system/")?;
        let (resource, perms) = rest.split_once('.')?;
        let resource = if resource == "*" {
            ScopeResource::Any
        } else if is_type_name(resource) {
            ScopeResource::Type(resource.to_owned())
        } else {
            return None;
        };
        let (perms, version) = match perms {
            "read" => (Perms::V1_READ, ScopeVersion::V1),
            "write" => (Perms::V1_WRITE, ScopeVersion::V1),
            "*" => (Perms::ALL, ScopeVersion::V1),
            letters => (Perms::parse_letters(letters)?, ScopeVersion::V2),
        };
        Some(Scope {
            resource,
            perms,
            version,
        })
    }

    /// What both scopes permit, in `self`'s syntax; `None` if nothing.
    pub fn intersect(&self, other: &Scope) -> Option<Scope> {
        let resource = self.resource.intersect(&other.resource)?;
        let perms = self.perms.intersect(other.perms);
        (!perms.is_empty()).then_some(Scope {
            resource,
            perms,
            version: self.version,
        })
    }

    /// Whether this scope permits `interaction` on `resource_type`.
    pub fn permits(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.resource.matches(resource_type) && self.perms.allows(interaction)
    }
}

impl FromStr for Scope {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s).ok_or_else(|| {
            AuthError::InvalidScope(format!(
                "unsupported scope {:?}",
                s.chars().take(80).collect::<String>()
            ))
        })
    }
}

impl fmt::Display for Scope {
    /// v1 words when the scope was v1 and its permissions have a v1 word;
    /// otherwise v2 letters (an intersection can leave e.g. only `r`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = match &self.resource {
            ScopeResource::Any => "*",
            ScopeResource::Type(t) => t.as_str(),
        };
        match (self.version, self.perms.v1_word()) {
            (ScopeVersion::V1, Some(word)) => write!(f, "system/{resource}.{word}"),
            _ => write!(f, "system/{resource}.{}", self.perms.letters()),
        }
    }
}

fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && s.len() <= MAX_TYPE_LEN
}

/// The scopes granted to one token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantedScopes {
    scopes: Vec<Scope>,
}

impl GrantedScopes {
    /// Rebuilds the grant from the space-separated string stored in an
    /// access token. Unsupported tokens are skipped: the string was written
    /// by this crate, so there are none unless the format changed.
    pub fn parse(s: &str) -> GrantedScopes {
        let mut scopes: Vec<Scope> = Vec::new();
        for scope in s.split_ascii_whitespace().filter_map(Scope::parse) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        GrantedScopes { scopes }
    }

    /// Whether some granted scope permits `interaction` on `resource_type`.
    pub fn permits(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.scopes
            .iter()
            .any(|s| s.permits(resource_type, interaction))
    }

    /// The granted scopes, in request order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }
}

impl fmt::Display for GrantedScopes {
    /// The OAuth `scope` response value: scopes separated by single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

/// Grants each requested scope's intersection with the client's allowed
/// scopes, restricted to `supported_types` for named types.
///
/// By construction a grant never exceeds what was asked (each result is an
/// intersection with a requested scope, so write is only granted when asked)
/// nor what is allowed (each permission comes from an allowed scope covering
/// that resource). Results keep the request's order and syntax.
pub fn grant(
    requested: &str,
    allowed: &[Scope],
    supported_types: &[&str],
) -> Result<GrantedScopes, AuthError> {
    let tokens: Vec<&str> = requested.split_ascii_whitespace().collect();
    if tokens.len() > MAX_REQUESTED_SCOPES {
        return Err(AuthError::InvalidScope(format!(
            "more than {MAX_REQUESTED_SCOPES} scopes requested"
        )));
    }
    let mut granted: Vec<Scope> = Vec::new();
    for wanted in tokens.iter().filter_map(|t| Scope::parse(t)) {
        // Per requested scope, merge what several allowed scopes give for
        // the same resource, so `system/*.rs` + `system/*.c` allowed and
        // `system/Group.*` requested yield one `system/Group.crs`.
        let mut merged: Vec<Scope> = Vec::new();
        for piece in allowed.iter().filter_map(|a| wanted.intersect(a)) {
            if let ScopeResource::Type(t) = &piece.resource
                && !supported_types.contains(&t.as_str())
            {
                continue;
            }
            match merged.iter_mut().find(|m| m.resource == piece.resource) {
                Some(m) => m.perms = m.perms.union(piece.perms),
                None => merged.push(piece),
            }
        }
        for scope in merged {
            if !granted.contains(&scope) {
                granted.push(scope);
            }
        }
    }
    if granted.is_empty() {
        return Err(AuthError::InvalidScope(
            "none of the requested scopes can be granted to this client".into(),
        ));
    }
    Ok(GrantedScopes { scopes: granted })
}
