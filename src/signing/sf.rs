//! A small, strict RFC 8941/9651 structured-field parser and serializer for the signature
//! fields (`Signature-Input`, `Signature`, `Content-Digest`).
//!
//! Why not only `sfv`: its 0.10 parser allocates per character class and per member and costs
//! several microseconds per `Signature-Input`, which alone would break the 3 µs budget of a
//! verified request. This parser borrows from the input and allocates only for escaped strings,
//! byte sequences and the member vectors. It is stricter than RFC 8941 in one way: a duplicate
//! dictionary key or parameter is an error instead of "last one wins" (for signatures, a
//! shadowed label is an attack). `sfv` remains the oracle: the tests check that whatever this
//! parser accepts, `sfv` accepts and serializes identically. `sfv` still re-serializes `;sf` and
//! `;key` header components.

use std::borrow::Cow;

use base64::{
    Engine as _,
    engine::{self, GeneralPurpose, general_purpose::STANDARD},
};

/// Lenient decoding as RFC 8941 §4.2.7 allows (padding optional, trailing bits tolerated).
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(engine::DecodePaddingMode::Indifferent),
);

/// A bare item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bare<'a> {
    Int(i64),
    /// Validated decimal text (sign, 1–12 integer digits, `.`, 1–3 fraction digits).
    Dec(&'a str),
    Str(Cow<'a, str>),
    Token(&'a str),
    Bytes(ByteSeq),
    Bool(bool),
}

/// A decoded byte sequence: inline up to 32 bytes (an HMAC-SHA256 signature, a SHA-256
/// digest), so the signature fields parse without a heap allocation per value, while a bare
/// item stays small to move around.
#[derive(Clone)]
pub(crate) enum ByteSeq {
    Inline { buf: [u8; 32], len: u8 },
    Heap(Vec<u8>),
}

impl ByteSeq {
    fn decode(text: &[u8]) -> Option<Self> {
        let mut buf = [0u8; 32];
        match B64_LENIENT.decode_slice(text, &mut buf) {
            // `len` <= 32, so it fits in a u8.
            Ok(len) => Some(Self::Inline {
                buf,
                len: u8::try_from(len).ok()?,
            }),
            // Longer than 32 bytes: the same decoding, into the heap.
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                B64_LENIENT.decode(text).ok().map(Self::Heap)
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => None,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { buf, len } => &buf[..usize::from(*len)],
            Self::Heap(v) => v,
        }
    }
}

impl std::ops::Deref for ByteSeq {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for ByteSeq {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ByteSeq {}

impl std::fmt::Debug for ByteSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

pub(crate) type Params<'a> = Vec<(&'a str, Bare<'a>)>;

/// An item with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    pub(crate) bare: Bare<'a>,
    pub(crate) params: Params<'a>,
    /// The source text of the item with its parameters.
    pub(crate) raw: &'a str,
}

/// A dictionary member value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Member<'a> {
    Item(Item<'a>),
    /// Items, parameters, and the source text of the whole inner list.
    List(Vec<Item<'a>>, Params<'a>, &'a str),
}

/// A parsed dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dict<'a> {
    pub(crate) members: Vec<(&'a str, Member<'a>)>,
    /// Every `raw` text is already in canonical serialization (RFC 8941 §4.1), so it can be
    /// used as is instead of serializing again.
    pub(crate) canonical: bool,
}

/// Parse failure (no detail: callers map it to their own error kind). A duplicate parameter
/// is `Invalid`; a duplicate dictionary key is `DuplicateKey`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SfError {
    Invalid,
    DuplicateKey,
}

type Res<T> = Result<T, SfError>;

/// A byte-class table: one lookup per byte in the scanning loops (the signature fields are
/// scanned on every verified request).
const fn table(plain: &[u8], ranges: &[(u8, u8)]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < ranges.len() {
        let (lo, hi) = ranges[i];
        let mut c = lo as usize;
        while c <= hi as usize {
            t[c] = true;
            c += 1;
        }
        i += 1;
    }
    let mut i = 0;
    while i < plain.len() {
        t[plain[i] as usize] = true;
        i += 1;
    }
    t
}

/// The characters of a key after the first (RFC 8941 §4.2.3.3).
const KEY_CHAR: [bool; 256] = table(b"_-.*", &[(b'a', b'z'), (b'0', b'9')]);
/// The characters of a token after the first (RFC 8941 §4.2.6).
const TOKEN_CHAR: [bool; 256] = table(
    b"!#$%&'*+-.^_`|~:/",
    &[(b'a', b'z'), (b'A', b'Z'), (b'0', b'9')],
);
/// Printable ASCII but the quote and the backslash: string characters that need no unescaping
/// (§4.2.5).
const STRING_PLAIN: [bool; 256] = {
    let mut t = table(b"", &[(0x20, 0x7e)]);
    t[b'"' as usize] = false;
    t[b'\\' as usize] = false;
    t
};

/// The parser, also driven directly by the verifier's one-pass `Signature-Input` reader.
pub(crate) struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pub(crate) i: usize,
    /// Every text met so far is in canonical serialization (RFC 8941 §4.1).
    pub(crate) canonical: bool,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `input`, or `None` when it is not UTF-8 (structured fields
    /// are ASCII: every accepted character class is ASCII, so a non-ASCII byte fails where it
    /// is met and the parser never slices inside a character).
    pub(crate) fn new(input: &'a [u8]) -> Option<Self> {
        let s = std::str::from_utf8(input).ok()?;
        Some(Self {
            s,
            b: input,
            i: 0,
            canonical: true,
        })
    }

    /// The source text between byte offsets `start` and the current position.
    pub(crate) fn since(&self, start: usize) -> &'a str {
        &self.s[start..self.i]
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(crate) fn sp(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        self.i - start
    }

    pub(crate) fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    pub(crate) fn key(&mut self) -> Res<&'a str> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return Err(SfError::Invalid),
        }
        while self.peek().is_some_and(|c| KEY_CHAR[usize::from(c)]) {
            self.i += 1;
        }
        Ok(&self.s[start..self.i])
    }

    pub(crate) fn bare(&mut self) -> Res<Bare<'a>> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => {
                self.i += 1;
                let v = match self.peek() {
                    Some(b'0') => false,
                    Some(b'1') => true,
                    _ => return Err(SfError::Invalid),
                };
                self.i += 1;
                Ok(Bare::Bool(v))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                self.i += 1;
                while self.peek().is_some_and(|c| TOKEN_CHAR[usize::from(c)]) {
                    self.i += 1;
                }
                Ok(Bare::Token(&self.s[start..self.i]))
            }
            _ => Err(SfError::Invalid),
        }
    }

    fn number(&mut self) -> Res<Bare<'a>> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits_start = self.i;
        let mut int_digits = 0usize;
        // At most 15 digits (checked below), so this never overflows.
        let mut int_value = 0i64;
        let mut frac_digits = None::<usize>;
        while let Some(c) = self.peek() {
            match (c, &mut frac_digits) {
                (b'0'..=b'9', None) => {
                    int_digits += 1;
                    int_value = int_value * 10 + i64::from(c - b'0');
                }
                (b'0'..=b'9', Some(f)) => *f += 1,
                (b'.', None) => {
                    if int_digits > 12 {
                        return Err(SfError::Invalid);
                    }
                    frac_digits = Some(0);
                }
                _ => break,
            }
            self.i += 1;
            if frac_digits.is_none() && int_digits > 15 {
                return Err(SfError::Invalid);
            }
            if frac_digits.is_some_and(|f| int_digits + 1 + f > 16) {
                return Err(SfError::Invalid);
            }
        }
        if int_digits == 0 {
            return Err(SfError::Invalid);
        }
        let digits = &self.b[digits_start..self.i];
        if frac_digits.is_some()
            || (digits.len() > 1 && digits[0] == b'0')
            || (digits_start > start && digits == b"0")
        {
            self.canonical = false;
        }
        match frac_digits {
            None => Ok(Bare::Int(if digits_start > start {
                -int_value
            } else {
                int_value
            })),
            Some(1..=3) => Ok(Bare::Dec(&self.s[start..self.i])),
            Some(_) => Err(SfError::Invalid),
        }
    }

    fn string(&mut self) -> Res<Bare<'a>> {
        self.i += 1; // opening quote
        let start = self.i;
        // Fast path: no escape before the closing quote, borrow the text.
        let rest = &self.b[start..];
        let stop = rest.iter().position(|&c| !STRING_PLAIN[usize::from(c)]);
        match stop {
            Some(n) if rest[n] == b'"' => {
                self.i = start + n + 1;
                return Ok(Bare::Str(Cow::Borrowed(&self.s[start..start + n])));
            }
            Some(n) if rest[n] == b'\\' => {}
            _ => return Err(SfError::Invalid),
        }
        let mut owned: Option<String> = None;
        loop {
            let c = self.peek().ok_or(SfError::Invalid)?;
            self.i += 1;
            match c {
                b'"' => {
                    return Ok(Bare::Str(match owned {
                        Some(s) => Cow::Owned(s),
                        None => Cow::Borrowed(&self.s[start..self.i - 1]),
                    }));
                }
                b'\\' => {
                    let n = self.peek().ok_or(SfError::Invalid)?;
                    if n != b'"' && n != b'\\' {
                        return Err(SfError::Invalid);
                    }
                    let s = owned.get_or_insert_with(|| self.s[start..self.i - 1].to_owned());
                    s.push(n as char);
                    self.i += 1;
                }
                0x20..=0x7e => {
                    if let Some(s) = &mut owned {
                        s.push(c as char);
                    }
                }
                _ => return Err(SfError::Invalid),
            }
        }
    }

    fn bytes(&mut self) -> Res<Bare<'a>> {
        // Padding may differ from the canonical form: always re-serialize.
        self.canonical = false;
        self.i += 1;
        let start = self.i;
        let rest = &self.b[start..];
        // Up to the closing colon (a `memchr`); the decoder refuses any byte before it that is
        // not base64 text, exactly as a scan for the first non-base64 byte would (tested).
        let end = self.s[start..].find(':').ok_or(SfError::Invalid)?;
        self.i = start + end + 1;
        ByteSeq::decode(&rest[..end])
            .map(Bare::Bytes)
            .ok_or(SfError::Invalid)
    }

    fn params(&mut self) -> Res<Params<'a>> {
        if self.peek() != Some(b';') {
            return Ok(Vec::new());
        }
        // Room for created, expires, nonce, keyid, alg and tag without growing.
        let mut out: Params<'a> = Vec::with_capacity(6);
        while self.peek() == Some(b';') {
            self.i += 1;
            if self.sp() > 0 {
                self.canonical = false;
            }
            let k = self.key()?;
            let v = if self.peek() == Some(b'=') {
                self.i += 1;
                let v = self.bare()?;
                if v == Bare::Bool(true) {
                    self.canonical = false;
                }
                v
            } else {
                Bare::Bool(true)
            };
            if out.iter().any(|(o, _)| *o == k) {
                return Err(SfError::Invalid);
            }
            out.push((k, v));
        }
        Ok(out)
    }

    pub(crate) fn item(&mut self) -> Res<Item<'a>> {
        let start = self.i;
        let bare = self.bare()?;
        let params = self.params()?;
        Ok(Item {
            bare,
            params,
            raw: &self.s[start..self.i],
        })
    }

    fn member(&mut self) -> Res<Member<'a>> {
        if self.peek() != Some(b'(') {
            return self.item().map(Member::Item);
        }
        let start = self.i;
        self.i += 1;
        let mut items = Vec::with_capacity(8);
        loop {
            let spaces = self.sp();
            if self.peek() == Some(b')') {
                if spaces > 0 {
                    self.canonical = false;
                }
                self.i += 1;
                let params = self.params()?;
                return Ok(Member::List(items, params, &self.s[start..self.i]));
            }
            if spaces != usize::from(!items.is_empty()) {
                self.canonical = false;
            }
            items.push(self.item()?);
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(SfError::Invalid),
            }
        }
    }
}

