use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PROFILES: [SrtpProfile; 3] = [
    SrtpProfile::Aes128CmSha1_80,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];

fn keying_material(profile: SrtpProfile) -> Vec<u8> {
    (0..profile.keying_material_len())
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
        .collect()
}

fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// Sender report + SDES-like tail, 1 + 6 words, then a receiver report.
fn rtcp_packet(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..20).map(|i| i as u8));
    p.extend_from_slice(&[0x80, 201, 0, 1]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

// RFC 3711 Appendix B.3.
#[test]
fn rfc3711_b3_key_derivation() {
    let mk = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let ms = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut enc = [0u8; 16];
    kdf(&mk, &ms, LABEL_RTP_ENC, &mut enc).unwrap();
    assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut salt = [0u8; 14];
    kdf(&mk, &ms, LABEL_RTP_SALT, &mut salt).unwrap();
    assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 20];
    kdf(&mk, &ms, LABEL_RTP_AUTH, &mut auth).unwrap();
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

fn rfc7714_keys() -> Keys {
    let key = hex("000102030405060708090a0b0c0d0e0f");
    let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
    Keys {
        rtp: Cipher::gcm(&key, salt).unwrap(),
        rtcp: Cipher::gcm(&key, salt).unwrap(),
    }
}

const RFC7714_RTP_PLAIN: &str = "8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
const RFC7714_RTP_SEALED: &str = "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce";
const RFC7714_RTCP_PLAIN: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
const RFC7714_RTCP_SEALED: &str = "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4";

// RFC 7714 §16.1.1 (AEAD_AES_128_GCM RTP).
#[test]
fn rfc7714_rtp_vector() {
    let keys = rfc7714_keys();
    let mut buf = hex(RFC7714_RTP_PLAIN);
    keys.seal_rtp(&mut buf, 12, 0).unwrap();
    assert_eq!(buf, hex(RFC7714_RTP_SEALED));
    keys.open_rtp(&mut buf, 12, 0).unwrap();
    assert_eq!(buf, hex(RFC7714_RTP_PLAIN));
}

// RFC 7714 §17.1 (AEAD_AES_128_GCM RTCP, SRTCP index 0x5d4).
#[test]
fn rfc7714_rtcp_vector() {
    let keys = rfc7714_keys();
    let mut buf = hex(RFC7714_RTCP_PLAIN);
    keys.seal_rtcp(&mut buf, 0x5d4).unwrap();
    assert_eq!(buf, hex(RFC7714_RTCP_SEALED));
    assert_eq!(keys.open_rtcp(&mut buf).unwrap(), 0x5d4);
    assert_eq!(buf, hex(RFC7714_RTCP_PLAIN));
}

#[test]
fn overheads() {
    assert_eq!(SrtpProfile::Aes128CmSha1_80.keying_material_len(), 60);
    assert_eq!(SrtpProfile::AeadAes128Gcm.keying_material_len(), 56);
    assert_eq!(SrtpProfile::AeadAes256Gcm.keying_material_len(), 88);
    assert_eq!(SrtpProfile::Aes128CmSha1_80.rtp_overhead(), 10);
    assert_eq!(SrtpProfile::Aes128CmSha1_80.rtcp_overhead(), 14);
    assert_eq!(SrtpProfile::AeadAes256Gcm.rtp_overhead(), 16);
    assert_eq!(SrtpProfile::AeadAes128Gcm.rtcp_overhead(), 20);
}

#[test]
fn wrong_keying_material_length() {
    for p in PROFILES {
        let km = vec![0u8; p.keying_material_len() - 1];
        assert!(matches!(
            SrtpSender::new(p, &km, true),
            Err(SrtpError::KeyingMaterialLength { .. })
        ));
    }
}

#[test]
fn round_trip_and_tamper() {
    for p in PROFILES {
        let km = keying_material(p);
        let mut tx = SrtpSender::new(p, &km, true).unwrap();
        let mut rx = SrtpReceiver::new(p, &km, false).unwrap();
        for (seq, roc, len) in [(1u16, 0u32, 100usize), (65535, 0, 0), (0, 1, 1200)] {
            let plain = rtp_packet(seq, 0x1234_5678, len);
            let mut buf = Vec::with_capacity(plain.len() + p.rtp_overhead());
            buf.extend_from_slice(&plain);
            let cap = buf.capacity();
            tx.seal_rtp(&mut buf, 12, roc).unwrap();
            assert_eq!(buf.capacity(), cap, "sealed within reserved capacity");
            assert_eq!(buf.len(), plain.len() + p.rtp_overhead());
            if len > 0 {
                assert_ne!(&buf[12..plain.len()], &plain[12..]);
            }
            let sealed = buf.clone();
            rx.open_rtp(&mut buf, 12, roc).unwrap();
            assert_eq!(buf, plain);

            // Wrong ROC fails.
            let mut b = sealed.clone();
            assert_eq!(rx.open_rtp(&mut b, 12, roc + 1), Err(SrtpError::AuthFailed));
            // Tampered tag, payload and header fail.
            for at in [sealed.len() - 1, 12.min(sealed.len() - 1), 3] {
                let mut b = sealed.clone();
                b[at] ^= 0x01;
                assert_eq!(rx.open_rtp(&mut b, 12, roc), Err(SrtpError::AuthFailed));
            }
        }
        // Same side's receiver (wrong direction keys) fails.
        let mut wrong = SrtpReceiver::new(p, &km, true).unwrap();
        let mut buf = rtp_packet(7, 1, 50);
        tx.seal_rtp(&mut buf, 12, 0).unwrap();
        assert_eq!(wrong.open_rtp(&mut buf, 12, 0), Err(SrtpError::AuthFailed));

        // RTCP.
        for _ in 0..3 {
            let plain = rtcp_packet(0xCAFE_BABE);
            let mut buf = plain.clone();
            tx.seal_rtcp(&mut buf).unwrap();
            assert_eq!(buf.len(), plain.len() + p.rtcp_overhead());
            let sealed = buf.clone();
            rx.open_rtcp(&mut buf).unwrap();
            assert_eq!(buf, plain);
            let mut b = sealed.clone();
            let n = b.len();
            b[n - 1] ^= 0x80;
            assert_eq!(rx.open_rtcp(&mut b), Err(SrtpError::AuthFailed));
            let mut b = sealed;
            b[9] ^= 0x80;
            assert_eq!(rx.open_rtcp(&mut b), Err(SrtpError::AuthFailed));
        }
    }
}

#[test]
fn srtcp_index_per_ssrc() {
    let p = SrtpProfile::Aes128CmSha1_80;
    let km = keying_material(p);
    let mut tx = SrtpSender::new(p, &km, false).unwrap();
    let rx = SrtpReceiver::new(p, &km, true).unwrap();
    let mut seen = Vec::new();
    for ssrc in [1u32, 2, 1, 1, 2] {
        let mut buf = rtcp_packet(ssrc);
        tx.seal_rtcp(&mut buf).unwrap();
        seen.push(rx.keys.open_rtcp(&mut buf).unwrap());
    }
    assert_eq!(seen, vec![0, 0, 1, 2, 1]);
    tx.rtcp_index[0].1 = SRTCP_INDEX_MAX + 1;
    let mut buf = rtcp_packet(1);
    assert_eq!(
        tx.seal_rtcp(&mut buf),
        Err(SrtpError::RtcpIndexExhausted(1))
    );
}

#[test]
fn short_and_malformed_input() {
    for p in PROFILES {
        let km = keying_material(p);
        let mut tx = SrtpSender::new(p, &km, true).unwrap();
        let mut rx = SrtpReceiver::new(p, &km, false).unwrap();
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            for hl in [0usize, 11, 12, 16, 39, 100] {
                let mut b = data.clone();
                let r = tx.seal_rtp(&mut b, hl, 0);
                if hl < 12 || hl > len {
                    assert!(matches!(r, Err(SrtpError::RtpHeaderLength { .. })));
                }
                let mut b = data.clone();
                assert!(rx.open_rtp(&mut b, hl, 0).is_err());
            }
            let mut b = data.clone();
            let r = tx.seal_rtcp(&mut b);
            assert_eq!(r.is_err(), len < 8);
            let mut b = data.clone();
            assert!(rx.open_rtcp(&mut b).is_err());
        }
    }
}

