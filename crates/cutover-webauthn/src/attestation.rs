//! Attestation trust: the root (or intermediate) certificates a registration's attestation must
//! chain to when an authentication methods policy enforces attestation.

use crate::error::ConfigError;
use std::fmt;
use webauthn_rs_core::proto::AttestationCaList;

/// Most certificates one trust configuration may hold.
pub const MAX_TRUST_ROOTS: usize = 64;

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const CERTIFICATE_LABEL: &str = "CERTIFICATE-----";

/// A set of trusted attestation certificates.
///
/// Every certificate is a *blanket* trust anchor: an attestation that chains to it is accepted
/// whatever its authenticator model (AAGUID). webauthn-rs-core's `AttestationCa` can instead
/// limit a root to a list of AAGUIDs; Cutover keeps model allow and block lists in its
/// authentication methods policy, applied to the registration's AAGUID, so the trust roots
/// only answer "is this attestation genuine".
///
/// A certificate must be the one that *issued* the last certificate of the authenticator's
/// chain (`x5c`): give the vendor's root, or the intermediate when the authenticator sends only
/// its leaf certificate. It must be a CA certificate (basic constraints CA, key usage
/// keyCertSign) and currently valid.
#[derive(Clone)]
pub struct AttestationTrust {
    list: AttestationCaList,
    certificates: usize,
}

impl AttestationTrust {
    /// Reads one or more PEM `CERTIFICATE` blocks; text between blocks (comments) is ignored.
    /// Any other PEM block (a private key pasted by mistake) is refused.
    pub fn from_pem(pem: &str) -> Result<Self, ConfigError> {
        let mut list = AttestationCaList::default();
        let mut certificates = 0usize;
        let mut rest = pem;
        while let Some(start) = rest.find(BEGIN) {
            let block = &rest[start..];
            let label_end = block[BEGIN.len()..]
                .find("-----")
                .map(|i| BEGIN.len() + i + "-----".len())
                .ok_or_else(|| ConfigError::new("trustRoots", "unterminated PEM header"))?;
            let label = &block[BEGIN.len()..label_end];
            if label != CERTIFICATE_LABEL {
                let name = label.trim_end_matches('-');
                return Err(ConfigError::new(
                    "trustRoots",
                    format!(
                        "found a PEM block of type {}; give CERTIFICATE blocks only",
                        crate::error::bounded(name)
                    ),
                ));
            }
            let end_marker = format!("{END}{CERTIFICATE_LABEL}");
            let end = block
                .find(&end_marker)
                .map(|i| i + end_marker.len())
                .ok_or_else(|| {
                    ConfigError::new(
                        "trustRoots",
                        format!("certificate {} has no END line", certificates + 1),
                    )
                })?;
            certificates += 1;
            if certificates > MAX_TRUST_ROOTS {
                return Err(ConfigError::new(
                    "trustRoots",
                    format!("at most {MAX_TRUST_ROOTS} certificates"),
                ));
            }
            let one = AttestationCaList::try_from(&block.as_bytes()[..end]).map_err(|_| {
                ConfigError::new(
                    "trustRoots",
                    format!("certificate {certificates} is not a valid X.509 certificate"),
                )
            })?;
            list.union(&one);
            rest = &block[end..];
        }
        if certificates == 0 {
            return Err(ConfigError::new(
                "trustRoots",
                "no PEM CERTIFICATE block found",
            ));
        }
        Ok(AttestationTrust { list, certificates })
    }

    /// The number of distinct certificates.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none (never true for a value built by [`AttestationTrust::from_pem`]).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn library(&self) -> &AttestationCaList {
        &self.list
    }
}

impl fmt::Debug for AttestationTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestationTrust")
            .field("certificates", &self.certificates)
            .field("distinct", &self.list.len())
            .finish()
    }
}
