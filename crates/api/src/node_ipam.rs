//! Pod CIDRs for nodes, as kube-controller-manager's node IPAM range
//! allocator hands them out (`--allocate-node-cidrs`, `--cluster-cidr`,
//! `--node-cidr-mask-size` 24 for IPv4): each node gets the first /24 of
//! the cluster CIDR no other node holds.

use std::net::Ipv4Addr;

/// upstream's `--node-cidr-mask-size` default for IPv4.
pub const NODE_MASK: u8 = 24;

/// An IPv4 network: its first address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (host bits are cleared, as Go's ParseCIDR does).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid CIDR address: {text}");
        let (address, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(invalid)?;
        let base = u32::from(address) & Self::mask(prefix);
        Ok(Self { base, prefix })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    fn last(&self) -> u32 {
        self.base | !Self::mask(self.prefix)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The first node CIDR inside `cluster` that overlaps none of `taken`
/// (other nodes' `spec.podCIDR`s; unparsable ones are ignored), or `None`
/// when the cluster CIDR is used up.
pub fn next_free(cluster: &Cidr, taken: &[&str]) -> Option<Cidr> {
    let taken: Vec<Cidr> = taken.iter().filter_map(|t| Cidr::parse(t).ok()).collect();
    let prefix = cluster.prefix.max(NODE_MASK);
    let step = 1u64 << (32 - u32::from(prefix));
    let mut base = u64::from(cluster.base);
    while base <= u64::from(cluster.last()) {
        let candidate = Cidr { base: u32::try_from(base).ok()?, prefix };
        if !taken.iter().any(|t| t.overlaps(&candidate)) {
            return Some(candidate);
        }
        base += step;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_the_first_free_slash_24() -> Result<(), String> {
        let cluster = Cidr::parse("10.42.0.0/16")?;
        let cases: [(&[&str], Option<&str>); 5] = [
            (&[], Some("10.42.0.0/24")),
            (&["10.42.0.0/24"], Some("10.42.1.0/24")),
            (&["10.42.1.0/24"], Some("10.42.0.0/24")),
            (&["10.42.0.0/23", "garbage"], Some("10.42.2.0/24")),
            (&["10.42.0.0/16"], None),
        ];
        for (taken, want) in cases {
            assert_eq!(next_free(&cluster, taken).map(|c| c.to_string()).as_deref(), want, "{taken:?}");
        }
        let small = Cidr::parse("192.168.5.0/25")?;
        assert_eq!(next_free(&small, &[]).map(|c| c.to_string()).as_deref(), Some("192.168.5.0/25"));
        assert_eq!(next_free(&small, &["192.168.5.0/25"]), None);
        Ok(())
    }

    #[test]
    fn cidrs_parse_as_go_does() {
        assert_eq!(Cidr::parse("10.42.3.7/24").map(|c| c.to_string()), Ok("10.42.3.0/24".to_string()));
        for bad in ["10.42.0.0", "10.42.0.0/33", "fd00::/64", "x/8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
