//! Drives coturn's `turnutils_uclient` and `turnutils_peer` against our server, and floods it
//! with allocations and garbage, all on loopback.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use relaycast_turn::{Cidr, Limits, PeerPolicy, TurnConfig, TurnServer, mint_until, password_for};
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE, Message, MessageType, Setter};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const SECRET: &str = "integration-secret";

fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn coturn_missing() -> bool {
    if have("turnutils_uclient") && have("turnutils_peer") {
        return false;
    }
    eprintln!("SKIP: turnutils_uclient/turnutils_peer not installed (Debian package coturn)");
    true
}

async fn server(allow: &[&str], limits: Limits) -> TurnServer {
    let mut cfg = TurnConfig::new("127.0.0.1:0".parse().unwrap(), SECRET.into());
    cfg.policy = PeerPolicy::new(allow.iter().map(|c| c.parse::<Cidr>().unwrap()).collect(), vec![]);
    cfg.limits = limits;
    TurnServer::start(cfg).await.expect("TURN server starts")
}

/// A `turnutils_peer` echo peer on a free loopback port.
async fn peer() -> (Child, u16) {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let child = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_peer starts");
    // The peer is ready once its port is taken.
    for _ in 0..100 {
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("turnutils_peer did not bind port {port}");
}

struct Outcome {
    code: i32,
    out: String,
    sent: u64,
    received: u64,
}

async fn uclient(server: SocketAddr, peer_port: u16, user: &str, pass: &str, tcp: bool, messages: u32) -> Outcome {
    uclient_with(server, peer_port, user, pass, if tcp { &["-t"] } else { &[] }, messages).await
}

async fn uclient_with(server: SocketAddr, peer_port: u16, user: &str, pass: &str, extra: &[&str], messages: u32) -> Outcome {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(extra);
    cmd.args(["-u", user, "-w", pass, "-e", "127.0.0.1", "-r", &peer_port.to_string()])
        .args(["-n", &messages.to_string(), "-p", &server.port().to_string(), "127.0.0.1"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = timeout(Duration::from_secs(60), cmd.output()).await.expect("uclient finishes within 60 s").expect("uclient runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let last = |key: &str| -> u64 {
        text.rmatch_indices(key)
            .next()
            .and_then(|(i, _)| text[i + key.len()..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or(0)
    };
    Outcome { code: out.status.code().unwrap_or(-1), sent: last("tot_send_msgs="), received: last("tot_recv_msgs="), out: text }
}

fn assert_relayed(o: &Outcome, what: &str) {
    assert_eq!(o.code, 0, "{what}: uclient failed:\n{}", o.out);
    assert!(o.sent > 0 && o.received * 10 >= o.sent * 9, "{what}: sent {} received {}:\n{}", o.sent, o.received, o.out);
}

fn valid_creds(label: &str) -> (String, String) {
    let c = relaycast_turn::mint(SECRET, label, Duration::from_secs(600));
    (c.username, c.password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_udp_and_tcp_with_valid_credentials() {
    if coturn_missing() {
        return;
    }
    let s = server(&["127.0.0.1/32"], Limits::default()).await;
    let (_peer, port) = peer().await;
    let (u, p) = valid_creds("alice");
    assert_relayed(&uclient(s.udp_addr(), port, &u, &p, false, 20).await, "UDP");
    assert_relayed(&uclient(s.udp_addr(), port, &u, &p, true, 20).await, "TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_fails_with_expired_or_wrong_credentials() {
    if coturn_missing() {
        return;
    }
    let s = server(&["127.0.0.1/32"], Limits::default()).await;
    let (_peer, port) = peer().await;
    let expired = mint_until(SECRET, "alice", 1_000_000);
    let o = uclient(s.udp_addr(), port, &expired.username, &expired.password, false, 5).await;
    assert_ne!(o.code, 0, "expired credentials must fail:\n{}", o.out);
    assert!(o.out.contains("401"), "expired credentials get 401:\n{}", o.out);
    assert_eq!(o.received, 0);
    let (u, _) = valid_creds("alice");
    let o = uclient(s.udp_addr(), port, &u, "d3Jvbmc=", false, 5).await;
    assert_ne!(o.code, 0, "a wrong password must fail:\n{}", o.out);
    assert!(o.out.contains("401"), "a wrong password gets 401:\n{}", o.out);
    let forged = password_for("another-secret", &u);
    let o = uclient(s.udp_addr(), port, &u, &forged, true, 5).await;
    assert_ne!(o.code, 0, "a password from another secret must fail:\n{}", o.out);
    assert!(s.stats().unauthorized.load(std::sync::atomic::Ordering::Relaxed) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_cannot_reach_loopback_peer_without_allow_flag() {
    if coturn_missing() {
        return;
    }
    let s = server(&[], Limits::default()).await;
    let (_peer, port) = peer().await;
    let (u, p) = valid_creds("alice");
    for tcp in [false, true] {
        let o = uclient(s.udp_addr(), port, &u, &p, tcp, 5).await;
        assert_ne!(o.code, 0, "loopback peer must be refused (tcp={tcp}):\n{}", o.out);
        assert!(o.out.contains("403"), "expected 403 Forbidden:\n{}", o.out);
        assert_eq!(o.received, 0);
    }
    assert!(s.stats().forbidden.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// A minimal TURN client: an authenticated Allocate; returns 0 on success or the error code.
async fn allocate(sock: &UdpSocket, server: SocketAddr, user: &str, pass: &str) -> u16 {
    allocate_on(&mut Transport::Udp(sock, server), user, pass).await
}

enum Transport<'a> {
    Udp(&'a UdpSocket, SocketAddr),
    Tcp(&'a mut TcpStream),
}

async fn allocate_on(t: &mut Transport<'_>, user: &str, pass: &str) -> u16 {
    let transport = || turn::proto::reqtrans::RequestedTransport { protocol: turn::proto::PROTO_UDP };
    let mut m = Message::new();
    m.build(&[Box::new(stun::agent::TransactionId::new()), Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)), Box::new(transport())])
        .unwrap();
    let first = roundtrip(t, &m.raw).await;
    assert_eq!(first.typ.class, CLASS_ERROR_RESPONSE);
    let realm = TextAttribute::get_from_as(&first, ATTR_REALM).expect("401 carries a realm");
    let nonce = TextAttribute::get_from_as(&first, ATTR_NONCE).expect("401 carries a nonce");
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(stun::agent::TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(transport()),
        Box::new(TextAttribute::new(ATTR_USERNAME, user.into())),
        Box::new(realm.clone()),
        Box::new(nonce),
        Box::new(stun::integrity::MessageIntegrity::new_long_term_integrity(user.into(), realm.text, pass.into())),
    ];
    m.build(&setters).unwrap();
    let r = roundtrip(t, &m.raw).await;
    if r.typ.class == CLASS_SUCCESS_RESPONSE {
        return 0;
    }
    let mut e = ErrorCodeAttribute::default();
    e.get_from(&r).expect("error responses carry a code");
    e.code.0
}

async fn roundtrip(t: &mut Transport<'_>, req: &[u8]) -> Message {
    let raw = match t {
        Transport::Udp(sock, server) => {
            sock.send_to(req, *server).await.unwrap();
            let mut buf = vec![0u8; 1500];
            let (n, _) = timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.expect("TURN server answers").unwrap();
            buf.truncate(n);
            buf
        }
        Transport::Tcp(s) => {
            s.write_all(req).await.unwrap();
            let mut head = [0u8; 20];
            timeout(Duration::from_secs(5), s.read_exact(&mut head)).await.expect("TURN server answers").unwrap();
            let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]]))];
            timeout(Duration::from_secs(5), s.read_exact(&mut body)).await.expect("TURN server answers").unwrap();
            [&head[..], &body].concat()
        }
    };
    let mut m = Message::new();
    m.raw = raw;
    m.decode().expect("answer is STUN");
    m
}

async fn closed_within(mut s: TcpStream, secs: u64) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match timeout(Duration::from_secs(secs), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_and_garbage_leave_other_allocations_working() {
    if coturn_missing() {
        return;
    }
    let per_ip = 6;
    let s = server(&["127.0.0.1/32"], Limits { per_ip, ..Limits::default() }).await;
    let addr = s.udp_addr();
    let (_peer, port) = peer().await;
    let (u, p) = valid_creds("viewer");

    // A client relaying through the server while the rest happens.
    let victim = tokio::spawn(async move { uclient(addr, port, &u, &p, false, 60).await });
    let (vu, _) = valid_creds("viewer");
    let loop_ip: IpAddr = "127.0.0.1".parse().unwrap();
    for _ in 0..500 {
        if s.usage(&vu, loop_ip).1 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.usage(&vu, loop_ip).1 > 0, "the relaying client got its allocation");

    // Allocation flood from another IP: the quota answers 486 past `per_ip`.
    let flooder: IpAddr = "127.0.0.2".parse().unwrap();
    let mut codes = vec![];
    let mut socks = vec![];
    for i in 0..per_ip + 4 {
        let sock = UdpSocket::bind((flooder, 0)).await.unwrap();
        let (fu, fp) = valid_creds(&format!("flood{i}"));
        codes.push(allocate(&sock, addr, &fu, &fp).await);
        socks.push(sock);
    }
    assert_eq!(&codes[..per_ip], &vec![0; per_ip][..], "allocations within the quota succeed: {codes:?}");
    assert!(codes[per_ip..].iter().all(|c| *c == 486), "allocations over the quota get 486: {codes:?}");
    assert!(s.stats().over_quota.load(std::sync::atomic::Ordering::Relaxed) >= 4);

    // Garbage and oversized datagrams.
    let junk = UdpSocket::bind((flooder, 0)).await.unwrap();
    for i in 0..200u32 {
        let len = 1 + (i as usize * 37) % 1400;
        let bytes: Vec<u8> = (0..len).map(|j| (j as u32).wrapping_mul(2_654_435_761).wrapping_add(i) as u8).collect();
        junk.send_to(&bytes, addr).await.unwrap();
    }
    let mut stun_like = vec![0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun_like.extend([9u8; 12]);
    stun_like.extend([0xff, 0xff, 0x00, 0x40, 1, 2, 3, 4]);
    junk.send_to(&stun_like, addr).await.unwrap();
    junk.send_to(&vec![0x40u8; 9000], addr).await.unwrap();

    // Garbage, oversized and truncated streams: each is closed, nothing else is affected.
    let tcp = s.tcp_addr().expect("TCP listener");
    let mut g = TcpStream::connect(tcp).await.unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_within(g, 5).await, "a garbage stream is closed");
    let mut big = TcpStream::connect(tcp).await.unwrap();
    big.write_all(&[0x40, 0x00, 0xff, 0xff]).await.unwrap();
    big.write_all(&[0u8; 4096]).await.unwrap();
    assert!(closed_within(big, 5).await, "an oversized ChannelData frame closes the stream");
    let mut big_stun = TcpStream::connect(tcp).await.unwrap();
    big_stun.write_all(&[0x00, 0x01, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42]).await.unwrap();
    assert!(closed_within(big_stun, 5).await, "an oversized STUN message closes the stream");
    let mut partial = TcpStream::connect(tcp).await.unwrap();
    partial.write_all(&[0x00, 0x01, 0x00]).await.unwrap();
    drop(partial);

    let o = victim.await.unwrap();
    assert_relayed(&o, "UDP client during flood and garbage");
    assert!(s.stats().garbage.load(std::sync::atomic::Ordering::Relaxed) >= 100);

    // The server still serves new clients, over both transports.
    let (u, p) = valid_creds("after");
    assert_relayed(&uclient(addr, port, &u, &p, false, 10).await, "UDP after the flood");
    assert_relayed(&uclient(addr, port, &u, &p, true, 10).await, "TCP after the flood");
    drop(socks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_tls() {
    if coturn_missing() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rc-turn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut cfg = TurnConfig::new("127.0.0.1:0".parse().unwrap(), SECRET.into());
    cfg.policy = PeerPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], vec![]);
    cfg.tls = Some(relaycast_turn::TlsFiles { cert: cert_path, key: key_path });
    let s = TurnServer::start(cfg).await.expect("TURN server with TLS starts");
    assert!(s.tls());
    let (_peer, port) = peer().await;
    let (u, p) = valid_creds("tls");
    assert_relayed(&uclient_with(s.udp_addr(), port, &u, &p, &["-t", "-S"], 10).await, "TLS");
    // Plain TCP on the TLS listener fails the handshake and relays nothing.
    let o = uclient(s.udp_addr(), port, &u, &p, true, 3).await;
    assert_eq!(o.received, 0, "plain TCP to the TLS listener relays nothing:\n{}", o.out);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_over_tcp_ends_with_its_stream() {
    let s = server(&[], Limits::default()).await;
    let (u, p) = valid_creds("stream");
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let mut a = TcpStream::connect(s.tcp_addr().expect("TCP listener")).await.unwrap();
    let mut b = TcpStream::connect(s.tcp_addr().expect("TCP listener")).await.unwrap();
    assert_eq!(allocate_on(&mut Transport::Tcp(&mut a), &u, &p).await, 0);
    assert_eq!(allocate_on(&mut Transport::Tcp(&mut b), &u, &p).await, 0);
    assert_eq!(s.usage(&u, ip), (2, 2));
    drop(a);
    let mut left = (2, 2);
    for _ in 0..250 {
        left = s.usage(&u, ip);
        if left == (1, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, (1, 1), "closing one stream releases exactly its allocation");
    drop(b);
}
