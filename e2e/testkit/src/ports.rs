//! Listener ports for tests that must name a port before the process that binds it starts.
//!
//! A Gateway declares its listener ports, so a test cannot hand the proxy a bound socket; it
//! picks a port that is free now and the proxy binds it a little later. Two things could take
//! the port in between, and neither can here: ports come from below the kernel's ephemeral range
//! (`ip_local_port_range` starts at 32768 by default), so no outgoing connection is given one,
//! and each port is handed out once per process, so two tests of one binary never share one.
//! Processes start at different points of the range (by process ID).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The range ports are taken from: above the well-known and common service ports, below the
/// ephemeral range.
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// Every port this process has handed out, so that [`free_port`] and [`free_offset`] never
/// give one out twice.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port that is free for TCP and UDP on 127.0.0.1 and has not been handed out before by this
/// process.
pub fn free_port() -> u16 {
    free_offset(&[0])
}

/// An offset under which every one of `bases` (a Gateway's listener ports, for a proxy started
/// with `--port-offset`) is a port from the range that is free for TCP and UDP on 127.0.0.1 and
/// has not been handed out before by this process. The ports are taken together.
///
/// # Panics
/// When the range has no such offset left, or a base is not below the range.
pub fn free_offset(bases: &[u16]) -> u16 {
    let highest = u32::from(bases.iter().copied().max().unwrap_or(0));
    let lowest = u32::from(bases.iter().copied().min().unwrap_or(0));
    assert!(
        highest < FIRST && highest - lowest < COUNT,
        "ports {bases:?} cannot be moved between {FIRST} and {}",
        FIRST + COUNT
    );
    let start = std::process::id().wrapping_mul(7_919) % COUNT;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::AcqRel, Ordering::Acquire);
    for _ in 0..COUNT {
        // The lowest base lands on the next port of the range, and every other base must land
        // inside the range too (below the ephemeral ports).
        let first = FIRST + NEXT.fetch_add(1, Ordering::AcqRel) % COUNT;
        if first - lowest + highest >= FIRST + COUNT {
            continue;
        }
        let offset = first - lowest;
        let ports: Vec<u16> = bases
            .iter()
            .filter_map(|base| u16::try_from(u32::from(*base) + offset).ok())
            .collect();
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ports.len() == bases.len()
            && ports
                .iter()
                .all(|port| !taken.contains(port) && is_free(*port))
        {
            taken.extend(ports.iter().copied());
            return u16::try_from(offset).unwrap_or(u16::MAX);
        }
    }
    panic!(
        "no offset between {FIRST} and {} frees ports {bases:?}",
        FIRST + COUNT
    )
}

fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice_and_are_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let unique: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(
            ports.iter().all(|p| (20_000..32_000).contains(p)),
            "{ports:?}"
        );
    }

    #[test]
    fn an_offset_frees_every_base_below_the_ephemeral_range_and_never_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let offset = free_offset(&[80, 443]);
            for base in [80, 443] {
                let port = base + offset;
                assert!((20_000..32_000).contains(&port), "{port}");
                assert!(seen.insert(port), "{port} handed out twice");
            }
        }
        // A plain port is never one an offset took.
        for _ in 0..100 {
            assert!(seen.insert(free_port()));
        }
    }
}
