//! `authorization`: allow or deny by client address range.

use std::net::IpAddr;

use gantry_translate::ir::{ActionIr, AuthorizationIr};

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    /// Leading bits that must match, counted on the 128-bit form (IPv4 mapped into IPv6).
    bits: u32,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or an address alone (one host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address range"))?;
        let (value, max, offset) = widen(addr);
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{text:?} has a bad prefix length"))?,
        };
        let bits = len + offset;
        Ok(Self {
            network: value & mask(bits),
            bits,
        })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let (value, _, _) = widen(address.to_canonical());
        value & mask(self.bits) == self.network
    }
}

/// The address as 128 bits (IPv4 as `::ffff:a.b.c.d`), its family's prefix length, and the
/// bits in front of it.
fn widen(address: IpAddr) -> (u128, u32, u32) {
    match address {
        IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 32, 96),
        IpAddr::V6(a) => (u128::from(a), 128, 0),
    }
}

fn mask(bits: u32) -> u128 {
    u128::MAX.checked_shl(128 - bits).unwrap_or(0)
}

#[derive(Debug)]
pub struct Authorization {
    default_allow: bool,
    rules: Vec<(bool, Vec<Cidr>)>,
}

impl Authorization {
    pub fn compile(ir: &AuthorizationIr) -> Result<Self, String> {
        let rules = ir
            .rules
            .iter()
            .map(|r| {
                let cidrs = r
                    .client_cidrs
                    .iter()
                    .map(|c| Cidr::parse(c))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((r.action == ActionIr::Allow, cidrs))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            default_allow: ir.default_action == ActionIr::Allow,
            rules,
        })
    }

    /// The first rule with a range holding `address` decides; else the default action.
    pub fn allows(&self, address: IpAddr) -> bool {
        self.rules
            .iter()
            .find(|(_, cidrs)| cidrs.iter().any(|c| c.contains(address)))
            .map_or(self.default_allow, |(allow, _)| *allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        // An IPv4 client seen on a dual-stack socket.
        assert!(c.contains(ip("::ffff:10.1.9.9")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.2.3")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(
            !Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("2001:db8::1"))
        );
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn first_matching_rule_decides() {
        let ir = AuthorizationIr {
            default_action: ActionIr::Allow,
            rules: vec![
                gantry_translate::ir::AuthorizationRuleIr {
                    name: None,
                    action: ActionIr::Allow,
                    client_cidrs: vec!["10.1.1.0/24".into()],
                },
                gantry_translate::ir::AuthorizationRuleIr {
                    name: None,
                    action: ActionIr::Deny,
                    client_cidrs: vec!["10.0.0.0/8".into()],
                },
            ],
        };
        let a = Authorization::compile(&ir).unwrap();
        assert!(a.allows(ip("10.1.1.5")));
        assert!(!a.allows(ip("10.2.0.1")));
        assert!(a.allows(ip("192.0.2.1")));
    }
}
