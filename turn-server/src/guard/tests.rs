//! Unit tests of the guard.

use super::*;
use crate::quota::Limits;
use stun::agent::TransactionId;
use stun::message::BINDING_REQUEST;
use stun::textattrs::TextAttribute;

fn shared(per_ip: usize) -> Shared {
    Shared::new(
        "s".into(),
        "relaycast".into(),
        PeerPolicy::new(vec![], vec!["127.0.0.1:5000".parse().unwrap()]),
        QuotaTracker::new(Limits { per_ip, ..Limits::default() }),
        Arc::default(),
    )
}

fn attr(bytes: &[u8], a: stun::attributes::AttrType) -> Option<String> {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().unwrap();
    m.get(a).ok().map(|v| String::from_utf8(v).unwrap())
}

fn peer_attr(m: &mut Message, addr: SocketAddr) {
    let xa = stun::xoraddr::XorMappedAddress { ip: addr.ip(), port: addr.port() };
    xa.add_to_as(m, ATTR_XOR_PEER_ADDRESS).unwrap();
}

fn request(method: stun::message::Method, peers: &[SocketAddr], user: Option<&str>) -> Vec<u8> {
    let mut m = Message::new();
    m.build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(method, CLASS_REQUEST))]).unwrap();
    for p in peers {
        peer_attr(&mut m, *p);
    }
    if let Some(u) = user {
        TextAttribute::new(ATTR_USERNAME, u.to_owned()).add_to(&mut m).unwrap();
    }
    m.raw.clone()
}

fn error_code(bytes: &[u8]) -> u16 {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().unwrap();
    assert_eq!(m.typ.class, CLASS_ERROR_RESPONSE);
    let mut e = ErrorCodeAttribute::default();
    use stun::message::Getter;
    e.get_from(&m).unwrap();
    e.code.0
}

const SRC: &str = "198.51.100.7:4000";

fn signed(user: &str, pass: &str) -> Vec<u8> {
    let nonce = "0123456789abcdef";
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(TextAttribute::new(ATTR_USERNAME, user.into())),
        Box::new(TextAttribute::new(ATTR_REALM, "relaycast".into())),
        Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())),
        Box::new(stun::integrity::MessageIntegrity::new_long_term_integrity(user.into(), "relaycast".into(), pass.into())),
        Box::new(stun::fingerprint::FINGERPRINT),
    ];
    m.build(&setters).unwrap();
    m.raw
}

