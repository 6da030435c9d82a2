//! IP ranges of named locations: CIDR parsing (std::net only) and a sorted, merged set of
//! ranges that answers "is this address in it?" by binary search, so a location with
//! thousands of ranges costs a few comparisons per sign-in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One parsed CIDR range, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cidr {
    V4 { network: Ipv4Addr, prefix: u8 },
    V6 { network: Ipv6Addr, prefix: u8 },
}

impl Cidr {
    /// Parse `address/prefix`. The prefix is required (a single host is `/32` or `/128`), the
    /// address must be the network's first address (no host bits set: `10.1.2.3/8` is more
    /// likely a typo than a wish), and IPv4 ranges are written as IPv4 (an IPv4-mapped IPv6
    /// range would never match: addresses are compared in their canonical form).
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(format!(
                "'{s}' is not a CIDR range (expected address/prefix, e.g. 10.0.0.0/8 or 2001:db8::/32)"
            ));
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}': '{addr}' is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = if !prefix.is_empty()
            && prefix.len() <= 3
            && prefix.bytes().all(|b| b.is_ascii_digit())
        {
            prefix.parse().unwrap_or(u8::MAX)
        } else {
            u8::MAX
        };
        if prefix > max {
            return Err(format!("'{s}': the prefix length must be 0 to {max}"));
        }
        let cidr = match addr {
            IpAddr::V4(network) => Cidr::V4 { network, prefix },
            IpAddr::V6(network) => {
                if prefix >= 96 && network.to_ipv4_mapped().is_some() {
                    return Err(format!(
                        "'{s}' is an IPv4-mapped IPv6 range; write it as IPv4"
                    ));
                }
                Cidr::V6 { network, prefix }
            }
        };
        let (first, _) = cidr.bounds();
        let given = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if first != given {
            let network = match cidr {
                Cidr::V4 { .. } => IpAddr::V4(Ipv4Addr::from(first as u32)),
                Cidr::V6 { .. } => IpAddr::V6(Ipv6Addr::from(first)),
            };
            return Err(format!(
                "'{s}' has host bits set; did you mean {network}/{prefix}?"
            ));
        }
        Ok(cidr)
    }

    /// First and last address as integers (IPv4 in the low 32 bits).
    fn bounds(self) -> (u128, u128) {
        match self {
            Cidr::V4 { network, prefix } => {
                let host_bits = 32 - u32::from(prefix);
                let mask = if host_bits == 32 {
                    0
                } else {
                    u32::MAX << host_bits
                };
                let first = u32::from(network) & mask;
                (u128::from(first), u128::from(first | !mask))
            }
            Cidr::V6 { network, prefix } => {
                let host_bits = 128 - u32::from(prefix);
                let mask = if host_bits == 128 {
                    0
                } else {
                    u128::MAX << host_bits
                };
                let first = u128::from(network) & mask;
                (first, first | !mask)
            }
        }
    }

    /// Whether `ip` (in canonical form) is in the range.
    pub fn contains(self, ip: IpAddr) -> bool {
        let (first, last) = self.bounds();
        match (self, ip.to_canonical()) {
            (Cidr::V4 { .. }, IpAddr::V4(a)) => (first..=last).contains(&u128::from(u32::from(a))),
            (Cidr::V6 { .. }, IpAddr::V6(a)) => (first..=last).contains(&u128::from(a)),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cidr::V4 { network, prefix } => write!(f, "{network}/{prefix}"),
            Cidr::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
        }
    }
}

