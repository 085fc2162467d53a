//! `BATTLEMENT__SECTION__KEY=value` environment overrides of a TOML configuration.

use toml::{Table, Value};

use crate::error::ConfigError;

/// The prefix of the variables read by [`ServerConfig::from_toml_file`]
/// (`BATTLEMENT__RATE_LIMIT__PER_IP__BURST=20`).
///
/// [`ServerConfig::from_toml_file`]: crate::stack::ServerConfig::from_toml_file
pub const ENV_PREFIX: &str = "BATTLEMENT";

/// Most levels of an override path.
const MAX_DEPTH: usize = 8;

/// Applies the variables of `vars` named `{prefix}__A__B__C` to `table` (`a.b.c`).
///
/// The segments after the prefix are lowercased and joined with dots; single underscores
/// stay. The value is parsed as a TOML value (`20`, `true`, `["a"]`, `"x"`), or taken as a
/// string when it does not parse (`1MiB`, `https://a.example`). Variables with another prefix
/// are ignored. Missing tables are created.
///
/// ```
/// let mut table: toml::Table = "[rate_limit.per_ip]\nburst = 60".parse().unwrap();
/// let vars = [("BATTLEMENT__RATE_LIMIT__PER_IP__BURST".to_owned(), "20".to_owned())];
/// battlement::config::apply_env_overrides(&mut table, "BATTLEMENT", vars).unwrap();
/// assert_eq!(table["rate_limit"]["per_ip"]["burst"].as_integer(), Some(20));
/// ```
///
/// # Errors
///
/// A [`ConfigError`] naming the variable when a path is empty, deeper than 8 levels, or goes
/// through a value that is not a table.
pub fn apply_env_overrides<I>(table: &mut Table, prefix: &str, vars: I) -> Result<(), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let head = format!("{prefix}__");
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(&head) else {
            continue;
        };
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if segments.len() > MAX_DEPTH || segments.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                name,
                "expected PREFIX__SECTION__KEY with at most 8 non-empty levels",
            ));
        }
        let (last, parents) = segments
            .split_last()
            .ok_or_else(|| ConfigError::invalid(name.clone(), "empty path"))?;
        let mut here = &mut *table;
        for seg in parents {
            let entry = here
                .entry(seg.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            here = entry.as_table_mut().ok_or_else(|| {
                ConfigError::invalid(
                    name.clone(),
                    format!("`{seg}` is not a table in the configuration"),
                )
            })?;
        }
        here.insert(last.clone(), parse_value(&value));
    }
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, vars: &[(&str, &str)]) -> Result<Table, ConfigError> {
        let mut t: Table = text.parse().unwrap();
        apply_env_overrides(
            &mut t,
            "BATTLEMENT",
            vars.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        )?;
        Ok(t)
    }

    #[test]
    fn overrides_nested_keys_with_typed_values() {
        let t = apply(
            "[body_limit]\nmax = \"1MiB\"",
            &[
                ("BATTLEMENT__BODY_LIMIT__MAX", "2MiB"),
                (
                    "BATTLEMENT__CORS__ALLOW_ORIGINS",
                    r#"["https://a.example"]"#,
                ),
                ("BATTLEMENT__CORS__ENABLED", "true"),
                ("OTHER__CORS__ENABLED", "false"),
                ("BATTLEMENTX", "1"),
            ],
        )
        .unwrap();
        assert_eq!(t["body_limit"]["max"].as_str(), Some("2MiB"));
        assert_eq!(t["cors"]["enabled"].as_bool(), Some(true));
        assert_eq!(
            t["cors"]["allow_origins"].as_array().unwrap()[0].as_str(),
            Some("https://a.example")
        );
    }

    #[test]
    fn bad_paths_name_the_variable() {
        let err = apply("a = 1", &[("BATTLEMENT__A__B", "1")]).unwrap_err();
        assert_eq!(err.field(), "BATTLEMENT__A__B");
        let err = apply("", &[("BATTLEMENT__A____B", "1")]).unwrap_err();
        assert_eq!(err.field(), "BATTLEMENT__A____B");
    }
}
