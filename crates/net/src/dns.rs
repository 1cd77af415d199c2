//! The embedded DNS server of user-defined networks (hickory-server).
//!
//! One server per user network, listening (UDP and TCP) on the network's gateway address, port
//! 53; containers on the network get it as their only `nameserver`. It answers for the names
//! of that network's containers (names, aliases, short IDs; `A` and reverse `PTR`) and
//! forwards every other question, unchanged, to upstream resolvers: the querying container's
//! own `--dns` servers if it has some, otherwise the host's. Forwarding happens from the host's
//! namespace, so host resolvers on loopback (systemd-resolved, dnsmasq) work.
//!
//! A name that exists here but has no record of the asked type gets an empty `NOERROR` answer
//! (as Docker's resolver does for `AAAA`), so resolvers don't go on to search domains.
//!
//! Only the network's own containers are answered (dockerd gets the same by answering at
//! 127.0.0.11 inside each container's namespace): the sockets are bound to the network's
//! bridge (`SO_BINDTODEVICE`), so a question sent to the gateway address from the host itself or
//! from another bridge never reaches them, and a question whose source address is not a
//! container of the network is refused. A container cannot spoof a neighbour's address to get
//! past the second check: the answer would go to the neighbour.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, PTR};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time to live of our own answers (as Docker's: containers come and go).
const TTL: u32 = 600;
/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// Every user network's names and who asks from where; shared between the engine (which
/// replaces it whenever containers come, go, connect or disconnect) and the servers.
///
/// A question is answered from the networks of the container that asks (found by the network
/// the server serves and the source address), so a container connected to two networks
/// resolves the names of both, whichever server it asks.
#[derive(Clone, Default, Debug)]
pub struct Directory {
    inner: Arc<RwLock<Tables>>,
}

#[derive(Default, Debug)]
struct Tables {
    nets: HashMap<String, NetTable>,
    clients: HashMap<(String, Ipv4Addr), Client>,
}

#[derive(Default, Debug)]
struct NetTable {
    names: HashMap<String, Vec<Ipv4Addr>>,
    reverse: HashMap<Ipv4Addr, String>,
    upstreams: Vec<SocketAddr>,
}

/// One container on a network, as DNS sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ip: Ipv4Addr,
    /// The first name is the one reverse lookups return.
    pub names: Vec<String>,
}

/// One network's records.
#[derive(Debug, Clone, Default)]
pub struct NetworkZone {
    pub entries: Vec<Entry>,
    /// Where other names go (empty: nowhere, SERVFAIL — internal networks).
    pub upstreams: Vec<SocketAddr>,
}

