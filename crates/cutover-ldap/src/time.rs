//! LDAP GeneralizedTime values (RFC 4517 §3.3.13) as used by `modifyTimestamp`, restricted to
//! the UTC form directories actually emit: `YYYYMMDDHHMMSS[.f…]Z`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A validated UTC GeneralizedTime, e.g. `20240131235959Z` (OpenLDAP) or `20240131235959.0Z`
/// (Active Directory). Used as the delta-import watermark.
///
/// Equality, ordering and hashing are by the instant, so `20240101000000Z` equals
/// `20240101000000.0Z`; [`Display`](fmt::Display) and [`as_str`](Self::as_str) give the text as
/// it was parsed (that is what goes into filters, unchanged).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GeneralizedTime {
    text: String,
    /// `YYYYMMDDHHMMSS` as a number: ordered like the instant.
    seconds: u64,
    /// Fraction of the second in nanoseconds.
    nanos: u32,
}

/// Why a string is not an accepted GeneralizedTime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid GeneralizedTime {value:?}: {reason} (expected YYYYMMDDHHMMSS[.fff]Z, e.g. 20240131235959Z)"
)]
pub struct InvalidGeneralizedTime {
    pub value: String,
    pub reason: &'static str,
}

impl GeneralizedTime {
    /// Parse and validate `YYYYMMDDHHMMSS[.f…]Z` (1 to 9 fraction digits, `.` or `,`).
    pub fn parse(s: &str) -> Result<Self, InvalidGeneralizedTime> {
        let err = |reason| InvalidGeneralizedTime {
            value: s.to_owned(),
            reason,
        };
        let b = s.as_bytes();
        if b.len() < 14 {
            return Err(err("too short"));
        }
        if !b[..14].iter().all(u8::is_ascii_digit) {
            return Err(err("the first 14 characters must be digits YYYYMMDDHHMMSS"));
        }
        let num = |from: usize, to: usize| -> u32 {
            b[from..to]
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        let (year, month, day) = (num(0, 4), num(4, 6), num(6, 8));
        let (hour, minute, second) = (num(8, 10), num(10, 12), num(12, 14));
        if !(1..=12).contains(&month) {
            return Err(err("month out of range"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(err("day out of range for the month"));
        }
        if hour > 23 {
            return Err(err("hour out of range"));
        }
        if minute > 59 {
            return Err(err("minute out of range"));
        }
        // 60: a leap second, which the syntax allows.
        if second > 60 {
            return Err(err("second out of range"));
        }
        let rest = &b[14..];
        let nanos = match rest {
            [b'Z'] => 0,
            [b'.' | b',', frac @ .., b'Z'] => {
                if frac.is_empty() || frac.len() > 9 {
                    return Err(err("the fraction must have 1 to 9 digits"));
                }
                if !frac.iter().all(u8::is_ascii_digit) {
                    return Err(err("the fraction must be digits"));
                }
                let mut n = frac
                    .iter()
                    .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
                for _ in frac.len()..9 {
                    n *= 10;
                }
                n
            }
            _ if rest.last() != Some(&b'Z') => {
                return Err(err("must be UTC, ending in Z"));
            }
            _ => return Err(err("unexpected characters after the seconds")),
        };
        let seconds = b[..14]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        Ok(Self {
            text: s.to_owned(),
            seconds,
            nanos,
        })
    }

    /// The text as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

impl PartialEq for GeneralizedTime {
    fn eq(&self, other: &Self) -> bool {
        (self.seconds, self.nanos) == (other.seconds, other.nanos)
    }
}

impl Eq for GeneralizedTime {}

impl Hash for GeneralizedTime {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.seconds, self.nanos).hash(state);
    }
}

impl PartialOrd for GeneralizedTime {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GeneralizedTime {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.seconds, self.nanos).cmp(&(other.seconds, other.nanos))
    }
}

impl fmt::Display for GeneralizedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for GeneralizedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneralizedTime({})", self.text)
    }
}