#[test]
fn signed_requests_are_verified() {
    let s = shared(4);
    let src = SRC.parse().unwrap();
    let good = crate::creds::mint("s", "v", std::time::Duration::from_secs(60));
    assert_eq!(
        inspect(&s, &signed(&good.username, &good.password), src),
        Verdict::Pass(Some(AllocCtx2 { username: good.username.clone() }))
    );
    let forged = crate::creds::mint("other", "v", std::time::Duration::from_secs(60));
    let expired = crate::creds::mint_until("s", "v", 1000);
    for (u, p) in [(&good.username, "wrong"), (&forged.username, forged.password.as_str()), (&expired.username, expired.password.as_str())] {
        match inspect(&s, &signed(u, p), src) {
            Verdict::Reply(b) => assert_eq!(error_code(&b), 401, "{u}"),
            v => panic!("{u}: {v:?}"),
        }
    }
    assert_eq!(s.stats.unauthorized.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn xor_peer_addresses_decode() {
    for a in ["127.0.0.1:5000", "[fe80::1]:9", "[2001:db8::5]:65535"] {
        let raw = request(METHOD_CREATE_PERMISSION, &[a.parse().unwrap()], None);
        let mut m = Message::new();
        m.raw = raw;
        m.decode().unwrap();
        assert_eq!(peer_addresses(&m).unwrap(), vec![a.parse::<SocketAddr>().unwrap()]);
    }
}

#[test]
fn forbidden_peers_get_403() {
    let s = shared(4);
    s.nonces.learn("n".into(), Instant::now());
    let src = SRC.parse().unwrap();
    let bad = request(METHOD_CREATE_PERMISSION, &["8.8.8.8:1".parse().unwrap(), "10.0.0.1:1".parse().unwrap()], None);
    match inspect(&s, &bad, src) {
        Verdict::Reply(b) => assert_eq!(error_code(&b), 403),
        v => panic!("{v:?}"),
    }
    // Allowed peers get past the filter to the authentication challenge.
    let own = request(METHOD_CREATE_PERMISSION, &["127.0.0.1:9".parse().unwrap()], None);
    match inspect(&s, &own, src) {
        Verdict::Reply(b) => assert_eq!(error_code(&b), 401, "permissions are per IP"),
        v => panic!("{v:?}"),
    }
    let bind_other_port = request(METHOD_CHANNEL_BIND, &["127.0.0.1:9".parse().unwrap()], None);
    match inspect(&s, &bind_other_port, src) {
        Verdict::Reply(b) => assert_eq!(error_code(&b), 403, "channels are per address"),
        v => panic!("{v:?}"),
    }
    let bind_own = request(METHOD_CHANNEL_BIND, &["127.0.0.1:5000".parse().unwrap()], None);
    match inspect(&s, &bind_own, src) {
        Verdict::Reply(b) => assert_eq!(error_code(&b), 401),
        v => panic!("{v:?}"),
    }
    let v6 = request(METHOD_CREATE_PERMISSION, &["[::1]:1".parse().unwrap()], None);
    assert!(matches!(inspect(&s, &v6, src), Verdict::Reply(_)));
    assert_eq!(s.stats.forbidden.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn signed_mesh_peers_media_addresses_are_relayable_by_default() {
    let s = shared(4);
    s.nonces.learn("n".into(), Instant::now());
    let src: SocketAddr = SRC.parse().unwrap();
    let mesh_peer: SocketAddr = "203.0.113.9:41000".parse().unwrap();
    let code = |method, peer: SocketAddr| match inspect(&s, &request(method, &[peer], None), src) {
        Verdict::Reply(b) => error_code(&b),
        v => panic!("{v:?}"),
    };
    // A public address is refused by default, mesh peer or not, until the node lists it.
    assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 403);
    s.policy.mesh.set([mesh_peer]);
    // Listed, but the client holds no allocation: nothing to grant it to.
    assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 403);
    // With an allocation (its relay socket registers its grants), the permission passes the
    // filter to authentication, and the allocation may relay to exactly that address.
    let grants = Arc::new(Grants::default());
    lock(&s.granted).insert(src, grants.clone());
    assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 401, "permission for a mesh peer's IP");
    assert!(grants.contains(mesh_peer));
    assert!(!grants.contains("203.0.113.9:41001".parse().unwrap()), "only the peer's media port");
    assert_eq!(code(METHOD_CHANNEL_BIND, "203.0.113.9:41001".parse().unwrap()), 403, "channels are exact");
    assert_eq!(code(METHOD_CHANNEL_BIND, mesh_peer), 401);
    // Other public peers stay refused; the node's own addresses still pass.
    assert_eq!(code(METHOD_CREATE_PERMISSION, "203.0.113.10:41000".parse().unwrap()), 403);
    assert_eq!(code(METHOD_CHANNEL_BIND, "127.0.0.1:5000".parse().unwrap()), 401);
    // The node drops the peer: new permissions for it are refused (the set is read when a
    // permission is created; the allocation keeps what it was granted).
    s.policy.mesh.set([]);
    assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 403);
    assert!(grants.contains(mesh_peer));
    // Grants per allocation are bounded.
    let many: Vec<SocketAddr> = (0..200u16).map(|p| SocketAddr::new(mesh_peer.ip(), 1000 + p)).collect();
    grants.add(&many);
    assert_eq!(grants.0.read().unwrap().len(), MAX_GRANTS);
}

#[test]
fn allocations_over_quota_get_486() {
    let s = shared(1);
    let src: SocketAddr = SRC.parse().unwrap();
    let c = crate::creds::mint("s", "u", std::time::Duration::from_secs(60));
    let alloc = signed(&c.username, &c.password);
    assert_eq!(inspect(&s, &alloc, src), Verdict::Pass(Some(AllocCtx2 { username: c.username.clone() })));
    let g = s.quotas.acquire(&c.username, src.ip()).unwrap();
    match inspect(&s, &alloc, src) {
        Verdict::Reply(b) => assert_eq!(error_code(&b), 486),
        v => panic!("{v:?}"),
    }
    drop(g);
    assert!(matches!(inspect(&s, &alloc, src), Verdict::Pass(Some(_))));
}

/// The 401 the `turn` server would send, with `nonce`.
fn server_401(nonce: &str) -> Vec<u8> {
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute { code: ErrorCode(401), reason: b"Unauthorized".to_vec() }),
        Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())),
        Box::new(TextAttribute::new(ATTR_REALM, "relaycast".into())),
    ];
    m.build(&setters).unwrap();
    m.raw
}

