//! Parsing `Signature-Input` and `Signature` (RFC 9421 §4) with the `sfv` structured-field parser.

use std::{borrow::Cow, fmt};

use super::{
    error::{SignatureError, SignatureErrorKind},
    sf::{self, Bare, Member, SfError},
};
use crate::error::ConfigError;

/// The most bytes of a combined `Signature-Input` or `Signature` field that are parsed.
pub const MAX_FIELD_LEN: usize = 8 * 1024;
/// The most signatures (labels) in one field.
pub const MAX_SIGNATURES: usize = 16;
/// The most components covered by one signature.
pub const MAX_COMPONENTS: usize = 64;

/// What a covered component is, once parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ComponentKind {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    /// `@query-param` with its `name` parameter (as sent, i.e. percent-encoded).
    QueryParam(String),
    /// A header field; `key` selects a dictionary member, `sf` asks for strict re-serialization.
    Field {
        sf: bool,
        key: Option<String>,
    },
}

/// One covered component of a signature: `"@method"`, `"content-digest"`,
/// `"@query-param";name="id"`, `"example-dict";key="a"`, ...
#[derive(Clone, PartialEq, Eq)]
pub struct Component {
    /// The name is `serialized[1..=name_len]` (names never need escaping).
    name_len: usize,
    pub(crate) kind: ComponentKind,
    /// Static for the parameterless identifiers met on almost every request (no allocation).
    serialized: Cow<'static, str>,
}

/// Serialized identifiers kept as `&'static str`: the derived components and the fields most
/// often signed.
const COMMON_IDENTIFIERS: &[&str] = &[
    "\"@method\"",
    "\"@target-uri\"",
    "\"@authority\"",
    "\"@scheme\"",
    "\"@request-target\"",
    "\"@path\"",
    "\"@query\"",
    "\"content-digest\"",
    "\"content-type\"",
    "\"content-length\"",
    "\"date\"",
    "\"host\"",
    "\"authorization\"",
];

/// `"name"` as a static string when it is one of [`COMMON_IDENTIFIERS`].
fn common_identifier(name: &str) -> Option<&'static str> {
    COMMON_IDENTIFIERS
        .iter()
        .find(|id| id.len() == name.len() + 2 && &id[1..=name.len()] == name)
        .copied()
}

