//! Parsing `Signature-Input` and `Signature` (RFC 9421 §4) with the crate's own strict
//! structured-field parser (`super::sf`; `sfv` is the oracle of its tests).

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
}

/// A `Signature-Input` member as the verifier reads it: borrowed from the field value (or from
/// a [`SignatureInput`]) so that only the one verified signature is ever copied out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InputRef<'a> {
    pub(crate) label: &'a str,
    pub(crate) components: Cow<'a, [Component]>,
    pub(crate) created: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) nonce: Option<Cow<'a, str>>,
    pub(crate) keyid: Option<Cow<'a, str>>,
    pub(crate) alg: Option<Cow<'a, str>>,
    pub(crate) tag: Option<Cow<'a, str>>,
    /// The value of the `@signature-params` line.
    pub(crate) params_line: &'a str,
}

impl InputRef<'_> {
    /// Whether `component` (a serialized identifier such as `"@method"`) is covered.
    pub(crate) fn covers(&self, identifier: &str) -> bool {
        self.components.iter().any(|c| c.serialized == identifier)
    }
}

impl SignatureInput {
    /// This input, borrowed.
    pub(crate) fn as_input_ref(&self) -> InputRef<'_> {
        fn borrow(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        InputRef {
            label: &self.label,
            components: Cow::Borrowed(&self.components),
            created: self.created,
            expires: self.expires,
            nonce: borrow(&self.nonce),
            keyid: borrow(&self.keyid),
            alg: self.alg.as_deref().map(Cow::Borrowed),
            tag: borrow(&self.tag),
            params_line: &self.params_line,
        }
    }
}

/// The verifier's reading of `Signature-Input`: exactly what [`parse_signature_input`] returns
/// (same members, same errors), borrowed.
///
/// The usual field (canonical text, inner lists of valid components) is read in one pass with
/// no intermediate item list; anything else (an error, a text to re-serialize, more parameters
/// than the pass tracks) is handed to [`parse_signature_input`], whose result `slow` keeps.
///
/// # Errors
///
/// As [`parse_signature_input`].
pub(crate) fn parse_inputs<'a>(
    value: &'a [u8],
    slow: &'a mut Option<Vec<SignatureInput>>,
) -> Result<Vec<InputRef<'a>>, SignatureError> {
    if let Some(inputs) = parse_inputs_fast(value) {
        return Ok(inputs);
    }
    let owned = slow.insert(parse_signature_input(value)?);
    Ok(owned.iter().map(SignatureInput::as_input_ref).collect())
}