mod cross {
    use super::*;
    use rtc_srtp::context::Context;
    use rtc_srtp::protection_profile::ProtectionProfile;

    fn their_profile(p: SrtpProfile) -> ProtectionProfile {
        match p {
            SrtpProfile::Aes128CmSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProfile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        }
    }

    /// Their context for the client (`client == true`) or server write direction.
    fn their_context(p: SrtpProfile, km: &[u8], client: bool) -> Context {
        let kl = p.master_key_len();
        let sl = p.master_salt_len();
        let (key, salt) = if client {
            (&km[..kl], &km[2 * kl..2 * kl + sl])
        } else {
            (&km[kl..2 * kl], &km[2 * kl + sl..])
        };
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        Context::new(key, salt, their_profile(p), None, None, provider.crypto()).unwrap()
    }

    const SEQS: [u16; 6] = [65530, 65533, 65534, 65535, 0, 1];

    #[test]
    fn we_seal_they_open() {
        for p in PROFILES {
            for local_is_client in [true, false] {
                let km = keying_material(p);
                let mut tx = SrtpSender::new(p, &km, local_is_client).unwrap();
                let mut theirs = their_context(p, &km, local_is_client);
                let mut roc = 0;
                for (i, &seq) in SEQS.iter().enumerate() {
                    if i > 0 && seq < SEQS[i - 1] {
                        roc += 1;
                    }
                    let plain = rtp_packet(seq, 0xDEAD_BEEF, 40 + i * 7);
                    let mut buf = plain.clone();
                    tx.seal_rtp(&mut buf, 12, roc).unwrap();
                    let opened = theirs.decrypt_rtp(&buf).unwrap();
                    assert_eq!(&opened[..], &plain[..], "{p:?} seq {seq} roc {roc}");
                }
                assert_eq!(roc, 1);
                for ssrc in [0xDEAD_BEEF, 0x0102_0304, 0xDEAD_BEEF] {
                    let plain = rtcp_packet(ssrc);
                    let mut buf = plain.clone();
                    tx.seal_rtcp(&mut buf).unwrap();
                    let opened = theirs.decrypt_rtcp(&buf).unwrap();
                    assert_eq!(&opened[..], &plain[..], "{p:?} rtcp");
                }
            }
        }
    }