impl Component {
    /// Parses a component identifier as written in configuration: a bare name (`@method`,
    /// `content-type`) or a serialized identifier with parameters (`"@query-param";name="id"`).
    ///
    /// # Errors
    ///
    /// When the identifier is not valid or not supported (e.g. `@status`, `;bs`, `;req`).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let text = if s.starts_with('"') {
            s.to_owned()
        } else {
            format!("\"{s}\"")
        };
        let item = sf::parse_item(&text).map_err(|_| {
            ConfigError::invalid("signing.components", "not a component identifier")
        })?;
        Self::from_item(&item, false).map_err(|kind| {
            ConfigError::invalid(
                "signing.components",
                match kind {
                    SignatureErrorKind::UnsupportedComponent => "unsupported component",
                    _ => "not a component identifier",
                },
            )
        })
    }

    /// `canonical`: the item's source text is its canonical serialization.
    pub(crate) fn from_item(
        item: &sf::Item<'_>,
        canonical: bool,
    ) -> Result<Self, SignatureErrorKind> {
        let Bare::Str(name) = &item.bare else {
            return Err(SignatureErrorKind::MalformedSignatureInput);
        };
        let mut sf = false;
        let mut key = None;
        let mut param_name = None;
        for (p, v) in &item.params {
            match (*p, v) {
                ("sf", Bare::Bool(true)) => sf = true,
                ("key", Bare::Str(k)) => key = Some(k.to_string()),
                ("name", Bare::Str(n)) => param_name = Some(n.to_string()),
                ("sf" | "key" | "name", _) => {
                    return Err(SignatureErrorKind::MalformedSignatureInput);
                }
                // `req`, `bs`, `tr` and anything unknown: RFC 9421 §2 says unknown parameters
                // MUST fail; the known ones are not supported by this verifier.
                _ => return Err(SignatureErrorKind::UnsupportedComponent),
            }
        }
        let derived = |kind| {
            if sf || key.is_some() || param_name.is_some() {
                Err(SignatureErrorKind::UnsupportedComponent)
            } else {
                Ok(kind)
            }
        };
        let kind = match name.as_ref() {
            "@method" => derived(ComponentKind::Method)?,
            "@target-uri" => derived(ComponentKind::TargetUri)?,
            "@authority" => derived(ComponentKind::Authority)?,
            "@scheme" => derived(ComponentKind::Scheme)?,
            "@request-target" => derived(ComponentKind::RequestTarget)?,
            "@path" => derived(ComponentKind::Path)?,
            "@query" => derived(ComponentKind::Query)?,
            "@query-param" => {
                if sf || key.is_some() {
                    return Err(SignatureErrorKind::UnsupportedComponent);
                }
                let n = param_name.ok_or(SignatureErrorKind::MalformedSignatureInput)?;
                ComponentKind::QueryParam(n)
            }
            n if n.starts_with('@') => return Err(SignatureErrorKind::UnsupportedComponent),
            n => {
                if param_name.is_some() {
                    return Err(SignatureErrorKind::UnsupportedComponent);
                }
                // Field names are lowercase in identifiers (RFC 9421 §2.1).
                // A field name is a token (RFC 9110 §5.1), in lowercase here.
                let tchar = |b: u8| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
                };
                if n.is_empty() || !n.bytes().all(tchar) {
                    return Err(SignatureErrorKind::MalformedSignatureInput);
                }
                ComponentKind::Field { sf, key }
            }
        };
        let serialized =
            if let Some(id) = common_identifier(name).filter(|_| item.params.is_empty()) {
                Cow::Borrowed(id)
            } else if canonical {
                Cow::Owned(item.raw.to_owned())
            } else {
                let mut s = String::with_capacity(item.raw.len());
                sf::write_item(&mut s, item);
                Cow::Owned(s)
            };
        Ok(Self {
            name_len: name.len(),
            kind,
            serialized,
        })
    }

    /// A parameterless component whose `name` needs no escaping.
    pub(crate) fn fixed(name: &str, kind: ComponentKind) -> Self {
        Self {
            name_len: name.len(),
            kind,
            serialized: common_identifier(name)
                .map_or_else(|| Cow::Owned(format!("\"{name}\"")), Cow::Borrowed),
        }
    }

    /// The component name, e.g. `@method` or `content-digest`.
    pub fn name(&self) -> &str {
        &self.serialized[1..=self.name_len]
    }

    /// The serialized identifier as it appears in the signature base, e.g. `"@method"`.
    pub fn identifier(&self) -> &str {
        &self.serialized
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialized)
    }
}

/// One parsed member of `Signature-Input`: a label, the covered components and the parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInput {
    pub(crate) label: String,
    pub(crate) components: Vec<Component>,
    pub(crate) created: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) nonce: Option<String>,
    pub(crate) keyid: Option<String>,
    /// Static for `hmac-sha256`, the one algorithm this crate knows.
    pub(crate) alg: Option<Cow<'static, str>>,
    pub(crate) tag: Option<String>,
    /// The value of the `@signature-params` line.
    pub(crate) params_line: String,
}

impl SignatureInput {
    /// The label (dictionary key), e.g. `sig1`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The covered components, in order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// `created`, if present.
    pub fn created(&self) -> Option<i64> {
        self.created
    }

    /// `expires`, if present.
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }

    /// `nonce`, if present.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// `keyid`, if present.
    pub fn key_id(&self) -> Option<&str> {
        self.keyid.as_deref()
    }

    /// `alg`, if present.
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// `tag`, if present.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The `@signature-params` value: the re-serialized inner list with its parameters.
    pub fn signature_params(&self) -> &str {
        &self.params_line
    }

    /// Whether `component` (a serialized identifier such as `"@method"`) is covered.
    pub(crate) fn covers(&self, identifier: &str) -> bool {
        self.components.iter().any(|c| c.serialized == identifier)
    }
}

