//! The paged results control's response value (RFC 2696), read without panicking on
//! whatever a server sends:
//!
//! ```text
//! realSearchControlValue ::= SEQUENCE { size INTEGER, cookie OCTET STRING }
//! ```

pub(crate) const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

/// One BER element with the expected tag: its contents and what follows it.
pub(crate) fn element(buf: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (&found, rest) = buf.split_first().ok_or("truncated (no tag)")?;
    if found != tag {
        return Err(format!("expected tag {tag:#04x}, found {found:#04x}"));
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated (no length)")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported or truncated length".to_owned());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(format!(
            "truncated: {len} bytes announced, {} present",
            rest.len()
        ));
    }
    Ok(rest.split_at(len))
}

/// The server's size estimate and the cookie for the next page (empty: this was the last).
pub(crate) fn parse_paged_response(value: &[u8]) -> Result<(i64, Vec<u8>), String> {
    let (seq, _) = element(value, SEQUENCE)?;
    let (int, rest) = element(seq, INTEGER)?;
    if int.is_empty() || int.len() > 8 {
        return Err(format!("size is {} bytes long", int.len()));
    }
    // Two's complement, big-endian.
    let mut size: i64 = if int[0] & 0x80 != 0 { -1 } else { 0 };
    for b in int {
        size = (size << 8) | i64::from(*b);
    }
    let (cookie, _) = element(rest, OCTET_STRING)?;
    Ok((size, cookie.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_size_and_cookie() {
        assert_eq!(
            parse_paged_response(&[0x30, 0x05, 0x02, 0x01, 0x00, 0x04, 0x00]).unwrap(),
            (0, vec![])
        );
        assert_eq!(
            parse_paged_response(&[
                0x30, 0x09, 0x02, 0x02, 0x01, 0x2c, 0x04, 0x03, 0xaa, 0xbb, 0xcc
            ])
            .unwrap(),
            (300, vec![0xaa, 0xbb, 0xcc])
        );
        assert_eq!(
            parse_paged_response(&[0x30, 0x06, 0x02, 0x01, 0xff, 0x04, 0x01, 0x07])
                .unwrap()
                .0,
            -1
        );
        // Long-form lengths, as for AD's 100+ byte cookies.
        let cookie = vec![7u8; 200];
        let mut v = vec![0x30, 0x81, 0xce, 0x02, 0x01, 0x00, 0x04, 0x81, 0xc8];
        v.extend(&cookie);
        assert_eq!(parse_paged_response(&v).unwrap(), (0, cookie));
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0x31, 0x00],
            &[0x30],
            &[0x30, 0x05, 0x02],
            &[0x30, 0x02, 0x02, 0x00],
            &[0x30, 0x03, 0x02, 0x01, 0x00],
            &[0x30, 0x05, 0x02, 0x01, 0x00, 0x04, 0x05],
            &[0x30, 0x85, 0, 0, 0, 0, 0],
            &[0x30, 0x80],
        ] {
            assert!(parse_paged_response(bad).is_err(), "{bad:x?}");
        }
    }
}
