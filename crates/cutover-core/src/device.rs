//! Device families for passkey enrolment (SPEC §6.1, §9): which device a person registered a
//! passkey on, from the browser's User-Agent (and, where the browser sends it, the
//! `Sec-CH-UA-Model` client hint), or a security key when the authenticator was a roaming
//! one. Enrolment guidance and campaign progress are shown per family.
//!
//! Android browsers with a reduced User-Agent (Chrome since 2023) say only `Android 10; K`: the
//! maker then comes from the model hint (which Cutover asks for with `Accept-CH`), and is
//! `other` without it.
//!
//! A registered passkey also says where it lives: its transports (a roaming key; `hybrid`, a
//! phone reached by QR code from another device, whose User-Agent is not the phone's) and its
//! AAGUID, which for the well-known passkey providers names the platform (iCloud Keychain,
//! Google Password Manager, Samsung Pass, Windows Hello, Microsoft Authenticator).
//! [`family_of_passkey`] weighs them together.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// Huawei's model codes (three letters, a dash: `ELS-NX9` is a P40 Pro) for the phones of the
/// last years; a browser with a full User-Agent names the phone only by its code.
const HUAWEI_MODEL_PREFIXES: [&str; 22] = [
    "abr-", "aln-", "ana-", "bra-", "cet-", "clt-", "dco-", "ele-", "els-", "eml-", "hma-", "jad-",
    "jny-", "lio-", "lna-", "lya-", "mar-", "mna-", "noh-", "nop-", "tas-", "vog-",
];

/// Xiaomi's (Redmi's, POCO's) model codes: a year and month, more digits and a region letter
/// (`2201116SG`, `23049PCD8G`), or `M` and the same (`M2101K6G`).
fn is_xiaomi_code(m: &str) -> bool {
    let b = m.as_bytes();
    let digits_then_code = |s: &[u8]| {
        (7..=10).contains(&s.len())
            && s[..4].iter().all(u8::is_ascii_digit)
            && matches!(s[0], b'1' | b'2')
            && s.iter().all(u8::is_ascii_alphanumeric)
            && s.last().is_some_and(u8::is_ascii_alphabetic)
    };
    digits_then_code(b) || (b.first() == Some(&b'm') && digits_then_code(&b[1..]))
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
        || is_xiaomi_code(m)
    {
        AndroidMaker::Xiaomi
    } else if m.contains("huawei")
        || HUAWEI_MODEL_PREFIXES.iter().any(|p| starts(p))
        || ua.contains("huaweibrowser")
        || ua.contains("harmonyos")
    {
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

/// A passkey provider whose AAGUID says which platform holds the passkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    ICloudKeychain,
    GooglePasswordManager,
    SamsungPass,
    WindowsHello,
    ChromeOnMac,
    MicrosoftAuthenticatorIos,
    MicrosoftAuthenticatorAndroid,
}

/// The providers whose AAGUID tells the platform (public, well-known values; the others —
/// password managers that sync everywhere, security keys — say nothing about the device).
const PROVIDERS: [(Uuid, Provider); 9] = [
    (
        Uuid::from_u128(0xfbfc3007_154e_4ecc_8c0b_6e020557d7bd),
        Provider::ICloudKeychain,
    ),
    (
        Uuid::from_u128(0xdd4ec289_e01d_41c9_bb89_70fa845d4bf2),
        Provider::ICloudKeychain,
    ),
    (
        Uuid::from_u128(0xea9b8d66_4d01_1d21_3ce4_b6b48cb575d4),
        Provider::GooglePasswordManager,
    ),
    (
        Uuid::from_u128(0x53414d53_554e_4700_0000_000000000000),
        Provider::SamsungPass,
    ),
    (
        Uuid::from_u128(0x08987058_cadc_4b81_b6e1_30de50dcbe96),
        Provider::WindowsHello,
    ),
    (
        Uuid::from_u128(0x9ddd1817_af5a_4672_a2b9_3e3dd95000a9),
        Provider::WindowsHello,
    ),
    (
        Uuid::from_u128(0x6028b017_b1d4_4c02_b4b3_afcdafc96bb2),
        Provider::WindowsHello,
    ),
    (
        Uuid::from_u128(0x90a3ccdf_635c_4729_a248_9b709135078f),
        Provider::MicrosoftAuthenticatorIos,
    ),
    (
        Uuid::from_u128(0xde1e552d_db1d_4423_a619_566b625cdc84),
        Provider::MicrosoftAuthenticatorAndroid,
    ),
];

/// Chrome on a Mac (its own profile-bound passkeys) has an AAGUID too.
const CHROME_ON_MAC: Uuid = Uuid::from_u128(0xadce0002_35bc_c60a_648b_0b25f1f05503);

/// The provider an AAGUID names, when it tells the platform.
pub fn provider_of(aaguid: Uuid) -> Option<Provider> {
    if aaguid == CHROME_ON_MAC {
        return Some(Provider::ChromeOnMac);
    }
    PROVIDERS
        .iter()
        .find(|(id, _)| *id == aaguid)
        .map(|(_, p)| *p)
}

/// What is known of a passkey at its registration.
#[derive(Debug, Clone, Copy)]
pub struct PasskeyEvidence<'a> {
    /// The registering browser's User-Agent.
    pub user_agent: &'a str,
    /// Its `Sec-CH-UA-Model` client hint, when it sent one.
    pub model_hint: Option<&'a str>,
    /// The authenticator's transports (`internal`, `hybrid`, `usb`, `nfc`, `ble`…).
    pub transports: &'a [String],
    /// The authenticator's AAGUID (nil when it does not say).
    pub aaguid: Uuid,
}

