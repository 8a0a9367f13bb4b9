//! The SSRF guard: which addresses a push may be sent to.
//!
//! Endpoints are registered by operators but their host names resolve
//! wherever DNS says, so every delivery checks every address a host resolves
//! to, and the connection is then pinned to exactly those addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use reqwest::Url;

/// The environment variable operators list exceptions in; messages name it
/// so that a refusal says how to lift it.
pub const ALLOW_VAR: &str = "CONVEYOR_OUTBOUND_ALLOW";

/// Addresses cloud providers serve instance credentials on.
const METADATA: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)), // AWS, GCP, Azure, most others
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)), // AWS over IPv6
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)), // Alibaba Cloud
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),   // Azure WireServer, in public space
];

/// Why an address is not one a push may reach without being listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressClass {
    Public,
    Metadata,
    Loopback,
    Unspecified,
    Private,
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    /// 0.0.0.0/8.
    ThisNetwork,
    Broadcast,
    Multicast,
    Documentation,
    Benchmarking,
    /// 192.0.0.0/24 and 2001::/23.
    ProtocolAssignment,
    /// IPv6 fc00::/7.
    UniqueLocal,
    /// 240.0.0.0/4 and IPv6 outside 2000::/3 or otherwise set aside.
    Reserved,
}

impl AddressClass {
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "a public address",
            AddressClass::Metadata => "a cloud metadata address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Shared => "a carrier-grade NAT address",
            AddressClass::ThisNetwork => "a \"this network\" address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Documentation => "a documentation address",
            AddressClass::Benchmarking => "a benchmarking address",
            AddressClass::ProtocolAssignment => "an IETF protocol assignment address",
            AddressClass::UniqueLocal => "a unique-local address",
            AddressClass::Reserved => "a reserved address",
        })
    }
}

/// What kind of address `ip` is, after looking through the IPv6 forms that
/// carry an IPv4 address (mapped, NAT64, 6to4): those reach the IPv4 one.
pub fn classify(ip: IpAddr) -> AddressClass {
    if METADATA.contains(&ip) {
        return AddressClass::Metadata;
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    if METADATA.contains(&IpAddr::V4(ip)) {
        return Metadata;
    }
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_broadcast() => Broadcast,
        (0, _, _) => ThisNetwork,
        (10, _, _) => Private,
        (100, 64..=127, _) => Shared,
        (127, _, _) => Loopback,
        (169, 254, _) => LinkLocal,
        (172, 16..=31, _) => Private,
        (192, 0, 0) => ProtocolAssignment,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Documentation,
        (192, 168, _) => Private,
        (198, 18..=19, _) => Benchmarking,
        (224..=239, _, _) => Multicast,
        (240..=255, _, _) => Reserved,
        _ => Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    if METADATA.contains(&IpAddr::V6(ip)) {
        return Metadata;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    match s {
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_loopback() => Loopback,
        // ::/96, the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, _, _] => Reserved,
        // 64:ff9b:1::/48, NAT64 for local use.
        [0x64, 0xff9b, 1, ..] => Private,
        // 100::/64, discard only.
        [0x100, 0, 0, 0, ..] => Reserved,
        [0x2001, 0xdb8, ..] => Documentation,
        [0x3fff, b, ..] if b < 0x1000 => Documentation,
        [0x2001, b, ..] if b < 0x200 => ProtocolAssignment,
        [a, ..] if a & 0xfe00 == 0xfc00 => UniqueLocal,
        [a, ..] if a & 0xffc0 == 0xfe80 => LinkLocal,
        // fec0::/10, the deprecated site-local range.
        [a, ..] if a & 0xffc0 == 0xfec0 => Private,
        [a, ..] if a & 0xff00 == 0xff00 => Multicast,
        // Only 2000::/3 is handed out as global unicast.
        [a, ..] if a & 0xe000 != 0x2000 => Reserved,
        _ => Public,
    }
}

/// The IPv4 address an IPv6 one delivers to: IPv4-mapped (::ffff:0:0/96),
/// NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let join = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(join(hi, lo)),
        [0x2002, hi, lo, ..] => Some(join(hi, lo)),
        _ => None,
    }
}

/// The addresses and host names an operator allows beyond the public
/// internet. The default allows nothing extra.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

/// A `CONVEYOR_OUTBOUND_ALLOW` entry that is neither a host name, an IP
/// address nor a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ALLOW_VAR} entry {entry:?} {reason}")]
pub struct PolicyError {
    pub entry: String,
    pub reason: String,
}

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the endpoint URL scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("the endpoint URL carries a user name or password, which is not sent")]
    UserInfo,
    #[error("the endpoint URL has no host")]
    NoHost,
    #[error("{}", address_message(host.as_deref(), *addr, *class))]
    Address {
        /// The host name that resolved to `addr`; `None` for an IP literal.
        host: Option<String>,
        addr: IpAddr,
        class: AddressClass,
    },
}