/// The one-pass reader of [`parse_inputs`]: `None` whenever it is not sure to agree with
/// [`parse_signature_input`]. It drives the same [`sf::Parser`] through the same grammar, so
/// what it accepts is what `parse_dictionary` accepts; it gives up on every error and on
/// non-canonical text (whose `@signature-params` must be re-serialized).
fn parse_inputs_fast(value: &[u8]) -> Option<Vec<InputRef<'_>>> {
    /// Parameters tracked for duplicates; a longer list goes the slow way.
    const MAX_PARAMS: usize = 8;
    if value.len() > MAX_FIELD_LEN {
        return None;
    }
    let mut p = sf::Parser::new(value)?;
    let mut out: Vec<InputRef<'_>> = Vec::with_capacity(1);
    p.sp();
    loop {
        if out.len() == MAX_SIGNATURES {
            return None;
        }
        let label = p.key().ok()?;
        if p.peek() != Some(b'=') {
            return None;
        }
        p.i += 1;
        // The inner list (`member` in sf.rs), each item turned into a component at once.
        if p.peek() != Some(b'(') {
            return None;
        }
        let start = p.i;
        p.i += 1;
        let mut components: Vec<Component> = Vec::with_capacity(8);
        loop {
            let spaces = p.sp();
            if p.peek() == Some(b')') {
                if spaces > 0 {
                    return None;
                }
                p.i += 1;
                break;
            }
            if spaces != usize::from(!components.is_empty()) || components.len() == MAX_COMPONENTS {
                return None;
            }
            let item = p.item().ok()?;
            if !matches!(p.peek(), Some(b' ' | b')')) {
                return None;
            }
            // `canonical` is checked once at the end: a component built from a text that
            // turns out not to be canonical is thrown away with everything else.
            let c = Component::from_item(&item, true).ok()?;
            if components.iter().any(|o| o.serialized == c.serialized) {
                return None;
            }
            components.push(c);
        }
        // The list's parameters (`params` in sf.rs), interpreted as they are read.
        let mut input = InputRef {
            label,
            components: Cow::Owned(components),
            created: None,
            expires: None,
            nonce: None,
            keyid: None,
            alg: None,
            tag: None,
            params_line: "",
        };
        let mut seen = [""; MAX_PARAMS];
        let mut n = 0;
        while p.peek() == Some(b';') {
            p.i += 1;
            if p.sp() > 0 || n == MAX_PARAMS {
                return None;
            }
            let k = p.key().ok()?;
            let v = if p.peek() == Some(b'=') {
                p.i += 1;
                match p.bare().ok()? {
                    Bare::Bool(true) => return None,
                    v => v,
                }
            } else {
                Bare::Bool(true)
            };
            if seen[..n].contains(&k) {
                return None;
            }
            seen[n] = k;
            n += 1;
            match (k, v) {
                ("created", Bare::Int(i)) => input.created = Some(i),
                ("expires", Bare::Int(i)) => input.expires = Some(i),
                ("nonce", Bare::Str(s)) => input.nonce = Some(s),
                ("keyid", Bare::Str(s)) => input.keyid = Some(s),
                ("alg", Bare::Str(s)) => input.alg = Some(s),
                ("tag", Bare::Str(s)) => input.tag = Some(s),
                ("created" | "expires" | "nonce" | "keyid" | "alg" | "tag", _) => return None,
                _ => {}
            }
        }
        input.params_line = p.since(start);
        if out.iter().any(|o| o.label == label) {
            return None;
        }
        out.push(input);
        // Between members (`parse_dictionary` in sf.rs).
        p.ows();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.i += 1;
                p.ows();
                p.peek()?;
            }
            Some(b' ') => {
                p.sp();
                if p.peek().is_some() {
                    return None;
                }
                break;
            }
            _ => return None,
        }
    }
    p.canonical.then_some(out)
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

    /// The verifier's one-pass reader against [`parse_signature_input`].
    fn assert_same_as_slow(input: &[u8]) {
        let slow = parse_signature_input(input);
        let mut kept = None;
        let fast = parse_inputs(input, &mut kept);
        match (&slow, &fast) {
            (Ok(s), Ok(f)) => {
                let s: Vec<_> = s.iter().map(SignatureInput::as_input_ref).collect();
                assert_eq!(&s, f, "{}", String::from_utf8_lossy(input));
            }
            (Err(s), Err(f)) => assert_eq!(s.kind(), f.kind()),
            _ => panic!("{}: {slow:?} vs {fast:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn one_pass_reader_agrees_with_the_full_parse() {
        for input in [
            B25,
            r#"sig1=("@method" "@authority" "@target-uri" "content-digest");created=1700000000;keyid="bench";alg="hmac-sha256""#,
            r#"a=("@method");created=1;nonce="n\"x";tag="t";alg="other";x=1;y;z=tok, b=("date" "@query-param";name="id" "x";sf "y";key="k")"#,
            r#"a=("@method" "@path");created=1;expires=2;keyid="k";alg="hmac-sha256";tag="t";nonce="n";p;q"#,
            r#"a=("@method" "@path");created=1;expires=2;keyid="k";alg="hmac-sha256";tag="t";nonce="n";p;q;r"#,
            r#"a=("@method");created=1, a=("@path");created=1"#,
            r#"a=("@method" "@method")"#,
            r#"a=("@method");created=01"#,
            r#"a=("@method");created=1;created=2"#,
            r#"a=("@method");keyid=1"#,
            r#"a=("@method");x=?1"#,
            r#"a=("@method"), b=:AAAA:"#,
            r#"a=( "@method")"#,
            r#"a=("@method" )"#,
            r#"a=("@method";bs)"#,
            r#"a=(), b=("@path") "#,
            "  a=(\"@method\"),\tb=()",
            "a=(\"@method\"),",
            "",
            "a",
        ] {
            assert_same_as_slow(input.as_bytes());
        }
        // The usual shapes take the one-pass way.
        for input in [
            B25,
            r#"sig1=("@method" "@target-uri" "content-digest");created=1;keyid="k";alg="hmac-sha256";nonce="n", b=("@query-param";name="id" "x";sf);x;y=1"#,
        ] {
            assert!(parse_inputs_fast(input.as_bytes()).is_some(), "{input}");
        }
        let mut many = String::new();
        for i in 0..=MAX_SIGNATURES {
            if i > 0 {
                many.push_str(", ");
            }
            many.push_str(&format!("s{i}=(\"@method\")"));
            assert_same_as_slow(many.as_bytes());
        }
        let mut list = String::from("a=(");
        for i in 0..=MAX_COMPONENTS {
            if i > 0 {
                list.push(' ');
            }
            list.push_str(&format!("\"h{i}\""));
            assert_same_as_slow(format!("{list})").as_bytes());
        }
    }

    proptest::proptest! {
        #[test]
        fn one_pass_reader_agrees(s in r#"[a-z0-9=():;,"@ *.\-?\\/]{0,120}"#) {
            assert_same_as_slow(s.as_bytes());
        }

        #[test]
        fn one_pass_reader_agrees_near_valid(
            members in proptest::collection::vec(
                (
                    "[a-c]",
                    proptest::collection::vec(
                        r#""(@method|@path|@query|@authority|@query-param|date|x)"(;(name|key)="[a-z]{0,2}"|;sf|;bs)?"#,
                        0..4,
                    ),
                    proptest::collection::vec(
                        r#";(created|expires|nonce|keyid|alg|tag|x)(=(-?[0-9]{1,3}|"[a-z\\"]{0,3}"|tok|\?[01]|:AAAA:))?"#,
                        0..5,
                    ),
                    "(, | |,\t|,)",
                ),
                1..4,
            )
        ) {
            let mut s = String::new();
            for (i, (label, items, params, sep)) in members.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(label);
                s.push_str("=(");
                s.push_str(&items.join(" "));
                s.push(')');
                s.push_str(&params.concat());
            }
            assert_same_as_slow(s.as_bytes());
        }

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
