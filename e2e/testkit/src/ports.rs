//! Listener ports for tests that must name a port before the process that binds it starts.
//!
//! A Gateway declares its listener ports, so a test cannot hand the proxy a bound socket; it
//! picks a port that is free now and the proxy binds it a little later. Two things could take
//! the port in between, and neither can here: ports come from below the kernel's ephemeral range
//! (`ip_local_port_range` starts at 32768 by default), so no outgoing connection is given one,
//! and each port is handed out once per process, so two tests of one binary never share one.
//! Processes start at different points of the range (by process ID).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The range ports are taken from: above the well-known and common service ports, below the
/// ephemeral range.
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A port that is free for TCP and UDP on 127.0.0.1 and has not been handed out before by this
/// process.
pub fn free_port() -> u16 {
    let start = std::process::id().wrapping_mul(7_919) % COUNT;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::AcqRel, Ordering::Acquire);
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::AcqRel) % COUNT;
        let Ok(port) = u16::try_from(FIRST + offset) else {
            continue;
        };
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + COUNT)
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
}
