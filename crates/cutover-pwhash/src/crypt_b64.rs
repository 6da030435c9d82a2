//! sha512-crypt's own base64: alphabet `./0-9A-Za-z`, little-endian 6-bit groups, and a fixed
//! byte permutation (Drepper, "Unix crypt using SHA-256 and SHA-512").

/// The crypt alphabet, in value order.
pub(crate) const ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of an encoded sha512-crypt digest.
pub(crate) const SHA512_ENCODED_LEN: usize = 86;

/// crypt uses at most this many salt characters.
pub(crate) const CRYPT_SALT_MAX: usize = 16;

/// The 21 three-byte groups of the SHA-512 layout, most significant byte first: group `k`
/// starts at byte `22k mod 63`, and its other two bytes follow 21 and 42 places later (mod 63).
/// Byte 63 is encoded alone at the end.
const SHA512_GROUPS: [[usize; 3]; 21] = sha512_groups();

const fn sha512_groups() -> [[usize; 3]; 21] {
    let mut groups = [[0usize; 3]; 21];
    let mut k = 0;
    while k < 21 {
        let first = (22 * k) % 63;
        groups[k] = [first, (first + 21) % 63, (first + 42) % 63];
        k += 1;
    }
    groups
}

fn value_of(c: u8) -> Option<u32> {
    let v = match c {
        b'.' => 0,
        b'/' => 1,
        b'0'..=b'9' => c - b'0' + 2,
        b'A'..=b'Z' => c - b'A' + 12,
        b'a'..=b'z' => c - b'a' + 38,
        _ => return None,
    };
    Some(u32::from(v))
}

#[cfg(test)]
fn push_chars(out: &mut Vec<u8>, mut word: u32, count: usize) {
    for _ in 0..count {
        out.push(ALPHABET[(word & 0x3f) as usize]);
        word >>= 6;
    }
}

/// Encodes a raw sha512-crypt digest as the 86 characters crypt writes.
#[cfg(test)]
pub(crate) fn encode_sha512(digest: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SHA512_ENCODED_LEN);
    for [b2, b1, b0] in SHA512_GROUPS {
        let word =
            (u32::from(digest[b2]) << 16) | (u32::from(digest[b1]) << 8) | u32::from(digest[b0]);
        push_chars(&mut out, word, 4);
    }
    push_chars(&mut out, u32::from(digest[63]), 2);
    out
}

/// Decodes the 86 characters crypt writes into the raw digest. Refuses any other length, any
/// character outside the alphabet and a non-canonical last character.
pub(crate) fn decode_sha512(text: &[u8]) -> Option<[u8; 64]> {
    if text.len() != SHA512_ENCODED_LEN {
        return None;
    }
    let word = |chars: &[u8]| -> Option<u32> {
        chars
            .iter()
            .rev()
            .try_fold(0u32, |acc, &c| Some((acc << 6) | value_of(c)?))
    };
    let mut digest = [0u8; 64];
    for (group, chars) in SHA512_GROUPS.iter().zip(text.chunks_exact(4)) {
        let w = word(chars)?;
        let [b2, b1, b0] = *group;
        digest[b2] = (w >> 16) as u8;
        digest[b1] = (w >> 8) as u8;
        digest[b0] = w as u8;
    }
    let last = word(&text[84..])?;
    digest[63] = u8::try_from(last).ok()?;
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_bytes_0_to_62_once() {
        let mut seen = [false; 63];
        for group in SHA512_GROUPS {
            for b in group {
                assert!(!seen[b], "byte {b} twice");
                seen[b] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn alphabet_values_round_trip() {
        for (i, c) in ALPHABET.iter().enumerate() {
            assert_eq!(value_of(*c), Some(i as u32));
        }
        assert_eq!(value_of(b'+'), None);
        assert_eq!(value_of(b'$'), None);
    }

    #[test]
    fn decode_refuses_noncanonical_tail_and_bad_chars() {
        let good = encode_sha512(&[0xa5; 64]);
        assert_eq!(decode_sha512(&good), Some([0xa5; 64]));
        let mut bad_tail = good.clone();
        bad_tail[85] = b'z';
        assert_eq!(decode_sha512(&bad_tail), None);
        let mut bad_char = good.clone();
        bad_char[10] = b'+';
        assert_eq!(decode_sha512(&bad_char), None);
        assert_eq!(decode_sha512(&good[..85]), None);
    }
}
