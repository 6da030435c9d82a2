//! Device families for passkey enrolment (SPEC §6.1, §9): which device a person registered a
//! passkey on, from the browser's User-Agent (and, where the browser sends it, the
//! `Sec-CH-UA-Model` client hint), or a security key when the authenticator was a roaming
//! one. Enrolment guidance and campaign progress are shown per family.
//!
//! Android browsers with a reduced User-Agent (Chrome since 2023) say only `Android 10; K`: the
//! maker then comes from the model hint, and is `other` without it.

use serde::{Deserialize, Serialize};

/// The maker of an Android device, as far as enrolment guidance cares (each has its own
/// pitfalls: Samsung Pass taking the passkey, device-bound passkeys on Xiaomi and Huawei).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AndroidMaker {
    Samsung,
    Xiaomi,
    Huawei,
    Pixel,
    Other,
}

/// A device family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "family", content = "maker")]
pub enum DeviceFamily {
    IPhone,
    Android(AndroidMaker),
    Windows,
    MacOs,
    Linux,
    /// A roaming authenticator (a USB, NFC or Bluetooth security key), whatever the browser.
    SecurityKey,
    Unknown,
}

impl DeviceFamily {
    /// Every family, in the order reports list them.
    pub const ALL: [DeviceFamily; 11] = [
        Self::IPhone,
        Self::Android(AndroidMaker::Samsung),
        Self::Android(AndroidMaker::Xiaomi),
        Self::Android(AndroidMaker::Huawei),
        Self::Android(AndroidMaker::Pixel),
        Self::Android(AndroidMaker::Other),
        Self::Windows,
        Self::MacOs,
        Self::Linux,
        Self::SecurityKey,
        Self::Unknown,
    ];

    /// A stable name for reports and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IPhone => "iPhone",
            Self::Android(AndroidMaker::Samsung) => "androidSamsung",
            Self::Android(AndroidMaker::Xiaomi) => "androidXiaomi",
            Self::Android(AndroidMaker::Huawei) => "androidHuawei",
            Self::Android(AndroidMaker::Pixel) => "androidPixel",
            Self::Android(AndroidMaker::Other) => "androidOther",
            Self::Windows => "windows",
            Self::MacOs => "macOS",
            Self::Linux => "linux",
            Self::SecurityKey => "securityKey",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::IPhone => "iPhone or iPad",
            Self::Android(AndroidMaker::Samsung) => "Samsung (Android)",
            Self::Android(AndroidMaker::Xiaomi) => "Xiaomi (Android)",
            Self::Android(AndroidMaker::Huawei) => "Huawei (Android)",
            Self::Android(AndroidMaker::Pixel) => "Google Pixel (Android)",
            Self::Android(AndroidMaker::Other) => "Android, other maker",
            Self::Windows => "Windows",
            Self::MacOs => "Mac",
            Self::Linux => "Linux",
            Self::SecurityKey => "Security key",
            Self::Unknown => "Unknown device",
        }
    }
}

/// Longest User-Agent or model hint looked at (longer input is cut, never refused).
pub const MAX_UA_LEN: usize = 1024;

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_UA_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_ascii_lowercase()
}

/// The Android model name from a full User-Agent: the part after `Android <version>;` up to
/// `)` or ` Build/`.
fn android_model(ua: &str) -> Option<&str> {
    let after = &ua[ua.find("android")?..];
    let rest = after.split_once(';')?.1;
    let model = rest
        .split([')', ';'])
        .next()?
        .split(" build/")
        .next()?
        .trim();
    (!model.is_empty()).then_some(model)
}

fn maker_of(model: &str, ua: &str) -> AndroidMaker {
    let m = model.trim().trim_matches('"');
    let starts = |p: &str| m.starts_with(p);
    if m.contains("pixel") {
        AndroidMaker::Pixel
    } else if starts("sm-")
        || starts("gt-")
        || starts("sch-")
        || m.contains("samsung")
        || m.contains("galaxy")
        || ua.contains("samsungbrowser")
    {
        AndroidMaker::Samsung
    } else if starts("redmi")
        || starts("mi ")
        || starts("poco")
        || m.contains("xiaomi")
        || ua.contains("miuibrowser")
        || ua.contains("xiaomi")
    {
        AndroidMaker::Xiaomi
    } else if m.contains("huawei") || ua.contains("huaweibrowser") || ua.contains("harmonyos") {
        AndroidMaker::Huawei
    } else {
        AndroidMaker::Other
    }
}

