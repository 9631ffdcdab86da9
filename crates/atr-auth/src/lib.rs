//! SMART on FHIR Backend Services authorization, as pure logic.
//!
//! This crate implements the pieces of the SMART App Launch v2 "Backend
//! Services" profile (OAuth 2.0 `client_credentials` grant authenticated with
//! `private_key_jwt` client assertions) that do not depend on an HTTP server,
//! a database or FHIR resources:
//!
//! * [`jwk`]: JSON Web Keys and key sets (RSA and EC P-384), bounded parsing,
//!   RFC 7638 thumbprints.
//! * [`keygen`]: generating a client key pair as private/public JWK sets.
//! * [`assertion`]: signing a client assertion (client side) and checking one
//!   (server side, in two steps: [`assertion::peek`] then
//!   [`assertion::verify`]).
//! * [`scope`]: SMART v1/v2 `system/` scopes and granting their intersection
//!   with what a client is allowed.
//! * [`access_token`]: the server's own HS256 access tokens with key rotation.
//! * [`jwks_cache`]: fetching and caching a client's JWKS URL.
//!
//! Everything that fails returns an [`AuthError`], which knows its OAuth
//! error code.

#![forbid(unsafe_code)]

mod alg;
mod b64;
mod error;
mod jws;
mod key_material;

pub mod access_token;
pub mod assertion;
pub mod jwk;
pub mod jwks_cache;
pub mod keygen;
pub mod scope;

pub use access_token::{AccessClaims, AccessTokenKeys, HmacKey};
pub use alg::SigningAlg;
pub use assertion::{
    UnverifiedAssertion, VerifiedAssertion, peek, sign_client_assertion, sign_jwt,
    sign_jwt_with_jku, verify,
};
pub use error::AuthError;
pub use jwk::{Jwk, JwkSet, KeyKind};
pub use jwks_cache::{JwksCache, JwksCacheConfig};
pub use keygen::{GeneratedKeys, generate};
pub use scope::{GrantedScopes, Interaction, Perms, Scope, ScopeResource, ScopeVersion, grant};