/// Parses a dictionary (RFC 8941 §4.2.2), refusing duplicate keys.
pub(crate) fn parse_dictionary(input: &[u8]) -> Res<Dict<'_>> {
    let mut p = Parser::new(input).ok_or(SfError::Invalid)?;
    let mut out: Vec<(&str, Member<'_>)> = Vec::with_capacity(2);
    p.sp();
    if p.peek().is_none() {
        return Ok(Dict {
            members: out,
            canonical: true,
        });
    }
    loop {
        let k = p.key()?;
        let m = if p.peek() == Some(b'=') {
            p.i += 1;
            let m = p.member()?;
            if matches!(&m, Member::Item(item) if item.bare == Bare::Bool(true)) {
                // `key=?1` serializes as `key`.
                p.canonical = false;
            }
            m
        } else {
            let start = p.i;
            let params = p.params()?;
            Member::Item(Item {
                bare: Bare::Bool(true),
                params,
                raw: &p.s[start..p.i],
            })
        };
        if out.iter().any(|(o, _)| *o == k) {
            return Err(SfError::DuplicateKey);
        }
        out.push((k, m));
        p.ows();
        match p.peek() {
            None => {
                return Ok(Dict {
                    members: out,
                    canonical: p.canonical,
                });
            }
            Some(b',') => {
                p.i += 1;
                p.ows();
                if p.peek().is_none() {
                    return Err(SfError::Invalid);
                }
            }
            Some(b' ') => {
                // Trailing spaces end the field.
                p.sp();
                if p.peek().is_some() {
                    return Err(SfError::Invalid);
                }
                return Ok(Dict {
                    members: out,
                    canonical: p.canonical,
                });
            }
            _ => return Err(SfError::Invalid),
        }
    }
}