/// Parses a `Signature-Input` field value (several field lines joined with `", "`).
///
/// Never panics, whatever the input; bounded by [`MAX_FIELD_LEN`], [`MAX_SIGNATURES`] and
/// [`MAX_COMPONENTS`].
///
/// # Errors
///
/// [`SignatureErrorKind::MalformedSignatureInput`] for anything not shaped as RFC 9421 §4.1
/// says, [`SignatureErrorKind::DuplicateLabel`], [`SignatureErrorKind::DuplicateComponent`] and
/// [`SignatureErrorKind::UnsupportedComponent`].
pub fn parse_signature_input(value: &[u8]) -> Result<Vec<SignatureInput>, SignatureError> {
    let err = |k| SignatureError::new(k);
    let malformed = || err(SignatureErrorKind::MalformedSignatureInput);
    if value.len() > MAX_FIELD_LEN {
        return Err(malformed());
    }
    let dict = sf::parse_dictionary(value).map_err(|e| match e {
        SfError::DuplicateKey => err(SignatureErrorKind::DuplicateLabel),
        SfError::Invalid => malformed(),
    })?;
    if dict.members.is_empty() || dict.members.len() > MAX_SIGNATURES {
        return Err(malformed());
    }
    let canonical = dict.canonical;
    let mut out = Vec::with_capacity(dict.members.len());
    for (label, member) in dict.members {
        let Member::List(items, params, raw) = member else {
            return Err(malformed());
        };
        if items.len() > MAX_COMPONENTS {
            return Err(malformed());
        }
        let mut components: Vec<Component> = Vec::with_capacity(items.len());
        for item in &items {
            let c = Component::from_item(item, canonical).map_err(err)?;
            if components.iter().any(|o| o.serialized == c.serialized) {
                return Err(err(SignatureErrorKind::DuplicateComponent));
            }
            components.push(c);
        }
        let mut input = SignatureInput {
            label: label.to_owned(),
            components,
            created: None,
            expires: None,
            nonce: None,
            keyid: None,
            alg: None,
            tag: None,
            params_line: String::new(),
        };
        let int = |v: &Bare<'_>| match v {
            Bare::Int(i) => Ok(*i),
            _ => Err(malformed()),
        };
        let string = |v: &Bare<'_>| match v {
            Bare::Str(s) => Ok(s.to_string()),
            _ => Err(malformed()),
        };
        for (name, v) in &params {
            match *name {
                "created" => input.created = Some(int(v)?),
                "expires" => input.expires = Some(int(v)?),
                "nonce" => input.nonce = Some(string(v)?),
                "keyid" => input.keyid = Some(string(v)?),
                "alg" => {
                    input.alg = Some(match v {
                        Bare::Str(s) if s == "hmac-sha256" => Cow::Borrowed("hmac-sha256"),
                        _ => Cow::Owned(string(v)?),
                    });
                }
                "tag" => input.tag = Some(string(v)?),
                // Parameters registered later are kept in the base but not interpreted.
                _ => {}
            }
        }
        input.params_line = if canonical {
            raw.to_owned()
        } else {
            let mut line = String::with_capacity(raw.len());
            sf::write_inner_list(&mut line, &items, &params);
            line
        };
        out.push(input);
    }
    Ok(out)
}

/// Parses a `Signature` field value into `(label, signature bytes)` pairs.
///
/// # Errors
///
/// [`SignatureErrorKind::MalformedSignature`] or [`SignatureErrorKind::DuplicateLabel`].
pub fn parse_signature(value: &[u8]) -> Result<Vec<(String, Vec<u8>)>, SignatureError> {
    Ok(Signatures::parse(value)?
        .iter()
        .map(|(label, bytes)| (label.to_owned(), bytes.to_vec()))
        .collect())
}

/// A parsed `Signature` field, borrowing the labels from the field value (what the verifier
/// uses: no allocation per label or per signature).
pub(crate) struct Signatures<'a>(Vec<(&'a str, Member<'a>)>);

impl<'a> Signatures<'a> {
    /// As [`parse_signature`].
    pub(crate) fn parse(value: &'a [u8]) -> Result<Self, SignatureError> {
        let malformed = || SignatureError::new(SignatureErrorKind::MalformedSignature);
        if value.len() > MAX_FIELD_LEN {
            return Err(malformed());
        }
        let dict = sf::parse_dictionary(value).map_err(|e| match e {
            SfError::DuplicateKey => SignatureError::new(SignatureErrorKind::DuplicateLabel),
            SfError::Invalid => malformed(),
        })?;
        if dict.members.is_empty() || dict.members.len() > MAX_SIGNATURES {
            return Err(malformed());
        }
        if !dict
            .members
            .iter()
            .all(|(_, m)| signature_bytes(m).is_some())
        {
            return Err(malformed());
        }
        Ok(Self(dict.members))
    }