impl FromStr for GeneralizedTime {
    type Err = InvalidGeneralizedTime;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for GeneralizedTime {
    type Error = InvalidGeneralizedTime;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<GeneralizedTime> for String {
    fn from(t: GeneralizedTime) -> String {
        t.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(s: &str) -> GeneralizedTime {
        GeneralizedTime::parse(s).unwrap()
    }

    #[test]
    fn parses_openldap_and_ad_forms() {
        assert_eq!(gt("20240131235959Z").as_str(), "20240131235959Z");
        assert_eq!(gt("20240131235959.0Z").to_string(), "20240131235959.0Z");
        assert_eq!(gt("20240131235959.123456789Z").nanos, 123_456_789);
        assert_eq!(gt("20240131235959,5Z").nanos, 500_000_000);
        assert_eq!(gt("20240229000000Z").seconds, 20_240_229_000_000);
        assert_eq!(gt("20161231235960Z").seconds, 20_161_231_235_960);
    }

    #[test]
    fn rejects_malformed_values() {
        for (bad, why) in [
            ("", "too short"),
            ("2024013123595", "too short"),
            ("2024013123595Z", "digits"),
            ("2024013123595xZ", "digits"),
            ("20241331235959Z", "month"),
            ("20240001235959Z", "month"),
            ("20240132235959Z", "day"),
            ("20230229000000Z", "day"),
            ("20240431000000Z", "day"),
            ("20240131245959Z", "hour"),
            ("20240131236059Z", "minute"),
            ("20240131235961Z", "second"),
            ("20240131235959", "ending in Z"),
            ("20240131235959+0200", "ending in Z"),
            ("20240131235959.Z", "1 to 9"),
            ("20240131235959.1234567890Z", "1 to 9"),
            ("20240131235959.1aZ", "digits"),
            ("20240131235959ZZ", "unexpected"),
            ("20240131235959 Z", "unexpected"),
        ] {
            let e = GeneralizedTime::parse(bad).expect_err(bad);
            assert!(e.reason.contains(why), "{bad}: {e}");
            assert!(e.to_string().contains("YYYYMMDDHHMMSS"), "{e}");
        }
        assert!("19000229000000Z".parse::<GeneralizedTime>().is_err());
        assert!("20000229000000Z".parse::<GeneralizedTime>().is_ok());
    }

    #[test]
    fn orders_by_instant_not_by_text() {
        assert_eq!(gt("20240101000000Z"), gt("20240101000000.0Z"));
        assert_eq!(gt("20240101000000.5Z"), gt("20240101000000,500Z"));
        assert!(gt("20240101000000Z") < gt("20240101000000.001Z"));
        assert!(gt("20240101000000.9Z") < gt("20240101000001Z"));
        assert!(gt("20231231235959Z") < gt("20240101000000Z"));
        // Text order would say otherwise: '.' (0x2e) sorts before 'Z' (0x5a) but after digits.
        assert!(gt("20240101000000.5Z") < gt("20240101000001Z"));
        let max = ["20240101000000Z", "20250101000000Z", "20240601000000.7Z"]
            .into_iter()
            .map(gt)
            .max()
            .unwrap();
        assert_eq!(max.as_str(), "20250101000000Z");
        let set: std::collections::HashSet<_> = [gt("20240101000000Z"), gt("20240101000000.00Z")]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn serde_round_trip_validates() {
        #[derive(Serialize, Deserialize)]
        struct W {
            t: GeneralizedTime,
        }
        let w: W = toml::from_str("t = \"20240131235959.0Z\"").unwrap();
        assert_eq!(w.t.as_str(), "20240131235959.0Z");
        assert_eq!(
            toml::to_string(&w).unwrap().trim(),
            "t = \"20240131235959.0Z\""
        );
        let e = toml::from_str::<W>("t = \"yesterday\"").err().unwrap();
        assert!(e.to_string().contains("invalid GeneralizedTime"), "{e}");
    }
}