/// The family of the device a passkey was registered (or used) on.
/// `model_hint`: the `Sec-CH-UA-Model` client hint when the browser sent it;
/// `roaming`: the authenticator reported a cross-platform attachment (a security key).
pub fn family_of(user_agent: &str, model_hint: Option<&str>, roaming: bool) -> DeviceFamily {
    if roaming {
        return DeviceFamily::SecurityKey;
    }
    let ua = clip(user_agent);
    if ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod") {
        DeviceFamily::IPhone
    } else if ua.contains("android") || ua.contains("harmonyos") {
        let hint = model_hint
            .map(clip)
            .filter(|h| !h.trim_matches('"').is_empty());
        let model = hint
            .as_deref()
            .or_else(|| android_model(&ua).filter(|m| *m != "k"))
            .unwrap_or("");
        DeviceFamily::Android(maker_of(model, &ua))
    } else if ua.contains("windows") {
        DeviceFamily::Windows
    } else if ua.contains("macintosh") || ua.contains("mac os x") {
        DeviceFamily::MacOs
    } else if ua.contains("linux") || ua.contains("x11") || ua.contains("cros") {
        DeviceFamily::Linux
    } else {
        DeviceFamily::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AndroidMaker::*;
    use DeviceFamily as F;

    #[test]
    fn families_from_real_user_agents() {
        let cases: &[(&str, Option<&str>, F)] = &[
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                None,
                F::IPhone,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
                None,
                F::IPhone,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                None,
                F::Android(Samsung),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
                None,
                F::Android(Samsung),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; 2201116SG Build/TKQ1.221114.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.5.1",
                None,
                F::Android(Xiaomi),
            ),
            (
                "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                None,
                F::Android(Xiaomi),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; HUAWEI P30 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.93 Mobile Safari/537.36",
                None,
                F::Android(Huawei),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                None,
                F::Android(Pixel),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; moto g power) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                None,
                F::Android(Other),
            ),
            // Reduced User-Agent: the model comes from the client hint, else "other".
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                None,
                F::Android(Other),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                Some("\"SM-G991B\""),
                F::Android(Samsung),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                Some("Pixel 7a"),
                F::Android(Pixel),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                Some("\"\""),
                F::Android(Other),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
                None,
                F::Windows,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                None,
                F::MacOs,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                None,
                F::Linux,
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                None,
                F::Linux,
            ),
            ("curl/8.5.0", None, F::Unknown),
            ("", None, F::Unknown),
        ];
        for (ua, hint, want) in cases {
            assert_eq!(family_of(ua, *hint, false), *want, "{ua} / {hint:?}");
        }
    }

    #[test]
    fn a_roaming_authenticator_is_a_security_key_on_any_device() {
        assert_eq!(
            family_of("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", None, true),
            F::SecurityKey
        );
        assert_eq!(family_of("", None, true), F::SecurityKey);
    }

    #[test]
    fn names_round_trip_and_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for f in F::ALL {
            assert_eq!(F::parse(f.as_str()), Some(f));
            assert!(seen.insert(f.as_str()), "{} twice", f.as_str());
            assert!(!f.label().is_empty());
        }
        assert_eq!(F::parse("blackberry"), None);
    }

    #[test]
    fn any_input_is_classified_without_panicking() {
        let long = format!("Mozilla/5.0 (Linux; Android 14; {}", "é".repeat(2000));
        assert_eq!(family_of(&long, None, false), F::Android(Other));
        assert_eq!(
            family_of("android;", Some(&"x".repeat(5000)), false),
            F::Android(Other)
        );
        assert_eq!(family_of("Android", None, false), F::Android(Other));
        assert_eq!(
            family_of("(Linux; Android 14; ) x", None, false),
            F::Android(Other)
        );
    }
}
