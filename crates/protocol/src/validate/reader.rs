//! A bounds-checked cursor over one request frame. Every read says how many bytes it needs and
//! fails with [`ValidateError::Truncated`] instead of reading past the end.

use super::ValidateError;

/// Reads primitive Kafka encodings from a byte slice without ever indexing past its end.
pub struct Reader<'a> {
    /// The bytes being walked.
    buf: &'a [u8],
    /// Offset of the next unread byte; always `<= buf.len()`.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Takes the next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], ValidateError> {
        let truncated = ValidateError::Truncated {
            offset: self.pos,
            needed: len,
            remaining: self.remaining(),
        };
        let end = self.pos.checked_add(len).ok_or_else(|| truncated.clone())?;
        let bytes = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// Takes exactly `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ValidateError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A big-endian `i8`.
    pub fn i8(&mut self) -> Result<i8, ValidateError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    /// A big-endian `i16`.
    pub fn i16(&mut self) -> Result<i16, ValidateError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    /// A big-endian `i32`.
    pub fn i32(&mut self) -> Result<i32, ValidateError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Kafka's unsigned varint (at most 5 bytes, value fits in `u32`).
    ///
    /// kafka-protocol 0.18 stops after the fifth byte even when its continuation bit is set and then
    /// reads the next byte as the next field, while Kafka throws; bits beyond 32 are silently
    /// dropped by both. We refuse both cases so that the decoder and this walker can never disagree
    /// about where a field ends. Non-minimal encodings (`0x80 0x00`) are accepted, as Kafka does.
    pub fn uvarint(&mut self) -> Result<u32, ValidateError> {
        let mut value: u32 = 0;
        for i in 0..5u32 {
            let byte = u32::from(self.array::<1>()?[0]);
            if i == 4 && byte > 0x0f {
                return Err(ValidateError::BadVarint {
                    offset: self.pos.saturating_sub(1),
                });
            }
            value |= (byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ValidateError::BadVarint {
            offset: self.pos.saturating_sub(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves varints decode like Kafka's and that too-long or overflowing ones are refused.
    #[test]
    fn varints() {
        assert_eq!(Reader::new(&[0x00]).uvarint().unwrap(), 0);
        assert_eq!(Reader::new(&[0x80, 0x00]).uvarint().unwrap(), 0);
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f])
                .uvarint()
                .unwrap(),
            u32::MAX
        );
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f])
            .uvarint()
            .is_err());
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00])
            .uvarint()
            .is_err());
        assert!(Reader::new(&[0x80]).uvarint().is_err());
    }

    // Proves a read past the end reports where and how much instead of panicking.
    #[test]
    fn take_past_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take(2).unwrap(), &[1, 2]);
        assert!(matches!(
            r.take(2),
            Err(ValidateError::Truncated {
                offset: 2,
                needed: 2,
                remaining: 1
            })
        ));
        assert!(r.take(usize::MAX).is_err());
    }
}
