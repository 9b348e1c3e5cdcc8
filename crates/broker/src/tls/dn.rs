//! The subject of a client certificate as Kafka names it: Java's `X500Principal.getName()`,
//! the RFC 2253 form, which `ssl.principal.mapping.rules=DEFAULT` turns into the principal
//! `User:CN=alice,OU=eng,O=Example` unchanged.
//!
//! Java writes the relative distinguished names last first (the most specific, usually `CN`,
//! leads), the attributes of one multi-valued name joined by `+`, the nine RFC 2253 keywords
//! (`CN`, `C`, `L`, `ST`, `O`, `OU`, `STREET`, `DC`, `UID`) by name and every other attribute
//! as its dotted OID with the value as `#` and the hex of its DER encoding. A string value
//! escapes `,=+<>#;"\` with a backslash, NUL as `\00`, and leading and trailing spaces.
//!
//! The certificate has passed rustls' verification before we read it, but this parser trusts
//! none of that: every length is checked against the bytes left, and anything unexpected is an
//! error, never a panic.

use std::fmt::Write as _;

/// Why a certificate's subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnError(&'static str);

impl std::fmt::Display for DnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "certificate subject: {}", self.0)
    }
}

impl std::error::Error for DnError {}

/// Longest length field we accept (4 bytes: 4 GiB, far beyond any certificate).
const LENGTH_BYTES_MAX: usize = 4;