/// Parses a single item (RFC 8941 §4.2.3), used for configured component identifiers.
pub(crate) fn parse_item(input: &str) -> Res<Item<'_>> {
    if !input.is_ascii() {
        return Err(SfError::Invalid);
    }
    let mut p = Parser {
        s: input,
        b: input.as_bytes(),
        i: 0,
        canonical: true,
    };
    p.sp();
    let item = p.item()?;
    p.sp();
    if p.peek().is_some() {
        return Err(SfError::Invalid);
    }
    Ok(item)
}

/// Serializes a bare item canonically (RFC 8941 §4.1).
pub(crate) fn write_bare(out: &mut String, b: &Bare<'_>) {
    match b {
        Bare::Int(v) => write_int(out, *v),
        Bare::Dec(text) => write_decimal(out, text),
        Bare::Str(s) => {
            out.push('"');
            if s.contains(['"', '\\']) {
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
            } else {
                out.push_str(s);
            }
            out.push('"');
        }
        Bare::Token(t) => out.push_str(t),
        Bare::Bytes(v) => {
            out.push(':');
            STANDARD.encode_string(v.as_slice(), out);
            out.push(':');
        }
        Bare::Bool(v) => out.push_str(if *v { "?1" } else { "?0" }),
    }
}

/// Integers without the formatting machinery (they are in every `Signature-Input`).
pub(crate) fn write_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

