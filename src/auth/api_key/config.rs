//! The serde configuration of the whole layer.

use serde::Deserialize;

use super::{
    layer::ApiKeyLayer,
    store::{ApiKeys, PrincipalConfig, read_env, rename},
};
use crate::error::{ConfigError, ConfigErrorKind};

/// The serde configuration of an [`ApiKeyLayer`] and its in-memory keys.
///
/// ```toml
/// realm = "orders"
/// header = "x-api-key"                      # optional; Authorization: Bearer is read too
/// require_scopes = ["orders:read"]
/// hashes_env = "BATTLEMENT_API_KEY_HASHES"  # optional: more keys from the environment
///
/// [[principals]]
/// id = "billing"
/// scopes = ["orders:read"]
/// keys = ["5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    /// The realm of `WWW-Authenticate` (default [`DEFAULT_REALM`](super::DEFAULT_REALM)).
    pub realm: Option<String>,
    /// A header to read the key from besides `Authorization: Bearer`.
    pub header: Option<String>,
    /// Whether `Authorization: Bearer` is read (default `true`).
    pub accept_bearer: bool,
    /// Scopes every principal must have on the routes this layer wraps.
    pub require_scopes: Vec<String>,
    /// Principals and their key hashes.
    pub principals: Vec<PrincipalConfig>,
    /// The name of an environment variable with more comma-separated hex hashes, each its own
    /// principal (see [`ApiKeys::from_env_hashes`]); it must be set when named.
    pub hashes_env: Option<String>,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        Self {
            realm: None,
            header: None,
            accept_bearer: true,
            require_scopes: Vec::new(),
            principals: Vec::new(),
            hashes_env: None,
        }
    }
}

impl ApiKeyLayer {
    /// Builds the layer and its [`ApiKeys`] from configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`principals[0].keys[1].hash`, `realm`,
    /// `BATTLEMENT_API_KEY_HASHES[2]`, ...) for any invalid value, a duplicate key, a named
    /// environment variable that is unset, neither `Authorization` nor a header to read, or
    /// no key at all (field `principals`).
    pub fn from_config(config: &ApiKeyConfig) -> Result<Self, ConfigError> {
        let mut builder = ApiKeys::builder();
        builder.add_principals(&config.principals)?;
        if let Some(var) = &config.hashes_env {
            let value = read_env(var).map_err(|e| e.within("hashes_env"))?;
            builder.add_hash_list(&value).map_err(|e| {
                let field = format!("{var}{}", e.field());
                rename(e, field)
            })?;
        }
        let keys = builder.build()?;
        if keys.is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "principals",
                "no API key is configured, so every request would be refused",
            ));
        }
        if !config.accept_bearer && config.header.is_none() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "header",
                "with accept_bearer = false, a header to read the key from is needed",
            ));
        }
        let mut layer = ApiKeyLayer::new(keys).accept_bearer(config.accept_bearer);
        if let Some(realm) = &config.realm {
            layer = layer.realm(realm)?;
        }
        if let Some(header) = &config.header {
            layer = layer.header(header)?;
        }
        if !config.require_scopes.is_empty() {
            layer = layer
                .require_scopes(&config.require_scopes)
                .map_err(rename_require)?;
        }
        Ok(layer)
    }
}

/// `require.scopes[i]` (the builder's path) becomes `require_scopes[i]` (the config's).
fn rename_require(e: ConfigError) -> ConfigError {
    let field = e.field().replacen("require.scopes", "require_scopes", 1);
    rename(e, field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::hash_key;

    fn parse(text: &str) -> Result<ApiKeyLayer, ConfigError> {
        ApiKeyLayer::from_config(&toml::from_str::<ApiKeyConfig>(text).unwrap())
    }

    #[test]
    fn builds_the_layer() {
        let hash = hash_key("k").to_hex();
        let layer = parse(&format!(
            r#"
            realm = "orders"
            header = "x-api-key"
            require_scopes = ["orders:read"]
            [[principals]]
            id = "billing"
            scopes = ["orders:read"]
            keys = ["{hash}"]
            "#
        ))
        .unwrap();
        assert_eq!(
            layer.shared.challenge,
            http::HeaderValue::from_static(r#"Bearer realm="orders""#)
        );
        assert_eq!(layer.shared.header.as_ref().unwrap(), "x-api-key");
        assert!(layer.shared.bearer);
    }

    #[test]
    fn errors_name_the_field() {
        let hash = hash_key("k").to_hex();
        let keys = format!("[[principals]]\nid = \"a\"\nkeys = [\"{hash}\"]\n");
        let field = |text: &str| parse(text).unwrap_err().field().to_owned();
        assert_eq!(field(""), "principals");
        assert_eq!(field(&format!("realm = \"a\\\"b\"\n{keys}")), "realm");
        assert_eq!(field(&format!("header = \"a b\"\n{keys}")), "header");
        assert_eq!(
            field(&format!("require_scopes = [\"a\", \"b c\"]\n{keys}")),
            "require_scopes[1]"
        );
        assert_eq!(field(&format!("accept_bearer = false\n{keys}")), "header");
        assert_eq!(
            field(&format!(
                "hashes_env = \"BATTLEMENT_TEST_SURELY_UNSET_VAR_71c2\"\n{keys}"
            )),
            "hashes_env.BATTLEMENT_TEST_SURELY_UNSET_VAR_71c2"
        );
        assert!(toml::from_str::<ApiKeyConfig>("nope = 1").is_err());
    }
}
