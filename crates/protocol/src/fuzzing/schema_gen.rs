//! Schema-valid request bodies from a stream of choices: the generator behind the schema
//! round-trip test (choices from a seeded PRNG) and the engine fuzz targets (choices from the
//! fuzzer's bytes). It follows Kafka's message schemas independently of the validator's walk,
//! so kafka-protocol's decoder checks the schemas and the validator checks both.

use crate::validate::schema::{Field, FieldType, MessageSpec, Scalar, StructId};

/// Where a generator's choices come from.
pub trait Choices {
    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64;
}

/// A small deterministic generator (xorshift64*), reproducible from its seed (not 0).
#[derive(Debug, Clone)]
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl Choices for Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A fuzzer's input read as choices: one byte per choice below 256, four above; zeros once the
/// input is used up, so every input is a complete (if short) run.
#[derive(Debug, Clone)]
pub struct FuzzBytes<'a> {
    data: &'a [u8],
}

impl<'a> FuzzBytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        FuzzBytes { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> u64 {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
    }
}

impl Choices for FuzzBytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let raw = if n <= 256 { self.take(1) } else { self.take(4) };
        raw % n
    }
}

/// What the generated values look like.
#[derive(Debug, Clone, Copy)]
pub struct GenOptions {
    /// Bytes strings are made of. A small alphabet makes ids collide, so requests of a run meet
    /// the same groups and members.
    pub alphabet: &'static [u8],
    /// Sometimes make a string one of the lengths at and past Kafka's limit (0x7fff, 0x8000,
    /// 40,000 bytes): the validator must refuse those past it.
    pub long_strings: bool,
    /// Integers are mostly small (-1 to 3): generations, epochs, partitions and counts then
    /// mean something to the engine under test.
    pub small_ints: bool,
    /// Sometimes add a tagged field no schema knows (readers must skip it).
    pub unknown_tags: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            alphabet: b"abcdefghijklmnopqrstuvwxyz",
            long_strings: false,
            small_ints: false,
            unknown_tags: true,
        }
    }
}

/// The lengths `long_strings` picks from.
pub const LONG_STRING_BYTES: [usize; 3] = [0x7fff, 0x8000, 40_000];

