//! Kafka's text form of a UUID (`Uuid.toString()`): the 16 bytes in URL-safe base64 without
//! padding, 22 characters. Topic ids in `partition.metadata`, cluster ids and KIP-848 member
//! ids are written this way; this is the one encoder and decoder of it.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters of the text form.
pub const TEXT_LEN: usize = 22;

/// The text form of `id`.
pub fn to_text(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(TEXT_LEN);
    for chunk in id.chunks(3) {
        let mut block = [0u8; 3];
        block[..chunk.len()].copy_from_slice(chunk);
        let n = (u32::from(block[0]) << 16) | (u32::from(block[1]) << 8) | u32::from(block[2]);
        for i in 0..=chunk.len() {
            let sextet = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// The UUID a text form stands for; `None` unless it is exactly 22 alphabet characters.
pub fn from_text(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != TEXT_LEN {
        return None;
    }
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut out = [0u8; 16];
    let mut written = 0;
    for &c in bytes {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            *out.get_mut(written)? = (bits >> bit_count) as u8;
            written += 1;
            bits &= (1 << bit_count) - 1;
        }
    }
    (written == 16).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the text form is Kafka's (checked against `Uuid.toString()` values) and reads back.
    #[test]
    fn kafka_text_form_round_trips() {
        assert_eq!(to_text(&[0xfb; 16]), "-_v7-_v7-_v7-_v7-_v7-w");
        // Kafka's Uuid.ZERO_UUID.
        assert_eq!(to_text(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        let id: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(250));
        assert_eq!(from_text(&to_text(&id)), Some(id));
        assert_eq!(from_text("AAAA"), None);
        assert_eq!(from_text("AAAAAAAAAAAAAAAAAAAAA*"), None);
    }
}