/// A container that asks: on network `.0` from address `.1`.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// Every network of the container (their names resolve), in order.
    pub networks: Vec<String>,
    /// The container's own `--dns` servers; `None`: the network's upstreams.
    pub upstreams: Option<Vec<SocketAddr>>,
    /// Its hostname, which resolves (for it) to its own address.
    pub hostname: Option<String>,
    /// Its legacy links on this network (`--link target:alias` with a user network): the
    /// alias resolves, for it alone, to what the target's name resolves to.
    pub links: HashMap<String, String>,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Directory {
    /// Replaces everything.
    pub fn replace(&self, zones: HashMap<String, NetworkZone>, clients: HashMap<(String, Ipv4Addr), Client>) {
        let mut t = Tables { nets: HashMap::new(), clients };
        for (id, z) in zones {
            let mut n = NetTable { upstreams: z.upstreams, ..Default::default() };
            for e in &z.entries {
                for name in &e.names {
                    let key = normalize(name);
                    if key.is_empty() {
                        continue;
                    }
                    let ips = n.names.entry(key).or_default();
                    if !ips.contains(&e.ip) {
                        ips.push(e.ip);
                    }
                }
                if let Some(first) = e.names.first() {
                    n.reverse.entry(e.ip).or_insert_with(|| normalize(first));
                }
            }
            t.nets.insert(id, n);
        }
        *self.inner.write().expect("dns lock") = t;
    }

    /// Whether `client` is a container on `net` (the only ones a network's server answers).
    pub fn knows(&self, net: &str, client: IpAddr) -> bool {
        let IpAddr::V4(v4) = client else { return false };
        self.inner.read().expect("dns lock").clients.contains_key(&(net.to_string(), v4))
    }

    /// The networks whose names a client sees (none for a stranger).
    fn scope(t: &Tables, net: &str, client: IpAddr) -> Vec<String> {
        if let IpAddr::V4(v4) = client
            && let Some(c) = t.clients.get(&(net.to_string(), v4))
        {
            return c.networks.clone();
        }
        Vec::new()
    }

    /// Addresses of a name for a client asking on `net`; `None` if the name is not ours.
    pub fn lookup(&self, net: &str, client: IpAddr, name: &str) -> Option<Vec<Ipv4Addr>> {
        let t = self.inner.read().expect("dns lock");
        let key = normalize(name);
        if let IpAddr::V4(v4) = client
            && let Some(c) = t.clients.get(&(net.to_string(), v4))
            && c.hostname.as_deref().is_some_and(|h| normalize(h) == key)
        {
            return Some(vec![v4]);
        }
        let scope = Self::scope(&t, net, client);
        let found = scope.iter().find_map(|n| t.nets.get(n)?.names.get(&key).cloned());
        if found.is_some() {
            return found;
        }
        let target = match client {
            IpAddr::V4(v4) => {
                t.clients.get(&(net.to_string(), v4)).and_then(|c| c.links.get(&key)).map(|n| normalize(n))
            }
            IpAddr::V6(_) => None,
        }?;
        scope.iter().find_map(|n| t.nets.get(n)?.names.get(&target).cloned())
    }

    pub fn reverse(&self, net: &str, client: IpAddr, ip: Ipv4Addr) -> Option<String> {
        let t = self.inner.read().expect("dns lock");
        Self::scope(&t, net, client).iter().find_map(|n| t.nets.get(n)?.reverse.get(&ip).cloned())
    }

    fn upstreams_for(&self, net: &str, client: IpAddr) -> Vec<SocketAddr> {
        let t = self.inner.read().expect("dns lock");
        if let IpAddr::V4(v4) = client
            && let Some(c) = t.clients.get(&(net.to_string(), v4))
        {
            if let Some(u) = &c.upstreams {
                return u.clone();
            }
            // The first of the container's networks that forwards at all.
            return c
                .networks
                .iter()
                .find_map(|n| t.nets.get(n).filter(|x| !x.upstreams.is_empty()))
                .map(|x| x.upstreams.clone())
                .unwrap_or_default();
        }
        Vec::new()
    }
}

/// `d.c.b.a.in-addr.arpa` → `a.b.c.d`.
pub fn parse_arpa(name: &str) -> Option<Ipv4Addr> {
    let rest = normalize(name);
    let rest = rest.strip_suffix(".in-addr.arpa")?;
    let mut octets: Vec<u8> = rest.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if octets.len() != 4 {
        return None;
    }
    octets.reverse();
    Some(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
}

/// The resolvers of a `resolv.conf` text (the host's, for forwarding).
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == "nameserver").then(|| it.next()?.split('%').next()?.parse().ok())?
        })
        .collect()
}

struct Handler {
    directory: Directory,
    network: String,
}

enum Answer {
    Local(Vec<Record>),
    Forwarded(Box<Message>),
    Fail(ResponseCode),
}

