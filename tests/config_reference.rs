//! Keeps the configuration reference in README.md true: its keys are exactly the keys the
//! parser accepts (asked of the parser itself, section by section), every key of
//! `battlement.toml` is in it, and every default it gives is what the parser yields when the
//! key is left out.

use std::collections::BTreeSet;

use battlement::stack::ServerConfig;

const README: &str = include_str!("../README.md");
const EXAMPLE: &str = include_str!("../battlement.toml");

/// A section path as the reference writes it (`rate_limit.per_ip`, `signing.keys[]`), and
/// what must be in it for the parser to accept the section at all.
const SECTIONS: &[(&str, &str)] = &[
    ("", ""),
    ("request_id", ""),
    ("trace", ""),
    ("catch_panic", ""),
    ("security_headers", ""),
    ("https", ""),
    ("cors", ""),
    ("body_limit", ""),
    ("rate_limit", ""),
    ("rate_limit.per_ip", ""),
    ("rate_limit.per_principal", ""),
    ("rate_limit.redis", r#"url = { env = "X" }"#),
    ("redis", r#"url = { env = "X" }"#),
    ("api_key", ""),
    ("api_key.principals[]", r#"id = "p""#),
    (
        "signing",
        r#"keys = [{ id = "k", secret = { env = "X" } }]"#,
    ),
    (
        "signing.keys[]",
        r#"id = "k"
secret = { env = "X" }"#,
    ),
    ("timeout", ""),
    ("circuit_breaker", ""),
    ("client", ""),
    ("client.retry", ""),
    ("client.retry.budget", ""),
    ("client.circuit_breaker", ""),
    (
        "client.signing",
        r#"key_id = "k"
secret = { env = "X" }"#,
    ),
    ("server", ""),
];

struct Row {
    key: String,
    /// The default as a TOML value, when the reference gives one.
    default: Option<String>,
}

fn rows() -> Vec<Row> {
    let start = README
        .find("<!-- config-reference:start -->")
        .expect("README has the reference start marker");
    let end = README
        .find("<!-- config-reference:end -->")
        .expect("README has the reference end marker");
    let mut rows = Vec::new();
    for line in README[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 3, "a reference row has 3 cells: {line}");
        let key = cells[0].trim_matches('`').to_owned();
        let default = match cells[1] {
            "—" => None,
            d => {
                assert!(
                    d.starts_with('`') && d.ends_with('`'),
                    "{key}: the default is `a TOML value` or —, not {d}"
                );
                Some(d.trim_matches('`').to_owned())
            }
        };
        rows.push(Row { key, default });
    }
    assert!(rows.len() > 80, "{} rows", rows.len());
    rows
}

/// The section of a reference key and its last segment: `rate_limit.per_ip.burst` →
/// (`rate_limit.per_ip`, `burst`).
fn split_key(key: &str) -> (&str, &str) {
    key.rsplit_once('.').unwrap_or(("", key))
}

/// The table at a section path, made if missing (`x[]` is the first table of array `x`).
fn section_mut<'a>(mut table: &'a mut toml::Table, section: &str) -> &'a mut toml::Table {
    if section.is_empty() {
        return table;
    }
    for seg in section.split('.') {
        table = match seg.strip_suffix("[]") {
            Some(name) => {
                let array = table.entry(name).or_insert_with(|| {
                    toml::Value::Array(vec![toml::Value::Table(toml::Table::new())])
                });
                array.as_array_mut().unwrap()[0].as_table_mut().unwrap()
            }
            None => table
                .entry(seg)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap(),
        };
    }
    table
}

/// The smallest document with `section` in it, as the parser accepts it.
fn minimal(section: &str) -> toml::Table {
    let mut doc = toml::Table::new();
    // Every enclosing section first (a `signing.keys[]` needs its `signing`).
    let mut prefix = String::new();
    for seg in section.split('.').filter(|s| !s.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(seg);
        let required = SECTIONS
            .iter()
            .find(|(s, _)| *s == prefix)
            .unwrap_or_else(|| panic!("{prefix} is not in SECTIONS"))
            .1;
        let fields: toml::Table = required.parse().unwrap();
        let here = section_mut(&mut doc, &prefix);
        for (k, v) in fields {
            here.entry(k).or_insert(v);
        }
    }
    // `signing.keys` given inline by `signing` is the array `signing.keys[]` fills.
    doc
}