fn write_decimal(out: &mut String, text: &str) {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if neg && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    out.push('.');
    out.push_str(if frac.is_empty() { "0" } else { frac });
}

/// Serializes parameters (`;key` for `true`, `;key=value` otherwise).
pub(crate) fn write_params(out: &mut String, params: &Params<'_>) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != Bare::Bool(true) {
            out.push('=');
            write_bare(out, v);
        }
    }
}

/// Serializes an item with its parameters.
pub(crate) fn write_item(out: &mut String, item: &Item<'_>) {
    write_bare(out, &item.bare);
    write_params(out, &item.params);
}

/// Serializes an inner list with its parameters.
pub(crate) fn write_inner_list(out: &mut String, items: &[Item<'_>], params: &Params<'_>) {
    out.push('(');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_item(out, item);
    }
    out.push(')');
    write_params(out, params);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters of a byte sequence's base64 text (§4.2.7).
    const BASE64_CHAR: [bool; 256] = table(b"+/=", &[(b'a', b'z'), (b'A', b'Z'), (b'0', b'9')]);

    #[test]
    fn byte_class_tables_are_the_rfc_classes() {
        for c in 0..=255u8 {
            let i = usize::from(c);
            assert_eq!(
                KEY_CHAR[i],
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'.' | b'*')
            );
            assert_eq!(
                TOKEN_CHAR[i],
                c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c)
            );
            assert_eq!(
                STRING_PLAIN[i],
                !(c == b'"' || c == b'\\' || !(0x20..=0x7e).contains(&c))
            );
            assert_eq!(
                BASE64_CHAR[i],
                c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')
            );
        }
        // The byte-sequence scan stops at the colon only: the decoder refuses the rest.
        for c in (0..=255u8).filter(|c| !BASE64_CHAR[usize::from(*c)]) {
            for at in 0..6 {
                let mut text = b"AAAAAAAA".to_vec();
                text.insert(at, c);
                assert!(ByteSeq::decode(&text).is_none(), "{c} at {at}");
                let mut long = vec![b'A'; 64];
                long.insert(at * 11, c);
                assert!(ByteSeq::decode(&long).is_none(), "{c} at {at}");
            }
        }
        // Integers are read as they are scanned.
        let mut p = Parser::new(b"-999999999999999").unwrap();
        assert_eq!(p.bare(), Ok(Bare::Int(-999_999_999_999_999)));
        let mut p = Parser::new(b"1700000000").unwrap();
        assert_eq!(p.bare(), Ok(Bare::Int(1_700_000_000)));
    }

    #[test]
    fn byte_sequences_inline_or_heap_decode_like_the_lenient_engine() {
        for n in 0..=80usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let text = STANDARD.encode(&bytes);
            let got = ByteSeq::decode(text.as_bytes()).unwrap();
            assert_eq!(got.as_slice(), &bytes[..], "{n} bytes");
            assert_eq!(matches!(got, ByteSeq::Inline { .. }), n <= 32, "{n} bytes");
            // Without padding too (RFC 8941 parsers may accept it).
            let unpadded = text.trim_end_matches('=');
            assert_eq!(
                ByteSeq::decode(unpadded.as_bytes()).unwrap().as_slice(),
                &bytes[..]
            );
        }
        // What the engine refuses is refused whatever the length.
        for bad in [
            "A",
            "AAAAA",
            "AA=A",
            &"A".repeat(45),
            &format!("{}=A", "A".repeat(60)),
        ] {
            assert!(ByteSeq::decode(bad.as_bytes()).is_none(), "{bad}");
            assert!(B64_LENIENT.decode(bad).is_err(), "{bad}");
        }
    }
    use sfv::SerializeValue;

    fn ours(input: &[u8]) -> Option<String> {
        let dict = parse_dictionary(input).ok()?;
        let mut out = String::new();
        for (i, (k, m)) in dict.members.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(k);
            match m {
                Member::Item(item) if item.bare == Bare::Bool(true) => {
                    write_params(&mut out, &item.params)
                }
                Member::Item(item) => {
                    out.push('=');
                    write_item(&mut out, item);
                }
                Member::List(items, params, _) => {
                    out.push('=');
                    write_inner_list(&mut out, items, params);
                }
            }
        }
        // When the parser says the source is canonical, the raw texts are the serialization.
        if dict.canonical {
            let mut raw = String::new();
            for (i, (k, m)) in dict.members.iter().enumerate() {
                if i > 0 {
                    raw.push_str(", ");
                }
                raw.push_str(k);
                match m {
                    Member::Item(item) if item.bare == Bare::Bool(true) => raw.push_str(item.raw),
                    Member::Item(item) => {
                        raw.push('=');
                        raw.push_str(item.raw);
                    }
                    Member::List(_, _, text) => {
                        raw.push('=');
                        raw.push_str(text);
                    }
                }
            }
            assert_eq!(raw, out, "canonical flag set on non-canonical input");
        }
        Some(out)
    }

    fn theirs(input: &[u8]) -> Option<String> {
        let d = sfv::Parser::parse_dictionary(input).ok()?;
        if d.is_empty() {
            return Some(String::new());
        }
        d.serialize_value().ok()
    }

    #[test]
    fn agrees_with_sfv_on_known_inputs() {
        for input in [
            r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
            r#"a=("x";sf "y";key="k\"\\" ), b=:AAAA:, c=?0, d, e=1.5;f=0.25, g=tok/en:x"#,
            "  a=1 ,\tb=-2   ",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            "a=(), b=( ), c=(1 2);x",
            "a=001.125, b=-000, c=999999999999999",
        ] {
            assert_eq!(ours(input.as_bytes()), theirs(input.as_bytes()), "{input}");
        }
        for bad in [
            "a=", "a=(1", "a=1,", "A=1", "a=\"x", "a=:@:", "a=1.2345", "a=1 b", "a=é",
        ] {
            assert_eq!(ours(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_dictionary(b"a=1, a=2"), Err(SfError::DuplicateKey));
        // RFC 8941 §4.1.5 drops trailing fraction zeros and the sign of zero (sfv 0.10 keeps
        // the input's scale, so decimals are left out of the comparison with it).
        assert_eq!(
            ours(b"a=1.50, b=-0.0, c=-01.10").unwrap(),
            "a=1.5, b=0.0, c=-1.1"
        );
        assert_eq!(parse_dictionary(b"a=1;p;p"), Err(SfError::Invalid));
    }

    proptest::proptest! {
        /// Whatever we accept, `sfv` accepts, with the same canonical serialization.
        #[test]
        fn accepted_inputs_match_sfv(s in r#"[a-z0-9=():;,"@ *.\-?\\/]{0,80}"#) {
            let decimal = s.as_bytes().windows(2).any(|w| w[0].is_ascii_digit() && w[1] == b'.');
            if let (Some(o), false) = (ours(s.as_bytes()), decimal) {
                proptest::prop_assert_eq!(Some(o), theirs(s.as_bytes()), "{}", s);
            }
        }

        #[test]
        fn never_panics(s in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_dictionary(&s);
            if let Ok(text) = std::str::from_utf8(&s) {
                let _ = parse_item(text);
            }
        }
    }
}