impl Handler {
    fn local(&self, request: &Request) -> Option<Vec<Record>> {
        let query = request.queries.queries().first()?;
        let qname = query.name().to_string();
        let name = Name::from(query.name().clone());
        match query.query_type() {
            RecordType::PTR => {
                let ip = parse_arpa(&qname)?;
                let target = self.directory.reverse(&self.network, request.src().ip(), ip)?;
                let target = Name::from_ascii(format!("{target}.")).ok()?;
                Some(vec![Record::from_rdata(name, TTL, RData::PTR(PTR(target)))])
            }
            t => {
                let ips = self.directory.lookup(&self.network, request.src().ip(), &qname)?;
                if t == RecordType::A || t == RecordType::ANY {
                    Some(ips.into_iter().map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))).collect())
                } else {
                    Some(Vec::new())
                }
            }
        }
    }

    async fn forward(&self, request: &Request) -> Answer {
        let upstreams = self.directory.upstreams_for(&self.network, request.src().ip());
        if upstreams.is_empty() {
            return Answer::Fail(ResponseCode::ServFail);
        }
        let tcp = request.protocol() == Protocol::Tcp;
        for up in upstreams {
            let r = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange(up, request.as_slice(), tcp)).await;
            match r {
                Ok(Ok(bytes)) => match Message::from_vec(&bytes) {
                    Ok(m) if m.metadata.id == request.metadata.id => return Answer::Forwarded(Box::new(m)),
                    Ok(_) => tracing::debug!(%up, "upstream answered another query id"),
                    Err(e) => tracing::debug!(%up, "undecodable upstream answer: {e}"),
                },
                Ok(Err(e)) => tracing::debug!(%up, "upstream: {e}"),
                Err(_) => tracing::debug!(%up, "upstream timed out"),
            }
        }
        Answer::Fail(ResponseCode::ServFail)
    }
}

/// One question to one upstream, over the protocol the client used.
async fn exchange(up: SocketAddr, query: &[u8], tcp: bool) -> std::io::Result<Vec<u8>> {
    if tcp {
        let mut s = tokio::net::TcpStream::connect(up).await?;
        let len = u16::try_from(query.len()).map_err(|_| std::io::Error::other("query too long"))?;
        let mut buf = Vec::with_capacity(query.len() + 2);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(query);
        s.write_all(&buf).await?;
        let n = s.read_u16().await? as usize;
        let mut out = vec![0u8; n];
        s.read_exact(&mut out).await?;
        Ok(out)
    } else {
        let bind: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
        let s = tokio::net::UdpSocket::bind(bind).await?;
        s.connect(up).await?;
        s.send(query).await?;
        let mut out = vec![0u8; 65535];
        let n = s.recv(&mut out).await?;
        out.truncate(n);
        Ok(out)
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let answer = match self.local(request) {
            _ if !self.directory.knows(&self.network, request.src().ip()) => {
                rate_limited_refusal(&self.network, request.src().ip());
                Answer::Fail(ResponseCode::Refused)
            }
            Some(records) => Answer::Local(records),
            None if request.queries.queries().is_empty() => Answer::Fail(ResponseCode::FormErr),
            None => self.forward(request).await,
        };
        let builder = MessageResponseBuilder::from_message_request(request);
        let sent = match &answer {
            Answer::Local(records) => {
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.authoritative = true;
                meta.recursion_available = true;
                response.send_response(builder.build(meta, records.iter(), [], [], [])).await
            }
            Answer::Forwarded(m) => {
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.response_code = m.metadata.response_code;
                meta.recursion_available = m.metadata.recursion_available;
                meta.authentic_data = m.metadata.authentic_data;
                meta.truncation = m.metadata.truncation;
                response
                    .send_response(builder.build(
                        meta,
                        m.answers.iter(),
                        m.authorities.iter(),
                        [],
                        m.additionals.iter(),
                    ))
                    .await
            }
            Answer::Fail(code) => response.send_response(builder.error_msg(&request.metadata, *code)).await,
        };
        match sent {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("sending a DNS answer: {e}");
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.response_code = ResponseCode::ServFail;
                hickory_server::proto::op::Header { metadata: meta, counts: Default::default() }.into()
            }
        }
    }
}

/// A running server; dropping it stops it.
pub struct DnsServer {
    server: hickory_server::Server<Handler>,
    pub addr: SocketAddr,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DnsServer({})", self.addr)
    }
}

