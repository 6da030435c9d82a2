//! Times as campaigns show them: RFC 3339 in the API (`2027-03-01T09:00:00Z`), and a long date
//! for people in e-mails (`Monday 1 March 2027`). Pure arithmetic on the proleptic Gregorian
//! calendar, years 0001 to 9999, no leap seconds.

use crate::Timestamp;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Earliest time RFC 3339 can write: 0001-01-01T00:00:00Z.
pub const MIN_RFC3339: Timestamp = Timestamp::from_millis(-62_135_596_800_000);
/// Latest time RFC 3339 can write: 9999-12-31T23:59:59.999Z.
pub const MAX_RFC3339: Timestamp = Timestamp::from_millis(253_402_300_799_999);
/// Largest UTC offset accepted or shown, in minutes (±18 h, as RFC 3339 and ISO 8601 allow).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 18 * 60;

/// Days since 1970-01-01 of a civil date (any `y`, `m` in 1..=12, `d` in 1..=31).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Whether `t` can be written in RFC 3339 (years 0001 to 9999).
pub fn in_rfc3339_range(t: Timestamp) -> bool {
    (MIN_RFC3339..=MAX_RFC3339).contains(&t)
}

/// `t` in RFC 3339, UTC: `2027-03-01T09:00:00Z`, with `.123` milliseconds only when there
/// are any. Outside [`in_rfc3339_range`], the clamped bound.
pub fn format_rfc3339(t: Timestamp) -> String {
    let t = t.clamp(MIN_RFC3339, MAX_RFC3339);
    let ms = t.millis();
    let days = ms.div_euclid(DAY_MS);
    let of_day = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let secs = of_day / 1000;
    let milli = of_day % 1000;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{milli:03}Z")
    }
}

