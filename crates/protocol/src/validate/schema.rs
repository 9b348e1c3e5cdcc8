//! Kafka message schemas (the JSON files under `crates/protocol/schemas/`) turned into tables the
//! walker can follow.
//!
//! The schemas are our own build input, not wire data: a schema that does not parse is a bug in
//! this crate, caught by the unit tests, and is reported as [`SchemaError`] rather than a panic so
//! that the broker can still answer (every request of that API is then refused).

use std::collections::HashMap;

/// An inclusive range of versions, as written in a schema (`"3+"`, `"0-2"`, `"5"`, `"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Lowest version included.
    pub lo: i16,
    /// Highest version included; `lo > hi` means the empty range (`"none"`).
    pub hi: i16,
}

impl Versions {
    /// The empty range, `"none"`.
    pub const NONE: Versions = Versions { lo: 1, hi: 0 };

    /// Whether `version` lies in the range.
    pub fn contains(self, version: i16) -> bool {
        self.lo <= version && version <= self.hi
    }

    /// Parses Kafka's version-range notation.
    pub fn parse(text: &str) -> Result<Versions, SchemaError> {
        let text = text.trim();
        let bad = || SchemaError(format!("bad version range {text:?}"));
        if text == "none" {
            return Ok(Versions::NONE);
        }
        if let Some(lo) = text.strip_suffix('+') {
            let lo = lo.trim().parse().map_err(|_| bad())?;
            return Ok(Versions { lo, hi: i16::MAX });
        }
        if let Some((lo, hi)) = text.split_once('-') {
            let lo = lo.trim().parse().map_err(|_| bad())?;
            let hi = hi.trim().parse().map_err(|_| bad())?;
            return Ok(Versions { lo, hi });
        }
        let v = text.parse().map_err(|_| bad())?;
        Ok(Versions { lo: v, hi: v })
    }
}

/// A schema that could not be turned into tables: a bug in our checked-in schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

/// Index of a struct in [`MessageSpec::structs`].
pub type StructId = usize;

/// A wire type that is not an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    Bool,
    Uuid,
    String,
    Bytes,
    Records,
    Struct(StructId),
}

/// The type of a field: one value, or an array of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    One(Scalar),
    Array(Scalar),
}

/// One field of a struct, with the version ranges that decide how (and whether) it is encoded.
#[derive(Debug, Clone)]
pub struct Field {
    /// Field name, for error messages.
    pub name: String,
    /// Wire type.
    pub ty: FieldType,
    /// Versions in which the field exists at all.
    pub versions: Versions,
    /// Versions in which `null` is allowed (strings, bytes, records, arrays, structs).
    pub nullable: Versions,
    /// Versions in which the field may use the compact encoding. Normally the message's flexible
    /// versions; the request header's `ClientId` overrides it with `"none"`.
    pub flexible: Option<Versions>,
    /// The tag, for a tagged field.
    pub tag: Option<u32>,
    /// Versions in which the field is sent as a tagged field.
    pub tagged: Versions,
}

/// A struct: the message body itself, an inline struct or a common struct.
#[derive(Debug, Clone, Default)]
pub struct StructSpec {
    /// Name, for error messages.
    pub name: String,
    /// Fields in wire order.
    pub fields: Vec<Field>,
}

/// One message (a request or the request header) ready to walk.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    /// Message name, e.g. `ProduceRequest`.
    pub name: String,
    /// API key; `None` for the header.
    pub api_key: Option<i16>,
    /// Versions we accept: the schema's `validVersions`, minus the latest one when the schema
    /// marks it `latestVersionUnstable` (Kafka only serves those with
    /// `unstable.api.versions.enable`, and kafka-protocol 0.18 cannot decode them).
    pub valid: Versions,
    /// Whether the schema's latest version is unstable (and so excluded from `valid`).
    pub latest_unstable: bool,
    /// Versions that use compact encodings and tagged fields.
    pub flexible: Versions,
    /// All structs; index 0 is the message body.
    pub structs: Vec<StructSpec>,
    /// Deepest struct nesting, computed once; bounds the walker's recursion.
    pub depth: usize,
}

/// Structs may nest no deeper than this; deeper (or recursive) schemas are rejected at parse time,
/// so the walker's recursion is bounded by our schemas and never by the input.
pub const STRUCT_DEPTH_MAX: usize = 16;

/// Removes `//` and `/* */` comments outside strings: Kafka's schemas carry their history and
/// license in comments, which plain JSON does not allow.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

type Json = serde_json::Value;

fn str_field<'j>(obj: &'j Json, key: &str) -> Option<&'j str> {
    obj.get(key).and_then(Json::as_str)
}