fn address_message(host: Option<&str>, addr: IpAddr, class: AddressClass) -> String {
    let via = match addr {
        IpAddr::V6(v6) => embedded_v4(v6)
            .map(|v4| format!(" (it reaches {v4})"))
            .unwrap_or_default(),
        IpAddr::V4(_) => String::new(),
    };
    match host {
        Some(host) => format!(
            "{host} resolves to {addr}, {class}{via}; list the host or the address in {ALLOW_VAR} to allow it"
        ),
        None => format!("{addr} is {class}{via}; list it in {ALLOW_VAR} to allow it"),
    }
}

/// Why [`OutboundPolicy::resolve`] gave no addresses.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy forbids the call; trying again cannot help.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The host name did not resolve; DNS may answer next time.
    #[error("{host} could not be resolved: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

impl OutboundPolicy {
    /// Reads the `CONVEYOR_OUTBOUND_ALLOW` list: comma-separated host names
    /// (exact, case-insensitive), IP addresses and CIDRs.
    pub fn parse(list: &str) -> Result<OutboundPolicy, PolicyError> {
        let mut policy = OutboundPolicy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |reason: &str| PolicyError {
                entry: entry.to_string(),
                reason: reason.to_string(),
            };
            if entry.contains("://") {
                return Err(bad(
                    "is a URL; list the host name alone, with no scheme or port",
                ));
            } else if entry.contains('/') {
                let net: IpNet = entry
                    .parse()
                    .map_err(|_| bad("is not a valid CIDR (like 10.0.0.0/8 or fd00::/8)"))?;
                policy.nets.push(net.trunc());
            } else if let Some(ip) = parse_ip(entry) {
                policy.nets.push(IpNet::from(ip));
            } else if entry.contains('*') {
                return Err(bad("has a wildcard; list exact host names"));
            } else if entry.contains(':') {
                return Err(bad(
                    "is not an IP address, and host names are listed without a port",
                ));
            } else if is_host_name(entry) {
                policy.hosts.push(normalize_host(entry));
            } else {
                return Err(bad("is not a host name, an IP address or a CIDR"));
            }
        }
        Ok(policy)
    }

    /// The addresses `url` may be called on: its host's, each checked.
    ///
    /// Refused when the scheme is not http(s), the URL has user info, or any
    /// address the host resolves to is not public, unless the host name is
    /// listed or the address lies in a listed range. One bad address refuses
    /// them all: otherwise which one gets connected to would decide.
    pub async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, ResolveError> {
        let (host, port) = self.check_url(url)?;
        let (name, addrs) = match host {
            Target::Ip(ip) => (None, vec![SocketAddr::new(ip, port)]),
            Target::Name(name) => {
                let lookup = |source| ResolveError::Lookup {
                    host: name.to_string(),
                    source,
                };
                let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(lookup)?
                    .collect();
                if addrs.is_empty() {
                    return Err(lookup(std::io::Error::other("no addresses")));
                }
                let mut seen = std::collections::HashSet::new();
                addrs.retain(|a| seen.insert(*a));
                (Some(name), addrs)
            }
        };
        for addr in &addrs {
            self.check_address(name, addr.ip())?;
        }
        Ok(addrs)
    }

    fn check_url<'u>(&self, url: &'u Url) -> Result<(Target<'u>, u16), Refused> {
        let port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            other => return Err(Refused::Scheme(other.to_string())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::UserInfo);
        }
        // The URL parser has already turned every IPv4 spelling (decimal,
        // hex, octal) into dotted form, so what does not parse is a name.
        let target = match url.host_str() {
            None | Some("") => return Err(Refused::NoHost),
            Some(host) => parse_ip(host).map_or(Target::Name(host), Target::Ip),
        };
        Ok((target, url.port().unwrap_or(port)))
    }

    fn check_address(&self, host: Option<&str>, ip: IpAddr) -> Result<(), Refused> {
        let class = classify(ip);
        if class.is_public() || self.allows(host, ip, class) {
            return Ok(());
        }
        Err(Refused::Address {
            host: host.map(str::to_string),
            addr: ip,
            class,
        })
    }

    fn allows(&self, host: Option<&str>, ip: IpAddr, class: AddressClass) -> bool {
        if let Some(host) = host
            && self.hosts.contains(&normalize_host(host))
        {
            return true;
        }
        let as_v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.nets.iter().any(|net| {
            // Credentials are worth more than a range: a wide entry such as
            // 169.254.0.0/16 or 0.0.0.0/0 does not unlock a metadata address,
            // only an entry for that very address does.
            let may_cover =
                class != AddressClass::Metadata || net.prefix_len() == net.max_prefix_len();
            may_cover && (net.contains(&ip) || as_v4.is_some_and(|v4| net.contains(&v4)))
        })
    }
}

