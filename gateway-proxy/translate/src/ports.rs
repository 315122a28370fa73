//! The port-offset rule: which port the proxy binds in its pod for a Gateway listener port.
//!
//! A proxy that runs without `NET_BIND_SERVICE` cannot bind ports below 1024, so those listener
//! ports are bound at `port + offset` (`--port-offset`); the operator points the Service's
//! `targetPort` and the container port there. Both programs call [`bound_port`], so they cannot
//! disagree. An offset is valid when it keeps every privileged port within 65535
//! ([`MAX_PORT_OFFSET`]); [`port_offset`] checks one before it is used.

/// Listener ports below this are privileged and get the offset; this port and above are bound as
/// declared.
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// The largest offset that keeps the highest privileged port (1023) within 65535: 64512.
pub const MAX_PORT_OFFSET: u16 = u16::MAX - (FIRST_UNPRIVILEGED_PORT - 1);

/// A port offset outside `0..=MAX_PORT_OFFSET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortOffsetError {
    /// Below zero.
    #[error("port offset {0} is negative (use 0 to {max})", max = MAX_PORT_OFFSET)]
    Negative(i64),
    /// Port 1023 plus the offset would pass 65535.
    #[error(
        "port offset {0} would move port 1023 past 65535 (use 0 to {max})",
        max = MAX_PORT_OFFSET
    )]
    TooLarge(i64),
}

/// Checks an offset given as any integer (the operator's parameters hold an `i32`, the proxy's
/// command line a string): `Ok` for `0..=MAX_PORT_OFFSET`, the only offsets [`bound_port`] maps
/// every listener port with.
pub fn port_offset(offset: i64) -> Result<u16, PortOffsetError> {
    if offset < 0 {
        return Err(PortOffsetError::Negative(offset));
    }
    match u16::try_from(offset) {
        Ok(valid) if valid <= MAX_PORT_OFFSET => Ok(valid),
        _ => Err(PortOffsetError::TooLarge(offset)),
    }
}

/// The port the proxy binds for `listener_port`: `listener_port + offset` below 1024, the
/// listener port itself from 1024 up.
///
/// `None` when the sum would pass 65535, which happens only for an offset above
/// [`MAX_PORT_OFFSET`] (one that [`port_offset`] rejects); the sum never wraps or saturates onto
/// another listener's port.
pub fn bound_port(listener_port: u16, offset: u16) -> Option<u16> {
    if listener_port < FIRST_UNPRIVILEGED_PORT {
        listener_port.checked_add(offset)
    } else {
        Some(listener_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_ports_move_by_the_offset() {
        assert_eq!(bound_port(80, 10000), Some(10080));
        assert_eq!(bound_port(443, 10000), Some(10443));
        assert_eq!(bound_port(1, 0), Some(1));
        assert_eq!(bound_port(1023, 8000), Some(9023));
    }

    #[test]
    fn unprivileged_ports_are_bound_as_declared() {
        assert_eq!(bound_port(1024, 10000), Some(1024));
        assert_eq!(bound_port(8080, 10000), Some(8080));
        assert_eq!(bound_port(u16::MAX, MAX_PORT_OFFSET), Some(u16::MAX));
    }

    #[test]
    fn the_largest_valid_offset_maps_port_1023_to_65535() {
        assert_eq!(MAX_PORT_OFFSET, 64512);
        assert_eq!(bound_port(1023, MAX_PORT_OFFSET), Some(u16::MAX));
        assert_eq!(bound_port(1023, MAX_PORT_OFFSET + 1), None);
        assert_eq!(bound_port(80, u16::MAX), None);
    }

    #[test]
    fn offsets_are_checked_against_the_range_every_port_fits() {
        assert_eq!(port_offset(0), Ok(0));
        assert_eq!(port_offset(10000), Ok(10000));
        assert_eq!(port_offset(64512), Ok(MAX_PORT_OFFSET));
        assert_eq!(port_offset(-1), Err(PortOffsetError::Negative(-1)));
        assert_eq!(port_offset(64513), Err(PortOffsetError::TooLarge(64513)));
        assert_eq!(port_offset(70000), Err(PortOffsetError::TooLarge(70000)));
        assert_eq!(
            port_offset(64513).map_err(|e| e.to_string()),
            Err("port offset 64513 would move port 1023 past 65535 (use 0 to 64512)".to_string())
        );
    }
}