fn parse(doc: &toml::Table) -> Result<ServerConfig, battlement::ConfigError> {
    ServerConfig::from_toml_str(&toml::to_string(doc).unwrap())
}

/// The fields the parser accepts in `section`, read from its "unknown field" error.
fn accepted_fields(section: &str) -> BTreeSet<String> {
    let mut doc = minimal(section);
    section_mut(&mut doc, section).insert("zz_not_a_key".into(), toml::Value::Boolean(true));
    let err = parse(&doc)
        .expect_err("an unknown key is refused")
        .to_string();
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("{section}: the error names the expected keys: {err}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn reference_keys_are_exactly_the_accepted_keys() {
    let rows = rows();
    let keys: BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "no key twice");
    for (section, _) in SECTIONS {
        let accepted = accepted_fields(section);
        // What the reference says is in this section: its keys, and its subsections.
        let mut documented = BTreeSet::new();
        for key in &keys {
            let rest = if section.is_empty() {
                Some(*key)
            } else {
                key.strip_prefix(section).and_then(|r| r.strip_prefix('.'))
            };
            if let Some(rest) = rest {
                let field = rest.split('.').next().unwrap().trim_end_matches("[]");
                documented.insert(field.to_owned());
            }
        }
        assert_eq!(
            documented, accepted,
            "[{section}]: README reference (left) vs the parser (right)"
        );
    }
    for key in &keys {
        let (section, _) = split_key(key);
        assert!(
            SECTIONS.iter().any(|(s, _)| *s == section),
            "{key}: its section is checked"
        );
    }
}

#[test]
fn every_key_of_the_example_file_is_in_the_reference() {
    fn leaves(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) if !t.contains_key("env") && !t.contains_key("file") => {
                    leaves(&path, t, out)
                }
                toml::Value::Array(items)
                    if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
                {
                    for item in items {
                        leaves(&format!("{path}[]"), item.as_table().unwrap(), out);
                    }
                }
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    let mut in_file = BTreeSet::new();
    leaves("", &EXAMPLE.parse().unwrap(), &mut in_file);
    let documented: BTreeSet<String> = rows().into_iter().map(|r| r.key).collect();
    let missing: Vec<_> = in_file.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys of battlement.toml not in README: {missing:?}"
    );
    // And the file shows (or names in a comment) every documented key.
    for key in &documented {
        let (_, name) = split_key(key);
        assert!(
            EXAMPLE.contains(&format!("{name} =")),
            "battlement.toml does not show {key}"
        );
    }
}

#[test]
fn reference_defaults_are_the_parser_defaults() {
    let mut checked = 0;
    for row in rows() {
        let Some(default) = &row.default else {
            continue;
        };
        let (section, name) = split_key(&row.key);
        let without = minimal(section);
        let mut with = without.clone();
        let value: toml::Table = format!("v = {default}")
            .parse()
            .unwrap_or_else(|e| panic!("{}: `{default}` is not a TOML value: {e}", row.key));
        section_mut(&mut with, section).insert(name.to_owned(), value["v"].clone());
        let left_out = parse(&without).unwrap_or_else(|e| panic!("{}: {e}", row.key));
        let written = parse(&with).unwrap_or_else(|e| panic!("{} = {default}: {e}", row.key));
        assert_eq!(
            format!("{written:?}"),
            format!("{left_out:?}"),
            "{}: README says the default is {default}",
            row.key
        );
        checked += 1;
    }
    assert!(checked > 60, "{checked} defaults checked");
}

#[test]
fn a_wrong_default_would_be_caught() {
    // The check above can fail: a value other than the default changes the parsed config.
    let without = minimal("rate_limit.per_ip");
    let mut with = without.clone();
    section_mut(&mut with, "rate_limit.per_ip").insert("burst".into(), toml::Value::Integer(61));
    assert_ne!(
        format!("{:?}", parse(&with).unwrap()),
        format!("{:?}", parse(&without).unwrap())
    );
}

mod mutations {
    //! The parser and the stack builder never panic on a config: each key of the example file
    //! replaced by values of every type, including extremes.

