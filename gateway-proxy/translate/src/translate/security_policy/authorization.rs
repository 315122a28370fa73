//! `authorization`: allow or deny by client address range.

use std::net::IpAddr;

use gantry_crds::security::{Authorization, AuthorizationAction};

use crate::ir::{ActionIr, AuthorizationIr, AuthorizationRuleIr};

pub fn validate(auth: &Authorization) -> Result<AuthorizationIr, Vec<String>> {
    let mut problems = Vec::new();
    let rules = auth
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| AuthorizationRuleIr {
            name: r.name.clone(),
            action: action(r.action),
            client_cidrs: r
                .principal
                .client_cidrs
                .iter()
                .filter_map(|c| match normalise_cidr(c) {
                    Ok(c) => Some(c),
                    Err(m) => {
                        problems.push(format!("authorization.rules[{i}]: {m}"));
                        None
                    }
                })
                .collect(),
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(AuthorizationIr {
        default_action: action(auth.default_action.unwrap_or_default()),
        rules,
    })
}

fn action(a: AuthorizationAction) -> ActionIr {
    match a {
        AuthorizationAction::Allow => ActionIr::Allow,
        AuthorizationAction::Deny => ActionIr::Deny,
    }
}

/// `10.1.2.3/8` → `10.0.0.0/8`; an address alone is a host range (`/32`, `/128`).
pub fn normalise_cidr(text: &str) -> Result<String, String> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address range (CIDR)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        None => max,
        Some(l) => l
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{text:?} has a prefix length beyond /{max}"))?,
    };
    let network = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    };
    Ok(format!("{network}/{len}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_ranges() {
        assert_eq!(normalise_cidr("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(normalise_cidr("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(normalise_cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(normalise_cidr("2001:db8::1/32").unwrap(), "2001:db8::/32");
        assert!(normalise_cidr("10.0.0.0/33").is_err());
        assert!(normalise_cidr("ten/8").is_err());
    }
}