#[test]
fn unauthenticated_requests_get_a_nonce_the_server_holds() {
    let s = shared(4);
    let src: SocketAddr = SRC.parse().unwrap();
    let alloc = request(METHOD_ALLOCATE, &[], Some("99:u"));
    // No nonce learned yet: one request goes to the server, the others in that second are dropped.
    assert_eq!(inspect(&s, &alloc, src), Verdict::Pass(None));
    assert_eq!(inspect(&s, &alloc, src), Verdict::Drop);
    // The server's 401 teaches the guard its nonce; from then on the guard answers.
    assert_eq!(issued_nonce(&server_401("0123abcd")).as_deref(), Some("0123abcd"));
    s.nonces.learn("0123abcd".into(), Instant::now());
    for method in [METHOD_ALLOCATE, METHOD_REFRESH] {
        for _ in 0..1000 {
            let Verdict::Reply(b) = inspect(&s, &request(method, &[], Some("99:u")), src) else { panic!("challenged") };
            assert_eq!(error_code(&b), 401);
            assert_eq!(attr(&b, ATTR_REALM).as_deref(), Some("relaycast"));
            assert_eq!(attr(&b, ATTR_NONCE).as_deref(), Some("0123abcd"));
        }
    }
    assert_eq!(s.stats.challenged.load(std::sync::atomic::Ordering::Relaxed), 2001);
    // Relayed data and other answers are not mistaken for nonces.
    assert_eq!(issued_nonce(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]), None);
    let mut ok = Message::new();
    ok.build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(METHOD_ALLOCATE, stun::message::CLASS_SUCCESS_RESPONSE))])
        .unwrap();
    assert_eq!(issued_nonce(&ok.raw), None);
    assert_eq!(issued_nonce(&error_response(&ok, 403, "Forbidden").unwrap()), None);
}

#[test]
fn the_nonce_pool_refreshes_rarely() {
    let p = NoncePool::default();
    let t0 = Instant::now();
    assert_eq!(p.challenge(t0), Challenge::Pass);
    assert_eq!(p.challenge(t0), Challenge::Drop);
    p.learn("a".into(), t0);
    assert_eq!(p.challenge(t0 + NONCE_FRESH / 2), Challenge::Reply("a".into()));
    // Old: one request per interval goes to the server; the others still get the old nonce.
    let later = t0 + NONCE_FRESH + std::time::Duration::from_secs(1);
    assert_eq!(p.challenge(later), Challenge::Pass);
    assert_eq!(p.challenge(later), Challenge::Reply("a".into()));
    assert_eq!(p.challenge(later + HARVEST_INTERVAL), Challenge::Pass);
    p.learn("b".into(), later + HARVEST_INTERVAL);
    assert_eq!(p.challenge(later + HARVEST_INTERVAL), Challenge::Reply("b".into()));
    // Too old to hand out: dropped until a new one is learned.
    let p = NoncePool::default();
    p.learn("c".into(), t0);
    let ancient = t0 + NONCE_USABLE + std::time::Duration::from_secs(1);
    assert_eq!(p.challenge(ancient), Challenge::Pass);
    assert_eq!(p.challenge(ancient), Challenge::Drop);
}

#[test]
fn relayed_traffic_needs_an_allocation() {
    let s = shared(4);
    let src: SocketAddr = SRC.parse().unwrap();
    let channel_data = [0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4];
    let mut ind = Message::new();
    ind.build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(stun::message::METHOD_SEND, CLASS_INDICATION))])
        .unwrap();
    let mut unknown = Message::new();
    unknown
        .build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(stun::message::METHOD_CONNECT, CLASS_REQUEST))])
        .unwrap();
    assert_eq!(inspect(&s, &channel_data, src), Verdict::Drop);
    assert_eq!(inspect(&s, &ind.raw, src), Verdict::Drop);
    assert_eq!(inspect(&s, &unknown.raw, src), Verdict::Drop);
    let mark = AllocMark::new(&s.allocated, src);
    assert_eq!(inspect(&s, &channel_data, src), Verdict::Pass(None));
    assert_eq!(inspect(&s, &ind.raw, src), Verdict::Pass(None));
    assert_eq!(inspect(&s, &channel_data, "198.51.100.7:4001".parse().unwrap()), Verdict::Drop, "per transport address");
    drop(mark);
    assert_eq!(inspect(&s, &channel_data, src), Verdict::Drop);
    assert!(lock(&s.allocated).is_empty());
    assert_eq!(s.stats.unallocated.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[test]
fn refusal_logs_are_rate_limited() {
    let l = LogLimiter::default();
    let t0 = Instant::now();
    let allowed = (0..1000).filter(|_| l.allow(t0)).count();
    assert_eq!(allowed, LOG_BURST as usize);
    assert!(l.allow(t0 + LOG_WINDOW), "a new window");
}

#[test]
fn garbage_is_dropped() {
    let s = shared(1);
    let src = SRC.parse().unwrap();
    assert_eq!(inspect(&s, b"hello world, not stun", src), Verdict::Drop);
    assert_eq!(inspect(&s, &[], src), Verdict::Drop);
    let mut truncated = request(METHOD_ALLOCATE, &[], Some("1:u"));
    truncated.truncate(24);
    assert_eq!(inspect(&s, &truncated, src), Verdict::Drop);
    let mut m = Message::new();
    m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)]).unwrap();
    assert_eq!(inspect(&s, &m.raw, src), Verdict::Pass(None));
    assert_eq!(s.stats.garbage.load(std::sync::atomic::Ordering::Relaxed), 3);
}