    use battlement::stack::{ServerConfig, ServerStack};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = toml::Value> {
        prop_oneof![
            any::<i64>().prop_map(toml::Value::Integer),
            prop::sample::select(vec![0i64, -1, 1, 255, 256, 65_536, u32::MAX as i64 + 1])
                .prop_map(toml::Value::Integer),
            any::<f64>().prop_map(toml::Value::Float),
            any::<bool>().prop_map(toml::Value::Boolean),
            "[ -~]{0,24}".prop_map(toml::Value::String),
            prop::sample::select(vec![
                "0s",
                "1ns",
                "18446744073709551615s",
                "99999999999999d",
                "1h30",
                "-5s",
                "5 s",
                "0B",
                "1MiB",
                "18446744073709551615TiB",
                "9999999999GB",
                "*",
                "::/0",
                "0.0.0.0/0",
                "10.0.0.0/33",
                "base64:",
                "zz",
                "\u{0}",
                "@method",
                "https://*",
                "local",
                "open",
                "web",
                "any",
                "rediss://:p@h:1/0",
            ])
            .prop_map(|s| toml::Value::String(s.to_owned())),
            prop::collection::vec("[ -~]{0,12}", 0..4)
                .prop_map(|v| toml::Value::Array(v.into_iter().map(toml::Value::String).collect())),
        ]
    }

    /// The example with its secrets in files, so that what parses can also be built (the
    /// files are written once for every test of the process).
    fn with_secret_files() -> String {
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TEXT.get_or_init(|| {
            let dir = std::env::temp_dir();
            let key = dir.join(format!("battlement-ref-{}-key", std::process::id()));
            let old = dir.join(format!("battlement-ref-{}-old", std::process::id()));
            std::fs::write(&key, "ab".repeat(32)).unwrap();
            std::fs::write(&old, "cd".repeat(32)).unwrap();
            super::EXAMPLE
                .replace(
                    r#"{ env = "BATTLEMENT_SIGNING_KEY" }"#,
                    &format!("{{ file = {:?} }}", key.display().to_string()),
                )
                .replace("/run/secrets/partner-2025", &old.display().to_string())
        })
        .clone()
    }

    #[test]
    fn the_unmutated_example_builds() {
        let mut doc: toml::Table = with_secret_files().parse().unwrap();
        doc.remove("redis");
        let config = ServerConfig::from_toml_str(&toml::to_string(&doc).unwrap()).unwrap();
        ServerStack::from_config(&config).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn never_panics(picks in prop::collection::vec((any::<prop::sample::Index>(), value()), 1..4)) {
            let mut doc: toml::Table = with_secret_files().parse().unwrap();
            if !cfg!(feature = "redis") {
                // Refused by a build without Redis before anything else is built.
                doc.remove("redis");
            }
            let mut paths = Vec::new();
            super::leaf_paths(&doc, &mut Vec::new(), &mut paths);
            for (index, value) in picks {
                let path = index.get(&paths).clone();
                super::set_path(&mut doc, &path, value);
            }
            let text = toml::to_string(&doc).unwrap();
            if let Ok(config) = ServerConfig::from_toml_str(&text) {
                let _ = config.audit().to_string();
                let _ = ServerStack::from_config(&config);
            }
        }
    }
}

/// A step into a TOML document: a key or an array index.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn leaf_paths(table: &toml::Table, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    for (k, v) in table {
        here.push(Step::Key(k.clone()));
        match v {
            toml::Value::Table(t) => leaf_paths(t, here, out),
            toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) = item.as_table() {
                        here.push(Step::Index(i));
                        leaf_paths(t, here, out);
                        here.pop();
                    }
                }
            }
            _ => out.push(here.clone()),
        }
        here.pop();
    }
}

fn set_path(table: &mut toml::Table, path: &[Step], value: toml::Value) {
    let mut here = table;
    let (last, parents) = path.split_last().unwrap();
    let mut i = 0;
    while i < parents.len() {
        let Step::Key(k) = &parents[i] else {
            unreachable!("a path starts with a key and an index follows a key")
        };
        let v = here.get_mut(k).unwrap();
        here = match parents.get(i + 1) {
            Some(Step::Index(n)) => {
                i += 2;
                v.as_array_mut().unwrap()[*n].as_table_mut().unwrap()
            }
            _ => {
                i += 1;
                v.as_table_mut().unwrap()
            }
        };
    }
    match last {
        Step::Key(k) => {
            here.insert(k.clone(), value);
        }
        Step::Index(_) => unreachable!("a leaf path ends with a key"),
    }
}