enum Target<'u> {
    Ip(IpAddr),
    Name(&'u str),
}

/// The URL's host when it is a name, not an IP literal.
pub(crate) fn host_name(url: &Url) -> Option<&str> {
    url.host_str().filter(|host| parse_ip(host).is_none())
}

fn parse_ip(entry: &str) -> Option<IpAddr> {
    let bare = entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(entry);
    bare.parse().ok()
}

fn is_host_name(entry: &str) -> bool {
    let name = entry.strip_suffix('.').unwrap_or(entry);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `Hooks.Internal.` and `hooks.internal` name the same host.
fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn classifies_every_special_range() {
        let table = [
            // IPv4
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", ThisNetwork),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.63.255.255", Public),
            ("100.64.0.1", Shared),
            ("100.127.255.255", Shared),
            ("100.128.0.0", Public),
            ("100.100.100.200", Metadata),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("168.63.129.16", Metadata),
            ("172.15.255.255", Public),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.0", Public),
            ("192.0.0.8", ProtocolAssignment),
            ("192.0.1.1", Public),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", Public),
            ("192.168.1.1", Private),
            ("198.17.255.255", Public),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.20.0.0", Public),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("93.184.216.34", Public),
            // IPv6
            ("::", Unspecified),
            ("::1", Loopback),
            ("::7f00:1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:8.8.8.8", Public),
            ("64:ff9b::a00:1", Private),
            ("64:ff9b::169.254.169.254", Metadata),
            ("64:ff9b::8.8.8.8", Public),
            ("64:ff9b:1::1", Private),
            ("100::1", Reserved),
            ("2001::1", ProtocolAssignment),
            ("2001:1ff::1", ProtocolAssignment),
            ("2001:db8::1", Documentation),
            ("2001:db8:ffff::1", Documentation),
            ("3fff::1", Documentation),
            ("2002:7f00:1::1", Loopback),
            ("2002:808:808::1", Public),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", Metadata),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("4000::1", Reserved),
            ("2606:4700:4700::1111", Public),
            ("2a00:1450:4001::1", Public),
        ];
        for (text, class) in table {
            assert_eq!(classify(ip(text)), class, "{text}");
        }
    }

    #[test]
    fn parses_the_allow_list() {
        let policy = OutboundPolicy::parse(
            " localhost, Hooks.Internal. ,127.0.0.1/32,10.1.2.3/8, ::1/128 ,192.168.5.5,[fd00::1],,",
        )
        .unwrap();
        assert_eq!(policy.hosts, ["localhost", "hooks.internal"]);
        let nets: Vec<String> = policy.nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            nets,
            [
                "127.0.0.1/32",
                "10.0.0.0/8",
                "::1/128",
                "192.168.5.5/32",
                "fd00::1/128"
            ]
        );
        assert!(OutboundPolicy::parse("").unwrap().hosts.is_empty());
        assert!(OutboundPolicy::parse(" , ").unwrap().nets.is_empty());
    }

    #[test]
    fn policy_errors_name_the_bad_entry() {
        for (list, entry, says) in [
            ("localhost,10.0.0.0/33", "10.0.0.0/33", "not a valid CIDR"),
            ("example.com/8", "example.com/8", "not a valid CIDR"),
            ("*.internal", "*.internal", "wildcard"),
            ("http://hooks.internal", "http://hooks.internal", "is a URL"),
            (
                "hooks.internal:8080",
                "hooks.internal:8080",
                "without a port",
            ),
            ("hooks internal", "hooks internal", "not a host name"),
            ("a..b", "a..b", "not a host name"),
        ] {
            let err = OutboundPolicy::parse(list).unwrap_err();
            assert_eq!(err.entry, entry, "{list}");
            let text = err.to_string();
            assert!(text.contains(&format!("{entry:?}")), "{text}");
            assert!(text.contains(says), "{text}");
            assert!(text.starts_with("CONVEYOR_OUTBOUND_ALLOW entry"), "{text}");
        }
    }

    fn refused(result: Result<Vec<SocketAddr>, ResolveError>) -> Refused {
        match result {
            Err(ResolveError::Refused(refused)) => refused,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[tokio::test]
    async fn loopback_is_refused_by_default() {
        let err = refused(
            OutboundPolicy::default()
                .resolve(&url("http://127.0.0.1:1/"))
                .await,
        );
        assert_eq!(
            err.to_string(),
            "127.0.0.1 is a loopback address; list it in CONVEYOR_OUTBOUND_ALLOW to allow it"
        );
        // Spellings the URL parser normalises to the same address.
        for other in [
            "http://2130706433:1/",
            "http://0x7f.1:1/",
            "http://[::ffff:127.0.0.1]:1/",
        ] {
            let err = refused(OutboundPolicy::default().resolve(&url(other)).await);
            assert!(err.to_string().contains("loopback"), "{other}: {err}");
        }
    }

    #[tokio::test]
    async fn listed_cidr_allows_the_literal() {
        let policy = OutboundPolicy::parse("127.0.0.1/32").unwrap();
        let addrs = policy.resolve(&url("http://127.0.0.1:1/")).await.unwrap();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 1))]);
        // Only that address: the rest of 127/8 stays refused.
        let err = refused(policy.resolve(&url("http://127.0.0.2:1/")).await);
        assert!(
            err.to_string().starts_with("127.0.0.2 is a loopback"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn listed_host_allows_what_it_resolves_to() {
        let err = refused(
            OutboundPolicy::default()
                .resolve(&url("http://localhost:1/"))
                .await,
        );
        let text = err.to_string();
        assert!(
            text.starts_with("localhost resolves to ") && text.contains("loopback"),
            "{text}"
        );
        assert!(text.contains("list the host or the address"), "{text}");

        let policy = OutboundPolicy::parse("LocalHost").unwrap();
        let addrs = policy.resolve(&url("http://localhost:1/")).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 1),
            "{addrs:?}"
        );
        // Listing the host does not list its addresses for other names.
        let err = refused(policy.resolve(&url("http://127.0.0.1:1/")).await);
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[tokio::test]
    async fn metadata_needs_an_entry_of_its_own() {
        let wide = OutboundPolicy::parse("169.254.0.0/16,0.0.0.0/0").unwrap();
        let err = refused(
            wide.resolve(&url("http://169.254.169.254/latest/meta-data/"))
                .await,
        );
        assert_eq!(
            err.to_string(),
            "169.254.169.254 is a cloud metadata address; list it in CONVEYOR_OUTBOUND_ALLOW to allow it"
        );
        assert!(wide.resolve(&url("http://169.254.1.1/")).await.is_ok());
        let exact = OutboundPolicy::parse("169.254.169.254").unwrap();
        assert!(exact.resolve(&url("http://169.254.169.254/")).await.is_ok());

        let err = refused(
            OutboundPolicy::default()
                .resolve(&url("http://[fd00:ec2::254]/"))
                .await,
        );
        assert!(
            err.to_string()
                .starts_with("fd00:ec2::254 is a cloud metadata address"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn embedded_ipv4_is_named_and_matched_by_v4_ranges() {
        let err = refused(
            OutboundPolicy::default()
                .resolve(&url("http://[64:ff9b::10.0.0.1]/"))
                .await,
        );
        assert_eq!(
            err.to_string(),
            "64:ff9b::a00:1 is a private address (it reaches 10.0.0.1); list it in CONVEYOR_OUTBOUND_ALLOW to allow it"
        );
        let policy = OutboundPolicy::parse("10.0.0.0/8").unwrap();
        assert!(
            policy
                .resolve(&url("http://[::ffff:10.0.0.1]/"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn refuses_other_schemes_user_info_and_hostless_urls() {
        let policy = OutboundPolicy::parse("0.0.0.0/0,::/0,localhost").unwrap();
        for (text, expected) in [
            ("ftp://8.8.8.8/", Refused::Scheme("ftp".into())),
            ("file:///etc/passwd", Refused::Scheme("file".into())),
            ("unix:/run/docker.sock", Refused::Scheme("unix".into())),
            ("http://user:pw@8.8.8.8/", Refused::UserInfo),
            ("https://user@localhost/", Refused::UserInfo),
        ] {
            assert_eq!(
                refused(policy.resolve(&url(text)).await),
                expected,
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn public_addresses_need_no_entry_and_keep_the_port() {
        let policy = OutboundPolicy::default();
        assert_eq!(
            policy.resolve(&url("https://8.8.8.8/hook")).await.unwrap(),
            [SocketAddr::from(([8, 8, 8, 8], 443))]
        );
        assert_eq!(
            policy
                .resolve(&url("http://[2606:4700:4700::1111]:8080/"))
                .await
                .unwrap(),
            [SocketAddr::new(ip("2606:4700:4700::1111"), 8080)]
        );
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_a_lookup_error() {
        let result = OutboundPolicy::default()
            .resolve(&url("http://no-such-host.invalid/"))
            .await;
        match result {
            Err(ResolveError::Lookup { host, .. }) => assert_eq!(host, "no-such-host.invalid"),
            other => panic!("expected a lookup error, got {other:?}"),
        }
    }
}
