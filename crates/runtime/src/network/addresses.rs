//! Which address the next pod on Skiff's own network gets, decided here
//! and requested from host-local (`CNI_ARGS` `IP=`), which still records
//! and checks every reservation in its data directory.
//!
//! Why: asked for any free address, host-local first looks for an earlier
//! reservation of the same container by reading every reservation file of
//! the network (`GetByID`), so each pod start costs one file read per pod
//! already on the node (measured: an ADD takes 4 ms with none, 12.6 ms with
//! 1,050). Asked for a given address it only creates that one file, with
//! `O_EXCL`, so a wrong guess here is refused, never doubly given.
//!
//! Addresses go round-robin from the last one reserved, as host-local's own
//! allocator does, so a freed address is not handed out again at once.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

/// The free and reserved addresses of one IPv4 pod CIDR.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// The first and last address handed out (host-local's defaults: the
    /// network address plus two, the gateway being plus one; the address
    /// before the broadcast one).
    first: u32,
    last: u32,
    /// Every reserved address, whoever holds it.
    reserved: HashSet<u32>,
    /// Sandbox → its address, for the reservations this agent knows the
    /// holder of.
    by_sandbox: HashMap<String, u32>,
    /// The address last handed out: the search starts after it.
    cursor: u32,
}

impl Addresses {
    /// The addresses of `cidr` (`10.42.0.0/24`); `None` for anything but
    /// an IPv4 CIDR with room for a gateway and a pod.
    pub fn new(cidr: &str) -> Option<Self> {
        let (network, prefix) = cidr.split_once('/')?;
        let network: Ipv4Addr = network.parse().ok()?;
        let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 30)?;
        let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let network = u32::from(network) & mask;
        let broadcast = network | !mask;
        let (first, last) = (network + 2, broadcast - 1);
        Some(Self { first, last, reserved: HashSet::new(), by_sandbox: HashMap::new(), cursor: last })
    }

    /// The addresses of `cidr` with what host-local's data directory of the
    /// network (`dir`) already holds reserved (pods adopted after a
    /// restart keep theirs), the search resuming where host-local's was.
    pub fn resumed(cidr: &str, dir: &Path) -> Option<Self> {
        let mut addresses = Self::new(cidr)?;
        let (reserved, last) = read_host_local(dir);
        for (ip, sandbox) in reserved {
            addresses.reserve(ip, &sandbox);
        }
        if let Some(last) = last {
            addresses.resume_after(last);
        }
        Some(addresses)
    }

    fn contains(&self, ip: u32) -> bool {
        (self.first..=self.last).contains(&ip)
    }

    /// Notes a reservation made earlier (read back from host-local's data
    /// directory, or the address a pod got without asking); `sandbox` is
    /// empty when the holder is not known.
    pub fn reserve(&mut self, ip: Ipv4Addr, sandbox: &str) {
        let ip = u32::from(ip);
        if !self.contains(ip) {
            return;
        }
        self.reserved.insert(ip);
        if !sandbox.is_empty() {
            self.by_sandbox.insert(sandbox.to_string(), ip);
        }
    }

    /// Continues after `ip` (host-local's `last_reserved_ip`).
    pub fn resume_after(&mut self, ip: Ipv4Addr) {
        if self.contains(u32::from(ip)) {
            self.cursor = u32::from(ip);
        }
    }

    /// The next free address after the last one handed out, reserved for
    /// `sandbox` at once so that concurrent starts get different ones;
    /// `None` when every address is taken.
    pub fn pick(&mut self, sandbox: &str) -> Option<Ipv4Addr> {
        let size = self.last - self.first + 1;
        let start = if self.cursor >= self.last { self.first } else { self.cursor + 1 };
        let ip = (0..size)
            .map(|step| self.first + (start - self.first + step) % size)
            .find(|ip| !self.reserved.contains(ip))?;
        self.cursor = ip;
        self.reserve(Ipv4Addr::from(ip), sandbox);
        Some(Ipv4Addr::from(ip))
    }

    /// host-local refused `sandbox`'s address: someone else holds it, so
    /// it stays reserved, no longer as the sandbox's.
    pub fn taken_by_another(&mut self, sandbox: &str) {
        self.by_sandbox.remove(sandbox);
    }

    /// Frees the address of `sandbox` (its network is gone).
    pub fn release(&mut self, sandbox: &str) {
        if let Some(ip) = self.by_sandbox.remove(sandbox) {
            self.reserved.remove(&ip);
        }
    }

    /// The address reserved for `sandbox`.
    #[cfg(test)]
    fn of(&self, sandbox: &str) -> Option<Ipv4Addr> {
        self.by_sandbox.get(sandbox).map(|ip| Ipv4Addr::from(*ip))
    }
}