/// Logs a refused stranger at most once a minute (anyone on the host can send questions).
fn rate_limited_refusal(network: &str, src: IpAddr) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60 && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::info!(%network, %src, "DNS question from outside the network refused (logged once a minute)");
    }
}

/// A socket bound to `addr` that only hears what arrives through the link `device`.
fn bound_socket(addr: SocketAddr, device: &str, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(device.as_bytes()))?;
    s.bind(&addr.into())?;
    Ok(s)
}

impl DnsServer {
    /// Starts answering on `addr` (UDP and TCP) for the clients on `network`, whose bridge is
    /// the link `bridge`: only questions that arrive through it are heard.
    pub async fn start(
        addr: SocketAddr,
        directory: Directory,
        network: &str,
        bridge: &str,
    ) -> std::io::Result<DnsServer> {
        let udp = tokio::net::UdpSocket::from_std(bound_socket(addr, bridge, socket2::Type::DGRAM)?.into())?;
        let tcp = bound_socket(addr, bridge, socket2::Type::STREAM)?;
        tcp.listen(128)?;
        let tcp = tokio::net::TcpListener::from_std(tcp.into())?;
        let mut server = hickory_server::Server::new(Handler { directory, network: network.to_string() });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64 * 1024);
        Ok(DnsServer { server, addr })
    }

    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!("stopping DNS server on {}: {e}", self.addr);
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::{Message, MessageType, OpCode, Query};

    fn query(name: &str, t: RecordType, id: u16) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.queries.push(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    async fn ask(server: SocketAddr, bytes: &[u8]) -> Message {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(bytes, server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf)).await.unwrap().unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    fn entry(ip: [u8; 4], names: &[&str]) -> Entry {
        Entry { ip: Ipv4Addr::from(ip), names: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn lookups_are_scoped_to_the_asking_containers_networks() {
        let d = Directory::default();
        let zones = HashMap::from([
            (
                "a".to_string(),
                NetworkZone {
                    entries: vec![entry([10, 0, 0, 2], &["Web", "www"]), entry([10, 0, 0, 3], &["db", "www"])],
                    upstreams: vec![],
                },
            ),
            ("b".to_string(), NetworkZone { entries: vec![entry([10, 1, 0, 2], &["cache"])], upstreams: vec![] }),
        ]);
        // 10.1.0.9 on b is also on a; 10.1.0.2 only on b.
        let on = |n: &[&str]| Client {
            networks: n.iter().map(|s| s.to_string()).collect(),
            upstreams: None,
            hostname: None,
            links: HashMap::new(),
        };
        let linked = Client { links: HashMap::from([("up".to_string(), "DB".to_string())]), ..on(&["a"]) };
        let clients = HashMap::from([
            (("a".to_string(), Ipv4Addr::new(10, 0, 0, 4)), linked),
            (("b".to_string(), Ipv4Addr::new(10, 1, 0, 9)), on(&["b", "a"])),
            (("a".to_string(), Ipv4Addr::new(10, 0, 0, 2)), on(&["a"])),
            (("b".to_string(), Ipv4Addr::new(10, 1, 0, 2)), on(&["b"])),
        ]);
        d.replace(zones, clients);
        let on_a: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(d.lookup("a", on_a, "web."), Some(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        assert_eq!(d.lookup("a", on_a, "WWW").unwrap().len(), 2);
        assert_eq!(d.lookup("a", on_a, "cache"), None, "b's names are not visible from a");
        assert_eq!(d.lookup("b", "10.1.0.2".parse().unwrap(), "db"), None);
        assert_eq!(d.lookup("a", "10.1.0.2".parse().unwrap(), "web"), None, "strangers see nothing");
        assert!(!d.knows("a", "10.1.0.2".parse().unwrap()));
        assert_eq!(d.lookup("b", "10.1.0.9".parse().unwrap(), "db"), Some(vec![Ipv4Addr::new(10, 0, 0, 3)]));
        // A link's alias resolves for the container that has the link, and only for it.
        assert_eq!(d.lookup("a", "10.0.0.4".parse().unwrap(), "Up."), Some(vec![Ipv4Addr::new(10, 0, 0, 3)]));
        assert_eq!(d.lookup("a", on_a, "up"), None);
        assert_eq!(d.reverse("a", on_a, Ipv4Addr::new(10, 0, 0, 2)).as_deref(), Some("web"));
        assert_eq!(parse_arpa("2.0.0.10.in-addr.arpa."), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(parse_arpa("0.10.in-addr.arpa."), None);
        assert_eq!(parse_arpa("x.0.0.10.in-addr.arpa."), None);
    }

    #[test]
    fn resolv_conf_nameservers() {
        let t = "# c\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nsearch x\nnameserver\nnameserver junk\n";
        assert_eq!(nameservers(t), vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
    }

    #[tokio::test]
    async fn answers_local_names_and_forwards_the_rest() {
        // An "upstream" that knows example.test.
        let up_dir = Directory::default();
        let upstream = {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = sock.local_addr().unwrap();
            drop(sock);
            let zones = HashMap::from([(
                "u".to_string(),
                NetworkZone { entries: vec![entry([192, 0, 2, 7], &["example.test"])], upstreams: vec![] },
            )]);
            up_dir.replace(
                zones,
                HashMap::from([(
                    ("u".to_string(), Ipv4Addr::LOCALHOST),
                    Client { networks: vec!["u".into()], upstreams: None, hostname: None, links: HashMap::new() },
                )]),
            );
            DnsServer::start(addr, up_dir.clone(), "u", "lo").await.unwrap()
        };
        let dir = Directory::default();
        let up = upstream.addr;
        let zone = move |entries| HashMap::from([("n".to_string(), NetworkZone { entries, upstreams: vec![up] })]);
        // The asking "container" is 127.0.0.1, on network n.
        let me = || {
            HashMap::from([(
                ("n".to_string(), Ipv4Addr::LOCALHOST),
                Client { networks: vec!["n".into()], upstreams: None, hostname: None, links: HashMap::new() },
            )])
        };
        dir.replace(zone(vec![entry([10, 9, 0, 2], &["web"])]), me());
        let addr = {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.local_addr().unwrap()
        };
        let server = DnsServer::start(addr, dir.clone(), "n", "lo").await.unwrap();

        let m = ask(addr, &query("web.", RecordType::A, 7)).await;
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 9, 0, 2)]);

        let m = ask(addr, &query("web.", RecordType::AAAA, 8)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());

        let m = ask(addr, &query("2.0.9.10.in-addr.arpa.", RecordType::PTR, 9)).await;
        assert_eq!(m.answers.len(), 1);

        let m = ask(addr, &query("example.test.", RecordType::A, 10)).await;
        assert_eq!(m.metadata.id, 10);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 7)], "forwarded to the upstream");

        // The upstream doesn't know it either: its upstream list is empty → SERVFAIL passed on.
        let m = ask(addr, &query("unknown.test.", RecordType::A, 11)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);

        // Garbage gets no crash; the server still answers afterwards.
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(&[0xff; 7], addr).await.unwrap();
        s.send_to(&[0u8; 512], addr).await.unwrap();
        let m = ask(addr, &query("web.", RecordType::A, 12)).await;
        assert_eq!(a_records(&m).len(), 1);

        // Anyone else is refused: nothing local, nothing forwarded.
        let stranger = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
        stranger.send_to(&query("web.", RecordType::A, 14), addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), stranger.recv_from(&mut buf)).await.unwrap().unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.answers.is_empty());

        // Records are replaced as containers come and go.
        dir.replace(zone(vec![]), me());
        let m = ask(addr, &query("web.", RecordType::A, 13)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        server.stop().await;
        upstream.stop().await;
    }
}