/// A set of IP ranges, kept as sorted, non-overlapping, non-adjacent inclusive intervals per
/// address family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRangeSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpRangeSet {
    pub fn from_cidrs<'a>(cidrs: impl IntoIterator<Item = &'a Cidr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in cidrs {
            let (first, last) = c.bounds();
            match c {
                // Bounds of an IPv4 range fit in 32 bits by construction.
                Cidr::V4 { .. } => v4.push((first as u32, last as u32)),
                Cidr::V6 { .. } => v6.push((first, last)),
            }
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Whether `ip` is in one of the ranges. IPv4-mapped IPv6 addresses (as a dual-stack
    /// socket reports IPv4 clients) are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => in_intervals(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_intervals(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Number of merged intervals (for tests and sizing).
    pub fn intervals(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

trait Bound: Copy + Ord {
    fn next(self) -> Option<Self>;
}
impl Bound for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl Bound for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

fn merge<T: Bound>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        if let Some(prev) = out.last_mut() {
            // Overlapping or adjacent: extend the previous interval.
            if prev.1.next().is_none_or(|after| first <= after) {
                prev.1 = prev.1.max(last);
                continue;
            }
        }
        out.push((first, last));
    }
    out
}

fn in_intervals<T: Ord + Copy>(intervals: &[(T, T)], x: T) -> bool {
    // The first interval starting after x; the one before it is the only candidate.
    let i = intervals.partition_point(|(first, _)| *first <= x);
    i > 0 && intervals[i - 1].1 >= x
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidr_ranges_and_names_what_is_wrong() {
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(Cidr::parse("0.0.0.0/0").is_ok());
        assert!(Cidr::parse("::/0").is_ok());
        assert!(Cidr::parse("192.0.2.7/32").is_ok());
        assert!(Cidr::parse("2001:db8::1/128").is_ok());
        let err = |s: &str| Cidr::parse(s).unwrap_err();
        assert!(err("10.0.0.0").contains("not a CIDR range"));
        assert!(err("10.0.0/8").contains("not an IPv4 or IPv6 address"));
        assert!(err("10.0.0.0/33").contains("0 to 32"));
        assert!(err("2001:db8::/129").contains("0 to 128"));
        assert!(err("10.0.0.0/").contains("0 to 32"));
        assert!(err("10.0.0.0/+8").contains("0 to 32"));
        assert!(err("10.0.0.0/ 8").contains("0 to 32"));
        assert!(err("10.0.0.0/0008").contains("0 to 32"));
        assert!(err(" 10.0.0.0/8").contains("not an IPv4 or IPv6 address"));
        assert!(err("10.1.2.3/8").contains("did you mean 10.0.0.0/8?"));
        assert!(err("2001:db8::1/32").contains("did you mean 2001:db8::/32?"));
        assert!(err("::ffff:10.0.0.0/104").contains("write it as IPv4"));
    }

    #[test]
    fn a_set_answers_membership_at_the_range_edges() {
        let cidrs: Vec<Cidr> = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]
            .iter()
            .map(|s| Cidr::parse(s).unwrap())
            .collect();
        let set = IpRangeSet::from_cidrs(&cidrs);
        assert!(set.contains(ip("10.0.0.0")));
        assert!(set.contains(ip("10.255.255.255")));
        assert!(!set.contains(ip("11.0.0.0")));
        assert!(!set.contains(ip("9.255.255.255")));
        assert!(set.contains(ip("192.0.2.255")));
        assert!(!set.contains(ip("192.0.3.0")));
        assert!(set.contains(ip("2001:db8:ffff::1")));
        assert!(!set.contains(ip("2001:db9::")));
        assert!(set.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped is IPv4");
        assert!(!set.contains(ip("::1")));
        let all = IpRangeSet::from_cidrs(&[Cidr::parse("0.0.0.0/0").unwrap()]);
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("2001:db8::1")), "families are separate");
        assert!(IpRangeSet::default().is_empty());
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let cidrs: Vec<Cidr> = [
            "10.0.0.0/25",
            "10.0.0.128/25",
            "10.0.0.0/24",
            "10.0.1.0/24",
            "255.255.255.255/32",
            "255.255.255.254/32",
        ]
        .iter()
        .map(|s| Cidr::parse(s).unwrap())
        .collect();
        let set = IpRangeSet::from_cidrs(&cidrs);
        assert_eq!(set.intervals(), 2);
        assert!(set.contains(ip("10.0.1.255")));
        assert!(set.contains(ip("255.255.255.255")));
    }

    fn any_cidr() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                let probe = Cidr::V4 {
                    network: Ipv4Addr::from(a),
                    prefix: p,
                };
                let (first, _) = probe.bounds();
                Cidr::V4 {
                    network: Ipv4Addr::from(first as u32),
                    prefix: p,
                }
            }),
            // A narrow corner of the IPv6 space so that ranges overlap often.
            (0u128..1024, 118u8..=128).prop_map(|(a, p)| {
                let probe = Cidr::V6 {
                    network: Ipv6Addr::from((0x2001_0db8_u128 << 96) | a),
                    prefix: p,
                };
                let (first, _) = probe.bounds();
                Cidr::V6 {
                    network: Ipv6Addr::from(first),
                    prefix: p,
                }
            }),
        ]
    }

    proptest! {
        /// The merged set answers exactly as "any range contains it", and every range
        /// prints back to itself.
        #[test]
        fn set_membership_equals_any_range(
            cidrs in proptest::collection::vec(any_cidr(), 0..12),
            probes in proptest::collection::vec(
                prop_oneof![
                    any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                    (0u128..2048).prop_map(|a| IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | a))),
                ],
                1..16,
            ),
        ) {
            let set = IpRangeSet::from_cidrs(&cidrs);
            let mut probes = probes;
            for c in &cidrs {
                let (first, last) = c.bounds();
                for edge in [first, last, first.wrapping_sub(1), last.wrapping_add(1)] {
                    probes.push(match c {
                        Cidr::V4 { .. } => IpAddr::V4(Ipv4Addr::from(edge as u32)),
                        Cidr::V6 { .. } => IpAddr::V6(Ipv6Addr::from(edge)),
                    });
                }
                prop_assert_eq!(Cidr::parse(&c.to_string()).unwrap(), *c);
            }
            for p in probes {
                prop_assert_eq!(set.contains(p), cidrs.iter().any(|c| c.contains(p)), "{}", p);
            }
        }
    }
}