/// Writes a schema-valid body of one message at one version.
pub struct SchemaGen<'s, C> {
    spec: &'s MessageSpec,
    version: i16,
    flexible: bool,
    pub choices: C,
    options: GenOptions,
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl<'s, C: Choices> SchemaGen<'s, C> {
    pub fn new(spec: &'s MessageSpec, version: i16, choices: C, options: GenOptions) -> Self {
        SchemaGen {
            spec,
            version,
            flexible: spec.flexible.contains(version),
            choices,
            options,
        }
    }

    /// One whole message body.
    pub fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.structure(&mut out, 0, 0);
        out
    }

    fn below(&mut self, n: u64) -> u64 {
        self.choices.below(n)
    }

    fn random(&mut self, out: &mut Vec<u8>, n: usize) {
        for _ in 0..n {
            out.push(self.below(256) as u8);
        }
    }

    fn int(&mut self, out: &mut Vec<u8>, bytes: usize) {
        if self.options.small_ints && self.below(4) != 0 {
            let small = self.below(5) as i64 - 1;
            out.extend_from_slice(&small.to_be_bytes()[8 - bytes..]);
        } else {
            self.random(out, bytes);
        }
    }

    fn compact(&self, f: &Field) -> bool {
        f.flexible
            .map_or(self.flexible, |v| v.contains(self.version))
    }

    fn tagged(&self, f: &Field) -> bool {
        self.flexible && f.tag.is_some() && f.tagged.contains(self.version)
    }

    fn len_prefix(&mut self, out: &mut Vec<u8>, f: &Field, len: Option<usize>, i16_len: bool) {
        if self.compact(f) {
            put_uvarint(out, len.map_or(0, |l| l as u32 + 1));
        } else if i16_len {
            out.extend_from_slice(&len.map_or(-1, |l| l as i16).to_be_bytes());
        } else {
            out.extend_from_slice(&len.map_or(-1, |l| l as i32).to_be_bytes());
        }
    }

    fn maybe_null(&mut self, f: &Field) -> bool {
        f.nullable.contains(self.version) && self.below(6) == 0
    }

    fn structure(&mut self, out: &mut Vec<u8>, id: StructId, depth: usize) {
        let spec = self.spec;
        let fields = &spec.structs[id].fields;
        for f in fields {
            if f.versions.contains(self.version) && !self.tagged(f) {
                self.field(out, f, depth);
            }
        }
        if self.flexible {
            let mut tagged: Vec<&Field> = Vec::new();
            for f in fields {
                if f.versions.contains(self.version) && self.tagged(f) && self.below(2) == 0 {
                    tagged.push(f);
                }
            }
            tagged.sort_by_key(|f| f.tag);
            let unknown = self.options.unknown_tags && self.below(4) == 0;
            put_uvarint(out, tagged.len() as u32 + u32::from(unknown));
            for f in tagged {
                let mut value = Vec::new();
                self.field(&mut value, f, depth);
                put_uvarint(out, f.tag.unwrap_or_default());
                put_uvarint(out, value.len() as u32);
                out.extend_from_slice(&value);
            }
            if unknown {
                put_uvarint(out, 10_000);
                put_uvarint(out, 3);
                out.extend_from_slice(b"xyz");
            }
        }
    }

    fn field(&mut self, out: &mut Vec<u8>, f: &Field, depth: usize) {
        match f.ty {
            FieldType::One(s) => self.scalar(out, f, s, depth, false),
            FieldType::Array(s) => {
                if self.maybe_null(f) {
                    self.len_prefix(out, f, None, false);
                    return;
                }
                let count = if depth > 4 { 0 } else { self.below(3) as usize };
                self.len_prefix(out, f, Some(count), false);
                for _ in 0..count {
                    self.scalar(out, f, s, depth, true);
                }
            }
        }
    }

    fn string_len(&mut self) -> usize {
        if self.options.long_strings && self.below(8) == 0 {
            LONG_STRING_BYTES[self.below(LONG_STRING_BYTES.len() as u64) as usize]
        } else {
            self.below(6) as usize
        }
    }

    fn scalar(&mut self, out: &mut Vec<u8>, f: &Field, s: Scalar, depth: usize, element: bool) {
        match s {
            Scalar::Int8 => self.int(out, 1),
            Scalar::Bool => out.push(self.below(2) as u8),
            Scalar::Int16 | Scalar::Uint16 => self.int(out, 2),
            Scalar::Int32 | Scalar::Uint32 => self.int(out, 4),
            Scalar::Int64 => self.int(out, 8),
            Scalar::Float64 => {
                out.extend_from_slice(&(self.below(1000) as f64 / 4.0).to_be_bytes())
            }
            Scalar::Uuid => self.random(out, 16),
            Scalar::String => {
                let len = if !element && self.maybe_null(f) {
                    None
                } else {
                    Some(self.string_len())
                };
                self.len_prefix(out, f, len, true);
                let alphabet = self.options.alphabet;
                let fill = len.unwrap_or(0);
                if fill > 64 {
                    // Long strings: one repeated byte, so a run stays cheap to generate.
                    out.resize(out.len() + fill, alphabet[0]);
                } else {
                    for _ in 0..fill {
                        out.push(alphabet[self.below(alphabet.len() as u64) as usize]);
                    }
                }
            }
            Scalar::Bytes | Scalar::Records => {
                let len = if !element && self.maybe_null(f) {
                    None
                } else {
                    Some(self.below(6) as usize)
                };
                self.len_prefix(out, f, len, false);
                self.random(out, len.unwrap_or(0));
            }
            Scalar::Struct(id) => {
                if !element && f.nullable.contains(self.version) {
                    if self.below(4) == 0 {
                        out.push(0xff);
                        return;
                    }
                    out.push(1);
                }
                self.structure(out, id, depth + 1);
            }
        }
    }
}