fn versions_field(obj: &Json, key: &str, default: Versions) -> Result<Versions, SchemaError> {
    match str_field(obj, key) {
        Some(text) => Versions::parse(text),
        None => Ok(default),
    }
}

/// Builder state: structs by name (for `commonStructs` references) and unresolved references.
struct Builder {
    structs: Vec<StructSpec>,
    by_name: HashMap<String, StructId>,
    /// (struct, field index, referenced name) still to resolve once all structs are known.
    pending: Vec<(StructId, usize, String)>,
}

impl Builder {
    fn add_struct(&mut self, name: &str, fields: &[Json]) -> Result<StructId, SchemaError> {
        let id = self.structs.len();
        self.structs.push(StructSpec {
            name: name.to_owned(),
            fields: Vec::new(),
        });
        self.by_name.entry(name.to_owned()).or_insert(id);
        let mut parsed = Vec::with_capacity(fields.len());
        for (index, field) in fields.iter().enumerate() {
            parsed.push(self.field(id, index, field)?);
        }
        if let Some(spec) = self.structs.get_mut(id) {
            spec.fields = parsed;
        }
        Ok(id)
    }

    fn field(&mut self, owner: StructId, index: usize, obj: &Json) -> Result<Field, SchemaError> {
        let name = str_field(obj, "name").unwrap_or("?").to_owned();
        let type_text = str_field(obj, "type")
            .ok_or_else(|| SchemaError(format!("field {name} has no type")))?;
        let (is_array, elem) = match type_text.strip_prefix("[]") {
            Some(elem) => (true, elem),
            None => (false, type_text),
        };
        let scalar = match elem {
            "int8" => Scalar::Int8,
            "int16" => Scalar::Int16,
            "uint16" => Scalar::Uint16,
            "int32" => Scalar::Int32,
            "uint32" => Scalar::Uint32,
            "int64" => Scalar::Int64,
            "float64" => Scalar::Float64,
            "bool" => Scalar::Bool,
            "uuid" => Scalar::Uuid,
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "records" => Scalar::Records,
            struct_name => match obj.get("fields").and_then(Json::as_array) {
                Some(fields) => Scalar::Struct(self.add_struct(struct_name, fields)?),
                None => {
                    self.pending.push((owner, index, struct_name.to_owned()));
                    Scalar::Struct(usize::MAX)
                }
            },
        };
        let tag = match obj.get("tag") {
            None => None,
            Some(t) => Some(
                // Kafka's schemas write tags both as numbers and as strings ("tag": "0").
                t.as_u64()
                    .or_else(|| t.as_str().and_then(|t| t.trim().parse().ok()))
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| SchemaError(format!("field {name} has a bad tag")))?,
            ),
        };
        let flexible = match str_field(obj, "flexibleVersions") {
            Some(text) => Some(Versions::parse(text)?),
            None => None,
        };
        Ok(Field {
            ty: if is_array {
                FieldType::Array(scalar)
            } else {
                FieldType::One(scalar)
            },
            versions: versions_field(obj, "versions", Versions::NONE)?,
            nullable: versions_field(obj, "nullableVersions", Versions::NONE)?,
            tagged: if tag.is_some() {
                versions_field(obj, "taggedVersions", Versions::NONE)?
            } else {
                Versions::NONE
            },
            flexible,
            tag,
            name,
        })
    }
}