/// Digits at `b[at..at+n]` as a number.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Parse RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t`, `z` and a space for `T`
/// also accepted). Fractions finer than a millisecond are cut. `None` when it is not one, or
/// names a date that does not exist, a leap second, or a time outside years 0001 to 9999.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let (y, mo, d) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, mi, se) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c))
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > i64::from(days_in_month(y, mo as u32)) {
        return None;
    }
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b.get(i).copied().unwrap_or(b'0') - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (digits(b, i + 1, 2)?, digits(b, i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let ms = ((days * 86_400 + h * 3600 + mi * 60 + se) - offset_minutes * 60) * 1000 + millis;
    let t = Timestamp::from_millis(ms);
    in_rfc3339_range(t).then_some(t)
}

/// The start (00:00 UTC) of the day `t` falls in (for the first day of `i64` milliseconds,
/// whose start is not representable, the next day's).
pub fn utc_day_start(t: Timestamp) -> Timestamp {
    let days = t.millis().div_euclid(DAY_MS);
    // Only the very first day representable starts before i64::MIN: take the next one.
    let start = days
        .checked_mul(DAY_MS)
        .unwrap_or_else(|| days.saturating_add(1).saturating_mul(DAY_MS));
    Timestamp::from_millis(start)
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The date of `t` for people, as a clock `utc_offset_minutes` ahead of UTC shows it (clamped
/// to ±[`MAX_UTC_OFFSET_MINUTES`]): `Monday 1 March 2027`.
pub fn long_date(t: Timestamp, utc_offset_minutes: i32) -> String {
    let offset = utc_offset_minutes.clamp(-MAX_UTC_OFFSET_MINUTES, MAX_UTC_OFFSET_MINUTES);
    let local = t
        .clamp(MIN_RFC3339, MAX_RFC3339)
        .plus_secs(i64::from(offset) * 60)
        .clamp(MIN_RFC3339, MAX_RFC3339);
    let days = local.millis().div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS
        .get((days + 4).rem_euclid(7) as usize)
        .copied()
        .unwrap_or("");
    let month = MONTHS.get(m as usize - 1).copied().unwrap_or("");
    format!("{weekday} {d} {month} {y}")
}

/// Serde support: a [`Timestamp`] as an RFC 3339 string.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::Timestamp;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).ok_or_else(|| {
            D::Error::custom(format!(
                "'{}' is not an RFC 3339 time (e.g. 2027-03-01T09:00:00Z or 2027-03-01T09:00:00+01:00)",
                s.chars().take(40).collect::<String>()
            ))
        })
    }

    /// The same for an optional time (`null` or absent is `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::Timestamp;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Timestamp);
            Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(t)| t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_and_parses_known_times() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (1_700_000_000_000, "2023-11-14T22:13:20Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (MIN_RFC3339.millis(), "0001-01-01T00:00:00Z"),
            (MAX_RFC3339.millis(), "9999-12-31T23:59:59.999Z"),
        ];
        for &(ms, s) in cases {
            assert_eq!(format_rfc3339(Timestamp(ms)), s);
            assert_eq!(parse_rfc3339(s), Some(Timestamp(ms)), "{s}");
        }
    }

    #[test]
    fn accepts_offsets_fractions_and_lowercase() {
        let t = Timestamp::from_secs(1_700_000_000);
        for s in [
            "2023-11-14T23:13:20+01:00",
            "2023-11-14T20:43:20-01:30",
            "2023-11-14t22:13:20z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20.0Z",
            "2023-11-14T22:13:20.000999999Z",
        ] {
            assert_eq!(parse_rfc3339(s), Some(t), "{s}");
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z"),
            Some(t.plus_millis(500))
        );
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for s in [
            "",
            "yesterday",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13Z",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-00-10T00:00:00Z",
            "2023-11-00T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T23:60:00Z",
            "2023-11-14T23:59:60Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567890Z",
            "2023-11-14T22:13:20+1:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20+01:60",
            "2023-11-14T22:13:20+0100",
            "2023-11-14X22:13:20Z",
            "2023/11/14T22:13:20Z",
            "+2023-11-14T22:13:20Z",
            "0001-01-01T00:00:00+00:01",
            "0000-12-31T23:59:59Z",
            "2023-11-14T22:13:20Zjunk",
            "２０２３-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn long_dates() {
        let t = parse_rfc3339("2027-03-01T09:00:00Z").unwrap();
        assert_eq!(long_date(t, 0), "Monday 1 March 2027");
        let midnight_paris = parse_rfc3339("2027-03-01T00:00:00+01:00").unwrap();
        assert_eq!(long_date(midnight_paris, 0), "Sunday 28 February 2027");
        assert_eq!(long_date(midnight_paris, 60), "Monday 1 March 2027");
        assert_eq!(long_date(Timestamp(0), 0), "Thursday 1 January 1970");
        assert_eq!(
            long_date(Timestamp(i64::MAX), i32::MAX),
            "Friday 31 December 9999"
        );
        assert_eq!(
            long_date(Timestamp(i64::MIN), i32::MIN),
            "Monday 1 January 1"
        );
    }

    #[test]
    fn day_start() {
        assert_eq!(utc_day_start(Timestamp(DAY_MS + 5)), Timestamp(DAY_MS));
        assert_eq!(utc_day_start(Timestamp(-1)), Timestamp(-DAY_MS));
        assert_eq!(utc_day_start(Timestamp(i64::MIN)).millis() % DAY_MS, 0);
    }

    proptest! {
        #[test]
        fn round_trips(ms in MIN_RFC3339.millis()..=MAX_RFC3339.millis()) {
            let s = format_rfc3339(Timestamp(ms));
            prop_assert_eq!(parse_rfc3339(&s), Some(Timestamp(ms)));
        }

        #[test]
        fn never_panics(s in "\\PC{0,45}", t in "[0-9T:Z.+ -]{15,35}") {
            let _ = parse_rfc3339(&s);
            let _ = parse_rfc3339(&t);
        }

        #[test]
        fn civil_days_round_trip(z in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(z);
            prop_assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            prop_assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), z);
        }
    }
}
