//! Client networks: the CIDR lists of `smtp.networks`,
//! `smtp.tls_exempt_networks` and an account's `networks` (issue 10).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// One network: an address and how many of its leading bits must match.
/// A bare address is a network of one address (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network's address, its host bits cleared.
    addr: IpAddr,
    /// How many leading bits a client address must share with `addr`.
    prefix: u8,
}

/// Why a network could not be read; the text names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a network like 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32: {reason}")]
pub struct NetworkError {
    /// What was given.
    value: String,
    /// What is wrong with it.
    reason: &'static str,
}

impl Network {
    /// Whether `ip` is in this network. An IPv4 client seen as an
    /// IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, a dual-stack listener)
    /// is matched as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `ip`, an IPv4-mapped IPv6 address turned back into IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(value: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => value & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask128(value: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => value & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Network, NetworkError> {
        let error = |reason| NetworkError {
            value: s.to_owned(),
            reason,
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| error("not an IP address"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| error("the prefix length is out of range"))?,
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask32(u32::from(a), prefix).into()),
            IpAddr::V6(a) => IpAddr::V6(mask128(u128::from(a), prefix).into()),
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A list of networks; a client is in it when it is in any of them. An
/// empty list holds nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Networks(pub Vec<Network>);

impl Networks {
    /// The loopback networks (`127.0.0.0/8`, `::1`).
    pub fn loopback() -> Networks {
        Networks(vec![
            "127.0.0.0/8".parse().expect("a valid network"),
            "::1".parse().expect("a valid network"),
        ])
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for n in &self.0 {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_and_bare_addresses_match_what_they_cover() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        let one: Network = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("::1")));
    }

    #[test]
    fn host_bits_are_cleared_and_mapped_ipv4_is_ipv4() {
        let n: Network = "10.1.2.3/8".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains(ip("::ffff:10.9.9.9")));
        assert!(Networks::loopback().contains(ip("127.0.0.1")));
        assert!(Networks::loopback().contains(ip("::1")));
        assert!(!Networks::loopback().contains(ip("192.0.2.1")));
        assert!(!Networks::default().contains(ip("127.0.0.1")));
    }

    #[test]
    fn bad_networks_are_named() {
        for bad in ["10.0.0.0/33", "nowhere", "::/129", "10.0.0.0/x", ""] {
            let e = bad.parse::<Network>().unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        let list: Result<Networks, _> =
            toml::from_str::<toml::Value>("n = [\"10.0.0.0/8\", \"bad\"]")
                .unwrap()
                .get("n")
                .unwrap()
                .clone()
                .try_into();
        assert!(list.unwrap_err().to_string().contains("`bad`"));
    }
}