    #[test]
    fn they_seal_we_open() {
        for p in PROFILES {
            for local_is_client in [true, false] {
                let km = keying_material(p);
                let mut rx = SrtpReceiver::new(p, &km, local_is_client).unwrap();
                // The peer writes with the other side's keys.
                let mut theirs = their_context(p, &km, !local_is_client);
                let mut roc = 0;
                for (i, &seq) in SEQS.iter().enumerate() {
                    if i > 0 && seq < SEQS[i - 1] {
                        roc += 1;
                    }
                    let plain = rtp_packet(seq, 0x0BAD_F00D, 33 + i);
                    let sealed = theirs.encrypt_rtp(&plain).unwrap();
                    let mut buf = sealed.to_vec();
                    rx.open_rtp(&mut buf, 12, roc).unwrap();
                    assert_eq!(buf, plain, "{p:?} seq {seq} roc {roc}");
                }
                assert_eq!(roc, 1);
                for ssrc in [0x0BAD_F00D, 7, 0x0BAD_F00D] {
                    let plain = rtcp_packet(ssrc);
                    let sealed = theirs.encrypt_rtcp(&plain).unwrap();
                    let mut buf = sealed.to_vec();
                    rx.open_rtcp(&mut buf).unwrap();
                    assert_eq!(buf, plain, "{p:?} rtcp");
                }
            }
        }
    }
}