impl MessageSpec {
    /// Parses one schema file (comments allowed).
    pub fn parse(text: &str) -> Result<MessageSpec, SchemaError> {
        let json: Json = serde_json::from_str(&strip_comments(text))
            .map_err(|e| SchemaError(format!("schema is not JSON: {e}")))?;
        let name = str_field(&json, "name").unwrap_or("?").to_owned();
        let api_key = match json.get("apiKey") {
            None => None,
            Some(k) => Some(
                k.as_i64()
                    .and_then(|k| i16::try_from(k).ok())
                    .ok_or_else(|| SchemaError(format!("{name}: bad apiKey")))?,
            ),
        };
        let mut builder = Builder {
            structs: Vec::new(),
            by_name: HashMap::new(),
            pending: Vec::new(),
        };
        let empty = Vec::new();
        let fields = json
            .get("fields")
            .and_then(Json::as_array)
            .unwrap_or(&empty);
        builder.add_struct(&name, fields)?;
        if let Some(common) = json.get("commonStructs").and_then(Json::as_array) {
            for spec in common {
                let struct_name = str_field(spec, "name").unwrap_or("?");
                let fields = spec
                    .get("fields")
                    .and_then(Json::as_array)
                    .unwrap_or(&empty);
                let id = builder.add_struct(struct_name, fields)?;
                // A common struct is the definition that references resolve to.
                builder.by_name.insert(struct_name.to_owned(), id);
            }
        }
        for (owner, index, target) in std::mem::take(&mut builder.pending) {
            let id = *builder
                .by_name
                .get(&target)
                .ok_or_else(|| SchemaError(format!("{name}: unknown struct {target}")))?;
            let field = builder
                .structs
                .get_mut(owner)
                .and_then(|s| s.fields.get_mut(index))
                .ok_or_else(|| SchemaError(format!("{name}: lost field of {target}")))?;
            field.ty = match field.ty {
                FieldType::One(_) => FieldType::One(Scalar::Struct(id)),
                FieldType::Array(_) => FieldType::Array(Scalar::Struct(id)),
            };
        }
        let latest_unstable = json
            .get("latestVersionUnstable")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let mut valid = versions_field(&json, "validVersions", Versions::NONE)?;
        if latest_unstable {
            valid.hi = valid.hi.saturating_sub(1);
        }
        let mut spec = MessageSpec {
            valid,
            latest_unstable,
            flexible: versions_field(&json, "flexibleVersions", Versions::NONE)?,
            structs: builder.structs,
            api_key,
            name,
            depth: 0,
        };
        spec.depth = spec.struct_depth(0, 0)?;
        Ok(spec)
    }

    /// Nesting depth below `id`; rejects recursion and nesting beyond [`STRUCT_DEPTH_MAX`].
    fn struct_depth(&self, id: StructId, level: usize) -> Result<usize, SchemaError> {
        if level > STRUCT_DEPTH_MAX {
            return Err(SchemaError(format!(
                "{}: structs nest too deep (recursive?)",
                self.name
            )));
        }
        let mut deepest = level;
        for field in self
            .struct_spec(id)
            .map(|s| s.fields.as_slice())
            .unwrap_or(&[])
        {
            if let FieldType::One(Scalar::Struct(child)) | FieldType::Array(Scalar::Struct(child)) =
                field.ty
            {
                deepest = deepest.max(self.struct_depth(child, level + 1)?);
            }
        }
        Ok(deepest)
    }

    /// The struct with this id.
    pub fn struct_spec(&self, id: StructId) -> Option<&StructSpec> {
        self.structs.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every version-range notation Kafka uses parses to the intended inclusive range.
    #[test]
    fn version_ranges() {
        assert_eq!(
            Versions::parse("3+").unwrap(),
            Versions {
                lo: 3,
                hi: i16::MAX
            }
        );
        assert_eq!(Versions::parse("0-2").unwrap(), Versions { lo: 0, hi: 2 });
        assert_eq!(Versions::parse("5").unwrap(), Versions { lo: 5, hi: 5 });
        assert!(!Versions::parse("none").unwrap().contains(0));
        assert!(Versions::parse("x").is_err());
    }

    // Proves comments are stripped outside strings only, including a `//` inside a string.
    #[test]
    fn comments_are_stripped() {
        let text = "// head\n{ \"a\": \"x//y\", /* b */ \"c\": 1 } // tail";
        let json: Json = serde_json::from_str(&strip_comments(text)).unwrap();
        assert_eq!(json["a"], "x//y");
        assert_eq!(json["c"], 1);
    }

    // Proves common structs are resolved and inline structs nest.
    #[test]
    fn structs_resolve() {
        let text = r#"{ "apiKey": 9, "name": "XRequest", "validVersions": "0-1", "flexibleVersions": "1+",
          "fields": [ { "name": "A", "type": "[]Inner", "versions": "0+", "fields": [
              { "name": "B", "type": "Common", "versions": "0+" } ] } ],
          "commonStructs": [ { "name": "Common", "versions": "0+", "fields": [
              { "name": "C", "type": "int8", "versions": "0+" } ] } ] }"#;
        let spec = MessageSpec::parse(text).unwrap();
        assert_eq!(spec.depth, 2);
        let inner = &spec.structs[1];
        assert_eq!(inner.fields[0].ty, FieldType::One(Scalar::Struct(2)));
    }

    // Proves a self-referencing schema is refused instead of recursing forever.
    #[test]
    fn recursive_schema_is_rejected() {
        let text = r#"{ "name": "R", "validVersions": "0", "fields": [ { "name": "A", "type": "Loop", "versions": "0+" } ],
          "commonStructs": [ { "name": "Loop", "versions": "0+", "fields": [ { "name": "L", "type": "Loop", "versions": "0+" } ] } ] }"#;
        assert!(MessageSpec::parse(text).is_err());
    }
}
