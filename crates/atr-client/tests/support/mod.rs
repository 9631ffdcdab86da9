//! What the Consumer's tests against our Producer share: a provider organisation's profile.

use atr_client::Profile;
use atr_server::auth::registry::{NewClient, register};

use crate::common::{NPI, TestApp, npi_of};

/// A Consumer profile for provider organisation `org` (by its NPI) on `app`, registered with a
/// fresh key and `scopes`; its token URL is left to discovery.
pub async fn provider_profile(app: &TestApp, id: &str, org: &str, scopes: &[&str]) -> Profile {
    let npi = npi_of(app, org).await;
    let keys = atr_auth::generate(atr_auth::SigningAlg::Es384).expect("keygen");
    register(
        app.store.as_ref(),
        NewClient {
            client_id: id.into(),
            name: id.into(),
            admin: false,
            jwks: Some(keys.public.to_json()),
            jwks_url: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            identifiers: vec![format!("{NPI}|{npi}")],
        },
    )
    .await
    .expect("register");
    Profile {
        name: id.into(),
        fhir_base_url: app.base.clone(),
        client_id: id.into(),
        private_jwks: keys.private.to_json(),
        // Found through .well-known/smart-configuration.
        token_url: None,
        scopes: atr_client::config::DEFAULT_SCOPES.into(),
    }
}
