//! Exactly one exporting sync server (SPEC §5.1).
//!
//! Cutover's database holds one lease: a monotonically increasing **fencing epoch** and the
//! name of the server that holds it. A server exports only with the epoch it was given when it
//! took the lease; promoting another server increments the epoch, so every later write of the
//! old holder — however late it arrives — is refused. The store evaluates these functions
//! inside the transaction that writes, on the locked lease row.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub epoch: u64,
    pub holder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum FenceError {
    #[error("no sync server holds the export lease (promote one first)")]
    NoHolder,
    #[error("sync server {holder} holds the export lease; this server is not the active one")]
    NotHolder { holder: String },
    #[error(
        "export epoch {presented} is stale: the lease is at epoch {current} (another server was promoted)"
    )]
    StaleEpoch { presented: u64, current: u64 },
}

/// May `server`, holding `epoch`, export now?
pub fn check_fence(lease: &Lease, server: &str, epoch: u64) -> Result<(), FenceError> {
    match &lease.holder {
        None => Err(FenceError::NoHolder),
        Some(h) if h != server => Err(FenceError::NotHolder { holder: h.clone() }),
        Some(_) if lease.epoch != epoch => Err(FenceError::StaleEpoch {
            presented: epoch,
            current: lease.epoch,
        }),
        Some(_) => Ok(()),
    }
}

/// `server` takes the lease. The epoch always moves on — even when `server` already holds it —
/// so that any write still in flight from an earlier incarnation of it is fenced off too.
pub fn promote(lease: &Lease, server: &str) -> Lease {
    Lease {
        epoch: lease.epoch + 1,
        holder: Some(server.to_owned()),
    }
}

/// The holder gives the lease up (`cutover sync demote`). Only the holder may.
pub fn demote(lease: &Lease, server: &str) -> Result<Lease, FenceError> {
    match &lease.holder {
        Some(h) if h == server => Ok(Lease {
            epoch: lease.epoch + 1,
            holder: None,
        }),
        Some(h) => Err(FenceError::NotHolder { holder: h.clone() }),
        None => Err(FenceError::NoHolder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_fences_the_old_holder() {
        let l0 = Lease::default();
        assert_eq!(check_fence(&l0, "a", 0), Err(FenceError::NoHolder));
        let l1 = promote(&l0, "a");
        assert_eq!(check_fence(&l1, "a", 1), Ok(()));
        let l2 = promote(&l1, "b");
        assert_eq!(
            check_fence(&l2, "a", 1),
            Err(FenceError::NotHolder { holder: "b".into() })
        );
        assert_eq!(check_fence(&l2, "b", 2), Ok(()));
        // b restarts and promotes itself again: its own earlier epoch is fenced off.
        let l3 = promote(&l2, "b");
        assert_eq!(
            check_fence(&l3, "b", 2),
            Err(FenceError::StaleEpoch {
                presented: 2,
                current: 3
            })
        );
    }

    #[test]
    fn only_the_holder_demotes() {
        let l = promote(&Lease::default(), "a");
        assert_eq!(
            demote(&l, "b"),
            Err(FenceError::NotHolder { holder: "a".into() })
        );
        let d = demote(&l, "a").unwrap();
        assert_eq!(d.holder, None);
        assert_eq!(check_fence(&d, "a", 1), Err(FenceError::NoHolder));
        assert_eq!(demote(&d, "a"), Err(FenceError::NoHolder));
    }
}