const TAG_INTEGER: u8 = 0x02;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_T61_STRING: u8 = 0x14;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_GENERAL_STRING: u8 = 0x1b;
const TAG_BMP_STRING: u8 = 0x1e;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT Version` of a v2/v3 `TBSCertificate`.
const TAG_VERSION: u8 = 0xa0;

/// The attributes Java names in RFC 2253 form (`AVAKeyword`'s RFC 2253-compliant entries).
const KEYWORDS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// One DER element.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag, length and contents: what Java prints in hex for a value it cannot name.
    encoded: &'a [u8],
}

/// Reads the next element off the front of `input`.
fn next<'a>(input: &mut &'a [u8]) -> Result<Element<'a>, DnError> {
    let all: &'a [u8] = input;
    let (&tag, rest) = all.split_first().ok_or(DnError("truncated element"))?;
    if tag & 0x1f == 0x1f {
        return Err(DnError("multi-byte tags do not occur in a name"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DnError("truncated length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 {
            return Err(DnError("indefinite length is not DER"));
        }
        if count > LENGTH_BYTES_MAX {
            return Err(DnError("length field too long"));
        }
        let (bytes, after) = rest
            .split_at_checked(count)
            .ok_or(DnError("truncated length"))?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    let (contents, after) = rest
        .split_at_checked(len)
        .ok_or(DnError("element longer than its enclosure"))?;
    let header = all.len() - rest.len();
    let (encoded, _) = all
        .split_at_checked(header + len)
        .ok_or(DnError("element longer than its enclosure"))?;
    *input = after;
    Ok(Element {
        tag,
        contents,
        encoded,
    })
}

/// Reads the next element and checks its tag.
fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<Element<'a>, DnError> {
    let element = next(input)?;
    if element.tag != tag {
        return Err(DnError(what));
    }
    Ok(element)
}

/// The subject of a DER certificate in Java's RFC 2253 form.
pub fn subject_rfc2253(certificate_der: &[u8]) -> Result<String, DnError> {
    let mut input = certificate_der;
    let certificate = expect(&mut input, TAG_SEQUENCE, "not a certificate")?;
    let mut certificate = certificate.contents;
    let tbs = expect(&mut certificate, TAG_SEQUENCE, "no TBSCertificate")?;
    let mut fields = tbs.contents;
    if fields.first() == Some(&TAG_VERSION) {
        next(&mut fields)?;
    }
    expect(&mut fields, TAG_INTEGER, "no serial number")?;
    expect(&mut fields, TAG_SEQUENCE, "no signature algorithm")?;
    expect(&mut fields, TAG_SEQUENCE, "no issuer")?;
    expect(&mut fields, TAG_SEQUENCE, "no validity")?;
    let subject = expect(&mut fields, TAG_SEQUENCE, "no subject")?;
    name_rfc2253(subject.contents)
}

/// An RDNSequence's contents in RFC 2253 form.
fn name_rfc2253(mut rdns: &[u8]) -> Result<String, DnError> {
    let mut names = Vec::new();
    while !rdns.is_empty() {
        let rdn = expect(&mut rdns, TAG_SET, "a relative name is not a SET")?;
        let mut avas = rdn.contents;
        let mut parts = Vec::new();
        while !avas.is_empty() {
            let ava = expect(&mut avas, TAG_SEQUENCE, "an attribute is not a SEQUENCE")?;
            let mut ava = ava.contents;
            let oid = expect(&mut ava, TAG_OID, "an attribute type is not an OID")?;
            let value = next(&mut ava)?;
            if !ava.is_empty() {
                return Err(DnError("bytes after an attribute value"));
            }
            parts.push(attribute_rfc2253(&oid_dotted(oid.contents)?, &value));
        }
        if parts.is_empty() {
            return Err(DnError("empty relative name"));
        }
        names.push(parts.join("+"));
    }
    names.reverse();
    Ok(names.join(","))
}

/// `TYPE=value` as Java's `AVA.toRFC2253String` writes it.
fn attribute_rfc2253(oid: &str, value: &Element<'_>) -> String {
    let keyword = KEYWORDS
        .iter()
        .find(|(known, _)| *known == oid)
        .map_or(oid, |(_, keyword)| keyword);
    let mut out = format!("{keyword}=");
    let is_string = matches!(
        value.tag,
        TAG_PRINTABLE_STRING
            | TAG_T61_STRING
            | TAG_IA5_STRING
            | TAG_GENERAL_STRING
            | TAG_BMP_STRING
            | TAG_UTF8_STRING
    );
    if keyword.starts_with(|c: char| c.is_ascii_digit()) || !is_string {
        out.push('#');
        for b in value.encoded {
            let _ = write!(out, "{b:02x}");
        }
        return out;
    }
    // Java decodes every string type's bytes as UTF-8, replacing what is not.
    out.push_str(&escape_value(&String::from_utf8_lossy(value.contents)));
    out
}

/// RFC 2253 escaping, in Java's order: special characters first, then leading and trailing
/// spaces of the escaped text.
fn escape_value(value: &str) -> String {
    const ESCAPEES: &str = ",=+<>#;\"\\";
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if ESCAPEES.contains(c) {
            escaped.push('\\');
            escaped.push(c);
        } else if c == '\0' {
            escaped.push_str("\\00");
        } else {
            escaped.push(c);
        }
    }
    let chars: Vec<char> = escaped.chars().collect();
    let blank = |c: &char| *c == ' ' || *c == '\r';
    let lead = chars.iter().take_while(|c| blank(c)).count();
    let trail = chars.iter().rev().take_while(|c| blank(c)).count();
    let mut out = String::with_capacity(escaped.len() + lead + trail);
    for (i, c) in chars.iter().enumerate() {
        if i < lead || i >= chars.len() - trail {
            out.push('\\');
        }
        out.push(*c);
    }
    out
}

/// An OID's contents as dotted decimal.
fn oid_dotted(contents: &[u8]) -> Result<String, DnError> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc: u64 = 0;
    let mut in_arc = false;
    for &b in contents {
        if !in_arc && b == 0x80 {
            return Err(DnError("OID arc with a leading zero byte"));
        }
        arc = arc.checked_mul(128).ok_or(DnError("OID arc too large"))? | u64::from(b & 0x7f);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(arc);
            arc = 0;
        }
    }
    if in_arc {
        return Err(DnError("truncated OID"));
    }
    let Some((&first, rest)) = arcs.split_first() else {
        return Err(DnError("empty OID"));
    };
    let (x, y) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut dotted = format!("{x}.{y}");
    for arc in rest {
        let _ = write!(dotted, ".{arc}");
    }
    Ok(dotted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = dn;
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    // A subject written O, OU, CN (the usual order in the certificate) reads CN first, as in
    // Kafka's `User:CN=...,OU=...,O=...`.
    #[test]
    fn names_read_most_specific_first() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Runnel Test");
        dn.push(rcgen::DnType::OrganizationalUnitName, "eng");
        dn.push(rcgen::DnType::CommonName, "alice");
        assert_eq!(
            subject_rfc2253(&certificate(dn)).expect("subject"),
            "CN=alice,OU=eng,O=Runnel Test,C=DE"
        );
    }

    // Special characters are escaped as Java does, and attributes without an RFC 2253 keyword
    // are a dotted OID with the hex of their DER value.
    #[test]
    fn escapes_and_unnamed_attributes() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
            rcgen::DnValue::Ia5String("a@b".try_into().expect("ia5")),
        );
        dn.push(rcgen::DnType::CommonName, " x,y+z=\"q\"; <#> \\ ");
        assert_eq!(
            subject_rfc2253(&certificate(dn)).expect("subject"),
            "CN=\\ x\\,y\\+z\\=\\\"q\\\"\\; \\<\\#\\> \\\\\\ ,1.2.840.113549.1.9.1=#1603614062"
        );
    }

    // A multi-valued relative name joins its attributes with '+'.
    #[test]
    fn multi_valued_names_join_with_plus() {
        // SET { CN=a, OU=b } built by hand: rcgen writes one attribute per SET.
        let cn = [0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'a'];
        let ou = [0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x0b, 0x0c, 0x01, b'b'];
        let mut set = vec![0x31, 20];
        set.extend_from_slice(&cn);
        set.extend_from_slice(&ou);
        assert_eq!(name_rfc2253(&set).expect("name"), "CN=a+OU=b");
    }

    // Truncated and malformed input is an error, never a panic, at every cut.
    #[test]
    fn malformed_input_is_an_error() {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "alice");
        let der = certificate(dn);
        for cut in 0..der.len() {
            assert!(subject_rfc2253(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(subject_rfc2253(&[0x30, 0x80, 0, 0]).is_err());
        assert!(subject_rfc2253(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(oid_dotted(&[0x55, 0x84]).is_err());
        assert!(oid_dotted(&[0x80, 0x01]).is_err());
        assert!(oid_dotted(&[0xff; 20]).is_err());
        assert_eq!(oid_dotted(&[0x55, 0x04, 0x03]).expect("oid"), "2.5.4.3");
        assert_eq!(
            oid_dotted(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]).expect("oid"),
            "0.9.2342.19200300.100.1.25"
        );
    }
}