/// The family of the device that holds a newly registered passkey: a roaming authenticator is
/// a security key; a passkey made over `hybrid` lives on a phone that is not the browser's
/// device, so the provider decides (iCloud Keychain: iPhone; Samsung Pass: Samsung; Google
/// Password Manager: Android), and it is `Unknown` when nothing does; otherwise the
/// User-Agent (and model hint) decides, with the provider filling in what they leave open.
pub fn family_of_passkey(e: &PasskeyEvidence<'_>) -> DeviceFamily {
    let has = |t: &str| e.transports.iter().any(|x| x.eq_ignore_ascii_case(t));
    let internal = has("internal");
    let hybrid = has("hybrid") || has("cable");
    if !internal && !hybrid && (has("usb") || has("nfc") || has("ble")) {
        return DeviceFamily::SecurityKey;
    }
    let browser = family_of(e.user_agent, e.model_hint, false);
    let provider = provider_of(e.aaguid);
    let android_maker = match browser {
        DeviceFamily::Android(m) => m,
        _ => AndroidMaker::Other,
    };
    let from_provider = provider.map(|p| match p {
        Provider::ICloudKeychain | Provider::MicrosoftAuthenticatorIos => {
            if hybrid || browser == DeviceFamily::IPhone {
                DeviceFamily::IPhone
            } else {
                DeviceFamily::MacOs
            }
        }
        Provider::SamsungPass => DeviceFamily::Android(AndroidMaker::Samsung),
        Provider::GooglePasswordManager | Provider::MicrosoftAuthenticatorAndroid => {
            DeviceFamily::Android(android_maker)
        }
        Provider::WindowsHello => DeviceFamily::Windows,
        Provider::ChromeOnMac => DeviceFamily::MacOs,
    });
    if hybrid && !internal {
        // The browser is on another device: only a phone's own User-Agent would say more.
        return match (from_provider, browser) {
            (Some(f), _) => f,
            (None, f @ (DeviceFamily::IPhone | DeviceFamily::Android(_))) => f,
            (None, _) => DeviceFamily::Unknown,
        };
    }
    match (browser, from_provider) {
        // Samsung Pass holds passkeys only on Samsung phones, whatever the browser says.
        (DeviceFamily::Android(_) | DeviceFamily::Unknown, Some(f @ DeviceFamily::Android(_))) => f,
        (DeviceFamily::Unknown, Some(f)) => f,
        (f, _) => f,
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
    fn model_codes_name_huawei_and_xiaomi_phones() {
        let reduced = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
        for (hint, want) in [
            ("\"ELS-NX9\"", Huawei),
            ("VOG-L29", Huawei),
            ("ALN-AL00", Huawei),
            ("\"2201116SG\"", Xiaomi),
            ("23049PCD8G", Xiaomi),
            ("M2101K6G", Xiaomi),
            ("22081212UG", Xiaomi),
            // Not those makers' codes.
            ("CPH2423", Other),
            ("RMX3360", Other),
            ("2201", Other),
            ("20221116", Other),
            ("ANY-LX1", Other),
            ("SM-S921B", Samsung),
        ] {
            assert_eq!(
                family_of(reduced, Some(hint), false),
                F::Android(want),
                "{hint}"
            );
        }
        // A full User-Agent that names the phone by its code.
        assert_eq!(
            family_of(
                "Mozilla/5.0 (Linux; Android 10; ELS-NX9 Build/HUAWEIELS-N29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Mobile Safari/537.36",
                None,
                false
            ),
            F::Android(Huawei)
        );
    }

    fn evidence<'a>(ua: &'a str, transports: &'a [String], aaguid: u128) -> PasskeyEvidence<'a> {
        PasskeyEvidence {
            user_agent: ua,
            model_hint: None,
            transports,
            aaguid: Uuid::from_u128(aaguid),
        }
    }

    fn ts(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn a_passkey_made_over_hybrid_belongs_to_the_phone_not_the_browser() {
        let windows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        let hybrid = ts(&["hybrid"]);
        let cases = [
            (0xfbfc3007_154e_4ecc_8c0b_6e020557d7bd, F::IPhone),
            (0x53414d53_554e_4700_0000_000000000000, F::Android(Samsung)),
            (0xea9b8d66_4d01_1d21_3ce4_b6b48cb575d4, F::Android(Other)),
            (0x90a3ccdf_635c_4729_a248_9b709135078f, F::IPhone),
            (0xde1e552d_db1d_4423_a619_566b625cdc84, F::Android(Other)),
            // A phone that does not say which: not the Windows PC.
            (0, F::Unknown),
            (0xbada5566_a7aa_401f_bd96_45619a55120d, F::Unknown),
        ];
        for (aaguid, want) in cases {
            assert_eq!(
                family_of_passkey(&evidence(windows, &hybrid, aaguid)),
                want,
                "{aaguid:x}"
            );
        }
        // Chromium's virtual authenticators say "cable" for hybrid.
        assert_eq!(
            family_of_passkey(&evidence(windows, &ts(&["cable"]), 0)),
            F::Unknown
        );
    }

    #[test]
    fn the_provider_fills_in_what_the_user_agent_leaves_open() {
        let internal = ts(&["internal", "hybrid"]);
        let reduced = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
        let mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        let samsung = 0x53414d53_554e_4700_0000_000000000000;
        let icloud = 0xfbfc3007_154e_4ecc_8c0b_6e020557d7bd;
        let hello = 0x08987058_cadc_4b81_b6e1_30de50dcbe96;
        // Samsung Pass took the passkey on a phone whose browser hid its model.
        assert_eq!(
            family_of_passkey(&evidence(reduced, &internal, samsung)),
            F::Android(Samsung)
        );
        assert_eq!(
            family_of_passkey(&evidence(iphone, &internal, icloud)),
            F::IPhone
        );
        assert_eq!(
            family_of_passkey(&evidence(mac, &internal, icloud)),
            F::MacOs
        );
        assert_eq!(
            family_of_passkey(&evidence("", &internal, hello)),
            F::Windows
        );
        // The User-Agent wins where it knows (a Windows Hello AAGUID seen from a Mac is odd;
        // the browser's device is what it is).
        assert_eq!(
            family_of_passkey(&evidence(mac, &internal, hello)),
            F::MacOs
        );
        // No AAGUID, no transports (some browsers): the User-Agent alone.
        assert_eq!(family_of_passkey(&evidence(iphone, &[], 0)), F::IPhone);
        // A model hint still counts.
        let with_hint = PasskeyEvidence {
            model_hint: Some("\"Pixel 8\""),
            ..evidence(reduced, &internal, 0xea9b8d66_4d01_1d21_3ce4_b6b48cb575d4)
        };
        assert_eq!(family_of_passkey(&with_hint), F::Android(Pixel));
    }

    #[test]
    fn a_key_on_usb_nfc_or_bluetooth_is_a_security_key() {
        let windows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)";
        for t in [&["usb"][..], &["nfc", "usb"], &["ble"], &["USB"]] {
            assert_eq!(
                family_of_passkey(&evidence(windows, &ts(t), 0)),
                F::SecurityKey,
                "{t:?}"
            );
        }
        // A platform authenticator that also speaks USB is not a key.
        assert_eq!(
            family_of_passkey(&evidence(windows, &ts(&["internal", "usb"]), 0)),
            F::Windows
        );
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