/// What host-local's data directory of one network (`<dataDir>/<name>`)
/// holds: a file per reserved address, named by it, whose first line is
/// the container (sandbox) ID; and `last_reserved_ip.<range set>`.
fn read_host_local(dir: &Path) -> (Vec<(Ipv4Addr, String)>, Option<Ipv4Addr>) {
    let mut reserved = Vec::new();
    let mut last = None;
    for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("last_reserved_ip.") {
            last = std::fs::read_to_string(entry.path()).ok().and_then(|t| t.trim().parse().ok());
        } else if let Ok(ip) = name.parse::<Ipv4Addr>() {
            let holder = std::fs::read_to_string(entry.path()).unwrap_or_default();
            reserved.push((ip, holder.lines().next().unwrap_or("").trim().to_string()));
        }
    }
    (reserved, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    #[test]
    fn only_ipv4_cidrs_with_room_for_a_pod() {
        for (cidr, ok) in [("10.42.0.0/24", true), ("10.42.0.0/30", true), ("10.42.0.0/31", false), ("fd00::/64", false), ("10.42.0.0", false), ("x/24", false)] {
            assert_eq!(Addresses::new(cidr).is_some(), ok, "{cidr}");
        }
    }

    #[test]
    fn addresses_go_round_robin_skipping_network_gateway_and_broadcast() {
        let Some(mut addresses) = Addresses::new("10.42.0.0/29") else { panic!("valid cidr") };
        let picked: Vec<_> = ["a", "b", "c", "d", "e", "f"].iter().map(|s| addresses.pick(s)).collect();
        let want = ["10.42.0.2", "10.42.0.3", "10.42.0.4", "10.42.0.5", "10.42.0.6"];
        assert_eq!(picked[..5], want.map(|w| Some(ip(w))));
        assert_eq!(picked[5], None, "full");
        // A freed address comes back only when the search wraps round to it.
        addresses.release("b");
        addresses.release("d");
        assert_eq!(addresses.pick("g"), Some(ip("10.42.0.3")));
        assert_eq!(addresses.pick("h"), Some(ip("10.42.0.5")));
        assert_eq!(addresses.of("h"), Some(ip("10.42.0.5")));
        assert_eq!(addresses.of("b"), None);
    }

    #[test]
    fn reservations_read_back_are_skipped_and_the_search_resumes() {
        let Some(mut addresses) = Addresses::new("10.42.0.0/24") else { panic!("valid cidr") };
        addresses.reserve(ip("10.42.0.9"), "old");
        addresses.reserve(ip("10.42.1.9"), "elsewhere");
        addresses.resume_after(ip("10.42.0.8"));
        assert_eq!(addresses.pick("new"), Some(ip("10.42.0.10")));
        // host-local refused one: it stays taken, the sandbox asks again.
        addresses.taken_by_another("new");
        assert_eq!(addresses.of("new"), None);
        assert_eq!(addresses.pick("new"), Some(ip("10.42.0.11")));
        addresses.release("old");
        addresses.resume_after(ip("10.42.0.8"));
        assert_eq!(addresses.pick("next"), Some(ip("10.42.0.9")));
    }

    #[test]
    fn host_local_state_is_read_back() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("10.42.0.7"), "sandbox-a\neth0")?;
        std::fs::write(dir.path().join("10.42.0.8"), "sandbox-b")?;
        std::fs::write(dir.path().join("last_reserved_ip.0"), "10.42.0.8")?;
        std::fs::write(dir.path().join("lock"), "")?;
        let (mut reserved, last) = read_host_local(dir.path());
        reserved.sort();
        assert_eq!(reserved, [(ip("10.42.0.7"), "sandbox-a".to_string()), (ip("10.42.0.8"), "sandbox-b".to_string())]);
        assert_eq!(last, Some(ip("10.42.0.8")));
        assert_eq!(read_host_local(&dir.path().join("missing")), (vec![], None));
        // Both reserved, the search resuming after host-local's last one.
        let Some(mut addresses) = Addresses::resumed("10.42.0.0/24", dir.path()) else { panic!("valid cidr") };
        assert_eq!(addresses.of("sandbox-a"), Some(ip("10.42.0.7")));
        assert_eq!(addresses.pick("new"), Some(ip("10.42.0.9")));
        Ok(())
    }
}