    /// Every `(label, signature)`, in order.
    fn iter(&self) -> impl Iterator<Item = (&'a str, &[u8])> + '_ {
        self.0
            .iter()
            .filter_map(|(l, m)| signature_bytes(m).map(|b| (*l, b)))
    }

    /// The signature labelled `label`.
    pub(crate) fn get(&self, label: &str) -> Option<&[u8]> {
        self.iter().find(|(l, _)| *l == label).map(|(_, b)| b)
    }
}

/// The bytes of a `Signature` member, when it is a byte sequence.
fn signature_bytes<'m>(member: &'m Member<'_>) -> Option<&'m [u8]> {
    match member {
        Member::Item(sf::Item {
            bare: Bare::Bytes(bytes),
            ..
        }) => Some(bytes.as_slice()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B25: &str = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;

    #[test]
    fn parses_rfc9421_b25() {
        let inputs = parse_signature_input(B25.as_bytes()).unwrap();
        assert_eq!(inputs.len(), 1);
        let i = &inputs[0];
        assert_eq!(i.label(), "sig-b25");
        assert_eq!(i.created(), Some(1_618_884_473));
        assert_eq!(i.key_id(), Some("test-shared-secret"));
        assert_eq!(
            i.signature_params(),
            r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
        );
        let names: Vec<_> = i.components().iter().map(Component::name).collect();
        assert_eq!(names, ["date", "@authority", "content-type"]);
        let sigs =
            parse_signature(b"sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:").unwrap();
        assert_eq!(sigs[0].0, "sig-b25");
        assert_eq!(sigs[0].1.len(), 32);
    }

    #[test]
    fn signature_params_are_reserialized_canonically() {
        let i = parse_signature_input(
            br#"s=( "@method"   "@query-param";name="a" );created=01;keyid="k";x=?1"#,
        )
        .unwrap();
        assert_eq!(
            i[0].signature_params(),
            r#"("@method" "@query-param";name="a");created=1;keyid="k";x"#
        );
        let i = parse_signature_input(br#"s=("@method");created=1;keyid="k""#).unwrap();
        assert_eq!(
            i[0].signature_params(),
            r#"("@method");created=1;keyid="k""#
        );
    }

    #[test]
    fn refuses_duplicates_and_garbage() {
        let kind = |v: &str| parse_signature_input(v.as_bytes()).unwrap_err().kind();
        assert_eq!(
            kind(r#"a=("@method");created=1, a=("@path");created=1"#),
            SignatureErrorKind::DuplicateLabel
        );
        assert_eq!(
            kind(r#"a=("@method" "@method");created=1"#),
            SignatureErrorKind::DuplicateComponent
        );
        assert_eq!(
            kind(r#"a=("@status")"#),
            SignatureErrorKind::UnsupportedComponent
        );
        assert_eq!(
            kind(r#"a=("date";bs)"#),
            SignatureErrorKind::UnsupportedComponent
        );
        assert_eq!(
            kind(r#"a=("@query-param")"#),
            SignatureErrorKind::MalformedSignatureInput
        );
        assert_eq!(
            kind(r#"a=("Date")"#),
            SignatureErrorKind::MalformedSignatureInput
        );
        assert_eq!(
            kind(r#"a=(date)"#),
            SignatureErrorKind::MalformedSignatureInput
        );
        assert_eq!(
            kind(r#"a="x""#),
            SignatureErrorKind::MalformedSignatureInput
        );
        assert_eq!(
            kind(r#"a=("@method");created="1""#),
            SignatureErrorKind::MalformedSignatureInput
        );
        assert_eq!(kind("(((("), SignatureErrorKind::MalformedSignatureInput);
        assert_eq!(kind(""), SignatureErrorKind::MalformedSignatureInput);
        // A comma inside a string is not a member separator.
        assert!(parse_signature_input(br#"a=("@method");nonce="x, a=1""#).is_ok());
        assert_eq!(
            parse_signature(b"a=:AAAA:, a=:AAAA:").unwrap_err().kind(),
            SignatureErrorKind::DuplicateLabel
        );
        assert_eq!(
            parse_signature(b"a=\"AAAA\"").unwrap_err().kind(),
            SignatureErrorKind::MalformedSignature
        );
    }

    #[test]
    fn config_identifiers() {
        assert_eq!(
            Component::parse("@method").unwrap().identifier(),
            r#""@method""#
        );
        assert_eq!(
            Component::parse(r#""@query-param";name="id""#)
                .unwrap()
                .identifier(),
            r#""@query-param";name="id""#
        );
        assert!(Component::parse("@status").is_err());
        assert!(Component::parse("Bad Name").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_signature_input(&s);
            let _ = parse_signature(&s);
        }

        #[test]
        fn parsers_never_panic_on_near_valid(s in r#"[a-z0-9=():;,"@ *.\-?]{0,120}"#) {
            let _ = parse_signature_input(s.as_bytes());
            let _ = parse_signature(s.as_bytes());
        }
    }
}
